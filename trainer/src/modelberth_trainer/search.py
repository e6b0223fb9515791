"""Model selection on the training part only: randomized search per candidate within a time budget.

Each configuration is cross-validated with the same folds; the out-of-fold predictions of the best
configuration are kept (the binary threshold is chosen on them, never on the test part).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from modelberth_core.contract import LeaderboardRow
from modelberth_trainer.pipelines import Candidate, estimator_name
from modelberth_trainer.scoring import classification_scores, greater_is_better, regression_scores

Folds = list[tuple[NDArray[np.intp], NDArray[np.intp]]]
Say = Callable[[str], None]


@dataclass(frozen=True)
class Problem:
    """What is being learned: the task, the classes (model order) and the selection metric."""

    task: str
    metric: str
    classes: list[str] | None = None
    positive: str | None = None

    @property
    def classification(self) -> bool:
        """True for a classification task."""
        return self.task == "classification"


@dataclass
class Evaluation:
    """One cross-validated configuration."""

    candidate: str
    params: dict[str, Any]
    estimator: str
    score: float
    std: float
    scores: dict[str, float]
    oof: NDArray[np.float64]
    seconds: float
    folds: int


@dataclass
class SearchResult:
    """The leaderboard (one row per candidate), the best evaluation of each candidate, and the selected one
    (the best overall: what the trainer refits and publishes)."""

    leaderboard: list[LeaderboardRow]
    best: dict[str, Evaluation]
    selected: Evaluation
    warnings: set[str] = field(default_factory=set)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def fit_quietly(pipeline: Pipeline, x: pd.DataFrame, y: NDArray[Any], seen: set[str]) -> Pipeline:
    """Fit, collecting warnings (non-convergence...) into ``seen`` instead of raising or printing them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.fit(x, y)
    for w in caught:
        seen.add(f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}")
    return pipeline


def predict_scores(pipeline: Pipeline, x: pd.DataFrame, problem: Problem) -> NDArray[np.float64]:
    """Class probabilities in ``problem.classes`` order, or regression predictions as a column."""
    if not problem.classification:
        return np.asarray(pipeline.predict(x), dtype=float).reshape(-1, 1)
    assert problem.classes is not None
    raw = np.asarray(pipeline.predict_proba(x), dtype=float)
    model_classes = [str(c) for c in pipeline.classes_]
    if model_classes == problem.classes:
        return raw
    out = np.zeros((len(x), len(problem.classes)))
    for j, label in enumerate(model_classes):
        out[:, problem.classes.index(label)] = raw[:, j]
    return out


def all_scores(problem: Problem, y: NDArray[Any], scores: NDArray[np.float64]) -> dict[str, float]:
    """Every metric for the task from probabilities (or predictions)."""
    if problem.classification:
        assert problem.classes is not None
        return classification_scores(y, scores, problem.classes, problem.positive)
    return regression_scores(y.astype(float), scores[:, 0])


def cross_validate(
    candidate: Candidate,
    params: dict[str, Any],
    x: pd.DataFrame,
    y: NDArray[Any],
    folds: Folds,
    problem: Problem,
    seen: set[str],
    stop_at: float | None = None,
) -> Evaluation:
    """Fit on each training fold, score on its validation fold; collect out-of-fold predictions.

    Raises :class:`OverBudget` when ``stop_at`` (a ``time.monotonic()`` value) passes between folds.
    """
    start = time.monotonic()
    width = len(problem.classes) if problem.classification and problem.classes else 1
    oof = np.zeros((len(x), width))
    per_fold: list[dict[str, float]] = []
    estimator = ""
    for train_idx, valid_idx in folds:
        if stop_at is not None and time.monotonic() > stop_at:
            raise OverBudget(f"stopped after {len(per_fold)} of {len(folds)} folds: time share spent")
        pipeline = candidate.build(params)
        estimator = estimator_name(pipeline)
        fit_quietly(pipeline, x.iloc[train_idx], y[train_idx], seen)
        predicted = predict_scores(pipeline, x.iloc[valid_idx], problem)
        oof[valid_idx] = predicted
        per_fold.append(all_scores(problem, y[valid_idx], predicted))
    keys = sorted(set().union(*per_fold))
    means = {k: float(np.nanmean([f.get(k, np.nan) for f in per_fold])) for k in keys}
    primary = [f.get(problem.metric, np.nan) for f in per_fold]
    return Evaluation(
        candidate=candidate.name,
        params=_jsonable(params),
        estimator=estimator,
        score=float(np.nanmean(primary)),
        std=float(np.nanstd(primary)),
        scores=means,
        oof=oof,
        seconds=time.monotonic() - start,
        folds=len(folds),
    )


class OverBudget(Exception):
    """A configuration was abandoned between folds because its candidate's time share ran out."""


def _better(a: Evaluation, b: Evaluation | None, metric: str) -> bool:
    if b is None or np.isnan(b.score):
        return not np.isnan(a.score)
    return a.score > b.score if greater_is_better(metric) else a.score < b.score


