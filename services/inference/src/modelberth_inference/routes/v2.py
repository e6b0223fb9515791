"""The Open Inference Protocol V2 over REST, so KServe, MLServer, Seldon and Triton clients work unchanged.

A thin adapter over the data plane (:mod:`..dataplane`): the codec here turns the JSON body into
:class:`~..types.Tensor` objects (one per feature, or one ``[n, F]`` tensor; :mod:`..tensors` reads them
against the card) and the answer's tensors back into JSON. Also the protocol's health, metadata and the
model repository extension (index, load, unload). Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from modelberth_inference.errors import BadRequest
from modelberth_inference.openapi import BEARER, errors
from modelberth_inference.raw_tensors import raw_data
from modelberth_inference.rest import (
    AdminPrincipal,
    LeanRoute,
    PlaneDep,
    ReadPrincipal,
    caller,
    json_response,
    plane,
    read_body,
    require_json,
)
from modelberth_inference.types import (
    DATATYPES,
    MAX_ID_LENGTH,
    InferRequest,
    InferResponse,
    ModelMetadata,
    Tensor,
)
from modelberth_inference.validation import input_label, parse_body

router = APIRouter(prefix="/v2", tags=["v2"])
infer_router = APIRouter(prefix="/v2", tags=["v2"], route_class=LeanRoute)
"""The infer routes: they read the caller and their own body (no per-request dependency solving)."""

OCTET_STREAM = frozenset({"application/octet-stream"})
"""Besides JSON, the binary tensor data extension declares this type (its JSON part comes first)."""
BINARY_HEADER = "inference-header-content-length"
"""The binary tensor data extension's header: the length of the body's JSON part; raw tensor data follows."""
MAX_HEADER_DIGITS = 19
"""A JSON part's length has at most this many digits (its body is bounded far below anyway)."""
INT64_MAX = 2**63 - 1
"""Shapes are int64 in the protocol; a larger number is refused before any message repeats it."""
MAX_DIMENSIONS = 2
"""Tabular inputs have one or two dimensions: ``[n]``, ``[n, 1]`` or ``[n, F]``."""

V2_READ_ERRORS = errors(401, 403, 404, 422, 503, v2=True)
V2_VERSION_ERRORS = errors(401, 403, 404, 409, 422, 503, 504, v2=True)
V2_INFER_ERRORS = errors(400, 401, 403, 404, 413, 415, 422, 429, 503, 504, v2=True)
V2_VERSION_INFER_ERRORS = errors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503, 504, v2=True)
V2_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": {"type": "object"}},
                        "outputs": {"type": "array", "items": {"type": "object"}},
                        "parameters": {"type": "object"},
                    },
                }
            }
        },
    }
}
"""The generic body, documented while no model is loaded (each model's own is written per model)."""
_REPOSITORY_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    }
}


# --- the codec: JSON <-> tensors --------------------------------------------------------------------------


def _flatten(data: Any, shape: tuple[int, ...], name: str) -> list[Any]:
    """``data`` flat in row-major order: flat already, or one nested list per row as wide as ``shape`` says
    (``[[x], [y]]`` for a column)."""
    if type(data) is not list:
        raise BadRequest(f"{input_label(name)}: data must be an array")
    if not data or type(data[0]) is not list:
        return data
    width = shape[1] if len(shape) == MAX_DIMENSIONS else 1
    if not all(type(row) is list and len(row) == width for row in data):
        raise BadRequest(f"{input_label(name)}: nested data does not match shape")
    return [value for row in data for value in row]


class Binary:
    """The bytes after a body's JSON part (binary tensor data extension), taken input by input in order:
    each input with ``parameters.binary_data_size`` takes that many bytes, and none may be left over."""

    __slots__ = ("_at", "_data")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, name: str, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise BadRequest(
                f"{input_label(name)}: binary_data_size runs past the binary data after the JSON part"
            )
        self._at += size
        return self._data[self._at - size : self._at]

    def finish(self) -> None:
        left = len(self._data) - self._at
        if left:
            raise BadRequest(f"{left} bytes of binary data after the JSON part belong to no input")


