"""The OpenAPI document, made to tell the truth (issue 13): every status a route can answer, with the error
shape it really has, and a request schema per served model, so a contract fuzzer (schemathesis with
``--checks all``) finds the server doing exactly what the document says.

Routes declare their statuses with :func:`errors` (V1 ``{"detail": ...}``) or ``errors(..., v2=True)``
(the protocol's ``{"error": "..."}``) and :data:`BEARER` when they need a token. :func:`install_openapi`
then writes, for each served model, its own paths (``/v1/models/iris/predict``) with the model's feature
schema, instead of one ``{name}`` template whose body could only say "an object". The document is rebuilt
when the set of served versions changes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from modelberth_core.contract import NAME_PATTERN, FeatureSpec, ModelCard
from modelberth_inference.types import NUMERIC_DATATYPES, OUTPUTS
from modelberth_inference.validation import MAX_ABS_NUMBER

BEARER: Final[dict[str, Any]] = {"security": [{"bearer": []}]}
"""``openapi_extra`` of a route that needs a bearer token."""

_DESCRIPTIONS: Final = {
    400: "The body is not JSON (or not the protocol's shape), or a header is malformed.",
    401: "No valid bearer token.",
    403: "The token lacks the scope this call needs.",
    404: "No such model, version, example or report.",
    409: "The version could not be loaded; the previous one keeps serving.",
    413: "The body is larger than the server accepts.",
    415: "The request declares a Content-Type that is not JSON.",
    422: "A value does not match the model's schema, or the model cannot compute its output.",
    429: "The model's queue is full (INFERENCE_MAX_QUEUED requests in progress): retry after Retry-After.",
    503: "Token keys or the model are not loaded yet.",
    504: "The request took longer than the server's time budget.",
}
V1_ERROR: Final = "#/components/schemas/Error"
V2_ERROR: Final = "#/components/schemas/ErrorV2"
ID_PATTERN: Final = "^[^\\ud800-\\udfff]*$"
"""A V2 request ``id``: no lone surrogate (the answer repeats it, so it must encode as UTF-8)."""

_COMPONENTS: Final[dict[str, Any]] = {
    "schemas": {
        "ValidationIssue": {
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                "msg": {"type": "string"},
                "type": {"type": "string"},
            },
        },
        "Error": {
            "type": "object",
            "description": "Every V1 error: a sentence, or one entry per offending value (never the value).",
            "required": ["detail"],
            "additionalProperties": False,
            "properties": {
                "detail": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/ValidationIssue"}},
                    ]
                }
            },
        },
        "ErrorV2": {
            "type": "object",
            "description": "Every V2 error, as the Open Inference Protocol defines it.",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {"error": {"type": "string"}},
        },
        "InputWarning": {
            "type": "object",
            "required": ["row", "feature", "kind", "detail"],
            "properties": {
                "row": {"type": "integer", "minimum": 0},
                "feature": {"type": "string"},
                "kind": {"enum": ["out_of_range", "unseen_category"]},
                "detail": {"type": "string"},
            },
        },
    },
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
}


def errors(*statuses: int, v2: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the protocol's error body (and its required headers)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": V2_ERROR if v2 else V1_ERROR}}},
        }
        if status == 401:
            entry["headers"] = {
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "RFC 6750",
                }
            }
        if status == 429:
            entry["headers"] = {
                "Retry-After": {"required": True, "schema": {"type": "string"}, "description": "seconds"}
            }
        if status == 415:
            entry["headers"] = {
                "Accept": {"required": True, "schema": {"type": "string"}, "description": "types accepted"}
            }
        out[status] = entry
    return out


# -- per-model schemas --------------------------------------------------------------------------------


def _number(nullable: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number", "minimum": -MAX_ABS_NUMBER, "maximum": MAX_ABS_NUMBER}
    return _nullable(schema) if nullable else schema


def _string(spec: FeatureSpec, max_text_length: int, nullable: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if spec.type == "text":
        schema["maxLength"] = max_text_length
    if spec.categories:
        schema["examples"] = list(spec.categories)  # an unseen category is predicted, with a warning
    return _nullable(schema) if nullable else schema


def _value(spec: FeatureSpec, max_text_length: int) -> dict[str, Any]:
    nullable = not spec.required
    return _number(nullable) if spec.type == "numeric" else _string(spec, max_text_length, nullable)


def instance_schema(features: list[FeatureSpec], max_text_length: int) -> dict[str, Any]:
    """One V1 instance: each feature typed, the required ones required, nothing else."""
    return {
        "type": "object",
        "properties": {f.name: _value(f, max_text_length) for f in features},
        "required": [f.name for f in features if f.required],
        "additionalProperties": False,
    }


def v1_body(features: list[FeatureSpec], max_instances: int, max_text_length: int) -> dict[str, Any]:
    """``{"instances": [...]}`` (other top-level keys are ignored) or one instance."""
    instance = instance_schema(features, max_text_length)
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "instances": {
                        "type": "array",
                        "items": instance,
                        "minItems": 1,
                        "maxItems": max_instances,
                    }
                },
                "required": ["instances"],
            },
            instance,
        ]
    }


def v1_answer(classes: list[str] | None, task: str) -> dict[str, Any]:
    """The 200 body of a V1 prediction."""
    properties: dict[str, Any] = {
        "model": {"type": "string"},
        "version": {"type": "string"},
        "predictions": {
            "type": "array",
            "items": {"type": "number"} if task == "regression" else {"enum": list(classes or [])},
        },
        "warnings": {"type": "array", "items": {"$ref": "#/components/schemas/InputWarning"}},
        "index": {"type": "integer"},
        "instance": {"type": "object"},
    }
    if task != "regression" and classes:
        probability = {"type": "number", "minimum": 0.0, "maximum": 1.0}
        properties["probabilities"] = {
            "type": "array",
            "items": {
                "type": "object",
                "properties": dict.fromkeys(classes, probability),
                "required": list(classes),
                "additionalProperties": False,
            },
        }
    return {
        "type": "object",
        "required": ["model", "version", "predictions", "warnings"],
        "properties": properties,
    }


def _v2_input(spec: FeatureSpec, max_text_length: int, numeric_types: list[str]) -> dict[str, Any]:
    value = _value(spec, max_text_length)
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"const": spec.name},
            "shape": {"type": "array", "items": {"const": 1}, "minItems": 1, "maxItems": 2},
            "datatype": {"enum": numeric_types} if spec.type == "numeric" else {"const": "BYTES"},
            "data": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {"anyOf": [value, {"type": "array", "items": value, "minItems": 1, "maxItems": 1}]},
            },
        },
    }


def v2_body(
    features: list[FeatureSpec], outputs: list[str], max_text_length: int, numeric_types: list[str]
) -> dict[str, Any]:
    """A V2 request for one row: one input per feature in card order (``content_type`` ``pd``), or one
    ``[1, F]`` tensor whose columns are the features in card order (``np``).

    The server takes n rows (``shape: [n]`` or ``[n, F]``) and per-feature inputs in any order; JSON Schema
    cannot tie ``shape`` to the length of ``data`` or one input's length to another's, so the document
    describes the one-row forms exactly (a fuzzer's valid requests are then really valid).
    """
    per_feature = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "type": "array",
                "prefixItems": [_v2_input(f, max_text_length, numeric_types) for f in features],
                "items": False,
                "minItems": len(features),
            },
            "parameters": _nullable(
                {"type": "object", "properties": {"content_type": _nullable({"const": "pd"})}}
            ),
        },
    }
    one_tensor = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "type": "array",
                "prefixItems": [_v2_tensor(features, max_text_length, numeric_types)],
                "items": False,
                "minItems": 1,
            },
            "parameters": _nullable(
                {"type": "object", "properties": {"content_type": _nullable({"const": "np"})}}
            ),
        },
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "description": "One row shown; n rows are `shape: [n]` (or `[n, F]`) with n values per feature.",
        "anyOf": [per_feature, one_tensor],
        "properties": {
            "id": _nullable({"type": "string", "maxLength": 256, "pattern": ID_PATTERN}),
            "inputs": {"type": "array", "items": {"type": "object"}, "minItems": 1},
            "outputs": _nullable(
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"enum": outputs}},
                    },
                }
            ),
            "parameters": _nullable({"type": "object"}),
        },
    }


def _v2_tensor(features: list[FeatureSpec], max_text_length: int, numeric_types: list[str]) -> dict[str, Any]:
    """One ``[1, F]`` input: its columns are the card's features in order (named anything but a feature)."""
    numeric = all(f.type == "numeric" for f in features)
    values = [
        (
            _value(f, max_text_length)
            if numeric or f.type != "numeric"
            else {
                "anyOf": [
                    _value(f, max_text_length),
                    {"type": "string", "pattern": "^-?[0-9]{1,6}(\\.[0-9]{1,6})?$"},
                ]
            }
        )
        for f in features
    ]
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "not": {"enum": [f.name for f in features]}},
            "shape": {"const": [1, len(features)]},
            "datatype": {"enum": numeric_types} if numeric else {"const": "BYTES"},
            "data": {
                "type": "array",
                "prefixItems": values,
                "items": False,
                "minItems": len(features),
            },
            "parameters": _nullable({"type": "object"}),
        },
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (the server reads an explicit null as the field's absence)."""
    return {"anyOf": [schema, {"type": "null"}]}


def v2_answer(outputs: list[str]) -> dict[str, Any]:
    """The 200 body of a V2 inference."""
    return {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype", "data"],
                    "properties": {
                        "name": {"enum": outputs},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "datatype": {"enum": ["FP64", "BYTES"]},
                        "data": {"type": "array", "items": {"type": ["number", "string"]}},
                    },
                },
            },
            "parameters": {"type": "object"},
        },
    }


