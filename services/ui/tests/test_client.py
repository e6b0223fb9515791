"""The HTTP client: requests it sends, answers it parses, and the typed errors it raises."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelberth_core.contract import ModelCard
from modelberth_ui.client import (
    ForbiddenError,
    InvalidCredentialsError,
    InvalidInputError,
    ModelberthClient,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
    SessionExpiredError,
    UnexpectedResponseError,
    parse_problems,
)


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
    client = ModelberthClient("http://a", "http://i", connect_timeout=1.5, request_timeout=4.0)
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
