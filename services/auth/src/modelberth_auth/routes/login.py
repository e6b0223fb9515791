"""``POST /auth/login``: first-party login for people (the UI). No OAuth password grant (RFC 9700 §2.4).

Failed logins count per (username, the person's address) and per address (``throttle.py``). The address is
the TCP peer as uvicorn resolved it through trusted proxies only, or, when the request carries the HTTP Basic
credentials of a client marked ``forwards_user_address`` (the UI), the browser's address it names in
``X-Modelberth-User-Address``. Without such credentials that header is ignored, wherever the request comes
from; with wrong ones the login is refused (401) before the password is looked at.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modelberth_auth.deps import AddressDep, AuthorityDep, MetricsDep
from modelberth_auth.errors import BASIC_CHALLENGE, NO_STORE, OAuthError
from modelberth_auth.oauth import (
    USER_ADDRESS_HEADER,
    Authority,
    LoginFailed,
    LoginLocked,
    one_authorization,
    parse_basic,
)
from modelberth_auth.schemas import FORWARDER, LOGIN_ERRORS, LoginRequest, TokenResponse
from modelberth_auth.state import StateUnavailable
from modelberth_core.errors import ServiceError

router = APIRouter(prefix="/auth", tags=["login"])

LOGIN_FAILED = "invalid username or password"
"""The one answer for an unknown user and a wrong password."""
FORWARDER_FAILED = "invalid client credentials"


def locked(exc: LoginLocked) -> ServiceError:
    """429 with Retry-After, in the ``{"detail"}`` shape of this route."""
    return ServiceError(
        429, "too many failed logins; try again later", {"Retry-After": str(exc.retry_after), **NO_STORE}
    )


async def user_address(request: Request, authority: Authority, peer: str) -> str:
    """The address this login counts against: ``peer``, or the one a trusted forwarder vouches for."""
    try:
        authorization = one_authorization(request.headers.getlist("authorization"))
        if authorization is None:
            return peer  # X-Modelberth-User-Address from an unauthenticated caller changes nothing
        claimed = request.headers.getlist(USER_ADDRESS_HEADER)
        if len(claimed) > 1:
            raise OAuthError("invalid_request", f"more than one {USER_ADDRESS_HEADER} header")
        creds = parse_basic(authorization)
        return await authority.forwarded_address(creds, peer, claimed[0] if claimed else None)
    except OAuthError as exc:
        if exc.error == "invalid_client":
            challenge = {"WWW-Authenticate": BASIC_CHALLENGE, **NO_STORE}
            raise ServiceError(401, FORWARDER_FAILED, challenge) from None
        raise ServiceError(exc.status_code, exc.description, dict(NO_STORE)) from None


@router.post(
    "/login",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    responses=LOGIN_ERRORS,
    openapi_extra=FORWARDER,
)
async def login(
    request: Request, body: LoginRequest, authority: AuthorityDep, metrics: MetricsDep, peer: AddressDep
) -> JSONResponse:
    """Exchange a username and password for an access token and a refresh token.

    A trusted forwarder (the UI) authenticates with HTTP Basic and names the person's address in
    ``X-Modelberth-User-Address``; failed logins then count against that address instead of its own.
    """
    try:
        address = await user_address(request, authority, peer)
        result = await authority.login(body.username, body.password, address)
    except LoginLocked as exc:
        metrics.token_request("login", "rate_limited")
        raise locked(exc) from None
    except StateUnavailable:
        metrics.token_request("login", "temporarily_unavailable")
        raise  # 503 + Retry-After (errors.py)
    except LoginFailed:
        metrics.token_request("login", "invalid_grant")
        raise ServiceError(401, LOGIN_FAILED, dict(NO_STORE)) from None
    except ServiceError as exc:
        outcome = {401: "invalid_client", 403: "unauthorized_client"}.get(exc.status_code, "invalid_request")
        metrics.token_request("login", outcome)
        raise
    metrics.token_request("login", "success")
    return JSONResponse(result.as_json(), headers=NO_STORE)
