"""Shadow traffic (issue 14): every request the champion answers is also scored by the challenger, off the
request path, and the agreement of the two is counted; a full queue drops (and counts), a failing or
unsuitable challenger is counted and never fails the answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sklearn.dummy import DummyClassifier

from modelberth_core import contract
from modelberth_core.store import CHALLENGER, CHAMPION, FilesystemStore
from modelberth_inference.model import Prediction
from modelberth_inference.shadow import agreement

ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},  # setosa
    {"sepal_length": 4.9, "sepal_width": 3.0, "petal_length": 1.4, "petal_width": 0.2},  # setosa
    {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 4.1, "petal_width": 1.3},  # versicolor
    {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},  # virginica
]
SETOSA_ONLY = DummyClassifier(strategy="constant", constant="setosa")


def _sample(client: TestClient, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and line.split("{", 1)[1].split("}", 1)[0] == wanted:
            return float(line.rsplit(" ", 1)[1])
    return None


def _scored(client: TestClient, model: str, outcome: str = "scored") -> float | None:
    return _sample(client, "modelberth_inference_shadow_requests_total", model=model, outcome=outcome)


def _until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return result


def test_the_challenger_scores_every_answered_request_and_agreement_is_counted(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    headers = signer.headers()
    aliases = FilesystemStore(store_dir).aliases("iris")
    with make_client(store_dir, shadow=True) as client:
        # Created when shadowing starts, so rate() sees the first requests too.
        assert _sample(client, "modelberth_inference_shadow_compared_rows_total", model="iris") == 0.0
        labels = []
        for row in ROWS * 5:
            answer = client.post("/v1/models/iris/predict", json=row, headers=headers)
            assert answer.json()["version"] == aliases[CHAMPION]
            labels += answer.json()["predictions"]
        batch = client.post("/v1/models/iris/predict", json={"instances": ROWS}, headers=headers)
        labels += batch.json()["predictions"]
        v2 = {
            "inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROWS[3].items()]
        }
        labels += client.post("/v2/models/iris/infer", json=v2, headers=headers).json()["outputs"][0]["data"]
        requests = len(ROWS) * 5 + 2
        _until(lambda: _scored(client, "iris") == requests)
        compared = _sample(client, "modelberth_inference_shadow_compared_rows_total", model="iris")
        agreeing = _sample(client, "modelberth_inference_shadow_agreeing_rows_total", model="iris")
        assert compared == len(labels) == 25
        assert agreeing == labels.count("setosa") == 12  # the challenger answers setosa, always
        for outcome in ("dropped", "failed"):
            assert (
                _sample(client, "modelberth_inference_shadow_requests_total", model="iris", outcome=outcome)
                == 0
            )
        shadow_latency = _sample(
            client,
            "modelberth_inference_predict_duration_seconds_count",
            model="iris",
            version=aliases[CHALLENGER],
            traffic="shadow",
        )
        assert shadow_latency is not None
        assert shadow_latency >= 1
        listing = client.get("/v1/models/iris/versions", headers=headers).json()["shadow"]
        assert listing == {
            "enabled": True,
            "champion": aliases[CHAMPION],
            "challenger": aliases[CHALLENGER],
            "status": "active",
            "reason": None,
            "requests": {"scored": requests, "dropped": 0, "failed": 0},
            "compared_rows": 25,
            "agreeing_rows": 12,
            "agreement": round(12 / 25, 6),
        }
        # Calling the challenger by name is not shadow traffic, nor is the challenger's answer the model's.
        client.post("/v1/models/iris/versions/challenger/predict", json=ROWS[2], headers=headers)
        time.sleep(0.1)
        assert _sample(client, "modelberth_inference_shadow_compared_rows_total", model="iris") == 25
        counted = {"model": "iris", "version": aliases[CHAMPION], "class": "setosa"}
        assert _sample(client, "modelberth_inference_predictions_total", **counted) == 12


def test_shadowing_is_off_by_default_and_can_be_on_for_one_model(
    make_client: Callable[..., Any], store_dir: Path, signer: Any, artifact_factory: Callable[..., Path]
) -> None:
    artifact_factory(store_dir, name="other")
    artifact_factory(store_dir, name="other", alias=CHALLENGER)
    headers = signer.headers()
    with make_client(store_dir) as client:
        client.post("/v1/models/iris/predict", json=ROWS[0], headers=headers)
        samples = [line for line in client.get("/metrics").text.splitlines() if not line.startswith("#")]
        assert not [line for line in samples if line.startswith("modelberth_inference_shadow")]
        assert client.get("/v1/models/iris/versions", headers=headers).json()["shadow"]["status"] == "off"
    with make_client(store_dir, shadow_models="other") as client:
        client.post("/v1/models/iris/predict", json=ROWS[0], headers=headers)
        client.post("/v1/models/other/predict", json=ROWS[0], headers=headers)
        _until(lambda: _sample(client, "modelberth_inference_shadow_compared_rows_total", model="other") == 1)
        assert _sample(client, "modelberth_inference_shadow_compared_rows_total", model="iris") is None
        assert client.get("/v1/models/iris/versions", headers=headers).json()["shadow"] == {
            "enabled": False,
            "status": "off",
        }


def test_a_full_queue_drops_and_counts_and_the_answer_is_unchanged(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    headers = signer.headers()
    with make_client(store_dir, shadow=True, shadow_queue_rows=3) as client:
        big = client.post("/v1/models/iris/predict", json={"instances": ROWS}, headers=headers)
        assert big.status_code == 200
        small = client.post("/v1/models/iris/predict", json={"instances": ROWS[:3]}, headers=headers)
        assert small.status_code == 200
        _until(
            lambda: (
                _sample(client, "modelberth_inference_shadow_requests_total", model="iris", outcome="scored")
                == 1
            )
        )
        assert (
            _sample(client, "modelberth_inference_shadow_requests_total", model="iris", outcome="dropped")
            == 1
        )
        assert _sample(client, "modelberth_inference_shadow_compared_rows_total", model="iris") == 3


def test_a_challenger_that_cannot_read_the_champions_requests_is_counted_as_failed(
    make_client: Callable[..., Any],
    tmp_path: Path,
    signer: Any,
    artifact_factory: Callable[..., Path],
    variant_factory: Callable[..., Path],
) -> None:
    """The champion was trained without the petal features; its requests do not carry what the challenger
    (all four features) needs."""
    from sklearn.linear_model import LogisticRegression

    model_dir = tmp_path / "models"
    full = artifact_factory(model_dir, alias="full")
    variant_factory(
        model_dir, full, LogisticRegression(), alias=CHAMPION, features=["sepal_length", "sepal_width"]
    )
    FilesystemStore(model_dir).move_alias("iris", CHALLENGER, full.name, reason="gate")
    headers = signer.headers()
    with make_client(model_dir, shadow=True) as client:
        row = {"sepal_length": 5.1, "sepal_width": 3.5}
        for _ in range(3):
            assert client.post("/v1/models/iris/predict", json=row, headers=headers).status_code == 200
        assert (
            _sample(client, "modelberth_inference_shadow_requests_total", model="iris", outcome="failed") == 3
        )
        shadow = client.get("/v1/models/iris/versions", headers=headers).json()["shadow"]
        assert shadow["status"] == "incompatible"
        assert shadow["reason"] == (
            "the challenger needs features the champion's requests do not carry: petal_length, petal_width"
        )


def test_a_challenger_that_raises_is_counted_and_the_champion_answers(
    make_client: Callable[..., Any], tmp_path: Path, signer: Any, mixed_artifact: Callable[..., Path]
) -> None:
    """The champion takes an unseen category (a warning); the challenger's encoder refuses it (raises)."""
    from datetime import UTC, datetime

    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    model_dir = tmp_path / "models"
    champion = mixed_artifact(model_dir, "loans", "classification")
    card = contract.read_card(champion)
    frame = pd.DataFrame(
        {
            "age": [20.0, 35.0, 50.0, 65.0] * 5,
            "income": [30_000.0, 45_000.0, 60_000.0, 75_000.0] * 5,
            "city": ["paris", "lyon", "nice", "paris"] * 5,
        }
    )
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "num",
                            Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                            ["age", "income"],
                        ),
                        ("cat", OneHotEncoder(handle_unknown="error"), ["city"]),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    )
    pipeline.fit(frame, ["no", "yes"] * (len(frame) // 2))
    store = FilesystemStore(model_dir)
    version = store.new_version("loans", datetime.now(UTC))
    with store.staging("loans") as staged:
        joblib.dump(pipeline, staged / contract.MODEL_FILE)
        frame.head(5).to_csv(staged / contract.EXAMPLES_FILE, index=False)
        new = card.model_copy(
            update={"version": version, "model_sha256": contract.sha256_file(staged / contract.MODEL_FILE)}
        )
        store.publish(staged, new)
    store.move_alias("loans", CHALLENGER, version, reason="gate")
    headers = signer.headers()
    with make_client(model_dir, shadow=True) as client:
        known = {"age": 40.0, "income": 50_000.0, "city": "paris"}
        unseen = {**known, "city": "marseille"}
        for row in (known, unseen, unseen):
            assert client.post("/v1/models/loans/predict", json=row, headers=headers).status_code == 200
        _until(
            lambda: (
                _sample(client, "modelberth_inference_shadow_requests_total", model="loans", outcome="failed")
                == 2
            )
        )
        assert (
            _sample(client, "modelberth_inference_shadow_requests_total", model="loans", outcome="scored")
            == 1
        )


def test_shadowing_follows_the_aliases(
    make_client: Callable[..., Any], store_dir: Path, signer: Any, variant_factory: Callable[..., Path]
) -> None:
    store = FilesystemStore(store_dir)
    champion, challenger = store.aliases("iris")[CHAMPION], store.aliases("iris")[CHALLENGER]
    headers = signer.headers()

    def shadow() -> dict[str, Any]:
        result: dict[str, Any] = client.get("/v1/models/iris/versions", headers=headers).json()["shadow"]
        return result

    with make_client(store_dir, shadow=True) as client:
        assert (shadow()["champion"], shadow()["challenger"]) == (champion, challenger)
        # Promoted: the challenger alias names the champion now, so there is nothing to compare.
        store.move_alias("iris", CHAMPION, challenger, reason="promote")
        assert client.post("/v1/models/iris/reload", headers=headers).json()["status"] == "loaded"
        assert shadow() == {"enabled": True, "status": "off"}
        client.post("/v1/models/iris/predict", json=ROWS[0], headers=headers)
        # A new challenger: the pair is set up at the next poll or reload.
        newer = variant_factory(store_dir, store_dir / "iris" / champion, SETOSA_ONLY).name
        client.post("/v1/models/iris/reload", headers=headers)
        assert (shadow()["champion"], shadow()["challenger"]) == (challenger, newer)


def test_agreement_of_labels_and_of_values_within_the_tolerance() -> None:
    def labels(*values: str, invalid: list[int] | None = None) -> Prediction:
        return Prediction(list(values), None, None, None if invalid is None else np.asarray(invalid))

    def values(*numbers: float, invalid: list[int] | None = None) -> Prediction:
        return Prediction(list(numbers), None, None, None if invalid is None else np.asarray(invalid))

    assert agreement(labels("a", "b", "c"), labels("a", "c", "c"), regression=False, tolerance=0) == (3, 2)
    # A row the champion could not answer is not compared; one the challenger could not, disagrees.
    assert agreement(
        labels("a", "b", "c", invalid=[0]), labels("a", "b", "c"), regression=False, tolerance=0
    ) == (2, 2)
    assert agreement(labels("a", "b"), labels("a", "b", invalid=[1]), regression=False, tolerance=0) == (2, 1)
    within = agreement(
        values(100.0, 100.0, -50.0, 0.0), values(104.9, 94.0, -52.0, 0.0), regression=True, tolerance=0.05
    )
    assert within == (4, 3)
    nan = agreement(values(1.0, 2.0), values(float("nan"), 2.0, invalid=[0]), regression=True, tolerance=0.5)
    assert nan == (2, 1)


def test_a_challenger_that_cannot_load_leaves_the_champion_answering_and_says_why(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    challenger = store_dir / "iris" / FilesystemStore(store_dir).aliases("iris")[CHALLENGER]
    (challenger / contract.MODEL_FILE).write_bytes(b"tampered")
    headers = signer.headers()
    with make_client(store_dir, shadow=True, poll_seconds=0.05) as client:
        time.sleep(0.3)  # several polls: each finds the same challenger refused, none loads it again
        assert client.post("/v1/models/iris/predict", json=ROWS[0], headers=headers).status_code == 200
        shadow = client.get("/v1/models/iris/versions", headers=headers).json()["shadow"]
        assert shadow == {
            "enabled": True,
            "status": "waiting",
            "challenger": challenger.name,
            "reason": f"model 'iris' version {challenger.name} cannot be loaded: "
            "the model file is missing or its sha256 differs from the card's",
        }
        failures = _sample(client, "modelberth_inference_model_load_failures_total", model="iris")
        assert failures == 1
