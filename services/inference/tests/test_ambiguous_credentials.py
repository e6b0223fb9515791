"""Two ``Authorization`` headers on any model endpoint are a 400 ``invalid_request`` (RFC 6750 §3.1), whatever
their order or values: a valid token never makes an ambiguous request acceptable (issue 13, point 7)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
V2_BODY = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/iris", None),
    ("POST", "/v1/models/iris/predict", ROW),
    ("POST", "/v1/models/iris/examples/0/predict", None),
    ("GET", "/v2/models/iris/ready", None),
    ("POST", "/v2/models/iris/infer", V2_BODY),
]


def _duplicates(valid: str) -> dict[str, list[tuple[str, str]]]:
    auth = "authorization"
    return {
        "same value twice": [(auth, valid), (auth, valid)],
        "valid then garbage": [(auth, valid), (auth, "garbage")],
        "garbage then valid": [(auth, "garbage"), (auth, valid)],
        "basic then bearer": [(auth, "Basic dXNlcjpwYXNz"), (auth, valid)],
        "bearer then basic": [(auth, valid), (auth, "Basic dXNlcjpwYXNz")],
        "valid then empty": [(auth, valid), (auth, "")],
        "merged by a proxy": [(auth, f"{valid}, {valid}")],
    }


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_kind_of_duplicate_is_a_400_invalid_request(
    client: TestClient, signer: Any, method: str, path: str, body: Any
) -> None:
    valid = f"Bearer {signer.token()}"
    one = client.request(method, path, json=body, headers={"authorization": valid})
    assert one.status_code == 200, one.text
    for name, headers in _duplicates(valid).items():
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 400, (name, response.status_code, response.text)
        key = "error" if path.startswith("/v2/") else "detail"  # each protocol's error shape
        assert response.json() == {key: "more than one credential in the Authorization header(s)"}
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"'), name
