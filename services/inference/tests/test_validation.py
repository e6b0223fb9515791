"""Bad input: every case is a 4xx JSON error that names the field and row; none is a 5xx; limits hold."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelberth_core.contract import FeatureSpec
from modelberth_inference.validation import MAX_ABS_NUMBER, NumericRecords, Validator

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
    assert response.status_code == 422  # the body is small; what it holds is over the limit
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "instances"],
                "msg": "too many instances: 1001 in one request, at most 1000",
                "type": "too_long",
            }
        ]
    }


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


# -- the typed decoder (Validator.decode) and the exact path must agree ---------------------------------

INSTANCE_CASES = [  # the bad bodies that are one bad row (not a bad body: invalid UTF-8 stays a 400)
    c for c in BAD_BODIES if c[1].startswith(b"{") and not c[1].startswith(b'{"instances"') and c[2] == 422
]


@pytest.mark.parametrize(
    ("case", "instance"), [(c[0], c[1]) for c in INSTANCE_CASES], ids=[c[0] for c in INSTANCE_CASES]
)
def test_a_bad_row_in_a_batch_is_named_by_its_index(
    shared_client: TestClient, signer: Any, case: str, instance: bytes
) -> None:
    body = b'{"instances": [' + json.dumps(OK).encode() + b", " + instance + b"]}"
    response = shared_client.post(
        "/v1/models/iris/predict",
        content=body,
        headers={**signer.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, (case, response.text)
    detail = response.json()["detail"]
    assert detail, case
    assert all(d["loc"][:3] == ["body", "instances", 1] for d in detail), (case, detail)


MIXED = [
    FeatureSpec(name="age", type="numeric", required=True, min=18, max=90),
    FeatureSpec(name="income", type="numeric", required=False),
    FeatureSpec(name="city", type="categorical", required=False, categories=["paris", "rome"]),
    FeatureSpec(name="note (free text)", type="text", required=True),
]

VALID_ROWS: list[dict[str, Any]] = [
    {"age": 30, "income": 40_000.5, "city": "paris", "note (free text)": "short"},
    {"age": 95.5, "income": None, "city": None, "note (free text)": ""},  # out of range, nulls
    {"age": 18, "note (free text)": "no optional fields"},  # absent optional features
    {"age": 40, "income": -1, "city": "oslo", "note (free text)": "ünïcode ✓"},  # unseen category
    {"age": 17.9, "income": 1, "city": "rome", "note (free text)": "just under the training range"},
]


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    pairs = zip(a.tolist(), b.tolist(), strict=True)
    return all(x == y or (x != x and y != y) for x, y in pairs)  # NaN equals NaN here


WARNED = {("age", 1, "out_of_range"), ("age", 4, "out_of_range"), ("city", 3, "unseen_category")}


@pytest.mark.parametrize(
    ("pattern", "repeat", "warned"),
    [
        (VALID_ROWS, 1, WARNED),
        (VALID_ROWS[:1], 1, set()),
        (VALID_ROWS[4:], 1, {("age", 0, "out_of_range")}),  # only under the minimum
        (VALID_ROWS, 200, WARNED),
    ],
    ids=["5", "1", "under-min", "1000"],
)
def test_typed_decoder_gives_the_exact_paths_columns_and_warnings(
    pattern: list[dict[str, Any]], repeat: int, warned: set[tuple[str, int, str]]
) -> None:
    rows = pattern * repeat
    validator = Validator(MIXED, max_text_length=50)
    fast = validator.decode(json.dumps({"instances": rows}).encode(), max_instances=1000)
    exact = validator.from_instances(rows)
    assert fast is not None
    assert fast.n == exact.n == len(rows)
    assert list(fast.data) == list(exact.data) == [f.name for f in MIXED]
    for name in fast.data:
        assert _same(fast.data[name], exact.data[name]), name
    assert fast.warnings == exact.warnings
    assert fast.warning_counts == exact.warning_counts
    assert {(w["feature"], w["row"] % len(pattern), w["kind"]) for w in fast.warnings} == warned
    assert sum(fast.warning_counts.values()) == len(warned) * repeat


@pytest.mark.parametrize(
    ("rows", "warned"),
    [
        ([OK, {**OK, "sepal_length": 7}], []),
        ([OK, {**OK, "sepal_length": 1.0}], [(1, "sepal_length")]),  # only under a minimum
        ([{**OK, "petal_width": 9}, OK], [(0, "petal_width")]),  # only over a maximum
        ([dict(reversed(OK.items())), {"petal_width": 1, **OK}], []),  # any key order
    ],
    ids=["in-range", "under-min", "over-max", "key-order"],
)
def test_typed_decoder_gives_the_exact_paths_matrix_for_an_all_numeric_model(
    rows: list[dict[str, Any]], warned: list[tuple[int, str]]
) -> None:
    specs = [FeatureSpec(name=n, type="numeric", required=True, min=v - 3, max=v + 3) for n, v in OK.items()]
    validator = Validator(specs, 10)
    fast = validator.decode(json.dumps({"instances": rows}).encode(), max_instances=10)
    exact = validator.from_instances(rows)
    assert fast is not None
    for name in OK:
        assert fast.data[name].tolist() == exact.data[name].tolist()
    assert fast.warnings == exact.warnings
    assert [(w["row"], w["feature"]) for w in fast.warnings] == warned


REFUSED = [
    ("a boolean for a number", {"instances": [{**VALID_ROWS[0], "age": True}]}),
    ("a string for a number", {"instances": [{**VALID_ROWS[0], "age": "30"}]}),
    ("null for a required number", {"instances": [{**VALID_ROWS[0], "age": None}]}),
    ("a missing required feature", {"instances": [{"age": 30}]}),
    ("an unknown feature", {"instances": [{**VALID_ROWS[0], "colour": "red"}]}),
    ("a number for a category", {"instances": [{**VALID_ROWS[0], "city": 3}]}),
    ("text over the cap", {"instances": [{**VALID_ROWS[0], "note (free text)": "x" * 51}]}),
    ("no instances", {"instances": []}),
    ("more instances than allowed", {"instances": [VALID_ROWS[0]] * 11}),
    ("one bare instance", VALID_ROWS[0]),
    ("instances not a list", {"instances": VALID_ROWS[0]}),
]


@pytest.mark.parametrize(("case", "payload"), REFUSED, ids=[c[0] for c in REFUSED])
def test_typed_decoder_leaves_everything_else_to_the_exact_path(case: str, payload: Any) -> None:
    validator = Validator(MIXED, max_text_length=50)
    assert validator.decode(json.dumps(payload).encode(), max_instances=10) is None, case


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [{"age": 1e400, "note (free text)": "x"}]}',
        b'{"instances": [{"age": 1, "income": -1e999, "note (free text)": "x"}]}',
        b'{"instances": [{"age": NaN, "note (free text)": "x"}]}',
        b"\xff",
    ],
    ids=["overflow", "optional overflow", "NaN", "not utf-8"],
)
def test_typed_decoder_refuses_non_finite_numbers_and_bad_bytes(body: bytes) -> None:
    assert Validator(MIXED, max_text_length=50).decode(body, max_instances=10) is None


def test_feature_names_msgspec_cannot_take_use_the_exact_path_only() -> None:
    validator = Validator([FeatureSpec(name='say "hi"', type="numeric", required=True)], 10)
    assert validator.decode(b'{"instances": [{"say \\"hi\\"": 1}]}', max_instances=10) is None
    assert validator.from_instances([{'say "hi"': 1}]).data['say "hi"'].tolist() == [1.0]


NAMES = ["x", "größe (cm)", "a" * 40, "b" * 300]  # 1-byte, fixstr, str8 and str16 msgpack keys


def _numbers(n: int) -> list[list[Any]]:
    """Doubles of every magnitude, sign and kind, and some JSON integers, for len(NAMES) features."""
    shape = (n, len(NAMES))
    rng = np.random.default_rng(n)
    magnitudes = 10.0 ** rng.integers(-300, 199, shape)  # up to the accepted ±MAX_ABS_NUMBER (1e200)
    values: list[list[Any]] = (rng.uniform(-9.9, 9.9, shape) * magnitudes).tolist()
    specials: list[Any] = [-0.0, 5e-324, MAX_ABS_NUMBER, -MAX_ABS_NUMBER, 3, -7, 2**53 + 1, 10**20]
    for i, special in enumerate(specials[: n * len(NAMES)]):
        values[i // len(NAMES)][i % len(NAMES)] = special
    return values


def _bits(array: Any) -> list[int]:
    bits: list[int] = np.asarray(array, dtype=np.float64).view(np.int64).ravel().tolist()
    return bits  # tells -0.0 from 0.0


@pytest.mark.parametrize("n", [1, 127, 128, 1000, 65536], ids=lambda n: f"{n}-rows")
def test_typed_decoder_reads_every_number_bit_for_bit(n: int) -> None:
    """Small batches read the decoded floats one by one, large ones via NumericRecords: both exactly."""
    rows = [dict(zip(NAMES, row, strict=True)) for row in _numbers(n)]
    validator = Validator([FeatureSpec(name=name, type="numeric", required=True) for name in NAMES], 10)
    fast = validator.decode(json.dumps({"instances": rows}).encode(), max_instances=n)
    exact = validator.from_instances(rows)
    assert fast is not None
    for name in NAMES:
        assert fast.data[name].dtype == np.float64
        assert _bits(fast.data[name]) == _bits(exact.data[name]), name


@pytest.mark.parametrize("n", [1, 15, 16, 65535, 65536], ids=lambda n: f"{n}-rows")
def test_numeric_records_read_every_msgpack_array_size(n: int) -> None:
    fields = [(f"f{i}", float) for i in range(len(NAMES))]
    rename = {f"f{i}": name for i, name in enumerate(NAMES)}
    row = msgspec.defstruct("Row", fields, rename=rename, kw_only=True, gc=False)
    records = NumericRecords.build(row, len(NAMES))
    assert records is not None
    values = [[float(v) for v in r] for r in _numbers(n)]
    read = records.columns([row(**{f"f{i}": v for i, v in enumerate(r)}) for r in values])
    assert read is not None
    assert read.shape == (len(NAMES), n)
    assert _bits(read) == _bits(np.asarray(values).T)


def test_numeric_records_refuse_a_value_not_encoded_as_a_float64() -> None:
    row = msgspec.defstruct("Row", [("f0", float), ("f1", float)], kw_only=True, gc=False)
    records = NumericRecords.build(row, 2)
    assert records is not None
    read = records.columns([row(f0=1.5, f1=-2.0), row(f0=0.0, f1=3.0)])
    assert read is not None
    assert read.tolist() == [[1.5, 0.0], [-2.0, 3.0]]
    # msgspec's JSON decoder only ever stores floats there; a struct built by hand shows the guard: an int is
    # encoded as a uint64, the same size as a float64 but with another marker, and must not be misread.
    assert records.columns([row(f0=1.5, f1=-2.0), row(f0=0.0, f1=2**60)]) is None


@pytest.mark.parametrize("value", [1.0000001e200, -1e201, 1e300, -1.7976931348623157e308])
@pytest.mark.parametrize("rows", [1, 7, 200], ids=lambda n: f"{n}-rows")  # typed structs, then NumericRecords
def test_numbers_beyond_the_computable_bound_are_named(
    shared_client: TestClient, signer: Any, value: float, rows: int
) -> None:
    instances = [OK] * (rows - 1) + [{**OK, "petal_width": value}]
    response = shared_client.post(
        "/v1/models/iris/predict", json={"instances": instances}, headers=signer.headers()
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "instances", rows - 1, "petal_width"],
            "msg": f"must be between -{MAX_ABS_NUMBER:g} and {MAX_ABS_NUMBER:g}",
            "type": "number_too_large",
        }
    ]


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 20_000])
def test_category_codes_are_the_per_value_lookup_at_every_size(n: int) -> None:
    # Large arrays are factorized (one lookup per distinct value): the result must not depend on that.
    from modelberth_inference.validation import category_codes

    index = {"paris": 0, "rome": 1, "nan": 2, "": 3}
    pool: list[Any] = ["paris", "rome", "nan", "", "oslo", "Paris", None, math.nan, 3, 2.5, True, b"rome"]
    rng = np.random.default_rng(n)
    values = np.empty(n, dtype=object)
    values[:] = [pool[i] for i in rng.integers(0, len(pool), n)]
    expected = [index.get(v, -1) if type(v) is str else -2 for v in values.tolist()]
    assert category_codes(values, index, -1, -2).tolist() == expected
