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


TARGETS: dict[str, float] = {
    "single_row_rps": 2000,
    "ratio_to_floor": 0.30,
    "p99_ms": 25,
    "batch_rows_per_s": 570_000,
    # The 570k rows/s was set on a machine whose bare FastAPI hello ran at about 7,250 req/s: the
    # same target as rows per floor request, so a run on a slower or busier machine can still be judged.
    "batch_rows_per_floor_request": round(570_000 / 7_250, 1),
}


def measure_round(
    hello_url: str, url: str, metrics_url: str, token: str, work: Path, seconds: int, warmup: int
) -> dict[str, Any]:
    """Floor, single row, floor, 1000-row batch, floor: each ratio uses the floors run just before and after.

    This machine's speed drifts by half within a minute, so a ratio is only fair between runs seconds
    apart; bracketing each measurement with two floor runs also cancels a steady drift.
    """

    def floor() -> dict[str, Any]:
        run_wrk(hello_url, warmup, work)
        return run_wrk(hello_url, seconds, work)

    floors = [floor()]
    single_lua = POST_LUA % {"token": token, "body": json.dumps({"instances": [ROW]})}
    run_wrk(url, warmup, work, single_lua)
    before = httpx.get(metrics_url, timeout=5.0).text
    single = run_wrk(url, seconds, work, single_lua)
    after = httpx.get(metrics_url, timeout=5.0).text
    single["mean_rows_per_predict_call"] = _mean_batch(after, before)
    floors.append(floor())
    batch_lua = POST_LUA % {"token": token, "body": json.dumps({"instances": [ROW] * 1000})}
    run_wrk(url, warmup, work, batch_lua, connections=4)
    batch = run_wrk(url, seconds, work, batch_lua, connections=4)
    batch["rows_per_s"] = round(batch["rps"] * 1000, 0)
    batch["connections"] = 4
    floors.append(floor())
    single_floor = (floors[0]["rps"] + floors[1]["rps"]) / 2
    batch_floor = (floors[1]["rps"] + floors[2]["rps"]) / 2
    return {
        "floor": {**floors[1], "rps": round((single_floor + batch_floor) / 2, 1)},
        "floors_rps": [f["rps"] for f in floors],
        "single_row": single,
        "batch_1000": batch,
        "ratio_to_floor": round(single["rps"] / single_floor, 3),
        "batch_rows_per_floor_request": round(batch["rows_per_s"] / batch_floor, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3, help="duration of each measured wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run")
    parser.add_argument("--rounds", type=int, default=5, help="single/floor/batch rounds; the median is kept")
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
            env = {
                "INFERENCE_AUTH_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
                "INFERENCE_MODEL_DIR": str(model_dir),
                "MODELBERTH_STATE_DIR": str(work / "state"),
            }
            inf_argv = [py, "-m", "modelberth_core.cli", "serve", "inference", "--port", str(inf_port)]
            base = f"http://127.0.0.1:{inf_port}"
            hello_url = f"http://127.0.0.1:{hello_port}/hello"
            # Both servers share CPU 0 but only one is under load at a time; the other waits in epoll.
            with (
                server(hello_argv, {}, hello_url, work / "hello.log"),
                server(inf_argv, env, base + "/readyz", work / "inference.log"),
            ):
                rounds = [
                    measure_round(
                        hello_url,
                        base + "/v1/models/iris/predict",
                        base + "/metrics",
                        token,
                        work,
                        args.seconds,
                        args.warmup,
                    )
                    for _ in range(args.rounds)
                ]
        finally:
            jwks.terminate()
            jwks.wait(10)
    results = summarise(rounds)
    results["setup"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "server_cpu": SERVER_CPU,
        "load_cpu": LOAD_CPU,
        "connections": CONNECTIONS,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "model": "iris: ColumnTransformer(SimpleImputer+StandardScaler) + LogisticRegression",
        "tokens": "ES256 bearer token on every request, verified against a fetched JWKS",
    }
    (RESULTS / "inference.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "inference.md").write_text(_markdown(results), encoding="utf-8")
    print(_markdown(results))
    return 0


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median single-row ratio as the headline (all rounds kept), and the targets."""
    ranked = sorted(rounds, key=lambda r: r["ratio_to_floor"])
    results: dict[str, Any] = dict(ranked[len(ranked) // 2])
    results["rounds"] = rounds
    results["batch_rows_per_floor_request_median"] = sorted(
        r["batch_rows_per_floor_request"] for r in rounds
    )[len(rounds) // 2]
    results["targets"] = TARGETS
    results["meets_targets"] = {
        "single_row_rps": results["single_row"]["rps"] >= TARGETS["single_row_rps"],
        "ratio_to_floor": results["ratio_to_floor"] >= TARGETS["ratio_to_floor"],
        "p99_ms": results["single_row"]["p99_ms"] <= TARGETS["p99_ms"],
        "batch_rows_per_s": results["batch_1000"]["rows_per_s"] >= TARGETS["batch_rows_per_s"],
        "batch_rows_per_floor_request": results["batch_rows_per_floor_request_median"]
        >= TARGETS["batch_rows_per_floor_request"],
    }
    return results


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
    per_floor = r["batch_rows_per_floor_request_median"]
    errors = sum(x[k]["errors"] + x[k]["non_2xx"] for x in r["rounds"] for k in ("single_row", "batch_1000"))
    lines = [
        "# Inference benchmark",
        "",
        f"{r['setup']['date']}; server on CPU {r['setup']['server_cpu']}, "
        f"wrk on CPU {r['setup']['load_cpu']}, {r['setup']['connections']} connections "
        f"(4 for the batch), {r['setup']['seconds']} s per run, {r['setup']['rounds']} rounds of "
        f"floor → single row → floor → batch → floor (each ratio against the floors either side); "
        f"{r['setup']['tokens']}. The table shows the round with the median "
        "single-row ratio; every round is listed below it.",
        "",
        "| measurement | result | target | met |",
        "|---|---|---|---|",
        f"| bare FastAPI `GET /hello` (floor) | {f['rps']:,.0f} req/s | — | — |",
        f"| single row, req/s | {s['rps']:,.0f} | ≥ 2,000 | {mark[ok['single_row_rps']]} |",
        f"| single row / floor | {r['ratio_to_floor']:.2f} | ≥ 0.30 | {mark[ok['ratio_to_floor']]} |",
        f"| single row p50 / p99 | {s['p50_ms']} / {s['p99_ms']} ms | p99 ≤ 25 ms | {mark[ok['p99_ms']]} |",
        f"| 1000-row batch, rows/s | {b['rows_per_s']:,.0f} | ≥ 570,000 | {mark[ok['batch_rows_per_s']]} |",
        f"| 1000-row batch, rows/s per floor req/s (median of rounds) | {per_floor:.1f} "
        f"| ≥ {TARGETS['batch_rows_per_floor_request']} (570,000 / 7,250) "
        f"| {mark[ok['batch_rows_per_floor_request']]} |",
        f"| single row: mean rows per predict call (micro-batching) | {s['mean_rows_per_predict_call']} "
        "| — | — |",
        f"| errors / non-2xx, all rounds | {errors} | 0 | {mark[errors == 0]} |",
        "",
        "| round | floor req/s | single row req/s | ratio | p99 ms | batch rows/s | batch rows per floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, x in enumerate(r["rounds"], 1):
        lines.append(
            f"| {i} | {x['floor']['rps']:,.0f} | {x['single_row']['rps']:,.0f} | {x['ratio_to_floor']:.2f} "
            f"| {x['single_row']['p99_ms']} | {x['batch_1000']['rows_per_s']:,.0f} "
            f"| {x['batch_rows_per_floor_request']:.1f} |"
        )
    lines += ["", "Command: `make bench` (or `uv run python -m bench.inference`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
