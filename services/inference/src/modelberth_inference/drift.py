"""Feature drift: per-feature PSI of a sliding window of served rows against the card's reference profile.

Per-row work would dominate a 1000-row batch, so each batch only queues its columns; the window's bin
counts are folded and turned into a PSI when Prometheus scrapes (:class:`DriftCollector`).
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
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelberth_core.contract import CategoricalProfile, FeatureSpec, NumericProfile, Profile

log = logging.getLogger("modelberth.inference.drift")

PSI_EPSILON = 1e-4
"""Floor for empty bins, so one unseen bin gives a large but finite PSI."""


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
        actual = np.maximum(self.counts / max(self.filled, 1), PSI_EPSILON)
        return float(np.sum((actual - self.expected) * np.log(actual / self.expected)))


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
        return np.fromiter(
            (index.get(v, other) if type(v) is str else missing_bin for v in values.tolist()),
            dtype=np.intp,
            count=len(values),
        )

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
