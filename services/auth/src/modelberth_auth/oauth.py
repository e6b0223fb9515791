"""The authorization server's decisions, without HTTP: who is authenticated, which grant applies, which
scopes a token gets. Routes parse requests and call these (sync, CPU-bound: argon2 runs in a threadpool).

Password hashes are checked in constant work: an unknown user or client is checked against a dummy hash
with the same parameters, so "no such user" and "wrong password" cost the same and answer the same.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from joserfc.jwk import KeySet

from modelberth_auth.errors import OAuthError, invalid_client
from modelberth_auth.keys import KeyRing
from modelberth_auth.principals import PrincipalStore, verify_secret
from modelberth_auth.settings import Settings
from modelberth_auth.telemetry import AuthMetrics
from modelberth_auth.throttle import LoginThrottle
from modelberth_auth.tokens import RefreshError, RefreshStore, mint_access_token
from modelberth_core.security import SCOPES

log = logging.getLogger("modelberth.auth")

SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
"""RFC 6749 §3.3 scope-token characters."""


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What the caller presented to authenticate as a client."""

    client_id: str
    client_secret: str | None
    via_basic: bool


@dataclass(frozen=True, slots=True)
class TokenResult:
    """A successful token response."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The RFC 6749 §5.1 body."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


class LoginLocked(Exception):
    """Too many failures for this username/client or address; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class LoginFailed(Exception):
    """Wrong username or password (deliberately not saying which)."""


