"""Issue 13 against a real inference process (``modelberth serve inference`` under uvicorn, a real JWKS over
HTTP, real bearer tokens): a full disk under the prediction log, a log path that cannot work, malformed
bodies on one keep-alive connection, a real OIP client (tritonclient) and a contract fuzzer (schemathesis,
``--checks all``) that must find nothing."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
V2 = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}
SCHEMATHESIS_SEED = 1
SCHEMATHESIS_MAX_EXAMPLES = 25
"""Per operation; the run takes about 20 s here (seeded: the same requests every time)."""


def _env(model_dir: Path, jwks_url: str, **settings: str) -> dict[str, str]:
    return {
        "INFERENCE_MODEL_DIR": str(model_dir),
        "INFERENCE_AUTH_JWKS_URL": jwks_url,
        "INFERENCE_POLL_SECONDS": "0",
        **{f"INFERENCE_{key.upper()}": value for key, value in settings.items()},
    }


def _until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def _sample(metrics: str, series: str) -> float | None:
    match = re.search("^" + re.escape(series) + r" (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else None


def test_a_full_disk_under_the_prediction_log_fails_no_prediction(
    start_service: Callable[..., Any], tiny_model_dir: Path, full_disk: Any, jwks_url: str, signer: Any
) -> None:
    path = full_disk.path / "predictions.jsonl"
    inference = start_service(
        "inference", env=_env(tiny_model_dir, jwks_url, prediction_log=str(path)), timeout=180.0
    )
    headers = signer.headers(sub="batch-job", client_id="batch-job")
    with httpx.Client(base_url=inference.url, headers=headers, timeout=30.0) as http_client:
        for _ in range(3):
            v1 = http_client.post("/v1/models/iris/predict", json={"instances": [ROW, ROW]})
            assert v1.status_code == 200, v1.text
            v2 = http_client.post("/v2/models/iris/infer", json=V2)
            assert v2.status_code == 200, v2.text
        dropped = 'modelberth_inference_prediction_log_dropped_total{reason="write_error"}'
        assert _until(lambda: _sample(http_client.get("/metrics").text, dropped) == 6.0)
        ready = http_client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["prediction_log"]["status"] == "failing"
        assert ready.json()["prediction_log"]["last_error"] == "ENOSPC: No space left on device"
        if full_disk.filler is not None:  # a tmpfs (root): free the space, and the log picks up again
            full_disk.free()
            assert http_client.post("/v1/models/iris/predict", json=ROW).status_code == 200
            assert _until(lambda: http_client.get("/readyz").json()["prediction_log"] == {"status": "ok"})
            records = [json.loads(line) for line in path.read_text().splitlines()]
            assert [(r["sub"], r["client_id"], r["inputs"]) for r in records] == [
                ("batch-job", "batch-job", [ROW])
            ]
            assert oct(path.stat().st_mode & 0o777) == "0o600"
    inference.stop()  # SIGTERM: the writer drains its queue on the way out
    logs = inference.logs()
    assert "Traceback" not in logs
    failing = [line for line in logs.splitlines() if "prediction log write failed" in line]
    assert len(failing) == 1, "reported once per interval, not once per record"


def test_a_prediction_log_path_that_cannot_work_is_one_line_at_startup(
    tmp_path: Path, tiny_model_dir: Path, port_factory: Callable[[], int]
) -> None:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("x")
    cases = {
        "a directory": (tmp_path / "a-dir", "is a directory; give a file path"),
        "a path under a regular file": (tmp_path / "a-file" / "p.jsonl", "is a file, not a directory"),
    }
    processes = {}
    try:
        for case, (path, _) in cases.items():  # both at once: each start is mostly imports
            env = {**os.environ, **_env(tiny_model_dir, "http://127.0.0.1:9/jwks", prediction_log=str(path))}
            command = ["modelberth_cli", "serve", "inference", "--port", str(port_factory())]
            processes[case] = subprocess.Popen(
                [sys.executable, "-m", *command],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        outputs = {case: process.communicate(timeout=180)[0] for case, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
    for case, process in processes.items():
        text = outputs[case].decode("utf-8", "replace")
        assert process.returncode == 3, (case, text)
        assert "Traceback" not in text, case
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        errors = [r for r in records if r["level"] == "error"]
        path, message = cases[case]
        assert len(errors) == 1, (case, text)
        assert errors[0]["msg"].startswith(f"prediction log {path}: "), errors
        assert message in errors[0]["msg"]
        assert errors[0]["msg"].endswith("(INFERENCE_PREDICTION_LOG)")


def test_one_real_process_holds_its_contract(
    start_service: Callable[..., Any],
    tiny_model_dir: Path,
    jwks_url: str,
    signer: Any,
    tmp_path: Path,
    artifact_factory: Callable[..., Path],
) -> None:
    """One process for the checks that can share it: starting one is the slow part. A challenger (same
    features) makes the fuzzer call a version loaded on demand, and shadow traffic runs all along."""
    artifact_factory(tiny_model_dir, rows=40, alias="challenger")
    env = {**_env(tiny_model_dir, jwks_url), "INFERENCE_SHADOW": "true"}
    inference = start_service("inference", env=env, timeout=180.0)
    check_bad_bodies_keep_the_connection(inference.url, signer)
    check_tritonclient(inference.url, signer)
    check_schemathesis_finds_nothing(inference.url, signer, tmp_path)
    assert "Traceback" not in inference.logs()


def check_bad_bodies_keep_the_connection(url: str, signer: Any) -> None:
    """Each malformed body is a 4xx on the same keep-alive connection (a 500 used to reset it)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {**signer.headers(), "Content-Type": "application/json"}
    bodies = [
        (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, 400),
        (b'{"instances": [{"\xff\xfe": 1}]}', 400),
        (b'{"instances": [{"\\ud800": 1}]}', 422),
        (json.dumps({"instances": [dict.fromkeys(ROW, 1e308)]}).encode(), 422),
        (json.dumps({"instances": [ROW]}).encode(), 200),
    ]
    sockets = []
    statuses = []
    try:
        for body, _ in bodies:
            connection.request("POST", "/v1/models/iris/predict", body=body, headers=headers)
            response = connection.getresponse()
            json.loads(response.read())
            statuses.append(response.status)
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert statuses == [status for _, status in bodies]
    assert sockets[0] is not None
    assert all(sock is sockets[0] for sock in sockets), "the server closed the keep-alive connection"


