"""Errors: every V1 error is core's ``{"detail": ...}``; under ``/v2`` the Open Inference Protocol's
``{"error": "..."}``. Responses are rendered with orjson, which refuses NaN, so an input never leaks back."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelberth_core.errors import ServiceError, install_error_handlers, validation_details

V2_PREFIX = "/v2"


class VersionNotFound(ServiceError):
    """404: the model has no such version or alias (the message names it; never a path)."""

    def __init__(self, detail: str) -> None:
        super().__init__(404, detail)


class VersionNotLoadable(ServiceError):
    """409: the version exists but failed a load check (the reason says which, without paths)."""

    def __init__(self, detail: str) -> None:
        super().__init__(409, detail)


class VersionCapReached(ServiceError):
    """503: every version slot of the model holds a version that may not be unloaded (served, shadowing)."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, detail)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised by orjson (numpy arrays allowed)."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_text(detail: Any) -> str:
    """An error's detail as one line: the V2 REST ``{"error": ...}`` text and the gRPC status message."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", ()))
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def error_response(
    request: Request, status_code: int, detail: Any, headers: dict[str, str] | None = None
) -> Response:
    """The error body for this request's protocol."""
    if request.url.path.startswith(V2_PREFIX):
        return json_response({"error": error_text(detail)}, status_code, headers)
    return json_response({"detail": detail}, status_code, headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(request, exc.status_code, exc.detail, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(request, exc.status_code, exc.detail, dict(exc.headers or {}) or None)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(request, 422, validation_details(exc.errors()))


def install_inference_error_handlers(app: FastAPI) -> None:
    """Core's handlers, with the three 4xx ones replaced by protocol-aware versions."""
    install_error_handlers(app)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
