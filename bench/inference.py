"""Inference throughput benchmark (``make bench`` -> ``python -m bench.inference``).

One inference process pinned to CPU 0 (``taskset``), load from ``wrk`` pinned to CPU 1, 16 connections, an
iris pipeline, a real ES256 token on every request. A bare FastAPI ``GET /hello`` app measured the same way
in the same run is the floor, because this machine is shared and absolute numbers drift between runs.

Shadow traffic (issue 14): the store holds a champion and a challenger, and a second inference process runs
with ``INFERENCE_SHADOW=true``; each round measures the single-row load on each process alone (order
rotated from round to round) against the floor, and counts how many requests the challenger scored.
``--baseline REF`` also runs the inference code of a git commit (exported to a temporary directory, put
first on ``PYTHONPATH``, same dependencies) in the same rounds: the champion path before a change.

Costs are compared side by side (:func:`_single_rows`): shadowing on vs off, the champion path vs the
baseline, and the access and prediction logs on vs off (issue 17) each load both processes at once on
the server CPU and compare their CPU time per request, which this shared machine's neighbours move alike.

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

from testkit.artifacts import write_tiny_artifact  # the small real iris Pipeline the tests serve
from testkit.services import free_port

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
def server(argv: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[int]:
    """Run ``argv`` pinned to the server CPU until the block ends (stopped by its PID, which it yields:
    ``taskset`` execs the command, so it is the server's own)."""
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
        yield process.pid
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
    return wrk_result(start_wrk(url, seconds, work, script, connections))


def start_wrk(
    url: str, seconds: int, work: Path, script: str = "", connections: int = CONNECTIONS
) -> subprocess.Popen[str]:
    """Start a wrk run pinned to the load CPU (:func:`wrk_result` waits for it)."""
    lua = work / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    lua.write_text(script + REPORT_LUA, encoding="utf-8")
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def wrk_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for a wrk run and read its report."""
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{out}")
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
    # The issue's 570k rows/s was set on a machine whose bare FastAPI hello ran at about 7,250 req/s: the
    # same target as rows per floor request, so a run on a slower or busier machine can still be judged.
    "batch_rows_per_floor_request": round(570_000 / 7_250, 1),
}
SHADOW_TARGETS: dict[str, float] = {
    # Issue 14: shadowing on, at the single-row load, with >= 90 % of requests scored by the challenger.
    "shadow_rps_ratio": 0.9,  # champion req/s on / off, at least
    "shadow_p99_ratio": 1.5,  # champion p99 on / off, at most
    "shadow_share_scored": 0.9,  # the worst round's share of requests the challenger scored, at least
    "off_vs_before": 0.9,  # shadowing off vs the code before the change (--baseline), same floors, at least
    # The same two bounds as CPU time per request, which other processes on the machine do not move: on a
    # core of its own, req/s is 1 / (CPU per request), so >= 0.9x req/s is <= 1/0.9 the CPU per request.
    "shadow_cpu_ratio": round(1 / 0.9, 3),  # CPU per request on / off, at most
    "cpu_off_vs_before": round(1 / 0.9, 3),  # CPU per request off / before, at most
}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


ISSUE17_TARGETS: dict[str, float] = {
    # Issue 17: one data plane, the bar raised; every ratio against the floors of its own round.
    "ratio_to_floor": 0.50,  # single-row V1 with token checks / bare FastAPI hello, at least
    "batch_rows_per_floor_request": 100,  # 1000-row V1 records: rows/s per floor req/s, at least
    "v2_tensor_rows_per_floor_request": 150,  # one V2 [1000, 4] FP64 tensor, at least
    "logs_rps_ratio": 0.90,  # single row with the access and prediction logs on / both off, at least
}


def _single_row(base_url: str, pid: int, token: str, work: Path, seconds: int, warmup: int) -> dict[str, Any]:
    """One measured single-row run against an inference process alone (see :func:`_single_rows`)."""
    return _single_rows({"only": (base_url, pid)}, ["only"], token, work, seconds, warmup)["only"]


def _single_rows(
    inference: dict[str, tuple[str, int]], keys: list[str], token: str, work: Path, seconds: int, warmup: int
) -> dict[str, dict[str, Any]]:
    """The single-row load on the ``keys`` processes at the same time, each from its own wrk (16
    connections) on the load CPU, with what each one's /metrics say about it and the CPU time it spent per
    request (shadow work included: the queue drains before the second reading).

    CPU per request does not depend on how much of the core other processes took meanwhile, which on a
    shared machine swings req/s and p99 far more than any change measured here. Two processes loaded side
    by side share the server CPU and whatever its neighbours leave of it at the same moments, so the ratio
    of their CPU per request is the ratio of their costs: run one after the other, two runs of the same
    process seconds apart differed by up to a third on this machine, while two identical processes loaded
    side by side differ by about 2%.
    """
    single_lua = POST_LUA % {"token": token, "body": json.dumps({"instances": [ROW]})}
    urls = {key: inference[key][0] + "/v1/models/iris/predict" for key in keys}
    for warming in [start_wrk(urls[key], warmup, work, single_lua) for key in keys]:
        wrk_result(warming)
    time.sleep(0.3)  # the warm-up's shadow batches drain before counting starts
    before = {key: httpx.get(inference[key][0] + "/metrics", timeout=5.0).text for key in keys}
    cpu_before = {key: cpu_seconds(inference[key][1]) for key in keys}
    runs = {key: start_wrk(urls[key], seconds, work, single_lua) for key in keys}
    results = {key: wrk_result(run) for key, run in runs.items()}
    time.sleep(0.3)  # and the measured run's, before counting ends (the prediction log's last batch too)
    for key, result in results.items():
        cpu = cpu_seconds(inference[key][1]) - cpu_before[key]
        after = httpx.get(inference[key][0] + "/metrics", timeout=5.0).text
        result["cpu_us_per_request"] = round(cpu / max(result["requests"], 1) * 1e6, 1)
        result["mean_rows_per_predict_call"] = _mean_batch(after, before[key])
        outcomes = {
            outcome: _labelled(after, SHADOW_REQUESTS, outcome)
            - _labelled(before[key], SHADOW_REQUESTS, outcome)
            for outcome in ("scored", "dropped", "failed")
        }
        offered = sum(outcomes.values())
        if offered:
            result["shadow"] = {**outcomes, "share_scored": round(outcomes["scored"] / offered, 4)}
    return results


def measure_round(
    hello_url: str,
    inference: dict[str, tuple[str, int]],
    token: str,
    work: Path,
    seconds: int,
    warmup: int,
    order: list[str],
) -> dict[str, Any]:
    """Floor, single row on each inference process (``order``), floor, 1000-row batch, floor: each ratio
    uses the floors run just before and after.

    ``inference`` maps ``off`` (shadowing off: the champion path), ``on`` (shadowing on) and optionally
    ``before`` (the baseline's code) to (base URL, PID). This machine's speed drifts by half within a minute,
    so a ratio is only fair between runs seconds apart; bracketing each measurement with two floor runs
    also cancels a steady drift, and rotating the order cancels the position within the round.
    """

    def floor() -> dict[str, Any]:
        run_wrk(hello_url, warmup, work)
        return run_wrk(hello_url, seconds, work)

    floors = [floor()]
    singles = {key: _single_row(*inference[key], token, work, seconds, warmup) for key in order}
    floors.append(floor())
    batch_lua = POST_LUA % {"token": token, "body": json.dumps({"instances": [ROW] * 1000})}
    url = inference["off"][0] + "/v1/models/iris/predict"
    run_wrk(url, warmup, work, batch_lua, connections=4)
    batch = run_wrk(url, seconds, work, batch_lua, connections=4)
    batch["rows_per_s"] = round(batch["rps"] * 1000, 0)
    batch["connections"] = 4
    tensor = _v2_tensor_batch(inference["off"][0], token, work, seconds, warmup)
    floors.append(floor())
    single_floor = (floors[0]["rps"] + floors[1]["rps"]) / 2
    batch_floor = (floors[1]["rps"] + floors[2]["rps"]) / 2
    off = singles["off"]
    # Each comparison loads both processes side by side; which starts first changes from round to round.
    shadow = _single_rows(
        inference, ["on", "off"] if order[0] == "off" else ["off", "on"], token, work, seconds, warmup
    )
    on_pair, off_pair = shadow["on"], shadow["off"]
    shadow_cpu = on_pair["cpu_us_per_request"] / off_pair["cpu_us_per_request"]
    out: dict[str, Any] = {
        "floor": {**floors[1], "rps": round((single_floor + batch_floor) / 2, 1)},
        "floors_rps": [f["rps"] for f in floors],
        "order": order,
        "single_row": off,
        "batch_1000": batch,
        "ratio_to_floor": round(off["rps"] / single_floor, 3),
        "batch_rows_per_floor_request": round(batch["rows_per_s"] / batch_floor, 1),
        "shadow_on": singles["on"],
        "ratio_to_floor_shadow_on": round(singles["on"]["rps"] / single_floor, 3),
        "shadow_side_by_side": {"on": on_pair, "off": off_pair},
        "shadow_rps_ratio": round(1 / shadow_cpu, 3),
        "shadow_p99_ratio": round(on_pair["p99_ms"] / off_pair["p99_ms"], 3),
        "shadow_cpu_ratio": round(shadow_cpu, 3),
        "v2_tensor_1000": tensor,
        "v2_tensor_rows_per_floor_request": round(tensor["rows_per_s"] / batch_floor, 1),
    }
    if "logged" in inference and "quiet" in inference:
        logs = _single_rows(inference, ["logged", "quiet"], token, work, seconds, warmup)
        logged, quiet = logs["logged"], logs["quiet"]
        logs_cpu = logged["cpu_us_per_request"] / quiet["cpu_us_per_request"]
        out["logs_on"], out["logs_off"] = logged, quiet
        out["logs_rps_ratio"] = round(1 / logs_cpu, 3)  # req/s on a core of one's own: 1 / CPU per request
        out["logs_cpu_ratio"] = round(logs_cpu, 3)
        out["logs_side_by_side_rps_ratio"] = round(logged["rps"] / quiet["rps"], 3)
    if "before" in singles:
        before = singles["before"]
        out["before"] = before
        out["ratio_to_floor_before"] = round(before["rps"] / single_floor, 3)
        versus = _single_rows(
            inference,
            ["before", "off"] if order[0] == "off" else ["off", "before"],
            token,
            work,
            seconds,
            warmup,
        )
        out["before_side_by_side"] = versus
        cpu_off_vs_before = versus["off"]["cpu_us_per_request"] / versus["before"]["cpu_us_per_request"]
        out["off_vs_before"] = round(1 / cpu_off_vs_before, 3)
        out["cpu_off_vs_before"] = round(cpu_off_vs_before, 3)
    return out


def _v2_tensor_batch(base_url: str, token: str, work: Path, seconds: int, warmup: int) -> dict[str, Any]:
    """One V2 ``[1000, 4]`` FP64 tensor per request (the MLServer/Seldon layout), 4 connections."""
    flat = [ROW[name] for name in FEATURES] * 1000  # row-major and flat: ']]' would end wrk's Lua string
    body = {"inputs": [{"name": "input-0", "shape": [1000, 4], "datatype": "FP64", "data": flat}]}
    lua = POST_LUA % {"token": token, "body": json.dumps(body)}
    url = base_url + "/v2/models/iris/infer"
    run_wrk(url, warmup, work, lua, connections=4)
    result = run_wrk(url, seconds, work, lua, connections=4)
    result["rows_per_s"] = round(result["rps"] * 1000, 0)
    result["connections"] = 4
    return result


OLD_SERVE = (
    "import argparse, sys; from modelberth_core.cli import _serve; "
    "sys.exit(_serve(argparse.Namespace(service='inference', host=None, port=int(sys.argv[1]), set=None)))"
)
"""``serve inference`` of a baseline from before the command had its own package (issue 16): its core held
the command, whose parser would load today's subcommands (entry points), which need today's core."""


@contextlib.contextmanager
def baseline_source(ref: str, work: Path) -> Iterator[str]:
    """``PYTHONPATH`` running the core and inference code of git ``ref`` (exported, not checked out)."""
    target = work / "baseline"
    target.mkdir()
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "--name-only", ref, "services/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    # the command itself too, once it has its own package: today's CLI imports today's core
    paths = [f"{p}/src" for p in ("services/cli", "services/core", "services/inference") if p in listed]
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, *paths], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    yield os.pathsep.join(str(target / path) for path in paths)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3, help="duration of each measured wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run")
    parser.add_argument("--rounds", type=int, default=5, help="single/floor/batch rounds; the median is kept")
    parser.add_argument(
        "--baseline",
        default=os.environ.get("BENCH_BASELINE") or None,
        help="a git commit whose inference code runs in the same rounds (the champion path before a change)",
    )
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(
                f"{tool} not found: apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'}",
                file=sys.stderr,
            )
            return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelberth-bench-") as tmp:
        work = Path(tmp)
        model_dir = work / "models"
        write_tiny_artifact(model_dir, rows=150)
        write_tiny_artifact(model_dir, rows=60, alias="challenger")  # what the shadow-on process scores
        token, jwks_site = make_keys(work)
        jwks_port, hello_port = free_port(), free_port()
        ports = {key: free_port() for key in ("off", "on", "quiet", "logged", "before")}
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
                "INFERENCE_GRPC_PORT": "0",  # REST only; several processes at once (gRPC: bench.grpc_rest)
            }
            keys = ["off", "on", "quiet", "logged", *(["before"] if args.baseline else [])]
            envs = {
                "off": env,  # as deployed: the access log on, the prediction log off
                "on": {**env, "INFERENCE_SHADOW": "true"},
                "quiet": {**env, "INFERENCE_LOG_LEVEL": "warning"},  # no access log, no prediction log
                "logged": {**env, "INFERENCE_PREDICTION_LOG": str(work / "predictions.jsonl")},
                "before": env,
            }
            base = {key: f"http://127.0.0.1:{ports[key]}" for key in keys}
            hello_url = f"http://127.0.0.1:{hello_port}/hello"
            # Every server shares CPU 0 but only one is under load at a time; the others wait in epoll.
            with contextlib.ExitStack() as stack:
                stack.enter_context(server(hello_argv, {}, hello_url, work / "hello.log"))
                if args.baseline:
                    envs["before"] = {
                        **env,
                        "PYTHONPATH": stack.enter_context(baseline_source(args.baseline, work)),
                    }
                old_cli = (
                    bool(args.baseline) and not Path(work / "baseline" / "services" / "cli" / "src").is_dir()
                )
                inference: dict[str, tuple[str, int]] = {}
                for key in keys:
                    argv_ = [py, "-m", "modelberth_cli", "serve", "inference", "--port", str(ports[key])]
                    if key == "before" and old_cli:
                        argv_ = [py, "-c", OLD_SERVE, str(ports[key])]
                    pid = stack.enter_context(
                        server(argv_, envs[key], base[key] + "/readyz", work / f"{key}.log")
                    )
                    inference[key] = (base[key], pid)
                _check_shadowing(base["on"], token)
                singles = [key for key in keys if key not in ("quiet", "logged")]  # logs: measured as a pair
                rounds = [
                    measure_round(
                        hello_url,
                        inference,
                        token,
                        work,
                        args.seconds,
                        args.warmup,
                        singles[i % len(singles) :] + singles[: i % len(singles)],
                    )
                    for i in range(args.rounds)
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
        "shadow": "a second process, INFERENCE_SHADOW=true; challenger: the same pipeline fitted on 60 rows",
        "baseline": args.baseline,
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
    if all("shadow_on" in r for r in rounds):
        results["shadow"] = _shadow_summary(rounds)
    if all("logs_rps_ratio" in r and "v2_tensor_1000" in r for r in rounds):
        results["issue17"] = _issue17_summary(rounds)
    return results


def _issue17_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 17's ratios, each the median of the per-round ratios."""
    medians = {
        "ratio_to_floor": _median([r["ratio_to_floor"] for r in rounds]),
        "batch_rows_per_floor_request": _median([r["batch_rows_per_floor_request"] for r in rounds]),
        "v2_tensor_rows_per_floor_request": _median([r["v2_tensor_rows_per_floor_request"] for r in rounds]),
        "logs_rps_ratio": _median([r["logs_rps_ratio"] for r in rounds]),
        "logs_cpu_ratio": _median([r["logs_cpu_ratio"] for r in rounds]),
        "logs_side_by_side_rps_ratio": _median([r["logs_side_by_side_rps_ratio"] for r in rounds]),
        "p99_over_floor_p99": _median([r["single_row"]["p99_ms"] / r["floor"]["p99_ms"] for r in rounds]),
    }
    return {
        **medians,
        "targets": ISSUE17_TARGETS,
        "meets_targets": {key: medians[key] >= target for key, target in ISSUE17_TARGETS.items()}
        | {"p99_over_floor_p99": medians["p99_over_floor_p99"] <= 2.0},
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _shadow_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of the on/off ratios (each within one round), and the worst scored share."""
    shares = [r["shadow_on"].get("shadow", {}).get("share_scored", 0.0) for r in rounds]
    out: dict[str, Any] = {
        "shadow_rps_ratio": _median([r["shadow_rps_ratio"] for r in rounds]),
        "shadow_p99_ratio": _median([r["shadow_p99_ratio"] for r in rounds]),
        "shadow_share_scored": min(shares),
        "ratio_to_floor_shadow_off": _median([r["ratio_to_floor"] for r in rounds]),
        "ratio_to_floor_shadow_on": _median([r["ratio_to_floor_shadow_on"] for r in rounds]),
        "shadow_cpu_ratio": _median([r["shadow_cpu_ratio"] for r in rounds]),
    }
    met = {
        "shadow_rps_ratio": out["shadow_rps_ratio"] >= SHADOW_TARGETS["shadow_rps_ratio"],
        "shadow_p99_ratio": out["shadow_p99_ratio"] <= SHADOW_TARGETS["shadow_p99_ratio"],
        "shadow_share_scored": out["shadow_share_scored"] >= SHADOW_TARGETS["shadow_share_scored"],
        "shadow_cpu_ratio": out["shadow_cpu_ratio"] <= SHADOW_TARGETS["shadow_cpu_ratio"],
    }
    if all("before" in r for r in rounds):
        out["off_vs_before"] = _median([r["off_vs_before"] for r in rounds])
        out["ratio_to_floor_before"] = _median([r["ratio_to_floor_before"] for r in rounds])
        out["cpu_off_vs_before"] = _median([r["cpu_off_vs_before"] for r in rounds])
        met["off_vs_before"] = out["off_vs_before"] >= SHADOW_TARGETS["off_vs_before"]
        met["cpu_off_vs_before"] = out["cpu_off_vs_before"] <= SHADOW_TARGETS["cpu_off_vs_before"]
    out["targets"] = SHADOW_TARGETS
    out["meets_targets"] = met
    return out


SHADOW_REQUESTS = "modelberth_inference_shadow_requests_total"


def _labelled(metrics: str, name: str, outcome: str) -> float:
    match = re.search(rf'^{name}{{model="iris",outcome="{outcome}"}} (\S+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _check_shadowing(base_url: str, token: str) -> None:
    """Wait until the shadow-on process compares its champion with the challenger (set up after loading)."""
    deadline = time.monotonic() + 60
    while True:
        listing = httpx.get(
            base_url + "/v1/models/iris/versions", headers={"Authorization": f"Bearer {token}"}, timeout=5.0
        ).json()
        if listing["shadow"].get("status") == "active":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"shadowing did not start: {listing['shadow']}")
        time.sleep(0.2)


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
        f"floor → single row{' (on each process)' if 'shadow' in r else ''} → floor → batch → floor "
        "(each ratio against the floors either side); "
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
    if "shadow" in r:
        lines += _shadow_markdown(r, mark)
    if "issue17" in r:
        lines += _issue17_markdown(r["issue17"], mark)
    lines += ["", "Command: `make bench` (or `uv run python -m bench.inference`).", ""]
    return "\n".join(lines)


def _shadow_markdown(r: dict[str, Any], mark: dict[bool, str]) -> list[str]:
    sh, ok = r["shadow"], r["shadow"]["meets_targets"]
    baseline = r["setup"].get("baseline")
    lines = [
        "",
        "## Shadow traffic and the champion path (issue 14)",
        "",
        "Each round also measures the single-row load on a second process with `INFERENCE_SHADOW=true` "
        "(the champion answers, the challenger scores every batch off the request path)"
        + (f", and on the code of `{baseline}` (before the change)" if baseline else "")
        + ", alone in an order rotated from round to round, then each against the champion path side by "
        "side on the server CPU (both loaded at once, each by its own wrk), which exposes both to the same "
        "neighbours: the on/off and off/before ratios are of the CPU time per request measured that way "
        "(req/s on a core of one's own is its inverse), and p99 is compared within the same pair. Medians "
        "of the per-round ratios.",
        "",
        "| measurement | result | target | met |",
        "|---|---|---|---|",
        f"| shadowing on / off, champion req/s | {sh['shadow_rps_ratio']:.3f} | ≥ 0.9 "
        f"| {mark[ok['shadow_rps_ratio']]} |",
        f"| shadowing on / off, champion p99 | {sh['shadow_p99_ratio']:.3f} | ≤ 1.5 "
        f"| {mark[ok['shadow_p99_ratio']]} |",
        f"| requests scored by the challenger (worst round) | {sh['shadow_share_scored']:.1%} | ≥ 90 % "
        f"| {mark[ok['shadow_share_scored']]} |",
        f"| shadowing on / off, CPU time per request (what req/s on a core of its own follows) "
        f"| {sh['shadow_cpu_ratio']:.3f} | ≤ {SHADOW_TARGETS['shadow_cpu_ratio']} "
        f"| {mark[ok['shadow_cpu_ratio']]} |",
    ]
    if "off_vs_before" in sh:
        lines.append(
            f"| shadowing off / before the change, req/s (ratios to floor "
            f"{sh['ratio_to_floor_shadow_off']:.3f} vs {sh['ratio_to_floor_before']:.3f}) "
            f"| {sh['off_vs_before']:.3f} | ≥ 0.9 "
            f"| {mark[ok['off_vs_before']]} |"
        )
        lines.append(
            f"| shadowing off / before the change, CPU time per request | {sh['cpu_off_vs_before']:.3f} "
            f"| ≤ {SHADOW_TARGETS['cpu_off_vs_before']} | {mark[ok['cpu_off_vs_before']]} |"
        )
    has_before = "off_vs_before" in sh
    lines += [
        "",
        "| round | order | alone: off req/s | on req/s | side by side: CPU µs/req off / on | on/off "
        "| p99 ms off / on | p99 on/off | scored "
        + (
            "| alone: before req/s | side by side: CPU µs/req before / off | off/before |"
            if has_before
            else "|"
        ),
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if has_before else ""),
    ]
    for i, x in enumerate(r["rounds"], 1):
        alone_on, pair = x["shadow_on"], x["shadow_side_by_side"]
        share = alone_on.get("shadow", {}).get("share_scored", 0.0)
        row = (
            f"| {i} | {' → '.join(x['order'])} | {x['single_row']['rps']:,.0f} | {alone_on['rps']:,.0f} "
            f"| {pair['off']['cpu_us_per_request']} / {pair['on']['cpu_us_per_request']} "
            f"| {x['shadow_rps_ratio']:.2f} | {pair['off']['p99_ms']} / {pair['on']['p99_ms']} "
            f"| {x['shadow_p99_ratio']:.2f} | {share:.1%} |"
        )
        if has_before:
            versus = x["before_side_by_side"]
            row += (
                f" {x['before']['rps']:,.0f} "
                f"| {versus['before']['cpu_us_per_request']} / {versus['off']['cpu_us_per_request']} "
                f"| {x['off_vs_before']:.2f} |"
            )
        lines.append(row)
    return lines


def _issue17_markdown(i: dict[str, Any], mark: dict[bool, str]) -> list[str]:
    ok, t = i["meets_targets"], i["targets"]
    return [
        "",
        "## One data plane (issue 17)",
        "",
        "Medians of the per-round ratios. Logs: the single-row load on a process with the access log and the "
        "prediction log on (`INFERENCE_PREDICTION_LOG=<file>`) against one with both off "
        "(`INFERENCE_LOG_LEVEL=warning`), both loaded at the same time on the server CPU, each by its own "
        "wrk: whatever slows this shared machine slows both alike, where runs one after the other differed "
        "by up to a third. req/s on / off is 1 / (CPU per request on / off), req/s on a core of one's own; "
        "the req/s each got while sharing the core is shown too.",
        "",
        "| measurement | result | target | met |",
        "|---|---|---|---|",
        f"| single row / floor | {i['ratio_to_floor']:.2f} | ≥ {t['ratio_to_floor']} "
        f"| {mark[ok['ratio_to_floor']]} |",
        f"| single row p99 / floor p99 | {i['p99_over_floor_p99']:.2f} | ≤ 2 "
        f"| {mark[ok['p99_over_floor_p99']]} |",
        f"| V1 1000 records: rows per floor request | {i['batch_rows_per_floor_request']:.1f} "
        f"| ≥ {t['batch_rows_per_floor_request']} | {mark[ok['batch_rows_per_floor_request']]} |",
        "| V2 one [1000, 4] FP64 tensor: rows per floor request "
        f"| {i['v2_tensor_rows_per_floor_request']:.1f} "
        f"| ≥ {t['v2_tensor_rows_per_floor_request']} | {mark[ok['v2_tensor_rows_per_floor_request']]} |",
        f"| logs on / off, req/s | {i['logs_rps_ratio']:.3f} | ≥ {t['logs_rps_ratio']} "
        f"| {mark[ok['logs_rps_ratio']]} |",
        f"| logs on / off, CPU per request | {i['logs_cpu_ratio']:.3f} "
        f"| ≤ {1 / t['logs_rps_ratio']:.3f} | — |",
        f"| logs on / off, req/s while sharing the core | {i['logs_side_by_side_rps_ratio']:.3f} | — | — |",
    ]


if __name__ == "__main__":
    sys.exit(main())
