"""Two auth replicas on the kind cluster share their state through Valkey (issue 18; k8s/valkey.yaml and
k8s/values-kind.yaml). Each pod is reached on its own with `kubectl port-forward`, so "issued on one pod,
redeemed on the other" is certain rather than left to the Service's load balancing.

The outage test scales Valkey to zero and back; it restores the store and waits for logins to work before
it ends, so the tests after it find the release as before (minus the sessions a store without persistence
loses).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

BASE_URL = os.environ.get("E2E_BASE_URL", "http://modelberth.local").rstrip("/")
NAMESPACE = os.environ.get("E2E_NAMESPACE", "modelberth")
RELEASE = os.environ.get("E2E_RELEASE", "modelberth")
STORE = "modelberth-valkey"


def kubectl(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def _credentials() -> dict[str, str]:
    username, password = os.environ.get("E2E_USERNAME", ""), os.environ.get("E2E_PASSWORD", "")
    assert username, "E2E_USERNAME is not set: the e2e workflow exports it (see .github/workflows/e2e.yml)"
    assert password, "E2E_PASSWORD is not set: the e2e workflow exports it"
    return {"username": username, "password": password}


def _auth_pods() -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=auth"
    pods = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json"))["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


@contextmanager
def port_forward(pod: str) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` forwarded to ``pod``'s port 8001 until the block ends."""
    process = subprocess.Popen(
        ["kubectl", "-n", NAMESPACE, "port-forward", f"pod/{pod}", ":8001"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"port-forward to {pod} said {line!r}"
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def pods() -> Iterator[tuple[str, str]]:
    running = _auth_pods()
    assert len(running) == 2, [p["metadata"]["name"] for p in running]
    a, b = (p["metadata"]["name"] for p in running)
    with port_forward(a) as url_a, port_forward(b) as url_b:
        yield url_a, url_b


def _refresh(url: str, token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token}
    return httpx.post(url + "/oauth/token", data=data, timeout=15)


def test_both_replicas_are_ready_on_the_shared_store(pods: tuple[str, str]) -> None:
    for url in pods:
        ready = httpx.get(url + "/readyz", timeout=15)
        assert ready.status_code == 200, ready.text
        assert ready.json()["state"] == "shared"


def test_a_session_moves_between_pods_and_a_replay_ends_it_on_both(pods: tuple[str, str]) -> None:
    a, b = pods
    login = httpx.post(a + "/auth/login", json=_credentials(), timeout=15)
    assert login.status_code == 200, login.text
    first = login.json()["refresh_token"]
    moved = _refresh(b, first)  # issued by one pod, redeemed on the other
    assert moved.status_code == 200, moved.text
    second = moved.json()["refresh_token"]
    replay = _refresh(a, first)
    assert replay.status_code == 400
    assert replay.json()["error_description"] == "refresh token was already used; the session is revoked"
    for url in (a, b):
        assert _refresh(url, second).json()["error_description"] == "refresh token was revoked"
    revoked_elsewhere = httpx.post(b + "/auth/login", json=_credentials(), timeout=15).json()["refresh_token"]
    assert httpx.post(b + "/oauth/revoke", data={"token": revoked_elsewhere}, timeout=15).status_code == 200
    assert _refresh(a, revoked_elsewhere).json()["error_description"] == "refresh token was revoked"


def test_failed_logins_on_both_pods_add_up(pods: tuple[str, str]) -> None:
    body = {"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong password"}
    answers = [httpx.post(pods[i % 2] + "/auth/login", json=body, timeout=15).status_code for i in range(5)]
    assert answers == [401] * 5
    for url in pods:
        assert httpx.post(url + "/auth/login", json=body, timeout=15).status_code == 429


def _wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def test_a_store_outage_is_503_json_and_heals_by_itself() -> None:
    kubectl("-n", NAMESPACE, "scale", f"deployment/{STORE}", "--replicas=0")
    try:
        _wait(
            lambda: (
                not json.loads(
                    kubectl(
                        "-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=valkey", "-o", "json"
                    )
                )["items"]
            ),
            120,
            "the store's pod to go",
        )
        with httpx.Client(base_url=BASE_URL, timeout=15) as client:
            login = client.post("/auth/login", json=_credentials())
            assert login.status_code == 503, login.text
            assert login.json() == {"detail": "the session store is unavailable; try again later"}
            assert int(login.headers["retry-after"]) >= 1
            assert client.get("/.well-known/jwks.json").status_code == 200
        # Readiness leaves the store out: both pods stay in the Service (JWKS for inference, 503 + Retry-After
        # for the rest) rather than the ingress answering with its own error page.
        ready = kubectl(
            "-n", NAMESPACE, "get", "deployment", f"{RELEASE}-auth", "-o", "jsonpath={.status.readyReplicas}"
        )
        assert ready == "2"
    finally:
        kubectl("-n", NAMESPACE, "scale", f"deployment/{STORE}", "--replicas=1")
        kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{STORE}", "--timeout=5m", timeout=330)
    _wait(
        lambda: httpx.post(BASE_URL + "/auth/login", json=_credentials(), timeout=15).status_code == 200,
        90,
        "logins to work again without restarting auth",
    )
