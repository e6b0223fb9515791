"""Probes: ``/healthz`` (alive) and ``/readyz`` (keyset, users file and, if configured, the shared store)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from modelberth_auth.schemas import ErrorResponse

router = APIRouter(tags=["probes"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {
            "model": ErrorResponse,
            "description": "keyset or users file not loaded yet, or the shared state store unavailable",
        }
    },
)
async def readyz(
    request: Request,
    exclude: Annotated[
        list[Literal["state"]],
        Query(description="checks to leave out, as Kubernetes' own /readyz?exclude= does"),
    ] = [],  # noqa: B006 - FastAPI copies defaults per request
) -> JSONResponse:
    """Ready once the signing keyset and the users file are loaded (retried on each probe until then)
    and the shared state store (``AUTH_STATE_URL``) accepts a write.

    ``?exclude=state`` leaves the store out: the chart's readiness probe uses it, so that a store outage,
    which every replica shares, does not take JWKS and client-credentials grants out of the Service with
    it; those keep working while login and refresh answer 503 with ``Retry-After``.
    """
    state = request.app.state
    problems = await state.startup.problems(store="state" not in exclude)
    if problems:
        return JSONResponse({"detail": "not ready: " + "; ".join(problems)}, status_code=503)
    body: dict[str, object] = {"status": "ready", "keys": state.keys.count}
    body["state"] = "shared" if state.state_store is not None else "in-process"
    return JSONResponse(body)
