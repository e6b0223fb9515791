""":class:`~modelberth_auth.refresh.RefreshStore` in the shared state store (Redis/Valkey), for every replica.

Keys (``<prefix>`` is ``AUTH_STATE_PREFIX``; no key holds any part of a token, only SHA-256 hashes):

- ``<prefix>rt:fam:<sha256(family id)>``: a hash per family with ``subject scope issued_at expires_at
  current rotations state previous``; it expires by itself at the family's absolute end.
- ``<prefix>rt:sub:<sha256(subject)>``: the subject's families in issue order (a sorted set scored by issue
  time in ms, strictly increasing), so the oldest goes first beyond ``max_per_subject``.

Each decision is one Lua script, atomic on the server: two replicas redeeming one token at the same moment
are serialised there, so exactly one rotates it and the other finds a rotated token, which revokes the
family for everyone (reuse detection, RFC 9700 §4.14.2). Times come from the server's clock (``TIME``),
so replicas with skewed clocks agree on expiry.

A rotation remembers the hash it replaced (``previous``): the same call sent twice (redis-py retries once
on a broken connection) finds its own successor already in place and answers as the first time, while
any other presentation of a replaced token is reuse.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Sequence

from modelberth_auth.refresh import RefreshError, RefreshRecord, family_key, new_token, token_hash
from modelberth_auth.state import StateStore

log = logging.getLogger("modelberth.auth.refresh")

_NOW = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

ISSUE = (
    _NOW
    + """
-- KEYS[1] family, KEYS[2] subject index
-- ARGV subject, scope, token hash, ttl ms, max families, family key prefix
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'current') == ARGV[3] then
    return redis.call('HMGET', KEYS[1], 'issued_at', 'expires_at')  -- this very call, sent twice
  end
  return redis.error_reply('family id collision')
end
local ttl = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now_ms - ttl))
local n = redis.call('ZCARD', KEYS[2])
local max = tonumber(ARGV[5])
if n >= max then
  -- revoked families count too, so a login/revoke loop cannot grow the store either
  local oldest = redis.call('ZRANGE', KEYS[2], 0, n - max)
  for _, family in ipairs(oldest) do
    redis.call('DEL', ARGV[6] .. family)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max)
end
local score = now_ms
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) >= score then
  score = tonumber(last[2]) + 1
end
local member = string.sub(KEYS[1], string.len(ARGV[6]) + 1)
redis.call('ZADD', KEYS[2], string.format('%d', score), member)
redis.call('PEXPIRE', KEYS[2], ttl)
local issued = math.floor(now_ms / 1000)
local expires_ms = now_ms + ttl
local expires = math.floor(expires_ms / 1000)
redis.call('HSET', KEYS[1], 'subject', ARGV[1], 'scope', ARGV[2], 'issued_at', string.format('%d', issued),
  'expires_at', string.format('%d', expires), 'current', ARGV[3], 'rotations', '0', 'state', 'active')
redis.call('PEXPIREAT', KEYS[1], string.format('%d', expires_ms))
return {string.format('%d', issued), string.format('%d', expires)}
"""
)

ROTATE = (
    _NOW
    + """
-- KEYS[1] family; ARGV presented token hash, successor hash, requested scopes ("" for none)
local f = redis.call('HMGET', KEYS[1], 'subject', 'scope', 'issued_at', 'expires_at', 'current', 'rotations',
  'state', 'previous')
if not f[1] then
  return {'invalid'}
end
if tonumber(f[4]) * 1000 <= now_ms then
  return {'expired'}
end
if f[7] ~= 'active' then
  return {'revoked'}
end
if f[5] ~= ARGV[1] then
  if f[8] == ARGV[1] and f[5] == ARGV[2] then
    return {'ok', f[1], f[2], f[3], f[4], tostring(tonumber(f[6]) - 1)}  -- this very call, sent twice
  end
  redis.call('HSET', KEYS[1], 'state', 'revoked')
  return {'reused', f[1]}
end
local granted = ' ' .. f[2] .. ' '
for wanted in string.gmatch(ARGV[3], '%S+') do
  if not string.find(granted, ' ' .. wanted .. ' ', 1, true) then
    return {'scope'}  -- more than the grant: refused, the token stays live
  end
