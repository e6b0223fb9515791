"""Open Inference Protocol V2 (REST), so KServe/MLServer/Triton clients work unchanged.

One named input per feature column (the ``pd`` content type: a column-wise DataFrame), outputs ``predict``
and, when asked for, ``predict_proba``. Errors are ``{"error": "..."}`` (see errors.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from modelberth_core.errors import ServiceError
from modelberth_inference import __version__
from modelberth_inference.deps import (
    ReadPrincipal,
    authorize,
    read_json,
    require_json,
    served_model,
    served_version,
)
from modelberth_inference.errors import json_response
from modelberth_inference.openapi import BEARER, errors
from modelberth_inference.registry import Served
from modelberth_inference.routes.health import readiness
from modelberth_inference.routes.lean import LeanRoute
from modelberth_inference.routes.predict import log_prediction, predict_columns
from modelberth_inference.settings import Settings
from modelberth_inference.validation import InputError, issues_text, shown_name

router = APIRouter(prefix="/v2", tags=["v2"])
hot_router = APIRouter(prefix="/v2", tags=["v2"], route_class=LeanRoute)
"""The infer routes, matched first and served without FastAPI's per-request dependency solving."""

SERVER_NAME = "modelberth-inference"
OUTPUTS = ("predict", "predict_proba")
NUMERIC_TYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"}
)
DATATYPES = NUMERIC_TYPES | {"BOOL", "BYTES"}
"""The protocol's tensor datatypes: an error repeats a client's datatype only if it is one of these."""
OCTET_STREAM = frozenset({"application/octet-stream"})
"""Besides JSON, the binary tensor data extension declares this type (its JSON part comes first)."""
BINARY_UNSUPPORTED = (
    "the binary tensor data extension is not supported: send the tensors as JSON "
    "(tritonclient: set_data_from_numpy(..., binary_data=False))"
)
INT64_MAX = 2**63 - 1
"""Shapes are int64 in the protocol; a larger number is refused before any message repeats it."""
MAX_ID_LENGTH = 256
"""Longest request ``id``: the protocol returns it in the answer, so it is bounded."""


V2_READ_ERRORS = errors(401, 403, 404, 422, 503, v2=True)
V2_VERSION_ERRORS = errors(401, 403, 404, 409, 422, 503, 504, v2=True)
V2_INFER_ERRORS = errors(400, 401, 403, 404, 413, 415, 422, 503, 504, v2=True)
V2_VERSION_INFER_ERRORS = errors(400, 401, 403, 404, 409, 413, 415, 422, 503, 504, v2=True)
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
                    },
                }
            }
        },
    }
}
"""The generic body, documented while no model is loaded (each model's own is written per model)."""


def _metadata(served: Served) -> dict[str, Any]:
    model = served.model
    inputs = [
        {"name": f.name, "datatype": "FP64" if f.type == "numeric" else "BYTES", "shape": [-1]}
        for f in model.card.features
    ]
    outputs = [
        {"name": "predict", "datatype": "FP64" if model.card.task == "regression" else "BYTES", "shape": [-1]}
    ]
    if model.has_proba:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.classes)]})
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": inputs,
        "outputs": outputs,
    }


@router.get("")
async def server_metadata() -> Response:
    """Server name, version and protocol extensions."""
    return json_response({"name": SERVER_NAME, "version": __version__, "extensions": []})


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
async def server_ready(request: Request) -> Response:
    """200 when every model is ready, else 400 (the protocol's 4xx for false)."""
    ready, _ = readiness(request)
    return json_response({"ready": ready}, 200 if ready else 400)


@router.get("/models/{name}", responses=V2_READ_ERRORS, openapi_extra=BEARER)
async def model_metadata(name: str, request: Request, _: ReadPrincipal) -> Response:
    """Inputs (one per feature column) and outputs of the served version."""
    return json_response(_metadata(await served_version(request, name, None)))


