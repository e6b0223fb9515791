"""Metrics keyed by scikit-learn scorer names (without ``neg_``) and the binary decision threshold."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sklearn import metrics as skm

from modelberth_core.contract import Threshold
from modelberth_trainer.errors import DataError
from modelberth_trainer.settings import CLASSIFICATION_METRICS, REGRESSION_METRICS

LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})
SKLEARN_SCORERS = {
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "log_loss": "neg_log_loss",
    "roc_auc": "roc_auc",
    "roc_auc_ovr": "roc_auc_ovr",
}

FloatArray = NDArray[np.float64]


def default_metric(task: str, n_classes: int) -> str:
    """roc_auc for binary, f1_macro for multiclass, rmse for regression."""
    if task == "regression":
        return "rmse"
    return "roc_auc" if n_classes == 2 else "f1_macro"


def resolve_metric(metric: str | None, task: str, n_classes: int) -> str:
    """Validate ``--metric`` for the task; multiclass roc_auc means one-vs-rest (``roc_auc_ovr``)."""
    if metric is None:
        return default_metric(task, n_classes)
    name = metric.removeprefix("neg_")
    name = {"root_mean_squared_error": "rmse", "mean_absolute_error": "mae"}.get(name, name)
    allowed = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    if name not in allowed:
        raise DataError(f"metric {metric!r} does not fit a {task} task (choose from {', '.join(allowed)})")
    if task == "classification" and n_classes > 2:
        if name in ("average_precision", "f1"):
            raise DataError(f"metric {metric!r} needs a binary target; use f1_macro or roc_auc")
        if name == "roc_auc":
            return "roc_auc_ovr"
    return name


def greater_is_better(metric: str) -> bool:
    """False for error metrics (rmse, mae, log_loss)."""
    return metric not in LOWER_IS_BETTER


def sklearn_scorer(metric: str) -> str:
    """The scikit-learn scorer string for one of our metric names (``rmse`` -> the neg_ scorer)."""
    return SKLEARN_SCORERS.get(metric, metric)


def classification_scores(
    y_true: NDArray[np.object_], proba: FloatArray, classes: list[str], positive: str | None
) -> dict[str, float]:
    """Probability and argmax scores; binary scores refer to ``positive``."""
    predicted = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    scores = {
        "accuracy": skm.accuracy_score(y_true, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, predicted),
        "f1_macro": skm.f1_score(y_true, predicted, average="macro", zero_division=0),
        "f1_weighted": skm.f1_score(y_true, predicted, average="weighted", zero_division=0),
        "log_loss": skm.log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=classes),
    }
    present = set(np.unique(y_true))
    if len(classes) == 2 and positive is not None:
        pos = classes.index(positive)
        is_pos = y_true == positive
        if len(present) == 2:
            scores["roc_auc"] = skm.roc_auc_score(is_pos, proba[:, pos])
            scores["average_precision"] = skm.average_precision_score(is_pos, proba[:, pos])
        scores["f1"] = skm.f1_score(is_pos, predicted == positive, zero_division=0)
        scores["precision"] = skm.precision_score(is_pos, predicted == positive, zero_division=0)
        scores["recall"] = skm.recall_score(is_pos, predicted == positive, zero_division=0)
    elif present == set(classes):
        scores["roc_auc_ovr"] = skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    return {k: float(v) for k, v in scores.items()}


def regression_scores(y_true: FloatArray, predicted: FloatArray) -> dict[str, float]:
    """rmse, mae and r2."""
    return {
        "rmse": float(skm.root_mean_squared_error(y_true, predicted)),
        "mae": float(skm.mean_absolute_error(y_true, predicted)),
        "r2": float(skm.r2_score(y_true, predicted)),
    }


def threshold_scores(is_pos: NDArray[np.bool_], p_pos: FloatArray, threshold: float) -> dict[str, float]:
    """Scores of hard predictions ``p_pos >= threshold``."""
    hard = p_pos >= threshold
    return {
        "accuracy": float(skm.accuracy_score(is_pos, hard)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(is_pos, hard)),
        "precision": float(skm.precision_score(is_pos, hard, zero_division=0)),
        "recall": float(skm.recall_score(is_pos, hard, zero_division=0)),
        "f1": float(skm.f1_score(is_pos, hard, zero_division=0)),
        "f1_macro": float(skm.f1_score(is_pos, hard, average="macro", zero_division=0)),
    }


def _candidate_thresholds(p_pos: FloatArray) -> FloatArray:
    quantiles = np.quantile(p_pos, np.linspace(0.0, 1.0, 1001))
    grid = np.unique(np.concatenate([quantiles, np.linspace(0.01, 0.99, 99)]))
    return grid[(grid > 0.0) & (grid < 1.0)]


def choose_threshold(
    is_pos: NDArray[np.bool_], p_pos: FloatArray, cost_fp: float | None = None, cost_fn: float | None = None
) -> Threshold:
    """Min expected cost when both costs are given, else max F1, on out-of-fold probabilities."""
    grid = _candidate_thresholds(p_pos)
    if grid.size == 0:
        return Threshold(value=0.5, strategy="default")
    hard = p_pos[None, :] >= grid[:, None]
    tp = (hard & is_pos[None, :]).sum(axis=1)
    fp = (hard & ~is_pos[None, :]).sum(axis=1)
    fn = (~hard & is_pos[None, :]).sum(axis=1)
    if cost_fp is not None and cost_fn is not None:
        cost = cost_fp * fp + cost_fn * fn
        best = int(np.argmin(cost))
        return Threshold(value=float(grid[best]), strategy="min_cost", cost_fp=cost_fp, cost_fn=cost_fn)
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    best = int(np.argmax(f1))
    return Threshold(value=float(grid[best]), strategy="max_f1")
