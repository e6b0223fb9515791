"""The inference app factory: ``uvicorn --factory modelberth_inference.app:create_app``."""

from __future__ import annotations

import asyncio
import gc
import logging

import httpx
from fastapi import FastAPI
from joserfc.errors import JoseError
from pydantic import ValidationError

from modelberth_core.security import JwksKeySource, KeySource, TokenVerifier
from modelberth_core.service import ServiceBuilder
from modelberth_core.settings import settings_problems
from modelberth_inference import __version__
from modelberth_inference.dataplane import DataPlane
from modelberth_inference.drift import DriftCollector
from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.openapi import install_openapi
from modelberth_inference.prediction_log import PredictionLog, PredictionLogError, open_prediction_log
from modelberth_inference.registry import ModelRegistry
from modelberth_inference.rest import install_inference_error_handlers
from modelberth_inference.routes import health, models, v1, v2
from modelberth_inference.settings import Settings

log = logging.getLogger("modelberth.inference")

JWKS_RETRY_MAX_SECONDS = 5.0
"""Longest pause between JWKS fetch attempts while auth is not up yet."""
GC_YOUNG_THRESHOLD = 10_000
"""Allocations (net) between two young-generation collections; CPython's default is 700. A collection walks
the young objects still alive, which under load are those of the requests in flight: about the same work
whether it runs every 700 allocations or every 10,000. The request path makes no cyclic garbage for it to
find (none in 20 collections under load), so waiting longer holds no memory back. Measured side by side,
a single-row prediction used 0.94 of the CPU time per request with it."""
STARTUP_FAILURE = 3
"""Exit status when the configuration cannot work (uvicorn's own status for an app it cannot load)."""


async def _fetch_keys_until_loaded(keys: JwksKeySource) -> None:
    delay = 0.2
    while not keys.loaded:
        try:
            await keys.fetch()
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            log.warning(
                "jwks not available yet; retrying", extra={"error": type(exc).__name__, "url": keys.url}
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, JWKS_RETRY_MAX_SECONDS)


async def _initial_load(registry: ModelRegistry) -> None:
    try:
        await registry.refresh()
    except Exception:  # an unreadable model dir must not kill the server; /readyz reports it
        log.exception("initial model load failed")
        registry.scanned = True
    # Imports and fitted models are long-lived: freezing them keeps full collections from walking them
    # again and again on the request path (a tail-latency source).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _settings_error(exc: ValidationError) -> str:
    """A settings error as one line naming each variable, without the value (it may be a secret)."""
    return "invalid settings: " + "; ".join(settings_problems(exc, "INFERENCE_"))


def create_app(settings: Settings | None = None, *, keys: KeySource | None = None) -> FastAPI:
    """Build the app; ``keys`` replaces the JWKS fetched from ``auth_jwks_url`` (tests pass static keys).

    Called without ``settings`` (as ``modelberth serve inference`` and ``uvicorn --factory`` do), it reads
    ``INFERENCE_*`` and, like uvicorn for its own configuration errors, ends the process with one error
    line and status 3 when they cannot work (an invalid value, a prediction log path that is a directory)
    rather than a traceback (issue 13). Given settings, it raises instead.
    """
    if settings is not None:
        return _build(settings, keys)
    try:
        return _build(Settings(), keys)
    except ValidationError as exc:
        message = _settings_error(exc)
    except PredictionLogError as exc:
        message = f"{exc} (INFERENCE_PREDICTION_LOG)"
    log.error(message)
    raise SystemExit(STARTUP_FAILURE)


def _build(settings: Settings, keys: KeySource | None) -> FastAPI:
    service = ServiceBuilder("inference")
    metrics = InferenceMetrics(service.registry)
    registry = ModelRegistry(settings, metrics)
    service.registry.register(DriftCollector(registry.drift_trackers))
    key_source: KeySource = keys if keys is not None else JwksKeySource(settings.auth_jwks_url)
    verifier = TokenVerifier(key_source, issuer=settings.auth_issuer, audience=settings.auth_audience)
    prediction_log: PredictionLog | None = None
    if settings.prediction_log:
        prediction_log = open_prediction_log(
            settings.prediction_log,
            sample_rate=settings.prediction_log_sample_rate,
            redact=settings.redacted_fields(),
            max_bytes=settings.prediction_log_max_bytes,
            backups=settings.prediction_log_backups,
            registry=service.registry,
        )
        service.on_shutdown(prediction_log.close)
    # Load in the background so /healthz answers at once; /readyz turns 200 when loading is done.
    service.in_background(lambda: _initial_load(registry))
    if isinstance(key_source, JwksKeySource):
        jwks = key_source
        service.on_shutdown(jwks.aclose)
        service.in_background(lambda: _fetch_keys_until_loaded(jwks))
    if settings.poll_seconds > 0:
        service.in_background(lambda: registry.poll(settings.poll_seconds))

    app = service.build(
        settings,
        title="modelberth inference",
        version=__version__,
        description="Validated predictions (V1 JSON, Open Inference Protocol V2) behind bearer tokens.",
        # The prediction routes first: route matching walks the list in order, and they carry the traffic.
        routers=[
            v1.router,
            v2.infer_router,
            health.router,
            models.router,
            v1.examples_router,
            v2.router,
        ],
        errors=install_inference_error_handlers,
    )
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.dataplane = plane = DataPlane(settings, registry, metrics, verifier, prediction_log)
    if settings.grpc_port:
        _serve_grpc(service, plane)
    install_openapi(app)
    return app


def _serve_grpc(service: ServiceBuilder, plane: DataPlane) -> None:
    """Start the OIP gRPC listener with the app (before it takes requests) and stop it at shutdown, gracefully
    (before the prediction log closes: shutdown hooks run last registered first)."""
    # Imported here: its generated messages claim the proto package ``inference`` in the process, which a
    # process with gRPC off (or a test that also imports tritonclient.grpc) must not pay for.
    from modelberth_inference.transports.grpc_server import GrpcServer

    server = GrpcServer(plane, service.http_metrics)
    service.on_startup(server.start)
    service.on_shutdown(server.stop)
