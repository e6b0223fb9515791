"""Every grant and every RFC 6749/7009/7662 error path, run in-process (one fresh app per scenario) and,
all in one go, against a real ``modelberth serve auth`` process."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import KeySet
from prometheus_client.parser import text_string_to_metric_families

from modelberth_auth.app import create_app
from modelberth_core.security import StaticKeySource, TokenError, TokenVerifier

Scenario = Callable[[httpx.Client, Any], None]
SCENARIOS: list[Scenario] = []
ISSUER, AUDIENCE = "http://127.0.0.1:8001", "modelberth"


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token(http: httpx.Client, data: dict[str, str], headers: dict[str, str] | None = None) -> httpx.Response:
    return http.post("/oauth/token", data=data, headers=headers or {})


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    """Current value of a sample in /metrics (0 when absent)."""
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def verify(http: httpx.Client, access_token: str) -> Any:
    keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
    verifier = TokenVerifier(StaticKeySource(keys), issuer=ISSUER, audience=AUDIENCE)
    return asyncio.run(verifier.verify(access_token))


def login(http: httpx.Client, env: Any, username: str | None = None) -> dict[str, Any]:
    response = http.post("/auth/login", json={"username": username or env.username, "password": env.password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- client credentials -------------------------------------------------------------------------------


@scenario
def client_credentials_basic(http: httpx.Client, env: Any) -> None:
    before = metric(
        http, "modelberth_auth_token_requests_total", grant_type="client_credentials", outcome="success"
    )
    response = token(http, {"grant_type": "client_credentials"}, basic(env.client_id, env.client_secret))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh token (§4.4.3)
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 900, "predict")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    principal = verify(http, body["access_token"])
    assert principal.subject == env.client_id
    assert principal.scopes == {"predict"}
    claims = principal.claims
    assert {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900
    after = metric(
        http, "modelberth_auth_token_requests_total", grant_type="client_credentials", outcome="success"
    )
    assert after == before + 1


@scenario
def client_credentials_post(http: httpx.Client, env: Any) -> None:
    response = token(
        http,
        {"grant_type": "client_credentials", "client_id": env.reader_id, "client_secret": env.client_secret},
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "predict models:read"


@scenario
def client_credentials_narrower_scope(http: httpx.Client, env: Any) -> None:
    data = {"grant_type": "client_credentials", "scope": "models:read"}
    response = token(http, data, basic(env.reader_id, env.client_secret))
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "models:read"
    assert verify(http, response.json()["access_token"]).scopes == {"models:read"}


@scenario
def client_credentials_invalid_scope(http: httpx.Client, env: Any) -> None:
    creds = basic(env.client_id, env.client_secret)
    before = metric(
        http, "modelberth_auth_token_requests_total", grant_type="client_credentials", outcome="invalid_scope"
    )
    for scope in (
        "models:admin",
        "predict models:admin",
        "no-such-scope",
        "predict\tmodels:read",
        '"quoted"',
    ):
        assert_oauth_error(
            token(http, {"grant_type": "client_credentials", "scope": scope}, creds), 400, "invalid_scope"
        )
    after = metric(
        http, "modelberth_auth_token_requests_total", grant_type="client_credentials", outcome="invalid_scope"
    )
    assert after == before + 5


@scenario
def client_credentials_bad_secret_basic(http: httpx.Client, env: Any) -> None:
    before = metric(http, "modelberth_auth_login_failures_total", reason="bad_client_secret")
    response = token(http, {"grant_type": "client_credentials"}, basic(env.client_id, "wrong"))
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert metric(http, "modelberth_auth_login_failures_total", reason="bad_client_secret") == before + 1


@scenario
def client_credentials_bad_secret_post(http: httpx.Client, env: Any) -> None:
    data = {"grant_type": "client_credentials", "client_id": env.client_id, "client_secret": "wrong"}
    response = token(http, data)
    assert_oauth_error(response, 401, "invalid_client")  # the same status as after HTTP Basic
    assert response.headers["www-authenticate"].startswith("Basic ")


@scenario
def client_credentials_unknown_client(http: httpx.Client, env: Any) -> None:
    before = metric(http, "modelberth_auth_login_failures_total", reason="unknown_client")
    unknown = token(http, {"grant_type": "client_credentials"}, basic("nobody-000000", env.client_secret))
    wrong = token(http, {"grant_type": "client_credentials"}, basic(env.client_id, "not-the-secret"))
    assert_oauth_error(unknown, 401, "invalid_client")
    assert unknown.json() == wrong.json()  # the same answer: no client enumeration
    assert metric(http, "modelberth_auth_login_failures_total", reason="unknown_client") == before + 1


@scenario
def client_credentials_no_credentials(http: httpx.Client, env: Any) -> None:
    response = token(http, {"grant_type": "client_credentials"})
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")
    only_id = token(http, {"grant_type": "client_credentials", "client_id": env.client_id})
    assert_oauth_error(only_id, 401, "invalid_client")


@scenario
def client_credentials_malformed_basic(http: httpx.Client, env: Any) -> None:
    for value in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc"):
        response = token(http, {"grant_type": "client_credentials"}, {"Authorization": value})
        assert_oauth_error(response, 401, "invalid_client")
        assert "www-authenticate" in response.headers


@scenario
def unauthorized_client(http: httpx.Client, env: Any) -> None:
    response = token(http, {"grant_type": "client_credentials"}, basic(env.no_grant_id, env.client_secret))
    assert_oauth_error(response, 400, "unauthorized_client")


@scenario
def grant_type_errors(http: httpx.Client, env: Any) -> None:
    creds = basic(env.client_id, env.client_secret)
    assert_oauth_error(token(http, {}, creds), 400, "invalid_request")
    assert_oauth_error(token(http, {"grant_type": ""}, creds), 400, "invalid_request")
    before = metric(
        http, "modelberth_auth_token_requests_total", grant_type="other", outcome="unsupported_grant_type"
    )
    for grant in (
        "password",
        "authorization_code",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ):
        data = {"grant_type": grant, "username": env.username, "password": env.password}
        assert_oauth_error(token(http, data, creds), 400, "unsupported_grant_type")
    after = metric(
        http, "modelberth_auth_token_requests_total", grant_type="other", outcome="unsupported_grant_type"
    )
    assert after == before + 4


@scenario
def two_authentication_methods(http: httpx.Client, env: Any) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_id": env.client_id,
        "client_secret": env.client_secret,
    }
    response = token(http, data, basic(env.client_id, env.client_secret))
    assert_oauth_error(response, 400, "invalid_request")


@scenario
def repeated_parameter(http: httpx.Client, env: Any) -> None:
    response = http.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **basic(env.client_id, env.client_secret),
        },
    )
    assert_oauth_error(response, 400, "invalid_request")
    assert response.json()["error_description"] == "grant_type is repeated"


@scenario
def wrong_content_type(http: httpx.Client, env: Any) -> None:
    response = http.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert_oauth_error(response, 400, "invalid_request")


# -- login and refresh tokens -------------------------------------------------------------------------


@scenario
def login_ok(http: httpx.Client, env: Any) -> None:
    before = metric(http, "modelberth_auth_token_requests_total", grant_type="login", outcome="success")
    response = http.post("/auth/login", json={"username": env.username, "password": env.password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert (body["token_type"], body["scope"]) == ("Bearer", "predict models:read")
    assert response.headers["cache-control"] == "no-store"
    principal = verify(http, body["access_token"])
    assert (principal.subject, principal.scopes) == (env.username, {"predict", "models:read"})
    assert (
        metric(http, "modelberth_auth_token_requests_total", grant_type="login", outcome="success")
        == before + 1
    )


@scenario
def login_failures_look_alike(http: httpx.Client, env: Any) -> None:
    before_bad = metric(http, "modelberth_auth_login_failures_total", reason="bad_password")
    before_unknown = metric(http, "modelberth_auth_login_failures_total", reason="unknown_user")
    wrong = http.post("/auth/login", json={"username": env.username, "password": "wrong password"})
    unknown = http.post("/auth/login", json={"username": "nobody", "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "invalid username or password"}
    assert metric(http, "modelberth_auth_login_failures_total", reason="bad_password") == before_bad + 1
    assert metric(http, "modelberth_auth_login_failures_total", reason="unknown_user") == before_unknown + 1


@scenario
def refresh_rotates(http: httpx.Client, env: Any) -> None:
    first = login(http, env)["refresh_token"]
    response = token(http, {"grant_type": "refresh_token", "refresh_token": first})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["refresh_token"] != first
    assert body["scope"] == "predict models:read"
    assert verify(http, body["access_token"]).subject == env.username
    second = body["refresh_token"]
    third = token(http, {"grant_type": "refresh_token", "refresh_token": second}).json()["refresh_token"]
    # Reusing a rotated token revokes the whole family, including the newest token.
    reused = token(http, {"grant_type": "refresh_token", "refresh_token": first})
    assert_oauth_error(reused, 400, "invalid_grant")
    assert "already used" in reused.json()["error_description"]
    assert_oauth_error(
        token(http, {"grant_type": "refresh_token", "refresh_token": third}), 400, "invalid_grant"
    )


@scenario
def refresh_scope(http: httpx.Client, env: Any) -> None:
    first = login(http, env)["refresh_token"]
    wider = token(http, {"grant_type": "refresh_token", "refresh_token": first, "scope": "models:admin"})
    assert_oauth_error(wider, 400, "invalid_scope")
    narrower = token(http, {"grant_type": "refresh_token", "refresh_token": first, "scope": "predict"})
    assert narrower.status_code == 200, narrower.text  # the refused request did not use the token up
    assert narrower.json()["scope"] == "predict"


@scenario
def refresh_errors(http: httpx.Client, env: Any) -> None:
    assert_oauth_error(token(http, {"grant_type": "refresh_token"}), 400, "invalid_request")
    assert_oauth_error(
        token(http, {"grant_type": "refresh_token", "refresh_token": "x" * 43}), 400, "invalid_grant"
    )
    refresh = login(http, env)["refresh_token"]
    with_client = token(
        http,
        {"grant_type": "refresh_token", "refresh_token": refresh},
        basic(env.client_id, env.client_secret),
    )
    assert_oauth_error(with_client, 400, "unauthorized_client")
    bad_client = token(
        http, {"grant_type": "refresh_token", "refresh_token": refresh}, basic(env.client_id, "no")
    )
    assert_oauth_error(bad_client, 401, "invalid_client")


# -- revocation and introspection ---------------------------------------------------------------------


@scenario
def revoke_refresh_token(http: httpx.Client, env: Any) -> None:
    refresh = login(http, env)["refresh_token"]
    response = http.post("/oauth/revoke", data={"token": refresh, "token_type_hint": "refresh_token"})
    assert response.status_code == 200
    assert response.json() == {}
    assert_oauth_error(
        token(http, {"grant_type": "refresh_token", "refresh_token": refresh}), 400, "invalid_grant"
    )
    # RFC 7009 §2.2: an unknown or already revoked token is not an error.
    assert http.post("/oauth/revoke", data={"token": refresh}).status_code == 200
    assert http.post("/oauth/revoke", data={"token": "never-issued"}).status_code == 200


@scenario
def revoke_errors(http: httpx.Client, env: Any) -> None:
    assert_oauth_error(
        http.post("/oauth/revoke", data={"token_type_hint": "refresh_token"}), 400, "invalid_request"
    )
    access = login(http, env)["access_token"]
    assert_oauth_error(http.post("/oauth/revoke", data={"token": access}), 400, "unsupported_token_type")
    bad = http.post("/oauth/revoke", data={"token": "x"}, headers=basic(env.reader_id, "wrong"))
    assert_oauth_error(bad, 401, "invalid_client")
    assert_oauth_error(http.post("/oauth/revoke", json={"token": "x"}), 400, "invalid_request")


@scenario
def introspection(http: httpx.Client, env: Any) -> None:
    creds = basic(env.client_id, env.client_secret)
    access = login(http, env)["access_token"]
    active = http.post("/oauth/introspect", data={"token": access}, headers=creds)
    assert active.status_code == 200, active.text
    body = active.json()
    assert body["active"] is True
    assert (body["sub"], body["username"], body["scope"]) == (
        env.username,
        env.username,
        "predict models:read",
    )
    assert body["iss"] == ISSUER
    assert body["token_use"] == "access_token"
    assert active.headers["cache-control"] == "no-store"
    for value in ("garbage", access[:-4] + "AAAA", "x.y", "x." + "A" * 43):
        inactive = http.post("/oauth/introspect", data={"token": value}, headers=creds)
        assert inactive.json() == {"active": False}


@scenario
def refresh_token_introspection(http: httpx.Client, env: Any) -> None:
    """RFC 7662 answers for refresh tokens too (issue 18): active while it is its session's live token."""
    creds = basic(env.client_id, env.client_secret)

    def introspect(value: str) -> dict[str, Any]:
        response = http.post(
            "/oauth/introspect", data={"token": value, "token_type_hint": "refresh_token"}, headers=creds
        )
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body: dict[str, Any] = response.json()
        return body

    first = login(http, env)["refresh_token"]
    body = introspect(first)
    assert body["active"] is True
    assert (body["token_use"], body["sub"], body["username"]) == ("refresh_token", env.username, env.username)
    assert (body["scope"], body["iss"]) == ("predict models:read", ISSUER)
    assert isinstance(body["exp"], int)
    assert set(body) == {"active", "token_use", "scope", "sub", "username", "iss", "exp"}
    # Rotated: the old token is inactive, the new one active; looking at the old one revokes nothing.
    second = token(http, {"grant_type": "refresh_token", "refresh_token": first}).json()["refresh_token"]
    assert introspect(first) == {"active": False}
    assert introspect(second)["active"] is True
    third = token(http, {"grant_type": "refresh_token", "refresh_token": second})
    assert third.status_code == 200
    # Revoked: inactive.
    live = third.json()["refresh_token"]
    assert http.post("/oauth/revoke", data={"token": live}).status_code == 200
    assert introspect(live) == {"active": False}


