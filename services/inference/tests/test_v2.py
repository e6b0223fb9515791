"""Open Inference Protocol V2: responses match the spec's JSON shapes; errors are {"error": "..."}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from modelberth_core import contract

# The REST shapes of https://github.com/kserve/open-inference-protocol (rest_predict_v2.yaml), strict here.
TENSOR_META = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ]
        },
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "server_metadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
    "model_ready": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "model_metadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": TENSOR_META},
            "outputs": {"type": "array", "items": TENSOR_META},
        },
    },
    "infer_response": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "additionalProperties": False,
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype", "data"],
                    "properties": {
                        **TENSOR_META["properties"],
                        "parameters": {"type": "object"},
                        "data": {"type": "array"},
                    },
                },
            },
        },
    },
    "error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": {"type": "string"}},
    },
}

ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.2, "sepal_width": 2.9, "petal_length": 4.3, "petal_width": 1.3},
    {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3},
]


def check(schema: str, body: Any) -> None:
    errors = list(Draft202012Validator(SCHEMAS[schema]).iter_errors(body))
    assert not errors, [e.message for e in errors]


def _inputs(rows: list[dict[str, Any]], datatype: str = "FP64", column: bool = False) -> list[dict[str, Any]]:
    out = []
    for name in rows[0]:
        data = [r[name] for r in rows]
        shape = [len(rows), 1] if column else [len(rows)]
        out.append(
            {
                "name": name,
                "shape": shape,
                "datatype": datatype,
                "data": [[v] for v in data] if column else data,
            }
        )
    return out


def test_server_endpoints(shared_client: TestClient) -> None:
    check("server_metadata", shared_client.get("/v2").json())
    check("live", shared_client.get("/v2/health/live").json())
    ready = shared_client.get("/v2/health/ready")
    assert ready.status_code == 200
    check("ready", ready.json())
    assert ready.json() == {"ready": True}


def test_model_metadata_and_ready(shared_client: TestClient, signer: Any) -> None:
    headers = signer.headers("models:read")
    meta = shared_client.get("/v2/models/iris", headers=headers).json()
    check("model_metadata", meta)
    assert [i["name"] for i in meta["inputs"]] == list(ROWS[0])
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("predict", "BYTES", [-1]),
        ("predict_proba", "FP64", [-1, 3]),
    ]
    version = meta["versions"][0]
    check("model_metadata", shared_client.get(f"/v2/models/iris/versions/{version}", headers=headers).json())
    ready = shared_client.get("/v2/models/iris/ready", headers=headers)
    check("model_ready", ready.json())
    check(
        "model_ready", shared_client.get(f"/v2/models/iris/versions/{version}/ready", headers=headers).json()
    )
    missing = shared_client.get("/v2/models/iris/versions/19990101T000000Z", headers=headers)
    assert missing.status_code == 404
    check("error", missing.json())


def test_infer_matches_the_pipeline(shared_client: TestClient, signer: Any) -> None:
    meta = shared_client.get("/v2/models/iris", headers=signer.headers()).json()
    request = {
        "id": "req-1",
        "inputs": _inputs(ROWS),
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    response = shared_client.post("/v2/models/iris/infer", json=request, headers=signer.headers("predict"))
    assert response.status_code == 200
    body = response.json()
    check("infer_response", body)
    assert (body["model_name"], body["id"]) == ("iris", "req-1")
    assert body["model_version"] == meta["versions"][0]
    predict, proba = body["outputs"]
    assert (predict["name"], predict["shape"], predict["datatype"]) == ("predict", [3], "BYTES")
    assert (proba["name"], proba["shape"], proba["datatype"]) == ("predict_proba", [3, 3], "FP64")
    v1 = shared_client.post(
        "/v1/models/iris/predict", json={"instances": ROWS}, headers=signer.headers()
    ).json()
    assert predict["data"] == v1["predictions"]
    expected = [p for row in v1["probabilities"] for p in row.values()]
    np.testing.assert_allclose(proba["data"], expected, rtol=1e-12)


def test_infer_defaults_to_predict_and_accepts_column_shapes_and_ints(
    shared_client: TestClient, signer: Any
) -> None:
    rows = [{k: int(v) for k, v in ROWS[2].items()}]
    request = {"inputs": _inputs(rows, datatype="INT64", column=True), "parameters": {"content_type": "pd"}}
    body = shared_client.post("/v2/models/iris/infer", json=request, headers=signer.headers()).json()
    check("infer_response", body)
    assert [o["name"] for o in body["outputs"]] == ["predict"]


def test_infer_with_a_version_in_the_path(shared_client: TestClient, signer: Any) -> None:
    version = shared_client.get("/v2/models/iris", headers=signer.headers()).json()["versions"][0]
    ok = shared_client.post(
        f"/v2/models/iris/versions/{version}/infer", json={"inputs": _inputs(ROWS)}, headers=signer.headers()
    )
    assert ok.status_code == 200
    stale = shared_client.post(
        "/v2/models/iris/versions/19990101T000000Z/infer",
        json={"inputs": _inputs(ROWS)},
        headers=signer.headers(),
    )
    assert stale.status_code == 404
    check("error", stale.json())


def _bad_requests() -> list[tuple[str, Any, int, str]]:
    good = _inputs(ROWS)
    no_width = [i for i in good if i["name"] != "petal_width"]
    return [
        ("not an object", [1, 2], 400, "expected an inference request object"),
        ("no inputs", {}, 400, "inputs must be a non-empty array"),
        (
            "bool datatype for a number",
            {"inputs": [{**good[0], "datatype": "BOOL"}, *good[1:]]},
            400,
            "input 'sepal_length': datatype BOOL is not numeric (use FP64, FP32 or INT64)",
        ),
        (
            "missing input",
            {"inputs": no_width},
            422,
            "input 'petal_width' row 0: field required; input 'petal_width' row 1: field required; "
            "input 'petal_width' row 2: field required",
        ),
        (
            "unknown input",
            {"inputs": [*good, {**good[0], "name": "colour"}]},
            422,
            "input 'colour': unknown input",
        ),
        (
            "shape disagrees with data",
            {"inputs": [{**good[0], "shape": [5]}, *good[1:]]},
            400,
            "input 'sepal_length': data has 3 elements, shape says 5",
        ),
        (
            "two-column shape",
            {"inputs": [{**good[0], "shape": [3, 2]}, *good[1:]]},
            400,
            "input 'sepal_length': one column per input; expected shape [n] or [n, 1]",
        ),
        (
            "ragged inputs",
            {"inputs": [{**good[0], "shape": [2], "data": [1.0, 2.0]}, *good[1:]]},
            400,
            "input 'sepal_width': 3 rows, other inputs have 2",
        ),
        (
            "boolean values",
            {"inputs": [{**good[0], "data": [True, False, True]}, *good[1:]]},
            422,
            "input 'sepal_length' row 0: expected a number, got a boolean; "
            "input 'sepal_length' row 1: expected a number, got a boolean; "
            "input 'sepal_length' row 2: expected a number, got a boolean",
        ),
        (
            "unknown output",
            {"inputs": good, "outputs": [{"name": "logits"}]},
            400,
            "unknown output 'logits'; this model has predict and predict_proba",
        ),
        ("duplicate input", {"inputs": [*good, good[0]]}, 400, "input 'sepal_length' given twice"),
    ]


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), _bad_requests(), ids=[c[0] for c in _bad_requests()]
)
def test_infer_errors_use_the_v2_error_shape(
    shared_client: TestClient, signer: Any, case: str, body: Any, status: int, message: str
) -> None:
    response = shared_client.post("/v2/models/iris/infer", json=body, headers=signer.headers())
    assert response.status_code == status, response.text
    check("error", response.json())
    assert response.json()["error"] == message


def test_infer_nan_body_and_unknown_model(shared_client: TestClient, signer: Any) -> None:
    raw = b'{"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [NaN]}]}'
    response = shared_client.post("/v2/models/iris/infer", content=raw, headers=signer.headers())
    assert response.status_code == 422
    assert response.json()["error"].startswith("input 'sepal_length' row 0: must be a finite number")
    unknown = shared_client.post(
        "/v2/models/nope/infer", json={"inputs": _inputs(ROWS)}, headers=signer.headers()
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "model 'nope' not found"}
    garbage = shared_client.post("/v2/models/iris/infer", content=b"{", headers=signer.headers())
    assert garbage.status_code == 400
    check("error", garbage.json())
    too_big = shared_client.post(
        "/v2/models/iris/infer", content=b" " * ((1 << 20) + 1), headers=signer.headers()
    )
    assert too_big.status_code == 413
    check("error", too_big.json())


def test_categorical_inputs_are_bytes(
    make_client: Any, mixed_artifact: Any, tmp_path: Path, signer: Any
) -> None:
    model_dir = tmp_path / "models"
    mixed_artifact(model_dir, "churn", "classification")
    inputs = [
        {"name": "age", "shape": [2], "datatype": "FP32", "data": [30.0, 70.0]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [None, 60_000]},
        {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["paris", "nice"]},
    ]
    with make_client(model_dir) as client:
        body = client.post("/v2/models/churn/infer", json={"inputs": inputs}, headers=signer.headers()).json()
        wrong = client.post(
            "/v2/models/churn/infer",
            json={"inputs": [*inputs[:2], {**inputs[2], "datatype": "FP64"}]},
            headers=signer.headers(),
        )
    check("infer_response", body)
    version_dir = model_dir / "churn" / str(contract.resolve_latest(model_dir, "churn"))
    pipeline = joblib.load(version_dir / contract.MODEL_FILE)
    frame = pd.DataFrame({"age": [30.0, 70.0], "income": [np.nan, 60_000.0], "city": ["paris", "nice"]})
    assert body["outputs"][0]["data"] == [str(p) for p in pipeline.predict(frame)]
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "input 'city': datatype FP64 is not BYTES (this feature is a string)"}
