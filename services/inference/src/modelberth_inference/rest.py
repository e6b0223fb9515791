"""REST plumbing every route module shares: the data plane and the caller as dependencies, bounded body
reading, media types, JSON answers, and how errors look (V1 ``{"detail": ...}``, under ``/v2`` the Open
Inference Protocol's ``{"error": "..."}``).

Hot routes (predict, infer) use :class:`LeanRoute`, which skips FastAPI's per-request dependency solving
(it costs more than a micro-batched prediction) and calls ``endpoint(request, **path_params)``; they then
read :func:`plane` and :func:`caller` themselves, the same functions the other routes get through
``Depends``. Responses are rendered with orjson, which refuses NaN, so an input never leaks back.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from modelberth_core.errors import ServiceError, install_error_handlers, validation_details
from modelberth_core.security import Principal
from modelberth_inference.dataplane import DataPlane
from modelberth_inference.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    error_text,
    one_line,
)
from modelberth_inference.registry import ModelRegistry

V2_PREFIX = "/v2"


# --- the data plane and the caller --------------------------------------------------------------------------


def plane(request: Request) -> DataPlane:
    """The app's data plane."""
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


def registry(request: Request) -> ModelRegistry:
    """The app's model registry (what is served, held, listed)."""
    return plane(request).registry


async def caller(request: Request) -> Principal:
    """The verified principal of the request's bearer token (cached after its first check): 401/400/503."""
    return await plane(request).authenticate(request.headers.getlist("authorization"))


def _require(scope: str) -> Any:
    async def dependency(request: Request) -> Principal:
        principal = await caller(request)
        DataPlane.authorise(principal, scope)
        return principal

    return dependency


PlaneDep = Annotated[DataPlane, Depends(plane)]
RegistryDep = Annotated[ModelRegistry, Depends(registry)]
CallerDep = Annotated[Principal, Depends(caller)]
"""The caller, scope not checked yet: the data plane checks the scope of each call."""
ReadPrincipal = Annotated[Principal, Depends(_require("models:read"))]
AdminPrincipal = Annotated[Principal, Depends(_require("models:admin"))]


class LeanRoute(APIRoute):
    """Calls ``endpoint(request, **path_params)`` directly; the signature is only used for /docs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler Starlette calls with the request."""
        endpoint: Callable[..., Coroutine[Any, Any, Response]] = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handler


# --- bodies -------------------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes (never buffered past it)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BadRequest("invalid Content-Length header") from None
        if declared > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def media_type(request: Request) -> str | None:
    """The request's declared media type (``Content-Type`` without parameters, lowercase), or None."""
    value = request.headers.get("content-type")
    if not value:
        return None
    return value.partition(";")[0].strip().lower() or None


def is_json_type(media: str) -> bool:
    """``application/json`` or a structured ``+json`` type (RFC 6839), e.g. ``application/vnd.x+json``."""
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def require_json(request: Request, *, also: frozenset[str] = frozenset()) -> None:
    """415 when the request declares a media type that is neither JSON nor one of ``also``.

    A request without ``Content-Type`` is read as JSON: RFC 9110 §8.3 lets a recipient examine the data
    when no type is declared, and minimal clients (``requests.post(data=...)``, tritonclient) send none.
    A declared ``text/plain`` or form type, though, says the body is something else (``curl -d`` sends a
    form type by default), and answering it as JSON would hide the client's mistake (issue 13).
    """
    media = media_type(request)
    if media is None or is_json_type(media) or media in also:
        return
    accepted = ", ".join(sorted({"application/json", *also}))
    raise UnsupportedMediaType(
        f"unsupported Content-Type: this endpoint takes a JSON body (send {accepted}, or no Content-Type)",
        {"Accept": accepted},
    )


# --- answers and errors -------------------------------------------------------------------------------------


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised by orjson (numpy arrays allowed)."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_response(
    request: Request, status_code: int, detail: Any, headers: dict[str, str] | None = None
) -> Response:
    """The error body for this request's protocol."""
    if request.url.path.startswith(V2_PREFIX):
        return json_response({"error": error_text(detail)}, status_code, headers)
    return json_response({"detail": detail}, status_code, headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    detail = one_line(exc) if request.url.path.startswith(V2_PREFIX) else exc.detail
    return error_response(request, exc.status_code, detail, exc.headers)


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
