"""The budgeted search: skipping once the budget is spent, stopping on no progress, a sorted leaderboard."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from modelberth_trainer.columns import ColumnPlan
from modelberth_trainer.pipelines import build_candidates
from modelberth_trainer.prepare import Problem
from modelberth_trainer.search import Clock, Limits, TrainingData, run_search


def _data() -> tuple[pd.DataFrame, np.ndarray, ColumnPlan]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=150), "b": rng.normal(size=150)})
    y = np.where(x["a"] + rng.normal(0, 0.5, 150) > 0, "p", "q").astype(object)
    return x, y, ColumnPlan(types={"a": "numeric", "b": "numeric"})


def _search(deadline_in: float, patience: int, max_configs: int) -> tuple[object, list[str]]:
    x, y, plan = _data()
    candidates = build_candidates(
        plan, classification=True, imbalanced=False, seed=0, n_jobs=1, n_rows=len(x)
    )
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(x, y))
    lines: list[str] = []
    now = time.monotonic()
    result = run_search(
        candidates,
        TrainingData(x, y, folds, Problem("classification", "roc_auc", ["p", "q"], "p")),
        Clock(started=now, budget=deadline_in, deadline=now + deadline_in, hard_end=now + deadline_in + 60),
        Limits(max_configs=max_configs, patience=patience, seed=0),
        lines.append,
    )
    return result, lines


def test_spent_budget_runs_only_the_first_default_and_skips_the_rest() -> None:
    result, lines = _search(0.0, patience=3, max_configs=10)
    statuses = [row.status for row in result.leaderboard]  # type: ignore[attr-defined]
    assert statuses == ["ok", "skipped", "skipped"]
    assert result.leaderboard[0].n_configs == 1  # type: ignore[attr-defined]
    assert sum("skipped: time budget spent" in line for line in lines) == 2


def test_patience_and_config_cap_bound_the_search_and_the_leaderboard_is_sorted() -> None:
    result, lines = _search(600.0, patience=1, max_configs=3)
    rows = result.leaderboard  # type: ignore[attr-defined]
    assert all(1 <= row.n_configs <= 3 for row in rows)
    scores = [row.cv_score for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert result.selected.score == scores[0]  # type: ignore[attr-defined]
    assert result.selected.oof.shape == (150, 2)  # type: ignore[attr-defined]
    assert any(line.startswith("[1/3]") and "elapsed" in line for line in lines)
