"""Column typing (numeric, categorical, free text; identifiers and constants dropped) and the target."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from modelberth_core.contract import DroppedColumn, FeatureType
from modelberth_trainer.errors import DataError

ID_NAME = re.compile(
    r"(^|[_\s.-])(id|uuid|guid|key|index)$|^(id|uuid|guid|index|row|rownum|row_number)$", re.I
)
TEXT_MIN_TOKENS = 3.0
"""Mean words per value from which a string column is free text rather than a category."""
MIN_CLASS_ROWS = 4
"""Classes with fewer rows cannot be split and cross-validated; they are dropped with a note."""
MAX_CLASSIFICATION_INTEGERS = 20
"""An integer target with at most this many distinct values is a classification target under auto."""


@dataclass
class ColumnPlan:
    """How each input column is used."""

    types: dict[str, FeatureType] = field(default_factory=dict)
    dropped: list[DroppedColumn] = field(default_factory=list)

    def of(self, kind: FeatureType) -> list[str]:
        """Feature names of one type, in input order."""
        return [name for name, t in self.types.items() if t == kind]

    @property
    def features(self) -> list[str]:
        """All kept feature names, in input order (the order the pipeline takes)."""
        return list(self.types)


def _is_id_like(name: str, series: pd.Series) -> bool:
    values = series.dropna()
    if len(values) < 20 or values.nunique() < 0.95 * len(values):
        return False
    if ID_NAME.search(name.strip()):
        return True
    if pd.api.types.is_numeric_dtype(values):
        ints = values.to_numpy(dtype=float)
        if not np.all(ints == np.round(ints)):
            return False
        steps = np.diff(np.sort(ints))
        return bool(values.nunique() == len(values) and np.all(steps == steps[0]))
    return True  # short, all-distinct strings: names, codes, keys


def _is_text(series: pd.Series) -> bool:
    values = series.dropna().astype(str)
    if values.empty:
        return False
    tokens = float(values.map(lambda v: len(v.split())).mean())
    return bool(tokens >= TEXT_MIN_TOKENS and values.nunique() > min(50, 0.3 * len(values)))


def plan_columns(frame: pd.DataFrame, target: str, drop: list[str]) -> ColumnPlan:
    """Type every feature column; drop identifiers, constants and ``--drop`` columns with a reason."""
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise DataError(f"--drop names unknown columns {unknown}")
    plan = ColumnPlan()
    for name in frame.columns:
        if name == target:
            continue
        if name in drop:
            plan.dropped.append(DroppedColumn(name=name, reason="dropped on request (--drop)"))
            continue
        series = frame[name]
        if series.isna().all():
            raise DataError(f"column {name!r} is empty (all values missing); remove it or pass --drop {name}")
        if series.nunique(dropna=True) <= 1:
            plan.dropped.append(DroppedColumn(name=name, reason="constant (one distinct value)"))
            continue
        if pd.api.types.is_numeric_dtype(series):
            if _is_id_like(name, series):
                plan.dropped.append(DroppedColumn(name=name, reason="identifier-like (every value distinct)"))
            else:
                plan.types[name] = "numeric"
        elif _is_text(series):
            plan.types[name] = "text"
        elif _is_id_like(name, series):
            plan.dropped.append(DroppedColumn(name=name, reason="identifier-like (every value distinct)"))
        else:
            plan.types[name] = "categorical"
    if not plan.types:
        raise DataError("no usable feature columns are left (all dropped as identifier, constant or --drop)")
    return plan


def infer_task(target: pd.Series) -> str:
    """classification for strings, booleans and few integer values; regression otherwise."""
    values = target.dropna()
    if not pd.api.types.is_numeric_dtype(values):
        return "classification"
    as_float = values.to_numpy(dtype=float)
    integral = bool(np.all(as_float == np.round(as_float)))
    return "classification" if integral and values.nunique() <= MAX_CLASSIFICATION_INTEGERS else "regression"


def class_labels(target: pd.Series) -> pd.Series:
    """Class labels as strings (``5.0`` -> ``"5"``), keeping missing values missing."""
    if pd.api.types.is_numeric_dtype(target):
        as_float = target.astype(float)
        integral = as_float.dropna().to_numpy()
        if np.all(integral == np.round(integral)):
            return as_float.map(lambda v: str(int(v)) if pd.notna(v) else np.nan).astype(object)
        return as_float.map(lambda v: repr(float(v)) if pd.notna(v) else np.nan).astype(object)
    return target.astype(object).map(lambda v: str(v) if pd.notna(v) else np.nan)


POSITIVE_GUESSES = ("1", "yes", "true", "y", "positive", "pos", "default", "churn", "fraud", "malignant")


def guess_positive(counts: pd.Series) -> str:
    """The positive class of a binary target: an obvious name (``1``, ``yes``...), else the rarer class."""
    labels = [str(label) for label in counts.index]
    for guess in POSITIVE_GUESSES:
        for label in labels:
            if label.lower() == guess:
                return label
    return str(counts.idxmin())
