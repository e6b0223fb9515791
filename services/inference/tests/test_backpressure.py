"""Backpressure: a bounded number of requests in progress per model; one more is a 429 with Retry-After and
a JSON body at once (not a wait toward the request timeout), counted in a metric."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
TENSOR = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(ROW.values())}]}


@pytest.mark.parametrize(
    ("url", "body", "shape"),
    [("/v1/models/iris/predict", ROW, "detail"), ("/v2/models/iris/infer", TENSOR, "error")],
)
def test_a_full_queue_answers_429_at_once(
    make_client: Callable[..., Any], tiny_model_dir: Path, signer: Any, url: str, body: Any, shape: str
) -> None:
    with make_client(tiny_model_dir, max_queued=2) as client:
        zero = 'modelberth_inference_rejected_requests_total{model="iris",reason="queue_full"} 0.0'
        assert zero in client.get("/metrics").text, "0 from the start, so rates and alerts see no gap"
        served = client.app.state.registry.models["iris"]  # type: ignore[attr-defined]
        release = asyncio.Event()
        parked = threading.Semaphore(0)
        submit = served.batcher.submit

        async def held(columns: Any) -> Any:  # the model is busy: admitted requests wait for it
            parked.release()
            await release.wait()
            return await submit(columns)

        served.batcher.submit = held
        headers = signer.headers("predict")
        with ThreadPoolExecutor(2) as pool:
            first = [pool.submit(client.post, url, json=body, headers=headers) for _ in range(2)]
            for _ in range(2):
                assert parked.acquire(timeout=10), "both requests were admitted"
            refused = client.post(url, json=body, headers=headers)
            client.portal.call(release.set)  # type: ignore[union-attr]
            answers = [f.result(timeout=10) for f in first]
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert list(refused.json()) == [shape]
        assert "INFERENCE_MAX_QUEUED" in refused.json()[shape]
        assert [a.status_code for a in answers] == [200, 200]
        assert client.post(url, json=body, headers=headers).status_code == 200, "the queue drained"
        metrics = client.get("/metrics").text
        assert 'modelberth_inference_rejected_requests_total{model="iris",reason="queue_full"} 1.0' in metrics
        assert 'modelberth_inference_model_request_duration_seconds_count{model="iris",protocol=' in metrics
