"""The UI service: a FastAPI app with the probes and ``/metrics``, and the Gradio page mounted at ``/``.

Run it with ``modelberth serve ui`` (or ``uvicorn --factory modelberth_ui.app:create_app``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from modelberth_core.errors import install_error_handlers
from modelberth_core.metrics import (
    FASTAPI_TELEMETRY,
    HttpMetrics,
    RequestContextMiddleware,
    metrics_router,
    new_registry,
)
from modelberth_ui.batch import BatchLimits
from modelberth_ui.client import ModelberthClient
from modelberth_ui.metrics import UiMetrics
from modelberth_ui.settings import Settings

log = logging.getLogger("modelberth.ui")


def _prepare_gradio_environment(settings: Settings) -> None:
    # Gradio reads these when it is first imported, so they are set before the import below.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.temp_dir / "gradio"))
    (settings.temp_dir / "results").mkdir(parents=True, exist_ok=True)


def create_app(settings: Settings | None = None, *, client: ModelberthClient | None = None) -> FastAPI:
    """Build the UI app; ``client`` lets tests aim it at a fake transport."""
    settings = settings or Settings()
    _prepare_gradio_environment(settings)
    import gradio as gr

    from modelberth_ui.blocks import CSS, build_ui

    api = client or ModelberthClient.from_settings(settings)
    if settings.client_secret is None:
        log.warning(
            "UI_CLIENT_SECRET is not set: auth sees every login through the UI as coming from the UI "
            "itself, so all UI users share one failed-login throttle"
        )
    registry = new_registry()
    http_metrics = HttpMetrics("ui", registry)
    ui_metrics = UiMetrics(registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        api.close()

    app = FastAPI(
        title="modelberth ui",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
        # Swagger UI would load scripts from a CDN; the UI promises to work offline and has no API of note.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.client = api
    app.state.registry = registry
    app.state.ui_metrics = ui_metrics
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=http_metrics)
    app.include_router(metrics_router(registry))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        status = api.readiness()
        ready = all(value == "ready" for value in status.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "dependencies": status}
        if not ready:
            down = ", ".join(f"{name}: {value}" for name, value in status.items() if value != "ready")
            body["detail"] = f"waiting for {down}"
        return JSONResponse(body, status_code=200 if ready else 503)

    blocks = build_ui(
        api,
        limits=BatchLimits.from_settings(settings),
        out_dir=settings.temp_dir / "results",
        metrics=ui_metrics,
        delete_cache=(min(600, settings.temp_max_age_seconds), settings.temp_max_age_seconds),
    )
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        css=CSS,
        footer_links=[],
        run_history=False,
        show_error=False,
        # Files a little over the limit reach the handler, which explains the limit; far larger ones are
        # stopped by gradio before they are written to disk.
        max_file_size=2 * settings.max_upload_bytes,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
    )
    return app
