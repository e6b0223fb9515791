"""``POST /v1/models/{name}/predict`` and the held-out examples (``/examples/{index}[/predict]``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response

from modelberth_core.errors import ServiceError
from modelberth_core.logging import request_id_var
from modelberth_core.security import Principal
from modelberth_inference.batching import PredictionFailed
from modelberth_inference.deps import (
    ReadPrincipal,
    authorize,
    parse_body,
    read_body,
    require_json,
    served_model,
    served_version,
)
from modelberth_inference.errors import json_response
from modelberth_inference.model import Prediction
from modelberth_inference.monitoring import InferenceMetrics
from modelberth_inference.openapi import BEARER, errors
from modelberth_inference.prediction_log import PredictionLog
from modelberth_inference.registry import Served
from modelberth_inference.routes.lean import LeanRoute
from modelberth_inference.settings import Settings
from modelberth_inference.validation import MAX_ERRORS, Columns, InputError, Issue, issues_detail

router = APIRouter(prefix="/v1/models", tags=["predict"])
hot_router = APIRouter(prefix="/v1/models", tags=["predict"], route_class=LeanRoute)
"""The predict route, matched first and served without FastAPI's per-request dependency solving."""

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


def instances_of(payload: Any, max_instances: int) -> list[Any]:
    """``{"instances": [...]}`` or one instance object -> a non-empty list of at most ``max_instances``."""
    if type(payload) is not dict:
        raise ServiceError(422, 'expected {"instances": [{...}, ...]} or one instance object')
    instances = payload.get("instances", [payload])
    if type(instances) is not list:
        raise ServiceError(
            422, [{"loc": ["body", "instances"], "msg": "must be a list", "type": "list_type"}]
        )
    if not instances:
        raise ServiceError(
            422, [{"loc": ["body", "instances"], "msg": "must not be empty", "type": "too_short"}]
        )
    if len(instances) > max_instances:  # 422, not 413: the body may be small; its content is over a limit
        raise ServiceError(
            422,
            [
                {
                    "loc": ["body", "instances"],
                    "msg": f"too many instances: {len(instances)} in one request, at most {max_instances}",
                    "type": "too_long",
                }
            ],
        )
    return instances


def count_warnings(metrics: InferenceMetrics, model: str, columns: Columns) -> None:
    """Add a request's input warnings to ``modelberth_inference_input_warnings_total``."""
    for (feature, kind), count in columns.warning_counts.items():
        metrics.input_warnings.labels(model, feature, kind).inc(count)


NON_FINITE_OUTPUT = (
    "the model's output for this row is not a finite number (its inputs are outside what it can compute)"
)


async def predict_columns(request: Request, served: Served, columns: Columns) -> Prediction:
    """Queue validated rows on the model's micro-batcher; a pipeline failure is the caller's 422, and rows
    whose output is not finite raise :class:`InputError` naming them (each protocol words it)."""
    count_warnings(request.app.state.metrics, served.model.name, columns)
    try:
        result = await served.batcher.submit(columns)
    except PredictionFailed:
        raise ServiceError(422, "the model could not predict these rows") from None
    if result.invalid_rows is not None:
        rows = result.invalid_rows.tolist()
        issues = [Issue(row, None, NON_FINITE_OUTPUT, "non_finite_output") for row in rows[:MAX_ERRORS]]
        raise InputError(issues, len(rows))
    return result


def log_prediction(
    request: Request,
    served: Served,
    caller: Principal,
    columns: Columns,
    outputs: list[Any],
    start: float,
) -> None:
    """Queue a sampled prediction-log record (caller, version, the validated rows) when the log is on."""
    plog: PredictionLog | None = request.app.state.prediction_log
    if plog is not None:
        client_id = caller.claims.get("client_id")
        plog.submit(
            request_id=request_id_var.get(),
            model=served.model.name,
            version=served.model.version,
            sub=caller.subject,
            client_id=client_id if type(client_id) is str else None,
            columns=columns,
            outputs=outputs,
            latency_seconds=time.perf_counter() - start,
        )


def validate(served: Served, instances: list[Any]) -> Columns:
    """The exact path: check instances against the card, 422 naming each offending field and row."""
    try:
        return served.model.validator.from_instances(instances)
    except InputError as exc:
        raise ServiceError(422, issues_detail(exc)) from None