@router.get("/models/{name}/versions/{version}", responses=V2_VERSION_ERRORS, openapi_extra=BEARER)
async def model_version_metadata(name: str, version: str, request: Request, _: ReadPrincipal) -> Response:
    """Metadata of one version, named by its id or an alias (loaded on first use)."""
    return json_response(_metadata(await served_version(request, name, version)))


@router.get("/models/{name}/ready", responses=V2_READ_ERRORS, openapi_extra=BEARER)
async def model_ready(name: str, request: Request, _: ReadPrincipal) -> Response:
    """200 ``{"name", "ready": true}`` when the model serves."""
    served = await served_version(request, name, None)
    return json_response({"name": name, "ready": True, "version": served.model.version})


@router.get("/models/{name}/versions/{version}/ready", responses=V2_VERSION_ERRORS, openapi_extra=BEARER)
async def model_version_ready(name: str, version: str, request: Request, _: ReadPrincipal) -> Response:
    """200 when this version (an id or an alias) can infer now: it is loaded, or loads on this call."""
    served = await served_version(request, name, version)
    return json_response({"name": name, "ready": True, "version": served.model.version})


def _bad(message: str) -> ServiceError:
    return ServiceError(400, message)


def _input(name: str) -> str:
    """How an error names a client's input: ``input 'x'``, unless the name must not be repeated."""
    shown = shown_name(name)
    return (
        f"input {shown!r}"
        if shown is not None
        else "an input whose name is not shown (too long or not printable)"
    )


def _flatten(data: Any, name: str) -> list[Any]:
    if type(data) is not list:
        raise _bad(f"{_input(name)}: data must be an array")
    if data and type(data[0]) is list:
        if not all(type(row) is list and len(row) == 1 for row in data):
            raise _bad(f"{_input(name)}: one column per input; expected shape [n] or [n, 1]")
        return [row[0] for row in data]
    return data


def _columns(payload: Any, served: Served, max_instances: int) -> tuple[dict[str, list[Any]], int]:
    if type(payload) is not dict:
        raise _bad("expected an inference request object")
    inputs = payload.get("inputs")
    if type(inputs) is not list or not inputs:
        raise _bad("inputs must be a non-empty array")
    specs = {f.name: f for f in served.model.card.features}
    columns: dict[str, list[Any]] = {}
    n: int | None = None
    for item in inputs:
        if type(item) is not dict or type(item.get("name")) is not str:
            raise _bad("each input needs a name, shape, datatype and data")
        name = item["name"]
        shape, datatype = item.get("shape"), item.get("datatype")
        if (
            type(shape) is not list
            or not all(type(d) is int and 0 <= d <= INT64_MAX for d in shape)
            or not 1 <= len(shape) <= 2
        ):
            raise _bad(f"{_input(name)}: shape must be [n] or [n, 1]")
        if len(shape) == 2 and shape[1] != 1:
            raise _bad(f"{_input(name)}: one column per input; expected shape [n] or [n, 1]")
        if type(datatype) is not str:
            raise _bad(f"{_input(name)}: datatype is required")
        spec = specs.get(name)
        if spec is not None:
            expected_numeric = spec.type == "numeric"
            shown = datatype if datatype in DATATYPES else "(not an OIP datatype)"
            if expected_numeric and datatype not in NUMERIC_TYPES:
                raise _bad(f"{_input(name)}: datatype {shown} is not numeric (use FP64, FP32 or INT64)")
            if not expected_numeric and datatype != "BYTES":
                raise _bad(f"{_input(name)}: datatype {shown} is not BYTES (this feature is a string)")
        if name in columns:
            raise _bad(f"{_input(name)} given twice")
        column = _flatten(item.get("data"), name)
        if len(column) != shape[0]:
            raise _bad(f"{_input(name)}: data has {len(column)} elements, shape says {shape[0]}")
        if n is None:
            n = len(column)
        elif len(column) != n:
            raise _bad(f"{_input(name)}: {len(column)} rows, other inputs have {n}")
        columns[name] = column
    assert n is not None
    if n == 0:
        raise _bad("inputs have no rows")
    if n > max_instances:
        raise ServiceError(422, f"too many rows: {n} in one request, at most {max_instances}")
    return columns, n


