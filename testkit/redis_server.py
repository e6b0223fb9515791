"""A real Redis (Debian's ``redis-server``) for the shared auth state: tests and the chart's wiring tests."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from testkit.services import free_port


@dataclass
class RedisServer:
    """A ``redis-server`` on 127.0.0.1 without persistence, started and stopped by its PID.

    ``stop()``/``start()`` restart it on the same port (empty again: nothing is saved), ``pause()`` and
    ``resume()`` send SIGSTOP and SIGCONT (a store that hangs rather than refuses).
    """

    directory: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``AUTH_STATE_URL`` for this server (the password goes separately)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def env(self, prefix: str = "test:") -> dict[str, str]:
        """The ``AUTH_STATE_*`` variables that point auth at this server."""
        return {"AUTH_STATE_URL": self.url, "AUTH_STATE_PASSWORD": self.password, "AUTH_STATE_PREFIX": prefix}

    def client(self) -> redis.Redis:
        """A plain synchronous client, for looking at what auth stored."""
        return redis.Redis(port=self.port, password=self.password, decode_responses=True, socket_timeout=5)

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING."""
        binary = shutil.which("redis-server")
        assert binary, (
            "redis-server is not installed: `make install-system` installs it (Debian redis-server)"
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        # The password on the command line is a test's throwaway; no persistence, no other interface.
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--requirepass", self.password, "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 15
        with self.client() as probe:
            while True:
                assert self.process.poll() is None, (self.directory / "redis.log").read_text()
                try:
                    if probe.ping():
                        return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), SIGKILL if it does not exit."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL: the store dies mid-run."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
