"""Every error the data plane raises, one class per outcome, each transport mapping it once.

A class says what went wrong in protocol-neutral terms and carries the two mappings the transports need:
``status_code`` (REST: V1 renders ``{"detail": ...}``, V2 ``{"error": "..."}``) and ``grpc_code`` (the
name of a ``grpc.StatusCode`` member, so this module needs no gRPC import). ``headers`` are HTTP headers a
REST answer adds (``Retry-After``, ``WWW-Authenticate``); a gRPC transport may send them as trailing
metadata. No message repeats a value a client sent (a short printable name at most).

They subclass core's :class:`~modelberth_core.errors.ServiceError`, so the REST error handlers render them
like every other service's errors.
"""

from __future__ import annotations

from typing import Any, ClassVar

from modelberth_core.errors import ServiceError

RETRY_AFTER_SECONDS = 1
"""What ``Retry-After`` says when a model's queue is full: by then a batch or two has been answered."""


class InferenceError(ServiceError):
    """Base class: an outcome a client is told about (never a 5xx other than 503/504)."""

    status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"

    def __init__(self, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status, detail, headers)


class BadRequest(InferenceError):
    """400: the request is not what the protocol expects (not JSON, a malformed tensor, a bad header)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(InferenceError):
    """401: no valid bearer token."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class PermissionDenied(InferenceError):
    """403: the token lacks the scope this call needs."""

    status = 403
    grpc_code = "PERMISSION_DENIED"


class ModelNotFound(InferenceError):
    """404: no such model."""

    status = 404
    grpc_code = "NOT_FOUND"


class VersionNotFound(ModelNotFound):
    """404: the model has no such version or alias (the message names it; never a path)."""


class VersionNotLoadable(InferenceError):
    """409: the version exists but failed a load check (the reason says which, without paths)."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"


class PayloadTooLarge(InferenceError):
    """413: the body is over ``max_body_bytes``."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(InferenceError):
    """415: a declared body type this endpoint does not read."""

    status = 415
    grpc_code = "INVALID_ARGUMENT"


class InvalidInput(InferenceError):
    """422: values that do not match the model card (``detail`` is V1's list of ``{loc, msg, type}`` or a
    sentence), too many rows, or rows the model cannot compute with."""

    status = 422
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, detail: Any, *, text: str | None = None) -> None:
        super().__init__(detail)
        self.text = text if text is not None else detail if isinstance(detail, str) else None
        """The error as one line (V2's ``{"error": ...}``, gRPC's message), when it is worded apart."""


class Overloaded(InferenceError):
    """429: the model's queue is full (``INFERENCE_MAX_QUEUED``); retry after ``Retry-After`` seconds."""

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, detail: Any) -> None:
        super().__init__(detail, {"Retry-After": str(RETRY_AFTER_SECONDS)})


class Unavailable(InferenceError):
    """503: not ready yet (keys, a model loading) or unloaded; ``Retry-After`` when it will pass by itself."""

    status = 503
    grpc_code = "UNAVAILABLE"


class VersionCapReached(Unavailable):
    """503: every version slot of the model holds a version that may not be unloaded (served, shadowing)."""


class DeadlineExceeded(InferenceError):
    """504: the request took longer than ``request_timeout_seconds``."""

    status = 504
    grpc_code = "DEADLINE_EXCEEDED"


GRPC_CODES: dict[int, str] = {
    cls.status: cls.grpc_code
    for cls in (
        BadRequest,
        Unauthenticated,
        PermissionDenied,
        ModelNotFound,
        VersionNotLoadable,
        PayloadTooLarge,
        InvalidInput,
        Overloaded,
        Unavailable,
        DeadlineExceeded,
    )
}
"""HTTP status -> gRPC status name, for a :class:`ServiceError` that is not an :class:`InferenceError`."""


def grpc_code(error: ServiceError) -> str:
    """The gRPC status name (``grpc.StatusCode[name]``) of any service error."""
    if isinstance(error, InferenceError):
        return error.grpc_code
    return GRPC_CODES.get(error.status_code, "UNKNOWN" if error.status_code < 500 else "INTERNAL")


def error_text(detail: Any) -> str:
    """A detail as one line (V1's list of ``{loc, msg}`` joined), for V2's ``{"error": ...}`` and gRPC."""
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


def one_line(error: ServiceError) -> str:
    """The error as V2 REST words it (``{"error": ...}``) and gRPC's status message: the same text."""
    if isinstance(error, InvalidInput) and error.text is not None:
        return error.text
    return error_text(error.detail)
