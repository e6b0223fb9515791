"""Loading one model version (checked, in a fixed order) and predicting on validated columns.

No FastAPI here: this module turns a version directory into a :class:`LoadedModel` and numpy columns into
predictions. joblib files are pickles, so a file is loaded only from inside the configured model root and
only after the card's schema version, the scikit-learn version and the file's SHA-256 all check out.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
import sklearn

from modelberth_core import contract
from modelberth_core.contract import ContractError, FeatureSpec, ModelCard
from modelberth_inference.fastpath import FastPredict, build_fast_path, same_output
from modelberth_inference.validation import Columns, InputError, Validator, renamed_struct

log = logging.getLogger("modelberth.inference.model")


class LoadError(Exception):
    """A version could not be loaded; the message says which check failed (never the pickle's content).

    ``reason`` says the same without paths, file contents or exception text, so that the unauthenticated
    ``/readyz`` can show it (issue 13); the message, with paths, goes to the log and to an admin's reload.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Prediction:
    """Outputs for a block of rows: labels (or values) and, for classifiers, class probabilities."""

    predictions: list[Any]
    proba: npt.NDArray[np.float64] | None
    label_index: npt.NDArray[np.intp] | None = None
    invalid_rows: npt.NDArray[np.intp] | None = None
    """Rows whose output is not a finite number (their inputs overflowed the model's arithmetic)."""


@dataclass(slots=True)
class LoadedModel:
    """One model version in memory, with everything precomputed that the hot path needs."""

    card: ModelCard
    pipeline: Any
    path: Path
    validator: Validator
    examples: list[dict[str, Any]]
    load_seconds: float
    loaded_at: float = field(default_factory=time.time)
    classes: list[str] = field(default_factory=list)
    has_proba: bool = False
    positive_index: int = 1
    threshold: float | None = None
    method: str = "predict"
    fast: FastPredict | None = None
    probability_row: type[msgspec.Struct] | None = None
    class_labels: npt.NDArray[np.object_] = field(default_factory=lambda: np.empty(0, dtype=object))

    @property
    def name(self) -> str:
        """The model's name."""
        return self.card.name

    @property
    def version(self) -> str:
        """The loaded version."""
        return self.card.version

    def frame(self, data: dict[str, npt.NDArray[Any]]) -> pd.DataFrame:
        """The DataFrame the pipeline was fitted on: built once per batch, column-wise, in card order."""
        return pd.DataFrame({name: data[name] for name in self.validator.names}, copy=False)

    def raw_output(self, data: dict[str, npt.NDArray[Any]]) -> Any:
        """``pipeline.predict_proba`` (or ``predict``) of the rows, via the verified fast path if any."""
        if self.fast is not None:
            return self.fast(data)
        # Inputs were validated (finite, typed) by our own validator, so sklearn's repeated checks are waste.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return getattr(self.pipeline, self.method)(self.frame(data))

    def probabilities(self, proba: npt.NDArray[np.float64]) -> list[Any]:
        """``[{class: p, ...}, ...]``, one entry per row, ready for the response encoder.

        Each row is a struct whose fields are named after the classes, built from the probability columns in
        C (``map`` over the columns): a 1000-row answer costs about a quarter of building a dict per row.
        """
        if self.probability_row is not None:
            return list(map(self.probability_row, *proba.T.tolist()))
        return [dict(zip(self.classes, row, strict=True)) for row in proba.tolist()]

    def predict(self, data: dict[str, npt.NDArray[Any]]) -> Prediction:
        """Predict a block of validated rows in one vectorised call.

        Inputs are finite, but not every finite input can be computed with: ±1e308 overflows a scaler and a
        softmax of infinities is NaN. Numpy is told not to warn about that, and one reduction over the
        outputs finds the rows it happened to (issue 13), on the fast path and scikit-learn's alike.
        """
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            raw = self.raw_output(data)
        if self.card.task == "regression":
            values = np.asarray(raw, dtype=np.float64)
            return Prediction(values.tolist(), None, invalid_rows=non_finite_rows(values))
        if self.method == "predict":
            labels = np.asarray(raw).astype(str)
            index = np.searchsorted(np.asarray(self.classes), labels)
            return Prediction(labels.tolist(), None, index)
        proba = np.asarray(raw, dtype=np.float64)
        invalid = non_finite_rows(proba)
        if self.threshold is not None:
            pos = self.positive_index
            index = np.where(proba[:, pos] >= self.threshold, pos, 1 - pos)
        else:
            index = np.argmax(proba, axis=1)
        return Prediction(self.class_labels[index].tolist(), proba, index, invalid)


def non_finite_rows(output: npt.NDArray[np.float64]) -> npt.NDArray[np.intp] | None:
    """Indices of the rows of ``output`` holding NaN or an infinity; None (one reduction) if none do."""
    if math.isfinite(output.sum()):  # a NaN or an infinity anywhere makes the sum one (one reduction)
        return None
    finite = np.isfinite(output)  # or finite values whose sum overflowed: look row by row
    rows = np.flatnonzero(~finite.all(axis=1) if finite.ndim > 1 else ~finite)
    return rows if len(rows) else None


def _contained(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _check_schema_version(version_dir: Path) -> None:
    path = version_dir / contract.CARD_FILE
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise LoadError(
            f"{path}: cannot read the model card ({type(exc).__name__})", "the model card cannot be read"
        ) from exc
    found = raw.get("schema_version") if isinstance(raw, dict) else None
    if found not in contract.SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, contract.SUPPORTED_SCHEMA_VERSIONS))
        raise LoadError(
            f"{path}: schema_version {found!r} is not supported (this server reads {supported})",
            f"the card's schema_version is not one this server reads ({supported})",
        )


