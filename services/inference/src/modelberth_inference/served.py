"""One loaded version ready to answer: its micro-batcher and the runner that predicts each batch and records
what happened (class counts, confidence, drift, latency, and the hand-off to the shadow scorer)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelberth_inference.batching import MicroBatcher
from modelberth_inference.drift import DriftTracker
from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.model import LoadedModel, Prediction, columns_from
from modelberth_inference.settings import Settings
from modelberth_inference.shadow import ShadowScorer
from modelberth_inference.validation import Columns


@dataclass(slots=True)
class Served:
    """A loaded version with its micro-batcher; the served version also has its drift window."""

    model: LoadedModel
    batcher: MicroBatcher
    runner: BatchRunner
    drift: DriftTracker | None


def make_served(
    model: LoadedModel, settings: Settings, metrics: InferenceMetrics, *, serving: bool
) -> Served:
    """A micro-batcher over ``model``; the served version's (``serving``) also keeps a drift window."""
    drift = (
        DriftTracker(
            model.card.features,
            model.card.reference_profile,
            settings.drift_window_rows,
            settings.drift_min_rows,
        )
        if serving
        else None
    )
    runner = BatchRunner(model, metrics, drift)
    batcher = MicroBatcher(
        runner, max_wait_seconds=settings.batch_max_wait_seconds, max_rows=settings.batch_max_rows
    )
    return Served(model, batcher, runner, drift)


class BatchRunner:
    """Predicts one batch for one version and records the per-batch metrics (vectorised).

    The served version's runner (with a drift window) also feeds the model's confidence histogram and
    drift, and hands each batch to the shadow scorer when one is set; another version's runner counts only
    its predictions and latency, so calling a challenger by name never mixes into the champion's figures.
    """

    def __init__(self, model: LoadedModel, metrics: InferenceMetrics, drift: DriftTracker | None) -> None:
        self.model = model
        self.metrics = metrics
        self.drift = drift
        self.shadow: ShadowScorer | None = None
        self._counters: dict[str, Any] = {}  # label children, created on first use (absent until then)
        self._latency = metrics.predict_duration.labels(model.name, model.version, "request")

    def _count(self, label: str, amount: int) -> None:
        counter = self._counters.get(label)
        if counter is None:
            counter = self._counters[label] = self.metrics.predictions.labels(
                self.model.name, self.model.version, label
            )
        counter.inc(amount)

    def __call__(self, items: list[Columns]) -> list[Prediction]:
        model = self.model
        data = columns_from(model, items)
        start = time.perf_counter()
        result = model.predict(data)
        self._latency.observe(time.perf_counter() - start)
        total = sum(c.n for c in items)
        self.metrics.batch_size.observe(total)
        self._observe(result, data, total)
        if self.shadow is not None:
            self.shadow.offer(data, result, len(items))
        if len(items) == 1:
            return [result]
        out: list[Prediction] = []
        start = 0
        for item in items:
            end = start + item.n
            out.append(
                Prediction(
                    result.predictions[start:end],
                    None if result.proba is None else result.proba[start:end],
                    None if result.label_index is None else result.label_index[start:end],
                    _rows_within(result.invalid_rows, start, end),
                )
            )
            start = end
        return out

    def _observe(self, result: Prediction, data: dict[str, npt.NDArray[Any]], total: int) -> None:
        """Class counts, confidence and drift of the rows that were predicted (not the refused ones)."""
        model = self.model
        label_index, proba = result.label_index, result.proba
        if result.invalid_rows is not None:  # rare: mask the refused rows out of every metric
            keep = np.ones(total, dtype=bool)
            keep[result.invalid_rows] = False
            data = {name: column[keep] for name, column in data.items()}
            total = int(keep.sum())
            label_index = None if label_index is None else label_index[keep]
            proba = None if proba is None else proba[keep]
        if label_index is not None:
            counts = np.bincount(label_index, minlength=len(model.classes)).tolist()
            for label, count in zip(model.classes, counts, strict=False):
                if count:
                    self._count(label, count)
            if proba is not None and self.drift is not None:
                chosen = proba[np.arange(total), label_index]
                self.metrics.confidence.observe_many((model.name,), chosen)
        elif total:
            self._count("", total)
        if total and self.drift is not None:
            self.drift.update(data, total)


def _rows_within(rows: npt.NDArray[np.intp] | None, start: int, end: int) -> npt.NDArray[np.intp] | None:
    """The rows of ``rows`` in [start, end), renumbered from 0 (None when there are none)."""
    if rows is None:
        return None
    inside = rows[(rows >= start) & (rows < end)]
    return inside - start if len(inside) else None
