"""The shared state store (issue 18): one Redis or Valkey that every auth replica uses for refresh-token
families and throttle counts, so that a refresh token works on any replica, a revocation or a replayed
token ends the session everywhere at once, and failed logins add up across replicas.

:class:`StateStore` owns the process's one connection pool (``redis.asyncio``: the throttle and the
refresh store are awaited on the event loop, so a store call never holds a threadpool thread, which argon2
needs). Every call is bounded: one deadline of ``timeout_seconds`` covers the whole call (waiting for a pooled
connection, connecting, sending, the answer; redis-py closes a connection whose command was cut off, so no
late answer is ever read as the next one's). When a call fails, the store is taken as
down for ``retry_seconds``: calls in that window fail at once (503 with ``Retry-After``) instead of each
waiting for the timeout, and one call per window tries again, so the service recovers without a restart.

A connection that broke (the server restarted, a failover) is retried once on a new connection; every
script is written so that running it twice does what running it once did.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger("modelberth.auth.state")

T = TypeVar("T")

DEFAULT_PORT = 6379

OPERATIONS = ("issue", "lookup", "rotate", "revoke", "admit", "failed", "succeeded", "check")
"""Label values of ``operation`` on the store metrics (bounded)."""


class StateUnavailable(Exception):
    """The shared state store cannot be reached or did not answer in time; retry after ``retry_after``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"state store unavailable; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class StateAddress:
    """Where the store is, from ``AUTH_STATE_URL`` (which never holds the password)."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None = None

    @property
    def display(self) -> str:
        """The address for logs and ``/readyz``: scheme, user, host, port and database, nothing secret."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{user}{host}:{self.port}/{self.db}"


def parse_state_url(url: str) -> StateAddress:
    """``redis://[user@]host[:port][/db]`` or ``rediss://...``; ValueError otherwise.

    A password in the URL (``user:pw@``, ``:pw@`` or ``?password=``) is refused: it belongs in
    ``AUTH_STATE_PASSWORD`` (from a Secret), where it is not printed with the URL. No error message
    repeats the URL, so a password typed into it never reaches a log.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("state_url is not a valid URL") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("state_url must start with redis:// or rediss:// (TLS)")
    if parts.password is not None or "@" in (parts.username or ""):
        raise ValueError(
            "state_url must not contain a password: put it in AUTH_STATE_PASSWORD "
            "(in Kubernetes, auth.state.existingSecret)"
        )
    if parts.query or parts.fragment:
        raise ValueError("state_url takes no query or fragment (timeouts and TLS are AUTH_STATE_* settings)")
    if not parts.hostname:
        raise ValueError("state_url names no host")
    path = parts.path.strip("/")
    if path and not (path.isdigit() and len(path) <= 5):
        raise ValueError("state_url's path must be a database number, like /0")
    return StateAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
    )


@dataclass(frozen=True, slots=True)
class StateConfig:
    """How to reach the store and the limits every call keeps (``AUTH_STATE_*``)."""

    address: StateAddress
    prefix: str
    """Put before every key, so installs can share one store."""
    timeout_seconds: float
    """The one deadline of a whole call: a free connection, connecting, sending and the answer."""
    retry_seconds: float
    """How long the store counts as down after a failed call (calls then fail at once)."""
    max_connections: int
    """Connections in the pool."""
    password: str | None = field(default=None, repr=False)
    """The store's password (``AUTH`` or, with a user name in the address, its ACL password)."""
    ca_file: Path | None = None
    """CA bundle that signs a ``rediss://`` store's certificate (None: the system's)."""


