""":class:`~modelberth_auth.throttle.Throttle` in the shared state store (Redis/Valkey): every replica counts
into the same keys, so N failures spread over any number of replicas lock exactly as N failures on one.

The rules are :class:`~modelberth_auth.throttle.MemoryThrottle`'s, run as Lua scripts on the server (each
call atomic, times from the server's clock, so replicas agree on every wait):

- ``<prefix>th:pair:<sha256(account, address)>``: a hash ``failures last`` per (account, address); it
  expires by itself ``reset_seconds`` after its last failure (the pair starts over), and a success deletes
  it. Counts only ever go up by one or disappear: never negative, never left behind by an outage.
- ``<prefix>th:addr:<sha256(address)>``: the address's failures in the sliding window (a sorted set of
  failure times, at most ``address_max_failures`` kept), expiring by itself one window after the last.

Accounts and addresses are hashed into key names, so the store holds no user names or IP addresses.

Client authentication (``account`` None) asks the store at most once per ``client_check_seconds`` for an
address that has no failures at all, and at once again after a failure of its own: a replica may let a
client try for up to that long after other replicas blocked its address. Client secrets are 256-bit, so
the address count guards this replica's CPU against floods rather than the secrets, and one round trip
less per client-credentials grant and introspection is what keeps the shared store within 20 % of
in-process state (``bench/auth_state.py``). The same reasoning lets client authentication go ahead while
the store is down (``oauth.py``). Logins always ask the store.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from modelberth_auth.state import StateStore
from modelberth_auth.throttle import ThrottlePolicy, address_key

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

ADMIT = (
    _NOW
    + """
-- KEYS[1] address window, KEYS[2] pair (absent for clients)
-- ARGV max failures, backoff ms, backoff max ms, reset ms, address max failures, window ms
-- -> {wait ms (0: admitted, and counted against the pair; else nothing counted), the address's failures}
local max_failures, backoff, backoff_max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reset, address_max, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local wait = 0
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
local n = redis.call('ZCARD', KEYS[1])
if n >= address_max then
  local oldest = redis.call('ZRANGE', KEYS[1], n - address_max, n - address_max, 'WITHSCORES')
  wait = tonumber(oldest[2]) + window - now
end
if KEYS[2] then
  local pair = redis.call('HMGET', KEYS[2], 'failures', 'last')
  if pair[1] then
    local failures, last = tonumber(pair[1]), tonumber(pair[2])
    if now - last >= reset then
      redis.call('DEL', KEYS[2])
    elseif failures >= max_failures then
      local doublings = math.min(failures - max_failures, 64)
      wait = math.max(wait, last + math.min(backoff_max, backoff * 2 ^ doublings) - now)
    end
  end
end
if wait > 0 then
  return {math.ceil(wait), n}
end
if KEYS[2] then
  redis.call('HINCRBY', KEYS[2], 'failures', 1)
  redis.call('HSET', KEYS[2], 'last', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[2], reset)
end
return {0, n}
"""
)

FAILED = (
    _NOW
    + """
-- KEYS[1] address window; ARGV window ms, address max failures, a unique member for this failure
local window, address_max = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'NX', string.format('%d', now), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(address_max + 1))
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""
)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


class RedisThrottle:
    """:class:`~modelberth_auth.throttle.Throttle` in the shared store; each call is one round trip."""

    def __init__(
        self,
        store: StateStore,
        policy: ThrottlePolicy | None = None,
        *,
        client_check_seconds: float = 1.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.policy = policy or ThrottlePolicy()
        self.client_check_seconds = client_check_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._admit = store.script(ADMIT)
        self._failed = store.script(FAILED)
        self._clear_until: dict[str, float] = {}
        """Addresses the store last reported without failures, and until when clients need not ask again."""

    def _address(self, key: str) -> str:
        return self.store.key("th", "addr", _digest(key))

    def _pair(self, account: str, key: str) -> str:
        return self.store.key("th", "pair", _digest(account, key))

    async def admit(self, account: str | None, address: str) -> int | None:
        """See :meth:`Throttle.admit`."""
        key = address_key(address)
        if account is None and self._clear_until.get(key, 0.0) > self.clock():
            return None
        keys = [self._address(key)] + ([self._pair(account, key)] if account is not None else [])
        p = self.policy
        args: list[int] = [
            p.max_failures,
            round(p.backoff_seconds * 1000),
            round(p.backoff_max_seconds * 1000),
            round(p.reset_seconds * 1000),
            p.address_max_failures,
            round(p.address_window_seconds * 1000),
        ]
        wait_ms, failures = (int(v) for v in await self.store.run("admit", lambda: self._admit(keys, args)))
        if account is None and failures == 0 and self.client_check_seconds > 0:
            if len(self._clear_until) >= self.max_keys:
                self._clear_until.clear()
            self._clear_until[key] = self.clock() + self.client_check_seconds
        return None if wait_ms <= 0 else max(1, -(-wait_ms // 1000))

    async def failed(self, account: str | None, address: str) -> None:  # noqa: ARG002 - admit() counted the pair
        """See :meth:`Throttle.failed`."""
        key = address_key(address)
        self._clear_until.pop(key, None)  # this address has a failure now: clients from it ask again
        keys = [self._address(key)]
        p = self.policy
        args: list[str | int] = [
            round(p.address_window_seconds * 1000),
            p.address_max_failures,
            secrets.token_hex(8),
        ]
        await self.store.run("failed", lambda: self._failed(keys, args))

    async def succeeded(self, account: str | None, address: str) -> None:
        """See :meth:`Throttle.succeeded`."""
        if account is not None:
            pair = self._pair(account, address_key(address))
            await self.store.run("succeeded", lambda: self.store.redis.delete(pair))
