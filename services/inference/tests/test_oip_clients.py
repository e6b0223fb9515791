"""Issue 17 with a client nobody here wrote: Triton's ``tritonclient.http`` against a real inference process
(``modelberth serve inference``, real bearer tokens checked against a JWKS over HTTP): one ``[n, F]``
tensor and one input per feature, metadata, readiness, the repository extension, and an overloaded run
that gets 429s, never a 5xx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

pytestmark = pytest.mark.integration

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float64)


def _env(model_dir: Path, jwks_url: str, **settings: str) -> dict[str, str]:
    return {
        "INFERENCE_MODEL_DIR": str(model_dir),
        "INFERENCE_AUTH_JWKS_URL": jwks_url,
        "INFERENCE_POLL_SECONDS": "0",
        **{f"INFERENCE_{key.upper()}": value for key, value in settings.items()},
    }


def _outputs(triton: Any) -> list[Any]:
    return [
        triton.InferRequestedOutput("predict", binary_data=False),
        triton.InferRequestedOutput("predict_proba", binary_data=False),
    ]


def test_tritonclient_drives_inference_metadata_and_the_repository(
    start_service: Callable[..., Any], tiny_model_dir: Path, jwks_url: str, signer: Any
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    inference = start_service("inference", env=_env(tiny_model_dir, jwks_url), timeout=180.0)
    headers = signer.headers()
    client = triton.InferenceServerClient(inference.url.removeprefix("http://"))
    try:
        assert client.is_server_live(headers=headers)
        assert client.is_server_ready(headers=headers)
        assert "model_repository" in client.get_server_metadata(headers=headers)["extensions"]
        assert client.is_model_ready("iris", headers=headers)
        meta = client.get_model_metadata("iris", headers=headers)
        assert [i["name"] for i in meta["inputs"]] == FEATURES

        matrix = triton.InferInput("input-0", list(ROWS.shape), "FP64")
        matrix.set_data_from_numpy(ROWS, binary_data=False)
        one = client.infer("iris", [matrix], outputs=_outputs(triton), headers=headers)
        columns = []
        for j, name in enumerate(FEATURES):
            tensor = triton.InferInput(name, [len(ROWS)], "FP64")
            tensor.set_data_from_numpy(np.ascontiguousarray(ROWS[:, j]), binary_data=False)
            columns.append(tensor)
        per_feature = client.infer("iris", columns, outputs=_outputs(triton), headers=headers)
        assert list(one.as_numpy("predict")) == list(per_feature.as_numpy("predict"))
        assert len(one.as_numpy("predict")) == len(ROWS)
        proba = one.as_numpy("predict_proba")
        assert proba is not None
        np.testing.assert_array_equal(proba, per_feature.as_numpy("predict_proba"))
        assert proba.shape == (len(ROWS), 3)

        index = client.get_model_repository_index(headers=headers)
        assert [(e["name"], e["state"]) for e in index] == [("iris", "READY")]
        client.unload_model("iris", headers=headers)
        assert not client.is_model_ready("iris", headers=headers)
        assert client.get_model_repository_index(headers=headers)[0]["state"] == "UNAVAILABLE"
        with pytest.raises(InferenceServerException) as unloaded:
            client.infer("iris", [matrix], headers=headers)
        assert unloaded.value.status() == "404"
        client.load_model("iris", headers=headers)
        assert client.is_model_ready("iris", headers=headers)
        with pytest.raises(InferenceServerException) as forbidden:
            client.unload_model("iris", headers=signer.headers("predict models:read"))
        assert forbidden.value.status() == "403"
        again = client.infer("iris", [matrix], outputs=_outputs(triton), headers=headers)
        assert list(again.as_numpy("predict")) == list(one.as_numpy("predict"))
    finally:
        client.close()
    assert "Traceback" not in inference.logs()


def test_an_overloaded_model_answers_429_never_5xx(
    start_service: Callable[..., Any], tiny_model_dir: Path, jwks_url: str, signer: Any
) -> None:
    """Queue 1 and bursts of 48 requests of 1000 rows sent at once: some are refused at once with 429 and
    a Retry-After, every other one is answered, none is a 5xx; Triton's client reports the 429 as such."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    env = _env(tiny_model_dir, jwks_url, max_queued="1")
    inference = start_service("inference", env=env, timeout=180.0)
    headers = signer.headers("predict")
    rows = np.tile(ROWS, (334, 1))[:1000]
    body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    )

    async def burst(size: int) -> list[httpx.Response]:
        # every body is encoded before the first is sent, so the requests reach the server together and
        # one waits for its prediction while the next is read (a client that encodes between sends, as
        # tritonclient's greenlets do, may let a fast server finish each one first)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        async with httpx.AsyncClient(base_url=inference.url, limits=limits, timeout=60.0) as client:
            return await asyncio.gather(
                *(client.post("/v2/models/iris/infer", content=body, headers=headers) for _ in range(size))
            )

    statuses: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and "429" not in statuses:
        for response in asyncio.run(burst(48)):
            statuses.append(str(response.status_code))
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "1"
                assert "INFERENCE_MAX_QUEUED" in response.json()["error"]  # the OIP error shape
    assert "429" in statuses, statuses
    assert set(statuses) <= {"200", "429"}, statuses
    assert "200" in statuses
    # one more burst through Triton's client: a refusal surfaces as status 429, never as a transport error
    client = triton.InferenceServerClient(inference.url.removeprefix("http://"), concurrency=48)
    tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=True)
    try:
        pending = [client.async_infer("iris", [tensor], headers=headers) for _ in range(48)]
        for request in pending:
            try:
                request.get_result()
            except InferenceServerException as exc:
                statuses.append(str(exc.status()))
            else:
                statuses.append("200")
    finally:
        client.close()
    assert set(statuses) <= {"200", "429"}, statuses
    metrics = httpx.get(inference.url + "/metrics", timeout=10.0).text
    refused = statuses.count("429")
    line = (
        f'modelberth_inference_rejected_requests_total{{model="iris",reason="queue_full"}} {float(refused)}'
    )
    assert line in metrics
    assert "Traceback" not in inference.logs()
