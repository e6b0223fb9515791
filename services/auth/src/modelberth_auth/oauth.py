"""The authorization server's decisions, without HTTP: who is authenticated, which grant applies, which
scopes a token gets, which address an attempt counts against. Routes parse requests and await these;
argon2 runs in the threadpool, the throttle and the refresh store are awaited (a shared store is remote).

Password hashes are checked in constant work: an unknown user or client is checked against a dummy hash
with the same parameters, so "no such user" and "wrong password" cost the same and answer the same.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from joserfc.jwk import KeySet
from starlette.concurrency import run_in_threadpool

from modelberth_auth.errors import OAuthError, invalid_client
from modelberth_auth.keys import KeyRing
from modelberth_auth.metrics import AuthMetrics
from modelberth_auth.principals import ClientRecord, PrincipalStore, UserRecord, verify_secret
from modelberth_auth.refresh import RefreshError, RefreshStore
from modelberth_auth.settings import Settings
from modelberth_auth.state import StateUnavailable
from modelberth_auth.throttle import Throttle
from modelberth_auth.tokens import mint_access_token
from modelberth_core.security import SCOPES, TokenError, single_authorization

log = logging.getLogger("modelberth.auth")

USER_ADDRESS_HEADER = "X-Modelberth-User-Address"
"""The browser's address, sent by the UI with its own client credentials on ``POST /auth/login``; believed
only from a client marked ``forwards_user_address`` (never because of where a request comes from)."""

SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
"""RFC 6749 §3.3 scope-token characters."""


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What the caller presented to authenticate as a client."""

    client_id: str
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """A client whose secret was verified."""

    client_id: str
    scopes: list[str]
    grant_types: list[str]
    forwards_user_address: bool


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
    """Too many failures for this account from this address, or from this address; retry later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class LoginFailed(Exception):
    """Wrong username or password (deliberately not saying which)."""


def one_authorization(values: list[str]) -> str | None:
    """The request's one ``Authorization`` value; ``invalid_request`` when there are several (ambiguous)."""
    try:
        return single_authorization(values)
    except TokenError as exc:
        raise OAuthError("invalid_request", exc.description) from None


