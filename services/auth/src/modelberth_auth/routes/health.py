"""Probes: ``/healthz`` (alive) and ``/readyz`` (keyset and users file loaded)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modelberth_auth.schemas import ErrorResponse

router = APIRouter(tags=["probes"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz", responses={503: {"model": ErrorResponse, "description": "keyset or users file not loaded yet"}}
)
def readyz(request: Request) -> JSONResponse:
    """Ready once the signing keyset and the users file are loaded (retried on each probe until then)."""
    state = request.app.state
    problems = state.startup.ensure_loaded()
    if problems:
        return JSONResponse({"detail": "not ready: " + "; ".join(problems)}, status_code=503)
    return JSONResponse({"status": "ready", "keys": state.keys.count})
