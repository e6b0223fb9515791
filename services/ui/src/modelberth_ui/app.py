"""The UI service: a FastAPI app with the probes and ``/metrics``, and the Gradio page mounted at ``/``.

Run it with ``modelberth serve ui`` (or ``uvicorn --factory modelberth_ui.app:create_app``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.routing import Mount

from modelberth_core.service import ServiceBuilder
from modelberth_core.settings import load_settings
from modelberth_ui.batch import BatchLimits
from modelberth_ui.client import ModelberthClient
from modelberth_ui.gate import EventExists, GradioGate
from modelberth_ui.metrics import UiMetrics
from modelberth_ui.settings import Settings
from modelberth_ui.uploads import UploadRegistry

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger("modelberth.ui")


def _prepare_gradio_environment(settings: Settings) -> None:
    # Gradio reads these when it is first imported, so they are set before the import below.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.temp_dir / "gradio"))
    (settings.temp_dir / "results").mkdir(parents=True, exist_ok=True)


def create_app(settings: Settings | None = None, *, client: ModelberthClient | None = None) -> FastAPI:
    """Build the UI app; ``client`` lets tests aim it at a fake transport."""
    settings = settings or load_settings(Settings, "ui")
    _prepare_gradio_environment(settings)
    import gradio as gr

    from modelberth_ui.blocks import CSS, build_ui

    api = client or ModelberthClient.from_settings(settings)
    if settings.client_secret is None:
        log.warning(
            "UI_CLIENT_SECRET is not set: auth sees every login through the UI as coming from the UI "
            "itself, so all UI users share one failed-login throttle"
        )
    service = ServiceBuilder("ui")
    ui_metrics = UiMetrics(service.registry)
    service.on_shutdown(api.close)
    # Swagger UI would load scripts from a CDN; the UI promises to work offline and has no API of note.
    app = service.build(settings, title="modelberth ui", docs=False)
    app.state.client = api
    app.state.ui_metrics = ui_metrics

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

    results_dir = settings.temp_dir / "results"
    blocks = build_ui(
        api,
        limits=BatchLimits.from_settings(settings),
        out_dir=results_dir,
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
        # Result CSVs are handed to the download button from here, wherever temp_dir is. Their names are
        # random and never sent to a browser (it gets gradio's cached copy), so none can be asked for.
        allowed_paths=[str(results_dir)],
    )
    # Gradio checks that a file an event names was uploaded (processing_utils._check_allowed) only once
    # the Blocks were launched; mounted, they never are. Turn the check on: a path outside its upload
    # folder is then refused before it is copied. The gate below narrows that to this browser's uploads.
    blocks.has_launched = True
    mount = app.routes[-1]
    assert isinstance(mount, Mount), "gr.mount_gradio_app adds the Gradio app as the last route"
    uploads = UploadRegistry(settings.temp_max_age_seconds)
    mount.app = GradioGate(mount.app, uploads=uploads, event_exists=_event_exists(blocks))
    app.state.uploads = uploads
    return app


def _event_exists(blocks: gr.Blocks) -> EventExists:
    """Whether a session has an event handler ``fn_index``: the app's own, plus those ``@gr.render`` drew
    for that session (Gradio keeps them in the session's state and answers a 500 for any other index)."""

    def exists(session_hash: str, fn_index: int) -> bool:
        sessions = blocks.state_holder.session_data
        fns = sessions[session_hash].blocks_config.fns if session_hash in sessions else blocks.fns
        return fn_index in fns

    return exists
