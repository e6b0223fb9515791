"""The app as a whole: probes, metrics, docs, first-start keyset, readiness, key rotation, reloads, and
refresh tokens that persist, expire and die with their user."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import KeySet

from modelberth_auth import refresh as refresh_store
from modelberth_auth.app import create_app
from modelberth_auth.keys import create_keyset, new_key, read_keyset, write_keyset
from modelberth_auth.principals import read_document, write_document
from modelberth_auth.settings import Settings
from modelberth_core.security import JwksKeySource, TokenError, TokenVerifier

ISSUER, AUDIENCE = "http://127.0.0.1:8001", "modelberth"


def login(http: httpx.Client, env: Any) -> dict[str, Any]:
    response = http.post("/auth/login", json={"username": env.username, "password": env.password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_probes_metrics_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "keys": 1, "state": "in-process"}
    metrics = client.get("/metrics").text
    assert "modelberth_auth_signing_keys 1.0" in metrics
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/oauth/token",
        "/auth/login",
        "/.well-known/jwks.json",
        "/oauth/introspect",
        "/oauth/revoke",
    } <= set(paths)
    response = client.get("/.well-known/jwks.json")
    assert len(response.headers["x-request-id"]) == 32
    before = client.get("/metrics").text
    assert (
        'modelberth_auth_requests_total{method="GET",route="/.well-known/jwks.json",status="2xx"} 1.0'
        in before
    )


def test_dev_first_start_generates_keyset_once(tmp_path: Path) -> None:
    state = Path(os.environ["MODELBERTH_STATE_DIR"])
    with TestClient(create_app(Settings())) as http:
        assert http.get("/readyz").status_code == 200  # dev: no users file is an empty one
        kid = http.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
    keyset = state / "keys.json"
    assert stat.S_IMODE(keyset.stat().st_mode) == 0o600
    with TestClient(create_app(Settings())) as http:  # second start: the same key, not a new one
        assert http.get("/.well-known/jwks.json").json()["keys"][0]["kid"] == kid


def test_prod_never_generates_and_is_not_ready_until_files_exist(auth_env: Any) -> None:
    keyset = auth_env.keyset_file
    saved = keyset.read_bytes()
    keyset.unlink()
    with TestClient(create_app(auth_env.settings(environment="prod"))) as http:
        response = http.get("/readyz")
        assert response.status_code == 503
        assert "keyset" in response.json()["detail"]
        assert not keyset.exists()
        assert http.get("/.well-known/jwks.json").status_code == 503
        # Before it is ready nothing can be signed: 503 "try later", never a 500.
        login_body = {"username": auth_env.username, "password": auth_env.password}
        assert http.post("/auth/login", json=login_body).status_code == 503
        creds = {"client_id": auth_env.client_id, "client_secret": auth_env.client_secret}
        not_ready = http.post("/oauth/token", data={"grant_type": "client_credentials", **creds})
        assert not_ready.status_code == 503
        assert not_ready.json()["error"] == "temporarily_unavailable"
        assert http.post("/oauth/introspect", data={"token": "a.b.c", **creds}).json() == {"active": False}
        keyset.write_bytes(saved)
        assert http.get("/readyz").status_code == 200
        assert http.post("/auth/login", json=login_body).status_code == 200
    auth_env.users_file.unlink()
    with TestClient(create_app(auth_env.settings(environment="prod"))) as http:
        assert "users file" in http.get("/readyz").json()["detail"]


def test_broken_files_at_start_and_later(auth_env: Any) -> None:
    good_keys = auth_env.keyset_file.read_bytes()
    auth_env.keyset_file.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    with TestClient(create_app(auth_env.settings())) as http:
        assert http.get("/readyz").status_code == 503  # a symmetric key is not a signing key here
        auth_env.keyset_file.write_bytes(good_keys)
        assert http.get("/readyz").status_code == 200
        kid = http.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
        # A broken edit later keeps the last good keys and users.
        auth_env.keyset_file.write_text("{not json")
        auth_env.users_file.write_text("users: [unclosed")
        assert http.get("/.well-known/jwks.json").json()["keys"][0]["kid"] == kid
        login(http, auth_env)


def test_rotation_old_tokens_verify_until_key_removed(auth_env: Any) -> None:
    app = create_app(auth_env.settings())
    with TestClient(app) as http:
        old_token = login(http, auth_env)["access_token"]
        old_kid = read_keyset(auth_env.keyset_file).keys[0].kid
        # Rotate: a new key is added and signs from now on.
        keys = read_keyset(auth_env.keyset_file)
        added = new_key()
        write_keyset(auth_env.keyset_file, KeySet([*keys.keys, added]))
        new_token = login(http, auth_env)["access_token"]
        assert json.loads(httpx.Response(200, content=_b64json(new_token)).text)["kid"] == added.kid
        assert {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]} == {old_kid, added.kid}

        async def check(expect_old: bool) -> None:
            # The verifier every other service uses, fetching the JWKS over HTTP (in-process transport).
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://auth") as client:
                source = JwksKeySource("http://auth/.well-known/jwks.json", client=client)
                verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
                assert (await verifier.verify(new_token)).subject == auth_env.username
                if expect_old:
                    assert (await verifier.verify(old_token)).subject == auth_env.username
                else:
                    with pytest.raises(TokenError, match="unknown key"):
                        await verifier.verify(old_token)

        asyncio.run(check(expect_old=True))
        introspect = {
            "token": old_token,
            "client_id": auth_env.client_id,
            "client_secret": auth_env.client_secret,
        }
        assert http.post("/oauth/introspect", data=introspect).json()["active"] is True
        # Remove the old key: its tokens stop verifying everywhere.
        write_keyset(auth_env.keyset_file, KeySet([added]))
        assert [k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]] == [added.kid]
        asyncio.run(check(expect_old=False))
        assert http.post("/oauth/introspect", data=introspect).json() == {"active": False}


def _b64json(token: str) -> bytes:
    import base64

    head = token.split(".")[0]
    return base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))


def test_refresh_tokens_persist_hashed_across_restarts(auth_env: Any) -> None:
    with TestClient(create_app(auth_env.settings())) as http:
        refresh = login(http, auth_env)["refresh_token"]
    stored = auth_env.refresh_file.read_text()
    family, secret = refresh.split(".")
    assert family not in stored  # only hashes: no part of a token
    assert secret not in stored
    assert refresh_store.token_hash(refresh) in stored
    assert stat.S_IMODE(auth_env.refresh_file.stat().st_mode) == 0o600
    with TestClient(create_app(auth_env.settings())) as http:
        response = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
        assert response.status_code == 200, response.text


def test_refresh_token_expires(auth_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(auth_env.settings(refresh_token_ttl_seconds=60))) as http:
        refresh = login(http, auth_env)["refresh_token"]
        later = time.time() + 61
        monkeypatch.setattr(refresh_store.time, "time", lambda: later)
        response = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_grant", "error_description": "refresh token has expired"}


def test_refresh_follows_the_user(auth_env: Any) -> None:
    with TestClient(create_app(auth_env.settings())) as http:
        admin = http.post(
            "/auth/login", json={"username": auth_env.admin, "password": auth_env.password}
        ).json()
        assert admin["scope"] == "predict models:read models:admin"
        document = read_document(auth_env.users_file)
        document.users[auth_env.admin] = document.users[auth_env.admin].model_copy(
            update={"scopes": ["predict"]}
        )
        write_document(auth_env.users_file, document)
        refreshed = http.post(
            "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": admin["refresh_token"]}
        )
        assert refreshed.json()["scope"] == "predict"  # scopes taken away are not refreshed back
        del document.users[auth_env.admin]
        write_document(auth_env.users_file, document)
        gone = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]},
        )
        assert gone.json()["error"] == "invalid_grant"


def test_refresh_families_per_subject_are_capped(auth_env: Any) -> None:
    with TestClient(create_app(auth_env.settings(max_refresh_tokens_per_subject=3))) as http:
        first = login(http, auth_env)["refresh_token"]
        for _ in range(3):
            login(http, auth_env)
        response = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": first})
        assert response.json()["error"] == "invalid_grant"  # the oldest session was dropped
    assert len(json.loads(auth_env.refresh_file.read_text())["families"]) == 3


def test_jwks_has_no_private_material(auth_env: Any, client: TestClient) -> None:
    private = json.loads(auth_env.keyset_file.read_text())["keys"][0]["d"]
    assert private not in client.get("/.well-known/jwks.json").text


def test_created_keyset_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert create_keyset(path)
    before = path.read_bytes()
    assert not create_keyset(path)
    assert path.read_bytes() == before
