"""Issue 17 with KServe's own clients: ``kserve.InferenceRESTClient`` (V2) and ``kserve.InferenceGRPCClient``
against a real inference process (REST and gRPC listeners, real bearer tokens checked against a JWKS).

``kserve`` pins pandas, psutil and python-dateutil below the workspace's lock, so, like checkov in
``charts/tests/test_security_scans.py``, it runs in its own environment: ``uv run --isolated --no-project
--with-requirements clients/kserve-requirements.txt`` (every package pinned; regenerate with
``echo kserve==X | uv pip compile - --python-version 3.11 -o clients/kserve-requirements.txt``). The
client script, ``clients/kserve_client.py``, prints one JSON report this test asserts on. The first run
installs that environment (3 s here, even with an empty uv cache); later runs reuse uv's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

CLIENTS = Path(__file__).resolve().parent / "clients"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def _run_kserve_client(rest_url: str, grpc_target: str, token: str) -> dict[str, Any]:
    uv = shutil.which("uv")
    assert uv, "uv runs KServe's client in its own environment: install uv"
    done = subprocess.run(
        [uv, "run", "--quiet", "--isolated", "--no-project",
         "--with-requirements", str(CLIENTS / "kserve-requirements.txt"),
         "python", str(CLIENTS / "kserve_client.py"), rest_url, grpc_target, "iris"],
        input=json.dumps(ROWS), capture_output=True, text=True, timeout=600, check=False,
        env={**_uv_env(), "KSERVE_CLIENT_TOKEN": token},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _uv_env() -> dict[str, str]:
    """The test's environment without the workspace's virtualenv, so uv builds kserve's own."""
    return {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT"}}


def test_kserve_clients_over_rest_and_grpc_agree_with_v1(
    start_service: Callable[..., Any],
    tiny_model_dir: Path,
    jwks_url: str,
    signer: Any,
    port_factory: Callable[[], int],
) -> None:
    grpc_port = port_factory()
    inference = start_service(
        "inference",
        env={
            "INFERENCE_MODEL_DIR": str(tiny_model_dir),
            "INFERENCE_AUTH_JWKS_URL": jwks_url,
            "INFERENCE_POLL_SECONDS": "0",
            "INFERENCE_GRPC_PORT": str(grpc_port),
        },
        timeout=180.0,
    )
    token = signer.token("predict models:read")
    v1 = httpx.post(
        f"{inference.url}/v1/models/iris/predict",
        json={"instances": [dict(zip(FEATURES, row, strict=True)) for row in ROWS]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )
    assert v1.status_code == 200, v1.text
    labels = v1.json()["predictions"]
    probabilities = [list(row.values()) for row in v1.json()["probabilities"]]  # in the model's class order

    report = _run_kserve_client(inference.url, f"127.0.0.1:{grpc_port}", token)
    rest, grpc = report["rest"], report["grpc"]

    for side in (rest, grpc):
        assert side["live"] is True
        assert side["server_ready"] is True
        assert side["model_ready"] is True
        assert side["metadata"]["name"] == "iris"
        assert [t["name"] for t in side["metadata"]["inputs"]] == FEATURES
        assert {t["datatype"] for t in side["metadata"]["inputs"]} == {"FP64"}
    assert rest["unknown_model_ready"] is False
    assert grpc["unknown_model_ready"]["code"] == "NOT_FOUND"

    # One [N, 4] FP64 tensor: JSON and binary over REST, raw bytes and typed contents over gRPC: V1's answer.
    for answer in (rest["infer"], rest["infer_binary"], grpc["infer"], grpc["infer_json_contents"]):
        assert answer["predict"] == labels
        assert answer["predict_proba"] == probabilities
    # No outputs requested: the labels (this server's default; OIP's default would be every output).
    assert rest["infer_default_outputs"]["predict"] == labels
    assert grpc["infer_default_outputs"]["predict"] == labels

    assert rest["errors"]["unknown_model"]["status"] == 404
    assert rest["errors"]["unknown_model"]["content_type"] == "application/json"
    assert "no-such-model" in rest["errors"]["unknown_model"]["message"]
    assert rest["errors"]["no_token"]["status"] == 401
    assert grpc["errors"]["unknown_model"]["code"] == "NOT_FOUND"
    assert "no-such-model" in grpc["errors"]["unknown_model"]["message"]
    assert grpc["errors"]["no_token"]["code"] == "UNAUTHENTICATED"
    assert "Traceback" not in inference.logs()