def parse_basic(authorization: str) -> ClientCredentials:
    """Client credentials from ``Authorization: Basic`` (RFC 6749 §2.3.1: form-encoded, then base64)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise invalid_client("unsupported authentication scheme; use Basic or client_secret_post", True)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid_client("malformed Basic credentials", True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise invalid_client("malformed Basic credentials", True)
    return ClientCredentials(unquote_plus(client_id), unquote_plus(secret), via_basic=True)


def parse_scope(value: str | None) -> list[str] | None:
    """Requested scopes (None when absent); ``invalid_scope`` for malformed or unknown ones."""
    if value is None:
        return None
    parts = value.split(" ")
    if not value.strip() or any(not SCOPE_TOKEN.match(p) for p in parts):
        raise OAuthError("invalid_scope", "scope must be space-separated scope names")
    unknown = [p for p in parts if p not in SCOPES]
    if unknown:
        raise OAuthError("invalid_scope", "unknown scope requested")
    return list(dict.fromkeys(parts))


def grant_scopes(requested: list[str] | None, allowed: Sequence[str]) -> list[str]:
    """The scopes a token gets: the requested subset of ``allowed`` (all of them when none requested)."""
    if requested is None:
        granted = [s for s in SCOPES if s in allowed]
    else:
        if any(s not in allowed for s in requested):
            raise OAuthError("invalid_scope", "requested scope exceeds what this principal may have")
        granted = [s for s in SCOPES if s in requested]
    if not granted:
        raise OAuthError("invalid_scope", "no scope can be granted to this principal")
    return granted


class Authority:
    """Authenticates users and clients and issues tokens."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        principals: PrincipalStore,
        refresh: RefreshStore,
        throttle: LoginThrottle,
        metrics: AuthMetrics,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.principals = principals
        self.refresh = refresh
        self.throttle = throttle
        self.metrics = metrics

    # -- authentication -----------------------------------------------------------------------------

    def _check_locked(self, *keys: str) -> None:
        retry = self.throttle.retry_after(*keys)
        if retry is not None:
            self.metrics.rate_limited.inc()
            raise LoginLocked(retry)

    def authenticate_client(
        self, creds: ClientCredentials | None, address: str
    ) -> tuple[str, list[str], list[str]]:
        """``(client_id, scopes, grant_types)`` of the authenticated client, or ``invalid_client``.

        Raises :class:`LoginLocked` after too many failures for this client id or address.
        """
        if creds is None:
            raise invalid_client("client authentication required", True)
        if creds.client_secret is None or not creds.client_secret:
            raise invalid_client("client authentication failed", creds.via_basic)
        client_key, addr_key = f"client:{creds.client_id}", f"addr:{address}"
        self._check_locked(client_key, addr_key)
        found = self.principals.client(creds.client_id)
        stored = found[1].secret_hash if found else self.principals.dummy_hash
        ok = verify_secret(stored, creds.client_secret) and found is not None
        if not ok or found is None:
            self.throttle.fail(client_key, addr_key)
            self.metrics.login_failures.labels(
                "unknown_client" if found is None else "bad_client_secret"
            ).inc()
            log.info("client authentication failed", extra={"known_client": found is not None})
            raise invalid_client("client authentication failed", creds.via_basic)
        _, record = found
        return creds.client_id, list(record.scopes), list(record.grant_types)

    def login(self, username: str, password: str, address: str) -> TokenResult:
        """First-party login of a person: access token plus refresh token, or :class:`LoginFailed`."""
        user_key, addr_key = f"user:{username.casefold()}", f"addr:{address}"
        self._check_locked(user_key, addr_key)
        record = self.principals.user(username)
        stored = record.password_hash if record else self.principals.dummy_hash
        ok = verify_secret(stored, password) and record is not None
        if not ok or record is None:
            self.throttle.fail(user_key, addr_key)
            self.metrics.login_failures.labels("unknown_user" if record is None else "bad_password").inc()
            log.info("login failed", extra={"known_user": record is not None})
            raise LoginFailed
        self.throttle.reset(user_key)
        scopes = [s for s in SCOPES if s in record.scopes]
        result = self._issue(username, scopes, client_id=None)
        refresh = self.refresh.issue(username, result.scope)
        log.info("login", extra={"sub": username, "scope": result.scope})
        return TokenResult(result.access_token, result.expires_in, result.scope, refresh)

    # -- grants -------------------------------------------------------------------------------------

    def _issue(self, subject: str, scopes: Sequence[str], client_id: str | None) -> TokenResult:
        token = mint_access_token(
            self.keys.signing_key(),
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            subject=subject,
            scopes=scopes,
            ttl_seconds=self.settings.access_token_ttl_seconds,
            client_id=client_id,
        )
        log.info("access token issued", extra={"sub": subject, "jti": token.token_id, "scope": token.scope})
        return TokenResult(token.value, token.expires_in, token.scope)

    def client_credentials(
        self, creds: ClientCredentials | None, scope: str | None, address: str
    ) -> TokenResult:
        """RFC 6749 §4.4: a token for the client itself; no refresh token (§4.4.3)."""
        client_id, allowed, grants = self.authenticate_client(creds, address)
        if "client_credentials" not in grants:
            raise OAuthError("unauthorized_client", "this client may not use the client_credentials grant")
        scopes = grant_scopes(parse_scope(scope), allowed)
        return self._issue(client_id, scopes, client_id=client_id)

    def refresh_token(
        self, creds: ClientCredentials | None, refresh_token: str | None, scope: str | None, address: str
    ) -> TokenResult:
        """RFC 6749 §6: rotate a refresh token issued by login (to the first-party, public client)."""
        if creds is not None:
            self.authenticate_client(creds, address)
            raise OAuthError("unauthorized_client", "refresh tokens are issued to users, not to clients")
        if not refresh_token:
            raise OAuthError("invalid_request", "missing parameter: refresh_token")
        requested = parse_scope(scope)
        record = self.refresh.lookup(refresh_token)
        if (
            record is not None
            and requested is not None
            and any(s not in record.scope.split() for s in requested)
        ):
            raise OAuthError("invalid_scope", "requested scope exceeds the original grant")
        try:
            record, successor = self.refresh.rotate(refresh_token)
        except RefreshError as exc:
            text = {
                "invalid": "refresh token is invalid",
                "expired": "refresh token has expired",
                "revoked": "refresh token was revoked",
                "reused": "refresh token was already used; the session is revoked",
            }[exc.reason]
            raise OAuthError("invalid_grant", text) from None
        user = self.principals.user(record.subject)
        if user is None:
            self.refresh.revoke(successor)
            raise OAuthError("invalid_grant", "refresh token is invalid")
        # Never more than the original grant, nor more than the user has now.
        allowed = [s for s in record.scope.split() if s in user.scopes]
        scopes = grant_scopes(requested, allowed)
        result = self._issue(record.subject, scopes, client_id=None)
        return TokenResult(result.access_token, result.expires_in, result.scope, successor)

    # -- introspection and revocation ---------------------------------------------------------------

    def public_keys(self) -> KeySet:
        """The verification keys (public halves)."""
        return self.keys.public_keys()

    def revoke_refresh(self, token: str) -> bool:
        """Revoke a refresh token's family (RFC 7009); False when unknown."""
        revoked = self.refresh.revoke(token)
        if revoked:
            log.info("refresh token revoked")
        return revoked
