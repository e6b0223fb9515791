"""After selection, on the test part only: hard predictions, permutation importance and fairness."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from modelberth_core.contract import FairnessResult, Threshold
from modelberth_trainer.errors import DataError
from modelberth_trainer.prepare import Problem
from modelberth_trainer.scoring import greater_is_better
from modelberth_trainer.search import all_scores, predict_scores

IMPORTANCE_ROWS = 1000
MAX_SWAP_VALUES = 10
REGRESSION_CHANGE = 0.1
"""A regression prediction counts as changed when it moves by more than this share of the target's std."""


def hard_predictions(
    scores: NDArray[np.float64], problem: Problem, threshold: Threshold | None
) -> NDArray[Any]:
    """Labels (threshold on P(positive) for binary, argmax otherwise) or regression values."""
    if not problem.classification:
        return scores[:, 0]
    assert problem.classes is not None
    classes = np.asarray(problem.classes, dtype=object)
    if threshold is not None and problem.positive is not None and len(problem.classes) == 2:
        pos = problem.classes.index(problem.positive)
        neg = 1 - pos
        labels: NDArray[Any] = np.where(scores[:, pos] >= threshold.value, classes[pos], classes[neg])
        return labels
    argmax: NDArray[Any] = classes[np.argmax(scores, axis=1)]
    return argmax


def importance(
    pipeline: Pipeline, x: pd.DataFrame, y: NDArray[Any], problem: Problem, seed: int
) -> dict[str, float]:
    """Mean drop of the primary metric when one column is shuffled (test part, up to 1000 rows)."""
    if len(x) > IMPORTANCE_ROWS:
        pick = np.random.default_rng(seed).choice(len(x), IMPORTANCE_ROWS, replace=False)
        x, y = x.iloc[np.sort(pick)], y[np.sort(pick)]
    sign = 1.0 if greater_is_better(problem.metric) else -1.0

    def scorer(estimator: Pipeline, x_part: pd.DataFrame, y_part: NDArray[Any]) -> float:
        value = all_scores(problem, y_part, predict_scores(estimator, x_part, problem)).get(
            problem.metric, np.nan
        )
        return sign * value

    result = permutation_importance(
        pipeline, x, y, scoring=scorer, n_repeats=5 if len(x) < 1000 else 3, random_state=seed, n_jobs=1
    )
    values = {col: float(v) for col, v in zip(x.columns, result.importances_mean, strict=True)}
    return dict(sorted(values.items(), key=lambda kv: kv[1], reverse=True))


def _label(value: Any) -> str:
    if isinstance(value, float) and value == round(value):
        return str(int(value))
    return str(value)


def swap_values(column: pd.Series) -> tuple[pd.Series, dict[str, str]]:
    """The column with each value swapped for another and the mapping used.

    Two values swap with each other; up to ten rotate in frequency order; a numeric column with more
    values is mirrored around its median (clipped to the observed range).
    """
    present = column.dropna()
    counts = present.value_counts()
    if len(counts) <= MAX_SWAP_VALUES:
        order = list(counts.index)
        mapping = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
        return column.map(lambda v: mapping.get(v, v)), {_label(k): _label(v) for k, v in mapping.items()}
    if pd.api.types.is_numeric_dtype(column):
        median = float(present.median())
        mirrored = (2 * median - column.astype(float)).clip(float(present.min()), float(present.max()))
        return mirrored, {"x": f"2*{median:g} - x (mirrored around the median)"}
    top = list(counts.index[:MAX_SWAP_VALUES])
    mapping = {top[i]: top[(i + 1) % len(top)] for i in range(len(top))}
    return column.map(lambda v: mapping.get(v, v)), {_label(k): _label(v) for k, v in mapping.items()}


def fairness(
    pipeline: Pipeline,
    x: pd.DataFrame,
    attributes: list[str],
    problem: Problem,
    threshold: Threshold | None,
    target_std: float | None,
) -> list[FairnessResult]:
    """Per protected attribute: the share of test predictions that change when its value is swapped."""
    unknown = [a for a in attributes if a not in x.columns]
    if unknown:
        raise DataError(f"--protected names columns that are not model features: {unknown}")
    base = hard_predictions(predict_scores(pipeline, x, problem), problem, threshold)
    results = []
    for attribute in attributes:
        swapped_col, swaps = swap_values(x[attribute])
        changed_rows = (swapped_col.astype(object) != x[attribute].astype(object)) & x[attribute].notna()
        rows = int(changed_rows.sum())
        if rows == 0:
            results.append(FairnessResult(attribute=attribute, flip_rate=0.0, swaps=swaps, rows=0))
            continue
        swapped = x.copy()
        swapped[attribute] = swapped_col.astype(x[attribute].dtype)
        after = hard_predictions(predict_scores(pipeline, swapped, problem), problem, threshold)
        mask = changed_rows.to_numpy()
        if problem.classification:
            flips = base[mask] != after[mask]
        else:
            tolerance = REGRESSION_CHANGE * (target_std or 1.0)
            flips = np.abs(base[mask].astype(float) - after[mask].astype(float)) > tolerance
        results.append(
            FairnessResult(attribute=attribute, flip_rate=float(np.mean(flips)), swaps=swaps, rows=rows)
        )
    return results
