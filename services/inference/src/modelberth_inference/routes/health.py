"""Probes: ``/healthz`` (alive) and ``/readyz`` (every configured model loaded and the JWKS fetched)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from modelberth_inference.rest import PlaneDep, json_response

router = APIRouter(tags=["probes"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process is alive."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    responses={503: {"description": "Not ready: the body says why (same shape as the 200's)."}},
)
async def readyz(dataplane: PlaneDep) -> Response:
    """200 once every configured model is loaded and the JWKS has been fetched, else 503."""
    ready, reason = dataplane.readiness()
    registry = dataplane.registry
    body = {
        "status": "ready" if ready else "not ready",
        "reason": reason,
        "models": {name: served.model.version for name, served in sorted(registry.models.items())},
        # A newer version that failed to load leaves the old one serving (still ready): say which and why.
        "load_failures": registry.load_failures(),
        # A failing prediction log does not make the service unready: predictions are still answered, and
        # taking every replica out of the Service over an audit log would be an outage of its own.
        "prediction_log": plog.status() if (plog := dataplane.prediction_log) else {"status": "off"},
    }
    return json_response(body, 200 if ready else 503)
