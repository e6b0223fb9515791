"""Content types (issue 13, point 10): V1 answers 415 when a request declares a type that is not JSON; V2
follows the Open Inference Protocol and its clients (no type, JSON, or octet-stream for the binary
extension) and refuses only types that are clearly something else."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
V1_BODY = orjson.dumps({"instances": [ROW]})
V2_BODY = orjson.dumps(
    {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}
)
NOT_JSON = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "text/html",
    "text/json",
    "application/json garbage",
    "json",
    "image/png",
]
JSON = [
    None,
    "",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    " application/json ; charset=UTF-8",
    "application/vnd.modelberth+json",
]


def _post(client: TestClient, path: str, body: bytes, content_type: str | None, headers: Any) -> Any:
    request = client.build_request("POST", path, content=body, headers=headers)
    if content_type is None:
        request.headers.pop("content-type", None)
    else:
        request.headers["content-type"] = content_type
    return client.send(request)


@pytest.mark.parametrize("content_type", NOT_JSON)
def test_v1_refuses_a_declared_type_that_is_not_json(
    shared_client: TestClient, signer: Any, content_type: str
) -> None:
    response = _post(shared_client, "/v1/models/iris/predict", V1_BODY, content_type, signer.headers())
    assert response.status_code == 415
    assert response.headers["accept"] == "application/json"
    assert response.json() == {
        "detail": "unsupported Content-Type: this endpoint takes a JSON body "
        "(send application/json, or no Content-Type)"
    }


@pytest.mark.parametrize("content_type", [*NOT_JSON, "application/octet-stream"])
def test_v1_refuses_octet_stream_too(shared_client: TestClient, signer: Any, content_type: str) -> None:
    response = _post(shared_client, "/v1/models/iris/predict", V1_BODY, content_type, signer.headers())
    assert response.status_code == 415


@pytest.mark.parametrize("content_type", JSON)
@pytest.mark.parametrize("path", ["/v1/models/iris/predict", "/v2/models/iris/infer"])
def test_json_or_no_type_is_answered(
    shared_client: TestClient, signer: Any, content_type: str | None, path: str
) -> None:
    body = V1_BODY if path.startswith("/v1") else V2_BODY
    response = _post(shared_client, path, body, content_type, signer.headers())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("content_type", NOT_JSON)
def test_v2_refuses_a_type_that_is_clearly_not_json(
    shared_client: TestClient, signer: Any, content_type: str
) -> None:
    response = _post(shared_client, "/v2/models/iris/infer", V2_BODY, content_type, signer.headers())
    assert response.status_code == 415
    assert response.headers["accept"] == "application/json, application/octet-stream"
    assert set(response.json()) == {"error"}


def test_v2_takes_octet_stream(shared_client: TestClient, signer: Any) -> None:
    """The binary extension's type, here with a JSON-only body (its binary part: test_binary_extension.py)."""
    plain = _post(
        shared_client, "/v2/models/iris/infer", V2_BODY, "application/octet-stream", signer.headers()
    )
    assert plain.status_code == 200, plain.text


def test_content_type_is_checked_after_the_token(shared_client: TestClient) -> None:
    """A caller without a token learns nothing about the body rules."""
    response = _post(shared_client, "/v1/models/iris/predict", V1_BODY, "text/plain", {})
    assert response.status_code == 401
