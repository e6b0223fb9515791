"""Quality floors of issue 2 on the real datasets, with reduced budgets (``make bench`` uses the default).

Each run keeps the whole pipeline (split, leak guard, CV, refit, test, artifact) but searches only the
candidate that the default-budget search picks on that dataset, with its default configuration, so the
suite stays within minutes on two cores. The datasets are read in place; a missing file is a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelberth_core import contract
from modelberth_trainer.settings import TrainerSettings
from modelberth_trainer.train import run

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"

pytestmark = pytest.mark.slow


def _data(relative: str) -> Path:
    path = (DATA / relative).resolve()
    assert path.is_file(), f"dataset {path} is missing: see ../shared/data/README.md (tests never skip it)"
    return path


def _train(tmp_path: Path, candidate: str, **kwargs: Any) -> contract.ModelCard:
    return _train_with_console(tmp_path, candidate, **kwargs)[0]


def _train_with_console(
    tmp_path: Path, candidate: str, **kwargs: Any
) -> tuple[contract.ModelCard, list[str]]:
    settings = TrainerSettings(
        store=str(tmp_path / "models"),
        time_budget_seconds=30,
        candidates=[candidate],
        max_configs_per_candidate=1,
        **kwargs,
    )
    lines: list[str] = []
    return contract.read_card(run(settings, lines.append).path), lines


def test_bank_marketing_auc_and_accuracy_at_threshold_and_duration_flagged(tmp_path: Path) -> None:
    card, console = _train_with_console(
        tmp_path, "hist_gradient_boosting", data=_data("bank_marketing/bank-full.csv"), target="y"
    )
    assert card.metrics.test["roc_auc"] >= 0.935
    assert card.metrics.test_at_threshold is not None
    assert card.metrics.test_at_threshold["accuracy"] >= 0.90
    assert card.positive_label == "yes"
    assert [w.column for w in card.leak_warnings] == ["duration"]
    assert any("LEAK WARNING" in line and "duration" in line for line in console)


def test_bank_marketing_without_duration(tmp_path: Path) -> None:
    card = _train(
        tmp_path,
        "hist_gradient_boosting",
        data=_data("bank_marketing/bank-full.csv"),
        target="y",
        drop=["duration"],
    )
    assert card.metrics.test["roc_auc"] >= 0.79
    assert card.leak_warnings == []
    assert "duration" not in card.feature_names


def test_credit_default_auc_with_id_dropped(tmp_path: Path) -> None:
    card = _train(
        tmp_path,
        "hist_gradient_boosting",
        data=_data("credit_default/UCI_Credit_Card.csv"),
        target="default.payment.next.month",
    )
    assert card.metrics.test["roc_auc"] >= 0.78
    assert any(d.name == "ID" and d.reason.startswith("identifier") for d in card.dropped_columns)
    assert card.features[0].name == "LIMIT_BAL"
    assert card.features[0].max == 1_000_000.0  # 1e+06 parsed as a number


def test_atis_intents_on_the_separate_test_file(tmp_path: Path) -> None:
    card = _train(
        tmp_path,
        "linear_tfidf",
        data=_data("atis/atis_intents_train.csv"),
        test_data=_data("atis/atis_intents_test.csv"),
        no_header=True,
        columns=["intent", "text"],
        target="intent",
    )
    assert card.metrics.test["accuracy"] >= 0.98
    assert card.data.test_rows == 800
    assert [f.type for f in card.features] == ["text"]


def test_wine_red_classification(tmp_path: Path) -> None:
    card = _train(tmp_path, "forest", data=_data("wine_quality/winequality-red.csv"), target="quality")
    assert card.metrics.test["accuracy"] >= 0.68
    assert card.classes == ["3", "4", "5", "6", "7", "8"]


def test_wine_red_regression(tmp_path: Path) -> None:
    card = _train(
        tmp_path,
        "forest",
        data=_data("wine_quality/winequality-red.csv"),
        target="quality",
        task="regression",
    )
    assert card.metrics.test["rmse"] <= 0.60
    assert card.classes is None
