"""The registry store as a user meets it (issue 15's "Done when"), with real processes only.

``modelberth train --dataset iris --out oci://127.0.0.1:PORT/mb`` pushes; the registry's own tag list shows
the version and ``champion``; ``modelberth serve inference --model-dir oci://...`` serves it; a second,
better run moves ``champion`` and the running inference answers with it within its poll interval;
``modelberth models rollback`` moves it back, and the inference follows again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.registry import Registry

pytestmark = pytest.mark.integration

POLL_SECONDS = 1.0
LOAD_SECONDS = 15.0
"""Budget for fetching and loading a version once the poll saw it (a busy 2-core machine)."""


def _modelberth(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelberth_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def jwks_url(signer: Any) -> Iterator[str]:
    """The signer's public keys served the way auth serves them (no auth process needed here)."""
    body = json.dumps(signer.keys.as_dict(private=False)).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


def _served_version(url: str, headers: dict[str, str]) -> str:
    """The version that answers a prediction (its own first example row)."""
    response = httpx.post(f"{url}/v1/models/iris/examples/0/predict", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def _wait_for(url: str, headers: dict[str, str], version: str, since: float) -> float:
    deadline = since + POLL_SECONDS + LOAD_SECONDS
    while time.monotonic() < deadline:
        if _served_version(url, headers) == version:
            return time.monotonic() - since
        time.sleep(0.1)
    raise AssertionError(f"inference still answers with {_served_version(url, headers)}, not {version}")


def test_train_push_serve_promote_and_roll_back_through_a_registry(
    oci_registry: Registry,
    tmp_path: Path,
    start_service: Callable[..., Any],
    signer: Any,
    jwks_url: str,
) -> None:
    store = oci_registry.location("mb")
    env = {**os.environ, "MODELBERTH_REGISTRY_CACHE": str(tmp_path / "cache")}
    fast = ["--time-budget", "4", "--candidates", "logistic"]

    # 1. Train and push. The first run sees the sepals only: it becomes champion (a first version).
    first = _modelberth(
        "train",
        "--dataset",
        "iris",
        "--out",
        store,
        "--drop",
        "petal_length_cm",
        "petal_width_cm",
        *fast,
        env=env,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    tags = httpx.get(f"{oci_registry.url}/v2/mb/iris/tags/list", timeout=5).json()["tags"]
    versions = [t for t in tags if t[:1].isdigit()]
    assert len(versions) == 1
    assert {"champion", "latest"} <= set(tags)
    v1 = versions[0]

    # 2. Serve from the registry (its own cache dir, as a pod's emptyDir).
    inference = start_service(
        "inference",
        env={
            "INFERENCE_STORE": store,
            "INFERENCE_CACHE_DIR": str(tmp_path / "inference-cache"),
            "INFERENCE_AUTH_JWKS_URL": jwks_url,
            "INFERENCE_POLL_SECONDS": str(POLL_SECONDS),
        },
        timeout=120.0,
    )
    headers = signer.headers()
    assert _served_version(inference.url, headers) == v1
    listing = _modelberth("models", "list", "--store", store, "--json", env=env)
    assert json.loads(listing.stdout)["models"][0]["aliases"]["champion"] == v1

    # 3. A better run (all four features) is promoted by the gate; the running inference follows.
    second = _modelberth("train", "--dataset", "iris", "--out", store, *fast, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    moved = time.monotonic()
    history = json.loads(_modelberth("models", "history", "iris", "--store", store, "--json", env=env).stdout)
    v2 = history["aliases"]["champion"]
    assert v2 != v1
    assert {v["version"]: v["score"] for v in history["versions"]}[v2] > {
        v["version"]: v["score"] for v in history["versions"]
    }[v1]
    _wait_for(inference.url, headers, v2, moved)

    # 4. Roll back: champion names v1 again, and inference answers with it without a restart.
    rollback = _modelberth("models", "rollback", "iris", "--store", store, env=env)
    assert rollback.returncode == 0, rollback.stderr
    assert f"{v2} -> {v1}" in rollback.stdout
    _wait_for(inference.url, headers, v1, time.monotonic())
    events = json.loads(_modelberth("models", "history", "iris", "--store", store, "--json", env=env).stdout)[
        "events"
    ]
    assert [(e["alias"], e["reason"]) for e in events if e["alias"] == "champion"] == [
        ("champion", "gate"),
        ("champion", "gate"),
        ("champion", "rollback"),
    ]
    assert all(e["digest"].startswith("sha256:") for e in events)
    assert inference.process.poll() is None  # the same process all along