# -- the document -------------------------------------------------------------------------------------


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


@dataclass(frozen=True, slots=True)
class _Target:
    """What a path's schemas are written from: one version's card, its outputs and its example count."""

    card: ModelCard
    has_proba: bool
    examples: int = 0

    @classmethod
    def of(cls, model: Any) -> _Target:
        """The target of a loaded version."""
        return cls(model.card, model.has_proba, len(model.examples))

    def schema_key(self) -> str:
        """Equal for versions whose requests and answers the document describes the same way."""
        features = [(f.name, f.type, f.required, f.categories) for f in self.card.features]
        return json.dumps([self.card.task, self.card.classes, features, self.has_proba])


def _specialise(
    template: str, operation: dict[str, Any], target: _Target, settings: Any, ref: str | list[str] | None
) -> None:
    """Write one model's schemas into a copy of a templated operation; ``ref`` is the version path
    segment: the values the ``{version}`` parameter takes (a list), or the one it is replaced by (a str)."""
    card = target.card
    params = [p for p in operation.get("parameters", []) if p["name"] != "name"]
    if isinstance(ref, str):
        params = [p for p in params if p["name"] != "version"]
    for param in params:
        if param["name"] == "version":
            param["schema"] = {"type": "string", "enum": ref}
        elif param["name"] == "index":
            count = target.examples
            param["schema"] = {"type": "integer", "minimum": 0, **({"maximum": count - 1} if count else {})}
    operation["parameters"] = params
    suffix = card.name if not isinstance(ref, str) else f"{card.name}_{ref.replace('-', '_')}"
    operation["operationId"] = f"{operation.get('operationId', 'op')}_{suffix}"
    ok = operation["responses"].get("200", {})
    if template.endswith("/predict"):
        if not template.endswith("/{index}/predict"):  # the example routes take no body
            operation["requestBody"] = _json_body(
                v1_body(card.features, settings.max_instances, settings.max_text_length)
            )
        ok["content"] = {"application/json": {"schema": v1_answer(card.classes, card.task)}}
    elif template.endswith("/infer"):
        outputs = [o for o in OUTPUTS if o != "predict_proba" or target.has_proba]
        operation["requestBody"] = _json_body(
            v2_body(card.features, outputs, settings.max_text_length, sorted(NUMERIC_DATATYPES))
        )
        ok["content"] = {"application/json": {"schema": v2_answer(outputs)}}


