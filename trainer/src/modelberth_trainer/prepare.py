"""Read, check and split the data: what is learned (:class:`Problem`) and from which rows (:class:`Prepared`).

The hold-out split happens here, before anything is fitted; the search, the gate and the report only ever
read what :func:`prepare` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from modelberth_trainer.columns import (
    MIN_CLASS_ROWS,
    ColumnPlan,
    class_labels,
    guess_positive,
    infer_task,
    plan_columns,
)
from modelberth_trainer.data import Table, load_input
from modelberth_trainer.errors import DataError
from modelberth_trainer.scoring import resolve_metric
from modelberth_trainer.settings import TrainerSettings

Say = Callable[[str], None]
"""Where a run's progress lines go (the console, or a test's list)."""


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


@dataclass(frozen=True)
class _Rows:
    """Rows of a table and their target values, row for row."""

    frame: pd.DataFrame
    y: pd.Series

    def where(self, keep: pd.Series) -> _Rows:
        return _Rows(self.frame[keep].reset_index(drop=True), self.y[keep].reset_index(drop=True))


@dataclass(frozen=True)
class _Split:
    x_train: pd.DataFrame
    y_train: NDArray[Any]
    x_test: pd.DataFrame
    y_test: NDArray[Any]
    seen: pd.DataFrame
    raw_test: pd.DataFrame


def prepare(settings: TrainerSettings, say: Say) -> Prepared:
    """Read, check and split the data; raise DataError for anything that cannot be trained on."""
    table, test_table = load_input(settings)
    notes: list[str] = []
    target = _target_column(settings, table, notes)
    task = settings.task if settings.task != "auto" else infer_task(table.frame[target])
    y_all = _target(table.frame, target, task)
    rows = _Rows(table.frame, y_all)
    keep = y_all.notna()
    if not keep.all():
        notes.append(f"{int((~keep).sum())} rows without a target value were left out")
    rows = rows.where(keep)
    test = _test_rows(test_table, target, task)
    classes: list[str] | None = None
    positive: str | None = None
    if task == "classification":
        rows, classes = _enough_classes(rows, target, notes)
        positive = _positive(settings, rows, classes, notes)
        if test is not None:
            test = _known_classes(test, classes, notes)
    elif settings.positive_label is not None or settings.cost_fp is not None:
        raise DataError("--positive-label and --cost-fp/--cost-fn apply to binary classification only")
    if settings.cost_fp is not None and (classes is None or len(classes) != 2):
        raise DataError("--cost-fp/--cost-fn apply to binary classification only")

    plan = plan_columns(rows.frame, target, settings.drop)
    metric = resolve_metric(settings.metric, task, len(classes or []))
    problem = Problem(task=task, metric=metric, classes=classes, positive=positive)
    split = _split(settings, rows, test, plan.features, classification=classes is not None)
    if len(split.x_test) == 0 or len(split.x_train) < 10:
        raise DataError(
            f"too few rows to train and test ({len(split.x_train)} train, {len(split.x_test)} test)"
        )
    _duplicate_notes(split.x_train, split.x_test, notes)
    say(
        f"data: {table.source}  rows={len(rows.frame)}  features={len(plan.features)} "
        f"({len(plan.of('numeric'))} numeric, {len(plan.of('categorical'))} categorical,"
        f" {len(plan.of('text'))} text)"
        f"  task={task}  metric={metric}  train={len(split.x_train)}  test={len(split.x_test)}"
    )
    for dropped in plan.dropped:
        say(f"dropped column {dropped.name!r}: {dropped.reason}")
    return Prepared(
        plan,
        problem,
        split.x_train,
        split.y_train,
        split.x_test,
        split.y_test,
        split.seen,
        notes,
        table,
        test_table,
        target,
        split.raw_test,
    )


def _target_column(settings: TrainerSettings, table: Table, notes: list[str]) -> str:
    frame = table.frame
    target = settings.target or table.default_target
    if target not in frame.columns:
        raise DataError(f"target column {target!r} not found (columns: {', '.join(map(str, frame.columns))})")
    if settings.target is None and table.source.startswith("sklearn:") is False:
        notes.append(f"no --target given: using the last column {target!r}")
    if frame[target].isna().all():
        raise DataError(f"target column {target!r} is empty (all values missing)")
    return target


def _target(frame: pd.DataFrame, target: str, task: str) -> pd.Series:
    if task == "classification":
        return class_labels(frame[target])
    values = pd.to_numeric(frame[target], errors="coerce")
    if values.notna().sum() < frame[target].notna().sum():
        raise DataError(f"target {target!r} has non-numeric values; use --task classification")
    return values.astype(float)


def _test_rows(test_table: Table | None, target: str, task: str) -> _Rows | None:
    """The rows of ``--test-data`` that have a target value, or None for a hold-out split."""
    if test_table is None:
        return None
    if target not in test_table.frame.columns:
        raise DataError(f"{test_table.source}: target column {target!r} not found")
    y = _target(test_table.frame, target, task)
    return _Rows(test_table.frame, y).where(y.notna())


def _enough_classes(rows: _Rows, target: str, notes: list[str]) -> tuple[_Rows, list[str]]:
    """Leave out the classes too small to split and cross-validate; refuse fewer than two left."""
    counts = rows.y.value_counts()
    if len(counts) < 2:
        raise DataError(f"target {target!r} has only one class ({counts.index[0]!r}); need at least two")
    tiny = [str(c) for c, n in counts.items() if n < MIN_CLASS_ROWS]
    if tiny:
        notes.append(f"classes with fewer than {MIN_CLASS_ROWS} rows were left out: {tiny}")
        rows = rows.where(~rows.y.isin(tiny))
        counts = rows.y.value_counts()
        if len(counts) < 2:
            raise DataError(f"target {target!r} has fewer than two classes with {MIN_CLASS_ROWS}+ rows")
    return rows, sorted(str(c) for c in counts.index)


def _positive(settings: TrainerSettings, rows: _Rows, classes: list[str], notes: list[str]) -> str | None:
    """The positive class of a binary task: the one asked for, else a guess (noted); None otherwise."""
    if len(classes) != 2:
        return None
    if settings.positive_label is None:
        positive = guess_positive(rows.y.value_counts())
        notes.append(f"positive label: {positive!r} (pass --positive-label to choose)")
        return positive
    if settings.positive_label not in classes:
        raise DataError(f"--positive-label {settings.positive_label!r} is not a class ({classes})")
    return settings.positive_label


def _known_classes(test: _Rows, classes: list[str], notes: list[str]) -> _Rows:
    known = test.y.isin(classes)
    if known.all():
        return test
    notes.append(f"{int((~known).sum())} test rows with classes unseen in training were left out")
    return test.where(known)


def _split(
    settings: TrainerSettings, rows: _Rows, test: _Rows | None, features: list[str], *, classification: bool
) -> _Split:
    """The given test rows, or a seeded hold-out split (stratified for classification)."""
    dtype = object if classification else float
    x_all, y_np = rows.frame[features], rows.y.to_numpy(dtype=dtype)
    if test is not None:
        x_test = test.frame[features].reset_index(drop=True)
        return _Split(
            x_all,
            y_np,
            x_test,
            test.y.to_numpy(dtype=dtype),
            pd.concat([x_all, x_test], ignore_index=True),
            test.frame.reset_index(drop=True),
        )
    x_train, x_test, y_train, y_test, _, test_index = train_test_split(
        x_all,
        y_np,
        np.arange(len(rows.frame)),
        test_size=settings.test_size,
        random_state=settings.seed,
        stratify=y_np if classification else None,
    )
    return _Split(
        x_train.reset_index(drop=True),
        y_train,
        x_test.reset_index(drop=True),
        y_test,
        x_all,
        rows.frame.iloc[test_index].reset_index(drop=True),
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
