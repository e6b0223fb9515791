"""Bad input never gets a 5xx: wrong content types, missing fields, huge bodies, unicode garbage, NaN,
wrong grants. Every answer is a 4xx with a JSON error body of the endpoint's shape."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelberth_auth.app import create_app
from modelberth_auth.keys import create_keyset
from modelberth_auth.settings import Settings

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
BIG = 70 * 1024

CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    # (id, method, path, httpx kwargs)
    ("token json body", "POST", "/oauth/token", {"json": {"grant_type": "client_credentials"}}),
    (
        "token text/plain",
        "POST",
        "/oauth/token",
        {"content": b"grant_type=x", "headers": {"Content-Type": "text/plain"}},
    ),
    ("token no content type", "POST", "/oauth/token", {"content": b"grant_type=client_credentials"}),
    ("token multipart", "POST", "/oauth/token", {"files": {"grant_type": ("a", b"client_credentials")}}),
    ("token empty body", "POST", "/oauth/token", {"content": b"", "headers": FORM}),
    ("token invalid utf-8", "POST", "/oauth/token", {"content": b"grant_type=\xff\xfe", "headers": FORM}),
    (
        "token invalid percent utf-8",
        "POST",
        "/oauth/token",
        {"content": b"grant_type=%ff%fe", "headers": FORM},
    ),
    ("token unicode garbage", "POST", "/oauth/token", {"data": {"grant_type": "\u202e\U0001f600\x00"}}),
    (
        "token NUL in grant",
        "POST",
        "/oauth/token",
        {"content": b"grant_type=client_credentials%00", "headers": FORM},
    ),
    ("token grant NaN", "POST", "/oauth/token", {"data": {"grant_type": "NaN"}}),
    ("token grant password", "POST", "/oauth/token", {"data": {"grant_type": "password", "username": "a"}}),
    ("token huge grant name", "POST", "/oauth/token", {"data": {"grant_type": "g" * 60_000}}),
    (
        "token too many fields",
        "POST",
        "/oauth/token",
        {"content": "&".join(f"f{i}=1" for i in range(50)).encode(), "headers": FORM},
    ),
    ("token huge body", "POST", "/oauth/token", {"content": b"a=" + b"x" * BIG, "headers": FORM}),
    (
        "token huge body chunked",
        "POST",
        "/oauth/token",
        {"content": iter([b"a=" + b"x" * 40_000] * 3), "headers": FORM},
    ),
    (
        "token bad content-length",
        "POST",
        "/oauth/token",
        {"content": b"x", "headers": {**FORM, "Content-Length": "abc"}},
    ),
    (
        "token basic garbage",
        "POST",
        "/oauth/token",
        {
            "data": {"grant_type": "client_credentials"},
            "headers": {"Authorization": "Basic \u00e9\u00e9".encode()},
        },
    ),
    (
        "token basic non-utf8",
        "POST",
        "/oauth/token",
        {
            "data": {"grant_type": "client_credentials"},
            "headers": {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
        },
    ),
    (
        "token huge scope",
        "POST",
        "/oauth/token",
        {"data": {"grant_type": "client_credentials", "scope": "predict " * 5000}},
    ),
    (
        "token refresh garbage",
        "POST",
        "/oauth/token",
        {"data": {"grant_type": "refresh_token", "refresh_token": "\U0001f600" * 100}},
    ),
    ("token GET", "GET", "/oauth/token", {}),
    ("token PUT", "PUT", "/oauth/token", {"data": {"grant_type": "client_credentials"}}),
    ("login form body", "POST", "/auth/login", {"data": {"username": "a", "password": "b"}}),
    (
        "login text/plain",
        "POST",
        "/auth/login",
        {"content": b'{"username":"a","password":"b"}', "headers": {"Content-Type": "text/plain"}},
    ),
    ("login invalid json", "POST", "/auth/login", {"content": b'{"username": ', "headers": JSON}),
    ("login empty body", "POST", "/auth/login", {"content": b"", "headers": JSON}),
    ("login json array", "POST", "/auth/login", {"json": [1, 2, 3]}),
    ("login json string", "POST", "/auth/login", {"json": "admin"}),
    ("login missing password", "POST", "/auth/login", {"json": {"username": "demo"}}),
    ("login missing username", "POST", "/auth/login", {"json": {"password": "x"}}),
    ("login null fields", "POST", "/auth/login", {"json": {"username": None, "password": None}}),
    ("login numbers", "POST", "/auth/login", {"json": {"username": 1, "password": 2}}),
    (
        "login NaN",
        "POST",
        "/auth/login",
        {"content": b'{"username": NaN, "password": Infinity}', "headers": JSON},
    ),
    (
        "login 1e400",
        "POST",
        "/auth/login",
        {"content": b'{"username": 1e400, "password": -1e400}', "headers": JSON},
    ),
    ("login extra field", "POST", "/auth/login", {"json": {"username": "a", "password": "b", "admin": True}}),
    ("login empty strings", "POST", "/auth/login", {"json": {"username": "", "password": ""}}),
    ("login huge password", "POST", "/auth/login", {"json": {"username": "demo", "password": "p" * 5000}}),
    ("login huge body", "POST", "/auth/login", {"json": {"username": "demo", "password": "p" * BIG}}),
    ("login deep nesting", "POST", "/auth/login", {"content": b"[" * 5000 + b"]" * 5000, "headers": JSON}),
    (
        "login invalid utf-8",
        "POST",
        "/auth/login",
        {"content": b'{"username": "\xff", "password": "x"}', "headers": JSON},
    ),
    ("login GET", "GET", "/auth/login", {}),
    ("introspect json", "POST", "/oauth/introspect", {"json": {"token": "x"}}),
    ("introspect no auth", "POST", "/oauth/introspect", {"data": {"token": "x"}}),
    ("revoke empty", "POST", "/oauth/revoke", {"data": {}}),
    ("revoke huge token", "POST", "/oauth/revoke", {"data": {"token": "t" * 60_000}}),
    (
        "revoke bad basic",
        "POST",
        "/oauth/revoke",
        {"data": {"token": "x"}, "headers": {"Authorization": "Basic"}},
    ),
    ("unknown path", "GET", "/oauth/nope", {}),
    ("jwks POST", "POST", "/.well-known/jwks.json", {}),
    ("unknown well-known", "GET", "/.well-known/../../etc/passwd", {}),
]


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for all cases (none of them authenticates, so none trips the lockout)."""
    state: Path = tmp_path_factory.mktemp("malformed")
    create_keyset(state / "keys.json")
    settings = Settings(
        keyset_file=state / "keys.json",
        users_file=state / "users.yaml",
        refresh_store_file=state / "refresh.json",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(("method", "path", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request_gets_4xx_json(
    shared_client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = shared_client.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    body = response.json()
    assert isinstance(body, dict)
    if path.startswith("/oauth/"):
        assert set(body) == {"error", "error_description"}, body
    else:
        assert set(body) == {"detail"}, body
    assert "p" * 100 not in response.text  # inputs are not echoed back


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_size_limit_answers_413(client: TestClient) -> None:
    response = client.post("/oauth/token", content=b"a=" + b"x" * BIG, headers=FORM)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
    response = client.post("/auth/login", json={"username": "demo", "password": "p" * BIG})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large"}
