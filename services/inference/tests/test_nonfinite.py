"""Finite inputs a model cannot compute with are a 422, never a 200 holding null where the schema says
number (issue 13, point 5): ±1e308 (the issue's example) is refused up front as beyond ±MAX_ABS_NUMBER, and
an accepted value that still overflows a pipeline (here a scaler fitted on a feature that hardly varied)
is caught on the output, a 422 naming the row.

Covered on both routes through a model (the compiled fast path and scikit-learn's own pipeline), for V1
and V2, for a batch and for single rows micro-batched with good ones.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelberth_core import contract
from modelberth_inference.drift import DriftTracker
from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.model import load_model
from modelberth_inference.served import BatchRunner
from modelberth_inference.validation import MAX_ABS_NUMBER, Columns

GOOD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
FEATURES = list(GOOD)
HUGE = [dict.fromkeys(FEATURES, sign * MAX_ABS_NUMBER) for sign in (1.0, -1.0)]
"""Accepted values that overflow once the scaler divides them by 1e-150 (see ``_overflowing``)."""
MSG = "the model's output for this row is not a finite number (its inputs are outside what it can compute)"


def _v2(rows: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": f, "shape": [len(rows)], "datatype": "FP64", "data": [r[f] for r in rows]}
            for f in FEATURES
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }


def _overflowing(model: Any) -> None:
    """A real fitted scaler whose features hardly varied in training (scale 1e-150): 1e200 becomes an
    infinity on both routes (the compiled fast path shares the fitted arrays), and softmax gives NaN."""
    scaler = model.pipeline.named_steps["prep"].named_transformers_["num"].named_steps["scale"]
    scaler.scale_[:] = 1e-150


@pytest.fixture(params=["fast-path", "sklearn-pipeline"])
def iris_client(
    request: pytest.FixtureRequest, make_client: Callable[..., Any], tiny_model_dir: Path
) -> Iterator[TestClient]:
    with make_client(tiny_model_dir) as client:
        model = client.app.state.registry.models["iris"].model  # type: ignore[attr-defined]
        assert model.fast is not None
        if request.param == "sklearn-pipeline":
            model.fast = None
        _overflowing(model)
        yield client


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus", "minus"])
def test_1e308_is_refused_up_front_naming_each_value(client: TestClient, signer: Any, sign: float) -> None:
    """The issue's example: ±1e308 in every feature was a 200 with null probabilities."""
    row = dict.fromkeys(FEATURES, sign * 1e308)
    v1 = client.post("/v1/models/iris/predict", json={"instances": [GOOD, row]}, headers=signer.headers())
    assert v1.status_code == 422
    assert v1.json()["detail"] == [
        {
            "loc": ["body", "instances", 1, f],
            "msg": "must be between -1e+200 and 1e+200",
            "type": "number_too_large",
        }
        for f in FEATURES
    ]
    v2 = client.post("/v2/models/iris/infer", json=_v2([row]), headers=signer.headers())
    assert v2.status_code == 422
    assert v2.json()["error"].startswith("input 'sepal_length' row 0: must be between -1e+200 and 1e+200")
    edge = client.post(
        "/v1/models/iris/predict", json=dict.fromkeys(FEATURES, sign * 1e200), headers=signer.headers()
    )
    assert edge.status_code == 200, "the bound itself is accepted (and this model computes with it)"


@pytest.mark.parametrize("huge", HUGE, ids=["plus-1e308", "minus-1e308"])
def test_v1_non_finite_output_is_a_422_naming_the_row(
    iris_client: TestClient, signer: Any, huge: dict[str, float]
) -> None:
    single = iris_client.post("/v1/models/iris/predict", json=huge, headers=signer.headers())
    assert single.status_code == 422, single.text
    assert single.json() == {
        "detail": [{"loc": ["body", "instances", 0], "msg": MSG, "type": "non_finite_output"}]
    }
    batch = iris_client.post(
        "/v1/models/iris/predict", json={"instances": [GOOD, huge, GOOD, huge]}, headers=signer.headers()
    )
    assert batch.status_code == 422
    assert [d["loc"] for d in batch.json()["detail"]] == [["body", "instances", 1], ["body", "instances", 3]]
    assert iris_client.post("/v1/models/iris/predict", json=GOOD, headers=signer.headers()).status_code == 200


@pytest.mark.parametrize("huge", HUGE, ids=["plus-1e308", "minus-1e308"])
def test_v2_non_finite_output_is_a_422_naming_the_row(
    iris_client: TestClient, signer: Any, huge: dict[str, float]
) -> None:
    response = iris_client.post("/v2/models/iris/infer", json=_v2([GOOD, huge]), headers=signer.headers())
    assert response.status_code == 422, response.text
    assert response.json() == {"error": f"request row 1: {MSG}"}


