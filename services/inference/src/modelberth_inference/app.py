"""The inference app factory: ``uvicorn --factory modelberth_inference.app:create_app``."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from joserfc.errors import JoseError
from pydantic import ValidationError

from modelberth_core.metrics import (
    FASTAPI_TELEMETRY,
    HttpMetrics,
    RequestContextMiddleware,
    metrics_router,
    new_registry,
)
from modelberth_core.security import JwksKeySource, KeySource, TokenVerifier
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

if TYPE_CHECKING:
    from modelberth_inference.transports.grpc_server import GrpcServer

log = logging.getLogger("modelberth.inference")

JWKS_RETRY_MAX_SECONDS = 5.0
"""Longest pause between JWKS fetch attempts while auth is not up yet."""
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


async def _start_grpc(plane: DataPlane, metrics: HttpMetrics) -> GrpcServer | None:
    """The gRPC listener, started (None when ``grpc_port`` is 0)."""
    if plane.settings.grpc_port == 0:
        return None
    # Imported here: its generated messages claim the proto package ``inference`` in the process, which a
    # process that turned gRPC off (or a test that also imports tritonclient.grpc) must not pay for.
    from modelberth_inference.transports.grpc_server import GrpcServer

    server = GrpcServer(plane, metrics)
    await server.start()
    return server


def _settings_error(exc: ValidationError) -> str:
    """A settings error as one line naming each variable, without the value (it may be a secret)."""
    parts = []
    for err in exc.errors():
        name = "_".join(str(p) for p in err.get("loc", ()))
        parts.append(f"INFERENCE_{name.upper()}: {err.get('msg', 'invalid')}")
    return "invalid settings: " + "; ".join(parts)


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
    metrics_registry = new_registry()
    http_metrics = HttpMetrics("inference", metrics_registry)
    metrics = InferenceMetrics(metrics_registry)
    registry = ModelRegistry(settings, metrics)
    metrics_registry.register(DriftCollector(registry.drift_trackers))
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
            registry=metrics_registry,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background so /healthz answers at once; /readyz turns 200 when loading is done.
        tasks = [asyncio.create_task(_initial_load(registry))]
        if isinstance(key_source, JwksKeySource):
            tasks.append(asyncio.create_task(_fetch_keys_until_loaded(key_source)))
        if settings.poll_seconds > 0:
            tasks.append(asyncio.create_task(registry.poll(settings.poll_seconds)))
        grpc_server = await _start_grpc(app.state.dataplane, http_metrics)
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(key_source, JwksKeySource):
                await key_source.aclose()
            if prediction_log is not None:
                prediction_log.close()

    app = FastAPI(
        title="modelberth inference",
        version=__version__,
        description="Validated predictions (V1 JSON, Open Inference Protocol V2) behind bearer tokens.",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.metrics_registry = metrics_registry
    app.state.dataplane = DataPlane(settings, registry, metrics, verifier, prediction_log)
    install_inference_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=http_metrics)
    # The prediction routes first: route matching walks the list in order, and they carry the traffic.
    app.include_router(v1.router)
    app.include_router(v2.infer_router)
    app.include_router(health.router)
    app.include_router(metrics_router(metrics_registry))
    app.include_router(models.router)
    app.include_router(v1.examples_router)
    app.include_router(v2.router)
    install_openapi(app)
    return app
