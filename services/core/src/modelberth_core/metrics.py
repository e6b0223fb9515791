"""Prometheus metrics shared by every service: HTTP request metrics and the ``/metrics`` route.

One uvicorn worker per pod (scale with replicas), so the default registry is enough: no multiprocess mode.
Labels stay bounded: the route *template*, the method and the status class, never a raw path.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

from fastapi import APIRouter, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelberth_core.logging import log_request, request_id_var

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Kept out of request metrics and access logs: scrapes and probes would drown real traffic."""

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
"""The RFC 9110 methods plus PATCH: the only values of the ``method`` label. uvicorn passes on any token as
a method (``PROPFIND``, ``get``, ``VERB123``...); each would start new series, so they all count as
``other``."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

FASTAPI_TELEMETRY: TelemetryConfig = {"metrics": False, "logs": False}
"""``FastAPI(telemetry=...)`` for every service: OpenTelemetry tracing stays on (spans whenever a tracer
provider is configured), while metrics and logs come from Prometheus and our JSON logs. FastAPI otherwise
looks up all three OTel providers on every request, about 2% of a single-row prediction."""


def new_registry() -> CollectorRegistry:
    """A registry per app (so tests can build many apps), with the process, platform and GC collectors."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class HttpMetrics:
    """Per-service HTTP metrics: ``modelberth_<service>_requests_total``, ``..._request_duration_seconds``
    and ``..._requests_in_flight``."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        prefix = f"modelberth_{service}"
        self.requests = Counter(
            f"{prefix}_requests_total",
            "HTTP requests handled, by route template, method and status class.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            f"{prefix}_request_duration_seconds",
            "HTTP request duration in seconds, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{prefix}_requests_in_flight", "HTTP requests being handled now.", registry=registry
        )


def method_label(method: str) -> str:
    """The ``method`` label of a request: the method itself when it is a standard one, else ``other``."""
    return method if method in HTTP_METHODS else "other"


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Unmatched paths (404s) share one label so a scanner cannot grow the series count.
    return "unmatched"


class RequestContextMiddleware:
    """Pure ASGI middleware: request id, request metrics and one access-log line per request.

    Written against raw ASGI rather than ``BaseHTTPMiddleware`` because it sits on the inference hot path.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, skip_paths: Iterable[str] = PROBE_PATHS) -> None:
        self.app = app
        self.metrics = metrics
        self.skip_paths = frozenset(skip_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        # An id only has to be unique, not secret: random bits spare uuid4's os.urandom call per request.
        request_id = _incoming_request_id(scope) or f"{random.getrandbits(128):032x}"
        token = request_id_var.set(request_id)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.in_flight.dec()
            route, method = _route_template(scope), method_label(scope["method"])
            self.metrics.requests.labels(route, method, f"{status // 100}xx").inc()
            self.metrics.duration.labels(route, method).observe(elapsed)
            log_request(method, route, status, elapsed)
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            text: str = value.decode("latin-1")
            # Accept a caller's id only if it is short and printable, so it cannot forge log lines.
            if 0 < len(text) <= 64 and text.isprintable():
                return text
    return None


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """A router serving ``GET /metrics`` in the Prometheus text format."""
    router = APIRouter(tags=["probes"])

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
