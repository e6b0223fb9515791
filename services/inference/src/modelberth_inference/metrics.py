"""Inference's Prometheus metrics (bounded labels only); feature drift (PSI) is in :mod:`.drift`.

Per-row work would dominate a 1000-row batch, so everything here is updated once per batch with numpy:
the confidence histogram counts a whole array with ``searchsorted``, and drift keeps per-feature bin counts
of a sliding window that are turned into a PSI only when Prometheus scrapes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PREDICT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""One vectorised predict call: a micro-batch of single rows takes tens of microseconds on the fast path."""
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""One answered request, from its arrival to its answer (token, body, validation, batch wait, predict)."""
SHADOW_OUTCOMES = ("scored", "dropped", "failed")


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


class InferenceMetrics:
    """Every inference-specific metric, registered on the app's own registry."""

    # Long on purpose: one declaration per metric, read as the list of the service's metrics.
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
        self.request_duration = Histogram(
            "modelberth_inference_model_request_duration_seconds",
            "Answered inference requests, by model, version and protocol (v1, v2, grpc): latency from"
            " arrival to answer; its _count is the request count.",
            ["model", "version", "protocol"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.rejected = Counter(
            "modelberth_inference_rejected_requests_total",
            "Inference requests refused without being predicted, by model and reason (queue_full: the"
            " model's INFERENCE_MAX_QUEUED requests were in progress; answered 429).",
            ["model", "reason"],
            registry=registry,
        )