def _request_id(payload: dict[str, Any]) -> str | None:
    """The request's ``id``, which the answer repeats (the protocol says so): a bounded string that can be
    encoded (a lone surrogate cannot), and a ``parameters`` object if there is one (null is absent)."""
    if type(payload.get("parameters", {})) not in (dict, type(None)):
        raise _bad("parameters must be an object")
    value = payload.get("id")
    if value is None:
        return None
    if type(value) is not str or len(value) > MAX_ID_LENGTH or not _encodable(value):
        raise _bad(f"id must be a string of at most {MAX_ID_LENGTH} characters (valid Unicode)")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _wanted(payload: dict[str, Any], served: Served) -> list[str]:
    outputs = payload.get("outputs")
    if outputs is None:
        return ["predict"]
    if type(outputs) is not list or not all(type(o) is dict and type(o.get("name")) is str for o in outputs):
        raise _bad("outputs must be an array of {name}")
    names = [o["name"] for o in outputs]
    for name in names:
        if name not in OUTPUTS:
            shown = shown_name(name)
            which = f" {shown!r}" if shown is not None else " (name not shown: too long or not printable)"
            raise _bad(f"unknown output{which}; this model has predict and predict_proba")
        if name == "predict_proba" and not served.model.has_proba:
            raise _bad(f"model {served.model.name} has no predict_proba output")
    return names


async def _infer(name: str, version: str | None, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    start = time.perf_counter()
    try:
        async with asyncio.timeout(settings.request_timeout_seconds):
            caller = await authorize(request, "predict")
            served = served_model(request, name)
            if version is not None:
                served = await served_version(request, name, version)
            require_json(request, also=OCTET_STREAM)
            if "inference-header-content-length" in request.headers:
                raise _bad(BINARY_UNSUPPORTED)
            payload = await read_json(request, settings.max_body_bytes)
            columns, n = _columns(payload, served, settings.max_instances)
            wanted = _wanted(payload, served)
            request_id = _request_id(payload)
            try:
                validated = served.model.validator.from_columns(columns, n)
                result = await predict_columns(request, served, validated)
            except InputError as exc:
                raise ServiceError(422, issues_text(exc)) from None
    except TimeoutError:
        raise ServiceError(504, f"request timed out after {settings.request_timeout_seconds:g} s") from None
    model = served.model
    outputs: list[dict[str, Any]] = []
    for output in wanted:
        if output == "predict":
            datatype = "FP64" if model.card.task == "regression" else "BYTES"
            outputs.append(
                {"name": "predict", "shape": [n], "datatype": datatype, "data": result.predictions}
            )
        else:
            proba = result.proba if result.proba is not None else np.zeros((n, 0))
            outputs.append(
                {
                    "name": "predict_proba",
                    "shape": [n, proba.shape[1]],
                    "datatype": "FP64",
                    "data": proba.ravel().tolist(),
                }
            )
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = outputs
    if validated.warnings:
        body["parameters"] = {"warnings": len(validated.warnings)}
    log_prediction(request, served, caller, validated, result.predictions, start)
    return json_response(body)


@hot_router.post("/models/{name}/infer", responses=V2_INFER_ERRORS, openapi_extra={**V2_BODY, **BEARER})
async def infer(request: Request, name: str) -> Response:
    """Predict column-wise inputs; outputs ``predict`` (default) and ``predict_proba`` when requested."""
    return await _infer(name, None, request)


@hot_router.post(
    "/models/{name}/versions/{version}/infer",
    responses=V2_VERSION_INFER_ERRORS,
    openapi_extra={**V2_BODY, **BEARER},
)
async def infer_version(request: Request, name: str, version: str) -> Response:
    """Predict with one version, named by its id or an alias (``challenger``), loaded on first use."""
    return await _infer(name, version, request)
