"""A real Prometheus (Debian's package) for tests: scrapes the given targets every second, evaluates the
given rule files, and is queried over its HTTP API. Stopped by its PID."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from testkit.services import free_port


class Prometheus:
    """A real Prometheus process with a 1 s scrape interval, queried over its HTTP API."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.http = httpx.Client(base_url=url, timeout=10.0, trust_env=False)

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (``status: starting`` while it is not listening yet)."""
        try:
            response = self.http.get("/api/v1/query", params={"query": expr})
        except httpx.TransportError:  # not listening yet
            return {"status": "starting", "data": {"result": []}}
        if response.status_code == 503:  # still starting: the TSDB is not open yet
            return {"status": "starting", "data": {"result": []}}
        body: dict[str, Any] = response.json()
        return body

    def value(self, expr: str) -> float:
        """The first sample's value of an instant query, NaN when there is none."""
        result = self.query(expr).get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else float("nan")

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll ``condition`` until it holds; fail if Prometheus exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            if condition():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self) -> None:
        """Close the client; SIGTERM, then SIGKILL if it does not exit within 30 s."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_prometheus(workdir: Path, targets: dict[str, str], rule_files: Sequence[Path] = ()) -> Prometheus:
    """Prometheus on a free port scraping ``{job: "host:port"}`` every second, its TSDB in ``workdir``; the
    scrape configuration is the one ``modelberth up --with-prometheus`` writes."""
    from modelberth_cli.stack import prometheus_config

    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps(prometheus_config(targets, scrape_interval="1s", rule_files=rule_files)))
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Prometheus(f"http://127.0.0.1:{port}", process, log)