def version_paths(registry: Any, served: Any) -> tuple[list[str], dict[str, _Target]]:
    """How a model's ``{version}`` paths are documented: the path segments (version ids and aliases) that
    name a version taking the served version's requests, which share one templated path with that list as
    the parameter's values; and every other segment, with its version, each on a path of its own (its
    schemas may differ). A version that cannot be loaded now (409) is left out."""
    model = served.model
    name = model.name
    versions, aliases = registry.versions.catalogue(name)
    refs = {**{v: v for v in versions}, **aliases, model.version: model.version}
    followed = registry.reference(name).alias
    if followed is not None:
        refs[followed] = model.version  # the alias a model follows names the served version, moved or not
    served_target = _Target.of(model)
    same: list[str] = []
    other: dict[str, _Target] = {}
    for ref, version in sorted(refs.items()):
        if version == model.version:
            same.append(ref)
            continue
        held = registry.versions.held.get(name, {}).get(version)
        if held is not None:
            target = _Target.of(held.model)
        else:
            card = registry.versions.card(name, version)
            if card is None or registry.versions.refused(name, version):
                continue
            target = _Target(card, card.task != "regression")
        if target.schema_key() == served_target.schema_key():
            same.append(ref)
        else:
            other[ref] = target
    return same, other


def build_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document for the models it serves now."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(copy.deepcopy(_COMPONENTS["schemas"]))
    components["securitySchemes"] = copy.deepcopy(_COMPONENTS["securitySchemes"])
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's; our routes declare their 422
        components["schemas"].pop(unused, None)
    registry = app.state.registry
    settings = app.state.settings
    served = sorted(registry.models.items())
    refs = {name: version_paths(registry, model) for name, model in served}
    paths: dict[str, Any] = {}
    for template, operations in doc["paths"].items():
        if "{name}" not in template:
            paths[template] = operations
            continue
        if not served:  # nothing loaded yet: the templates, with the name's pattern
            for operation in operations.values():
                for param in operation.get("parameters", []):
                    if param["name"] == "name":
                        param["schema"] = {"type": "string", "pattern": NAME_PATTERN}
            paths[template] = operations
            continue
        for name, model in served:
            variants: list[tuple[str, _Target, str | list[str] | None]] = []
            if "{version}" in template:
                same, other = refs[name]
                variants.append((template, _Target.of(model.model), same))
                variants += [(template.replace("{version}", ref), t, ref) for ref, t in other.items()]
            else:
                variants.append((template, _Target.of(model.model), None))
            for path, target, ref in variants:
                concrete = {}
                for method, operation in operations.items():
                    copied = copy.deepcopy(operation)
                    _specialise(template, copied, target, settings, ref)
                    concrete[method] = copied
                paths[path.replace("{name}", name)] = concrete
    doc["paths"] = paths
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`build_document` at ``/openapi.json``, rebuilt when the served versions, or the versions
    and aliases that the ``{version}`` paths name, change."""
    cache: dict[tuple[tuple[str, str, str, str], ...], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        registry = app.state.registry
        parts = []
        for name, served in sorted(registry.models.items()):
            same, other = version_paths(registry, served)
            others = ",".join(f"{ref}={t.card.version}" for ref, t in other.items())
            parts.append((name, served.model.version, ",".join(same), others))
        key = tuple(parts)
        if key not in cache:
            cache.clear()
            cache[key] = build_document(app)
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
