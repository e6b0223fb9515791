"""Fairness as a number: swapping a protected attribute changes predictions only if the target uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modelberth_core import contract
from modelberth_trainer.settings import TrainerSettings
from modelberth_trainer.train import run


def _planted(path: Path, depends: bool) -> Path:
    rng = np.random.default_rng(11)
    rows = 1200
    sex = rng.choice([1, 2], rows)
    income = rng.normal(0, 1, rows)
    logit = 1.2 * income + (3.0 * (sex == 2) - 1.5 if depends else 0.0)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    pd.DataFrame({"SEX": sex, "income": income, "region": rng.choice(["n", "s"], rows), "y": y}).to_csv(
        path, index=False
    )
    return path


def _flip_rate(tmp_path: Path, depends: bool) -> contract.FairnessResult:
    settings = TrainerSettings(
        data=_planted(tmp_path / f"planted_{depends}.csv", depends),
        target="y",
        store=str(tmp_path / "models"),
        time_budget_seconds=5,
        candidates=["logistic"],
        max_configs_per_candidate=1,
        protected=["SEX"],
    )
    card = contract.read_card(run(settings, lambda _line: None).path)
    assert card.positive_label == "1"
    assert card.threshold is not None
    assert card.threshold.strategy == "max_f1"
    (result,) = card.fairness
    assert result.attribute == "SEX"
    assert result.swaps == {"1": "2", "2": "1"} or result.swaps == {"2": "1", "1": "2"}
    assert result.rows == card.data.test_rows
    return result


def test_flip_rate_is_clearly_positive_when_the_target_depends_on_the_attribute(tmp_path: Path) -> None:
    assert _flip_rate(tmp_path, depends=True).flip_rate > 0.2


def test_flip_rate_is_about_zero_when_it_does_not(tmp_path: Path) -> None:
    assert _flip_rate(tmp_path, depends=False).flip_rate < 0.05


def test_costs_set_a_min_cost_threshold(tmp_path: Path) -> None:
    base = {
        "data": _planted(tmp_path / "p.csv", True),
        "target": "y",
        "time_budget_seconds": 5,
        "candidates": ["logistic"],
        "max_configs_per_candidate": 1,
    }
    cautious = run(
        TrainerSettings(**base, store=str(tmp_path / "a"), cost_fp=1.0, cost_fn=20.0),  # type: ignore[arg-type]
        lambda _line: None,
    ).path
    strict = run(
        TrainerSettings(**base, store=str(tmp_path / "b"), cost_fp=20.0, cost_fn=1.0),  # type: ignore[arg-type]
        lambda _line: None,
    ).path
    low, high = contract.read_card(cautious).threshold, contract.read_card(strict).threshold
    assert low is not None
    assert high is not None
    assert low.strategy == "min_cost"
    assert low.value < high.value
