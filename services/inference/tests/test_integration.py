"""The real thing: the auth process issues tokens, the inference process verifies them against auth's JWKS
and serves a real artifact; reload under concurrent load; auth going down."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from modelberth_core import contract

pytestmark = pytest.mark.integration

ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.2, "sepal_width": 2.9, "petal_length": 4.3, "petal_width": 1.3},
    {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3},
]


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "modelberth_cli", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def _client(name: str, *scopes: str) -> dict[str, str]:
    argv = ["clients", "add", name, "--json"]
    for scope in scopes:
        argv += ["--scope", scope]
    creds: dict[str, str] = json.loads(_cli(*argv))
    return creds


def _token(auth_url: str, creds: dict[str, str]) -> str:
    response = httpx.post(
        auth_url + "/oauth/token",
        data={"grant_type": "client_credentials", **creds},
        timeout=10.0,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _stack(start_service: Callable[..., Any], tiny_model_dir: Path) -> dict[str, Any]:
    """auth + inference as real processes, and client credentials for an admin and a reader."""
    admin = _client("admin", "predict", "models:read", "models:admin")
    reader = _client("reader", "models:read")
    auth = start_service("auth", timeout=180.0)
    inference = start_service(
        "inference",
        env={
            "INFERENCE_MODEL_DIR": str(tiny_model_dir),
            "INFERENCE_AUTH_JWKS_URL": auth.url + "/.well-known/jwks.json",
            "INFERENCE_POLL_SECONDS": "0.2",
        },
        timeout=180.0,  # imports take seconds on a busy shared machine
    )
    return {
        "auth": auth,
        "inference": inference,
        "admin": admin,
        "reader": reader,
        "model_dir": tiny_model_dir,
    }


def check_predictions_equal_the_pipeline(stack: dict[str, Any]) -> None:
    url, model_dir = stack["inference"].url, stack["model_dir"]
    token = _token(stack["auth"].url, stack["admin"])
    response = httpx.post(url + "/v1/models/iris/predict", json={"instances": ROWS}, headers=_bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    version_dir = model_dir / "iris" / str(contract.resolve_latest(model_dir, "iris"))
    pipeline = joblib.load(version_dir / contract.MODEL_FILE)
    frame = pd.DataFrame(ROWS)
    assert body["predictions"] == [str(p) for p in pipeline.predict(frame)]
    got = np.array([list(p.values()) for p in body["probabilities"]])
    np.testing.assert_allclose(got, pipeline.predict_proba(frame), rtol=1e-12)
    v2 = httpx.post(
        url + "/v2/models/iris/infer",
        json={
            "inputs": [
                {"name": k, "shape": [3], "datatype": "FP64", "data": [r[k] for r in ROWS]} for k in ROWS[0]
            ],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        },
        headers=_bearer(token),
    )
    assert v2.status_code == 200
    assert v2.json()["outputs"][0]["data"] == body["predictions"]
    metrics = httpx.get(url + "/metrics").text
    assert "modelberth_inference_predictions_total{" in metrics
    assert (
        'modelberth_inference_requests_total{method="POST",route="/v1/models/{name}/predict",'
        'status="2xx"} 1.0' in metrics
    )


def check_auth_failures(stack: dict[str, Any]) -> None:
    url = stack["inference"].url
    predict = url + "/v1/models/iris/predict"
    reader = _token(stack["auth"].url, stack["reader"])
    admin = _token(stack["auth"].url, stack["admin"])
    missing = httpx.post(predict, json=ROWS[0])
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    scoped = httpx.post(predict, json=ROWS[0], headers=_bearer(reader))
    assert scoped.status_code == 403
    assert scoped.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="predict"'
    assert httpx.get(url + "/v1/models/iris", headers=_bearer(reader)).status_code == 200
    assert httpx.post(url + "/v1/models/iris/reload", headers=_bearer(reader)).status_code == 403
    head, payload, signature = admin.split(".")
    forged = f"{head}.{payload[:-4]}AAAA.{signature}"
    assert httpx.post(predict, json=ROWS[0], headers=_bearer(forged)).status_code == 401
    assert httpx.post(predict, json=ROWS[0], headers=_bearer(admin[:-6] + "AAAAAA")).status_code == 401
    assert httpx.post(predict, json=ROWS[0], headers=_bearer(admin)).status_code == 200


def check_cached_keys_keep_serving_when_auth_goes_down(stack: dict[str, Any]) -> None:
    url = stack["inference"].url
    used = _token(stack["auth"].url, stack["admin"])
    fresh = _token(stack["auth"].url, stack["admin"])  # never seen by inference before auth stops
    assert httpx.post(url + "/v1/models/iris/predict", json=ROWS[0], headers=_bearer(used)).status_code == 200
    stack["auth"].stop()
    for token in (used, fresh):
        response = httpx.post(url + "/v1/models/iris/predict", json=ROWS[0], headers=_bearer(token))
        assert response.status_code == 200, response.text
    assert httpx.get(url + "/readyz").status_code == 200


def check_reload_under_concurrent_load(stack: dict[str, Any], artifact_factory: Callable[..., Path]) -> None:
    url, model_dir = stack["inference"].url, stack["model_dir"]
    token = _token(stack["auth"].url, stack["admin"])
    old = str(contract.resolve_latest(model_dir, "iris"))
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=url, headers=_bearer(token), timeout=30.0) as http:
            while not stop.is_set():
                response = http.post("/v1/models/iris/predict", json={"instances": ROWS})
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions[response.json()["version"]] += 1

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        new = artifact_factory(model_dir, rows=90).name  # picked up by polling
        deadline = time.monotonic() + 30
        while versions[new] == 0:
            assert time.monotonic() < deadline, "the new version never served"
            time.sleep(0.1)
        # Publish a version that is broken already: tampering after publishing would race the 0.2 s poller,
        # which could load the version intact in between. (One second on, so its name cannot be new's.)
        staged = artifact_factory(model_dir.parent / "staging", now=datetime.now(UTC) + timedelta(seconds=1))
        with (staged / contract.MODEL_FILE).open("ab") as fh:
            fh.write(b"tampered")
        broken = staged.rename(model_dir / "iris" / staged.name)
        contract.set_latest(model_dir, "iris", broken.name)
        reload = httpx.post(url + "/v1/models/iris/reload", headers=_bearer(token), timeout=30.0)
        assert reload.status_code == 409
        contract.set_latest(model_dir, "iris", old)  # roll back by moving the pointer, then reload by POST
        reload = httpx.post(url + "/v1/models/iris/reload", headers=_bearer(token), timeout=30.0)
        assert reload.json()["version"] == old
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert set(statuses) == {200}, statuses
    assert versions[old] > 0
    assert versions[new] > 0
    assert broken.name not in versions
    metrics = httpx.get(url + "/metrics").text
    failures = re.search(
        r'^modelberth_inference_model_load_failures_total\{model="iris"\} (\S+)$', metrics, re.M
    )
    assert failures is not None
    assert float(failures.group(1)) >= 1.0  # the poller may have tried the broken version too
    assert "model load failed; previous version keeps serving" in stack["inference"].logs()


def test_real_auth_and_inference_processes(
    start_service: Callable[..., Any], tiny_model_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    """One stack for every scenario (starting processes is the slow part); auth goes down last."""
    stack = _stack(start_service, tiny_model_dir)
    check_predictions_equal_the_pipeline(stack)
    check_auth_failures(stack)
    check_reload_under_concurrent_load(stack, artifact_factory)
    check_cached_keys_keep_serving_when_auth_goes_down(stack)
