"""Brute-force protection: 5 failures per username or per client address in 15 minutes -> 429 with
Retry-After; the lock lifts when the window passes; a success resets the username's count."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelberth_auth.app import create_app
from modelberth_auth.throttle import LoginThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def attempt(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.post("/auth/login", json={"username": username, "password": password})


def test_throttle_window_and_reset() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=5, window_seconds=900, clock=clock)
    for _ in range(4):
        throttle.fail("user:a")
        clock.now += 10
    assert throttle.retry_after("user:a") is None
    throttle.fail("user:a")
    assert throttle.retry_after("user:a") == 900 - 40  # until the first failure leaves the window
    assert throttle.retry_after("user:b") is None
    clock.now += 900 - 40
    assert throttle.retry_after("user:a") is None
    throttle.fail("user:a")
    throttle.reset("user:a")
    assert throttle.retry_after("user:a") is None


def test_throttle_memory_is_bounded() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=5, window_seconds=900, max_keys=100, clock=clock)
    for i in range(1000):
        throttle.fail(f"addr:{i}")
    assert len(throttle._failures) <= 100


def setup_app(auth_env: Any, clock: FakeClock) -> TestClient:
    app = create_app(auth_env.settings())
    app.state.throttle.clock = clock
    return TestClient(app)


def test_username_lockout_and_window_reset(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock) as http:
        for _ in range(5):
            assert attempt(http, auth_env.username, "wrong password").status_code == 401
        assert metric(http, "modelberth_auth_rate_limited_total") == 0
        locked = attempt(http, auth_env.username, auth_env.password)  # even the right password
        assert locked.status_code == 429
        assert locked.json() == {"detail": "too many failed logins; try again later"}
        assert 0 < int(locked.headers["retry-after"]) <= 900
        assert metric(http, "modelberth_auth_rate_limited_total") == 1
        assert (
            metric(http, "modelberth_auth_token_requests_total", grant_type="login", outcome="rate_limited")
            == 1
        )
        # Case does not dodge the lock.
        assert attempt(http, auth_env.username.upper(), auth_env.password).status_code == 429
        clock.now += 901
        assert attempt(http, auth_env.username, auth_env.password).status_code == 200


def test_success_resets_the_username_count(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock) as http:
        for _ in range(4):
            assert attempt(http, auth_env.username, "wrong password").status_code == 401
        assert attempt(http, auth_env.username, auth_env.password).status_code == 200
        app_throttle = http.app.state.throttle  # type: ignore[attr-defined]
        app_throttle._failures.pop("addr:testclient", None)  # isolate the username count
        for _ in range(4):
            assert attempt(http, auth_env.username, "wrong password").status_code == 401
        assert attempt(http, auth_env.username, auth_env.password).status_code == 200


def test_address_lockout_spans_usernames(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock) as http:
        for i in range(5):
            assert attempt(http, f"guess{i}", "wrong password").status_code == 401
        assert attempt(http, auth_env.admin, auth_env.password).status_code == 429


def test_unknown_usernames_lock_too(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock) as http:
        http.app.state.throttle.max_failures = 5  # type: ignore[attr-defined]
        for _ in range(5):
            assert attempt(http, "ghost", "x" * 12).status_code == 401
        response = attempt(http, "ghost", "x" * 12)
        assert response.status_code == 429
        assert "retry-after" in response.headers


def test_client_credentials_lockout(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock) as http:
        data = {"grant_type": "client_credentials", "client_id": auth_env.client_id, "client_secret": "wrong"}
        for _ in range(5):
            assert http.post("/oauth/token", data=data).status_code == 400
        good = {**data, "client_secret": auth_env.client_secret}
        locked = http.post("/oauth/token", data=good)
        assert locked.status_code == 429
        assert locked.json()["error"] == "temporarily_unavailable"
        assert int(locked.headers["retry-after"]) > 0
        clock.now += 901
        assert http.post("/oauth/token", data=good).status_code == 200
