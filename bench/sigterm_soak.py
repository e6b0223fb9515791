"""SIGTERM soak (``make soak`` -> ``python -m bench.sigterm_soak``): does a stopping server lose requests?

For auth and for inference, each run starts a real ``modelberth serve <service>`` process, opens N keep-alive
connections (raw asyncio + h11, so the moment the last byte of a request reached the kernel is known exactly),
lets every client send requests back to back, sends SIGTERM at a random moment and keeps the clients going
until the server refuses them. Every request is then one of:

- ``answered``: a complete HTTP response came back (its status is kept; non-2xx answers are counted apart);
- ``refused``: the connection was refused or broke before the request was fully written (nothing was sent,
  so a client may retry anywhere: fine);
- ``lost``: fully written *before* SIGTERM and never answered (the defect this soak is about);
- ``closed_after_sigterm``: written after SIGTERM on a connection the server then closed without an answer.
  HTTP/1.1 lets a server close an idle connection at any time (RFC 9112 §9.6), so this race cannot be ruled
  out; a graceful server keeps it rare by answering ``Connection: close`` once it is stopping.

Inference runs use tokens from a real auth process (its JWKS); auth runs ask ``POST /oauth/token`` with client
credentials (argon2id per request). Results: ``bench/results/sigterm.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import h11
import httpx

from testkit.artifacts import write_tiny_artifact  # the small real iris Pipeline the tests serve
from testkit.services import free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
ROW = {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 4.1, "petal_width": 1.3}
ANSWER_TIMEOUT_SECONDS = 40.0
"""A written request unanswered this long (beyond uvicorn's 20 s grace) counts as lost."""


@dataclass
class Request:
    """One request on the wire; times are ``time.monotonic()`` seconds."""

    client: int
    connection: int
    written_at: float | None = None
    """When the last byte was handed to the kernel (None: never fully written)."""
    answered_at: float | None = None
    status: int | None = None
    error: str | None = None


@dataclass
class Target:
    """What the clients send: one HTTP request, repeated."""

    port: int
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class RunResult:
    """One SIGTERM run: the counts per outcome and the details of any lost request."""

    service: str
    clients: int
    load_seconds: float
    counts: dict[str, int]
    in_flight_at_sigterm: int
    """Requests written before SIGTERM and not answered by then (answered later, or lost)."""
    statuses: dict[str, int]
    exit_code: int | None = None
    stop_seconds: float | None = None
    lost: list[dict[str, Any]] = field(default_factory=list)
    closed_after_sigterm: list[dict[str, Any]] = field(default_factory=list)
    """When (ms after SIGTERM) and on which connection of its client each unanswered later request went."""


def classify(requests: list[Request], sigterm_at: float) -> dict[str, int]:
    """Count each request's outcome (see the module docstring)."""
    counts = Counter(dict.fromkeys(("answered", "refused", "lost", "closed_after_sigterm"), 0))
    for r in requests:
        if r.status is not None:
            counts["answered"] += 1
        elif r.written_at is None:
            counts["refused"] += 1
        elif r.written_at < sigterm_at:
            counts["lost"] += 1
        else:
            counts["closed_after_sigterm"] += 1
    return dict(counts)


async def _exchange(
    conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, t: Target, r: Request
) -> bool:
    """Send one request and read its answer into ``r``; True if the connection may be reused."""
    headers = [("host", f"127.0.0.1:{t.port}"), ("content-length", str(len(t.body))), *t.headers]
    wire = conn.send(h11.Request(method=t.method, target=t.path, headers=headers))
    wire += conn.send(h11.Data(data=t.body)) + conn.send(h11.EndOfMessage())
    writer.write(wire)
    await writer.drain()
    while writer.transport.get_write_buffer_size():  # drain() returns below the high-water mark
        await asyncio.sleep(0)
    r.written_at = time.monotonic()
    status = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await asyncio.wait_for(reader.read(65536), ANSWER_TIMEOUT_SECONDS)
            conn.receive_data(data)
            if not data and conn.their_state is not h11.DONE:
                raise ConnectionResetError("closed without an answer")
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            r.answered_at, r.status = time.monotonic(), status
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                return True
            return False


async def _client(
    index: int, target: Target, requests: list[Request], stop: asyncio.Event, think: float
) -> None:
    """Send requests on a keep-alive connection, pausing up to ``think`` seconds between them; reconnect
    when it closes, end when refused."""
    rng = random.Random(index)  # noqa: S311 - think times, not secrets
    for connection in range(10_000):
        if stop.is_set():
            return
        r = Request(index, connection)
        requests.append(r)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        except OSError as exc:
            r.error = type(exc).__name__
            return
        conn = h11.Connection(our_role=h11.CLIENT)
        try:
            while not stop.is_set():
                if not await _exchange(conn, reader, writer, target, r):
                    break
                if think:
                    await asyncio.sleep(rng.uniform(0, think))
                r = Request(index, connection)
                requests.append(r)
            else:
                requests.remove(r)  # created but never sent
                return
        except (OSError, TimeoutError, asyncio.IncompleteReadError, h11.ProtocolError) as exc:
            r.error = type(exc).__name__
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def soak_once(
    target: Target, pid: int, clients: int, load_seconds: float, service: str = "", think: float = 0.0
) -> tuple[RunResult, float]:
    """Load the server at ``target`` with ``clients`` connections, SIGTERM ``pid`` after ``load_seconds``,
    and classify every request once all clients have stopped. Returns the result and the SIGTERM time."""
    requests: list[Request] = []
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_client(i, target, requests, stop, think)) for i in range(clients)]
    await asyncio.sleep(load_seconds)
    sigterm_at = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    _, pending = await asyncio.wait(tasks, timeout=ANSWER_TIMEOUT_SECONDS + 5)
    stop.set()
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    counts = classify(requests, sigterm_at)
    in_flight = [r for r in requests if r.written_at is not None and r.written_at < sigterm_at]
    in_flight = [r for r in in_flight if r.answered_at is None or r.answered_at >= sigterm_at]
    lost = [
        {
            "client": r.client,
            "connection": r.connection,
            "written_ms_before_sigterm": round((sigterm_at - (r.written_at or 0)) * 1000, 2),
            "error": r.error,
        }
        for r in in_flight
        if r.status is None
    ]
    statuses = Counter(str(r.status) for r in requests if r.status is not None)
    result = RunResult(service, clients, round(load_seconds, 2), counts, len(in_flight), dict(statuses))
    result.lost = lost
    result.closed_after_sigterm = [
        {
            "client": r.client,
            "connection": r.connection,
            "written_ms_after_sigterm": round((r.written_at - sigterm_at) * 1000, 2),
            "error": r.error,
        }
        for r in requests
        if r.status is None and r.written_at is not None and r.written_at >= sigterm_at
    ]
    return result, sigterm_at