@scenario
def introspection_errors(http: httpx.Client, env: Any) -> None:
    access = login(http, env)["access_token"]
    anonymous = http.post("/oauth/introspect", data={"token": access})
    assert_oauth_error(anonymous, 401, "invalid_client")
    assert "www-authenticate" in anonymous.headers
    wrong = http.post("/oauth/introspect", data={"token": access}, headers=basic(env.reader_id, "wrong"))
    assert_oauth_error(wrong, 401, "invalid_client")
    missing = http.post("/oauth/introspect", data={}, headers=basic(env.client_id, env.client_secret))
    assert_oauth_error(missing, 400, "invalid_request")


# -- ambiguous credentials (issue 13, point 7) ---------------------------------------------------------


def duplicates(valid: str) -> dict[str, list[tuple[str, str]]]:
    """Every kind of second credential next to a valid one."""
    auth = "authorization"
    return {
        "same value twice": [(auth, valid), (auth, valid)],
        "valid then garbage": [(auth, valid), (auth, "garbage")],
        "garbage then valid": [(auth, "garbage"), (auth, valid)],
        "basic then bearer": [(auth, valid), (auth, "Bearer a.b.c")],
        "bearer then basic": [(auth, "Bearer a.b.c"), (auth, valid)],
        "valid then empty": [(auth, valid), (auth, "")],
        "merged by a proxy": [(auth, f"{valid}, {valid}")],
    }


