"""One training run, end to end: load, type, split, guard, search, refit, evaluate once, publish.

Leak-free by construction: the hold-out split happens first; every fitted transform lives inside the
Pipeline; model selection (and the binary threshold) use cross-validation on the training part only;
the test part is scored once, at the end.
"""

from __future__ import annotations

import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from modelberth_core import contract
from modelberth_core.store import StoreError, check_name, default_location, open_store
from modelberth_trainer.columns import (
    MIN_CLASS_ROWS,
    ColumnPlan,
    class_labels,
    guess_positive,
    infer_task,
    plan_columns,
)
from modelberth_trainer.data import Table, load_input, sanitise_name
from modelberth_trainer.errors import DataError
from modelberth_trainer.search import Problem, Say, SearchResult, fit_quietly, predict_scores, run_search
from modelberth_trainer.settings import TrainerSettings

if TYPE_CHECKING:
    from modelberth_trainer.artifact import Trained

SEARCH_SHARE = 0.8
"""Share of the time budget for the search; the rest is for the refit, the evaluation and the report."""
FEW_ROWS = 5000
"""Up to this many training rows use 5-fold cross-validation, more use 3 folds."""


@dataclass
class Prepared:
    """Features and target of the training part and the test part, plus how they were made."""

    plan: ColumnPlan
    problem: Problem
    x_train: pd.DataFrame
    y_train: NDArray[Any]
    x_test: pd.DataFrame
    y_test: NDArray[Any]
    seen: pd.DataFrame
    notes: list[str]
    table: Table
    test_table: Table | None
    target: str
    raw_test: pd.DataFrame
    """The test rows as read from the input: every column (before --drop), the target included. The
    promotion gate scores the champion on them, whatever features it was trained with."""


def _target(frame: pd.DataFrame, target: str, task: str) -> pd.Series:
    if task == "classification":
        return class_labels(frame[target])
    values = pd.to_numeric(frame[target], errors="coerce")
    if values.notna().sum() < frame[target].notna().sum():
        raise DataError(f"target {target!r} has non-numeric values; use --task classification")
    return values.astype(float)


def prepare(settings: TrainerSettings, say: Say) -> Prepared:
    """Read, check and split the data; raise DataError for anything that cannot be trained on."""
    table, test_table = load_input(settings)
    frame = table.frame
    notes: list[str] = []
    target = settings.target or table.default_target
    if target not in frame.columns:
        raise DataError(f"target column {target!r} not found (columns: {', '.join(map(str, frame.columns))})")
    if settings.target is None and table.source.startswith("sklearn:") is False:
        notes.append(f"no --target given: using the last column {target!r}")
    if frame[target].isna().all():
        raise DataError(f"target column {target!r} is empty (all values missing)")
    task = settings.task if settings.task != "auto" else infer_task(frame[target])
    y_all = _target(frame, target, task)
    keep = y_all.notna()
    if not keep.all():
        notes.append(f"{int((~keep).sum())} rows without a target value were left out")
    frame, y_all = frame[keep].reset_index(drop=True), y_all[keep].reset_index(drop=True)

    test_frame: pd.DataFrame | None = None
    y_test_all: pd.Series | None = None
    if test_table is not None:
        if target not in test_table.frame.columns:
            raise DataError(f"{test_table.source}: target column {target!r} not found")
        y_test_all = _target(test_table.frame, target, task)
        test_frame = test_table.frame[y_test_all.notna()].reset_index(drop=True)
        y_test_all = y_test_all[y_test_all.notna()].reset_index(drop=True)

    classes: list[str] | None = None
    positive: str | None = None
    if task == "classification":
        counts = y_all.value_counts()
        if len(counts) < 2:
            raise DataError(f"target {target!r} has only one class ({counts.index[0]!r}); need at least two")
        tiny = [str(c) for c, n in counts.items() if n < MIN_CLASS_ROWS]
        if tiny:
            notes.append(f"classes with fewer than {MIN_CLASS_ROWS} rows were left out: {tiny}")
            keep = ~y_all.isin(tiny)
            frame, y_all = frame[keep].reset_index(drop=True), y_all[keep].reset_index(drop=True)
            counts = y_all.value_counts()
            if len(counts) < 2:
                raise DataError(f"target {target!r} has fewer than two classes with {MIN_CLASS_ROWS}+ rows")
        classes = sorted(str(c) for c in counts.index)
        if len(classes) == 2:
            if settings.positive_label is not None:
                if settings.positive_label not in classes:
                    raise DataError(
                        f"--positive-label {settings.positive_label!r} is not a class ({classes})"
                    )
                positive = settings.positive_label
            else:
                positive = guess_positive(counts)
                notes.append(f"positive label: {positive!r} (pass --positive-label to choose)")
        if test_frame is not None and y_test_all is not None:
            known = y_test_all.isin(classes)
            if not known.all():
                notes.append(f"{int((~known).sum())} test rows with classes unseen in training were left out")
                test_frame, y_test_all = (
                    test_frame[known].reset_index(drop=True),
                    y_test_all[known].reset_index(drop=True),
                )
    elif settings.positive_label is not None or settings.cost_fp is not None:
        raise DataError("--positive-label and --cost-fp/--cost-fn apply to binary classification only")
    if settings.cost_fp is not None and (classes is None or len(classes) != 2):
        raise DataError("--cost-fp/--cost-fn apply to binary classification only")

    from modelberth_trainer.scoring import resolve_metric

    plan = plan_columns(frame, target, settings.drop)

    metric = resolve_metric(settings.metric, task, len(classes or []))
    problem = Problem(task=task, metric=metric, classes=classes, positive=positive)
    features = plan.features
    x_all, y_np = frame[features], y_all.to_numpy(dtype=object if classes else float)
    if test_frame is not None and y_test_all is not None:
        x_train, y_train = x_all, y_np
        x_test = test_frame[features].reset_index(drop=True)
        y_test = y_test_all.to_numpy(dtype=object if classes else float)
        seen = pd.concat([x_train, x_test], ignore_index=True)
        raw_test = test_frame.reset_index(drop=True)
    else:
        from sklearn.model_selection import train_test_split

        x_train, x_test, y_train, y_test, _, test_rows = train_test_split(
            x_all,
            y_np,
            np.arange(len(frame)),
            test_size=settings.test_size,
            random_state=settings.seed,
            stratify=y_np if classes else None,
        )
        x_train, x_test = x_train.reset_index(drop=True), x_test.reset_index(drop=True)
        seen = x_all
        raw_test = frame.iloc[test_rows].reset_index(drop=True)
    if len(x_test) == 0 or len(x_train) < 10:
        raise DataError(f"too few rows to train and test ({len(x_train)} train, {len(x_test)} test)")
    _duplicate_notes(x_train, x_test, notes)
    say(
        f"data: {table.source}  rows={len(frame)}  features={len(features)} "
        f"({len(plan.of('numeric'))} numeric, {len(plan.of('categorical'))} categorical,"
        f" {len(plan.of('text'))} text)"
        f"  task={task}  metric={metric}  train={len(x_train)}  test={len(x_test)}"
    )
    for dropped in plan.dropped:
        say(f"dropped column {dropped.name!r}: {dropped.reason}")
    return Prepared(
        plan, problem, x_train, y_train, x_test, y_test, seen, notes, table, test_table, target, raw_test
    )


