"""Open Inference Protocol V2 over gRPC: ``inference.GRPCInferenceService`` as a thin codec.

Each RPC reads its message, checks the bearer token of the ``authorization`` metadata with the data plane
(REST's rules: one value, a valid token, the scope the call needs), decodes the protobuf tensors into the
data plane's :class:`~modelberth_inference.types.InferRequest` and encodes its answer. Nothing is validated
or predicted here: errors are the data plane's, with their gRPC code (``grpc_code``) and REST's V2 message,
and ``retry-after`` in the trailers when REST would send ``Retry-After`` (429 backpressure, 503).

Its messages (``oip/grpc_predict_v2_pb2``) register the proto package ``inference`` in protobuf's default
pool, as every OIP client's generated code does (tritonclient's, KServe's): one process can hold only one
of them. So this module is imported only when the gRPC listener is on, and tests drive it from another
process with tritonclient.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from modelberth_core.errors import ServiceError
from modelberth_core.logging import log_request, request_id_var
from modelberth_core.metrics import HttpMetrics
from modelberth_core.security import Principal
from modelberth_inference.dataplane import DataPlane
from modelberth_inference.errors import BadRequest, grpc_code, one_line
from modelberth_inference.oip import grpc_predict_v2_pb2 as pb
from modelberth_inference.raw_tensors import DATATYPE_LIST, raw_data
from modelberth_inference.types import MAX_ID_LENGTH, InferRequest, InferResponse, Tensor
from modelberth_inference.validation import input_label

log = logging.getLogger("modelberth.inference.grpc")

_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE = _DESCRIPTOR.full_name
"""``inference.GRPCInferenceService``: the service name every OIP gRPC client calls."""
RETRY_AFTER = "retry-after"
"""Trailer carrying an error's ``Retry-After`` (429 backpressure, 503 not ready), in seconds."""

Context = grpc.aio.ServicerContext[bytes, bytes]
Rpc = Callable[[Any, Context], Awaitable[Message]]


class Servicer:
    """The RPCs, each ``async (request message, context) -> response message``; errors are raised as the
    data plane's and turned into a gRPC status by :func:`_rpc`."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def _caller(self, context: Context) -> Principal:
        """The principal of the one ``authorization`` metadata value (two: INVALID_ARGUMENT, REST's 400)."""
        values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
        return await self.plane.authenticate([v if isinstance(v, str) else "" for v in values])

    async def ServerLive(self, _: pb.ServerLiveRequest, __: Context) -> pb.ServerLiveResponse:
        """Alive (no token, as ``GET /v2/health/live``)."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, _: pb.ServerReadyRequest, __: Context) -> pb.ServerReadyResponse:
        """Every model loaded and the signing keys fetched (no token, as ``GET /v2/health/ready``)."""
        ready, _reason = self.plane.readiness()
        return pb.ServerReadyResponse(ready=ready)

    async def ServerMetadata(self, _: pb.ServerMetadataRequest, __: Context) -> pb.ServerMetadataResponse:
        """Name, version, extensions (no token, as ``GET /v2``)."""
        return pb.ServerMetadataResponse(**self.plane.server_metadata())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        """Whether the model (or one version of it) can infer now; scope ``models:read``. A model that is
        loading answers ``ready: false``; an unknown one NOT_FOUND."""
        principal = await self._caller(context)
        try:
            await self.plane.model_ready(request.name, request.version or None, principal)
        except ServiceError as exc:
            if exc.status_code != 503:
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        """Inputs (one per feature) and outputs of the model; scope ``models:read``."""
        meta = await self.plane.metadata(request.name, request.version or None, await self._caller(context))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
        )

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        """Predict one input per feature or one ``[n, F]`` tensor (typed or raw); scope ``predict``."""
        started = time.perf_counter()
        principal = await self._caller(context)
        async with self.plane.deadline():
            return encode_infer(await self.plane.infer(decode_infer(request, started), principal))

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        """Every model of the store (and each version held) with its state; scope ``models:read``."""
        entries = await self.plane.repository_index(await self._caller(context), ready_only=request.ready)
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                index(name=e.name, version=e.version or "", state=e.state, reason=e.reason) for e in entries
            ]
        )

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        """Serve a model again (its configured version); scope ``models:admin``."""
        principal = await self._caller(context)
        async with self.plane.deadline():
            await self.plane.load(request.model_name, principal)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        """Free a model from memory until it is loaded again; scope ``models:admin``."""
        principal = await self._caller(context)
        async with self.plane.deadline():
            await self.plane.unload(request.model_name, principal)
        return pb.RepositoryModelUnloadResponse()


def handler(plane: DataPlane, metrics: HttpMetrics) -> grpc.GenericRpcHandler:
    """Every RPC of :data:`SERVICE`, built from the service's descriptor (one source for names and types)."""
    servicer = Servicer(plane)
    methods: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}
    for method in _DESCRIPTOR.methods:
        request_type: type[Message] = getattr(pb, method.input_type.name)
        methods[method.name] = grpc.unary_unary_rpc_method_handler(
            _rpc(f"/{SERVICE}/{method.name}", request_type, getattr(servicer, method.name), metrics)
        )
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def _rpc(
    route: str, request_type: type[Message], call: Rpc, metrics: HttpMetrics
) -> Callable[[bytes, Context], Awaitable[bytes]]:
    """One RPC on raw bytes: parse (a malformed message is INVALID_ARGUMENT, not gRPC's INTERNAL), call, map
    errors, and count it in the service's request metrics and access log under ``route`` (the gRPC method
    path, so ``route=~"/inference.GRPCInferenceService/.*"`` selects the gRPC transport)."""
    name = request_type.DESCRIPTOR.full_name
    ok_count, ok_duration = (
        metrics.requests.labels(route, "POST", "2xx"),
        metrics.duration.labels(route, "POST"),
    )

    async def rpc(raw: bytes, context: Context) -> bytes:
        token = request_id_var.set(f"{random.getrandbits(128):032x}")
        start = time.perf_counter()
        status, failure = 200, None
        metrics.in_flight.inc()
        try:
            try:
                request = request_type.FromString(raw)
            except DecodeError:
                raise BadRequest(f"the request is not a valid {name} message") from None
            response = await call(request, context)
            return response.SerializeToString()
        except ServiceError as exc:
            status, failure = exc.status_code, exc
        except Exception:  # a bug must be one INTERNAL error, never a dropped connection
            log.exception("unhandled error", extra={"route": route})
            status, failure = 500, ServiceError(500, "internal error")
        finally:
            elapsed = time.perf_counter() - start
            metrics.in_flight.dec()
            if failure is None:  # the label lookups of the common case, done once
                ok_count.inc()
            else:
                metrics.requests.labels(route, "POST", f"{status // 100}xx").inc()
            ok_duration.observe(elapsed)
            log_request("POST", route, status, elapsed)
            request_id_var.reset(token)
        await _abort(context, failure)
        raise AssertionError("unreachable: abort raises")

    return rpc


