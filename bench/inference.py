"""Inference throughput benchmark (``make bench`` -> ``python -m bench.inference``).

One inference process pinned to CPU 0 (``taskset``), load from ``wrk`` pinned to CPU 1, 16 connections, an
iris pipeline, a real ES256 token on every request. A bare FastAPI ``GET /hello`` app measured the same way
in the same run is the floor, because this machine is shared and absolute numbers drift between runs.

Writes ``bench/results/inference.json`` and ``bench/results/inference.md``. Needs Debian's ``wrk``
(``apt-get install -y wrk``) and ``taskset``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SERVER_CPU = "0"
LOAD_CPU = "1"
CONNECTIONS = 16
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROW = {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 4.1, "petal_width": 1.3}

HELLO_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}
"""

POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.body = [[%(body)s]]
"""

REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("JSON {\\"requests\\": %d, \\"errors\\": %d, \\"non2xx\\": %d, "
    .. "\\"p50_us\\": %d, \\"p99_us\\": %d, \\"duration_us\\": %d}\\n",
    summary.requests, e.connect + e.read + e.write + e.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 240.0) -> None:
    """Poll until ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(url)


@contextlib.contextmanager
def server(argv: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    """Run ``argv`` pinned to the server CPU until the block ends (stopped by its PID)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_ready(ready_url, process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"{argv[2:5]} not ready: {exc}\n{log.read_text(errors='replace')[-3000:]}"
            ) from exc
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run_wrk(
    url: str, seconds: int, work: Path, script: str = "", connections: int = CONNECTIONS
) -> dict[str, Any]:
    """One wrk run pinned to the load CPU; returns requests/s, p50/p99 in ms and error counts."""
    lua = work / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    lua.write_text(script + REPORT_LUA, encoding="utf-8")
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^JSON (\{.*\})$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    stats = json.loads(match.group(1))
    seconds_run = stats["duration_us"] / 1e6
    return {
        "rps": round(stats["requests"] / seconds_run, 1),
        "p50_ms": round(stats["p50_us"] / 1e3, 2),
        "p99_ms": round(stats["p99_us"] / 1e3, 2),
        "requests": stats["requests"],
        "errors": stats["errors"],
        "non_2xx": stats["non2xx"],
    }


def make_keys(work: Path) -> tuple[str, Path]:
    """An ES256 key: a signed access token and a JWKS directory to serve (what the auth service would do)."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"kid": "bench"})
    now = int(time.time())
    claims = {
        "iss": "http://127.0.0.1:8001",
        "aud": "modelberth",
        "sub": "bench",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        "scope": "predict models:read",
    }
    token = jwt.encode({"alg": "ES256", "kid": "bench", "typ": "at+jwt"}, claims, key)
    site = work / "jwks"
    (site / ".well-known").mkdir(parents=True)
    (site / ".well-known" / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return token, site


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=12, help="duration of each measured wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load before each run")
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(
                f"{tool} not found: apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'}",
                file=sys.stderr,
            )
            return 2
    sys.path.insert(0, str(REPO))
    from conftest import write_tiny_artifact  # the same small real iris Pipeline the tests serve

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelberth-bench-") as tmp:
        work = Path(tmp)
        model_dir = work / "models"
        write_tiny_artifact(model_dir, rows=150)
        token, jwks_site = make_keys(work)
        jwks_port, hello_port, inf_port = free_port(), free_port(), free_port()
        (work / "hello_app.py").write_text(HELLO_APP, encoding="utf-8")
        results: dict[str, Any] = {}
        py = sys.executable
        jwks = subprocess.Popen(
            [py, "-m", "http.server", str(jwks_port), "--bind", "127.0.0.1", "--directory", str(jwks_site)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            hello_argv = [
                py,
                "-m",
                "uvicorn",
                "hello_app:app",
                "--port",
                str(hello_port),
                "--no-access-log",
                "--log-level",
                "warning",
                "--app-dir",
                str(work),
            ]
            hello_url = f"http://127.0.0.1:{hello_port}/hello"
            with server(hello_argv, {}, hello_url, work / "hello.log"):
                run_wrk(hello_url, args.warmup, work)
                results["floor"] = run_wrk(hello_url, args.seconds, work)
            env = {
                "INFERENCE_AUTH_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
                "INFERENCE_MODEL_DIR": str(model_dir),
                "MODELBERTH_STATE_DIR": str(work / "state"),
            }
            inf_argv = [py, "-m", "modelberth_core.cli", "serve", "inference", "--port", str(inf_port)]
            base = f"http://127.0.0.1:{inf_port}"
            with server(inf_argv, env, base + "/readyz", work / "inference.log"):
                single = POST_LUA % {"token": token, "body": json.dumps({"instances": [ROW]})}
                url = base + "/v1/models/iris/predict"
                run_wrk(url, args.warmup, work, single)
                before = httpx.get(base + "/metrics", timeout=5.0).text
                results["single_row"] = run_wrk(url, args.seconds, work, single)
                after = httpx.get(base + "/metrics", timeout=5.0).text
                results["single_row"]["mean_rows_per_predict_call"] = _mean_batch(after, before)
                batch = POST_LUA % {"token": token, "body": json.dumps({"instances": [ROW] * 1000})}
                run_wrk(url, args.warmup, work, batch, connections=4)
                batch_run = run_wrk(url, args.seconds, work, batch, connections=4)
                results["batch_1000"] = {
                    **batch_run,
                    "rows_per_s": round(batch_run["rps"] * 1000, 0),
                    "connections": 4,
                }
        finally:
            jwks.terminate()
            jwks.wait(10)
    results["ratio_to_floor"] = round(results["single_row"]["rps"] / results["floor"]["rps"], 3)
    results["setup"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "server_cpu": SERVER_CPU,
        "load_cpu": LOAD_CPU,
        "connections": CONNECTIONS,
        "seconds": args.seconds,
        "model": "iris: ColumnTransformer(SimpleImputer+StandardScaler) + LogisticRegression",
        "tokens": "ES256 bearer token on every request, verified against a fetched JWKS",
    }
    targets = {"single_row_rps": 2000, "ratio_to_floor": 0.30, "p99_ms": 25, "batch_rows_per_s": 570_000}
    results["targets"] = targets
    results["meets_targets"] = {
        "single_row_rps": results["single_row"]["rps"] >= targets["single_row_rps"],
        "ratio_to_floor": results["ratio_to_floor"] >= targets["ratio_to_floor"],
        "p99_ms": results["single_row"]["p99_ms"] <= targets["p99_ms"],
        "batch_rows_per_s": results["batch_1000"]["rows_per_s"] >= targets["batch_rows_per_s"],
    }
    (RESULTS / "inference.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "inference.md").write_text(_markdown(results), encoding="utf-8")
    print(_markdown(results))
    return 0


def _sample(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _mean_batch(metrics: str, before: str = "") -> float | None:
    """Mean rows per vectorised predict call between two scrapes of /metrics."""
    count = _sample(metrics, "modelberth_inference_batch_size_count") - _sample(
        before, "modelberth_inference_batch_size_count"
    )
    total = _sample(metrics, "modelberth_inference_batch_size_sum") - _sample(
        before, "modelberth_inference_batch_size_sum"
    )
    return round(total / count, 2) if count else None


def _markdown(r: dict[str, Any]) -> str:
    s, f, b, ok = r["single_row"], r["floor"], r["batch_1000"], r["meets_targets"]
    mark = {True: "yes", False: "**no**"}
    return "\n".join(
        [
            "# Inference benchmark",
            "",
            f"{r['setup']['date']}; server on CPU {r['setup']['server_cpu']}, "
            f"wrk on CPU {r['setup']['load_cpu']}, "
            f"{r['setup']['connections']} connections, {r['setup']['seconds']} s per run; "
            f"{r['setup']['tokens']}.",
            "",
            "| measurement | result | target | met |",
            "|---|---|---|---|",
            f"| bare FastAPI `GET /hello` (floor) | {f['rps']:,.0f} req/s | — | — |",
            f"| single row, req/s | {s['rps']:,.0f} | ≥ 2,000 | {mark[ok['single_row_rps']]} |",
            f"| single row / floor | {r['ratio_to_floor']:.2f} | ≥ 0.30 | {mark[ok['ratio_to_floor']]} |",
            f"| single row p50 / p99 | {s['p50_ms']} / {s['p99_ms']} ms | p99 ≤ 25 ms "
            f"| {mark[ok['p99_ms']]} |",
            f"| 1000-row batch, rows/s ({b['connections']} connections) | {b['rows_per_s']:,.0f} "
            f"| ≥ 570,000 | {mark[ok['batch_rows_per_s']]} |",
            f"| single row: mean rows per predict call (micro-batching) "
            f"| {s['mean_rows_per_predict_call']} | — | — |",
            f"| errors / non-2xx | {s['errors'] + b['errors']} / {s['non_2xx'] + b['non_2xx']} | 0 | "
            f"{mark[s['errors'] + b['errors'] + s['non_2xx'] + b['non_2xx'] == 0]} |",
            "",
            "Command: `make bench` (or `uv run python -m bench.inference`).",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
