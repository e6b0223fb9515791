"""``POST /auth/login``: first-party login for people (the UI). No OAuth password grant (RFC 9700 §2.4)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from modelberth_auth.deps import AddressDep, AuthorityDep, MetricsDep
from modelberth_auth.errors import NO_STORE
from modelberth_auth.oauth import LoginFailed, LoginLocked
from modelberth_auth.schemas import ErrorResponse, LoginRequest, TokenResponse
from modelberth_core.errors import ServiceError

router = APIRouter(prefix="/auth", tags=["login"])

LOGIN_FAILED = "invalid username or password"
"""The one answer for an unknown user and a wrong password."""


@router.post(
    "/login",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    responses={
        401: {"model": ErrorResponse, "description": LOGIN_FAILED},
        429: {"model": ErrorResponse, "description": "too many failed logins (see Retry-After)"},
    },
)
async def login(
    body: LoginRequest, authority: AuthorityDep, metrics: MetricsDep, address: AddressDep
) -> JSONResponse:
    """Exchange a username and password for an access token and a refresh token."""
    try:
        result = await run_in_threadpool(authority.login, body.username, body.password, address)
    except LoginLocked as exc:
        metrics.token_request("login", "rate_limited")
        raise ServiceError(
            429, "too many failed logins; try again later", {"Retry-After": str(exc.retry_after), **NO_STORE}
        ) from None
    except LoginFailed:
        metrics.token_request("login", "invalid_grant")
        raise ServiceError(401, LOGIN_FAILED, dict(NO_STORE)) from None
    metrics.token_request("login", "success")
    return JSONResponse(result.as_json(), headers=NO_STORE)
