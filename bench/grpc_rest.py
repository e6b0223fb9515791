"""gRPC vs REST, single row, one closed-loop client for both (``make bench``: ``python -m bench.grpc_rest``).

One inference process (HTTP and gRPC listeners in it) pinned to CPU 0; ``h2load`` (nghttp2) pinned to CPU 1
is the client for both: HTTP/2 (h2c) for gRPC, ``--h1`` for REST, 16 connections, one request in flight
per connection (closed loop, as wrk does). The same iris row goes as the OIP's V2 inference request both
ways (four FP64 inputs of shape [1]), with a real ES256 token on every request. Rounds alternate the two,
so both see the same noise on this shared machine (``uptime`` is recorded).

h2load counts an HTTP 200 as success, and a gRPC error is an HTTP 200 with a non-zero ``grpc-status``
trailer: the run checks the body once with a real gRPC client, and after each gRPC run that the server
counted as many successful ModelInfer calls as h2load did.

Writes ``bench/results/grpc.json`` and ``bench/results/grpc.md``. Needs ``h2load`` (Debian's
``nghttp2-client``) and ``taskset``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from bench.inference import (
    CONNECTIONS,
    LOAD_CPU,
    RESULTS,
    ROW,
    SERVER_CPU,
    cpu_seconds,
    make_keys,
    server,
)
from testkit.artifacts import write_tiny_artifact  # the same small real iris Pipeline the tests serve
from testkit.services import free_port

MODEL = "iris"
INFER = "/inference.GRPCInferenceService/ModelInfer"
TARGET = {"grpc_over_rest_rps": 1.0}
"""Issue 17: gRPC single row >= REST single row under the same closed-loop client."""


def grpc_body() -> bytes:
    """One length-prefixed gRPC message: the row as four FP64 inputs (tritonclient's messages, the same
    bytes as the server's own)."""
    from tritonclient.grpc import service_pb2 as spb

    request = spb.ModelInferRequest(model_name=MODEL)
    for name, value in ROW.items():
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[1])
        tensor.contents.fp64_contents.append(value)
    message: bytes = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def rest_body() -> bytes:
    """The same row as a V2 REST request."""
    inputs = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]} for name, value in ROW.items()
    ]
    return json.dumps({"inputs": inputs}).encode()


def check_grpc(target: str, token: str) -> str:
    """One call with a real gRPC client (the body the load sends); the predicted label."""
    import grpc
    from tritonclient.grpc import service_pb2 as spb

    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INFER)
        raw = call(grpc_body()[5:], metadata=(("authorization", f"Bearer {token}"),), timeout=10)
    answer = spb.ModelInferResponse.FromString(raw)
    assert answer.outputs[0].name == "predict", answer
    label: str = answer.raw_output_contents[0][4:].decode()  # one BYTES element: 4-byte length, then it
    return label


