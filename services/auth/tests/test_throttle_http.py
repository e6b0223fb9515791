"""A stranger can never lock out someone else (issue 13, point 2), against a real auth process.

Callers really come from different source addresses: every 127.0.0.0/8 address is this machine's loopback,
so a client bound to 127.0.0.2 is a different peer from one bound to 127.0.0.3. uvicorn trusts
X-Forwarded-For from 127.0.0.1 only (``FORWARDED_ALLOW_IPS``, standing for the ingress); the UI is the
client ``modelberth-ui`` with ``forwards_user_address`` and sends the browser's address in
X-Modelberth-User-Address together with its own credentials.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

ADDRESS_LIMIT = 12
BACKOFF_SECONDS = 30.0
"""Auth's default login backoff (``AUTH_LOGIN_BACKOFF_SECONDS``), which these tests keep."""
"""Failures from one address before it waits (lowered from 50 so the test takes seconds)."""


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@contextmanager
def caller(url: str, source: str) -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from ``source`` (a loopback address)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, transport=transport, timeout=10.0) as client:
        yield client


def login(http: httpx.Client, username: str, password: str, **headers: str) -> httpx.Response:
    return http.post("/auth/login", json={"username": username, "password": password}, headers=headers)


def test_a_stranger_never_locks_out_someone_else(start_service: Callable[..., Any], auth_env: Any) -> None:
    env = auth_env.env(AUTH_ADDRESS_MAX_FAILURES=str(ADDRESS_LIMIT), FORWARDED_ALLOW_IPS="127.0.0.1")
    service = start_service("auth", env=env)
    user, password = auth_env.username, auth_env.password
    ui = basic(auth_env.forwarder_id, auth_env.client_secret)

    # 1. Many failures from address A, with every header that could shift the blame onto the victim's address:
    #    they count against A only. A's own right password waits; the owner at B logs in.
    forged = {
        "X-Forwarded-For": "127.0.0.3",
        "X-Real-IP": "127.0.0.3",
        "X-Modelberth-User-Address": "127.0.0.3",
    }
    with caller(service.url, "127.0.0.2") as attacker, caller(service.url, "127.0.0.3") as owner:
        answers = [login(attacker, user, f"guess {i}", **forged).status_code for i in range(4)]
        before_fifth = time.monotonic()  # the server sees the fifth failure, the backoff's start, after this
        answers += [login(attacker, user, f"guess {i}", **forged).status_code for i in range(4, 10)]
        assert answers == [401] * 5 + [429] * 5
        blocked = login(attacker, user, password, **forged)
        waited = time.monotonic() - before_fifth  # at least what the server counts since that failure
        assert blocked.status_code == 429  # the forged headers did not move the count to 127.0.0.3
        # the default backoff less the time since the fifth failure, rounded up; the refused attempts did not
        # double it
        assert math.ceil(BACKOFF_SECONDS - waited) <= int(blocked.headers["retry-after"]) <= BACKOFF_SECONDS
        assert login(owner, user, password).status_code == 200
        assert login(owner, user, password, **forged).status_code == 200

    # 2. Behind the ingress (a trusted proxy at 127.0.0.1): each browser counts on its own.
    with caller(service.url, "127.0.0.1") as ingress:
        for i in range(5):
            assert login(ingress, user, f"guess {i}", **{"X-Forwarded-For": "203.0.113.5"}).status_code == 401
        assert login(ingress, user, password, **{"X-Forwarded-For": "203.0.113.5"}).status_code == 429
        assert login(ingress, user, password, **{"X-Forwarded-For": "203.0.113.6"}).status_code == 200

    # 3. Through the UI: the UI's own address is shared by every browser, the forwarded one is not.
    with caller(service.url, "127.0.0.4") as ui_pod:

        def via_ui(address: str, secret: str, creds: dict[str, str] = ui) -> httpx.Response:
            headers = {**creds, "X-Modelberth-User-Address": address}
            return ui_pod.post("/auth/login", json={"username": user, "password": secret}, headers=headers)

        for i in range(5):
            assert via_ui("198.51.100.66", f"guess {i}").status_code == 401
        assert via_ui("198.51.100.66", password).status_code == 429
        assert via_ui("198.51.100.7", password).status_code == 200
        # Wrong forwarder credentials: 401 and no login, however right the password is.
        refused = via_ui("198.51.100.7", password, basic(auth_env.forwarder_id, "not the secret"))
        assert refused.status_code == 401
        assert refused.json() == {"detail": "invalid client credentials"}
        assert "access_token" not in refused.text
        # A client that is not a forwarder cannot vouch for anyone.
        other = via_ui("198.51.100.7", password, basic(auth_env.client_id, auth_env.client_secret))
        assert other.status_code == 403

    # 4. Client secrets: no lockout of the client id, which is public; the address limit applies.
    form = {"grant_type": "client_credentials", "client_id": auth_env.client_id}
    with caller(service.url, "127.0.0.5") as guesser, caller(service.url, "127.0.0.6") as batch_job:
        codes = [
            guesser.post("/oauth/token", data={**form, "client_secret": f"g{i}"}).status_code
            for i in range(15)
        ]
        assert codes == [401] * ADDRESS_LIMIT + [429] * (15 - ADDRESS_LIMIT)
        right = {**form, "client_secret": auth_env.client_secret}
        assert guesser.post("/oauth/token", data=right).status_code == 429
        assert login(guesser, auth_env.admin, password).status_code == 429  # logins from there too
        assert batch_job.post("/oauth/token", data=right).status_code == 200

    # 5. Password spraying: many accounts from one address trip the address limit; others are unaffected.
    with caller(service.url, "127.0.0.7") as sprayer, caller(service.url, "127.0.0.3") as owner:
        codes = [login(sprayer, f"user{i}", "Winter2026!").status_code for i in range(ADDRESS_LIMIT + 2)]
        assert codes == [401] * ADDRESS_LIMIT + [429, 429]
        assert login(sprayer, auth_env.admin, password).status_code == 429
        assert login(owner, auth_env.admin, password).status_code == 200

    assert password not in service.logs()
