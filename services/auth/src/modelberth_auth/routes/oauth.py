"""OAuth endpoints: ``/oauth/token`` (RFC 6749), ``/oauth/introspect`` (RFC 7662), ``/oauth/revoke``
(RFC 7009). Forms are parsed here, not by FastAPI, so every error has the RFC 6749 §5.2 shape."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modelberth_auth.deps import AddressDep, AuthorityDep, MetricsDep, VerifierDep
from modelberth_auth.errors import NO_STORE, OAuthError
from modelberth_auth.oauth import ClientCredentials, LoginLocked, one_authorization, parse_basic
from modelberth_auth.schemas import (
    MAX_FIELDS,
    MAX_NAME_CHARS,
    MAX_VALUE_CHARS,
    OAUTH_ERRORS,
    OPTIONAL_CLIENT,
    REQUIRED_CLIENT,
    TOKEN_ERRORS,
    TOKEN_FORM,
    TOKEN_PARAM_FORM,
    IntrospectionResponse,
    TokenResponse,
)
from modelberth_auth.state import StateUnavailable
from modelberth_core.security import TokenError

router = APIRouter(prefix="/oauth", tags=["oauth"])

FORM_TYPE = "application/x-www-form-urlencoded"
KNOWN_FIELDS = frozenset(
    {"grant_type", "client_id", "client_secret", "scope", "refresh_token", "token", "token_type_hint"}
)


async def read_form(request: Request) -> dict[str, str]:
    """The form parameters; ``invalid_request`` for a wrong content type, bad encoding or a repeated one."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_TYPE:
        raise OAuthError("invalid_request", f"content type must be {FORM_TYPE}")
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "malformed form body") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if len(value) > MAX_VALUE_CHARS or len(key) > MAX_NAME_CHARS:
            raise OAuthError("invalid_request", "a parameter is too long")
        if key in form:
            name = key if key in KNOWN_FIELDS else "a parameter"
            raise OAuthError("invalid_request", f"{name} is repeated")
        form[key] = value
    # RFC 6749 §3.2: parameters sent without a value are treated as if omitted.
    return {k: v for k, v in form.items() if v != ""}


def client_credentials(request: Request, form: dict[str, str]) -> ClientCredentials | None:
    """The client's credentials from HTTP Basic or the body (never both), or None when none are sent."""
    authorization = one_authorization(request.headers.getlist("authorization"))
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    if authorization is not None:
        creds = parse_basic(authorization)
        if body_secret is not None or (body_id is not None and body_id != creds.client_id):
            raise OAuthError("invalid_request", "use exactly one client authentication method")
        return creds
    if body_id is None and body_secret is None:
        return None
    if body_id is None:
        raise OAuthError("invalid_request", "client_secret sent without client_id")
    return ClientCredentials(body_id, body_secret)


def locked_error(exc: LoginLocked) -> OAuthError:
    """429 for a client or address with too many failures."""
    return OAuthError(
        "temporarily_unavailable",
        "too many failed authentication attempts; try again later",
        429,
        {"Retry-After": str(exc.retry_after)},
    )


@router.post(
    "/token",
    response_model=TokenResponse,
    responses=TOKEN_ERRORS,
    openapi_extra={**TOKEN_FORM, **OPTIONAL_CLIENT},
)
async def token(
    request: Request, authority: AuthorityDep, metrics: MetricsDep, address: AddressDep
) -> JSONResponse:
    """Issue an access token: ``client_credentials`` (clients) or ``refresh_token`` (rotates it)."""
    grant = "other"
    try:
        form = await read_form(request)
        requested = form.get("grant_type")
        if requested is None:
            raise OAuthError("invalid_request", "missing parameter: grant_type")
        if requested not in ("client_credentials", "refresh_token"):
            raise OAuthError(
                "unsupported_grant_type", "supported grant types: client_credentials, refresh_token"
            )
        grant = requested
        creds = client_credentials(request, form)
        if grant == "client_credentials":
            result = await authority.client_credentials(creds, form.get("scope"), address)
        else:
            result = await authority.refresh_token(
                creds, form.get("refresh_token"), form.get("scope"), address
            )
    except OAuthError as exc:
        metrics.token_request(grant, exc.error)
        raise
    except LoginLocked as exc:
        metrics.token_request(grant, "rate_limited")
        raise locked_error(exc) from None
    except StateUnavailable:
        metrics.token_request(grant, "temporarily_unavailable")
        raise  # 503 + Retry-After (errors.py)
    metrics.token_request(grant, "success")
    return JSONResponse(result.as_json(), headers=NO_STORE)


@router.post(
    "/introspect",
    response_model=IntrospectionResponse,
    responses=OAUTH_ERRORS,
    openapi_extra={**TOKEN_PARAM_FORM, **REQUIRED_CLIENT},
)
async def introspect(
    request: Request, authority: AuthorityDep, verifier: VerifierDep, address: AddressDep
) -> JSONResponse:
    """RFC 7662: is this access or refresh token active, and what does it grant? Callers authenticate as a
    client. A refresh token is active while it is its session's newest, unrevoked and unexpired token."""
    form = await read_form(request)
    creds = client_credentials(request, form)
    try:
        await authority.authenticate_client(creds, address)
    except LoginLocked as exc:
        raise locked_error(exc) from None
    value = form.get("token")
    if value is None:
        raise OAuthError("invalid_request", "missing parameter: token")
    try:
        principal = await verifier.verify(value)
    except TokenError:
        refresh = await authority.introspect_refresh(value)  # the shared store, if any (503 when down)
        return JSONResponse(refresh or {"active": False}, headers=NO_STORE)
    claims = principal.claims
    body: dict[str, Any] = {"active": True, "token_type": "Bearer", "token_use": "access_token"}
    for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"):
        if name in claims:
            body[name] = claims[name]
    if "client_id" not in claims:
        body["username"] = principal.subject
    return JSONResponse(body, headers=NO_STORE)


@router.post("/revoke", responses=OAUTH_ERRORS, openapi_extra={**TOKEN_PARAM_FORM, **OPTIONAL_CLIENT})
async def revoke(
    request: Request, authority: AuthorityDep, verifier: VerifierDep, address: AddressDep
) -> JSONResponse:
    """RFC 7009: revoke a refresh token (and every token rotated from the same login).

    The holder of a refresh token may revoke it without client credentials (it was issued to the
    first-party public client); credentials, if sent, must be valid. Unknown tokens still get 200.
    """
    form = await read_form(request)
    creds = client_credentials(request, form)
    if creds is not None:
        try:
            await authority.authenticate_client(creds, address)
        except LoginLocked as exc:
            raise locked_error(exc) from None
    value = form.get("token")
    if value is None:
        raise OAuthError("invalid_request", "missing parameter: token")
    if await authority.revoke_refresh(value):
        return JSONResponse({}, headers=NO_STORE)
    try:
        await verifier.verify(value)
    except TokenError:
        return JSONResponse({}, headers=NO_STORE)
    raise OAuthError(
        "unsupported_token_type",
        "access tokens are self-contained JWTs and expire on their own; revoke the refresh token",
    )
