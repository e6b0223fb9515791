"""Inference metrics (bounded labels only) and feature drift (PSI).

Per-row work would dominate a 1000-row batch, so everything here is updated once per batch with numpy:
the confidence histogram counts a whole array with ``searchsorted``, and drift keeps per-feature bin counts
of a sliding window that are turned into a PSI only when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from modelberth_core.contract import CategoricalProfile, FeatureSpec, NumericProfile, Profile
from modelberth_inference.validation import category_codes

log = logging.getLogger("modelberth.inference.monitoring")

CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PREDICT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""One vectorised predict call: a micro-batch of single rows takes tens of microseconds on the fast path."""
SHADOW_OUTCOMES = ("scored", "dropped", "failed")
PSI_EPSILON = 1e-4
"""Floor for empty bins, so one unseen bin gives a large but finite PSI."""


def _go_float(value: float) -> str:
    """Prometheus's ``le`` label text for a bucket bound (``1.0``, ``0.5``)."""
    return repr(float(value))


class BulkHistogram(Collector):
    """A Prometheus histogram that takes a whole numpy array per call (``Histogram.observe`` is per value)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._series: dict[tuple[str, ...], tuple[npt.NDArray[np.int64], list[float]]] = {}
        self._lock = threading.Lock()

    def observe_many(self, labels: tuple[str, ...], values: npt.NDArray[np.float64]) -> None:
        """Add every value of ``values`` to the series ``labels``."""
        counts = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1
        )
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = (np.zeros(len(self.bounds) + 1, dtype=np.int64), [0.0])
            series[0][:] += counts
            series[1][0] += float(values.sum())

    def remove(self, labels: tuple[str, ...]) -> None:
        """Forget one series (a model that is no longer served)."""
        with self._lock:
            self._series.pop(labels, None)

    def collect(self) -> Iterable[Metric]:
        """The histogram family in Prometheus's cumulative-bucket form."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            items = [(labels, counts.copy(), total[0]) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in items:
            cumulative = np.cumsum(counts).tolist()
            buckets = [(_go_float(b), c) for b, c in zip(self.bounds.tolist(), cumulative, strict=False)]
            buckets.append(("+Inf", cumulative[-1]))
            family.add_metric(list(labels), buckets, total)
        yield family


class FeatureWindow:
    """Bin indices of the last ``size`` values of one feature, and their counts, for a PSI."""

    def __init__(
        self,
        expected: npt.NDArray[np.float64],
        binner: Callable[[npt.NDArray[Any]], npt.NDArray[np.intp]],
        size: int,
    ) -> None:
        self.expected = np.maximum(expected, PSI_EPSILON)
        self.binner = binner
        self.size = size
        self.ring = np.full(size, -1, dtype=np.int64)
        self.counts = np.zeros(len(expected), dtype=np.int64)
        self.filled = 0
        self.pos = 0

    def add(self, values: npt.NDArray[Any]) -> None:
        """Push a batch of values (only the last ``size`` matter)."""
        bins = self.binner(values[-self.size :])
        n = len(bins)
        if n == self.size:  # the batch replaces the whole window
            self.ring[:] = bins
            self.counts[:] = np.bincount(bins, minlength=len(self.counts))
            self.filled, self.pos = n, 0
            return
        idx = (self.pos + np.arange(n)) % self.size
        old = self.ring[idx]
        old = old[old >= 0]  # -1 marks a slot never written
        if len(old):
            self.counts -= np.bincount(old, minlength=len(self.counts))
        self.ring[idx] = bins
        self.counts += np.bincount(bins, minlength=len(self.counts))
        self.filled = min(self.size, self.filled + n)
        self.pos = (self.pos + n) % self.size

    def psi(self) -> float:
        """Population stability index of the window against the reference shares."""
        return psi(self.counts, self.filled, self.expected)


