"""The HTTP client: requests it sends, answers it parses, and the typed errors it raises."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import httpx
import pytest
from pydantic import SecretStr

from modelberth_core.contract import ModelCard
from modelberth_ui import handlers
from modelberth_ui.client import (
    ClientRejectedError,
    ForbiddenError,
    InvalidCredentialsError,
    InvalidInputError,
    ModelberthClient,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
    SessionExpiredError,
    Timeouts,
    UnexpectedResponseError,
    basic_credentials,
    parse_problems,
)
from modelberth_ui.settings import Settings


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> ModelberthClient:
    return ModelberthClient(
        "http://auth.test", "http://inference.test", transport=httpx.MockTransport(handler)
    )


def test_login_posts_json_and_returns_the_grant(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    grant = fake.client().login("alice", "correct horse")
    assert grant.access_token == "token-1"
    assert grant.refresh_token == "refresh-1"
    assert grant.scopes == ("predict", "models:read")
    request = fake.requests[0]
    assert (request.method, request.url.path) == ("POST", "/auth/login")
    assert json.loads(request.content) == {"username": "alice", "password": "correct horse"}


def test_wrong_password_is_invalid_credentials(fake_factory: Any, mixed_card: ModelCard) -> None:
    with pytest.raises(InvalidCredentialsError) as caught:
        fake_factory(mixed_card).client().login("alice", "wrong")
    assert caught.value.message == "invalid username or password"
    assert caught.value.status_code == 401


def test_lockout_is_rate_limited_with_retry_after(fake_factory: Any, mixed_card: ModelCard) -> None:
    with pytest.raises(RateLimitedError) as caught:
        fake_factory(mixed_card, locked=True).client().login("alice", "correct horse")
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize(
    ("error", "expected"),
    [(httpx.ConnectError("refused"), "not reachable"), (httpx.ReadTimeout("slow"), "did not answer in time")],
)
def test_transport_failures_are_service_unavailable(error: Exception, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(ServiceUnavailableError, match=expected):
        _client(handler).login("alice", "pw")


def test_explicit_timeouts_are_configured() -> None:
    client = ModelberthClient("http://a", "http://i", timeouts=Timeouts(connect=1.5, request=4.0))
    assert client._auth.timeout == httpx.Timeout(4.0, connect=1.5)
    assert client._inference.timeout == httpx.Timeout(4.0, connect=1.5)


def test_list_models_and_card_send_the_bearer_token(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    client = fake.client()
    models = client.list_models("token-1")
    assert [(m.name, m.version) for m in models] == [("loans", mixed_card.version)]
    card = client.get_card("token-1", "loans")  # the fake adds a "status" field: tolerated
    assert card == mixed_card
    assert all(r.headers["authorization"] == "Bearer token-1" for r in fake.requests)


def test_a_bad_model_name_never_reaches_the_network() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with pytest.raises(NotFoundError):
        _client(handler).get_card("t", "../../admin")


def test_401_from_inference_is_session_expired(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card, expired_tokens={"old"})
    with pytest.raises(SessionExpiredError):
        fake.client().predict("old", "loans", [{"age": 30}])


def test_422_names_rows_and_fields() -> None:
    detail = [
        {
            "loc": ["body", "instances", 2, "age"],
            "msg": "expected a number, got a string",
            "type": "number_type",
        },
        {"loc": ["body", "instances"], "msg": "3 more errors not shown", "type": "too_many_errors"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": detail})

    with pytest.raises(InvalidInputError) as caught:
        _client(handler).predict("t", "loans", [{}, {}, {}])
    problems = caught.value.problems
    assert [(p.row, p.field, p.message) for p in problems] == [
        (2, "age", "expected a number, got a string"),
        (None, None, "3 more errors not shown"),
    ]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, ForbiddenError),
        (404, NotFoundError),
        (413, PayloadTooLargeError),
        (503, ServiceUnavailableError),
    ],
)
def test_status_codes_map_to_typed_errors(status: int, error: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": "nope"})

    with pytest.raises(error):
        _client(handler).predict("t", "loans", [{}])


def test_a_prediction_count_mismatch_is_unexpected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model": "m", "version": "v", "predictions": ["a"], "warnings": []})

    with pytest.raises(UnexpectedResponseError):
        _client(handler).predict("t", "loans", [{}, {}])


def test_non_json_answer_is_unexpected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>proxy error</html>")

    with pytest.raises(UnexpectedResponseError):
        _client(handler).list_models("t")


def test_example_report_and_readiness(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(
        mixed_card, examples={"loans": [{"age": 30, "job": "tech"}]}, reports={"loans": "<p>r</p>"}
    )
    client = fake.client()
    assert client.get_example("t", "loans", 0).instance == {"age": 30, "job": "tech"}
    predicted = client.predict_example("t", "loans", 0)
    assert (predicted.index, predicted.instance) == (0, {"age": 30, "job": "tech"})
    assert client.get_report("t", "loans") == "<p>r</p>"
    assert client.readiness() == {"auth": "ready", "inference": "ready"}
    fake.ready = False
    assert client.readiness() == {"auth": "HTTP 503", "inference": "HTTP 503"}


def test_revoke_posts_the_token_as_a_form(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    fake.client().revoke("refresh-1")
    request = fake.requests[0]
    assert request.url.path == "/oauth/revoke"
    assert request.content == b"token=refresh-1&token_type_hint=refresh_token"


def test_parse_problems_accepts_strings_and_objects() -> None:
    assert [(p.row, p.field) for p in parse_problems("bad")] == [(None, None)]
    assert [
        (p.row, p.field, p.message) for p in parse_problems({"row": 1, "feature": "x", "message": "m"})
    ] == [(1, "x", "m")]


# --- the UI as a confidential client (issue 13, point 2) -------------------------------------------

SECRET = "s3cr:et +/%é-0123456789abcdef"
"""A client secret holding every character Basic credentials and form encoding must carry."""


@pytest.mark.parametrize(
    ("client_id", "secret", "encoded"),
    [
        ("modelberth-ui", SECRET, "modelberth-ui:s3cr%3Aet+%2B%2F%25%C3%A9-0123456789abcdef"),
        ("ui:one two", "plain", "ui%3Aone+two:plain"),
    ],
)
def test_a_confidential_ui_logs_in_with_basic_credentials_and_the_browser_address(
    fake_factory: Any, mixed_card: ModelCard, client_id: str, secret: str, encoded: str
) -> None:
    fake = fake_factory(mixed_card)
    client = fake.client(client_id=client_id, client_secret=SecretStr(secret))
    assert client.confidential
    client.login("alice", "correct horse", "203.0.113.7")
    request = fake.requests[0]
    scheme, _, value = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    # RFC 6749 §2.3.1: each part form-urlencoded, then "id:secret" base64-encoded.
    assert base64.b64decode(value, validate=True).decode("ascii") == encoded
    decoded_id, _, decoded_secret = encoded.partition(":")
    assert (unquote_plus(decoded_id), unquote_plus(decoded_secret)) == (client_id, secret)
    assert request.headers["x-modelberth-user-address"] == "203.0.113.7"
    assert json.loads(request.content) == {"username": "alice", "password": "correct horse"}


def test_without_a_secret_the_ui_logs_in_as_before(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    client = fake.client()
    assert not client.confidential
    client.login("alice", "correct horse", "203.0.113.7")
    # Auth would not believe an address from an unauthenticated caller: it is not sent at all.
    assert "authorization" not in fake.requests[0].headers
    assert "x-modelberth-user-address" not in fake.requests[0].headers


def test_client_settings_come_from_ui_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().client_id, Settings().client_secret) == ("modelberth-ui", None)
    monkeypatch.setenv("UI_CLIENT_ID", "ui-2")
    monkeypatch.setenv("UI_CLIENT_SECRET", SECRET)
    settings = Settings()
    assert settings.client_id == "ui-2"
    assert isinstance(settings.client_secret, SecretStr)
    assert settings.client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    client = ModelberthClient.from_settings(settings)
    assert client.confidential
    client.close()


def test_refused_client_credentials_are_not_a_wrong_password() -> None:
    def refuse(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={"error": "invalid_client", "error_description": "client authentication failed"},
            headers={"www-authenticate": 'Basic realm="modelberth"'},
        )

    client = ModelberthClient(
        "http://auth.test", "http://inference.test", client_secret=SecretStr(SECRET),
        transport=httpx.MockTransport(refuse),
    )  # fmt: skip
    with pytest.raises(ClientRejectedError):
        client.login("alice", "correct horse", "203.0.113.7")
    result = handlers.login(client, None, "alice", "correct horse")
    assert result.message == "Cannot log in right now: auth refused the UI's client credentials."


@pytest.mark.parametrize(
    "answer",
    [
        lambda: httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 60}),
        lambda: httpx.Response(401, json={"error": "invalid_grant", "error_description": "wrong"}),
        lambda: httpx.Response(401, json={"error": "invalid_client"}),
        lambda: httpx.Response(429, json={"detail": "slow down"}, headers={"retry-after": "5"}),
        lambda: httpx.Response(500, text="boom"),
        lambda: httpx.Response(200, text="not json"),
    ],
)
def test_the_client_secret_is_never_logged(caplog: pytest.LogCaptureFixture, answer: Any) -> None:
    caplog.set_level(logging.DEBUG)

    def handle(_: httpx.Request) -> httpx.Response:
        return answer()

    client = ModelberthClient(
        "http://auth.test", "http://inference.test", client_secret=SecretStr(SECRET),
        transport=httpx.MockTransport(handle),
    )  # fmt: skip
    result = handlers.login(client, None, "alice", "correct horse", address="203.0.113.7")
    header = basic_credentials("modelberth-ui", SECRET)
    seen = " ".join([caplog.text, result.message, repr(client), repr(result), *map(str, caplog.records)])
    for needle in (SECRET, quote_plus(SECRET, safe=""), header, header.split()[1]):
        assert needle not in seen


def test_a_transport_failure_does_not_log_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = ModelberthClient(
        "http://auth.test", "http://inference.test", client_secret=SecretStr(SECRET),
        transport=httpx.MockTransport(fail),
    )  # fmt: skip
    result = handlers.login(client, None, "alice", "correct horse", address="203.0.113.7")
    assert result.message == "Cannot log in right now: the auth service is not reachable."
    assert SECRET not in caplog.text
    assert basic_credentials("modelberth-ui", SECRET).split()[1] not in caplog.text