def load_model(model_dir: Path, name: str, version: str, *, max_text_length: int) -> LoadedModel:
    """Check and load ``<model_dir>/<name>/<version>``: schema version, sklearn version, sha256, then joblib.

    A warm-up prediction on the examples (or the card's example values) proves the pipeline runs and that
    its classes match the card before the version is allowed to serve.
    """
    start = time.perf_counter()
    version_dir = model_dir / name / version
    if not _contained(model_dir, version_dir) or not version_dir.is_dir():
        raise LoadError(f"{name}/{version}: no such version under the model directory", "no such version")
    _check_schema_version(version_dir)
    try:
        card = contract.read_card(version_dir)
    except ContractError as exc:
        raise LoadError(str(exc), "the model card is not valid") from exc
    if card.name != name or card.version != version:
        raise LoadError(
            f"{version_dir}: the card names {card.name}/{card.version}", "the card names another version"
        )
    if card.versions.sklearn != sklearn.__version__:
        raise LoadError(
            f"{name}/{version}: built with scikit-learn {card.versions.sklearn}, "
            f"this server runs {sklearn.__version__}",
            "built with another scikit-learn version than this server runs",
        )
    try:
        model_path = contract.verify_checksum(version_dir, card)
    except ContractError as exc:
        raise LoadError(str(exc), "the model file is missing or its sha256 differs from the card's") from exc
    if not _contained(model_dir, model_path):
        raise LoadError(
            f"{model_path}: resolves outside the model directory", "the model file is outside the model dir"
        )
    try:
        pipeline = joblib.load(model_path)
    except Exception as exc:  # a pickle can raise anything; the card and checksum said it was ours
        raise LoadError(
            f"{model_path}: joblib.load failed ({type(exc).__name__}: {exc})",
            f"the model file does not load ({type(exc).__name__})",
        ) from exc
    model = LoadedModel(
        card=card,
        pipeline=pipeline,
        path=version_dir,
        validator=Validator(card.features, max_text_length),
        examples=read_examples(version_dir, card.features),
        load_seconds=0.0,
    )
    _prepare(model)
    _warm_up(model)
    model.load_seconds = time.perf_counter() - start
    return model


