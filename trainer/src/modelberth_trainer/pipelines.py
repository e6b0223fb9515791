"""Candidate pipelines: preprocessing + estimator, built only from scikit-learn and numpy objects.

Nothing from ``modelberth_trainer`` may end up inside a fitted Pipeline: inference images do not carry
the trainer, and ``model.joblib`` must unpickle without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from modelberth_trainer.columns import ColumnPlan

TEXT_SVD_COMPONENTS = 50
"""Tree models see free text as this many latent TF-IDF components (linear models see the TF-IDF)."""
MAX_TREE_CATEGORIES = 250
"""Histogram gradient boosting handles at most 255 bins; rarer categories are grouped."""
EARLY_STOPPING_ROWS = 1000
"""From this many rows on, boosting stops on a 10% validation split (below, that split is too noisy)."""
SMALL_DATA_ROWS = 5000
"""Below this many training rows forests fit on one thread: spawning workers costs more than it saves."""


@dataclass(frozen=True)
class LogUniform:
    """A log-uniform search dimension between ``low`` and ``high``."""

    low: float
    high: float


Dimension = list[Any] | LogUniform


@dataclass(frozen=True)
class Candidate:
    """A family of pipelines: a default configuration, a search space and a builder."""

    name: str
    default: dict[str, Any]
    space: dict[str, Dimension]
    build: Callable[[dict[str, Any]], Pipeline]

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One random configuration from the space (the default fills dimensions not searched)."""
        params = dict(self.default)
        for key, dim in self.space.items():
            if isinstance(dim, LogUniform):
                value = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
                params[key] = float(f"{value:.3g}")
            else:
                params[key] = dim[int(rng.integers(len(dim)))]
        return params


def _text_steps() -> list[Any]:
    # Two imputers: pandas gives NaN, a JSON request gives None; TfidfVectorizer wants a 1-D array.
    return [
        SimpleImputer(strategy="constant", fill_value=""),
        SimpleImputer(missing_values=None, strategy="constant", fill_value=""),
        FunctionTransformer(np.ravel),
        # Words and in-word character n-grams: the latter catch inflections and typos (ATIS test
        # accuracy 0.976 with words alone, 0.984 with both).
        make_union(
            TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_features=100_000),
            TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5), max_features=100_000),
        ),
    ]


def linear_preprocessor(plan: ColumnPlan) -> ColumnTransformer:
    """Scaled numerics with missing indicators, one-hot categories, TF-IDF text (sparse)."""
    parts: list[tuple[str, Any, Any]] = []
    if numeric := plan.of("numeric"):
        parts.append(
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                numeric,
            )
        )
    if categorical := plan.of("categorical"):
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, max_categories=60)
        parts.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="__missing__"),
                    SimpleImputer(missing_values=None, strategy="constant", fill_value="__missing__"),
                    encoder,
                ),
                categorical,
            )
        )
    for i, col in enumerate(plan.of("text")):
        parts.append((f"text{i}", make_pipeline(*_text_steps()), [col]))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.3)


def tree_preprocessor(plan: ColumnPlan, *, impute: bool) -> tuple[ColumnTransformer, list[bool]]:
    """Numerics as they are (or median-imputed), ordinal categories, TF-IDF text reduced by SVD (dense).

    Returns the transformer and a mask of which output columns are categorical.
    """
    parts: list[tuple[str, Any, Any]] = []
    mask: list[bool] = []
    if numeric := plan.of("numeric"):
        parts.append(("num", SimpleImputer(strategy="median") if impute else "passthrough", numeric))
        mask += [False] * len(numeric)
    if categorical := plan.of("categorical"):
        missing: float = -2 if impute else np.nan
        unknown: float = -1 if impute else np.nan
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=unknown,
            encoded_missing_value=missing,
            max_categories=MAX_TREE_CATEGORIES,
        )
        parts.append(("cat", encoder, categorical))
        mask += [True] * len(categorical)
    for i, col in enumerate(plan.of("text")):
        steps = [*_text_steps(), TruncatedSVD(n_components=TEXT_SVD_COMPONENTS, random_state=0)]
        parts.append((f"text{i}", make_pipeline(*steps), [col]))
        mask += [False] * TEXT_SVD_COMPONENTS
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0), mask


@dataclass(frozen=True)
class _Setting:
    """What every candidate family is built for: the columns, the task, the class weights to try, the
    seed, the threads and the number of training rows."""

    plan: ColumnPlan
    classification: bool
    weights: list[Any]
    seed: int
    n_jobs: int
    n_rows: int

    @property
    def has_text(self) -> bool:
        return bool(self.plan.of("text"))


def build_candidates(
    plan: ColumnPlan, *, classification: bool, imbalanced: bool, seed: int, n_jobs: int, n_rows: int
) -> list[Candidate]:
    """Linear, histogram gradient boosting and forest candidates for this task and data."""
    weights: list[Any] = [None, "balanced"] if classification and imbalanced else [None]
    setting = _Setting(plan, classification, weights, seed, n_jobs, n_rows)
    linear, boosting, forest = _linear(setting), _boosting(setting), _forest(setting)
    # The likely strongest goes first, so a tight budget still reaches it: TF-IDF + linear for text,
    # gradient boosting for tables.
    if setting.has_text and len(plan.of("text")) == len(plan.types):
        return [linear]  # trees on 50 SVD components of text alone only cost time
    if setting.has_text:
        return [linear, boosting, forest]
    return [boosting, linear, forest]


