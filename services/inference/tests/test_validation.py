"""Bad input: every case is a 4xx JSON error that names the field and row; none is a 5xx; limits hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

OK = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _with(**changes: Any) -> dict[str, Any]:
    row = {**OK, **changes}
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()

# (name, raw body, expected status)
BAD_BODIES: list[tuple[str, bytes, int]] = [
    ("empty body", b"", 400),
    ("not json", b"hello", 400),
    ("truncated json", b'{"instances": [', 400),
    ("json string", b'"x"', 422),
    ("json number", b"42", 422),
    ("json null", b"null", 422),
    ("json array", b"[1, 2]", 422),
    ("instances not a list", b'{"instances": {"a": 1}}', 422),
    ("instances empty", b'{"instances": []}', 422),
    ("instance is a number", b'{"instances": [1]}', 422),
    ("instance is null", b'{"instances": [null]}', 422),
    ("instance is a list", b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', 422),
    ("NaN", json.dumps(_with(sepal_length=float("nan"))).encode(), 422),
    ("Infinity", json.dumps(_with(sepal_length=float("inf"))).encode(), 422),
    ("-Infinity", json.dumps(_with(petal_width=float("-inf"))).encode(), 422),
    ("1e400", b'{"sepal_length": 1e400, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', 422),
    ("-1e400", b'{"sepal_length": -1e400, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', 422),
    (
        "huge integer",
        b'{"sepal_length": 1'
        + b"0" * 400
        + b', "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        422,
    ),
    ("false for a number", json.dumps(_with(sepal_length=False)).encode(), 422),
    ("true for a number", json.dumps(_with(sepal_width=True)).encode(), 422),
    ("string for a number", json.dumps(_with(sepal_length="5.1")).encode(), 422),
    ("empty string for a number", json.dumps(_with(sepal_length="")).encode(), 422),
    ("list for a number", json.dumps(_with(sepal_length=[5.1])).encode(), 422),
    ("object for a number", json.dumps(_with(sepal_length={"v": 5.1})).encode(), 422),
    ("null for a required number", json.dumps(_with(sepal_length=None)).encode(), 422),
    ("missing feature", json.dumps(_with(petal_width=_DROP)).encode(), 422),
    ("all features missing", b"{}", 422),
    ("unknown feature", json.dumps(_with(color="red")).encode(), 422),
    ("misspelled feature", json.dumps({**_with(sepal_length=_DROP), "sepal_lenght": 5.1}).encode(), 422),
    ("second row bad", json.dumps({"instances": [OK, _with(petal_length="x")]}).encode(), 422),
    (
        "lone surrogate",
        b'{"sepal_length": "\\ud800", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        422,
    ),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, 400),
    ("invalid utf-8", b'{"sepal_length": "\xff\xfe"}', 400),
]


@pytest.mark.parametrize(("case", "body", "status"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_a_4xx_json_error_never_a_5xx(
    shared_client: TestClient, signer: Any, case: str, body: bytes, status: int
) -> None:
    response = shared_client.post(
        "/v1/models/iris/predict",
        content=body,
        headers={**signer.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"] == "application/json"
    assert "detail" in response.json()


def test_there_are_at_least_thirty_bad_inputs() -> None:
    assert len(BAD_BODIES) >= 30


def test_errors_name_each_offending_field_and_row(client: TestClient, signer: Any) -> None:
    body = (
        b'{"instances": ['
        b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},'
        b'{"sepal_length": NaN, "sepal_width": false, "petal_length": "1.4", "bogus": 1}]}'
    )
    response = client.post("/v1/models/iris/predict", content=body, headers=signer.headers())
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "instances", 1, "sepal_length"],
                "msg": "must be a finite number (NaN, Infinity and overflowing values are not)",
                "type": "finite_number",
            },
            {
                "loc": ["body", "instances", 1, "sepal_width"],
                "msg": "expected a number, got a boolean",
                "type": "number_type",
            },
            {
                "loc": ["body", "instances", 1, "petal_length"],
                "msg": "expected a number, got a string",
                "type": "number_type",
            },
            {"loc": ["body", "instances", 1, "petal_width"], "msg": "field required", "type": "missing"},
            {"loc": ["body", "instances", 1, "bogus"], "msg": "unknown feature", "type": "extra_forbidden"},
        ]
    }


def test_false_is_never_read_as_zero(client: TestClient, signer: Any) -> None:
    response = client.post("/v1/models/iris/predict", json=_with(petal_width=False), headers=signer.headers())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "instances", 0, "petal_width"]


def test_body_over_the_limit_is_413(client: TestClient, signer: Any) -> None:
    big = b'{"instances": [' + b",".join([json.dumps(OK).encode()] * 20_000) + b"]}"
    assert len(big) > 1 << 20
    response = client.post("/v1/models/iris/predict", content=big, headers=signer.headers())
    assert response.status_code == 413
    assert response.json() == {"detail": "request body exceeds 1048576 bytes"}


def test_chunked_body_over_the_limit_is_413_while_reading(client: TestClient, signer: Any) -> None:
    def chunks() -> Any:
        for _ in range(300):
            yield b" " * 4096  # 1.2 MB of whitespace, no Content-Length

    response = client.post("/v1/models/iris/predict", content=chunks(), headers=signer.headers())
    assert response.status_code == 413


def test_too_many_instances(client: TestClient, signer: Any) -> None:
    response = client.post(
        "/v1/models/iris/predict", json={"instances": [OK] * 1001}, headers=signer.headers()
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "too many instances: 1001 in one request, at most 1000"}


def test_many_bad_rows_give_a_bounded_error_list(client: TestClient, signer: Any) -> None:
    rows = [_with(sepal_length="x", sepal_width="y")] * 1000
    response = client.post("/v1/models/iris/predict", json={"instances": rows}, headers=signer.headers())
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 101
    assert detail[-1] == {
        "loc": ["body", "instances"],
        "msg": "1900 more errors not shown",
        "type": "too_many_errors",
    }


def test_text_longer_than_the_cap_and_wrong_string_types(
    make_client: Callable[..., Any], mixed_artifact: Callable[..., Path], tmp_path: Path, signer: Any
) -> None:
    model_dir = tmp_path / "models"
    mixed_artifact(model_dir, "notes", "regression", text_feature=True)
    good = {"age": 30, "income": 40_000, "city": "paris", "note": "short"}
    with make_client(model_dir, max_text_length=20) as client:
        ok = client.post("/v1/models/notes/predict", json=good, headers=signer.headers())
        assert ok.status_code == 200, ok.text
        rows = [{**good, "note": "x" * 21}, {**good, "city": 3}, {**good, "income": None, "city": None}]
        response = client.post("/v1/models/notes/predict", json={"instances": rows}, headers=signer.headers())
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "instances", 0, "note"],
            "msg": "text longer than 20 characters",
            "type": "string_too_long",
        },
        {
            "loc": ["body", "instances", 1, "city"],
            "msg": "expected a string, got a number",
            "type": "string_type",
        },
        {"loc": ["body", "instances", 2, "city"], "msg": "null is not allowed", "type": "null"},
    ]


def test_request_timeout_is_a_504_json(
    make_client: Callable[..., Any], tiny_model_dir: Path, signer: Any
) -> None:
    with make_client(tiny_model_dir, request_timeout_seconds=0.05) as client:

        def slow_body() -> Any:
            import time

            yield b'{"instances": ['
            time.sleep(0.3)
            yield json.dumps(OK).encode() + b"]}"

        response = client.post("/v1/models/iris/predict", content=slow_body(), headers=signer.headers())
    assert response.status_code == 504
    assert response.json() == {"detail": "request timed out after 0.05 s"}


def test_unknown_model_is_404_after_auth(client: TestClient, signer: Any) -> None:
    assert client.post("/v1/models/nope/predict", json=OK).status_code == 401
    response = client.post("/v1/models/nope/predict", json=OK, headers=signer.headers())
    assert response.status_code == 404
    assert response.json() == {"detail": "model 'nope' not found"}