@scenario
def duplicate_authorization_headers(http: httpx.Client, env: Any) -> None:
    valid = basic(env.client_id, env.client_secret)["Authorization"]
    forwarder = basic(env.forwarder_id, env.client_secret)["Authorization"]
    forms = {
        "/oauth/token": {"grant_type": "client_credentials"},
        "/oauth/introspect": {"token": "x"},
        "/oauth/revoke": {"token": "x"},
    }
    for path, form in forms.items():
        assert http.post(path, data=form, headers={"authorization": valid}).status_code == 200
        for name, headers in duplicates(valid).items():
            response = http.post(path, data=form, headers=headers)
            assert_oauth_error(response, 400, "invalid_request")
            assert response.json()["error_description"] == (
                "more than one credential in the Authorization header(s)"
            ), (path, name)
    body = {"username": env.username, "password": env.password}
    address = {"x-modelberth-user-address": "192.0.2.10"}
    assert (
        http.post("/auth/login", json=body, headers={"authorization": forwarder, **address}).status_code
        == 200
    )
    for name, headers in duplicates(forwarder).items():
        response = http.post("/auth/login", json=body, headers=[*headers, *address.items()])
        assert response.status_code == 400, (name, response.text)
        assert response.json() == {"detail": "more than one credential in the Authorization header(s)"}
        assert "access_token" not in response.text