def parse_basic(authorization: str) -> ClientCredentials:
    """Client credentials from ``Authorization: Basic`` (RFC 6749 §2.3.1: form-encoded, then base64)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise invalid_client("unsupported authentication scheme; use Basic or client_secret_post")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid_client("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise invalid_client("malformed Basic credentials")
    return ClientCredentials(unquote_plus(client_id), unquote_plus(secret))


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
        throttle: Throttle,
        metrics: AuthMetrics,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.principals = principals
        self.refresh = refresh
        self.throttle = throttle
        self.metrics = metrics

    # -- authentication -----------------------------------------------------------------------------

    async def _admit(self, account: str | None, address: str) -> None:
        retry = await self.throttle.admit(account, address)
        if retry is not None:
            self.metrics.rate_limited.inc()
            raise LoginLocked(retry)

    @staticmethod
    async def _count_client(call: Callable[[], Awaitable[None]]) -> None:
        """A throttle call for client authentication, which goes ahead while the shared store is down.

        Client secrets are 256-bit (32+ characters when chosen), so counting their failures is no
        defence worth refusing every client-credentials grant and introspection for while the store is
        out (issue 18); logins, which guard passwords, wait for the store instead (503).
        """
        with contextlib.suppress(StateUnavailable):
            await call()

    def _check_client(self, client_id: str, secret: str) -> ClientRecord | None:
        found = self.principals.client(client_id)
        stored = found[1].secret_hash if found else self.principals.dummy_hash
        ok = verify_secret(stored, secret) and found is not None
        if found is None or not ok:
            self.metrics.login_failures.labels(
                "unknown_client" if found is None else "bad_client_secret"
            ).inc()
            log.info("client authentication failed", extra={"known_client": found is not None})
            return None
        return found[1]

    async def authenticate_client(self, creds: ClientCredentials | None, address: str) -> AuthenticatedClient:
        """The authenticated client, or ``invalid_client``.

        Failures count against ``address`` only, never against the client id: ids are public and secrets
        are 256-bit, so a per-client lockout would only let anyone lock a client out. Raises
        :class:`LoginLocked` while the address has too many failures.
        """
        if creds is None:
            raise invalid_client("client authentication required")
        if not creds.client_secret:
            raise invalid_client("client authentication failed")
        await self._count_client(lambda: self._admit(None, address))
        record = await run_in_threadpool(self._check_client, creds.client_id, creds.client_secret)
        if record is None:
            await self._count_client(lambda: self.throttle.failed(None, address))
            raise invalid_client("client authentication failed")
        await self._count_client(lambda: self.throttle.succeeded(None, address))
        return AuthenticatedClient(
            creds.client_id, list(record.scopes), list(record.grant_types), record.forwards_user_address
        )

    async def forwarded_address(self, creds: ClientCredentials, peer: str, claimed: str | None) -> str:
        """The user's address a trusted forwarder (the UI) vouches for, in place of ``peer`` (its own).

        Only a client marked ``forwards_user_address`` may do this, authenticated with its secret on this
        very request; failures count against ``peer``. ``invalid_client`` for wrong credentials,
        ``unauthorized_client`` for a client that is not a forwarder, ``invalid_request`` for a claimed
        address that is missing or not an IP address.
        """
        client = await self.authenticate_client(creds, peer)
        if not client.forwards_user_address:
            log.warning("client tried to forward a user address", extra={"client_id": client.client_id})
            raise OAuthError("unauthorized_client", "this client may not forward user addresses", 403)
        if claimed is None:
            raise OAuthError("invalid_request", f"a forwarder must send {USER_ADDRESS_HEADER}")
        try:
            return str(ipaddress.ip_address(claimed.strip()))
        except ValueError:
            raise OAuthError("invalid_request", f"{USER_ADDRESS_HEADER} must be one IP address") from None

    def _check_password(self, username: str, password: str) -> UserRecord | None:
        record = self.principals.user(username)
        stored = record.password_hash if record else self.principals.dummy_hash
        ok = verify_secret(stored, password) and record is not None
        if record is None or not ok:
            self.metrics.login_failures.labels("unknown_user" if record is None else "bad_password").inc()
            log.info("login failed", extra={"known_user": record is not None})
            return None
        return record

    async def login(self, username: str, password: str, address: str) -> TokenResult:
        """First-party login of a person: access token plus refresh token, or :class:`LoginFailed`.

        ``address`` is the person's: the TCP peer as uvicorn resolved it through trusted proxies, or the
        browser's address a trusted forwarder (the UI) vouched for.
        """
        account = f"user:{username.casefold()}"
        await self._admit(account, address)
        record = await run_in_threadpool(self._check_password, username, password)
        if record is None:
            await self.throttle.failed(account, address)
            raise LoginFailed
        await self.throttle.succeeded(account, address)
        scopes = [s for s in SCOPES if s in record.scopes]
        result = self._issue(username, scopes, client_id=None)
        refresh = await self.refresh.issue(username, result.scope)
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

    async def client_credentials(
        self, creds: ClientCredentials | None, scope: str | None, address: str
    ) -> TokenResult:
        """RFC 6749 §4.4: a token for the client itself; no refresh token (§4.4.3)."""
        client = await self.authenticate_client(creds, address)
        if "client_credentials" not in client.grant_types:
            raise OAuthError("unauthorized_client", "this client may not use the client_credentials grant")
        scopes = grant_scopes(parse_scope(scope), client.scopes)
        return self._issue(client.client_id, scopes, client_id=client.client_id)

    async def refresh_token(
        self, creds: ClientCredentials | None, refresh_token: str | None, scope: str | None, address: str
    ) -> TokenResult:
        """RFC 6749 §6: rotate a refresh token issued by login (to the first-party, public client)."""
        if creds is not None:
            await self.authenticate_client(creds, address)
            raise OAuthError("unauthorized_client", "refresh tokens are issued to users, not to clients")
        if not refresh_token:
            raise OAuthError("invalid_request", "missing parameter: refresh_token")
        requested = parse_scope(scope)
        try:
            # One atomic step: a rotated token revokes its family; a live one asking for more than its
            # grant is refused without being used up (invalid_scope); otherwise it is replaced.
            record, successor = await self.refresh.rotate(refresh_token, requested)
        except RefreshError as exc:
            if exc.reason == "scope":
                raise OAuthError("invalid_scope", "requested scope exceeds the original grant") from None
            text = {
                "invalid": "refresh token is invalid",
                "expired": "refresh token has expired",
                "revoked": "refresh token was revoked",
                "reused": "refresh token was already used; the session is revoked",
            }[exc.reason]
            raise OAuthError("invalid_grant", text) from None
        user = self.principals.user(record.subject)
        if user is None:
            await self.refresh.revoke(successor)
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

    async def introspect_refresh(self, token: str) -> dict[str, Any] | None:
        """RFC 7662 §2.2 for a refresh token: None unless it is its family's live token and would still be
        redeemed (its user exists and keeps a scope of the grant); the store answers for every replica."""
        record = await self.refresh.lookup(token)
        user = None if record is None else self.principals.user(record.subject)
        if record is None or user is None:
            return None
        scopes = [s for s in SCOPES if s in record.scope.split() and s in user.scopes]
        if not scopes:
            return None
        return {
            "active": True,
            "token_use": "refresh_token",
            "scope": " ".join(scopes),
            "sub": record.subject,
            "username": record.subject,
            "iss": self.settings.issuer,
            "exp": record.expires_at,
        }

    async def revoke_refresh(self, token: str) -> bool:
        """Revoke a refresh token's family (RFC 7009); False when unknown."""
        revoked = await self.refresh.revoke(token)
        if revoked:
            log.info("refresh token revoked")
        return revoked
