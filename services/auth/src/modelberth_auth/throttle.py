"""Brute-force protection that a stranger cannot turn against someone else (issue 13, point 2).

The way trusted identity servers do it (Auth0's brute-force protection and suspicious-IP throttling,
Keycloak's wait increments): failures are counted

- per **(account, source address)**, with exponential backoff: after ``max_failures`` failures each further
  attempt of that account *from that address* waits ``backoff_seconds``, doubling up to
  ``backoff_max_seconds``; a success clears it, and ``reset_seconds`` without a failure forgets it. Nobody
  locks an account from every address, so failures from one address never stop the owner elsewhere.
- per **source address** across accounts (password spraying, client-secret guessing): ``address_max_failures``
  failures within ``address_window_seconds`` -> every attempt from that address waits. IPv6 addresses
  count per /64, the block one subscriber gets.

Client ids are never locked: they are public (inside every token) and their secrets are 256-bit, so a
client-id lockout only lets anyone keep a batch job out. Client-secret failures count per address.

The source address is what uvicorn resolved from trusted proxies only (``FORWARDED_ALLOW_IPS``), or the
browser's address vouched for by the UI's own client credentials (see ``routes/login.py``).

:class:`Throttle` is the interface; :class:`MemoryThrottle` keeps the counts in this process (each replica
counts on its own, a restart forgets). A shared backend (Redis, issue 18) implements the same three calls.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The limits; ``AUTH_LOGIN_*`` and ``AUTH_ADDRESS_*`` settings."""

    max_failures: int = 5
    """Failures of one account from one address before attempts wait."""
    backoff_seconds: float = 30.0
    """The first wait; each further failure doubles it."""
    backoff_max_seconds: float = 900.0
    """The longest wait."""
    reset_seconds: float = 43_200.0
    """An (account, address) pair without a failure for this long starts over."""
    address_max_failures: int = 50
    """Failures from one address (all accounts and clients) within ``address_window_seconds`` before 429."""
    address_window_seconds: float = 900.0
    """Sliding window of the per-address count."""

    def backoff(self, failures: int) -> float:
        """Seconds an (account, address) pair waits after its latest of ``failures`` failures."""
        if failures < self.max_failures:
            return 0.0
        doublings = min(failures - self.max_failures, 64)  # 2**64 x anything exceeds any cap
        return min(self.backoff_max_seconds, self.backoff_seconds * 2.0**doublings)


def address_key(address: str) -> str:
    """The unit an address is counted as: IPv4 as is, IPv6 by its /64 (IPv4-mapped ones as IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a unix socket, a test client): count it as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Throttle(Protocol):
    """Counts authentication failures; every call is one round trip to wherever the counts live.

    ``account`` is None for client authentication (no per-client lockout, the address still counts).
    """

    async def admit(self, account: str | None, address: str) -> int | None:
        """Start an attempt: ``None`` when it may go ahead, else the seconds to wait (nothing is counted).

        An admitted attempt already counts as a failure of (account, address), so parallel guesses for one
        account cannot all slip in before the first failure is recorded; :meth:`succeeded` takes it back.
        """
        ...

    async def failed(self, account: str | None, address: str) -> None:
        """The admitted attempt failed: count it against the address too."""
        ...

    async def succeeded(self, account: str | None, address: str) -> None:
        """The admitted attempt succeeded: forget the failures of (account, address)."""
        ...


@dataclass(slots=True)
class _Pair:
    failures: int
    last: float


class MemoryThrottle:
    """:class:`Throttle` in this process's memory, bounded to ``max_keys`` pairs and addresses each.

    Called from the event loop only (no awaits inside a call, so each call is atomic).
    """

    def __init__(
        self,
        policy: ThrottlePolicy | None = None,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self.max_keys = max_keys
        self.clock = clock
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._addresses: dict[str, deque[float]] = {}

    def _address_failures(self, key: str, now: float) -> deque[float] | None:
        times = self._addresses.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.policy.address_window_seconds:
            times.popleft()
        if not times:
            del self._addresses[key]
            return None
        return times

    def _pair(self, account: str, key: str, now: float) -> _Pair | None:
        pair = self._pairs.get((account, key))
        if pair is not None and now - pair.last >= self.policy.reset_seconds:
            del self._pairs[(account, key)]
            return None
        return pair

    def _wait(self, account: str | None, key: str, now: float) -> float:
        wait = 0.0
        times = self._address_failures(key, now)
        limit = self.policy.address_max_failures
        if times is not None and len(times) >= limit:
            wait = times[len(times) - limit] + self.policy.address_window_seconds - now
        if account is not None:
            pair = self._pair(account, key, now)
            if pair is not None:
                wait = max(wait, pair.last + self.policy.backoff(pair.failures) - now)
        return wait

    async def admit(self, account: str | None, address: str) -> int | None:
        """See :meth:`Throttle.admit`."""
        now, key = self.clock(), address_key(address)
        wait = self._wait(account, key, now)
        if wait > 0:
            return max(1, math.ceil(wait))
        if account is not None:
            if len(self._pairs) >= self.max_keys:
                self._prune(now)
            pair = self._pairs.setdefault((account, key), _Pair(0, now))
            pair.failures += 1
            pair.last = now
        return None

    async def failed(self, account: str | None, address: str) -> None:  # noqa: ARG002 - admit() counted the pair
        """See :meth:`Throttle.failed`."""
        now, key = self.clock(), address_key(address)
        if len(self._addresses) >= self.max_keys:
            self._prune(now)
        times = self._addresses.setdefault(key, deque(maxlen=self.policy.address_max_failures))
        times.append(now)

    async def succeeded(self, account: str | None, address: str) -> None:
        """See :meth:`Throttle.succeeded`."""
        if account is not None:
            self._pairs.pop((account, address_key(address)), None)

    def _prune(self, now: float) -> None:
        for account, key in list(self._pairs):
            self._pair(account, key, now)
        for key in list(self._addresses):
            self._address_failures(key, now)
        # Still full of live entries (a distributed attack): forget the oldest half rather than grow.
        if len(self._pairs) >= self.max_keys:
            by_age = sorted(self._pairs, key=lambda k: self._pairs[k].last)
            for pair_key in by_age[: len(by_age) // 2]:
                del self._pairs[pair_key]
        if len(self._addresses) >= self.max_keys:
            by_age_addr = sorted(self._addresses, key=lambda k: self._addresses[k][-1])
            for addr_key in by_age_addr[: len(by_age_addr) // 2]:
                del self._addresses[addr_key]