def _prepare(model: LoadedModel) -> None:
    card = model.card
    if card.task == "regression":
        model.method = "predict"
        return
    model.classes = list(card.classes or [])
    fitted = getattr(model.pipeline, "classes_", None)
    if fitted is not None and [str(c) for c in fitted] != model.classes:
        raise LoadError(
            f"{card.name}/{card.version}: the pipeline's classes differ from the card's",
            "the pipeline's classes differ from the card's",
        )
    model.has_proba = hasattr(model.pipeline, "predict_proba")
    model.probability_row = probability_row_type(model.classes)
    model.class_labels = np.asarray(model.classes, dtype=object)
    model.method = "predict_proba" if model.has_proba else "predict"
    if card.is_binary and card.threshold is not None and model.has_proba:
        positive = card.positive_label or model.classes[1]
        model.positive_index = model.classes.index(positive)
        model.threshold = card.threshold.value


def probability_row_type(classes: list[str]) -> type[msgspec.Struct] | None:
    """A struct with one float field per class, encoded as ``{class: p}`` in class order, if msgspec allows
    the class names as field names (no quote, backslash or control character); else None (plain dicts)."""
    return renamed_struct("Probabilities", [(label, float) for label in classes], gc=False)


def _warm_up(model: LoadedModel) -> None:
    rows = [*model.examples, _example_row(model.card.features)]
    try:
        columns = model.validator.from_instances(rows)
    except InputError as exc:
        raise LoadError(
            f"{model.name}/{model.version}: examples do not match the feature schema",
            "the examples do not match the feature schema",
        ) from exc
    try:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            expected = getattr(model.pipeline, model.method)(model.frame(columns.data))
    except Exception as exc:  # any failure means this version must not serve
        raise LoadError(
            f"{model.name}/{model.version}: warm-up prediction failed ({type(exc).__name__}: {exc})",
            f"the warm-up prediction failed ({type(exc).__name__})",
        ) from exc
    model.fast = _verified_fast_path(model, columns, expected)


def _verified_fast_path(model: LoadedModel, columns: Columns, expected: Any) -> FastPredict | None:
    numeric = frozenset(f.name for f in model.card.features if f.type == "numeric")
    fast = build_fast_path(model.pipeline, model.validator.names, model.method, numeric)
    if fast is None:
        log.info("fast path not applicable; using the pipeline as is", extra={"model": model.name})
        return None
    try:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            got = fast(columns.data)
    except Exception as exc:  # the fast path is an optimisation: any doubt means the plain pipeline
        log.info("fast path failed its check", extra={"model": model.name, "error": type(exc).__name__})
        return None
    if not same_output(got, expected):
        log.info("fast path output differs; using the pipeline as is", extra={"model": model.name})
        return None
    return fast


def _example_row(features: list[FeatureSpec]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for spec in features:
        if spec.type == "numeric":
            row[spec.name] = float(spec.example) if isinstance(spec.example, int | float) else 0.0
        elif spec.categories:
            row[spec.name] = spec.categories[0]
        else:
            row[spec.name] = str(spec.example) if spec.example is not None else ""
    return row


def read_examples(version_dir: Path, features: list[FeatureSpec]) -> list[dict[str, Any]]:
    """``examples.csv`` as typed instances (numbers as floats, empty cells as null); [] if absent."""
    path = version_dir / contract.EXAMPLES_FILE
    if not path.is_file():
        return []
    specs = {f.name: f for f in features}
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if set(reader.fieldnames or ()) != set(specs):
            raise LoadError(
                f"{path}: header does not match the card's features",
                "examples.csv does not match the card's features",
            )
        for raw in reader:
            row: dict[str, Any] = {}
            for key, text in raw.items():
                spec = specs[key]
                if text == "":
                    row[key] = None
                elif spec.type == "numeric":
                    try:
                        row[key] = float(text)
                    except ValueError as exc:
                        raise LoadError(
                            f"{path}: {key} holds a non-numeric value",
                            "examples.csv holds a non-numeric value for a numeric feature",
                        ) from exc
                else:
                    row[key] = text
            rows.append(row)
    return rows


def columns_from(model: LoadedModel, items: list[Columns]) -> dict[str, npt.NDArray[Any]]:
    """Concatenate several requests' columns into one block (one array per feature)."""
    if len(items) == 1:
        return items[0].data
    return {name: np.concatenate([c.data[name] for c in items]) for name in model.validator.names}
