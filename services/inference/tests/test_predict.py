"""V1 predictions: shapes, equality with the pipeline's own output, regression, binary threshold, examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import joblib
import msgspec
import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelberth_core import contract
from modelberth_inference.model import LoadedModel, probability_row_type

IRIS_ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.2, "sepal_width": 2.9, "petal_length": 4.3, "petal_width": 1.3},
    {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3},
    {"sepal_length": 5, "sepal_width": 3, "petal_length": 2, "petal_width": 1},
]


def _pipeline(model_dir: Path, name: str) -> tuple[Any, contract.ModelCard]:
    version_dir = model_dir / name / str(contract.resolve_latest(model_dir, name))
    return joblib.load(version_dir / contract.MODEL_FILE), contract.read_card(version_dir)


def test_predictions_equal_the_pipelines_own_output(
    client: TestClient, signer: Any, tiny_model_dir: Path
) -> None:
    response = client.post(
        "/v1/models/iris/predict", json={"instances": IRIS_ROWS}, headers=signer.headers("predict")
    )
    assert response.status_code == 200
    body = response.json()
    pipeline, card = _pipeline(tiny_model_dir, "iris")
    frame = pd.DataFrame(IRIS_ROWS, dtype=float)
    assert list(body) == ["model", "version", "predictions", "probabilities", "warnings"]
    assert body["model"] == "iris"
    assert body["version"] == card.version
    assert body["predictions"] == [str(p) for p in pipeline.predict(frame)]
    expected = pipeline.predict_proba(frame)
    got = np.array([[row[c] for c in card.classes or []] for row in body["probabilities"]])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert body["warnings"] == []


def test_a_single_object_is_one_instance(client: TestClient, signer: Any) -> None:
    response = client.post("/v1/models/iris/predict", json=IRIS_ROWS[0], headers=signer.headers("predict"))
    assert response.status_code == 200
    assert response.json()["predictions"] == ["setosa"]
    assert len(response.json()["probabilities"]) == 1


def test_out_of_range_values_are_predicted_with_a_warning_and_counted(
    client: TestClient, signer: Any
) -> None:
    row = {**IRIS_ROWS[0], "sepal_length": 99.0}
    response = client.post(
        "/v1/models/iris/predict", json={"instances": [IRIS_ROWS[1], row]}, headers=signer.headers()
    )
    assert response.status_code == 200
    warnings = response.json()["warnings"]
    assert [(w["row"], w["feature"], w["kind"]) for w in warnings] == [(1, "sepal_length", "out_of_range")]
    metrics = client.get("/metrics").text
    assert (
        'modelberth_inference_input_warnings_total{feature="sepal_length",kind="out_of_range",'
        'model="iris"} 1.0' in metrics
    )


def test_regression_returns_values_and_no_probabilities(
    make_client: Callable[..., Any], mixed_artifact: Callable[..., Path], tmp_path: Path, signer: Any
) -> None:
    model_dir = tmp_path / "models"
    mixed_artifact(model_dir, "house", "regression")
    rows = [
        {"age": 30.0, "income": 40_000.0, "city": "paris"},
        {"age": 60, "income": None, "city": "lyon"},
        {"age": 45.5, "city": "nice"},
    ]
    with make_client(model_dir) as client:
        response = client.post("/v1/models/house/predict", json={"instances": rows}, headers=signer.headers())
    assert response.status_code == 200
    body = response.json()
    assert "probabilities" not in body
    pipeline, _ = _pipeline(model_dir, "house")
    frame = pd.DataFrame(
        {"age": [30.0, 60.0, 45.5], "income": [40_000.0, np.nan, np.nan], "city": ["paris", "lyon", "nice"]}
    )
    np.testing.assert_allclose(body["predictions"], pipeline.predict(frame), rtol=1e-12)


def test_unseen_category_is_predicted_and_reported(
    make_client: Callable[..., Any], mixed_artifact: Callable[..., Path], tmp_path: Path, signer: Any
) -> None:
    model_dir = tmp_path / "models"
    mixed_artifact(model_dir, "house", "regression")
    with make_client(model_dir) as client:
        response = client.post(
            "/v1/models/house/predict",
            json={"age": 30, "income": 50_000, "city": "berlin"},
            headers=signer.headers(),
        )
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    assert response.json()["warnings"] == [
        {"row": 0, "feature": "city", "kind": "unseen_category", "detail": "a category not seen in training"}
    ]
    assert (
        'modelberth_inference_input_warnings_total{feature="city",kind="unseen_category",model="house"} 1.0'
        in metrics
    )


def test_binary_classifier_uses_the_cards_threshold(
    make_client: Callable[..., Any], mixed_artifact: Callable[..., Path], tmp_path: Path, signer: Any
) -> None:
    model_dir = tmp_path / "models"
    mixed_artifact(model_dir, "churn", "classification", binary_threshold=0.9)
    pipeline, _ = _pipeline(model_dir, "churn")
    grid = [
        {"age": float(a), "income": 50_000.0, "city": c} for a in range(20, 80, 3) for c in ("paris", "lyon")
    ]
    proba_yes = pipeline.predict_proba(pd.DataFrame(grid))[:, 1]
    assert ((proba_yes > 0.5) & (proba_yes < 0.9)).any(), "the grid must hold rows the threshold changes"
    with make_client(model_dir) as client:
        body = client.post(
            "/v1/models/churn/predict", json={"instances": grid}, headers=signer.headers()
        ).json()
    assert body["predictions"] == ["yes" if p >= 0.9 else "no" for p in proba_yes]
    assert body["predictions"] != [str(p) for p in pipeline.predict(pd.DataFrame(grid))]


def test_examples_by_index(client: TestClient, signer: Any, tiny_model_dir: Path) -> None:
    version_dir = tiny_model_dir / "iris" / str(contract.resolve_latest(tiny_model_dir, "iris"))
    csv_rows = pd.read_csv(version_dir / contract.EXAMPLES_FILE)
    listed = client.get("/v1/models/iris/examples", headers=signer.headers("models:read")).json()
    assert listed["count"] == len(csv_rows) == len(listed["instances"])
    one = client.get("/v1/models/iris/examples/2", headers=signer.headers("models:read"))
    assert one.status_code == 200
    assert one.json()["instance"] == csv_rows.iloc[2].to_dict()
    predicted = client.post("/v1/models/iris/examples/2/predict", headers=signer.headers("predict")).json()
    direct = client.post(
        "/v1/models/iris/predict", json=csv_rows.iloc[2].to_dict(), headers=signer.headers()
    ).json()
    assert predicted["index"] == 2
    assert predicted["instance"] == one.json()["instance"]
    assert predicted["predictions"] == direct["predictions"]
    assert client.get("/v1/models/iris/examples/99", headers=signer.headers()).status_code == 404
    assert client.post("/v1/models/iris/examples/-1/predict", headers=signer.headers()).status_code == 404


def test_model_list_card_and_report(client: TestClient, signer: Any, tiny_model_dir: Path) -> None:
    headers = signer.headers("models:read")
    listed = client.get("/v1/models", headers=headers).json()["models"]
    assert [m["name"] for m in listed] == ["iris"]
    assert listed[0]["classes"] == ["setosa", "versicolor", "virginica"]
    card = client.get("/v1/models/iris", headers=headers).json()
    on_disk = contract.read_card(tiny_model_dir / "iris" / card["version"])
    assert contract.ModelCard.model_validate(card) == on_disk
    assert card["selected"]["params"] == {"C": 1.0}
    assert card["leaderboard"][0]["candidate"] == "logistic"
    report = client.get("/v1/models/iris/report", headers=headers)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert "tiny" in report.text
    assert client.get("/v1/models/nope", headers=headers).status_code == 404


@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_batch_sizes_round_trip(client: TestClient, signer: Any, rows: int) -> None:
    instances = [IRIS_ROWS[i % len(IRIS_ROWS)] for i in range(rows)]
    body = client.post(
        "/v1/models/iris/predict", json={"instances": instances}, headers=signer.headers()
    ).json()
    assert len(body["predictions"]) == len(body["probabilities"]) == rows
    assert body["predictions"][:4] == ["setosa", "versicolor", "virginica", "setosa"][: min(rows, 4)]


@pytest.mark.parametrize(
    "classes",
    [
        ["setosa", "versicolor", "virginica"],
        ["<=50K", ">50K"],
        ["ünï", "a b", "x/y", "z"],
        ['say "hi"', "back\\"],
    ],
    ids=["iris", "symbols", "unicode", "quote-and-backslash"],
)
def test_probability_rows_encode_as_one_object_per_row_in_class_order(classes: list[str]) -> None:
    proba = np.random.default_rng(0).dirichlet(np.ones(len(classes)), size=7)
    model = SimpleNamespace(classes=classes, probability_row=probability_row_type(classes))
    rows = LoadedModel.probabilities(model, proba)  # type: ignore[arg-type]
    expected = [dict(zip(classes, row, strict=True)) for row in proba.tolist()]
    assert msgspec.json.encode(rows) == orjson.dumps(expected)
    assert json.loads(msgspec.json.encode(rows)) == expected
