"""The iris artifact: quality floor, invariance and directional behaviour, and a complete card."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from modelberth_core import contract


@pytest.fixture(scope="module")
def card(iris_artifact: Path) -> contract.ModelCard:
    return contract.read_card(iris_artifact)


@pytest.fixture(scope="module")
def model(iris_artifact: Path, card: contract.ModelCard) -> object:
    return joblib.load(contract.verify_checksum(iris_artifact, card))


@pytest.fixture(scope="module")
def examples(iris_artifact: Path) -> pd.DataFrame:
    return pd.read_csv(iris_artifact / contract.EXAMPLES_FILE)


def test_holdout_quality_floor(card: contract.ModelCard) -> None:
    assert card.metrics.test["accuracy"] >= 0.93
    assert card.metrics.primary == "f1_macro"
    assert card.data.test_rows >= 30


def test_card_is_complete(card: contract.ModelCard) -> None:
    assert card.task == "classification"
    assert card.target == "species"
    assert card.classes == ["setosa", "versicolor", "virginica"]
    assert card.feature_names == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    for spec in card.features:
        assert spec.type == "numeric"
        assert spec.required
        assert spec.min is not None
        assert spec.max is not None
        assert spec.min <= float(spec.example) <= spec.max
    assert set(card.reference_profile) == set(card.feature_names)
    assert set(card.feature_importance) == set(card.feature_names)
    assert {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr"} <= set(card.metrics.test)
    assert set(card.metrics.cv) >= {"accuracy", "f1_macro"}
    assert np.asarray(card.metrics.confusion_matrix).sum() == card.data.test_rows
    assert len(card.leaderboard) == 3
    assert card.leaderboard[0].candidate == card.selected.candidate
    assert card.data.source == "sklearn:iris"
    assert len(card.data.sha256) == 64
    assert card.data.class_counts is not None
    assert sum(card.data.class_counts.values()) == card.data.train_rows
    assert card.versions.sklearn
    assert card.threshold is None
    assert {"search_seconds", "total_seconds", "report_seconds"} <= set(card.timings)


def test_examples_are_held_out_rows_with_the_feature_header(
    iris_artifact: Path, card: contract.ModelCard, examples: pd.DataFrame
) -> None:
    header = (iris_artifact / contract.EXAMPLES_FILE).read_text().splitlines()[0]
    assert header.split(",") == card.feature_names
    assert 0 < len(examples) <= 200
    assert len(examples) == min(200, card.data.test_rows)


def test_batch_and_single_row_predictions_agree_and_ignore_row_order(
    model: object, examples: pd.DataFrame
) -> None:
    batch = model.predict_proba(examples)  # type: ignore[attr-defined]
    singles = np.vstack([model.predict_proba(examples.iloc[[i]]) for i in range(len(examples))])  # type: ignore[attr-defined]
    assert singles == pytest.approx(batch)
    order = np.random.default_rng(0).permutation(len(examples))
    assert model.predict_proba(examples.iloc[order]) == pytest.approx(batch[order])  # type: ignore[attr-defined]


def test_directional_larger_petals_move_towards_virginica(model: object, card: contract.ModelCard) -> None:
    base = {"sepal_length_cm": 5.8, "sepal_width_cm": 3.0, "petal_length_cm": 1.5, "petal_width_cm": 0.2}
    rows = pd.DataFrame(
        [
            {**base, "petal_length_cm": pl, "petal_width_cm": pw}
            for pl, pw in [(1.4, 0.2), (4.2, 1.3), (6.0, 2.3)]
        ]
    )
    predicted = list(model.predict(rows))  # type: ignore[attr-defined]
    assert predicted == ["setosa", "versicolor", "virginica"]
    virginica = card.classes.index("virginica")  # type: ignore[union-attr]
    p = model.predict_proba(rows)[:, virginica]  # type: ignore[attr-defined]
    assert p[0] < p[1] < p[2]


def test_model_loads_and_predicts_without_the_trainer_package(iris_artifact: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['modelberth_trainer'] = None  # inference images do not carry the trainer\n"
        "import joblib, pandas as pd\n"
        f"m = joblib.load({str(iris_artifact / contract.MODEL_FILE)!r})\n"
        f"x = pd.read_csv({str(iris_artifact / contract.EXAMPLES_FILE)!r})\n"
        "print(list(m.predict(x.head(3))))\n"
        "print(sorted(k for k, v in sys.modules.items() if k.startswith('modelberth_trainer') and v))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    first, loaded = done.stdout.strip().splitlines()
    assert len(eval(first)) == 3  # noqa: S307 - our own subprocess's repr of a list of strings
    assert loaded == "[]"


def test_report_is_one_self_contained_page(iris_artifact: Path, card: contract.ModelCard) -> None:
    page = (iris_artifact / contract.REPORT_FILE).read_text()
    assert page.startswith("<!doctype html>")
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "http://" not in page
    assert "https://" not in page
    assert page.count("data:image/png;base64,") >= 3
    for section in (
        "Leaderboard",
        "Metrics",
        "Confusion matrix",
        "Permutation importance",
        "Class balance",
        "ROC curves",
        "Precision-recall curves",
        "Timings",
    ):
        assert section in page
    assert card.selected.candidate in page


def test_card_json_round_trips(iris_artifact: Path) -> None:
    raw = json.loads((iris_artifact / contract.CARD_FILE).read_text())
    assert contract.ModelCard.model_validate(raw).model_dump(mode="json") == raw
