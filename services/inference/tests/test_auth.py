"""Token checks on every model endpoint: each way a token can be wrong is a 401 (or 403 for scope)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
V2_BODY = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}

# (method, path, body, scope it needs)
ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/models", None, "models:read"),
    ("GET", "/v1/models/iris", None, "models:read"),
    ("GET", "/v1/models/iris/report", None, "models:read"),
    ("GET", "/v1/models/iris/examples", None, "models:read"),
    ("GET", "/v1/models/iris/examples/0", None, "models:read"),
    ("POST", "/v1/models/iris/predict", ROW, "predict"),
    ("POST", "/v1/models/iris/examples/0/predict", None, "predict"),
    ("POST", "/v1/models/iris/reload", None, "models:admin"),
    ("GET", "/v2/models/iris", None, "models:read"),
    ("GET", "/v2/models/iris/ready", None, "models:read"),
    ("POST", "/v2/models/iris/infer", V2_BODY, "predict"),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "http://127.0.0.1:8001",
        "aud": "modelberth",
        "sub": "x",
        "exp": now + 600,
        "scope": "predict",
    }
    claims.update(changes)
    return claims


def _bad_tokens(signer: Any) -> dict[str, str]:
    other = ECKey.generate_key("P-256", parameters={"kid": signer.key.kid})
    stranger = ECKey.generate_key("P-256", parameters={"kid": "unknown-kid"})
    hs_head = _unsigned({"alg": "HS256", "kid": signer.key.kid, "typ": "at+jwt"}, _claims())
    hs_sig = _b64(hmac.new(b"secret", hs_head.encode(), hashlib.sha256).digest())
    good = signer.token("predict")
    head, _, sig = good.split(".")
    tampered = _b64(json.dumps(_claims(scope="predict models:admin")).encode())
    now = int(time.time())
    return {
        "malformed": "not-a-jwt",
        "two segments": "abc.def",
        "garbage segments": "a.b.c",
        "signed by another key with the same kid": signer.token("predict", key=other),
        "unknown kid": signer.token("predict", key=stranger),
        "expired": signer.token("predict", exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "not yet valid": signer.token("predict", nbf=now + 3600),
        "wrong issuer": signer.token("predict", iss="https://evil.example"),
        "wrong audience": signer.token("predict", aud="someone-else"),
        "no expiry": signer.token("predict", exp=None),
        "no subject": signer.token("predict", sub=None),
        "alg none": _unsigned({"alg": "none", "kid": signer.key.kid}, _claims()) + ".",
        "HS256 with a guessed secret": hs_head + "." + hs_sig,
        "payload swapped after signing": f"{head}.{tampered}.{sig}",
        "scope is a list": signer.token(["predict"]),
        "oversized": "a" * 9000 + ".b.c",
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_every_model_endpoint_needs_a_token(
    shared_client: TestClient, method: str, path: str, body: Any, scope: str
) -> None:
    response = shared_client.request(method, path, json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    key = "error" if path.startswith("/v2") else "detail"
    assert response.json() == {key: "missing bearer token"}


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_every_model_endpoint_checks_its_scope(
    shared_client: TestClient, signer: Any, method: str, path: str, body: Any, scope: str
) -> None:
    others = " ".join(s for s in ("predict", "models:read", "models:admin") if s != scope)
    refused = shared_client.request(method, path, json=body, headers=signer.headers(others))
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == f'Bearer error="insufficient_scope", scope="{scope}"'
    allowed = shared_client.request(method, path, json=body, headers=signer.headers(scope))
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer"],
    ids=["empty", "scheme only", "scheme and space", "basic", "other scheme", "lowercase scheme only"],
)
def test_malformed_authorization_headers_are_401(shared_client: TestClient, header: str) -> None:
    response = shared_client.post("/v1/models/iris/predict", json=ROW, headers={"Authorization": header})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_every_bad_token_is_401_with_invalid_token(shared_client: TestClient, signer: Any) -> None:
    for case, token in _bad_tokens(signer).items():
        response = shared_client.post(
            "/v1/models/iris/predict", json=ROW, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, case
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"'), case
        assert isinstance(response.json()["detail"], str), case


def test_a_good_token_is_accepted_repeatedly(shared_client: TestClient, signer: Any) -> None:
    headers = signer.headers("predict")
    for _ in range(3):
        assert shared_client.post("/v1/models/iris/predict", json=ROW, headers=headers).status_code == 200


def test_probes_and_v2_server_endpoints_need_no_token(shared_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v2", "/v2/health/live", "/v2/health/ready", "/docs"):
        assert shared_client.get(path).status_code == 200, path