def _linear(setting: _Setting) -> Candidate:
    """Logistic regression (TF-IDF + logistic for text) or ridge, on scaled and one-hot features."""
    plan, classification = setting.plan, setting.classification

    def build(params: dict[str, Any]) -> Pipeline:
        model: Any
        if classification:
            model = LogisticRegression(C=params["C"], class_weight=params["class_weight"], max_iter=2000)
        else:
            model = Ridge(alpha=params["alpha"])
        return Pipeline([("prep", linear_preprocessor(plan)), ("model", model)])

    default: dict[str, Any] = (
        {"C": 30.0 if setting.has_text else 1.0, "class_weight": None} if classification else {"alpha": 1.0}
    )
    space: dict[str, Dimension] = (
        {"C": LogUniform(1e-3, 1e3), "class_weight": setting.weights}
        if classification
        else {"alpha": LogUniform(1e-3, 1e3)}
    )
    name = ("linear_tfidf" if setting.has_text else "logistic") if classification else "ridge"
    return Candidate(name, default, space, build)


def _boosting(setting: _Setting) -> Candidate:
    """Histogram gradient boosting, with native categorical splits and early stopping on large data."""
    plan, classification, n_rows, seed = setting.plan, setting.classification, setting.n_rows, setting.seed

    def build(params: dict[str, Any]) -> Pipeline:
        prep, mask = tree_preprocessor(plan, impute=False)
        common: dict[str, Any] = {
            "learning_rate": params["learning_rate"],
            "max_iter": params["max_iter"],
            "max_leaf_nodes": params["max_leaf_nodes"],
            "min_samples_leaf": params["min_samples_leaf"],
            "l2_regularization": params["l2_regularization"],
            "categorical_features": mask if any(mask) else None,
            "early_stopping": n_rows >= EARLY_STOPPING_ROWS,
            "random_state": seed,
        }
        model: Any
        if classification:
            model = HistGradientBoostingClassifier(class_weight=params["class_weight"], **common)
        else:
            model = HistGradientBoostingRegressor(**common)
        return Pipeline([("prep", prep), ("model", model)])

    default: dict[str, Any] = {
        "learning_rate": 0.1,
        "max_iter": 300 if n_rows >= EARLY_STOPPING_ROWS else 100,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "l2_regularization": 0.0,
        "class_weight": None,
    }
    space: dict[str, Dimension] = {
        "learning_rate": LogUniform(0.04, 0.3),
        "max_iter": [200, 400] if n_rows >= EARLY_STOPPING_ROWS else [50, 100],
        "max_leaf_nodes": [7, 15, 31, 63],
        "min_samples_leaf": [5, 10, 20, 50, 100],
        "l2_regularization": [0.0, 0.01, 0.1, 1.0, 10.0],
        "class_weight": setting.weights,
    }
    return Candidate("hist_gradient_boosting", default, space, build)


def _forest(setting: _Setting) -> Candidate:
    """Random forest or extra trees (a searched choice), on imputed numerics and ordinal categories."""
    plan, classification, n_rows, seed = setting.plan, setting.classification, setting.n_rows, setting.seed
    n_jobs, weights = setting.n_jobs, setting.weights

    def build(params: dict[str, Any]) -> Pipeline:
        prep, _ = tree_preprocessor(plan, impute=True)
        common: dict[str, Any] = {
            "n_estimators": params["n_estimators"],
            "max_features": params["max_features"],
            "min_samples_leaf": params["min_samples_leaf"],
            # Threads cost more than they save on small data (iris: 6.4 s with one, 10.1 s with two).
            "n_jobs": n_jobs if n_rows >= SMALL_DATA_ROWS else 1,
            "random_state": seed,
        }
        model: Any
        if classification:
            cls = RandomForestClassifier if params["kind"] == "random_forest" else ExtraTreesClassifier
            model = cls(class_weight=params["class_weight"], **common)
        else:
            cls = RandomForestRegressor if params["kind"] == "random_forest" else ExtraTreesRegressor
            model = cls(**common)
        return Pipeline([("prep", prep), ("model", model)])

    many = n_rows > 20_000
    default: dict[str, Any] = {
        "kind": "random_forest" if classification else "extra_trees",
        "n_estimators": 150 if many else (200 if n_rows >= EARLY_STOPPING_ROWS else 100),
        "max_features": "sqrt" if classification else 0.5,
        "min_samples_leaf": 1 if not many else 3,
        "class_weight": None,
    }
    space: dict[str, Dimension] = {
        "kind": ["random_forest", "extra_trees"],
        "n_estimators": [100, 200] if many or n_rows < EARLY_STOPPING_ROWS else [100, 200, 400],
        "max_features": ["sqrt", 0.3, 0.5, 1.0],
        "min_samples_leaf": [1, 2, 5, 10],
        "class_weight": [*weights, "balanced_subsample"] if len(weights) > 1 else weights,
    }
    return Candidate("forest", default, space, build)


def estimator_name(pipeline: Pipeline) -> str:
    """Class name of the pipeline's final estimator."""
    return type(pipeline.steps[-1][1]).__name__
