"""The V1 JSON transport: ``POST /v1/models/{name}[/versions/{v}]/predict`` and the held-out examples.

A thin adapter: it reads the caller and the bounded body, hands the records to the data plane
(:mod:`..dataplane`: validation, micro-batching, prediction, bookkeeping) and encodes its answer as
``{model, version, predictions, probabilities, warnings}``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response

from modelberth_core.errors import ServiceError
from modelberth_inference.openapi import BEARER, errors
from modelberth_inference.registry import Served
from modelberth_inference.rest import (
    LeanRoute,
    PlaneDep,
    ReadPrincipal,
    caller,
    json_response,
    plane,
    read_body,
    require_json,
)
from modelberth_inference.types import InferRequest, InferResponse, Records

router = APIRouter(prefix="/v1/models", tags=["predict"], route_class=LeanRoute)
"""The V1 prediction routes; they read the caller and their own body (no per-request dependency solving)."""
examples_router = APIRouter(prefix="/v1/models", tags=["predict"])

_ENCODER = msgspec.json.Encoder()
"""Encodes V1 answers, whose probability rows are msgspec structs (see ``LoadedModel.probabilities``)."""

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {"instances": {"type": "array", "items": {"type": "object"}}},
                            "required": ["instances"],
                        },
                        {"type": "object", "description": "one instance: {feature: value, ...}"},
                    ]
                },
                "example": {"instances": [{"feature": 1.0}]},
            }
        },
    }
}


def encode(response: InferResponse, extra: dict[str, Any] | None = None) -> Response:
    """The V1 answer: probability rows are msgspec structs named after the classes, encoded in C."""
    model = response.model
    body: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "predictions": response.predictions,
    }
    if response.probabilities is not None:
        body["probabilities"] = response.probability_rows()
    body["warnings"] = response.warnings
    if extra:
        body.update(extra)
    return Response(_ENCODER.encode(body), media_type="application/json")


@router.post(
    "/{name}/predict",
    responses=errors(400, 401, 403, 404, 413, 415, 422, 429, 503, 504),
    openapi_extra={**PREDICT_BODY, **BEARER},
)
async def predict(request: Request, name: str) -> Response:
    """Predict ``{"instances": [...]}`` (or one object): predictions, class probabilities, input warnings."""
    return await _predict(request, name, None)


@router.post(
    "/{name}/versions/{version}/predict",
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503, 504),
    openapi_extra={**PREDICT_BODY, **BEARER},
)
async def predict_version(request: Request, name: str, version: str) -> Response:
    """Predict with one version, named by its id or an alias (``challenger``): the same body and answer;
    a version other than the served one is loaded on first use."""
    return await _predict(request, name, version)


async def _predict(request: Request, name: str, version: str | None) -> Response:
    dataplane = plane(request)
    infer = InferRequest(name, Records(), version=version, protocol="v1")
    async with dataplane.deadline():
        principal = await caller(request)
        dataplane.authorise(principal, "predict")
        require_json(request)
        infer.inputs = Records(body=await read_body(request, dataplane.settings.max_body_bytes))
        response = await dataplane.infer(infer, principal)
    return encode(response)


def _example(served: Served, index: int) -> dict[str, Any]:
    examples = served.model.examples
    if not 0 <= index < len(examples):
        raise ServiceError(
            404, f"example {index} not found ({served.model.name} has {len(examples)} examples, 0-based)"
        )
    return examples[index]


@examples_router.get("/{name}/examples", responses=errors(401, 403, 404, 422, 503), openapi_extra=BEARER)
async def list_examples(name: str, dataplane: PlaneDep, _: ReadPrincipal) -> Response:
    """Every held-out example row of the served version (``examples.csv``)."""
    served = dataplane.served(name)
    examples = served.model.examples
    return json_response(
        {"model": name, "version": served.model.version, "count": len(examples), "instances": examples}
    )


@examples_router.get(
    "/{name}/examples/{index}", responses=errors(401, 403, 404, 422, 503), openapi_extra=BEARER
)
async def get_example(name: str, index: int, dataplane: PlaneDep, _: ReadPrincipal) -> Response:
    """One held-out row by its 0-based index."""
    served = dataplane.served(name)
    return json_response(
        {
            "model": name,
            "version": served.model.version,
            "index": index,
            "count": len(served.model.examples),
            "instance": _example(served, index),
        }
    )


@examples_router.post(
    "/{name}/examples/{index}/predict",
    responses=errors(401, 403, 404, 422, 429, 503, 504),
    openapi_extra=BEARER,
)
async def predict_example(name: str, index: int, request: Request) -> Response:
    """Predict one held-out row by its index; the response adds ``index`` and ``instance``."""
    dataplane = plane(request)
    async with dataplane.deadline():
        principal = await caller(request)
        dataplane.authorise(principal, "predict")
        instance = _example(dataplane.served(name), index)
        response = await dataplane.infer(InferRequest(name, Records(instances=[instance])), principal)
    return encode(response, {"index": index, "instance": instance})
