"""Real service processes for tests and benchmarks: free ports, ``modelberth serve NAME`` as an OS process,
and waiting for its readiness. Every process started here is stopped by its PID, never by name."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})")


@dataclass
class ServiceProcess:
    """A service started with ``modelberth serve NAME`` on a free port, as a real OS process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


@dataclass
class ServiceLauncher:
    """Starts services in ``workdir`` (their cwd and logs) and remembers them for :meth:`stop_all`."""

    workdir: Path
    started: list[ServiceProcess] = field(default_factory=list)

    def start(
        self, name: str, env: dict[str, str] | None = None, ready_path: str = "/readyz", timeout: float = 60.0
    ) -> ServiceProcess:
        """``modelberth serve NAME`` on a free port with ``env`` over this environment; waits for
        ``ready_path`` to answer 200 (the log's tail is in the error when it does not)."""
        port = free_port()
        log_path = self.workdir / f"{name}-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelberth_cli", "serve", name, "--port", str(port)],
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        service = ServiceProcess(name, f"http://127.0.0.1:{port}", process, log_path)
        self.started.append(service)
        try:
            wait_ready(service.url + ready_path, timeout, process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not become ready: {exc}\n{service.logs()[-4000:]}") from exc
        return service

    def stop_all(self) -> None:
        """Stop every service started here, the last one first."""
        for service in reversed(self.started):
            service.stop()