class StateMetrics:
    """``modelberth_auth_state_up`` and ``modelberth_auth_state_errors_total{operation}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "modelberth_auth_state_up",
            "1 while the shared state store answers, 0 after a failed call until one succeeds again.",
            registry=registry,
        )
        self.errors = Counter(
            "modelberth_auth_state_errors_total",
            "Calls to the shared state store that failed or were refused while it was down, by operation.",
            ["operation"],
            registry=registry,
        )
        self.up.set(1)
        for operation in OPERATIONS:
            self.errors.labels(operation)


class StateStore:
    """One connection pool to the store and the rules every call follows (timeouts, fail fast, recover)."""

    def __init__(
        self,
        config: StateConfig,
        *,
        metrics: StateMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = config.address
        self.prefix = config.prefix
        self.timeout_seconds = config.timeout_seconds
        self.retry_seconds = config.retry_seconds
        self.metrics = metrics
        self.clock = clock
        self.redis: Redis = Redis.from_pool(_pool(config))
        self._down_until = 0.0
        self._probing = False
        self._down = False

    def key(self, *parts: str) -> str:
        """A key of this install: the prefix, then ``parts`` joined by colons."""
        return self.prefix + ":".join(parts)

    def script(self, source: str) -> AsyncScript:
        """A Lua script run with EVALSHA (loaded again by itself after the server restarted)."""
        return self.redis.register_script(source)

    def _retry_after(self, now: float) -> int:
        return max(1, math.ceil(self._down_until - now))

    async def run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one store call under the rules; :class:`StateUnavailable` when it cannot be done now."""
        now = self.clock()
        probe = False
        if self._down:
            if now < self._down_until or self._probing:
                self._count(operation)
                raise StateUnavailable(self._retry_after(now) if now < self._down_until else 1)
            self._probing = probe = True  # one call per window finds out whether the store is back
        try:
            async with asyncio.timeout(self.timeout_seconds):  # everything: pool wait, connect, retry, answer
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(operation, exc)
            raise StateUnavailable(self._retry_after(self.clock())) from None
        finally:
            if probe:
                self._probing = False
        self._succeeded()
        return result

    async def check(self) -> str | None:
        """For ``/readyz``: None when the store accepts a write now, else why not (nothing secret).

        A write, not a PING: a read-only replica, a full store (``maxmemory`` with ``noeviction``) or an
        ACL without write access answer PING but cannot keep a session.
        """
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self.redis.set(self.key("ready"), "1", px=60_000)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("check", exc)
            return f"state store {self.address.display} is unavailable ({describe(exc)})"
        self._succeeded()
        return None

    def _count(self, operation: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(operation if operation in OPERATIONS else "check").inc()

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._count(operation)
        self._down_until = self.clock() + self.retry_seconds
        if not self._down:
            self._down = True
            if self.metrics is not None:
                self.metrics.up.set(0)
            log.error(
                "state store unavailable; grants that need it answer 503 until it is back",
                extra={"store": self.address.display, "operation": operation, "error": describe(exc)},
            )

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            if self.metrics is not None:
                self.metrics.up.set(1)
            log.info("state store available again", extra={"store": self.address.display})

    async def aclose(self) -> None:
        """Close the pool's connections (at shutdown)."""
        await self.redis.aclose()


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a store error: its type, and redis-py's message if any."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) and not isinstance(exc, RedisError):
        return "TimeoutError: no answer in time"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _pool(config: StateConfig) -> BlockingConnectionPool:
    """The connection pool: TLS that checks the certificate and its name, one retry on a broken one."""
    address, timeout_seconds = config.address, config.timeout_seconds
    tls: dict[str, Any] = {}
    if address.tls:
        tls = {"connection_class": SSLConnection, "ssl_check_hostname": True, "ssl_cert_reqs": "required"}
        if config.ca_file is not None:
            tls["ssl_ca_certs"] = str(config.ca_file)
    return BlockingConnectionPool(
        max_connections=config.max_connections,
        timeout=timeout_seconds,  # waiting for a free connection
        **({"connection_class": Connection} | tls),
        host=address.host,
        port=address.port,
        db=address.db,
        username=address.username,
        password=config.password,
        # run() puts one deadline on each call. redis-py's own per-read timeout is off: on Python 3.11
        # it wraps every send in asyncio.wait_for, a task per command, which cost more CPU than the rest.
        socket_timeout=None,
        socket_connect_timeout=timeout_seconds,
        # Retry once, on a new connection, when a connection broke; never after a timeout (the store is
        # slow: a retry only doubles the wait). The scripts are idempotent, so a retry is safe.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=True,
        client_name="modelberth-auth",
    )
