"""Open Inference Protocol V2 over gRPC: ``inference.GRPCInferenceService`` as a thin codec.

Each RPC reads its message, checks the bearer token of the ``authorization`` metadata (as the REST side
does: one value, a valid token, the scope the call needs), and calls the same code as REST. Errors are the
REST ones with their gRPC codes (:data:`GRPC_CODES`): the same message, 400/422 -> INVALID_ARGUMENT,
401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED, 404 -> NOT_FOUND, 429 -> RESOURCE_EXHAUSTED (with
``retry-after`` in the trailers)...

Its messages (``oip/grpc_predict_v2_pb2``) register the proto package ``inference`` in protobuf's default
pool, as every OIP client's generated code does (tritonclient's, KServe's): one process can hold only one
of them. So this module is imported only when the gRPC listener is on, and tests drive it from another
process with tritonclient.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from modelberth_core.errors import ServiceError
from modelberth_core.logging import request_id_var
from modelberth_core.metrics import HttpMetrics, access_log
from modelberth_core.security import JwksKeySource, Principal, TokenError, TokenVerifier, bearer_token
from modelberth_inference import __version__
from modelberth_inference.errors import error_text
from modelberth_inference.oip import grpc_predict_v2_pb2 as pb
from modelberth_inference.routes.health import readiness_of
from modelberth_inference.settings import Settings

log = logging.getLogger("modelberth.inference.grpc")

_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE = _DESCRIPTOR.full_name
"""``inference.GRPCInferenceService``: the service name every OIP gRPC client calls."""
SERVER_NAME = "modelberth-inference"

GRPC_CODES: Mapping[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""An HTTP status as its gRPC code (the mapping of google.rpc.Code and grpc-gateway); others: INTERNAL."""
RETRY_AFTER = "retry-after"
"""Trailer carrying an error's ``Retry-After`` (429 backpressure, 503 not ready), in seconds."""

