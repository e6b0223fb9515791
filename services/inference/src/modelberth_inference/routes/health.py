"""Probes: ``/healthz`` (alive) and ``/readyz`` (every configured model loaded and the JWKS fetched)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from modelberth_core.security import JwksKeySource
from modelberth_inference.deps import get_registry
from modelberth_inference.errors import json_response
from modelberth_inference.registry import ModelRegistry

router = APIRouter(tags=["probes"])


def readiness(request: Request) -> tuple[bool, str]:
    """(ready, reason): models loaded and verification keys available."""
    return readiness_of(request.app.state)


def readiness_of(state: Any) -> tuple[bool, str]:
    """:func:`readiness` from the app's state (the gRPC health service asks it outside any HTTP request)."""
    registry: ModelRegistry = state.registry
    if not registry.ready:
        return False, registry.not_ready_reason()
    keys = state.verifier.keys
    if isinstance(keys, JwksKeySource) and not keys.loaded:
        return False, "token signing keys (JWKS) not fetched yet"
    return True, "ready"


@router.get("/healthz")
async def healthz() -> Response:
    """The process is alive."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    responses={503: {"description": "Not ready: the body says why (same shape as the 200's)."}},
)
async def readyz(request: Request) -> Response:
    """200 once every configured model is loaded and the JWKS has been fetched, else 503."""
    ready, reason = readiness(request)
    registry = get_registry(request)
    body = {
        "status": "ready" if ready else "not ready",
        "reason": reason,
        "models": {name: served.model.version for name, served in sorted(registry.models.items())},
        # A newer version that failed to load leaves the old one serving (still ready): say which and why.
        "load_failures": registry.load_failures(),
        # A failing prediction log does not make the service unready: predictions are still answered, and
        # taking every replica out of the Service over an audit log would be an outage of its own.
        "prediction_log": plog.status() if (plog := request.app.state.prediction_log) else {"status": "off"},
    }
    return json_response(body, 200 if ready else 503)
