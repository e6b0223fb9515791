"""The leak guard: single columns that predict the target (almost) on their own, on the training part.

Two signals, both cross-validated on (a sample of) the training part only:

- near-perfect: the column alone reaches a skill of at least ``NEAR_PERFECT`` (e.g. ROC AUC >= 0.99);
- dominant: the column alone reaches a skill of ``STRONG_ALONE`` (ROC AUC 0.8) and removing it costs
  the model at least ``DOMINANT_SHARE`` of its skill, no other column making up for it (bank
  marketing's ``duration``, only known after the call, is the textbook case).

Either is worth a human look; ``--drop COL`` is the remedy. The guard reports, it never drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn import metrics as skm
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from modelberth_core.contract import LeakWarning
from modelberth_trainer.columns import ColumnPlan
from modelberth_trainer.pipelines import tree_preprocessor

NEAR_PERFECT = 0.98
DOMINANT_SHARE = 0.25
STRONG_ALONE = 0.6
"""Skill a dominant column must reach alone to be flagged (ROC AUC 0.8; bank's duration has 0.81)."""
SAMPLE_ROWS = 6_000
FOLDS = 3


@dataclass
class GuardResult:
    """Flagged columns, the reason for each, and every column's single-column score."""

    metric: str
    warnings: list[LeakWarning] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    single_scores: dict[str, float] = field(default_factory=dict)


def guard_metric(task: str, n_classes: int) -> str:
    """roc_auc (binary), balanced_accuracy (multiclass) or r2 (regression)."""
    if task == "regression":
        return "r2"
    return "roc_auc" if n_classes == 2 else "balanced_accuracy"


def skill(metric: str, score: float, n_classes: int) -> float:
    """A score rescaled so 0 is chance and 1 is perfect."""
    if metric == "roc_auc":
        return max(0.0, 2.0 * score - 1.0)
    if metric == "balanced_accuracy":
        chance = 1.0 / n_classes
        return max(0.0, (score - chance) / (1.0 - chance))
    return max(0.0, score)


def _score(metric: str, y: NDArray[Any], predicted: NDArray[Any], positive: str | None) -> float:
    if metric == "roc_auc":
        column = sorted(np.unique(y).tolist()).index(positive)
        return float(skm.roc_auc_score(y == positive, predicted[:, column]))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, predicted))
    return float(skm.r2_score(y.astype(float), predicted))


def _oof(model: Any, x: pd.DataFrame, y: NDArray[Any], metric: str, seed: int) -> NDArray[Any]:
    if metric == "r2":
        return np.asarray(
            cross_val_predict(model, x, y.astype(float), cv=KFold(FOLDS, shuffle=True, random_state=seed))
        )
    cv = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    method = "predict_proba" if metric == "roc_auc" else "predict"
    return np.asarray(cross_val_predict(model, x, y, cv=cv, method=method))


def _single_model(kind: str, metric: str, n_rows: int) -> Pipeline:
    leaf = max(5, n_rows // 500)
    tree: Any = (
        DecisionTreeRegressor(max_depth=8, min_samples_leaf=leaf, random_state=0)
        if metric == "r2"
        else DecisionTreeClassifier(max_depth=8, min_samples_leaf=leaf, random_state=0)
    )
    if kind == "categorical":
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
        )
        return make_pipeline(encoder, tree)
    return make_pipeline(tree)


def _boosted(plan: ColumnPlan, metric: str, seed: int) -> Pipeline:
    prep, mask = tree_preprocessor(plan, impute=False)
    common: dict[str, Any] = {
        "max_iter": 60,
        "categorical_features": mask if any(mask) else None,
        "random_state": seed,
        "early_stopping": False,
    }
    model: Any = (
        HistGradientBoostingRegressor(**common)
        if metric == "r2"
        else HistGradientBoostingClassifier(**common)
    )
    return Pipeline([("prep", prep), ("model", model)])


def check_leaks(
    x: pd.DataFrame, y: NDArray[Any], plan: ColumnPlan, task: str, positive: str | None, seed: int
) -> GuardResult:
    """Run the guard on the training part (``x``, ``y``); text columns are not checked one by one."""
    classes = sorted(np.unique(y)) if task == "classification" else []
    metric = guard_metric(task, len(classes))
    result = GuardResult(metric=metric)
    tabular = [c for c in plan.features if plan.types[c] != "text"]
    if len(plan.features) < 2 or not tabular:
        return result  # one input is the task itself, not a leak
    if len(x) > SAMPLE_ROWS:
        x, _, y, _ = train_test_split(
            x, y, train_size=SAMPLE_ROWS, random_state=seed, stratify=y if classes else None
        )
    n_classes = max(2, len(classes))
    for col in tabular:
        model = _single_model(plan.types[col], metric, len(x))
        predicted = _oof(model, x[[col]], y, metric, seed)
        result.single_scores[col] = _score(metric, y, predicted, positive)
        if metric == "roc_auc" and plan.types[col] == "numeric" and x[col].notna().all():
            # A monotone column is scored by its ranks too (the tree's bins lose a little of it).
            ranked_auc = float(skm.roc_auc_score(y == positive, x[col].to_numpy(dtype=float)))
            result.single_scores[col] = max(result.single_scores[col], ranked_auc, 1.0 - ranked_auc)
    ranked = sorted(result.single_scores, key=lambda c: result.single_scores[c], reverse=True)
    for col in ranked:
        col_skill = skill(metric, result.single_scores[col], n_classes)
        if col_skill >= NEAR_PERFECT:
            result.reasons[col] = (
                f"alone it reaches {metric}={result.single_scores[col]:.3f}"
                " on the training part (near-perfect)"
            )
    top = ranked[0]
    top_skill = skill(metric, result.single_scores[top], n_classes)
    if top not in result.reasons and top_skill >= STRONG_ALONE:
        subset = ColumnPlan(types={c: plan.types[c] for c in tabular})
        rest = ColumnPlan(types={c: plan.types[c] for c in tabular if c != top})
        full_score = _score(
            metric, y, _oof(_boosted(subset, metric, seed), x[subset.features], y, metric, seed), positive
        )
        rest_score = _score(
            metric, y, _oof(_boosted(rest, metric, seed), x[rest.features], y, metric, seed), positive
        )
        full_skill, rest_skill = skill(metric, full_score, n_classes), skill(metric, rest_score, n_classes)
        if full_skill - rest_skill >= DOMINANT_SHARE * full_skill:
            result.reasons[top] = (
                f"alone it reaches {metric}={result.single_scores[top]:.3f};"
                " without it the other columns reach"
                f" {rest_score:.3f} instead of {full_score:.3f}"
            )
    for col in ranked:
        if col in result.reasons:
            result.warnings.append(
                LeakWarning(
                    column=col, score=round(result.single_scores[col], 6), metric=metric, dropped=False
                )
            )
    return result
