"""The UI's own Prometheus metrics, beside core's HTTP request metrics."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter

LoginOutcome = Literal["success", "invalid_credentials", "rate_limited", "error"]
PredictionKind = Literal["form", "example", "batch"]


class UiMetrics:
    """``modelberth_ui_logins_total{outcome}`` and ``modelberth_ui_predictions_total{kind}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter(
            "modelberth_ui_logins_total",
            "Login attempts through the UI, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.predictions = Counter(
            "modelberth_ui_predictions_total",
            "Predictions a person asked for and got: one per form submit, example or batch file.",
            ["kind"],
            registry=registry,
        )

    def login(self, outcome: LoginOutcome) -> None:
        """Count one login attempt."""
        self.logins.labels(outcome).inc()

    def prediction(self, kind: PredictionKind) -> None:
        """Count one answered prediction request of ``kind``."""
        self.predictions.labels(kind).inc()