end
local rotations = tostring(tonumber(f[6]) + 1)
redis.call('HSET', KEYS[1], 'current', ARGV[2], 'previous', ARGV[1], 'rotations', rotations)
return {'ok', f[1], f[2], f[3], f[4], f[6]}
"""
)

REVOKE = """
-- KEYS[1] family
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'revoked')
return 1
"""

FIELDS = ("subject", "scope", "issued_at", "expires_at", "current", "rotations", "state")


class RedisRefreshStore:
    """Refresh-token families in the shared store; every method is one round trip, atomic on the server."""

    def __init__(self, store: StateStore, ttl_seconds: int, max_per_subject: int = 50) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.max_per_subject = max_per_subject
        self._family_prefix = store.key("rt", "fam", "")
        self._issue = store.script(ISSUE)
        self._rotate = store.script(ROTATE)
        self._revoke = store.script(REVOKE)

    def _family(self, family: str) -> str:
        return self._family_prefix + family

    def _subject(self, subject: str) -> str:
        return self.store.key("rt", "sub", token_hash(subject))

    async def issue(self, subject: str, scope: str) -> str:
        """See :meth:`RefreshStore.issue`."""
        token = new_token(secrets.token_urlsafe(16))
        family = family_key(token)
        assert family is not None
        keys = [self._family(family), self._subject(subject)]
        args: list[str | int] = [
            subject,
            scope,
            token_hash(token),
            self.ttl_seconds * 1000,
            self.max_per_subject,
            self._family_prefix,
        ]
        await self.store.run("issue", lambda: self._issue(keys, args))
        return token

    async def lookup(self, token: str) -> RefreshRecord | None:
        """See :meth:`RefreshStore.lookup`."""
        family = family_key(token)
        if family is None:
            return None
        values = await self.store.run("lookup", lambda: self.store.redis.hmget(self._family(family), FIELDS))
        if None in values:
            return None  # no such family (one HSET writes all its fields)
        subject, scope, issued_at, expires_at, current, rotations, state = (str(v) for v in values)
        live = state == "active" and int(expires_at) > int(time.time())
        if not live or not hmac.compare_digest(current, token_hash(token)):
            return None
        # Written by this module's scripts only: no validation needed on the hot path of introspection.
        return RefreshRecord.model_construct(
            subject=subject,
            scope=scope,
            issued_at=int(issued_at),
            expires_at=int(expires_at),
            current=current,
            rotations=int(rotations),
            state="active",
        )

    async def rotate(self, token: str, scope: Sequence[str] | None = None) -> tuple[RefreshRecord, str]:
        """See :meth:`RefreshStore.rotate`."""
        family = family_key(token)
        if family is None:
            raise RefreshError("invalid")
        successor = new_token(token.partition(".")[0])
        presented, replaced_by = token_hash(token), token_hash(successor)
        answer: list[str] = await self.store.run(
            "rotate",
            lambda: self._rotate([self._family(family)], [presented, replaced_by, " ".join(scope or ())]),
        )
        outcome = answer[0]
        if outcome == "reused":
            log.warning("rotated refresh token reused; family revoked", extra={"sub": answer[1]})
            raise RefreshError("reused")
        if outcome == "expired":
            raise RefreshError("expired")
        if outcome == "revoked":
            raise RefreshError("revoked")
        if outcome == "scope":
            raise RefreshError("scope")
        if outcome != "ok":
            raise RefreshError("invalid")
        subject, scope, issued_at, expires_at, rotations = answer[1:]
        record = RefreshRecord(
            subject=subject,
            scope=scope,
            issued_at=int(issued_at),
            expires_at=int(expires_at),
            current=presented,
            rotations=int(rotations),
        )
        return record, successor

    async def revoke(self, token: str) -> bool:
        """See :meth:`RefreshStore.revoke`."""
        family = family_key(token)
        if family is None:
            return False
        revoked = await self.store.run("revoke", lambda: self._revoke([self._family(family)]))
        return bool(revoked)