def psi(counts: npt.NDArray[np.int64], total: int, expected: npt.NDArray[np.float64]) -> float:
    """Population stability index of bin ``counts`` (of ``total`` values) against the reference shares
    ``expected`` (already floored at ``PSI_EPSILON``)."""
    actual = np.maximum(counts / max(total, 1), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _shares(frequencies: Sequence[float], missing: float) -> npt.NDArray[np.float64]:
    freqs = np.asarray(frequencies, dtype=np.float64)
    total = freqs.sum()
    scaled = freqs / total * (1.0 - missing) if total > 0 else freqs
    return np.append(scaled, missing)


def _numeric_binner(
    edges: Sequence[float], transform: Callable[[npt.NDArray[Any]], npt.NDArray[np.float64]]
) -> Callable[[npt.NDArray[Any]], npt.NDArray[np.intp]]:
    bounds = np.asarray(edges, dtype=np.float64)
    missing_bin = len(bounds) + 1

    def binner(values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
        numbers = transform(values)
        bins = np.searchsorted(bounds, numbers, side="right")
        return np.where(np.isnan(numbers), missing_bin, bins)

    return binner


def _as_float(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64)


def _text_length(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return np.array([len(v) if type(v) is str else math.nan for v in values.tolist()], dtype=np.float64)


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)|\+)\s*$")


def _window_for(spec: FeatureSpec, profile: Profile, size: int) -> FeatureWindow | None:
    if isinstance(profile, NumericProfile):
        transform = _as_float if spec.type == "numeric" else _text_length
        expected = _shares(profile.frequencies, profile.missing)
        return FeatureWindow(expected, _numeric_binner(profile.edges, transform), size)
    assert isinstance(profile, CategoricalProfile)
    keys = list(profile.frequencies)
    if spec.type == "text":
        # A text profile keyed by length ranges ("0-9", "10-49", "50+"): bin the lengths by range starts.
        starts = [_RANGE.match(k) for k in keys]
        if not all(starts):
            log.warning("text profile keys are not length ranges; no drift", extra={"feature": spec.name})
            return None
        order = sorted(range(len(keys)), key=lambda i: int(starts[i].group(1)))  # type: ignore[union-attr]
        edges = [float(starts[i].group(1)) for i in order[1:]]  # type: ignore[union-attr]
        freqs = [profile.frequencies[keys[i]] for i in order]
        return FeatureWindow(_shares(freqs, profile.missing), _numeric_binner(edges, _text_length), size)
    if "__other__" not in profile.frequencies:
        keys.append("__other__")
    index = {key: i for i, key in enumerate(keys)}
    other, missing_bin = index["__other__"], len(keys)
    expected = _shares([profile.frequencies.get(k, 0.0) for k in keys], profile.missing)

    def binner(values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
        return category_codes(values, index, other, missing_bin)

    return FeatureWindow(expected, binner, size)


class DriftTracker:
    """Sliding-window PSI per feature of one model version against its card's reference profile.

    The hot path only queues each batch's columns (:meth:`update` appends, and forgets batches that newer
    ones have pushed out of the window); a scrape bins what is queued, in one go per feature. Binning every
    batch cost more than predicting a micro-batch of single rows, and most of a busy server's batches would
    leave the window before anyone looked at it.
    """

    def __init__(
        self, features: Sequence[FeatureSpec], profiles: dict[str, Profile], size: int, min_rows: int
    ) -> None:
        self.min_rows = min_rows
        self.size = size
        self.windows: dict[str, FeatureWindow] = {}
        for spec in features:
            profile = profiles.get(spec.name)
            window = _window_for(spec, profile, size) if profile is not None else None
            if window is not None:
                self.windows[spec.name] = window
        self._pending: deque[tuple[dict[str, npt.NDArray[Any]], int]] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()

    def update(self, data: dict[str, npt.NDArray[Any]], rows: int) -> None:
        """Queue a batch of ``rows`` validated rows for the windows."""
        if not self.windows:
            return
        with self._lock:
            self._pending.append((data, rows))
            self._pending_rows += rows
            # The oldest batch no longer reaches into the last ``size`` rows: it would only be overwritten.
            while self._pending_rows - self._pending[0][1] >= self.size:
                self._pending_rows -= self._pending.popleft()[1]

    def _fold(self) -> None:
        if not self._pending:
            return
        pending = [data for data, _ in self._pending]
        self._pending.clear()
        self._pending_rows = 0
        for name, window in self.windows.items():
            columns = [data[name] for data in pending]
            window.add(columns[0] if len(columns) == 1 else np.concatenate(columns))

    def values(self) -> dict[str, float]:
        """Feature -> PSI, for windows holding at least ``min_rows`` rows."""
        with self._lock:
            self._fold()
            return {
                name: window.psi() for name, window in self.windows.items() if window.filled >= self.min_rows
            }


class BatchDrift:
    """PSI per feature of every row of a whole batch job (not a window) against the card's reference
    profile, with the service's bins and formula: counts only, so memory does not grow with the rows."""

    def __init__(self, features: Sequence[FeatureSpec], profiles: dict[str, Profile]) -> None:
        self.windows: dict[str, FeatureWindow] = {}
        for spec in features:
            profile = profiles.get(spec.name)
            window = _window_for(spec, profile, 1) if profile is not None else None
            if window is not None:
                self.windows[spec.name] = window
        self.rows = 0

    def update(self, data: dict[str, npt.NDArray[Any]], rows: int) -> None:
        """Count a block of ``rows`` validated rows into each feature's bins."""
        for name, window in self.windows.items():
            window.counts += np.bincount(window.binner(data[name]), minlength=len(window.counts))
        self.rows += rows

    def counts(self) -> dict[str, list[int]]:
        """Feature -> bin counts (what shards add up before a merged PSI)."""
        return {name: window.counts.tolist() for name, window in self.windows.items()}

    def expected(self) -> dict[str, list[float]]:
        """Feature -> the reference shares of its bins (so parts' counts can be merged into one PSI)."""
        return {name: window.expected.tolist() for name, window in self.windows.items()}

    def values(self) -> dict[str, float]:
        """Feature -> PSI of all rows counted so far (empty before any row)."""
        if not self.rows:
            return {}
        return {name: psi(w.counts, self.rows, w.expected) for name, w in self.windows.items()}


class DriftCollector(Collector):
    """Exports ``modelberth_inference_feature_drift_psi{model,feature}``, computed at scrape time."""

    def __init__(self, trackers: Callable[[], Iterable[tuple[str, DriftTracker]]]) -> None:
        self.trackers = trackers

    def collect(self) -> Iterator[Metric]:
        """One gauge sample per (model, feature) with enough recent rows."""
        family = GaugeMetricFamily(
            "modelberth_inference_feature_drift_psi",
            "Population stability index of recent inputs vs the training reference profile.",
            labels=["model", "feature"],
        )
        for model, tracker in self.trackers():
            for feature, value in tracker.values().items():
                family.add_metric([model, feature], value)
        yield family


class InferenceMetrics:
    """Every inference-specific metric, registered on the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.predictions = Counter(
            "modelberth_inference_predictions_total",
            "Rows predicted, by model, version and predicted class (empty for regression).",
            ["model", "version", "class"],
            registry=registry,
        )
        self.confidence = BulkHistogram(
            "modelberth_inference_prediction_confidence",
            "Probability of the predicted class (classifiers).",
            ["model"],
            CONFIDENCE_BUCKETS,
        )
        registry.register(self.confidence)
        self.batch_size = Histogram(
            "modelberth_inference_batch_size",
            "Rows per vectorised predict call (after micro-batching).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.input_warnings = Counter(
            "modelberth_inference_input_warnings_total",
            "Predicted values outside the training data: out_of_range numbers, unseen_category.",
            ["model", "feature", "kind"],
            registry=registry,
        )
        self.model_info = Gauge(
            "modelberth_inference_model_info",
            "The version being served (1).",
            ["model", "version"],
            registry=registry,
        )
        self.model_load_seconds = Histogram(
            "modelberth_inference_model_load_seconds",
            "Time to check and load one model version, in seconds.",
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.model_load_failures = Counter(
            "modelberth_inference_model_load_failures_total",
            "Model versions that failed to load (the previous version keeps serving).",
            ["model"],
            registry=registry,
        )
        self.models_ready = Gauge(
            "modelberth_inference_models_ready", "Models loaded and serving.", registry=registry
        )
        self.predict_duration = Histogram(
            "modelberth_inference_predict_duration_seconds",
            "One vectorised predict call, by model, version and traffic (request: answering requests;"
            " shadow: the challenger scoring the champion's traffic).",
            ["model", "version", "traffic"],
            buckets=PREDICT_BUCKETS,
            registry=registry,
        )
        self.shadow_requests = Counter(
            "modelberth_inference_shadow_requests_total",
            "Requests answered by the champion and offered to the challenger, by outcome: scored,"
            " dropped (the shadow queue was full) or failed (the challenger could not predict them).",
            ["model", "outcome"],
            registry=registry,
        )
        self.shadow_compared_rows = Counter(
            "modelberth_inference_shadow_compared_rows_total",
            "Rows scored by both the champion and the challenger.",
            ["model"],
            registry=registry,
        )
        self.shadow_agreeing_rows = Counter(
            "modelberth_inference_shadow_agreeing_rows_total",
            "Compared rows on which the challenger agrees with the champion (same label; for regression"
            " within the shadow tolerance).",
            ["model"],
            registry=registry,
        )