async def answer(
    request: Request,
    served: Served,
    caller: Principal,
    columns: Columns,
    start: float,
    extra: dict[str, Any] | None = None,
) -> Response:
    """Predict validated rows (micro-batched) and shape the V1 response."""
    model = served.model
    try:
        result = await predict_columns(request, served, columns)
    except InputError as exc:
        raise ServiceError(422, issues_detail(exc)) from None
    body: dict[str, Any] = {"model": model.name, "version": model.version, "predictions": result.predictions}
    if result.proba is not None:
        body["probabilities"] = model.probabilities(result.proba)
    body["warnings"] = columns.warnings
    if extra:
        body.update(extra)
    log_prediction(request, served, caller, columns, result.predictions, start)
    return Response(_ENCODER.encode(body), media_type="application/json")


def _timeout(settings: Settings) -> ServiceError:
    return ServiceError(504, f"request timed out after {settings.request_timeout_seconds:g} s")


@hot_router.post(
    "/{name}/predict",
    responses=errors(400, 401, 403, 404, 413, 415, 422, 503, 504),
    openapi_extra={**PREDICT_BODY, **BEARER},
)
async def predict(request: Request, name: str) -> Response:
    """Predict ``{"instances": [...]}`` (or one object): predictions, class probabilities, input warnings."""
    return await _predict(request, name, None)


@hot_router.post(
    "/{name}/versions/{version}/predict",
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 503, 504),
    openapi_extra={**PREDICT_BODY, **BEARER},
)
async def predict_version(request: Request, name: str, version: str) -> Response:
    """Predict with one version, named by its id or an alias (``challenger``): the same body and answer;
    a version other than the served one is loaded on first use."""
    return await _predict(request, name, version)


async def _predict(request: Request, name: str, version: str | None) -> Response:
    settings: Settings = request.app.state.settings
    try:
        async with asyncio.timeout(settings.request_timeout_seconds):
            start = time.perf_counter()
            caller = await authorize(request, "predict")
            served = served_model(request, name)
            if version is not None:
                served = await served_version(request, name, version)
            require_json(request)
            body = await read_body(request, settings.max_body_bytes)
            columns = served.model.validator.decode(body, settings.max_instances)
            if columns is None:  # not the common shape, or not valid: the exact path says what is wrong
                columns = validate(served, instances_of(parse_body(body), settings.max_instances))
            return await answer(request, served, caller, columns, start)
    except TimeoutError:
        raise _timeout(settings) from None


def _example(served: Served, index: int) -> dict[str, Any]:
    examples = served.model.examples
    if not 0 <= index < len(examples):
        raise ServiceError(
            404, f"example {index} not found ({served.model.name} has {len(examples)} examples, 0-based)"
        )
    return examples[index]


@router.get("/{name}/examples", responses=errors(401, 403, 404, 422, 503), openapi_extra=BEARER)
async def list_examples(name: str, request: Request, _: ReadPrincipal) -> Response:
    """Every held-out example row of the served version (``examples.csv``)."""
    served = served_model(request, name)
    examples = served.model.examples
    return json_response(
        {"model": name, "version": served.model.version, "count": len(examples), "instances": examples}
    )


@router.get("/{name}/examples/{index}", responses=errors(401, 403, 404, 422, 503), openapi_extra=BEARER)
async def get_example(name: str, index: int, request: Request, _: ReadPrincipal) -> Response:
    """One held-out row by its 0-based index."""
    served = served_model(request, name)
    return json_response(
        {
            "model": name,
            "version": served.model.version,
            "index": index,
            "count": len(served.model.examples),
            "instance": _example(served, index),
        }
    )


@router.post(
    "/{name}/examples/{index}/predict",
    responses=errors(401, 403, 404, 422, 503, 504),
    openapi_extra=BEARER,
)
async def predict_example(name: str, index: int, request: Request) -> Response:
    """Predict one held-out row by its index; the response adds ``index`` and ``instance``."""
    settings: Settings = request.app.state.settings
    try:
        async with asyncio.timeout(settings.request_timeout_seconds):
            start = time.perf_counter()
            caller = await authorize(request, "predict")
            served = served_model(request, name)
            instance = _example(served, index)
            columns = validate(served, [instance])
            return await answer(
                request, served, caller, columns, start, {"index": index, "instance": instance}
            )
    except TimeoutError:
        raise _timeout(settings) from None
