"""V2 REST's binary tensor data extension (what tritonclient and KServe's client send by default): the
body is a JSON part of ``Inference-Header-Content-Length`` bytes, then each input with
``parameters.binary_data_size`` takes that many raw bytes, in order (little-endian elements; BYTES
length-prefixed), as gRPC's ``raw_input_contents``. Every malformed shape of it is a clear 400."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float64)
OUTPUTS = [{"name": "predict"}, {"name": "predict_proba"}]
PATH = "/v2/models/iris/infer"


def _binary(
    inputs: list[dict[str, Any]], raw: bytes, header: str | None = None
) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps({"inputs": inputs, "outputs": OUTPUTS})
    return head + raw, {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def _matrix_input(rows: np.ndarray, datatype: str = "FP64", size: Any = None) -> dict[str, Any]:
    raw_size = rows.nbytes if size is None else size
    return {
        "name": "input-0",
        "shape": list(rows.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": raw_size},
    }


def _post(client: TestClient, signer: Any, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(PATH, content=body, headers={**signer.headers(), **headers})


def _json_answer(client: TestClient, signer: Any) -> list[dict[str, Any]]:
    body = {
        "inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": ROWS.ravel().tolist()}],
        "outputs": OUTPUTS,
    }
    answer = client.post(PATH, json=body, headers=signer.headers())
    assert answer.status_code == 200, answer.text
    outputs: list[dict[str, Any]] = answer.json()["outputs"]
    return outputs


def test_one_binary_matrix_answers_as_its_json_form(shared_client: TestClient, signer: Any) -> None:
    expected = _json_answer(shared_client, signer)
    for datatype, dtype in [("FP64", "<f8"), ("FP32", "<f4")]:
        rows = ROWS.astype(dtype)
        body, headers = _binary([_matrix_input(rows, datatype)], rows.tobytes())
        answer = _post(shared_client, signer, body, headers)
        assert answer.status_code == 200, answer.text
        outputs = answer.json()["outputs"]
        assert outputs[0] == expected[0]
        np.testing.assert_allclose(outputs[1]["data"], expected[1]["data"], rtol=1e-6)


def test_binary_and_json_inputs_mix_per_feature(shared_client: TestClient, signer: Any) -> None:
    expected = _json_answer(shared_client, signer)
    inputs: list[dict[str, Any]] = []
    raw = b""
    for j, name in enumerate(FEATURES):
        column = np.ascontiguousarray(ROWS[:, j])
        if j % 2:  # odd features as JSON data, even ones binary
            inputs.append({"name": name, "shape": [3], "datatype": "FP64", "data": column.tolist()})
        else:
            inputs.append(
                {"name": name, "shape": [3], "datatype": "FP64", "parameters": {"binary_data_size": 24}}
            )
            raw += column.tobytes()
    body, headers = _binary(inputs, raw)
    answer = _post(shared_client, signer, body, headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == expected


BAD_HEADERS = [
    "",
    "abc",
    "-1",
    "+96",
    " 96",
    "96 ",
    "9.6",
    "0x60",
    "٩٦",
    "²",
    "9" * 5000,
    "99999999999999999999",
]


@pytest.mark.parametrize("header", BAD_HEADERS)
def test_a_header_that_is_not_the_json_length_is_400(
    shared_client: TestClient, signer: Any, header: str
) -> None:
    body, headers = _binary([_matrix_input(ROWS)], ROWS.tobytes())
    raw_header = {"Inference-Header-Content-Length": header.encode()}  # as bytes: UTF-8 digits arrive as is
    answer = shared_client.post(PATH, content=body, headers={**signer.headers(), **headers, **raw_header})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("Inference-Header-Content-Length must be the length in bytes")
    assert header not in answer.json()["error"] or header == ""


def test_every_split_of_the_body_is_a_clean_answer(shared_client: TestClient, signer: Any) -> None:
    """Each length from 0 to the whole body: only the right one predicts, every other is a 400 (no 5xx)."""
    body, headers = _binary([_matrix_input(ROWS)], ROWS.tobytes())
    right = int(headers["Inference-Header-Content-Length"])
    for length in range(len(body) + 1):
        answer = _post(
            shared_client, signer, body, {**headers, "Inference-Header-Content-Length": str(length)}
        )
        assert answer.status_code == (200 if length == right else 400), (length, answer.text)
        assert set(answer.json()) == (
            {"model_name", "model_version", "outputs"} if length == right else {"error"}
        )


CASES: dict[str, tuple[list[dict[str, Any]], bytes, str]] = {
    "fewer bytes than declared": ([_matrix_input(ROWS)], ROWS.tobytes()[:-8], "runs past the binary data"),
    "bytes left over": ([_matrix_input(ROWS)], ROWS.tobytes() + b"\0" * 8, "8 bytes of binary data"),
    "not whole elements": ([_matrix_input(ROWS, size=95)], ROWS.tobytes()[:95], "not whole FP64 elements"),
    "negative size": ([_matrix_input(ROWS, size=-8)], ROWS.tobytes(), "non-negative integer"),
    "bool size": ([_matrix_input(ROWS, size=True)], ROWS.tobytes(), "non-negative integer"),
    "float size": ([_matrix_input(ROWS, size=96.0)], ROWS.tobytes(), "non-negative integer"),
    "text size": ([_matrix_input(ROWS, size="96")], ROWS.tobytes(), "non-negative integer"),
    "data and size": ([{**_matrix_input(ROWS), "data": ROWS.ravel().tolist()}], ROWS.tobytes(), "both set"),
    "bool bytes not 0/1": (
        [{"name": "input-0", "shape": [1, 4], "datatype": "BOOL", "parameters": {"binary_data_size": 4}}],
        b"\x00\x01\x02\x00",
        "BOOL raw contents must be bytes 0 or 1",
    ),
    "bytes length past the end": (
        [{"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
        struct.pack("<I", 99) + b"ab",
        "runs past the raw contents",
    ),
    "bytes length cut": (
        [{"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "parameters": {"binary_data_size": 2}}],
        b"\x01\x00",
        "end inside an element's length",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_binary_data_is_400(shared_client: TestClient, signer: Any, case: str) -> None:
    inputs, raw, message = CASES[case]
    body, headers = _binary(inputs, raw)
    answer = _post(shared_client, signer, body, headers)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_binary_data_size_without_the_extension_is_400(shared_client: TestClient, signer: Any) -> None:
    body = orjson.dumps({"inputs": [_matrix_input(ROWS)]})
    answer = shared_client.post(PATH, content=body, headers=signer.headers())
    assert answer.status_code == 400
    assert "needs the binary tensor data extension" in answer.json()["error"]


def test_wrong_element_count_in_binary_is_refused_like_json(shared_client: TestClient, signer: Any) -> None:
    """Whole elements, but fewer than the shape says: the data plane's usual refusal, not a crash."""
    rows = ROWS[:2]
    body, headers = _binary(
        [{**_matrix_input(ROWS), "parameters": {"binary_data_size": rows.nbytes}}], rows.tobytes()
    )
    answer = _post(shared_client, signer, body, headers)
    assert answer.status_code in {400, 422}, answer.text
    assert set(answer.json()) == {"error"}


def test_binary_bytes_features_with_bad_utf8_are_clean(shared_client: TestClient, signer: Any) -> None:
    """A BYTES ``[1, 4]`` matrix in raw form whose text is not UTF-8: a 4xx, never a 5xx."""
    items = [b"\xff\xfe", b"3.5", b"1.4", b"0.2"]
    raw = b"".join(struct.pack("<I", len(item)) + item for item in items)
    inputs = [
        {
            "name": "input-0",
            "shape": [1, 4],
            "datatype": "BYTES",
            "parameters": {"binary_data_size": len(raw)},
        }
    ]
    body, headers = _binary(inputs, raw)
    answer = _post(shared_client, signer, body, headers)
    assert 400 <= answer.status_code < 500, answer.text
    assert "\\xff" not in answer.text
