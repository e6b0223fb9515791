"""What inference needs to validate requests (feature specs) and to watch drift (reference profiles).

Profiles describe the training part only. Frequencies are shares of the non-missing values (they sum
to 1); ``missing`` is the share of rows without a value. Text is profiled by its length in characters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelberth_core.contract import CategoricalProfile, FeatureSpec, NumericProfile, Profile
from modelberth_trainer.columns import ColumnPlan

QUANTILES = np.linspace(0.0, 1.0, 11)[1:-1]
"""Inner decile edges: ten bins for numeric reference profiles."""
TOP_CATEGORIES = 20
OTHER = "__other__"


def _number(value: float, integral: bool) -> float | int:
    return round(value) if integral else float(value)


def numeric_profile(values: pd.Series) -> NumericProfile:
    """Decile bins of the non-missing values (ties merged) and the missing share."""
    present = values.dropna().to_numpy(dtype=float)
    missing = float(values.isna().mean()) if len(values) else 0.0
    if present.size == 0:
        return NumericProfile(edges=[], frequencies=[1.0], missing=missing)
    edges = np.unique(np.quantile(present, QUANTILES))
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    return NumericProfile(
        edges=[float(e) for e in edges],
        frequencies=[float(c) for c in counts / counts.sum()],
        missing=missing,
    )


def categorical_profile(values: pd.Series) -> CategoricalProfile:
    """Shares of the most frequent categories; the rest is pooled under ``__other__``."""
    present = values.dropna().astype(str)
    shares = present.value_counts(normalize=True)
    top = shares.head(TOP_CATEGORIES)
    frequencies = {str(k): float(v) for k, v in top.items()}
    rest = float(shares.iloc[TOP_CATEGORIES:].sum())
    if rest > 0:
        frequencies[OTHER] = rest
    return CategoricalProfile(
        frequencies=frequencies, missing=float(values.isna().mean()) if len(values) else 0.0
    )


def text_lengths(values: pd.Series) -> pd.Series:
    """Length in characters of each text (missing stays missing)."""
    return values.map(lambda v: float(len(str(v))) if pd.notna(v) else np.nan)


def reference_profiles(train: pd.DataFrame, plan: ColumnPlan) -> dict[str, Profile]:
    """One profile per feature, from the training part."""
    profiles: dict[str, Profile] = {}
    for name, kind in plan.types.items():
        if kind == "numeric":
            profiles[name] = numeric_profile(train[name])
        elif kind == "categorical":
            profiles[name] = categorical_profile(train[name])
        else:
            profiles[name] = numeric_profile(text_lengths(train[name]))
    return profiles


def _median_text(values: pd.Series) -> str:
    present = values.dropna().astype(str)
    lengths = present.str.len()
    return str(present.iloc[int(np.argsort(lengths.to_numpy())[len(present) // 2])])


def feature_specs(seen: pd.DataFrame, plan: ColumnPlan) -> list[FeatureSpec]:
    """Type, optionality, categories, range and an example per feature, from every row the trainer read.

    Using all rows (not only the training part) keeps held-out examples valid requests.
    """
    specs: list[FeatureSpec] = []
    for name, kind in plan.types.items():
        values = seen[name]
        required = not bool(values.isna().any())
        kwargs: dict[str, Any] = {}
        if kind == "numeric":
            present = values.dropna().to_numpy(dtype=float)
            integral = bool(np.all(present == np.round(present)))
            kwargs = {
                "min": float(present.min()),
                "max": float(present.max()),
                "example": _number(float(np.median(present)), integral),
            }
        elif kind == "categorical":
            present_str = values.dropna().astype(str)
            kwargs = {
                "categories": sorted(present_str.unique().tolist()),
                "example": str(present_str.mode().iloc[0]),
            }
        else:
            lengths = text_lengths(values).dropna()
            kwargs = {"max_length": int(lengths.max()), "example": _median_text(values)}
        specs.append(FeatureSpec(name=name, type=kind, required=required, **kwargs))
    return specs
