"""Errors of the auth service.

OAuth endpoints (``/oauth/*``) answer errors exactly as RFC 6749 §5.2 says: ``{"error": code,
"error_description": text}`` with ``Cache-Control: no-store``. Everything else uses core's
``{"detail": ...}``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelberth_auth.keys import KeysetError
from modelberth_auth.state import StateUnavailable
from modelberth_core.errors import install_error_handlers, validation_details

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""RFC 6749 §5.1: token responses (and their errors) must not be cached."""
OAUTH_PREFIX = "/oauth/"
BASIC_CHALLENGE = 'Basic realm="modelberth", charset="UTF-8"'


class OAuthError(Exception):
    """An RFC 6749 §5.2 error (also used by RFC 7009/7662 endpoints)."""

    def __init__(
        self,
        error: str,
        description: str,
        status_code: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status_code = status_code
        self.headers = headers or {}


def invalid_client(description: str) -> OAuthError:
    """``invalid_client``: always 401 with a Basic challenge, however the client authenticated.

    RFC 6749 §5.2 requires 401 after HTTP Basic and allows it for body credentials; one status for every
    failed client authentication is what Keycloak and Hydra answer too, and what RFC 7235 clients expect.
    """
    return OAuthError("invalid_client", description, 401, {"WWW-Authenticate": BASIC_CHALLENGE})


def oauth_error_response(
    error: str, description: str, status_code: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON response for an OAuth error."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status_code,
        headers={**NO_STORE, **(headers or {})},
    )


async def _oauth_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OAuthError)
    return oauth_error_response(exc.error, exc.description, exc.status_code, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith(OAUTH_PREFIX):
        return oauth_error_response(
            "invalid_request", str(exc.detail), exc.status_code, dict(exc.headers or {})
        )
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if request.url.path.startswith(OAUTH_PREFIX):
        return oauth_error_response("invalid_request", "malformed request", 400)
    return JSONResponse({"detail": validation_details(exc.errors())}, status_code=422)


async def _keys_missing(request: Request, _: Exception) -> JSONResponse:
    # Not ready (no usable keyset yet): nothing can be signed, so say "try later" rather than fail.
    text = "signing keys are not loaded yet"
    if request.url.path.startswith(OAUTH_PREFIX):
        return oauth_error_response("temporarily_unavailable", text, 503, {"Retry-After": "5"})
    return JSONResponse({"detail": text}, status_code=503, headers={"Retry-After": "5"})


async def _state_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The shared store is down or slow (issue 18): nothing was decided, the client may simply retry.
    assert isinstance(exc, StateUnavailable)
    text = "the session store is unavailable; try again later"
    headers = {"Retry-After": str(exc.retry_after), **NO_STORE}
    if request.url.path.startswith(OAUTH_PREFIX):
        return oauth_error_response("temporarily_unavailable", text, 503, headers)
    return JSONResponse({"detail": text}, status_code=503, headers=headers)


def install_auth_error_handlers(app: FastAPI) -> None:
    """Core's handlers, plus RFC-shaped errors on ``/oauth/*``."""
    install_error_handlers(app)
    app.add_exception_handler(KeysetError, _keys_missing)
    app.add_exception_handler(StateUnavailable, _state_unavailable)
    app.add_exception_handler(OAuthError, _oauth_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
