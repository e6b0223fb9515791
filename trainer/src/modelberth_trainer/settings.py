"""Trainer settings: ``TRAINER_*`` environment variables, overridden by ``modelberth train`` flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TaskChoice = Literal["auto", "classification", "regression"]

BUNDLED_DATASETS = ("iris", "wine", "breast_cancer", "diabetes")
"""scikit-learn's bundled datasets ``--dataset`` accepts."""

CLASSIFICATION_METRICS = ("roc_auc", "average_precision", "f1_macro", "f1", "accuracy", "balanced_accuracy")
REGRESSION_METRICS = ("rmse", "mae", "r2")


def default_jobs() -> int:
    """Worker threads: at most two (the machines this runs on have two cores, shared with services)."""
    return max(1, min(2, os.cpu_count() or 1))


class TrainerSettings(BaseSettings):
    """Everything one training run needs; flags passed as init arguments win over the environment."""

    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore", frozen=True)

    data: Path | None = None
    """CSV/TSV file to train on; when unset, ``data_url`` or else ``dataset`` is used."""
    data_url: str | None = None
    """HTTPS URL of the CSV/TSV file to train on (downloaded to a temporary file; its query never shown)."""
    data_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    """The sha256 (hex) the ``data`` file or the ``data_url`` download must have; else training refuses."""
    test_data: Path | None = None
    """Optional user-supplied test file (same columns); replaces the hold-out split."""
    dataset: str = "iris"
    """Bundled scikit-learn dataset (iris, wine, breast_cancer, diabetes) used when ``data`` is unset."""
    no_header: bool = False
    """The file has no header row (name the columns with ``columns``)."""
    columns: list[str] | None = None
    """Column names for a file without header (or to rename a header)."""
    target: str | None = None
    """Target column; default: the bundled dataset's target or the file's last column."""
    task: TaskChoice = "auto"
    """classification, regression, or auto (non-numeric or few integer values -> classification)."""
    metric: str | None = None
    """Selection metric; default roc_auc (binary), f1_macro (multiclass), rmse (regression)."""
    time_budget_seconds: float = Field(default=120.0, gt=0)
    """Wall-clock budget for the whole run, in seconds; the search stops when its share is spent."""
    name: str | None = None
    """Model name; default the dataset name or the file stem, sanitised."""
    store: str = ""
    """Model store location (a directory or ``oci://HOST[:PORT]/NAMESPACE``); empty: ``$MODELBERTH_STORE``,
    else ``artifacts/models``."""
    artifact_only: bool = False
    """Registry stores: push images of the artifact alone (no static busybox copier): enough for the registry
    store and image volumes, not for an init container to run."""
    seed: int = 0
    """Random seed for the split, the folds and the search."""
    test_size: float = Field(default=0.2, gt=0.0, lt=0.9)
    """Share of rows held out for the single final test (ignored with ``test_data``)."""
    drop: list[str] = []
    """Columns to leave out (e.g. a leak the guard named)."""
    positive_label: str | None = None
    """Binary only: the class whose probability the threshold applies to; default a sensible guess."""
    cost_fp: float | None = Field(default=None, ge=0)
    """Cost of one false positive; with ``cost_fn`` the threshold minimises expected cost."""
    cost_fn: float | None = Field(default=None, ge=0)
    """Cost of one false negative."""
    protected: list[str] = []
    """Attributes whose value swap should not change predictions; the flip rate is reported."""
    n_jobs: int = Field(default_factory=default_jobs, ge=1)
    """Threads for model fitting (forests, gradient boosting)."""
    max_configs_per_candidate: int = Field(default=40, ge=1)
    """Upper bound on configurations tried per candidate, even with time left."""
    patience: int = Field(default=2, ge=1)
    """A candidate's search stops after this many configurations in a row without real improvement."""
    candidates: list[str] | None = None
    """Restrict the search to these candidates (logistic/ridge, forest, hist_gradient_boosting)."""
    gate_tolerance: float = Field(default=0.005, ge=0.0)
    """How much worse than the champion's the candidate's primary test metric may be (absolute, in the
    metric's unit) and still be promoted."""
    allow_leaks: bool = False
    """Promote even when the leak guard warns (by default a standing leak warning blocks promotion)."""
    expectations: Path | None = None
    """YAML file of behavioural checks (known examples, invariance, directional) the candidate must pass."""
    no_gate: bool = False
    """Promote to champion unconditionally: no comparison, no checks (recorded as such in the history)."""

    @model_validator(mode="after")
    def _one_source(self) -> TrainerSettings:
        if self.data is not None and self.data_url is not None:
            raise ValueError("--data and --data-url name two training files; give one")
        return self

    @model_validator(mode="after")
    def _costs_together(self) -> TrainerSettings:
        if (self.cost_fp is None) != (self.cost_fn is None):
            raise ValueError("--cost-fp and --cost-fn go together")
        return self
