"""The auth service's own Prometheus metrics (core's ServiceBuilder adds the HTTP ones)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AuthMetrics:
    """``modelberth_auth_token_requests_total{grant_type,outcome}``, ``..._login_failures_total{reason}``,
    ``..._rate_limited_total`` and ``..._signing_keys``."""

    GRANT_TYPES = ("client_credentials", "refresh_token", "login")
    """Label values of ``grant_type``; anything else is counted as ``other`` (bounded labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.token_requests = Counter(
            "modelberth_auth_token_requests_total",
            "Token requests (token endpoint and login), by grant type and outcome (success or error code).",
            ["grant_type", "outcome"],
            registry=registry,
        )
        self.login_failures = Counter(
            "modelberth_auth_login_failures_total",
            "Failed authentications of users and clients, by reason.",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "modelberth_auth_rate_limited_total",
            "Requests refused with 429 because of too many failed logins.",
            registry=registry,
        )
        self.signing_keys = Gauge(
            "modelberth_auth_signing_keys",
            "Keys in the loaded keyset (the last one signs).",
            registry=registry,
        )

    def token_request(self, grant_type: str, outcome: str) -> None:
        """Count one token request."""
        label = grant_type if grant_type in self.GRANT_TYPES else "other"
        self.token_requests.labels(label, outcome).inc()