def modelberth(*args: str, env: dict[str, str]) -> str:
    """Run a ``modelberth`` command and return its stdout."""
    return subprocess.run(
        [sys.executable, "-m", "modelberth_cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


@contextlib.contextmanager
def serve(name: str, env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``modelberth serve NAME`` on a free port until ready; stopped by its PID when the block ends."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelberth_cli", "serve", name, "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def auth_target(port: int, creds: dict[str, str]) -> Target:
    """``POST /oauth/token`` with the client credentials grant."""
    body = urlencode({"grant_type": "client_credentials", **creds}).encode()
    return Target(port, "POST", "/oauth/token", [("content-type", "application/x-www-form-urlencoded")], body)


def inference_target(port: int, token: str) -> Target:
    """``POST /v1/models/iris/predict`` with one row and a bearer token."""
    body = json.dumps({"instances": [ROW]}).encode()
    headers = [("content-type", "application/json"), ("authorization", f"Bearer {token}")]
    return Target(port, "POST", "/v1/models/iris/predict", headers, body)


def run_soak(
    runs: int, clients: int, services: list[str], seed: int, work: Path, think: float = 0.0
) -> list[RunResult]:
    """``runs`` SIGTERM runs per service, each on a fresh process."""
    rng = random.Random(seed)  # noqa: S311 - SIGTERM moments, not secrets
    results: list[RunResult] = []
    key_env = {"MODELBERTH_STATE_DIR": str(work / "keys-state")}
    soak_env = {"MODELBERTH_STATE_DIR": str(work / "auth-state")}
    model_dir = work / "models"
    write_tiny_artifact(model_dir)
    predictor = json.loads(modelberth("clients", "add", "soak", "--json", "--scope", "predict", env=key_env))
    tokens = json.loads(modelberth("clients", "add", "soak", "--json", env=soak_env))
    with serve("auth", key_env, work / "auth-keys.log") as (_, key_port):
        auth_url = f"http://127.0.0.1:{key_port}"
        inference_env = {
            "INFERENCE_MODEL_DIR": str(model_dir),
            "INFERENCE_AUTH_JWKS_URL": auth_url + "/.well-known/jwks.json",
            "MODELBERTH_STATE_DIR": str(work / "inference-state"),
            "INFERENCE_GRPC_PORT": "0",  # the soak drives REST; 8012 may be taken by a local stack
        }
        for service in services:
            for run in range(runs):
                env = inference_env if service == "inference" else soak_env
                with serve(service, env, work / f"{service}.log") as (process, port):
                    if service == "inference":
                        form = {"grant_type": "client_credentials", **predictor}
                        token = httpx.post(auth_url + "/oauth/token", data=form).json()["access_token"]
                        target = inference_target(port, token)
                    else:
                        target = auth_target(port, tokens)
                    load = rng.uniform(1.0, 2.5)
                    result, sigterm_at = asyncio.run(
                        soak_once(target, process.pid, clients, load, service, think)
                    )
                    try:
                        result.exit_code = process.wait(30)
                    except subprocess.TimeoutExpired:
                        result.exit_code = None
                    result.stop_seconds = round(time.monotonic() - sigterm_at, 2)
                results.append(result)
                c = result.counts
                print(
                    f"{service} run {run + 1}/{runs}: answered {c['answered']}, in flight at SIGTERM "
                    f"{result.in_flight_at_sigterm}, LOST {c['lost']}, closed after SIGTERM "
                    f"{c['closed_after_sigterm']}, refused {c['refused']}, exit {result.exit_code} "
                    f"after {result.stop_seconds} s",
                    flush=True,
                )
    return results


def summarise(results: list[RunResult]) -> dict[str, Any]:
    """Totals per service over all runs."""
    summary: dict[str, Any] = {}
    for service in sorted({r.service for r in results}):
        runs = [r for r in results if r.service == service]
        total: Counter[str] = Counter()
        for r in runs:
            total.update(r.counts)
        non_2xx = sum(n for r in runs for status, n in r.statuses.items() if not status.startswith("2"))
        summary[service] = {
            "runs": len(runs),
            "runs_with_loss": sum(1 for r in runs if r.counts["lost"]),
            "in_flight_at_sigterm": sum(r.in_flight_at_sigterm for r in runs),
            **dict(total),
            "answered_non_2xx": non_2xx,
            "bad_exits": sum(1 for r in runs if r.exit_code not in (0, -signal.SIGTERM)),
            "max_stop_seconds": max(r.stop_seconds or 0.0 for r in runs),
        }
    return summary


def markdown(doc: dict[str, Any]) -> str:
    """The results as a short Markdown report."""
    setup = doc["setup"]
    pace = f"pausing up to {setup['think_ms']:g} ms between requests" if setup["think_ms"] else "back to back"
    lines = [
        "# SIGTERM soak",
        "",
        f"{setup['date']}; {setup['runs']} runs per service, {setup['clients']} keep-alive clients "
        f"{pace}, SIGTERM 1.0–2.5 s into the load "
        f"(seed {setup['seed']}); {setup['note']}",
        "",
        "A request is **lost** when its last byte reached the server's kernel before SIGTERM and no answer "
        "ever came. *In flight* counts requests written before SIGTERM and not yet answered at that moment.",
        "",
        "| service | runs | runs with loss | in flight at SIGTERM | lost | answered | non-2xx | closed after "
        "SIGTERM | refused | max stop s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for service, s in doc["summary"].items():
        lines.append(
            f"| {service} | {s['runs']} | {s['runs_with_loss']} | {s['in_flight_at_sigterm']} | "
            f"**{s['lost']}** | {s['answered']} | {s['answered_non_2xx']} | {s['closed_after_sigterm']} | "
            f"{s['refused']} | {s['max_stop_seconds']} |"
        )
    lines += ["", "| service | run | in flight | lost | closed after SIGTERM | exit | stop s |"]
    lines.append("|---|---|---|---|---|---|---|")
    for i, r in enumerate(doc["runs"]):
        lines.append(
            f"| {r['service']} | {i % setup['runs'] + 1} | {r['in_flight_at_sigterm']} "
            f"| {r['counts']['lost']} | {r['counts']['closed_after_sigterm']} | {r['exit_code']} "
            f"| {r['stop_seconds']} |"
        )
    lines += ["", "Command: `make soak` (or `uv run python -m bench.sigterm_soak`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the soak, write the results, exit 1 if any request was lost."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="SIGTERM runs per service (default 20)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent keep-alive clients (default 50)")
    parser.add_argument(
        "--services", default="auth,inference", help="comma-separated (default auth,inference)"
    )
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="each client pauses up to this long between requests"
    )
    parser.add_argument("--seed", type=int, default=13, help="seed of the SIGTERM moments")
    parser.add_argument("--name", default="sigterm", help="results file stem in bench/results/")
    parser.add_argument("--note", default="", help="a line on what was measured (goes into the report)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelberth-soak-") as tmp:
        services = args.services.split(",")
        results = run_soak(args.runs, args.clients, services, args.seed, Path(tmp), args.think_ms / 1000)
    summary = summarise(results)
    doc: dict[str, Any] = {
        "setup": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": args.runs,
            "clients": args.clients,
            "seed": args.seed,
            "think_ms": args.think_ms,
            "note": args.note,
        },
        "summary": summary,
        "runs": [asdict(r) for r in results],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    report = markdown(doc)
    (RESULTS / f"{args.name}.md").write_text(report, encoding="utf-8")
    print(report)
    return 1 if any(s["lost"] for s in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
