"""Access-token verification shared by every service that accepts tokens (auth signs, the rest verify).

Tokens are JWTs signed with an asymmetric key (ES256 by default) whose public half is published as a JWKS
by the auth service. Verification is local: a fixed algorithm allow-list, then the signature, then the
required claims (iss, aud, exp; nbf and iat when present). A bare ``jwt.decode`` checks only the
signature, which would accept a wrong issuer or a token that never expires.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

log = logging.getLogger("modelberth.security")

DEFAULT_ALGORITHMS = ("ES256",)
"""The default allow-list; ``none`` and symmetric algorithms can never verify."""
ASYMMETRIC_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "Ed25519", "EdDSA"}
)
"""The only algorithms an allow-list may name (an HS* key would be the public key, known to everyone)."""
ASYMMETRIC_KEY_TYPES = frozenset({"EC", "RSA", "OKP"})
"""Key types a JWKS may contribute; anything else is dropped before import."""
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, not a secret)
"""RFC 9068 ``typ`` of an access token, so an ID token or other JWT from the same key is not accepted."""
SCOPES = ("predict", "models:read", "models:admin")
"""Every scope a token can carry."""
MAX_TOKEN_BYTES = 8192
"""Longer bearer values are refused before any parsing."""


class TokenError(Exception):
    """The token cannot be accepted: 401 ``invalid_token`` (RFC 6750 §3.1) unless ``error`` says otherwise
    (400 ``invalid_request`` for an ambiguous request)."""

    def __init__(self, description: str, error: str = "invalid_token", status_code: int = 401) -> None:
        super().__init__(description)
        self.description = description
        self.error = error
        self.status_code = status_code


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
    forged kids cannot hammer the auth service, and in the background of a request once the keys are older
    than ``max_age_seconds`` so a key removed from auth's keyset stops verifying here too. If auth is down
    the cached keys keep verifying.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_seconds: float = 5.0,
        min_refresh_seconds: float = 30.0,
        max_age_seconds: float = 300.0,
    ) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=timeout_seconds)
        self._owns_client = client is None
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self._keys: KeySet | None = None
        self._loaded_at = float("-inf")
        self._last_attempt = float("-inf")
        self._last_refresh = float("-inf")
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
        try:
            keys = KeySet.import_key_set(_asymmetric_only(response.json()))
        except (KeyError, TypeError, AttributeError, JoseError) as exc:
            raise ValueError(f"not a usable JWKS: {type(exc).__name__}") from exc
        self._keys = keys
        self._loaded_at = time.monotonic()
        log.info("jwks loaded", extra={"keys": len(keys.keys), "jwks_url": self.url})
        return keys

    async def _try_fetch(self) -> bool:
        try:
            await self.fetch()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("jwks fetch failed; keeping cached keys", extra={"error": type(exc).__name__})
            return False
        return True

    async def key_set(self) -> KeySet:
        """The cached keys, fetching them first if there are none yet (or refreshing stale ones)."""
        keys = self._keys
        if keys is None:
            async with self._lock:
                if self._keys is None:
                    # While auth is down, retry at most once a second instead of once per request.
                    if time.monotonic() - self._last_attempt < min(1.0, self.min_refresh_seconds):
                        raise TokenError("signing keys are not available yet")
                    if not await self._try_fetch():
                        raise TokenError("signing keys are not available yet")
                assert self._keys is not None
                return self._keys
        now = time.monotonic()
        stale = now - self._loaded_at > self.max_age_seconds
        if stale and not self._lock.locked() and now - self._last_attempt >= self.min_refresh_seconds:
            async with self._lock:
                await self._try_fetch()
            return self._keys or keys
        return keys

    async def refresh(self) -> bool:
        """Refetch unless a refresh was tried within ``min_refresh_seconds``; keep the old keys on failure.

        The limit counts refreshes only, so a key rotated in just after a routine fetch is still found.
        """
        async with self._lock:
            now = time.monotonic()
            if now - self._last_refresh < self.min_refresh_seconds:
                return False
            self._last_refresh = now
            return await self._try_fetch()

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_client:
            await self._client.aclose()


def _asymmetric_only(document: Any) -> Any:
    """The JWKS without symmetric (``oct``) or unknown key types: a published key is public by definition."""
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        keys = [k for k in document["keys"] if isinstance(k, dict) and k.get("kty") in ASYMMETRIC_KEY_TYPES]
        return {**document, "keys": keys}
    return document


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        head = token.split(".", 1)[0]
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, RecursionError) as exc:  # binascii, unicode and JSON errors are ValueErrors
        raise TokenError("malformed token") from exc
    if not isinstance(decoded, dict):
        raise TokenError("malformed token")
    return decoded


class TokenVerifier:
    """Verify bearer tokens: algorithm allow-list, ``typ``, signature, then iss/aud/exp/sub (nbf, iat when
    present).

    A token that verified once is remembered until it expires (bounded cache keyed by its SHA-256), so a
    busy client pays the signature check once, not on every request; a cached token still stops verifying
    as soon as its key leaves the key set.
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
        token_type: str | None = ACCESS_TOKEN_TYPE,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        if not self.algorithms or not set(self.algorithms) <= ASYMMETRIC_ALGORITHMS:
            raise ValueError("the algorithm allow-list must name asymmetric algorithms only")
        if not issuer or not audience:
            raise ValueError("issuer and audience must be set")
        self.leeway_seconds = leeway_seconds
        self.cache_size = cache_size
        self.token_type = token_type
        self._cache: dict[bytes, tuple[Principal, str]] = {}

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
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise TokenError("malformed token")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self._cache.get(digest)
        now = int(time.time())
        if cached is not None:
            principal, kid = cached
            if principal.expires_at + self.leeway_seconds > now and _has_kid(await self.keys.key_set(), kid):
                return principal
            del self._cache[digest]
        principal, kid = await self._verify_uncached(token)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()  # simple and bounded; a refill costs one verification per live token
        self._cache[digest] = (principal, kid)
        return principal

    async def _verify_uncached(self, token: str) -> tuple[Principal, str]:
        """The checks in order: the header (no key needed), the key, the signature, then the claims."""
        kid = self._key_id(token)
        keys = await self._keys_holding(kid)
        return _principal(self._verified_claims(token, keys)), kid

    def _key_id(self, token: str) -> str:
        """The ``kid`` of a token whose header names an allowed algorithm and the expected type."""
        if token.count(".") != 2:
            raise TokenError("malformed token")
        header = _unverified_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenError("token algorithm not allowed")
        if self.token_type is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != self.token_type:
                raise TokenError(f"token type must be {self.token_type}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token has no key id")
        return kid

    async def _keys_holding(self, kid: str) -> KeySet:
        """The key set, fetched again (rate-limited) when it lacks ``kid``: the issuer may have rotated."""
        keys = await self.keys.key_set()
        if not _has_kid(keys, kid):
            if await self.keys.refresh():
                keys = await self.keys.key_set()
            if not _has_kid(keys, kid):
                raise TokenError("token signed by an unknown key")
        return keys

    def _verified_claims(self, token: str, keys: KeySet) -> dict[str, Any]:
        """The claims of a token whose signature verifies, once iss, aud, exp and sub check out."""
        try:
            decoded = jwt.decode(token, keys, algorithms=self.algorithms)
        except JoseError as exc:
            raise TokenError("token signature is invalid") from exc
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError) as exc:
            raise TokenError("malformed token") from exc
        claims = decoded.claims
        try:
            self._claims_registry().validate(claims)
        except JoseError as exc:
            raise TokenError(f"token claims rejected: {exc.description or exc.error}") from exc
        return claims