def split_binary(body: bytes, header: str) -> tuple[bytes, Binary]:
    """A binary-extension body as its JSON part and the raw tensor data after it (400 for a length that is
    not a decimal number within the body)."""
    number = header.isascii() and header.isdigit() and len(header) <= MAX_HEADER_DIGITS
    if not number or int(header) > len(body):
        raise BadRequest(
            "Inference-Header-Content-Length must be the length in bytes of the body's JSON part"
            f" (a decimal number, at most the body's {len(body)} bytes)"
        )
    json_length = int(header)
    return body[:json_length], Binary(body[json_length:])


def _shape(item: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = item.get("shape")
    if (
        type(shape) is not list
        or not all(type(d) is int and 0 <= d <= INT64_MAX for d in shape)
        or not 1 <= len(shape) <= MAX_DIMENSIONS
    ):
        raise BadRequest(f"{input_label(name)}: shape must be [n], [n, 1] or [n, F]")
    return tuple(shape)


def _binary_data(item: dict[str, Any], name: str, datatype: str, size: Any, binary: Binary | None) -> Any:
    """The values an input sends in the binary part (``parameters.binary_data_size`` bytes of it)."""
    if binary is None:
        raise BadRequest(
            f"{input_label(name)}: binary_data_size needs the binary tensor data extension"
            " (the Inference-Header-Content-Length header and the data after the JSON part)"
        )
    if type(size) is not int or size < 0:
        raise BadRequest(f"{input_label(name)}: binary_data_size must be a non-negative integer")
    if "data" in item:
        raise BadRequest(f"{input_label(name)}: data and binary_data_size are both set")
    return raw_data(name, datatype, binary.take(name, size))


def _tensor(item: Any, binary: Binary | None) -> Tensor:
    if type(item) is not dict or type(item.get("name")) is not str:
        raise BadRequest("each input needs a name, shape, datatype and data")
    name = item["name"]
    shape, datatype = _shape(item, name), item.get("datatype")
    if type(datatype) is not str:
        raise BadRequest(f"{input_label(name)}: datatype is required")
    if datatype not in DATATYPES:
        raise BadRequest(f"{input_label(name)}: datatype is not an Open Inference Protocol datatype")
    parameters = item.get("parameters")
    if parameters is None:
        parameters = {}
    elif type(parameters) is not dict:
        raise BadRequest(f"{input_label(name)}: parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        data = _flatten(item.get("data"), shape, name)
    else:
        data = _binary_data(item, name, datatype, size, binary)
    return Tensor(name, datatype, shape, data, parameters)


def _request_id(payload: dict[str, Any]) -> str | None:
    """The request's ``id``, which the answer repeats (the protocol says so): a bounded string that can be
    encoded (a lone surrogate cannot)."""
    value = payload.get("id")
    if value is None:
        return None
    if type(value) is not str or len(value) > MAX_ID_LENGTH or not _encodable(value):
        raise BadRequest(f"id must be a string of at most {MAX_ID_LENGTH} characters (valid Unicode)")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _outputs(payload: dict[str, Any]) -> tuple[str, ...]:
    outputs = payload.get("outputs")
    if outputs is None:
        return ("predict",)
    if type(outputs) is not list or not all(type(o) is dict and type(o.get("name")) is str for o in outputs):
        raise BadRequest("outputs must be an array of {name}")
    return tuple(o["name"] for o in outputs)  # which names a model has: the data plane's to say


def decode(payload: Any, request: InferRequest, binary: Binary | None = None) -> None:
    """Fill ``request`` from a V2 JSON body and, with the binary tensor data extension, the raw data after it
    (400 for anything that is not the protocol's shape)."""
    if type(payload) is not dict:
        raise BadRequest("expected an inference request object")
    parameters = payload.get("parameters")
    if parameters is None:  # null reads as absent
        parameters = {}
    elif type(parameters) is not dict:
        raise BadRequest("parameters must be an object")
    inputs = payload.get("inputs")
    if type(inputs) is not list or not inputs:
        raise BadRequest("inputs must be a non-empty array")
    request.inputs = [_tensor(item, binary) for item in inputs]
    if binary is not None:
        binary.finish()
    request.outputs = _outputs(payload)
    request.id = _request_id(payload)
    request.parameters = parameters


def encode(response: InferResponse) -> dict[str, Any]:
    """The V2 answer: ``model_name``, ``model_version``, ``id`` (when sent), ``outputs`` and, when some rows
    were outside the training data, ``parameters.warnings`` (their count)."""
    body: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        body["id"] = response.id
    body["outputs"] = [
        {"name": t.name, "shape": list(t.shape), "datatype": t.datatype, "data": t.data}
        for t in response.tensors()
    ]
    if response.warnings:
        body["parameters"] = {"warnings": len(response.warnings)}
    return body


def _metadata(meta: ModelMetadata) -> dict[str, Any]:
    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }


# --- inference ----------------------------------------------------------------------------------------------


async def _infer(request: Request, name: str, version: str | None) -> Response:
    dataplane = plane(request)
    infer = InferRequest(name, (), version=version, protocol="v2")
    async with dataplane.deadline():
        principal = await caller(request)
        dataplane.authorise(principal, "predict")
        require_json(request, also=OCTET_STREAM)
        body = await read_body(request, dataplane.settings.max_body_bytes)
        header = request.headers.get(BINARY_HEADER)
        if header is None:
            decode(parse_body(body), infer)
        else:
            json_part, binary = split_binary(body, header)
            decode(parse_body(json_part), infer, binary)
        response = await dataplane.infer(infer, principal)
    return json_response(encode(response))


@infer_router.post("/models/{name}/infer", responses=V2_INFER_ERRORS, openapi_extra={**V2_BODY, **BEARER})
async def infer(request: Request, name: str) -> Response:
    """Predict one input per feature, or one ``[n, F]`` tensor in the card's feature order; outputs
    ``predict`` (default) and ``predict_proba`` when requested."""
    return await _infer(request, name, None)


@infer_router.post(
    "/models/{name}/versions/{version}/infer",
    responses=V2_VERSION_INFER_ERRORS,
    openapi_extra={**V2_BODY, **BEARER},
)
async def infer_version(request: Request, name: str, version: str) -> Response:
    """Predict with one version, named by its id or an alias (``challenger``), loaded on first use."""
    return await _infer(request, name, version)


# --- health and metadata ------------------------------------------------------------------------------------


@router.get("")
async def server_metadata(dataplane: PlaneDep) -> Response:
    """Server name, version and protocol extensions."""
    return json_response(dataplane.server_metadata())


@router.get("/health/live")
async def server_live() -> Response:
    """The server is alive."""
    return json_response({"live": True})


@router.get(
    "/health/ready",
    responses={
        400: {
            "description": "Not ready (the protocol's 4xx for false).",
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"ready": {"const": False}}}}
            },
        }
    },
)
async def server_ready(dataplane: PlaneDep) -> Response:
    """200 when every model is ready, else 400 (the protocol's 4xx for false)."""
    ready, _ = dataplane.readiness()
    return json_response({"ready": ready}, 200 if ready else 400)