def test_bad_rows_do_not_reach_the_metrics(iris_client: TestClient, signer: Any) -> None:
    for huge in HUGE:
        refused = iris_client.post("/v1/models/iris/predict", json=huge, headers=signer.headers())
        assert refused.json()["detail"][0]["type"] == "non_finite_output"
    iris_client.post("/v1/models/iris/predict", json=GOOD, headers=signer.headers())
    metrics = iris_client.get("/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modelberth_inference_prediction")
    }
    assert samples['modelberth_inference_prediction_confidence_count{model="iris"}'] == 1.0
    assert math.isfinite(samples['modelberth_inference_prediction_confidence_sum{model="iris"}'])
    assert sum(v for k, v in samples.items() if k.startswith("modelberth_inference_predictions_total")) == 1.0


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "sklearn-pipeline"])
def test_regression_output_overflowing_is_a_422(
    make_client: Callable[..., Any],
    mixed_artifact: Callable[..., Path],
    tmp_path: Path,
    signer: Any,
    fast: bool,
) -> None:
    model_dir = tmp_path / "models"
    mixed_artifact(model_dir, "house", "regression")
    rows = [{"age": 30.0, "income": 40_000.0, "city": "paris"}, {"age": 1e200, "income": 1.0, "city": "lyon"}]
    with make_client(model_dir) as client:
        model = client.app.state.registry.models["house"].model  # type: ignore[attr-defined]
        if not fast:
            model.fast = None
        # This pipeline's scale for age is about 17, so no accepted value overflows it; a fitted scale of
        # 1e-150 (a feature that hardly varied in training) makes 1e200 an infinity on both routes.
        scaler = model.pipeline.named_steps["prep"].named_transformers_["num"].named_steps["scale"]
        scaler.scale_[0] = 1e-150
        response = client.post("/v1/models/house/predict", json={"instances": rows}, headers=signer.headers())
        good = client.post("/v1/models/house/predict", json=rows[0], headers=signer.headers())
    assert response.status_code == 422, response.text
    assert [d["loc"] for d in response.json()["detail"]] == [["body", "instances", 1]]
    assert good.status_code == 200


def _columns(rows: list[dict[str, float]]) -> Columns:
    return Columns(n=len(rows), data={f: np.array([r[f] for r in rows], dtype=np.float64) for f in FEATURES})


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "sklearn-pipeline"])
def test_a_micro_batch_fails_only_the_request_with_the_bad_row(tiny_model_dir: Path, fast: bool) -> None:
    """Single rows from several requests share one predict call: only the bad one is refused."""
    from prometheus_client import CollectorRegistry

    version = str(contract.resolve_latest(tiny_model_dir, "iris"))
    model = load_model(tiny_model_dir, "iris", version, max_text_length=100)
    if not fast:
        model.fast = None
    _overflowing(model)
    metrics = InferenceMetrics(CollectorRegistry())
    drift = DriftTracker(model.card.features, model.card.reference_profile, 100, 1)
    runner = BatchRunner(model, metrics, drift)
    results = runner([_columns([GOOD]), _columns([HUGE[0]]), _columns([GOOD, HUGE[1], GOOD])])
    invalid = [None if r.invalid_rows is None else r.invalid_rows.tolist() for r in results]
    assert invalid == [None, [0], [1]]
    assert results[0].proba is not None
    assert np.isfinite(results[0].proba).all()
    assert results[0].predictions == ["setosa"]
    assert results[2].predictions[0] == results[2].predictions[2] == "setosa"


def test_micro_batched_requests_through_the_app(iris_client: TestClient, signer: Any) -> None:
    """Concurrent single-row requests (one batch on the event loop): the good ones are answered."""
    import httpx

    async def send() -> list[tuple[int, Any]]:
        transport = httpx.ASGITransport(app=iris_client.app)  # the running app, same event loop turn
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            rows = [GOOD, HUGE[0], GOOD, HUGE[1], GOOD]
            responses = await asyncio.gather(
                *(http.post("/v1/models/iris/predict", json=row, headers=signer.headers()) for row in rows)
            )
        return [(r.status_code, r.json()) for r in responses]

    answers = iris_client.portal.call(send)  # type: ignore[attr-defined]
    assert [status for status, _ in answers] == [200, 422, 200, 422, 200]
    assert answers[1][1]["detail"][0]["type"] == "non_finite_output"
    assert answers[0][1]["predictions"] == ["setosa"]
    batch_sizes = iris_client.get("/metrics").text
    assert "modelberth_inference_batch_size_count 1.0" in batch_sizes, "the five rows shared one call"
