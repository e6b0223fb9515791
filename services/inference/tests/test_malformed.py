"""Malformed bodies, fuzz-style: every decode failure of a V1 or V2 body is a 4xx JSON error, never a 5xx,
and never repeats what the client sent (issue 13, point 4).

The cases are generated as classes, not picked: nesting at several depths and places, invalid UTF-8 at every
byte position, every truncation, lone surrogates in every kind of name and value, byte order marks and other
encodings, non-finite literals and numbers no double can hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
V1 = "/v1/models/iris/predict"
V2 = "/v2/models/iris/infer"
MARKER = "zqmark"
"""Part of every name or value a case plants; an answer holding it would be repeating the input."""

V1_BODY = orjson.dumps({"instances": [ROW, ROW]})
V2_BODY = orjson.dumps(
    {
        "id": "req-1",
        "inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()],
    }
)
DEPTHS = (2, 64, 1000, 1023, 1024, 1025, 4096, 20_000)
BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\x80", b"\xc0\x80", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80")
SURROGATES = ("\\ud800", "\\udfff", "\\udc00\\ud800", "\\ud83d")  # JSON escapes of lone surrogates


def _nested(depth: int, kind: str, inner: bytes = b"1") -> bytes:
    if kind == "array":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


def _v1_row(value: bytes, key: bytes = b'"sepal_length"') -> bytes:
    return (
        b'{"instances": [{'
        + key
        + b": "
        + value
        + b', "sepal_width": 3.5, "petal_length": 1.4, '
        + (b'"petal_width": 0.2}]}')
    )


def _v2_input(value: bytes, name: bytes = b'"sepal_length"', extra: bytes = b"") -> bytes:
    others = b", ".join(
        b'{"name": "%s", "shape": [1], "datatype": "FP64", "data": [1.0]}' % k.encode()
        for k in ("sepal_width", "petal_length", "petal_width")
    )
    return (
        b'{"inputs": [{"name": '
        + name
        + b', "shape": [1], "datatype": "FP64", "data": ['
        + value
        + b"]}, "
        + others
        + b"]"
        + extra
        + b"}"
    )


def cases() -> Iterator[tuple[str, str, bytes, int | None]]:
    """(case id, path, body, exact status or None for "any 4xx")."""
    for depth in DEPTHS:
        for kind in ("array", "object"):
            yield f"{kind}-{depth}-top", V1, _nested(depth, kind), None
            yield f"{kind}-{depth}-top", V2, _nested(depth, kind), None
            yield f"{kind}-{depth}-value", V1, _v1_row(_nested(depth, kind)), None
            yield f"{kind}-{depth}-data", V2, _v2_input(_nested(depth, kind)), None
            yield (
                f"{kind}-{depth}-unknown-key",
                V1,
                b'{"instances": [{"x": ' + _nested(depth, kind) + b"}]}",
                None,
            )
            # Parameters must be an object but are not read: one orjson parses (at most 1024 levels) is
            # answered; an array is refused.
            deep_parameters = _v2_input(b"1", extra=b', "parameters": ' + _nested(depth, kind))
            answered = kind == "object" and depth < 1024
            yield f"{kind}-{depth}-parameters", V2, deep_parameters, 200 if answered else 400
    for path, valid in ((V1, V1_BODY), (V2, V2_BODY)):
        for i in range(len(valid) + 1):
            for bad in BAD_UTF8 if i % 7 == 0 else BAD_UTF8[:1]:
                yield f"utf8-{bad.hex()}-at-{i}", path, valid[:i] + bad + valid[i:], 400
        for i in range(len(valid)):
            yield f"truncated-{i}", path, valid[:i], 400
        yield "bom-utf8", path, b"\xef\xbb\xbf" + valid, 400
        for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32"):
            yield f"encoded-{encoding}", path, valid.decode().encode(encoding), 400
    for escape in SURROGATES:
        s = escape.encode()
        named = b'"' + MARKER.encode() + s + b'"'
        yield f"surrogate-{escape}-key", V1, _v1_row(b"5.1", key=named), 422
        yield f"surrogate-{escape}-value", V1, _v1_row(named), 422
        yield f"surrogate-{escape}-top-key", V1, b'{"instances": [], ' + named + b": 1}", 422
        yield f"surrogate-{escape}-single-object", V1, b"{" + named + b": 1}", 422
        yield f"surrogate-{escape}-input-name", V2, _v2_input(b"1.0", name=named), None
        yield f"surrogate-{escape}-data", V2, _v2_input(named), None
        yield f"surrogate-{escape}-id", V2, _v2_input(b"1.0", extra=b', "id": ' + named), 400
        yield (
            f"surrogate-{escape}-output",
            V2,
            _v2_input(b"1.0", extra=b', "outputs": [{"name": ' + named + b"}]"),
            400,
        )
    long_name = b'"' + MARKER.encode() * 2000 + b'"'
    yield "long-unknown-key", V1, _v1_row(b"5.1", key=long_name), 422
    yield "long-input-name", V2, _v2_input(b"1.0", name=long_name), None
    yield "long-id", V2, _v2_input(b"1.0", extra=b', "id": ' + long_name), 400
    control = b'"' + MARKER.encode() + b'\\u0000\\n\\u001b[31m"'
    yield "control-chars-key", V1, _v1_row(b"5.1", key=control), 422
    yield "control-chars-input-name", V2, _v2_input(b"1.0", name=control), None
    for literal in (
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"nan",
        b"inf",
        b"1e400",
        b"-1e400",
        b"1" + b"0" * 400,
    ):
        yield f"number-{literal[:12].decode()}", V1, _v1_row(literal), None
        yield f"number-{literal[:12].decode()}", V2, _v2_input(literal), None
    huge = b"1" + b"0" * 5000  # past Python's 4300-digit limit for int()
    yield "number-5000-digits", V1, _v1_row(huge), None
    yield "number-5000-digits", V2, _v2_input(huge), None
    yield "shape-huge", V2, V2_BODY.replace(b'"shape":[1]', b'"shape":[1e400]', 1), 400
    yield "shape-5000-digits", V2, V2_BODY.replace(b'"shape":[1]', b'"shape":[' + huge + b"]", 1), 400
    for top in (b"", b" ", b"null", b"true", b"1", b'"x"', b"[]", b"[{}]"):
        yield f"top-{top.decode() or 'empty'}", V1, top, None
        yield f"top-{top.decode() or 'empty'}", V2, top, None


CASES = list(cases())


def _ids() -> list[str]:
    return [f"{'v1' if path == V1 else 'v2'}-{case}" for case, path, _, _ in CASES]


@pytest.mark.parametrize(("case", "path", "body", "status"), CASES, ids=_ids())
def test_malformed_body_is_a_4xx_json_error_that_repeats_nothing(
    shared_client: TestClient, signer: Any, case: str, path: str, body: bytes, status: int | None
) -> None:
    response = shared_client.post(
        path, content=body, headers={**signer.headers(), "Content-Type": "application/json"}
    )
    if status is None:
        assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    else:
        assert response.status_code == status, (case, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    assert MARKER not in response.text
    if response.status_code == 200:
        return
    payload = response.json()
    assert list(payload) == (["detail"] if path == V1 else ["error"])
    assert len(response.content) < 20_000


def test_a_valid_body_after_bad_ones_is_still_answered(shared_client: TestClient, signer: Any) -> None:
    """The cases above leave nothing behind: the same app answers a good request as before."""
    for body in (_nested(20_000, "object"), b'{"instances": [{"\xff\xfe": 1}]}'):
        assert shared_client.post(V1, content=body, headers=signer.headers()).status_code == 400
    response = shared_client.post(V1, content=V1_BODY, headers=signer.headers())
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2
