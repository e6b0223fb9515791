"""One training run, end to end: load, type, split, guard, search, refit, evaluate once, publish.

Leak-free by construction: the hold-out split happens first; every fitted transform lives inside the
Pipeline; model selection (and the binary threshold) use cross-validation on the training part only;
the test part is scored once, at the end.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from modelberth_core.store import ModelStore, StoreError, check_name, default_location, open_store
from modelberth_trainer import expectations as expectations_module
from modelberth_trainer.artifact import Fitted, RunContext, Trained, build_and_publish
from modelberth_trainer.data import sanitise_name
from modelberth_trainer.errors import DataError
from modelberth_trainer.expectations import Expectations
from modelberth_trainer.leakage import check_leaks
from modelberth_trainer.pipelines import Candidate, build_candidates
from modelberth_trainer.prepare import Prepared, Say, prepare
from modelberth_trainer.provenance import git_sha
from modelberth_trainer.search import (
    Clock,
    Folds,
    Limits,
    SearchResult,
    TrainingData,
    fit_quietly,
    predict_scores,
    run_search,
)
from modelberth_trainer.settings import TrainerSettings

SEARCH_SHARE = 0.8
"""Share of the time budget for the search; the rest is for the refit, the evaluation and the report."""
FEW_ROWS = 5000
"""Up to this many training rows use 5-fold cross-validation, more use 3 folds."""


def run(settings: TrainerSettings, say: Say) -> Trained:
    """Train, gate and publish one model version. Raises DataError on bad input (nothing published)."""
    # OpenMP/BLAS pools stay at one thread: their spinning barriers collapse on a shared CPU (boosting
    # on iris took 0.34 s with one thread and 16.5 s with two under load); forests use n_jobs threads.
    with threadpool_limits(limits=1):
        return _run(settings, say)


def _run(settings: TrainerSettings, say: Say) -> Trained:
    started = time.monotonic()
    timings: dict[str, float] = {}
    store, expectations, prep, name = _accepted(settings, say)
    timings["load_seconds"] = time.monotonic() - started

    t0 = time.monotonic()
    guard = check_leaks(
        prep.x_train, prep.y_train, prep.plan, prep.problem.task, prep.problem.positive, settings.seed
    )
    timings["leak_guard_seconds"] = time.monotonic() - t0
    for col, reason in guard.reasons.items():
        say(
            f"LEAK WARNING: column {col!r}: {reason}."
            f" Check it is known at prediction time; if not, retrain with --drop {col}"
        )

    candidates = _candidates(settings, prep)
    folds = make_folds(prep, settings.seed)
    budget = settings.time_budget_seconds
    say(f"search: {len(candidates)} candidates, {len(folds)}-fold CV, budget {budget:.0f}s")
    t0 = time.monotonic()
    result = run_search(
        candidates,
        TrainingData(prep.x_train, prep.y_train, folds, prep.problem),
        Clock(
            started=started,
            budget=budget,
            deadline=started + SEARCH_SHARE * budget,
            hard_end=started + budget,
        ),
        Limits(
            max_configs=settings.max_configs_per_candidate, patience=settings.patience, seed=settings.seed
        ),
        say,
    )
    timings["search_seconds"] = time.monotonic() - t0
    for line in leaderboard_table(result, prep.problem.metric):
        say(line)
    selected = result.selected
    chosen = next(c for c in candidates if c.name == selected.candidate)
    t0 = time.monotonic()
    pipeline = fit_quietly(chosen.build(selected.params), prep.x_train, prep.y_train, result.warnings)
    timings["refit_seconds"] = time.monotonic() - t0
    say(f"selected: {selected.candidate} ({selected.estimator}) refit on {len(prep.x_train)} rows")
    test_scores = predict_scores(pipeline, prep.x_test, prep.problem)
    return build_and_publish(
        RunContext(
            settings=settings,
            store=store,
            name=name,
            expectations=expectations,
            say=say,
            started=started,
            timings=timings,
            git_sha=git_sha(),
            created_at=datetime.now(UTC),
        ),
        Fitted(prep=prep, pipeline=pipeline, result=result, guard=guard, test_scores=test_scores),
    )


def _accepted(settings: TrainerSettings, say: Say) -> tuple[ModelStore, Expectations | None, Prepared, str]:
    """The store, the checks, the data and the model name, or DataError: everything that can be refused
    is refused before the search spends the time budget."""
    try:
        store = open_store(default_location(settings.store), artifact_only=settings.artifact_only)
    except StoreError as exc:
        raise DataError(str(exc)) from exc
    expectations = expectations_module.load(settings.expectations) if settings.expectations else None
    prep = prepare(settings, say)
    try:
        name = check_name(sanitise_name(settings.name or prep.table.stem))
    except StoreError as exc:
        raise DataError(f"--name: {exc}") from exc
    if expectations is not None:
        expectations_module.check_against(expectations, prep)
    return store, expectations, prep, name


def _candidates(settings: TrainerSettings, prep: Prepared) -> list[Candidate]:
    """The candidates for this data (class weights when imbalanced), restricted to ``--candidates``."""
    classes = prep.problem.classes
    shares = pd.Series(prep.y_train).value_counts(normalize=True) if classes else None
    imbalanced = bool(shares is not None and shares.min() < 0.5 / len(shares))
    candidates = build_candidates(
        prep.plan,
        classification=prep.problem.classification,
        imbalanced=imbalanced,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
        n_rows=len(prep.x_train),
    )
    if settings.candidates:
        wanted = set(settings.candidates)
        unknown = wanted - {c.name for c in candidates}
        if unknown:
            raise DataError(f"unknown candidates {sorted(unknown)} (have {[c.name for c in candidates]})")
        candidates = [c for c in candidates if c.name in wanted]
    return candidates


def make_folds(prep: Prepared, seed: int) -> Folds:
    """5 folds (3 for more than 5000 rows), stratified for classification, on the training part."""
    n = len(prep.x_train)
    k = 5 if n <= FEW_ROWS else 3
    if prep.problem.classification:
        smallest = int(pd.Series(prep.y_train).value_counts().min())
        k = max(2, min(k, smallest))
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(prep.x_train, prep.y_train))
    return list(KFold(k, shuffle=True, random_state=seed).split(prep.x_train))


def leaderboard_table(result: SearchResult, metric: str) -> list[str]:
    """The leaderboard as aligned console lines."""
    lines = [f"{'rank':<5}{'candidate':<25}{'estimator':<32}{'cv ' + metric:>16}{'configs':>9}{'seconds':>9}"]
    for rank, row in enumerate(result.leaderboard, start=1):
        score = f"{row.cv_score:.4f} ±{row.cv_std or 0:.3f}" if row.cv_score is not None else row.status
        lines.append(
            f"{rank:<5}{row.candidate:<25}{row.estimator:<32}{score:>16}{row.n_configs:>9}{row.fit_seconds:>9.1f}"
        )
    return lines