def check_tritonclient(url: str, signer: Any) -> None:
    """Triton's own HTTP client (no Content-Type) is answered, with JSON tensors and with its default, the
    binary tensor data extension."""
    import tritonclient.http as triton

    headers = signer.headers()
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        assert client.is_server_live(headers=headers)
        assert client.is_model_ready("iris", headers=headers)
        assert [i["name"] for i in client.get_model_metadata("iris", headers=headers)["inputs"]] == list(ROW)
        inputs = []
        for name, value in ROW.items():
            tensor = triton.InferInput(name, [1], "FP64")
            tensor.set_data_from_numpy(np.array([value], dtype=np.float64), binary_data=False)
            inputs.append(tensor)
        outputs = [
            triton.InferRequestedOutput("predict", binary_data=False),
            triton.InferRequestedOutput("predict_proba", binary_data=False),
        ]
        result = client.infer("iris", inputs, outputs=outputs, headers=headers, request_id="r-1")
        assert result.get_response()["id"] == "r-1"
        assert [str(label) for label in result.as_numpy("predict")] == ["setosa"]
        proba = result.as_numpy("predict_proba")
        assert proba is not None
        assert proba.shape == (1, 3)
        assert abs(float(proba.sum()) - 1.0) < 1e-9
        binary = []
        for name, value in ROW.items():
            tensor = triton.InferInput(name, [1], "FP64")
            tensor.set_data_from_numpy(np.array([value], dtype=np.float64))  # binary_data=True by default
            binary.append(tensor)
        answered = client.infer("iris", binary, outputs=outputs, headers=headers)  # the binary extension
        assert [str(label) for label in answered.as_numpy("predict")] == ["setosa"]
        np.testing.assert_array_equal(answered.as_numpy("predict_proba"), proba)
    finally:
        client.close()


def check_schemathesis_finds_nothing(url: str, signer: Any, work: Path) -> None:
    """``schemathesis run --checks all``, seeded and bounded, against the document the server publishes:
    first every operation (the history and any version's card included) but the repository's unload,
    which takes the model away so that every later call would only meet its 404; then the repository
    operations on their own, unload included."""
    started = time.monotonic()
    everything = _schemathesis(url, signer, work, "--exclude-path-regex", "/unload$")
    assert "25 selected / 26 total" in everything, everything[-5_000:]
    repository = _schemathesis(url, signer, work, "--include-path-regex", "^/v2/repository/")
    assert "3 selected / 26 total" in repository, repository[-5_000:]
    print(f"schemathesis: {time.monotonic() - started:.1f} s")


def _schemathesis(url: str, signer: Any, work: Path, *selection: str) -> str:
    token = signer.token(exp=int(time.time()) + 3600)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--seed",
            str(SCHEMATHESIS_SEED),
            "--max-examples",
            str(SCHEMATHESIS_MAX_EXAMPLES),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "20",
            "--no-color",
            *selection,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=work,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    assert re.search(r"\d+ generated, \d+ passed", done.stdout), done.stdout[-5_000:]
    return done.stdout