def ok_calls(base_url: str) -> float:
    """ModelInfer calls the server answered OK so far (its request counter)."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    key = f'modelberth_inference_requests_total{{method="POST",route="{INFER}",status="2xx"}}'
    for line in text.splitlines():
        if line.startswith(key):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_h2load(
    url: str, body: Path | None, headers: list[str], seconds: int, work: Path, *, h1: bool
) -> dict[str, Any]:
    """One h2load run pinned to the load CPU: requests/s, p50/p99 (ms, from its per-request log), failures."""
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-c", str(CONNECTIONS), "-m", "1", "-D", str(seconds)]
    cmd += [*(["-d", str(body)] if body else []), "--log-file", str(log), *(["--h1"] if h1 else [])]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not done or not codes:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    # --log-file: one line per request, "<start µs>\t<status>\t<duration µs>"
    durations = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    succeeded = int(done.group(3))

    def pct(q: float) -> float:
        return round(durations[min(len(durations) - 1, int(q * len(durations)))] / 1e3, 2)

    return {
        "rps": round(succeeded / seconds, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "succeeded": succeeded,
        "failed": int(done.group(4)),
        "non_2xx": sum(int(codes.group(i)) for i in (2, 3, 4)),
    }


def measure(
    base_url: str, grpc_port: int, pid: int, token: str, work: Path, seconds: int, rounds: int
) -> dict[str, Any]:
    """Alternate gRPC and REST runs (order flipped every round), a short warm-up before each; the server's
    CPU time per request too, which other processes on the machine do not move."""
    bodies = {"grpc": work / "grpc.bin", "rest": work / "rest.json"}
    bodies["grpc"].write_bytes(grpc_body())
    bodies["rest"].write_bytes(rest_body())
    auth = f"authorization: Bearer {token}"
    runs: dict[str, tuple[str, list[str], bool]] = {
        "grpc": (
            f"http://127.0.0.1:{grpc_port}{INFER}",
            [auth, "content-type: application/grpc", "te: trailers"],
            False,
        ),
        "rest": (f"{base_url}/v2/models/{MODEL}/infer", [auth, "content-type: application/json"], True),
    }
    # The transports alone: the liveness call of each (no token, no model), for their CPU per request.
    (work / "empty.bin").write_bytes(b"\x00\x00\x00\x00\x00")
    bodies["grpc_live"] = bodies["rest_live"] = work / "empty.bin"
    runs["grpc_live"] = (
        f"http://127.0.0.1:{grpc_port}/inference.GRPCInferenceService/ServerLive",
        ["content-type: application/grpc", "te: trailers"],
        False,
    )
    runs["rest_live"] = (f"{base_url}/v2/health/live", [], True)
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in runs}
    for i in range(rounds):
        order = ("grpc", "rest", "grpc_live", "rest_live")
        for kind in order if i % 2 == 0 else order[::-1]:
            url, headers, h1 = runs[kind]
            body = None if kind == "rest_live" else bodies[kind]  # a GET
            run_h2load(url, body, headers, 1, work, h1=h1)  # warm-up
            before, cpu = ok_calls(base_url), cpu_seconds(pid)
            result = run_h2load(url, body, headers, seconds, work, h1=h1)
            result["cpu_ms_per_request"] = round(
                (cpu_seconds(pid) - cpu) * 1e3 / max(result["succeeded"], 1), 4
            )
            if kind == "grpc":
                counted = ok_calls(base_url) - before
                if counted < result["succeeded"]:
                    raise RuntimeError(f"h2load saw {result['succeeded']} OK, the server only {counted:.0f}")
            results[kind].append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each measured run")
    parser.add_argument("--rounds", type=int, default=4, help="gRPC/REST pairs; the median is kept")
    args = parser.parse_args(argv)
    for tool, package in (("h2load", "nghttp2-client"), ("taskset", "util-linux")):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y {package}", file=sys.stderr)
            return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="modelberth-bench-grpc-") as tmp:
        work = Path(tmp)
        write_tiny_artifact(work / "models", rows=150)
        token, jwks_site = make_keys(work)
        jwks_port, http_port, grpc_port = free_port(), free_port(), free_port()
        py = sys.executable
        jwks = subprocess.Popen(
            [py, "-m", "http.server", str(jwks_port), "--bind", "127.0.0.1", "--directory", str(jwks_site)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            env = {
                "INFERENCE_AUTH_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
                "INFERENCE_MODEL_DIR": str(work / "models"),
                "INFERENCE_GRPC_PORT": str(grpc_port),
                "MODELBERTH_STATE_DIR": str(work / "state"),
            }
            base = f"http://127.0.0.1:{http_port}"
            argv_ = [py, "-m", "modelberth_cli", "serve", "inference", "--port", str(http_port)]
            with server(argv_, env, base + "/readyz", work / "inference.log") as pid:
                label = check_grpc(f"127.0.0.1:{grpc_port}", token)
                runs = measure(base, grpc_port, pid, token, work, args.seconds, args.rounds)
        finally:
            jwks.terminate()
            jwks.wait(10)
    results = summarise(runs)
    results["check"] = {"grpc_label": label}
    results["setup"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": load,
        "uptime_at_end": subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "server_cpu": SERVER_CPU,
        "load_cpu": LOAD_CPU,
        "client": f"h2load, {CONNECTIONS} connections, 1 request in flight each (gRPC: h2c, REST: --h1)",
        "seconds": args.seconds,
        "rounds": args.rounds,
        "request": "V2 infer, iris single row as four FP64 inputs of shape [1], ES256 bearer token",
    }
    (RESULTS / "grpc.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "grpc.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per transport, the gRPC/REST ratio and whether the target is met."""
    out: dict[str, Any] = {"runs": runs}
    for kind, items in runs.items():
        keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
        out[kind] = {key: round(median(r[key] for r in items), 4) for key in keys}
        out[kind]["failed"] = sum(r["failed"] + r["non_2xx"] for r in items)
    ratio = round(out["grpc"]["rps"] / out["rest"]["rps"], 3)
    out["grpc_over_rest_rps"] = ratio
    out["grpc_over_rest_rps_per_round"] = [
        round(g["rps"] / r["rps"], 3) for g, r in zip(runs["grpc"], runs["rest"], strict=True)
    ]
    out["grpc_over_rest_cpu_per_request"] = round(
        out["grpc"]["cpu_ms_per_request"] / out["rest"]["cpu_ms_per_request"], 3
    )
    out["target"] = TARGET
    out["met"] = ratio >= TARGET["grpc_over_rest_rps"]
    return out


def markdown(r: dict[str, Any]) -> str:
    """The results as a short Markdown report."""
    s = r["setup"]
    lines = [
        "# gRPC vs REST, single row (bench/grpc_rest.py)",
        "",
        f"{s['date']}; {s['client']}; server on CPU {s['server_cpu']}, client on CPU {s['load_cpu']};"
        f" {s['rounds']} rounds of {s['seconds']} s, medians. {s['request']}.",
        f"Machine shared: load average at start {' '.join(s['loadavg_at_start'])};"
        f" at the end `{s['uptime_at_end']}`.",
        "",
        "| transport | req/s | p50 ms | p99 ms | server CPU ms / request | failed |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "grpc": "gRPC ModelInfer (OIP V2, h2c)",
        "rest": "REST POST /v2/models/iris/infer (HTTP/1.1)",
        "grpc_live": "floor: gRPC ServerLive",
        "rest_live": "floor: REST GET /v2/health/live",
    }
    for kind, name in names.items():
        m = r[kind]
        lines.append(
            f"| {name} | {m['rps']:,.0f} | {m['p50_ms']} | {m['p99_ms']} | {m['cpu_ms_per_request']}"
            f" | {m['failed']} |"
        )
    verdict = "met" if r["met"] else "NOT met"
    lines += [
        "",
        f"gRPC / REST req/s: **{r['grpc_over_rest_rps']}** (target >= 1.0: {verdict}); per round:"
        f" {', '.join(map(str, r['grpc_over_rest_rps_per_round']))}.",
        f"gRPC / REST server CPU per request: {r['grpc_over_rest_cpu_per_request']}.",
        "",
        "Req/s is what each transport got of CPU 0 on a shared machine: gRPC's C core runs threads of its",
        "own, which the scheduler serves besides the event loop. The server's CPU per request is the cost:",
        "on an idle core of its own a transport's req/s would approach 1000 / (CPU ms per request).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