def _duplicate_notes(x_train: pd.DataFrame, x_test: pd.DataFrame, notes: list[str]) -> None:
    train_hash = pd.util.hash_pandas_object(x_train, index=False)
    test_hash = pd.util.hash_pandas_object(x_test, index=False)
    dup_train = int(train_hash.duplicated().sum())
    overlap = int(test_hash.isin(set(train_hash)).sum())
    if dup_train:
        notes.append(f"{dup_train} training rows repeat another training row's features exactly")
    if overlap:
        notes.append(
            f"{overlap} of {len(x_test)} test rows ({overlap / len(x_test):.1%})"
            " also occur in the training part"
            " (exact duplicates in the data); the test score may be slightly optimistic"
        )


def make_folds(prep: Prepared, seed: int) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """5 folds (3 for more than 5000 rows), stratified for classification, on the training part."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(prep.x_train)
    k = 5 if n <= FEW_ROWS else 3
    if prep.problem.classification:
        smallest = int(pd.Series(prep.y_train).value_counts().min())
        k = max(2, min(k, smallest))
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(prep.x_train, prep.y_train))
    return list(KFold(k, shuffle=True, random_state=seed).split(prep.x_train))


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def versions() -> contract.Versions:
    """Library versions this run uses."""
    import sklearn

    try:
        ours = version("modelberth-trainer")
    except PackageNotFoundError:
        ours = "0+unknown"
    return contract.Versions(
        python=platform.python_version(),
        sklearn=sklearn.__version__,
        pandas=pd.__version__,
        numpy=np.__version__,
        modelberth=ours,
    )


def leaderboard_table(result: SearchResult, metric: str) -> list[str]:
    """The leaderboard as aligned console lines."""
    lines = [f"{'rank':<5}{'candidate':<25}{'estimator':<32}{'cv ' + metric:>16}{'configs':>9}{'seconds':>9}"]
    for rank, row in enumerate(result.leaderboard, start=1):
        score = f"{row.cv_score:.4f} ±{row.cv_std or 0:.3f}" if row.cv_score is not None else row.status
        lines.append(
            f"{rank:<5}{row.candidate:<25}{row.estimator:<32}{score:>16}{row.n_configs:>9}{row.fit_seconds:>9.1f}"
        )
    return lines


def run(settings: TrainerSettings, say: Say) -> Trained:
    """Train, gate and publish one model version. Raises DataError on bad input (nothing published)."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # OpenMP/BLAS pools stay at one thread: their spinning barriers collapse on a shared CPU (boosting
    # on iris took 0.34 s with one thread and 16.5 s with two under load); forests use n_jobs threads.
    with threadpool_limits(limits=1):
        return _run(settings, say)


def _run(settings: TrainerSettings, say: Say) -> Trained:
    from modelberth_trainer import expectations as expectations_module
    from modelberth_trainer.artifact import build_and_publish
    from modelberth_trainer.leakage import check_leaks
    from modelberth_trainer.pipelines import build_candidates

    started = time.monotonic()
    budget = settings.time_budget_seconds
    timings: dict[str, float] = {}
    # Everything that can be refused is refused before the search spends the time budget.
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
    folds = make_folds(prep, settings.seed)
    say(f"search: {len(candidates)} candidates, {len(folds)}-fold CV, budget {budget:.0f}s")
    t0 = time.monotonic()
    result = run_search(
        candidates,
        prep.x_train,
        prep.y_train,
        folds,
        prep.problem,
        deadline=started + SEARCH_SHARE * budget,
        hard_end=started + budget,
        started=started,
        budget=budget,
        max_configs=settings.max_configs_per_candidate,
        patience=settings.patience,
        seed=settings.seed,
        say=say,
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
        settings=settings,
        store=store,
        expectations=expectations,
        name=name,
        prep=prep,
        pipeline=pipeline,
        result=result,
        guard=guard,
        test_scores=test_scores,
        timings=timings,
        started=started,
        say=say,
        git_sha=_git_sha(),
        created_at=datetime.now(UTC),
    )