def _principal(claims: dict[str, Any]) -> Principal:
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenError("token scope must be a space-separated string")
    jti = claims.get("jti")
    return Principal(
        subject=str(claims["sub"]),
        scopes=frozenset(scope.split()),
        expires_at=int(claims["exp"]),
        token_id=jti if isinstance(jti, str) else None,
        claims=claims,
    )


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


AMBIGUOUS_CREDENTIALS = "more than one credential in the Authorization header(s)"


def single_authorization(values: str | Sequence[str] | None) -> str | None:
    """The one ``Authorization`` value of a request (None when absent).

    Two headers (or two credentials a proxy merged into one with a comma) are ambiguous: a server that
    reads the first and a proxy or log that reads the last would disagree on who is calling. RFC 6750
    §3.1 calls that ``invalid_request`` (400), whatever the values are.
    """
    if values is None or isinstance(values, str):
        values = [] if values is None else [values]
    if len(values) > 1 or (values and "," in values[0]):
        raise TokenError(AMBIGUOUS_CREDENTIALS, "invalid_request", 400)
    return values[0] if values else None


def bearer_token(authorization: str | Sequence[str] | None) -> str:
    """The token of the ``Authorization: Bearer <token>`` header; raise :class:`TokenError` otherwise.

    Pass every value of the header (``request.headers.getlist("authorization")``), so that a request with
    two of them is refused as ambiguous rather than judged by its first.
    """
    authorization = single_authorization(authorization)
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