Req = TypeVar("Req", bound=Message)
Rpc = Callable[[Any, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[Message]]


class Servicer:
    """The RPCs, each ``async (request message, context) -> response message``; errors are raised as
    :class:`ServiceError` and turned into a gRPC status by :func:`_rpc`."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.settings: Settings = state.settings

    async def ServerLive(self, _: pb.ServerLiveRequest, __: Any) -> pb.ServerLiveResponse:
        """Alive (no token, as ``GET /v2/health/live``)."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, _: pb.ServerReadyRequest, __: Any) -> pb.ServerReadyResponse:
        """Every model loaded and the signing keys fetched (no token, as ``GET /v2/health/ready``)."""
        ready, _reason = readiness_of(self.state)
        return pb.ServerReadyResponse(ready=ready)

    async def ServerMetadata(self, _: pb.ServerMetadataRequest, __: Any) -> pb.ServerMetadataResponse:
        """Name, version, extensions (no token, as ``GET /v2``)."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

    async def ModelReady(self, _request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        """Whether the model (or one version of it) can infer now; scope ``models:read``."""
        await authorize(self.state, context, "models:read")
        raise ServiceError(501, "ModelReady is not available yet")

    async def ModelMetadata(
        self, _request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        """Inputs and outputs of the model; scope ``models:read``."""
        await authorize(self.state, context, "models:read")
        raise ServiceError(501, "ModelMetadata is not available yet")

    async def ModelInfer(self, _request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        """Predict; scope ``predict``."""
        await authorize(self.state, context, "predict")
        raise ServiceError(501, "ModelInfer is not available yet")

    async def RepositoryIndex(
        self, _request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        """Every model of the store and its state; scope ``models:read``."""
        await authorize(self.state, context, "models:read")
        raise ServiceError(501, "RepositoryIndex is not available yet")

    async def RepositoryModelLoad(
        self, _request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        """Serve a model again; scope ``models:admin``."""
        await authorize(self.state, context, "models:admin")
        raise ServiceError(501, "RepositoryModelLoad is not available yet")

    async def RepositoryModelUnload(
        self, _request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        """Free a model; scope ``models:admin``."""
        await authorize(self.state, context, "models:admin")
        raise ServiceError(501, "RepositoryModelUnload is not available yet")


async def authorize(state: Any, context: Any, scope: str) -> Principal:
    """The caller of this RPC, from the one ``authorization`` metadata value (``Bearer <token>``), with
    ``scope``; the REST side's checks and messages (see ``deps.authorize``), as gRPC codes."""
    verifier: TokenVerifier = state.verifier
    values = [value for key, value in context.invocation_metadata() or () if key == "authorization"]
    try:
        principal = await verifier.verify(bearer_token(values))  # two values: INVALID_ARGUMENT
    except TokenError as exc:
        keys = verifier.keys
        if exc.status_code == 401 and isinstance(keys, JwksKeySource) and not keys.loaded:
            raise ServiceError(
                503, "token signing keys are not available yet", {"Retry-After": "5"}
            ) from None
        raise ServiceError(exc.status_code, exc.description) from None
    if not principal.has_scope(scope):
        raise ServiceError(403, f"insufficient_scope: this call needs the {scope} scope")
    return principal


def handler(state: Any) -> grpc.GenericRpcHandler:
    """Every RPC of :data:`SERVICE`, built from the service's descriptor (one source for names and types)."""
    servicer = Servicer(state)
    metrics: HttpMetrics = state.http_metrics
    methods: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}
    for method in _DESCRIPTOR.methods:
        request_type: type[Message] = getattr(pb, method.input_type.name)
        methods[method.name] = grpc.unary_unary_rpc_method_handler(
            _rpc(f"/{SERVICE}/{method.name}", request_type, getattr(servicer, method.name), servicer, metrics)
        )
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def _rpc(
    route: str, request_type: type[Message], call: Rpc, servicer: Servicer, metrics: HttpMetrics
) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]:
    """One RPC on raw bytes: parse (a malformed message is INVALID_ARGUMENT, not gRPC's INTERNAL), call
    within the request timeout, map errors, and count it in the service's request metrics under ``route``
    (the gRPC method path, so ``route=~"/inference.GRPCInferenceService/.*"`` selects gRPC)."""
    timeout = servicer.settings.request_timeout_seconds
    name = request_type.DESCRIPTOR.full_name

    async def rpc(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        token = request_id_var.set(f"{random.getrandbits(128):032x}")
        start = time.perf_counter()
        status, failure = 200, None
        metrics.in_flight.inc()
        try:
            try:
                request = request_type.FromString(raw)
            except (DecodeError, RuntimeWarning):
                raise ServiceError(400, f"the request is not a valid {name} message") from None
            async with asyncio.timeout(timeout):
                response = await call(request, context)
            return response.SerializeToString()
        except ServiceError as exc:
            status, failure = exc.status_code, exc
        except TimeoutError:
            status, failure = 504, ServiceError(504, f"request timed out after {timeout:g} s")
        except Exception:  # a bug must be one INTERNAL error, never a dropped connection
            log.exception("unhandled error", extra={"route": route})
            status, failure = 500, ServiceError(500, "internal error")
        finally:
            elapsed = time.perf_counter() - start
            metrics.in_flight.dec()
            metrics.requests.labels(route, "POST", f"{status // 100}xx").inc()
            metrics.duration.labels(route, "POST").observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": "POST",
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1e3, 2),
                },
            )
            request_id_var.reset(token)
        await _abort(context, failure)
        raise AssertionError("unreachable: abort raises")

    return rpc


async def _abort(context: grpc.aio.ServicerContext[bytes, bytes], error: ServiceError) -> None:
    code = GRPC_CODES.get(error.status_code, grpc.StatusCode.INTERNAL)
    retry = (error.headers or {}).get("Retry-After")
    trailers = ((RETRY_AFTER, retry),) if retry else ()
    await context.abort(code, error_text(error.detail), trailers)