def _improves(a: Evaluation, b: Evaluation | None, metric: str) -> bool:
    """Better than ``b`` by more than ``b``'s standard error over the folds (noise is not progress)."""
    if b is None:
        return True
    margin = max(1e-4, b.std / float(np.sqrt(max(1, b.folds))))
    if np.isnan(a.score):
        return False
    return bool(a.score > b.score + margin if greater_is_better(metric) else a.score < b.score - margin)


def run_search(
    candidates: list[Candidate],
    x: pd.DataFrame,
    y: NDArray[Any],
    folds: Folds,
    problem: Problem,
    *,
    deadline: float,
    hard_end: float,
    started: float,
    budget: float,
    max_configs: int,
    patience: int,
    seed: int,
    say: Say,
) -> SearchResult:
    """Spread the time left before ``deadline`` (a ``time.monotonic()`` value) across the candidates.

    ``hard_end`` is the end of the whole budget: the search also stops early enough to refit and
    evaluate the current leader before it.

    Each candidate gets an equal share of what is left when its turn comes, so time a fast candidate
    does not use flows to the next. A candidate stops early after ``patience`` configurations in a row
    that do not improve on its best by more than the noise. The first (default) configuration of the
    first candidate always runs; later candidates are skipped once the budget is spent.
    """
    rng = np.random.default_rng(seed)
    rows: list[LeaderboardRow] = []
    best: dict[str, Evaluation] = {}
    leader: Evaluation | None = None
    seen: set[str] = set()
    n = len(candidates)

    def limit() -> float:
        # Leave time to refit the leader on all training rows and evaluate it (about 2.5 folds' fits).
        reserve = 2.5 * leader.seconds / max(1, leader.folds) if leader is not None else 0.0
        return min(deadline, hard_end - reserve)

    for i, candidate in enumerate(candidates, start=1):
        now = time.monotonic()
        if now >= limit() and leader is not None:
            say(f"[{i}/{n}] {candidate.name:<24} skipped: time budget spent")
            rows.append(
                LeaderboardRow(
                    candidate=candidate.name,
                    estimator=estimator_name(candidate.build(candidate.default)),
                    cv_score=None,
                    cv_std=None,
                    fit_seconds=0.0,
                    n_configs=0,
                    params=_jsonable(candidate.default),
                    status="skipped",
                    message="time budget spent before this candidate's turn",
                )
            )
            continue
        share_end = now + max(0.0, limit() - now) / (n - i + 1)
        spent, tried, failures, stale = 0.0, 0, 0, 0
        cand_best: Evaluation | None = None
        last_error = ""
        while tried < max_configs and stale < patience:
            share_end = min(share_end, limit())
            if tried and time.monotonic() + spent / tried > share_end:
                break
            params = candidate.default if tried == 0 else candidate.sample(rng)
            tried += 1
            t0 = time.monotonic()
            try:
                # The default configuration always completes; later ones are abandoned at the share's end.
                stop_at = None if tried == 1 else share_end
                evaluation = cross_validate(candidate, params, x, y, folds, problem, seen, stop_at)
            except OverBudget:
                spent += time.monotonic() - t0
                say(f"[{i}/{n}] {candidate.name:<24} config {tried:>2}  abandoned: time share spent")
                break
            except Exception as exc:  # a configuration that cannot be fitted is recorded, not fatal
                failures += 1
                last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                spent += time.monotonic() - t0
                continue
            spent += time.monotonic() - t0
            stale = 0 if _improves(evaluation, cand_best, problem.metric) else stale + 1
            if _better(evaluation, cand_best, problem.metric):
                cand_best = evaluation
            if _better(evaluation, leader, problem.metric):
                leader = evaluation
            assert cand_best is not None
            assert leader is not None
            say(
                f"[{i}/{n}] {candidate.name:<24} config {tried:>2}"
                f"  cv {problem.metric}={evaluation.score:.4f}"
                f" ±{evaluation.std:.4f}  best {cand_best.score:.4f}"
                f"  elapsed {time.monotonic() - started:5.1f}s / {budget:.0f}s"
            )
        if cand_best is None:
            rows.append(
                LeaderboardRow(
                    candidate=candidate.name,
                    estimator=estimator_name(candidate.build(candidate.default)),
                    cv_score=None,
                    cv_std=None,
                    fit_seconds=round(spent, 3),
                    n_configs=tried,
                    params=_jsonable(candidate.default),
                    status="failed",
                    message=last_error or "no configuration could be evaluated",
                )
            )
            say(f"[{i}/{n}] {candidate.name:<24} failed: {last_error}")
            continue
        best[candidate.name] = cand_best
        rows.append(
            LeaderboardRow(
                candidate=candidate.name,
                estimator=cand_best.estimator,
                cv_score=cand_best.score,
                cv_std=cand_best.std,
                fit_seconds=round(spent, 3),
                n_configs=tried,
                params=cand_best.params,
                status="ok",
                message=f"{failures} configuration(s) failed: {last_error}" if failures else None,
            )
        )
    if leader is None:
        raise RuntimeError("no candidate could be trained; see the leaderboard messages")
    reverse = greater_is_better(problem.metric)
    rows.sort(
        key=lambda r: (r.cv_score is None, -(r.cv_score or 0.0) if reverse else (r.cv_score or 0.0)),
    )
    return SearchResult(rows, best, leader, seen)