# -- the UI forwards the browser's address (issue 13, point 2) ------------------------------------------


@scenario
def forwarded_user_address(http: httpx.Client, env: Any) -> None:
    body = {"username": env.username, "password": env.password}

    def via(creds: dict[str, str], *addresses: str) -> httpx.Response:
        headers = [*creds.items(), *(("X-Modelberth-User-Address", a) for a in addresses)]
        return http.post("/auth/login", json=body, headers=headers)

    ui = basic(env.forwarder_id, env.client_secret)
    ok = via(ui, "198.51.100.23")
    assert ok.status_code == 200, ok.text
    assert "refresh_token" in ok.json()
    assert via(ui, "2001:db8::7").status_code == 200
    for wrong in (basic(env.forwarder_id, "wrong"), basic("no-such-client", env.client_secret)):
        refused = via(wrong, "198.51.100.23")
        assert refused.status_code == 401
        assert refused.json() == {"detail": "invalid client credentials"}
        assert refused.headers["www-authenticate"].startswith("Basic")
    not_a_forwarder = via(basic(env.client_id, env.client_secret), "198.51.100.23")
    assert not_a_forwarder.status_code == 403
    assert not_a_forwarder.json() == {"detail": "this client may not forward user addresses"}
    missing = via(ui)
    assert missing.status_code == 400
    assert missing.json() == {"detail": "a forwarder must send X-Modelberth-User-Address"}
    for bad in ("", "localhost", "198.51.100.23, 10.0.0.1", "300.1.2.3", "198.51.100.23:80", "x" * 300):
        response = via(ui, bad)
        assert response.status_code == 400, bad
        assert response.json() == {"detail": "X-Modelberth-User-Address must be one IP address"}
    twice = via(ui, "198.51.100.23", "198.51.100.24")
    assert twice.status_code == 400
    assert twice.json() == {"detail": "more than one X-Modelberth-User-Address header"}
    # A forwarder's secret mints nothing itself.
    assert_oauth_error(token(http, {"grant_type": "client_credentials"}, ui), 400, "unauthorized_client")