@router.get("/models/{name}", responses=V2_VERSION_ERRORS, openapi_extra=BEARER)
async def model_metadata(name: str, dataplane: PlaneDep, principal: ReadPrincipal) -> Response:
    """Inputs (one per feature column) and outputs of the served version."""
    return json_response(_metadata(await dataplane.metadata(name, None, principal)))


@router.get("/models/{name}/versions/{version}", responses=V2_VERSION_ERRORS, openapi_extra=BEARER)
async def model_version_metadata(
    name: str, version: str, dataplane: PlaneDep, principal: ReadPrincipal
) -> Response:
    """Metadata of one version, named by its id or an alias (loaded on first use)."""
    return json_response(_metadata(await dataplane.metadata(name, version, principal)))


@router.get("/models/{name}/ready", responses=V2_VERSION_ERRORS, openapi_extra=BEARER)
async def model_ready(name: str, dataplane: PlaneDep, principal: ReadPrincipal) -> Response:
    """200 ``{"name", "ready": true, "version"}`` when the model serves."""
    version = await dataplane.model_ready(name, None, principal)
    return json_response({"name": name, "ready": True, "version": version})


@router.get("/models/{name}/versions/{version}/ready", responses=V2_VERSION_ERRORS, openapi_extra=BEARER)
async def model_version_ready(
    name: str, version: str, dataplane: PlaneDep, principal: ReadPrincipal
) -> Response:
    """200 when this version (an id or an alias) can infer now: it is loaded, or loads on this call."""
    served = await dataplane.model_ready(name, version, principal)
    return json_response({"name": name, "ready": True, "version": served})


