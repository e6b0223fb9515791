"""Brute-force protection on its own and in the app: per (account, address) with exponential backoff, per
address across accounts, never per client id; a success clears the pair. Different addresses in a real
process are in ``test_throttle_http.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelberth_auth.app import create_app
from modelberth_auth.settings import Settings
from modelberth_auth.throttle import MemoryThrottle, ThrottlePolicy, address_key

T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def fail(throttle: MemoryThrottle, account: str | None, address: str) -> int | None:
    """One failed attempt; the wait it met instead when it was not admitted."""
    wait = run(throttle.admit(account, address))
    if wait is None:
        run(throttle.failed(account, address))
    return wait


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def attempt(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.post("/auth/login", json={"username": username, "password": password})


# -- the throttle ---------------------------------------------------------------------------------------


def test_backoff_doubles_after_the_free_failures_and_caps() -> None:
    clock = FakeClock()
    throttle = MemoryThrottle(
        ThrottlePolicy(max_failures=5, backoff_seconds=30, backoff_max_seconds=900), clock=clock
    )
    for _ in range(5):
        assert fail(throttle, "user:alice", "192.0.2.1") is None
    waits = []
    for _ in range(8):
        wait = run(throttle.admit("user:alice", "192.0.2.1"))
        assert wait is not None
        waits.append(wait)
        clock.now += wait
        assert fail(throttle, "user:alice", "192.0.2.1") is None
    assert waits == [30, 60, 120, 240, 480, 900, 900, 900]


def test_a_success_clears_the_pair_and_quiet_time_forgets_it() -> None:
    clock = FakeClock()
    throttle = MemoryThrottle(ThrottlePolicy(reset_seconds=3600), clock=clock)
    for _ in range(4):
        fail(throttle, "user:alice", "192.0.2.1")
    assert run(throttle.admit("user:alice", "192.0.2.1")) is None
    run(throttle.succeeded("user:alice", "192.0.2.1"))
    for _ in range(4):
        assert fail(throttle, "user:alice", "192.0.2.1") is None  # four free again, not one
    fail(throttle, "user:alice", "192.0.2.1")
    assert run(throttle.admit("user:alice", "192.0.2.1")) == 30
    clock.now += 3600
    assert run(throttle.admit("user:alice", "192.0.2.1")) is None


def test_failures_from_one_address_never_lock_the_account_elsewhere() -> None:
    clock = FakeClock()
    throttle = MemoryThrottle(ThrottlePolicy(address_max_failures=1000), clock=clock)
    failures = 0
    while failures < 20:  # an attacker who waits out every backoff
        wait = fail(throttle, "user:alice", "203.0.113.66")
        clock.now += wait or 0
        failures += wait is None
    assert run(throttle.admit("user:alice", "203.0.113.66")) == 900
    assert run(throttle.admit("user:alice", "198.51.100.7")) is None
    assert run(throttle.admit("user:bob", "203.0.113.66")) is None


def test_the_address_limit_spans_accounts_and_clients() -> None:
    clock = FakeClock()
    throttle = MemoryThrottle(
        ThrottlePolicy(address_max_failures=10, address_window_seconds=900), clock=clock
    )
    for i in range(9):
        fail(throttle, f"user:guess{i}", "203.0.113.66")
        clock.now += 10
    assert fail(throttle, None, "203.0.113.66") is None  # a wrong client secret counts too
    assert run(throttle.admit("user:alice", "203.0.113.66")) == 900 - 90  # until the first one leaves
    assert run(throttle.admit(None, "203.0.113.66")) == 900 - 90
    assert run(throttle.admit("user:alice", "203.0.113.67")) is None
    clock.now += 900 - 90
    assert run(throttle.admit("user:alice", "203.0.113.66")) is None


def test_client_failures_never_lock_the_client_id() -> None:
    throttle = MemoryThrottle(ThrottlePolicy(address_max_failures=1000))
    for i in range(500):
        assert fail(throttle, None, f"203.0.113.{i % 200}") is None
    assert run(throttle.admit(None, "198.51.100.7")) is None


def test_parallel_attempts_cannot_outrun_the_count() -> None:
    # Admission counts the attempt before the (slow) password check: 50 guesses sent at once for one
    # account get 5 checks, not 50.
    throttle = MemoryThrottle(ThrottlePolicy(max_failures=5))
    admitted = [run(throttle.admit("user:alice", "192.0.2.1")) for _ in range(50)]
    assert admitted.count(None) == 5


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::99", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("testclient", "testclient"),
    ],
)
def test_ipv6_addresses_count_per_64(address: str, key: str) -> None:
    assert address_key(address) == key


def test_memory_is_bounded() -> None:
    throttle = MemoryThrottle(ThrottlePolicy(address_max_failures=1000), max_keys=100)
    for i in range(1000):
        fail(throttle, f"user:{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(throttle._pairs) <= 100
    assert len(throttle._addresses) <= 100


def test_reset_must_outlast_the_longest_wait() -> None:
    with pytest.raises(ValueError, match="login_reset_seconds"):
        Settings(login_backoff_max_seconds=3600, login_reset_seconds=600)


# -- in the app ---------------------------------------------------------------------------------------


def setup_app(auth_env: Any, clock: FakeClock, **settings: Any) -> TestClient:
    app = create_app(auth_env.settings(**settings))
    app.state.throttle.clock = clock
    return TestClient(app)


def test_login_backoff_retry_after_and_metrics(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock) as http:
        for _ in range(5):
            assert attempt(http, auth_env.username, "wrong password").status_code == 401
        assert metric(http, "modelberth_auth_rate_limited_total") == 0
        locked = attempt(http, auth_env.username, auth_env.password)  # even the right password waits
        assert locked.status_code == 429
        assert locked.json() == {"detail": "too many failed logins; try again later"}
        assert locked.headers["retry-after"] == "30"
        assert metric(http, "modelberth_auth_rate_limited_total") == 1
        assert (
            metric(http, "modelberth_auth_token_requests_total", grant_type="login", outcome="rate_limited")
            == 1
        )
        # Case does not dodge the lock.
        assert attempt(http, auth_env.username.upper(), auth_env.password).status_code == 429
        clock.now += 30
        assert attempt(http, auth_env.username, auth_env.password).status_code == 200


def test_unknown_usernames_are_throttled_like_known_ones(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock) as http:
        for _ in range(5):
            assert attempt(http, "ghost", "x" * 12).status_code == 401
        response = attempt(http, "ghost", "x" * 12)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "30"


def test_wrong_client_secrets_lock_the_address_not_the_client(auth_env: Any) -> None:
    clock = FakeClock()
    with setup_app(auth_env, clock, address_max_failures=8) as http:
        data = {"grant_type": "client_credentials", "client_id": auth_env.client_id, "client_secret": "wrong"}
        for _ in range(8):
            assert http.post("/oauth/token", data=data).status_code == 401
        good = {**data, "client_secret": auth_env.client_secret}
        locked = http.post("/oauth/token", data=good)
        assert locked.status_code == 429
        assert locked.json()["error"] == "temporarily_unavailable"
        assert locked.headers["retry-after"] == "900"
        # The client id itself is never locked: test_throttle_http.py uses it from another address.
        clock.now += 900
        assert http.post("/oauth/token", data=good).status_code == 200
