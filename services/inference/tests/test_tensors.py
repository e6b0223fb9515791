"""V2 REST: one ``[n, F]`` tensor in the card's feature order, as MLServer's and Seldon's examples send it,
besides one input per feature; ``parameters.content_type`` (``np``, ``pd``) as MLServer defines it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
URL = "/v2/models/iris/infer"


def test_the_mlserver_example_single_tensor_is_answered(shared_client: TestClient, signer: Any) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    response = shared_client.post(URL, json=body, headers=signer.headers())
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [o["name"] for o in outputs] == ["predict"]
    v1 = shared_client.post(
        "/v1/models/iris/predict", json=dict(zip(FEATURES, ROWS[0], strict=True)), headers=signer.headers()
    )
    assert outputs[0]["data"] == v1.json()["predictions"]


@pytest.mark.parametrize(
    ("datatype", "rows"),
    [
        ("FP64", ROWS),
        ("FP32", ROWS),
        ("INT64", [[5, 3, 1, 0], [7, 3, 5, 2]]),
        ("UINT8", [[5, 3, 1, 0]]),
        ("BOOL", [[True, False, True, False]]),
    ],
)
@pytest.mark.parametrize("layout", ["flat", "nested", "np"])
def test_an_n_by_f_tensor_equals_one_input_per_feature(
    shared_client: TestClient, signer: Any, datatype: str, rows: list[list[Any]], layout: str
) -> None:
    client = shared_client
    flat = [v for row in rows for v in row]
    tensor: dict[str, Any] = {"name": "x", "shape": [len(rows), 4], "datatype": datatype}
    tensor["data"] = rows if layout == "nested" else flat
    body: dict[str, Any] = {"inputs": [tensor], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    if layout == "np":
        body["parameters"] = {"content_type": "np"}
    as_tensor = client.post(URL, json=body, headers=signer.headers())
    assert as_tensor.status_code == 200, as_tensor.text
    numbers = [[float(v) for v in row] for row in rows]
    per_feature = {
        "inputs": [
            {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": [r[j] for r in numbers]}
            for j, name in enumerate(FEATURES)
        ],
        "parameters": {"content_type": "pd"},
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    by_feature = client.post(URL, json=per_feature, headers=signer.headers())
    assert by_feature.status_code == 200, by_feature.text
    assert as_tensor.json()["outputs"] == by_feature.json()["outputs"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16", "data": ROWS[0]}],
                "parameters": False,
            },
            400,
            "parameters must be an object",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]},
            400,
            "input 'x': a single tensor must have shape [n, 4], its columns the model's features in order "
            "(sepal_length, sepal_width, petal_length, petal_width)",
        ),
        (
            {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}]},
            400,
            "input 'x': data has 4 elements, shape says 8",
        ),
        (
            {
                "inputs": [
                    {"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [[1.0, 2.0], [3.0, 4.0]]}
                ]
            },
            400,
            "input 'x': nested data does not match shape",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1.0, "2", 3.0, 4.0]}]},
            422,
            "input 'sepal_width' row 0: expected a number, got a string",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 1e300]}]},
            422,
            "input 'petal_width' row 0: must be between -1e+200 and 1e+200",
        ),
        (
            {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP64", "data": []}]},
            400,
            "inputs have no rows",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}],
                "parameters": {"content_type": "pd"},
            },
            400,
            "input 'x': one column per input; expected shape [n] or [n, 1]",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}],
                "parameters": {"content_type": "base64"},
            },
            400,
            "parameters.content_type must be np (one [n, F] tensor) or pd (one input per feature)",
        ),
        (
            {
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]},
                    {"name": "y", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]},
                ],
                "parameters": {"content_type": "np"},
            },
            400,
            "content_type np takes exactly one input: an [n, F] tensor",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FLOAT", "data": ROWS[0]}]},
            400,
            "input 'x': datatype is not an Open Inference Protocol datatype",
        ),
    ],
    ids=[
        "parameters not an object",
        "too few columns",
        "short data",
        "ragged nesting",
        "string in FP64",
        "too large",
        "no rows",
        "pd for one tensor",
        "unknown content type",
        "np with two inputs",
        "not a datatype",
    ],
)
def test_bad_tensors_are_4xx_naming_what_is_wrong(
    shared_client: TestClient, signer: Any, body: Any, status: int, message: str
) -> None:
    client = shared_client
    response = client.post(URL, json=body, headers=signer.headers())
    assert response.status_code == status, response.text
    assert response.json() == {"error": message}


def test_too_many_rows_in_one_tensor_is_422(shared_client: TestClient, signer: Any) -> None:
    client = shared_client
    n = 1001
    body = {"inputs": [{"name": "x", "shape": [n, 4], "datatype": "FP64", "data": ROWS[0] * n}]}
    response = client.post(URL, json=body, headers=signer.headers())
    assert response.status_code == 422
    assert response.json() == {"error": "too many rows: 1001 in one request, at most 1000"}


def test_a_mixed_model_takes_one_bytes_tensor(
    make_client: Callable[..., Any], tmp_path: Path, mixed_artifact: Callable[..., Path], signer: Any
) -> None:
    model_dir = tmp_path / "models"
    mixed_artifact(model_dir, "loans", "classification")
    rows: list[list[Any]] = [[40.0, 50_000.0, "paris"], [25, None, "nice"], ["61.5", "42000", "lyon"]]
    with make_client(model_dir) as client:
        url = "/v2/models/loans/infer"
        tensor = {"name": "row", "shape": [3, 3], "datatype": "BYTES", "data": rows}
        response = client.post(url, json={"inputs": [tensor]}, headers=signer.headers())
        assert response.status_code == 200, response.text
        per_feature = [
            {"name": "age", "shape": [3], "datatype": "FP64", "data": [40.0, 25.0, 61.5]},
            {"name": "income", "shape": [3], "datatype": "FP64", "data": [50_000.0, None, 42_000.0]},
            {"name": "city", "shape": [3], "datatype": "BYTES", "data": ["paris", "nice", "lyon"]},
        ]
        expected = client.post(url, json={"inputs": per_feature}, headers=signer.headers())
        assert expected.status_code == 200, expected.text
        assert response.json()["outputs"] == expected.json()["outputs"]
        numeric = {"name": "row", "shape": [1, 3], "datatype": "FP64", "data": [40.0, 1.0, 2.0]}
        refused = client.post(url, json={"inputs": [numeric]}, headers=signer.headers())
        assert refused.status_code == 400
        assert refused.json() == {
            "error": "input 'row': features city are strings: send a BYTES tensor, or one input per feature"
        }
        not_a_number = {"name": "row", "shape": [1, 3], "datatype": "BYTES", "data": ["old", 1.0, "paris"]}
        bad = client.post(url, json={"inputs": [not_a_number]}, headers=signer.headers())
        assert bad.status_code == 422
        assert bad.json() == {"error": "input 'age' row 0: expected a number, got a string"}
