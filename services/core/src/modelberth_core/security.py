"""Access-token verification shared by every service that accepts tokens (auth signs, the rest verify).

Tokens are JWTs signed with an asymmetric key (ES256 by default) whose public half is published as a JWKS
by the auth service. Verification is local: a fixed algorithm allow-list, then the signature, then the
required claims (iss, aud, exp; nbf and iat when present). A bare ``jwt.decode`` checks only the
signature, which would accept a wrong issuer or a token that never expires.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

log = logging.getLogger("modelberth.security")

DEFAULT_ALGORITHMS = ("ES256",)
"""The allow-list; ``none`` and symmetric algorithms can never verify."""
SCOPES = ("predict", "models:read", "models:admin")
"""Every scope a token can carry."""
MAX_TOKEN_BYTES = 8192
"""Longer bearer values are refused before any parsing."""


class TokenError(Exception):
    """The token cannot be accepted; maps to 401 ``invalid_token`` (RFC 6750 §3.1)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str
    scopes: frozenset[str]
    expires_at: int
    token_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    def has_scope(self, scope: str) -> bool:
        """True when the token grants ``scope``."""
        return scope in self.scopes


class KeySource(Protocol):
    """Where verification keys come from: a fetched JWKS, or the auth service's own keyset."""

    async def key_set(self) -> KeySet:
        """The keys to verify with now."""
        ...

    async def refresh(self) -> bool:
        """Try to load newer keys (e.g. for an unknown ``kid``); True when the set may have changed."""
        ...


class StaticKeySource:
    """A key set held in memory (auth verifying its own tokens, and tests)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    async def key_set(self) -> KeySet:
        """The keys given at construction."""
        return self.keys

    async def refresh(self) -> bool:
        """Nothing to refresh."""
        return False


class JwksKeySource:
    """Public keys fetched from a JWKS URL and cached.

    Refetched when a token names an unknown ``kid``, at most once per ``min_refresh_seconds`` so a flood of
    forged kids cannot hammer the auth service. If auth is down the cached keys keep verifying.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_seconds: float = 5.0,
        min_refresh_seconds: float = 30.0,
    ) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=timeout_seconds)
        self._owns_client = client is None
        self.min_refresh_seconds = min_refresh_seconds
        self._keys: KeySet | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """True once a JWKS has been fetched at least once."""
        return self._keys is not None

    async def fetch(self) -> KeySet:
        """Fetch the JWKS now (no rate limit); raise ``httpx.HTTPError`` or ``ValueError`` on failure."""
        self._last_attempt = time.monotonic()
        response = await self._client.get(self.url)
        response.raise_for_status()
        keys = KeySet.import_key_set(response.json())
        self._keys = keys
        log.info("jwks loaded", extra={"keys": len(keys.keys), "jwks_url": self.url})
        return keys

    async def key_set(self) -> KeySet:
        """The cached keys, fetching them first if there are none yet."""
        if self._keys is None:
            async with self._lock:
                if self._keys is None:
                    try:
                        return await self.fetch()
                    except (httpx.HTTPError, ValueError, JoseError) as exc:
                        raise TokenError("signing keys are not available yet") from exc
        return self._keys

    async def refresh(self) -> bool:
        """Refetch unless one was tried within ``min_refresh_seconds``; keep the old keys on failure."""
        async with self._lock:
            if time.monotonic() - self._last_attempt < self.min_refresh_seconds:
                return False
            try:
                await self.fetch()
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                log.warning("jwks refresh failed; keeping cached keys", extra={"error": type(exc).__name__})
                return False
            return True

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_client:
            await self._client.aclose()


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        head = token.split(".", 1)[0]
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token") from exc
    if not isinstance(decoded, dict):
        raise TokenError("malformed token")
    return decoded


class TokenVerifier:
    """Verify bearer tokens: algorithm allow-list, signature, then iss/aud/exp (nbf, iat when present).

    A token that verified once is remembered until it expires (bounded cache), so a busy client pays the
    signature check once, not on every request.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway_seconds: int = 30,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        if not self.algorithms or any(a.lower() == "none" or a.startswith("HS") for a in self.algorithms):
            raise ValueError("the algorithm allow-list must name asymmetric algorithms only")
        self.leeway_seconds = leeway_seconds
        self.cache_size = cache_size
        self._cache: dict[str, Principal] = {}

    def _claims_registry(self) -> JWTClaimsRegistry:
        return JWTClaimsRegistry(
            leeway=self.leeway_seconds,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def verify(self, token: str) -> Principal:
        """Return the token's principal, or raise :class:`TokenError` saying why it is refused."""
        cached = self._cache.get(token)
        now = int(time.time())
        if cached is not None:
            if cached.expires_at + self.leeway_seconds > now:
                return cached
            del self._cache[token]
        principal = await self._verify_uncached(token)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()  # simple and bounded; a refill costs one verification per live token
        self._cache[token] = principal
        return principal

    async def _verify_uncached(self, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise TokenError("malformed token")
        header = _unverified_header(token)
        if header.get("alg") not in self.algorithms:
            raise TokenError("token algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token has no key id")
        keys = await self.keys.key_set()
        if not _has_kid(keys, kid):
            if await self.keys.refresh():
                keys = await self.keys.key_set()
            if not _has_kid(keys, kid):
                raise TokenError("token signed by an unknown key")
        try:
            decoded = jwt.decode(token, keys, algorithms=self.algorithms)
        except JoseError as exc:
            raise TokenError("token signature is invalid") from exc
        except (ValueError, TypeError) as exc:
            raise TokenError("malformed token") from exc
        claims = decoded.claims
        try:
            self._claims_registry().validate(claims)
        except JoseError as exc:
            raise TokenError(f"token claims rejected: {exc.description or exc.error}") from exc
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenError("token scope must be a space-separated string")
        return Principal(
            subject=str(claims["sub"]),
            scopes=frozenset(scope.split()),
            expires_at=int(claims["exp"]),
            token_id=claims.get("jti"),
            claims=claims,
        )


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; raise :class:`TokenError` otherwise."""
    if not authorization:
        raise TokenError("missing bearer token")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise TokenError("expected an Authorization: Bearer header")
    return value.strip()


def www_authenticate(
    error: str = "invalid_token", description: str | None = None, scope: str | None = None
) -> str:
    """A ``WWW-Authenticate`` value per RFC 6750 §3 (descriptions are our own text, never token content)."""
    parts = [f'error="{error}"']
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)
