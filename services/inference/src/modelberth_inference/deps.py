"""Request-scoped helpers: settings, the model registry, token checks and bounded body reading."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from modelberth_core.errors import ServiceError
from modelberth_core.security import (
    JwksKeySource,
    Principal,
    TokenError,
    TokenVerifier,
    bearer_token,
    www_authenticate,
)
from modelberth_inference.registry import ModelRegistry, Served
from modelberth_inference.settings import Settings
from modelberth_inference.validation import BodyError, parse_json


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> ModelRegistry:
    """The app's model registry."""
    registry: ModelRegistry = request.app.state.registry
    return registry


async def authorize(request: Request, scope: str) -> Principal:
    """Verify the bearer token (cached after its first check) and require ``scope``: 401/403/503 otherwise."""
    verifier: TokenVerifier = request.app.state.verifier
    try:
        token = bearer_token(request.headers.getlist("authorization"))  # two headers: 400
        principal = await verifier.verify(token)
    except TokenError as exc:
        keys = verifier.keys
        if exc.status_code == 401 and isinstance(keys, JwksKeySource) and not keys.loaded:
            raise ServiceError(
                503, "token signing keys are not available yet", {"Retry-After": "5"}
            ) from None
        raise ServiceError(
            exc.status_code,
            exc.description,
            {"WWW-Authenticate": www_authenticate(exc.error, exc.description)},
        ) from None
    if not principal.has_scope(scope):
        raise ServiceError(
            403,
            f"insufficient_scope: this call needs the {scope} scope",
            {"WWW-Authenticate": www_authenticate("insufficient_scope", scope=scope)},
        )
    return principal


def _require(scope: str) -> Any:
    async def dependency(request: Request) -> Principal:
        return await authorize(request, scope)

    return dependency


def served_model(request: Request, name: str) -> Served:
    """The model serving under ``name``, or 404 (503 while it is configured but not loaded yet)."""
    registry = get_registry(request)
    served = registry.get(name)
    if served is None:
        if name in registry.configured():
            raise ServiceError(503, f"model {name!r} is not loaded yet", {"Retry-After": "5"})
        raise ServiceError(404, f"model {name!r} not found")
    return served


async def served_version(request: Request, name: str, version: str | None) -> Served:
    """The served version of ``name`` (``version`` None), or the version that ``version`` (a version id or an
    alias) names, loaded on demand: 404 unknown, 409 not loadable, 503 not loaded yet or no room, 504 when the
    load takes longer than the request may."""
    served = served_model(request, name)
    if version is None:
        return served
    timeout = get_settings(request).request_timeout_seconds
    try:
        async with asyncio.timeout(timeout):  # a slow load answers 504 in time; the load goes on
            return await get_registry(request).version(served, version)
    except TimeoutError:
        raise ServiceError(504, f"request timed out after {timeout:g} s") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes (never buffered past it)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ServiceError(400, "invalid Content-Length header") from None
        if declared > limit:
            raise ServiceError(413, f"request body exceeds {limit} bytes")
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
            raise ServiceError(413, f"request body exceeds {limit} bytes")
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
    raise ServiceError(
        415,
        f"unsupported Content-Type: this endpoint takes a JSON body (send {accepted}, or no Content-Type)",
        {"Accept": accepted},
    )


def parse_body(body: bytes) -> Any:
    """A body parsed as JSON (400 if it is not JSON)."""
    try:
        return parse_json(body)
    except BodyError as exc:
        raise ServiceError(exc.status_code, exc.message) from None


async def read_json(request: Request, limit: int) -> Any:
    """The body parsed as JSON (400 if it is not JSON, 413 if too large)."""
    return parse_body(await read_body(request, limit))


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
PredictPrincipal = Annotated[Principal, Depends(_require("predict"))]
ReadPrincipal = Annotated[Principal, Depends(_require("models:read"))]
AdminPrincipal = Annotated[Principal, Depends(_require("models:admin"))]
