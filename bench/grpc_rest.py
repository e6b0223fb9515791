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
    REPO,
    RESULTS,
    ROW,
    SERVER_CPU,
    free_port,
    make_keys,
    server,
)

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
    label: str = answer.outputs[0].contents.bytes_contents[0].decode()
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
    url: str, body: Path, headers: list[str], seconds: int, work: Path, *, h1: bool
) -> dict[str, Any]:
    """One h2load run pinned to the load CPU: requests/s, p50/p99 (ms, from its per-request log), failures."""
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-c", str(CONNECTIONS), "-m", "1", "-D", str(seconds)]
    cmd += ["-d", str(body), "--log-file", str(log), *(["--h1"] if h1 else [])]
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
    base_url: str, grpc_port: int, token: str, work: Path, seconds: int, rounds: int
) -> dict[str, Any]:
    """Alternate gRPC and REST runs (order flipped every round), a short warm-up before each."""
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
    results: dict[str, list[dict[str, Any]]] = {"grpc": [], "rest": []}
    for i in range(rounds):
        for kind in ("grpc", "rest") if i % 2 == 0 else ("rest", "grpc"):
            url, headers, h1 = runs[kind]
            run_h2load(url, bodies[kind], headers, 1, work, h1=h1)  # warm-up
            before = ok_calls(base_url)
            result = run_h2load(url, bodies[kind], headers, seconds, work, h1=h1)
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
    sys.path.insert(0, str(REPO))
    from conftest import write_tiny_artifact  # the same small real iris Pipeline the tests serve

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
            argv_ = [py, "-m", "modelberth_core.cli", "serve", "inference", "--port", str(http_port)]
            with server(argv_, env, base + "/readyz", work / "inference.log"):
                label = check_grpc(f"127.0.0.1:{grpc_port}", token)
                runs = measure(base, grpc_port, token, work, args.seconds, args.rounds)
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
        out[kind] = {key: median(r[key] for r in items) for key in ("rps", "p50_ms", "p99_ms")}
        out[kind]["failed"] = sum(r["failed"] + r["non_2xx"] for r in items)
    ratio = round(out["grpc"]["rps"] / out["rest"]["rps"], 3)
    out["grpc_over_rest_rps"] = ratio
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
        "| transport | req/s | p50 ms | p99 ms | failed |",
        "|---|---|---|---|---|",
    ]
    for kind, name in (("grpc", "gRPC (OIP V2, h2c)"), ("rest", "REST (V2 JSON, HTTP/1.1)")):
        m = r[kind]
        lines.append(f"| {name} | {m['rps']:,.0f} | {m['p50_ms']} | {m['p99_ms']} | {m['failed']} |")
    verdict = "met" if r["met"] else "NOT met"
    lines += ["", f"gRPC / REST req/s: **{r['grpc_over_rest_rps']}** (target >= 1.0: {verdict})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
