"""The shared state store against a real redis-server (issue 18): refresh-token families and throttle counts
behave as the in-process ones do, atomically across pools (a pool is a replica), with keys that expire by
themselves, nothing secret in the store, and outages that answer at once and heal by themselves."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from modelberth_auth.refresh import RefreshError, family_key, token_hash
from modelberth_auth.refresh_redis import ROTATE, RedisRefreshStore
from modelberth_auth.state import StateConfig, StateStore, StateUnavailable, parse_state_url
from modelberth_auth.throttle import ThrottlePolicy
from modelberth_auth.throttle_redis import RedisThrottle

pytestmark = pytest.mark.integration

T = TypeVar("T")


def store_for(server: Any, prefix: str = "t:", timeout: float = 0.5, retry: float = 0.5) -> StateStore:
    """A connection pool of its own: each one stands for one auth replica."""
    return StateStore(
        StateConfig(
            parse_state_url(server.url),
            password=server.password,
            prefix=prefix,
            timeout_seconds=timeout,
            retry_seconds=retry,
            max_connections=8,
        )
    )


@asynccontextmanager
async def replicas(server: Any, count: int = 2, **kwargs: Any) -> AsyncIterator[list[StateStore]]:
    stores = [store_for(server, **kwargs) for _ in range(count)]
    try:
        yield stores
    finally:
        for store in stores:
            await store.aclose()


def run(coroutine: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coroutine())  # type: ignore[arg-type]


async def reason(store: RedisRefreshStore, token: str) -> str:
    with pytest.raises(RefreshError) as caught:
        await store.rotate(token)
    return caught.value.reason


# -- refresh-token families -----------------------------------------------------------------------------


def test_rotation_reuse_and_revocation_are_seen_by_every_replica(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server) as (a, b):
            on_a, on_b = RedisRefreshStore(a, 3600), RedisRefreshStore(b, 3600)
            first = await on_a.issue("alice", "predict")
            record, second = await on_b.rotate(first)  # issued on A, redeemed on B
            assert (record.subject, record.scope, record.rotations) == ("alice", "predict", 0)
            assert await on_a.lookup(first) is None
            assert (await on_a.lookup(second)) is not None
            assert await reason(on_a, first) == "reused"  # the replay on A revokes the family ...
            assert await reason(on_b, second) == "revoked"  # ... for B's successor too
            assert await on_b.lookup(second) is None
            for garbage in ("nope", "", ".", "a.b.c", first.split(".")[0] + "x." + first.split(".")[1]):
                assert await reason(on_b, garbage) == "invalid"
            third = await on_a.issue("alice", "predict")
            assert await on_b.revoke(third)  # revoked on B: redeeming on A fails at once
            assert await reason(on_a, third) == "revoked"
            assert not await on_b.revoke("nope")
            assert not await on_b.revoke("unknown." + "A" * 43)

    run(scenario)


def test_reuse_of_any_earlier_token_revokes_the_family(redis_server: Any) -> None:
    # Issue 13 point 8, with the family in Redis: 60 quick rotations alternating between replicas, then
    # each earlier token replayed on a fresh family of the same history (a copy of the hash).
    async def scenario() -> None:
        async with replicas(redis_server) as (a, b):
            stores = [RedisRefreshStore(a, 3600), RedisRefreshStore(b, 3600)]
            tokens = [await stores[0].issue("alice", "predict")]
            for i in range(60):
                tokens.append((await stores[i % 2].rotate(tokens[-1]))[1])
            key = f"t:rt:fam:{family_key(tokens[0])}"
            saved = await a.redis.hgetall(key)
            for i, earlier in enumerate(tokens[:-1]):
                await a.redis.hset(key, mapping=saved)  # the live family again
                assert await stores[i % 2].lookup(tokens[-1]) is not None
                assert await reason(stores[(i + 1) % 2], earlier) == "reused", i
                assert await reason(stores[i % 2], tokens[-1]) == "revoked", i

    run(scenario)


def test_concurrent_redemption_on_two_replicas_succeeds_exactly_once(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server, count=4) as pools:
            stores = [RedisRefreshStore(p, 3600) for p in pools]
            for _ in range(20):
                token = await stores[0].issue("alice", "predict")
                outcomes = await asyncio.gather(
                    *(stores[i % 4].rotate(token) for i in range(16)), return_exceptions=True
                )
                wins = [o for o in outcomes if isinstance(o, tuple)]
                losses = {o.reason for o in outcomes if isinstance(o, RefreshError)}
                assert len(wins) == 1, outcomes
                assert losses <= {"reused", "revoked"}
                assert "reused" in losses
                # The winner's successor died with the family: the replay revoked it everywhere.
                assert await reason(stores[1], wins[0][1]) == "revoked"

    run(scenario)


def test_a_refresh_asking_for_more_than_its_grant_changes_nothing(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server) as (a, b):
            on_a, on_b = RedisRefreshStore(a, 3600), RedisRefreshStore(b, 3600)
            token = await on_a.issue("alice", "predict models:read")
            for wanted in (["models:admin"], ["predict", "models:admin"], ["models"], ["read"]):
                with pytest.raises(RefreshError) as caught:
                    await on_b.rotate(token, wanted)
                assert caught.value.reason == "scope", wanted
                assert await on_a.lookup(token) is not None  # still the live token
            record, _ = await on_b.rotate(token, ["models:read"])
            assert record.scope == "predict models:read"
            assert await reason(on_a, token) == "reused"  # a rotated token is reuse, whatever it asks for

    run(scenario)


MALFORMED = [
    "", ".", "a.", ".b", "a.b.c", "\x00.x", "x.\x00", "é.é", "\ud800.x", "a" * 300, "a." + "b" * 300,
    "*.*", "?.[", "{tag}.x", "a b.c d", "\r\n.\r\n", "%00.%00", "..", "a..b",
]  # fmt: skip


def test_malformed_refresh_tokens_are_invalid_and_write_nothing(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server, count=1) as (a,):
            store = RedisRefreshStore(a, 600)
            live = await store.issue("alice", "predict")
            before = sorted([k async for k in a.redis.scan_iter("t:*")])
            family = live.split(".")[0]
            forged = [family + ".", family + ".x.y", family + "." + "A" * 300, family + "." + "B" * 43]
            for value in [*MALFORMED, *forged]:
                assert await store.lookup(value) is None, value
                assert await reason(store, value) in ("invalid", "reused"), value
                if await store.lookup(live) is None:  # a forged secret on the live family is reuse: new login
                    live = await store.issue("alice", "predict")
                assert await store.revoke(value) in (False, True)
            after = {k async for k in a.redis.scan_iter("t:*")}
            assert after >= set(before)
            assert len(after - set(before)) == 1  # the one login after the forged secret, nothing else
            assert await store.lookup(live) is not None

    run(scenario)


def test_the_same_rotation_sent_twice_answers_as_once_but_a_replay_is_reuse(redis_server: Any) -> None:
    # redis-py retries a call once when its connection broke; the script must then not see "reuse".
    async def scenario() -> None:
        async with replicas(redis_server, count=1) as (a,):
            store = RedisRefreshStore(a, 3600)
            token = await store.issue("alice", "predict")
            rotate = a.script(ROTATE)
            key = [f"t:rt:fam:{family_key(token)}"]
            successor = token.split(".")[0] + ".successor"
            args = [token_hash(token), token_hash(successor), ""]
            first, again = await rotate(key, args), await rotate(key, args)
            assert first == again
            assert first[0] == "ok"
            other = await rotate(key, [token_hash(token), token_hash(token.split(".")[0] + ".thief"), ""])
            assert other[0] == "reused"
            assert await reason(store, successor) == "revoked"

    run(scenario)


def test_oldest_family_goes_first_within_one_millisecond(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server) as (a, b):
            on_a, on_b = RedisRefreshStore(a, 3600, max_per_subject=3), RedisRefreshStore(b, 3600, 3)
            for round_ in range(20):  # many logins share a millisecond: ties must not pick the victim
                subject = f"user{round_}"
                tokens = [await s.issue(subject, "predict") for s in (on_a, on_b, on_a, on_b)]
                assert await on_a.lookup(tokens[0]) is None, round_
                assert all([await on_b.lookup(t) is not None for t in tokens[1:]]), round_
            for _ in range(10):  # a login/revoke loop stays bounded, revoked families counting too
                assert await on_b.revoke(await on_a.issue("alice", "predict"))
            assert await a.redis.zcard(f"t:rt:sub:{token_hash('alice')}") == 3
            families = [k async for k in a.redis.scan_iter("t:rt:fam:*")]
            assert len(families) == 3 * 20 + 3

    run(scenario)


def test_every_key_expires_by_itself_and_holds_no_token_name_or_address(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server) as (a, b):
            refresh = RedisRefreshStore(a, 600)
            throttle = RedisThrottle(b, ThrottlePolicy(max_failures=2))
            token = await refresh.issue("alice", "predict")
            _, token = await refresh.rotate(token)
            await refresh.revoke(await refresh.issue("bob", "predict"))
            for _ in range(3):
                await throttle.admit("user:alice", "203.0.113.7")
                await throttle.failed("user:alice", "203.0.113.7")
            await throttle.admit(None, "2001:db8::1")
            await throttle.failed(None, "2001:db8::1")
            keys = sorted([k async for k in a.redis.scan_iter("t:*")])
            assert len(keys) >= 6, keys
            dump = " ".join(keys)
            for key in keys:
                ttl = await a.redis.pttl(key)
                assert 0 < ttl <= 43_200_000, (key, ttl)
                kind = await a.redis.type(key)
                if kind == "hash":
                    dump += " " + " ".join((await a.redis.hgetall(key)).values())
                elif kind == "zset":
                    dump += " " + " ".join(await a.redis.zrange(key, 0, -1))
            for secret in (token, *token.split("."), "203.0.113.7", "2001:db8"):
                assert secret not in dump
            assert "alice" in dump  # the family records its subject; the key names do not
            assert "alice" not in " ".join(keys)

    run(scenario)


def test_prefixes_keep_installs_apart(redis_server: Any) -> None:
    async def scenario() -> None:
        one, two = store_for(redis_server, prefix="one:"), store_for(redis_server, prefix="two:")
        try:
            token = await RedisRefreshStore(one, 600).issue("alice", "predict")
            assert await RedisRefreshStore(two, 600).lookup(token) is None
            assert await reason(RedisRefreshStore(two, 600), token) == "invalid"
            assert await RedisRefreshStore(one, 600).lookup(token) is not None
        finally:
            await one.aclose()
            await two.aclose()

    run(scenario)


# -- throttle -------------------------------------------------------------------------------------------


def test_failures_on_every_replica_add_up_to_one_lock(redis_server: Any) -> None:
    policy = ThrottlePolicy(
        max_failures=5, backoff_seconds=30, backoff_max_seconds=900, address_max_failures=8
    )

    async def scenario() -> None:
        async with replicas(redis_server, count=3) as pools:
            throttles = [RedisThrottle(p, policy) for p in pools]

            async def attempt(i: int, account: str | None, address: str) -> int | None:
                throttle = throttles[i % 3]
                wait = await throttle.admit(account, address)
                if wait is None:
                    await throttle.failed(account, address)
                return wait

            waits = [await attempt(i, "user:alice", "198.51.100.1") for i in range(6)]
            assert waits[:5] == [None] * 5
            assert waits[5] is not None
            assert 29 <= waits[5] <= 30
            # The same account from elsewhere, and the address's other accounts, go ahead.
            assert await throttles[1].admit("user:alice", "198.51.100.2") is None
            await throttles[1].succeeded("user:alice", "198.51.100.2")
            assert await attempt(2, "user:bob", "198.51.100.1") is None
            # The address limit (8 failures, all accounts and clients) is reached by 3 more on any replica.
            assert await attempt(0, None, "198.51.100.1") is None
            assert await attempt(1, "user:carol", "198.51.100.1") is None
            wait = await attempt(2, None, "198.51.100.1")
            assert wait is not None
            assert 890 <= wait <= 900
            assert await throttles[0].admit("user:dave", "198.51.100.1") is not None
            # IPv6 counts per /64: another address of the same /64 waits too.
            for i in range(8):
                await attempt(i, None, f"2001:db8:0:1::{i + 1}")
            assert await throttles[0].admit(None, "2001:db8:0:1::ffff") is not None
            assert await throttles[0].admit(None, "2001:db8:0:2::1") is None

    run(scenario)


def test_clients_ask_the_store_about_a_clean_address_once_a_second(redis_server: Any) -> None:
    policy = ThrottlePolicy(address_max_failures=3)

    async def scenario() -> None:
        async with replicas(redis_server) as (a, b):
            on_a = RedisThrottle(a, policy, client_check_seconds=0.5)
            on_b = RedisThrottle(b, policy, client_check_seconds=0.5)
            assert await on_a.admit(None, "192.0.2.77") is None  # clean: A need not ask again for 0.5 s
            for _ in range(3):  # B blocks the address
                assert await on_b.admit(None, "192.0.2.77") is None
                await on_b.failed(None, "192.0.2.77")
            assert await on_b.admit(None, "192.0.2.77") is not None
            assert await on_a.admit(None, "192.0.2.77") is None  # A still trusts its fresh answer ...
            assert await on_a.admit("user:alice", "192.0.2.77") is not None  # ... for clients only
            await asyncio.sleep(0.55)
            assert await on_a.admit(None, "192.0.2.77") is not None  # and no longer than that
            # A failure on A itself ends A's trust at once.
            assert await on_a.admit(None, "192.0.2.78") is None
            await on_a.failed(None, "192.0.2.78")
            for _ in range(2):
                await on_b.admit(None, "192.0.2.78")
                await on_b.failed(None, "192.0.2.78")
            assert await on_a.admit(None, "192.0.2.78") is not None

    run(scenario)


def test_concurrent_guesses_cannot_slip_past_the_limit(redis_server: Any) -> None:
    policy = ThrottlePolicy(max_failures=5, address_max_failures=1000)

    async def scenario() -> None:
        # 40 calls at once on 4 pools of 8 connections: a generous deadline, so a busy machine's slow
        # scheduling is not mistaken for a store outage (this test is about atomicity, not timeouts)
        async with replicas(redis_server, count=4, timeout=5.0) as pools:
            throttles = [RedisThrottle(p, policy) for p in pools]
            admitted = await asyncio.gather(
                *(throttles[i % 4].admit("user:alice", "192.0.2.1") for i in range(40))
            )
            assert sum(1 for wait in admitted if wait is None) == 5

    run(scenario)


def test_backoff_doubles_and_a_success_or_time_clears_it(redis_server: Any) -> None:
    policy = ThrottlePolicy(
        max_failures=2,
        backoff_seconds=0.6,
        backoff_max_seconds=0.9,
        reset_seconds=2.0,
        address_max_failures=100,
    )

    async def scenario() -> None:
        async with replicas(redis_server) as (a, b):
            ta, tb = RedisThrottle(a, policy), RedisThrottle(b, policy)
            pair = "user:alice", "192.0.2.9"
            for throttle in (ta, tb):
                assert await throttle.admit(*pair) is None
                await throttle.failed(*pair)
            assert await ta.admit(*pair) == 1  # 0.6 s, rounded up to whole seconds
            await asyncio.sleep(0.65)
            assert await tb.admit(*pair) is None  # the wait is over: one more try, which fails
            await tb.failed(*pair)
            assert await ta.admit(*pair) is not None
            await asyncio.sleep(0.95)  # 1.2 s would be the doubled wait; the cap is 0.9 s
            assert await ta.admit(*pair) is None
            await ta.succeeded(*pair)  # a success clears the pair on every replica
            key = "t:th:pair:" + hashlib.sha256(b"user:alice\n192.0.2.9").hexdigest()
            assert await a.redis.exists(key) == 0
            for _ in range(2):
                assert await tb.admit(*pair) is None
                await tb.failed(*pair)
            assert await ta.admit(*pair) is not None
            assert 0 < await a.redis.pttl(key) <= 2000  # forgotten by itself after reset_seconds
            await asyncio.sleep(2.05)
            assert await a.redis.exists(key) == 0
            assert await ta.admit(*pair) is None

    run(scenario)


# -- a store that is down, slow or restarted ------------------------------------------------------------


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        await call()
    except StateUnavailable as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def test_a_stopped_store_answers_unavailable_at_once_and_recovers(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server, count=1, timeout=0.5, retry=0.6) as (a,):
            refresh = RedisRefreshStore(a, 600)
            token = await refresh.issue("alice", "predict")
            redis_server.kill()
            elapsed, error = await timed(lambda: refresh.lookup(token))
            assert isinstance(error, StateUnavailable)
            assert error.retry_after == 1
            assert elapsed < 2.5
            # While it is known to be down, calls do not even try: they fail in no time.
            for call in (lambda: refresh.rotate(token), lambda: refresh.issue("bob", "predict")):
                elapsed, error = await timed(call)
                assert isinstance(error, StateUnavailable)
                assert elapsed < 0.2
            assert await a.check() is not None
            redis_server.start()  # an empty store on the same port: the old connections are dead
            await asyncio.sleep(0.7)
            assert await a.check() is None
            assert await refresh.lookup(token) is None  # no persistence: that session is gone ...
            fresh = await refresh.issue("alice", "predict")  # ... scripts load again by themselves
            assert (await refresh.rotate(fresh))[0].subject == "alice"

    run(scenario)


def test_a_hanging_store_times_out_and_recovers_on_sigcont(redis_server: Any) -> None:
    async def scenario() -> None:
        async with replicas(redis_server, count=1, timeout=0.4, retry=0.5) as (a,):
            refresh = RedisRefreshStore(a, 600)
            throttle = RedisThrottle(a)
            token = await refresh.issue("alice", "predict")
            redis_server.pause()
            try:
                outcomes = await asyncio.gather(
                    *(timed(lambda: refresh.lookup(token)) for _ in range(20)),
                    timed(lambda: throttle.admit("user:x", "192.0.2.1")),
                )
                assert all(isinstance(error, StateUnavailable) for _, error in outcomes)
                assert max(elapsed for elapsed, _ in outcomes) < 2.5  # bounded: never a hang
                problem = await a.check()
                assert problem is not None
                assert "TimeoutError" in problem
                assert redis_server.password not in problem
                # Known down: the next call does not wait for the 0.4 s timeout again, it fails at once.
                elapsed, error = await timed(lambda: refresh.lookup(token))
                assert isinstance(error, StateUnavailable)
                assert elapsed < 0.2
            finally:
                redis_server.resume()
            await asyncio.sleep(0.6)
            assert await refresh.lookup(token) is not None  # same data, same pool: no restart needed
            _, token = await refresh.rotate(token)
            assert await refresh.lookup(token) is not None

    run(scenario)


def test_wrong_password_is_unavailable_not_a_crash(redis_server: Any) -> None:
    async def scenario() -> None:
        store = StateStore(
            StateConfig(
                parse_state_url(redis_server.url),
                password="not-the-password",
                prefix="t:",
                timeout_seconds=0.5,
                retry_seconds=0.5,
                max_connections=2,
            )
        )
        try:
            problem = await store.check()
            assert problem is not None
            assert "not-the-password" not in problem
            with pytest.raises(StateUnavailable):
                await RedisRefreshStore(store, 60).issue("alice", "predict")
        finally:
            await store.aclose()

    run(scenario)


ACL_COMMANDS = (
    "+evalsha +eval +script|load +hmget +set +del +ping +hello +client|setname "  # what auth sends
    "+time +exists +hget +hset +hincrby +pexpire +pexpireat "  # what its scripts call
    "+zadd +zcard +zrange +zremrangebyscore +zremrangebyrank"
)
"""The least an ACL user needs (README, "Shared state"); Redis 7.2+ and Valkey also take ``+client|setinfo``,
which redis-py sends on connect and does without."""


def test_a_least_privilege_acl_user_on_its_own_prefix_is_enough(redis_server: Any) -> None:
    with redis_server.client() as admin:
        admin.acl_setuser(
            "modelberth-auth",
            enabled=True,
            passwords=["+acl-password-0123456789"],
            keys=["acl:*"],
            commands=ACL_COMMANDS.split(),
        )

    async def scenario() -> None:
        store = StateStore(
            StateConfig(
                parse_state_url(f"redis://modelberth-auth@127.0.0.1:{redis_server.port}/0"),
                password="acl-password-0123456789",
                prefix="acl:",
                timeout_seconds=1,
                retry_seconds=0.5,
                max_connections=2,
            )
        )
        try:
            assert await store.check() is None
            refresh, throttle = RedisRefreshStore(store, 600), RedisThrottle(store)
            token = await refresh.issue("alice", "predict")
            _, token = await refresh.rotate(token)
            assert await refresh.lookup(token) is not None
            assert await refresh.revoke(token)
            assert await throttle.admit("user:alice", "192.0.2.5") is None
            await throttle.failed("user:alice", "192.0.2.5")
            await throttle.succeeded("user:alice", "192.0.2.5")
            outside = StateStore(
                StateConfig(
                    parse_state_url(f"redis://modelberth-auth@127.0.0.1:{redis_server.port}/0"),
                    password="acl-password-0123456789",
                    # keys outside its pattern: refused by the server, answered as unavailable
                    prefix="other:",
                    timeout_seconds=1,
                    retry_seconds=0.5,
                    max_connections=2,
                )
            )
            try:
                problem = await outside.check()
                assert problem is not None
                assert "NoPermission" in problem or "NOPERM" in problem
            finally:
                await outside.aclose()
        finally:
            await store.aclose()

    run(scenario)


# -- TLS (rediss://) ------------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for ``localhost`` only, signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server = (
        x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def tls_redis(tmp_path: Path, port_factory: Callable[[], int]) -> Iterator[tuple[int, str, Path]]:
    """A real redis-server speaking TLS only (on a free port), with a password; stopped by its PID."""
    ca, cert, key = _certificates(tmp_path)
    port, password = port_factory(), "tls-password-0123456789"
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: `make install-system` installs it"
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", password],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None, "redis-server (TLS) exited"
            assert time.monotonic() < deadline, "redis-server (TLS) did not start"
            time.sleep(0.02)
        yield port, password, ca
    finally:
        process.terminate()
        process.wait(10)


def test_rediss_verifies_the_store_certificate_and_its_name(tls_redis: tuple[int, str, Path]) -> None:
    port, password, ca = tls_redis

    def store(url: str, ca_file: Path | None) -> StateStore:
        return StateStore(StateConfig(
            parse_state_url(url), password=password, prefix="tls:", timeout_seconds=2, retry_seconds=0.5,
            max_connections=2, ca_file=ca_file,
        ))  # fmt: skip

    async def scenario() -> None:
        trusted = store(f"rediss://localhost:{port}/0", ca)
        try:
            assert await trusted.check() is None
            refresh = RedisRefreshStore(trusted, 600)
            token = await refresh.issue("alice", "predict")
            assert (await refresh.rotate(token))[0].subject == "alice"
        finally:
            await trusted.aclose()
        refused = [
            (("self-signed certificate in certificate chain",), store(f"rediss://localhost:{port}/0", None)),
            (("IP address mismatch",), store(f"rediss://127.0.0.1:{port}/0", ca)),
            (("Connection reset by peer", "Connection closed"), store(f"redis://localhost:{port}/0", None)),
        ]
        for reasons, untrusted in refused:
            try:
                problem = await untrusted.check()
                assert problem is not None
                assert any(why in problem for why in reasons), problem
                assert password not in problem
            finally:
                await untrusted.aclose()

    run(scenario)
