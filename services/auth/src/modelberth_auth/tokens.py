"""Minting access tokens (ES256 JWTs, RFC 9068 shape) and keeping refresh tokens (opaque, hashed,
rotated on use, revocable, with an absolute expiry per family)."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from joserfc import jwt
from joserfc.jwk import ECKey
from pydantic import BaseModel, ConfigDict, ValidationError

from modelberth_auth.files import atomic_write
from modelberth_auth.keys import ALGORITHM
from modelberth_core.security import ACCESS_TOKEN_TYPE

log = logging.getLogger("modelberth.auth.tokens")

MAX_ROTATED_KEPT = 20
"""Rotated refresh tokens remembered per family for reuse detection."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A signed access token and the facts a response needs."""

    value: str
    token_id: str
    expires_in: int
    scope: str


def mint_access_token(
    key: ECKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    scopes: Sequence[str],
    ttl_seconds: int,
    client_id: str | None = None,
    now: int | None = None,
) -> AccessToken:
    """Sign an access token: header alg, kid, ``typ: at+jwt``; claims iss sub aud exp iat nbf jti scope."""
    issued = int(time.time()) if now is None else now
    token_id = secrets.token_urlsafe(16)
    scope = " ".join(scopes)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued + ttl_seconds,
        "iat": issued,
        "nbf": issued,
        "jti": token_id,
        "scope": scope,
    }
    if client_id is not None:
        claims["client_id"] = client_id
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
    value = jwt.encode(header, claims, key, algorithms=[ALGORITHM])
    return AccessToken(value=value, token_id=token_id, expires_in=ttl_seconds, scope=scope)


def token_hash(token: str) -> str:
    """SHA-256 of a refresh token: enough for a 256-bit random value (no salt or slow hash needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class RefreshRecord(BaseModel):
    """One refresh token, stored under its hash."""

    model_config = ConfigDict(extra="forbid")

    family: str
    """All tokens rotated from one login share a family; reuse of a rotated one revokes it."""
    subject: str
    """The username the token was issued to."""
    scope: str
    """Space-separated scopes granted at login."""
    issued_at: int
    """Unix seconds."""
    expires_at: int
    """Unix seconds; the family's absolute end."""
    state: Literal["active", "rotated", "revoked"] = "active"


class RefreshStoreFile(BaseModel):
    """The JSON file: records by token hash."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    tokens: dict[str, RefreshRecord] = {}


class RefreshError(Exception):
    """The refresh token cannot be used; ``reused`` when a rotated token came back (family revoked)."""

    def __init__(self, reason: Literal["invalid", "expired", "revoked", "reused"]) -> None:
        super().__init__(reason)
        self.reason = reason


class RefreshStore:
    """Refresh tokens of this auth instance, persisted as hashes in one JSON file (rewritten atomically).

    Per process: with several auth replicas, put the state dir on a shared volume or run one replica.
    """

    def __init__(self, path: Path, ttl_seconds: int, max_per_subject: int = 50) -> None:
        self.path = path
        self.ttl_seconds = ttl_seconds
        self.max_per_subject = max_per_subject
        self._lock = threading.Lock()
        self._tokens: dict[str, RefreshRecord] = {}
        self.persistent = True
        """False while the file cannot be written (tokens then live in memory only)."""

    def load(self) -> None:
        """Read the file (at startup); a missing or broken file starts an empty store (users log in again)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            self._tokens = RefreshStoreFile.model_validate(json.loads(data)).tokens
        except (ValueError, ValidationError):
            log.warning("refresh token store is unreadable; starting empty", extra={"path": str(self.path)})
            self._tokens = {}

    def _save(self) -> None:
        now = int(time.time())
        self._tokens = {h: r for h, r in self._tokens.items() if r.expires_at > now}
        document = RefreshStoreFile(tokens=self._tokens)
        try:
            atomic_write(self.path, document.model_dump_json().encode())
        except OSError as exc:
            # A read-only or full volume must not break logins: keep the tokens in memory and say so once.
            if self.persistent:
                log.error(
                    "refresh token store is not writable; refresh tokens live in memory until restart",
                    extra={"path": str(self.path), "error": exc.strerror},
                )
            self.persistent = False
            return
        if not self.persistent:
            log.info("refresh token store is writable again", extra={"path": str(self.path)})
        self.persistent = True

    def _limit_families(self, subject: str) -> None:
        # Every family counts, revoked ones too, so a login/revoke loop cannot grow the file either.
        families: dict[str, int] = {}
        for record in self._tokens.values():
            if record.subject == subject:
                families[record.family] = max(record.issued_at, families.get(record.family, 0))
        if len(families) < self.max_per_subject:
            return
        oldest = sorted(families, key=families.__getitem__)[: len(families) - self.max_per_subject + 1]
        doomed = set(oldest)
        self._tokens = {h: r for h, r in self._tokens.items() if r.family not in doomed}

    def issue(self, subject: str, scope: str) -> str:
        """A new refresh token starting a new family."""
        token = secrets.token_urlsafe(32)
        now = int(time.time())
        with self._lock:
            self._limit_families(subject)
            self._tokens[token_hash(token)] = RefreshRecord(
                family=secrets.token_hex(8),
                subject=subject,
                scope=scope,
                issued_at=now,
                expires_at=now + self.ttl_seconds,
            )
            self._save()
        return token

    def rotate(self, token: str) -> tuple[RefreshRecord, str]:
        """Use ``token`` once: mark it rotated and return its record and a successor in the same family.

        A rotated token presented again means it leaked: the whole family is revoked.
        """
        key = token_hash(token)
        now = int(time.time())
        with self._lock:
            record = self._tokens.get(key)
            if record is None:
                raise RefreshError("invalid")
            if record.expires_at <= now:
                raise RefreshError("expired")
            if record.state == "revoked":
                raise RefreshError("revoked")
            if record.state == "rotated":
                self._revoke_family(record.family)
                self._save()
                log.warning("rotated refresh token reused; family revoked", extra={"sub": record.subject})
                raise RefreshError("reused")
            self._tokens[key] = record.model_copy(update={"state": "rotated"})
            successor = secrets.token_urlsafe(32)
            self._tokens[token_hash(successor)] = record.model_copy(
                update={"issued_at": now, "state": "active"}
            )
            self._limit_rotated(record.family)
            self._save()
        return record, successor

    def _limit_rotated(self, family: str) -> None:
        # Rotated tokens are kept to detect reuse; the oldest beyond MAX_ROTATED_KEPT are forgotten (a reuse
        # of one of those is then merely "invalid", still refused).
        rotated = [
            (r.issued_at, h) for h, r in self._tokens.items() if r.family == family and r.state == "rotated"
        ]
        for _, key in sorted(rotated)[: max(0, len(rotated) - MAX_ROTATED_KEPT)]:
            del self._tokens[key]

    def _revoke_family(self, family: str) -> None:
        for key, record in self._tokens.items():
            if record.family == family:
                self._tokens[key] = record.model_copy(update={"state": "revoked"})

    def revoke(self, token: str) -> bool:
        """Revoke the token's whole family; False when the token is unknown."""
        with self._lock:
            record = self._tokens.get(token_hash(token))
            if record is None:
                return False
            self._revoke_family(record.family)
            self._save()
        return True

    def lookup(self, token: str) -> RefreshRecord | None:
        """The record of ``token`` (any state), if known."""
        return self._tokens.get(token_hash(token))