async def _abort(context: Context, error: ServiceError) -> None:
    retry = (error.headers or {}).get("Retry-After")
    trailers = ((RETRY_AFTER, retry),) if retry else ()
    await context.abort(grpc.StatusCode[grpc_code(error)], one_line(error), trailers)


# --- ModelInfer: protobuf tensors <-> the data plane's typed request and response ---------------------

CONTENTS: Mapping[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field of each datatype (FP16 has none: raw only)."""


def decode_infer(message: pb.ModelInferRequest, started: float) -> InferRequest:
    """A ``ModelInferRequest`` as the data plane's request (400 for what is not the protocol's shape; the
    values themselves are the data plane's to judge)."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs")
    inputs = []
    for i, tensor in enumerate(message.inputs):
        if raw and tensor.HasField("contents"):
            raise BadRequest(f"{input_label(tensor.name)}: contents and raw_input_contents are both set")
        data = raw_data(tensor.name, tensor.datatype, raw[i]) if raw else _contents(tensor)
        inputs.append(
            Tensor(tensor.name, tensor.datatype, _shape(tensor), data, _parameters(tensor.parameters))
        )
    if len(message.id) > MAX_ID_LENGTH:
        raise BadRequest(f"id must be a string of at most {MAX_ID_LENGTH} characters (valid Unicode)")
    return InferRequest(
        message.model_name,
        inputs,
        version=message.model_version or None,
        id=message.id or None,
        parameters=_parameters(message.parameters),
        outputs=tuple(o.name for o in message.outputs) or ("predict",),
        protocol="grpc",
        started=started,
    )


def _shape(tensor: pb.ModelInferRequest.InferInputTensor) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
    if shape and min(shape) < 0:
        raise BadRequest(f"{input_label(tensor.name)}: shape dimensions must not be negative")
    return shape


def _contents(tensor: pb.ModelInferRequest.InferInputTensor) -> Any:
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise BadRequest(f"{input_label(tensor.name)}: datatype must be {DATATYPE_LIST}")
    values = getattr(tensor.contents, field)
    if not values and any(tensor.contents.ListFields()):
        raise BadRequest(
            f"{input_label(tensor.name)}: a {tensor.datatype} tensor carries its values in {field}"
        )
    return list(values)  # the data plane reads a list per feature column as is (an array it would convert)


def _parameters(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """``map<string, InferParameter>`` as plain values (an unset parameter reads as absent)."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def encode_infer(response: InferResponse) -> pb.ModelInferResponse:
    """The answer with each output in ``raw_output_contents``, as Triton answers (tritonclient 2.73 cannot
    read typed BYTES contents under numpy 2; raw is also one buffer per output): ``predict`` as BYTES labels
    (each length-prefixed) or FP64 values, ``predict_proba`` FP64 ``[n, classes]``; warnings are counted in
    ``parameters.warnings``."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    for tensor in response.tensors():
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if tensor.datatype == "BYTES":
            message.raw_output_contents.append(_length_prefix([str(v).encode() for v in tensor.data]))
        else:
            message.raw_output_contents.append(np.asarray(tensor.data, dtype="<f8").tobytes())
    if response.warnings:
        message.parameters["warnings"].int64_param = len(response.warnings)
    return message


def _length_prefix(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)
