"""Model selection on the training part only: randomized search per candidate within a time budget.

Each configuration is cross-validated with the same folds; the out-of-fold predictions of the best
configuration are kept (the binary threshold is chosen on them, never on the test part).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from modelberth_core.contract import LeaderboardRow
from modelberth_trainer.pipelines import Candidate, estimator_name
from modelberth_trainer.prepare import Problem, Say
from modelberth_trainer.scoring import classification_scores, greater_is_better, regression_scores

Folds = list[tuple[NDArray[np.intp], NDArray[np.intp]]]


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


@dataclass(frozen=True)
class Clock:
    """The search's time limits, as ``time.monotonic()`` values: when the run started and how long it may
    take (for the progress lines), when the search should end, and when the whole run must end."""

    started: float
    budget: float
    deadline: float
    hard_end: float


@dataclass(frozen=True)
class Limits:
    """How many configurations a candidate may try, how many in a row may bring no progress, and the
    seed of the configuration sampler."""

    max_configs: int
    patience: int
    seed: int


@dataclass
class TrainingData:
    """The training part and its cross-validation folds: what every configuration is scored on."""

    x: pd.DataFrame
    y: NDArray[Any]
    folds: Folds
    problem: Problem


@dataclass
class _Tally:
    """One candidate's turn: the time it spent, the configurations it tried (and how many failed)."""

    spent: float = 0.0
    tried: int = 0
    failures: int = 0
    best: Evaluation | None = None
    last_error: str = ""


def run_search(
    candidates: list[Candidate], data: TrainingData, clock: Clock, limits: Limits, say: Say
) -> SearchResult:
    """Spread the time left before ``clock.deadline`` across the candidates.

    ``clock.hard_end`` is the end of the whole budget: the search also stops early enough to refit and
    evaluate the current leader before it.

    Each candidate gets an equal share of what is left when its turn comes, so time a fast candidate
    does not use flows to the next. A candidate stops early after ``limits.patience`` configurations in a
    row that do not improve on its best by more than the noise. The first (default) configuration of the
    first candidate always runs; later candidates are skipped once the budget is spent.
    """
    return _Search(candidates, data, clock, limits, say).run()


class _Search:
    """The state of one search: the sampler, the leader so far, the leaderboard rows, the warnings seen."""

    def __init__(
        self, candidates: list[Candidate], data: TrainingData, clock: Clock, limits: Limits, say: Say
    ) -> None:
        self.candidates, self.data, self.clock, self.limits, self.say = candidates, data, clock, limits, say
        self.rng = np.random.default_rng(limits.seed)
        self.rows: list[LeaderboardRow] = []
        self.best: dict[str, Evaluation] = {}
        self.leader: Evaluation | None = None
        self.seen: set[str] = set()

    def limit(self) -> float:
        """When the search must stop: its deadline, or earlier to leave time to refit and evaluate the
        leader on all training rows before the hard end (about 2.5 folds' fits)."""
        leader = self.leader
        reserve = 2.5 * leader.seconds / max(1, leader.folds) if leader is not None else 0.0
        return min(self.clock.deadline, self.clock.hard_end - reserve)

    def run(self) -> SearchResult:
        n = len(self.candidates)
        for i, candidate in enumerate(self.candidates, start=1):
            tag = f"[{i}/{n}] {candidate.name:<24}"
            now = time.monotonic()
            if now >= self.limit() and self.leader is not None:
                self.say(f"{tag} skipped: time budget spent")
                self.rows.append(
                    _unscored_row(
                        candidate, "skipped", "time budget spent before this candidate's turn", _Tally()
                    )
                )
                continue
            tally = self._turn(candidate, tag, share_end=now + max(0.0, self.limit() - now) / (n - i + 1))
            self._record(candidate, tag, tally)
        if self.leader is None:
            raise RuntimeError("no candidate could be trained; see the leaderboard messages")
        reverse = greater_is_better(self.data.problem.metric)
        self.rows.sort(
            key=lambda r: (r.cv_score is None, -(r.cv_score or 0.0) if reverse else (r.cv_score or 0.0)),
        )
        return SearchResult(self.rows, self.best, self.leader, self.seen)

    def _turn(self, candidate: Candidate, tag: str, share_end: float) -> _Tally:
        """Try configurations of one candidate until its share of the time, its configurations or its
        patience run out."""
        data, metric = self.data, self.data.problem.metric
        tally = _Tally()
        stale = 0
        while tally.tried < self.limits.max_configs and stale < self.limits.patience:
            share_end = min(share_end, self.limit())
            if tally.tried and time.monotonic() + tally.spent / tally.tried > share_end:
                break
            params = candidate.default if tally.tried == 0 else candidate.sample(self.rng)
            tally.tried += 1
            t0 = time.monotonic()
            try:
                # The default configuration always completes; later ones are abandoned at the share's end.
                stop_at = None if tally.tried == 1 else share_end
                evaluation = cross_validate(
                    candidate, params, data.x, data.y, data.folds, data.problem, self.seen, stop_at
                )
            except OverBudget:
                tally.spent += time.monotonic() - t0
                self.say(f"{tag} config {tally.tried:>2}  abandoned: time share spent")
                break
            except Exception as exc:  # a configuration that cannot be fitted is recorded, not fatal
                tally.failures += 1
                tally.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                tally.spent += time.monotonic() - t0
                continue
            tally.spent += time.monotonic() - t0
            stale = 0 if _improves(evaluation, tally.best, metric) else stale + 1
            if _better(evaluation, tally.best, metric):
                tally.best = evaluation
            if _better(evaluation, self.leader, metric):
                self.leader = evaluation
            assert tally.best is not None
            self.say(
                f"{tag} config {tally.tried:>2}"
                f"  cv {metric}={evaluation.score:.4f}"
                f" ±{evaluation.std:.4f}  best {tally.best.score:.4f}"
                f"  elapsed {time.monotonic() - self.clock.started:5.1f}s / {self.clock.budget:.0f}s"
            )
        return tally

    def _record(self, candidate: Candidate, tag: str, tally: _Tally) -> None:
        """The candidate's leaderboard row: its best configuration, or why it has none."""
        best = tally.best
        if best is None:
            message = tally.last_error or "no configuration could be evaluated"
            self.rows.append(_unscored_row(candidate, "failed", message, tally))
            self.say(f"{tag} failed: {tally.last_error}")
            return
        self.best[candidate.name] = best
        failed = f"{tally.failures} configuration(s) failed: {tally.last_error}" if tally.failures else None
        self.rows.append(
            LeaderboardRow(
                candidate=candidate.name,
                estimator=best.estimator,
                cv_score=best.score,
                cv_std=best.std,
                fit_seconds=round(tally.spent, 3),
                n_configs=tally.tried,
                params=best.params,
                status="ok",
                message=failed,
            )
        )


def _unscored_row(
    candidate: Candidate, status: Literal["failed", "skipped"], message: str, tally: _Tally
) -> LeaderboardRow:
    """The row of a candidate that was skipped or of which no configuration could be fitted."""
    return LeaderboardRow(
        candidate=candidate.name,
        estimator=estimator_name(candidate.build(candidate.default)),
        cv_score=None,
        cv_std=None,
        fit_seconds=round(tally.spent, 3),
        n_configs=tally.tried,
        params=_jsonable(candidate.default),
        status=status,
        message=message,
    )