# -- discovery ----------------------------------------------------------------------------------------


@scenario
def discovery(http: httpx.Client, env: Any) -> None:
    jwks = http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    keys = jwks.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "EC"
    assert keys[0]["alg"] == "ES256"
    assert "d" not in keys[0]  # never the private part
    meta = http.get("/.well-known/openid-configuration").json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials", "refresh_token"]
    assert meta["scopes_supported"] == ["predict", "models:read", "models:admin"]
    assert http.get("/.well-known/oauth-authorization-server").json() == meta


@pytest.mark.parametrize("run", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_in_process(run: Scenario, client: TestClient, auth_env: Any) -> None:
    run(client, auth_env)


@pytest.fixture(scope="module")
def shared_store(redis_servers: Callable[[], Any]) -> Any:
    """One real redis-server for every scenario of this module (each uses its own key prefix)."""
    return redis_servers()


@pytest.mark.integration
@pytest.mark.parametrize("run", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_with_a_shared_store(run: Scenario, auth_env: Any, shared_store: Any) -> None:
    """Every grant and error path again, with refresh tokens and counts in Redis (issue 18): same answers."""
    prefix = f"{run.__name__}:"
    settings = auth_env.settings(
        state_url=shared_store.url, state_password=shared_store.password, state_prefix=prefix
    )
    with TestClient(create_app(settings)) as http:
        assert http.get("/readyz").json()["state"] == "shared"
        run(http, auth_env)
    assert not auth_env.refresh_file.exists()  # nothing went to the in-process file


@pytest.mark.integration
def test_real_process(start_service: Callable[..., Any], auth_env: Any) -> None:
    # One process for every scenario, with the default limits. uvicorn trusts X-Forwarded-For from
    # 127.0.0.1 (FORWARDED_ALLOW_IPS), so each scenario comes from its own address and failures do not add
    # up across scenarios.
    service = start_service("auth", env=auth_env.env(FORWARDED_ALLOW_IPS="127.0.0.1"))
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        for i, run in enumerate(SCENARIOS):
            http.headers["X-Forwarded-For"] = f"10.0.{i}.1"
            run(http, auth_env)
        del http.headers["X-Forwarded-For"]
        check_lockout(http, auth_env)
    logs = service.logs()
    assert auth_env.password not in logs
    assert auth_env.client_secret not in logs
    assert '"request_id"' in logs


def check_lockout(http: httpx.Client, env: Any) -> None:
    """Throttling against the real process, behind a trusted proxy (uvicorn believes X-Forwarded-For from
    127.0.0.1): per (username, address) with Retry-After, never for the same user elsewhere."""
    limited = metric(http, "modelberth_auth_rate_limited_total")
    unknown = metric(http, "modelberth_auth_login_failures_total", reason="unknown_user")

    def from_address(address: str, username: str, password: str) -> httpx.Response:
        body = {"username": username, "password": password}
        return http.post("/auth/login", json=body, headers={"X-Forwarded-For": address})

    for i in range(5):
        assert from_address("203.0.113.1", f"guess{i}", "wrong password").status_code == 401
    assert from_address("203.0.113.1", env.username, env.password).status_code == 200  # other accounts
    for _ in range(5):
        assert from_address("198.51.100.1", env.admin, "wrong password").status_code == 401
    locked = from_address("198.51.100.1", env.admin, env.password)  # right password, locked pair
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "30"
    assert locked.json() == {"detail": "too many failed logins; try again later"}
    assert from_address("192.0.2.9", env.admin, env.password).status_code == 200  # the owner elsewhere
    assert metric(http, "modelberth_auth_rate_limited_total") == limited + 1
    assert metric(http, "modelberth_auth_login_failures_total", reason="unknown_user") == unknown + 5


def test_verifier_rejects_tampered_token(client: TestClient, auth_env: Any) -> None:
    access = login(client, auth_env)["access_token"]
    head, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "predict models:read models:admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        verify(client, f"{head}.{forged}.{signature}")


def test_settings_change_issuer_audience_ttl(auth_env: Any) -> None:
    settings = auth_env.settings(issuer="https://auth.example", audience="other", access_token_ttl_seconds=60)
    with TestClient(create_app(settings)) as http:
        body = login(http, auth_env)
        assert body["expires_in"] == 60
        keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
        claims = asyncio.run(
            TokenVerifier(StaticKeySource(keys), issuer="https://auth.example", audience="other").verify(
                body["access_token"]
            )
        ).claims
        assert claims["exp"] - claims["iat"] == 60
        assert http.get("/.well-known/openid-configuration").json()["token_endpoint"] == (
            "https://auth.example/oauth/token"
        )
