"""Metric names, the binary threshold, swaps for fairness and reference profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelberth_trainer.columns import class_labels, guess_positive, infer_task
from modelberth_trainer.errors import DataError
from modelberth_trainer.evaluation import swap_values
from modelberth_trainer.profiling import categorical_profile, numeric_profile
from modelberth_trainer.scoring import choose_threshold, default_metric, resolve_metric, sklearn_scorer


def test_default_and_resolved_metrics() -> None:
    assert default_metric("classification", 2) == "roc_auc"
    assert default_metric("classification", 3) == "f1_macro"
    assert default_metric("regression", 0) == "rmse"
    assert resolve_metric("roc_auc", "classification", 5) == "roc_auc_ovr"
    assert resolve_metric("neg_root_mean_squared_error", "regression", 0) == "rmse"
    assert sklearn_scorer("rmse") == "neg_root_mean_squared_error"
    with pytest.raises(DataError, match="does not fit a regression task"):
        resolve_metric("accuracy", "regression", 0)


def test_threshold_maximises_f1_without_costs() -> None:
    rng = np.random.default_rng(0)
    is_pos = rng.random(2000) < 0.2
    p = np.clip(np.where(is_pos, 0.6, 0.3) + rng.normal(0, 0.1, 2000), 0, 1)
    threshold = choose_threshold(is_pos, p)
    assert threshold.strategy == "max_f1"
    assert 0.35 < threshold.value < 0.55


def test_threshold_moves_with_costs() -> None:
    rng = np.random.default_rng(1)
    is_pos = rng.random(3000) < 0.3
    p = np.clip(np.where(is_pos, 0.65, 0.35) + rng.normal(0, 0.15, 3000), 0, 1)
    cheap_fn = choose_threshold(is_pos, p, cost_fp=10.0, cost_fn=1.0)
    costly_fn = choose_threshold(is_pos, p, cost_fp=1.0, cost_fn=10.0)
    assert cheap_fn.strategy == costly_fn.strategy == "min_cost"
    assert costly_fn.value < cheap_fn.value
    assert (costly_fn.cost_fp, costly_fn.cost_fn) == (1.0, 10.0)


def test_labels_positive_class_and_task() -> None:
    assert class_labels(pd.Series([5.0, 6.0, np.nan])).tolist()[:2] == ["5", "6"]
    assert guess_positive(pd.Series({"no": 90, "yes": 10})) == "yes"
    assert guess_positive(pd.Series({"0": 70, "1": 30})) == "1"
    assert guess_positive(pd.Series({"cat": 70, "dog": 30})) == "dog"
    assert infer_task(pd.Series([3, 4, 5, 6] * 10)) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 100))) == "regression"
    assert infer_task(pd.Series(["a", "b"])) == "classification"


def test_swap_values_two_values_swap_and_many_numbers_mirror() -> None:
    swapped, swaps = swap_values(pd.Series([1.0, 2.0, 2.0, np.nan]))
    assert swapped.tolist()[:3] == [2.0, 1.0, 1.0]
    assert swaps == {"2": "1", "1": "2"}
    numbers = pd.Series(np.arange(100, dtype=float))
    mirrored, _ = swap_values(numbers)
    assert mirrored.iloc[0] == pytest.approx(99.0)


def test_profiles_bins_and_other_bucket() -> None:
    profile = numeric_profile(pd.Series([*range(100), np.nan]))
    assert len(profile.frequencies) == len(profile.edges) + 1
    assert sum(profile.frequencies) == pytest.approx(1.0)
    assert profile.missing == pytest.approx(1 / 101)
    cats = categorical_profile(pd.Series([f"c{i}" for i in range(30)] + ["c0"] * 10))
    assert "__other__" in cats.frequencies
    assert sum(cats.frequencies.values()) == pytest.approx(1.0)