# --- the model repository extension -------------------------------------------------------------------------


async def _options(request: Request, limit: int) -> dict[str, Any]:
    """A repository call's optional JSON object body (tritonclient sends ``{"parameters": ...}``)."""
    require_json(request)
    body = await read_body(request, limit)
    if not body.strip():
        return {}
    payload = parse_body(body)
    if type(payload) is not dict:
        raise BadRequest("expected a JSON object")
    return payload


@router.post(
    "/repository/index",
    responses=errors(400, 401, 403, 413, 415, 422, v2=True),
    openapi_extra={
        **BEARER,
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                }
            },
        },
    },
)
async def repository_index(request: Request, dataplane: PlaneDep, principal: ReadPrincipal) -> Response:
    """Every model this server may serve: ``[{name, version, state, reason}]``, one entry per version in
    memory (state READY), or one UNAVAILABLE entry saying why (unloaded, a failed load, nothing to serve).
    ``{"ready": true}`` lists the READY ones only."""
    options = await _options(request, dataplane.settings.max_body_bytes)
    ready_only = options.get("ready", False)
    if type(ready_only) is not bool:
        raise BadRequest("ready must be a boolean")
    entries = await dataplane.repository_index(principal, ready_only=ready_only)
    return json_response(
        [
            {
                "name": e.name,
                **({"version": e.version} if e.version is not None else {}),
                "state": e.state,
                "reason": e.reason,
            }
            for e in entries
        ]
    )


@router.post(
    "/repository/models/{name}/load",
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 503, v2=True),
    openapi_extra={**BEARER, **_REPOSITORY_BODY},
)
async def repository_load(
    name: str, request: Request, dataplane: PlaneDep, principal: AdminPrincipal
) -> Response:
    """Serve the model again (the version its alias names now; aliases are never moved): an unloaded model
    stays unloaded, whatever its alias does, until this call."""
    options = await _options(request, dataplane.settings.max_body_bytes)
    parameters = options.get("parameters")
    if parameters is not None and (type(parameters) is not dict or parameters):
        # Triton's config and file overrides: a version's card and files come from the model store only.
        raise BadRequest("load takes no parameters: the model store holds each version's card and files")
    version = await dataplane.load(name, principal)
    return json_response({"name": name, "version": version, "state": "READY"})


@router.post(
    "/repository/models/{name}/unload",
    responses=errors(400, 401, 403, 404, 413, 415, 422, v2=True),
    openapi_extra={**BEARER, **_REPOSITORY_BODY},
)
async def repository_unload(
    name: str, request: Request, dataplane: PlaneDep, principal: AdminPrincipal
) -> Response:
    """Stop serving the model and free every version of it from memory (aliases are not touched)."""
    await _options(request, dataplane.settings.max_body_bytes)
    await dataplane.unload(name, principal)
    return json_response({"name": name, "state": "UNAVAILABLE"})
