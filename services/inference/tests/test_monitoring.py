"""Metrics (absent before, exact after), drift PSI, micro-batching and the prediction log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_iris

from modelberth_core.contract import CategoricalProfile, FeatureSpec, NumericProfile
from modelberth_inference.batching import MicroBatcher
from modelberth_inference.drift import DriftTracker
from modelberth_inference.model import Prediction
from modelberth_inference.validation import Columns

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _value(client: TestClient, series: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_prediction_metrics_are_absent_before_and_exact_after(client: TestClient, signer: Any) -> None:
    version = client.get("/v1/models/iris", headers=signer.headers()).json()["version"]
    series = f'modelberth_inference_predictions_total{{class="setosa",model="iris",version="{version}"}}'
    assert _value(client, series) is None
    assert _value(client, 'modelberth_inference_prediction_confidence_count{model="iris"}') is None
    for _ in range(3):
        client.post("/v1/models/iris/predict", json={"instances": [ROW, ROW]}, headers=signer.headers())
    assert _value(client, series) == 6.0
    assert _value(client, 'modelberth_inference_prediction_confidence_count{model="iris"}') == 6.0
    assert _value(client, "modelberth_inference_batch_size_sum") == 6.0
    route = (
        'modelberth_inference_requests_total{method="POST",route="/v1/models/{name}/predict",status="2xx"}'
    )
    assert _value(client, route) == 3.0
    text = client.get("/metrics").text
    assert f'modelberth_inference_model_info{{model="iris",version="{version}"}} 1.0' in text
    assert "modelberth_inference_model_load_seconds_count 1.0" in text
    assert 'modelberth_inference_prediction_confidence_bucket{le="+Inf",model="iris"} 6.0' in text


def test_drift_psi_is_small_for_training_like_inputs_and_large_for_shifted_ones(
    make_client: Callable[..., Any], tiny_model_dir: Path, signer: Any
) -> None:
    rng = np.random.default_rng(1)
    with make_client(tiny_model_dir, drift_window_rows=200, drift_min_rows=100) as client:
        examples = client.get("/v1/models/iris/examples", headers=signer.headers()).json()["instances"]
        psi = 'modelberth_inference_feature_drift_psi{feature="petal_length",model="iris"}'
        client.post("/v1/models/iris/predict", json={"instances": examples}, headers=signer.headers())
        assert _value(client, psi) is None, "not exported before drift_min_rows rows"
        iris = load_iris().data  # the population the reference profile was taken from
        like = [dict(zip(ROW, map(float, iris[i]), strict=True)) for i in rng.integers(0, len(iris), 200)]
        client.post("/v1/models/iris/predict", json={"instances": like}, headers=signer.headers())
        calm = _value(client, psi)
        shifted = [{**ROW, "petal_length": 6.9} for _ in range(200)]
        client.post("/v1/models/iris/predict", json={"instances": shifted}, headers=signer.headers())
        drifted = _value(client, psi)
    assert calm is not None
    assert drifted is not None
    assert calm < 0.25 < 1.0 < drifted


@pytest.mark.parametrize("scrape_every_batch", [True, False], ids=["scraped-often", "queued-until-scrape"])
def test_drift_window_counts_match_a_recount(scrape_every_batch: bool) -> None:
    spec = [
        FeatureSpec(name="x", type="numeric", required=False),
        FeatureSpec(name="c", type="categorical", required=True),
    ]
    profiles = {
        "x": NumericProfile(edges=[0.0, 1.0], frequencies=[0.25, 0.5, 0.25]),
        "c": CategoricalProfile(frequencies={"a": 0.5, "b": 0.5}),
    }
    tracker = DriftTracker(spec, profiles, size=50, min_rows=1)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    history_x: list[float] = []
    history_c: list[Any] = []
    for n in (7, 30, 1, 49, 120, 3):  # partial fills, a wrap around the ring, a batch larger than it
        xs = rng.normal(0.5, 1.0, n)
        xs[::5] = np.nan
        cs = np.array(rng.choice(["a", "b", "z"], n), dtype=object)
        tracker.update({"x": xs, "c": cs}, n)
        history_x.extend(xs.tolist())
        history_c.extend(cs.tolist())
        if scrape_every_batch:
            tracker.values()
    assert set(tracker.values()) == {"x", "c"}  # a scrape bins whatever is still queued
    window_x = np.array(history_x[-50:])
    expected_x = np.bincount(
        np.where(np.isnan(window_x), 3, np.searchsorted([0.0, 1.0], window_x, side="right")), minlength=4
    )
    assert tracker.windows["x"].counts.tolist() == expected_x.tolist()
    expected_c = [history_c[-50:].count(v) for v in ("a", "b", "z")] + [0]
    assert tracker.windows["c"].counts.tolist() == expected_c


def test_concurrent_requests_share_one_predict_call() -> None:
    calls: list[int] = []

    def run(items: list[Columns]) -> list[Prediction]:
        calls.append(sum(c.n for c in items))
        return [Prediction(list(c.data["x"].tolist()), None) for c in items]

    async def scenario() -> list[Prediction]:
        batcher = MicroBatcher(run, max_wait_seconds=0.002, max_rows=100)
        jobs = [batcher.submit(Columns(n=1, data={"x": np.array([float(i)])})) for i in range(16)]
        return await asyncio.gather(*jobs)

    results = asyncio.run(scenario())
    assert [r.predictions for r in results] == [[float(i)] for i in range(16)]
    assert calls == [16]


def test_batches_respect_max_rows_and_a_failing_request_fails_alone() -> None:
    calls: list[int] = []

    def run(items: list[Columns]) -> list[Prediction]:
        calls.append(sum(c.n for c in items))
        if any(bool((c.data["x"] < 0).any()) for c in items):
            raise ValueError("model refused")
        return [Prediction(c.data["x"].tolist(), None) for c in items]

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(run, max_wait_seconds=0.002, max_rows=10)
        jobs = [
            batcher.submit(Columns(n=4, data={"x": np.full(4, float(i) - (i == 2) * 10)})) for i in range(5)
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == [
        "Prediction",
        "Prediction",
        "PredictionFailed",
        "Prediction",
        "Prediction",
    ]
    assert max(calls) <= 10


def test_prediction_log_is_sampled_json_lines_with_redaction(
    make_client: Callable[..., Any], tiny_model_dir: Path, tmp_path: Path, signer: Any
) -> None:
    log_file = tmp_path / "predictions.jsonl"
    with make_client(
        tiny_model_dir, prediction_log=str(log_file), prediction_log_redact="sepal_width"
    ) as client:
        client.post(
            "/v1/models/iris/predict", json=ROW, headers={**signer.headers(), "X-Request-ID": "req-42"}
        )
    record = json.loads(log_file.read_text().splitlines()[0])
    assert record["request_id"] == "req-42"
    assert record["model"] == "iris"
    assert record["inputs"] == [{**ROW, "sepal_width": "[redacted]"}]
    assert record["outputs"] == ["setosa"]
    assert record["latency_ms"] > 0


def test_prediction_log_is_off_by_default(client: TestClient, signer: Any, tmp_path: Path) -> None:
    assert client.app.state.dataplane.prediction_log is None  # type: ignore[attr-defined]


def _series(client: TestClient) -> set[str]:
    """Every sample line name+labels of inference's own metrics (core's HTTP metrics excluded)."""
    out = set()
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("modelberth_inference_") and not line.startswith(
            ("modelberth_inference_request", "modelberth_inference_requests")
        ):
            out.add(line.rsplit(" ", 1)[0])
    return out


def test_no_request_can_add_series_to_inference_metrics(client: TestClient, signer: Any) -> None:
    """Label values come from the served models only: unknown models, features, categories, versions and
    paths sent by a client add nothing (issue 13, point 9; core's method label is core's)."""
    headers = signer.headers()
    client.post(
        "/v1/models/iris/predict",
        json={"instances": [ROW, {**ROW, "sepal_length": 99.0}, {**ROW, "petal_width": 1e3}]},
        headers=headers,
    )
    client.post("/v2/models/iris/infer", json={"inputs": []}, headers=headers)
    before = _series(client)
    for i in range(30):
        name = f"model{i}"
        client.post(f"/v1/models/{name}/predict", json=ROW, headers=headers)
        client.post(f"/v1/models/{name}/reload", headers=headers)
        client.post(f"/v2/models/{name}/versions/{i}/infer", json={"inputs": []}, headers=headers)
        client.post(
            f"/v2/models/iris/versions/2026010{i}T000000Z/infer", json={"inputs": []}, headers=headers
        )
        client.get(f"/v1/models/{name}/examples/{i}", headers=headers)
        client.post("/v1/models/iris/predict", json={**ROW, f"feature{i}": i}, headers=headers)
        client.post("/v1/models/iris/predict", json={**ROW, "petal_width": 1e3 + i}, headers=headers)
        client.get(f"/unknown/{i}")
    assert _series(client) - before == set()


@pytest.mark.parametrize("max_versions", [2, 3])
def test_prediction_series_of_retired_versions_are_dropped(
    make_client: Callable[..., Any],
    signer: Any,
    tiny_model_dir: Path,
    artifact_factory: Callable[..., Path],
    max_versions: int,
) -> None:
    """Each hot reload would add a version's series for ever: only the versions in memory (the serving one
    and the ones served before it that ``max_versions`` keeps) are kept."""
    admin = signer.headers("models:admin predict")
    served = []
    with make_client(tiny_model_dir, max_versions=max_versions) as client:
        for _ in range(4):
            served.append(client.post("/v1/models/iris/predict", json=ROW, headers=admin).json()["version"])
            artifact_factory(tiny_model_dir)
            assert client.post("/v1/models/iris/reload", headers=admin).json()["status"] == "loaded"
        served.append(client.post("/v1/models/iris/predict", json=ROW, headers=admin).json()["version"])
        metrics = client.get("/metrics").text
    for metric in ("predictions_total", "predict_duration_seconds_count"):
        versions = {
            line.split('version="', 1)[1].split('"', 1)[0]
            for line in metrics.splitlines()
            if line.startswith(f"modelberth_inference_{metric}{{")
        }
        assert len(set(served)) == 5
        assert versions == set(served[-max_versions:]), metric
