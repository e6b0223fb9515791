"""Refresh tokens: opaque, stored hashed, rotated on every use, revocable, with an absolute expiry per login.

Each login starts a **family**; every refresh replaces the family's one live token with a successor. A token
is ``<family id>.<secret>`` and the store keeps, per family, only the hash of its newest token. Reuse
detection is therefore exact and needs no history: a token that names a live family but is not its newest
was rotated already (or was never issued, which needs a token of that family to forge: the family id
appears nowhere else), so whoever presents it holds a leaked copy and the whole family is revoked (OAuth 2.0
Security BCP, RFC 9700 §4.14.2). Before, a bounded list of rotated hashes forgot all but the 20 newest, and a
replayed older token was merely "invalid" (issue 13, point 8).

:class:`RefreshStore` is the interface the authority uses; :class:`FileRefreshStore` keeps the families in
one JSON file per process. A shared backend (Redis, issue 18) implements the same four calls, atomically.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from modelberth_auth.files import atomic_write

log = logging.getLogger("modelberth.auth.refresh")

STORE_VERSION: Literal[2] = 2
"""Version 1 stored one record per token; its tokens are not of the ``<family>.<secret>`` form."""


def token_hash(token: str) -> str:
    """SHA-256 of a refresh token: enough for a 256-bit random value (no salt or slow hash needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token(family: str) -> str:
    """A fresh token of ``family``: the family id, a dot, 256 random bits (URL-safe, never a dot)."""
    return f"{family}.{secrets.token_urlsafe(32)}"


def family_key(token: str) -> str | None:
    """The store's key of the family a token names (SHA-256 of its id, so that the file holds no part of
    any token), or None when the token is not of the ``<family>.<secret>`` form."""
    family, sep, secret = token.partition(".")
    if not sep or not family or not secret or "." in secret or len(token) > 256:
        return None
    return token_hash(family)


class RefreshRecord(BaseModel):
    """One family: every token rotated from one login."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    """The username the tokens are issued to."""
    scope: str
    """Space-separated scopes granted at login."""
    issued_at: int
    """Unix seconds of the login."""
    expires_at: int
    """Unix seconds; the family's absolute end (rotation does not extend it)."""
    current: str
    """SHA-256 of the family's newest token, the only one that can be redeemed."""
    rotations: int = 0
    """How many times the family was refreshed."""
    state: Literal["active", "revoked"] = "active"


class RefreshStoreFile(BaseModel):
    """The JSON file: families by the SHA-256 of their id."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[2] = STORE_VERSION
    families: dict[str, RefreshRecord] = {}


class RefreshError(Exception):
    """The refresh token cannot be used; ``reused`` when a rotated token came back (family revoked),
    ``scope`` when a live token asked for more than its family's grant (nothing changed)."""

    def __init__(self, reason: Literal["invalid", "expired", "revoked", "reused", "scope"]) -> None:
        super().__init__(reason)
        self.reason = reason


class RefreshStore(Protocol):
    """Where refresh-token families live. Every call is atomic with respect to the others."""

    async def issue(self, subject: str, scope: str) -> str:
        """A new token starting a new family."""
        ...

    async def lookup(self, token: str) -> RefreshRecord | None:
        """The family of ``token`` when it is the family's live, redeemable token; otherwise None."""
        ...

    async def rotate(self, token: str, scope: Sequence[str] | None = None) -> tuple[RefreshRecord, str]:
        """Redeem ``token``: its family and the successor token; :class:`RefreshError` otherwise.

        Any token of a live family other than its newest revokes the family (reason ``reused``). A live
        token whose request names a ``scope`` outside the family's grant stays live (reason ``scope``).
        """
        ...

    async def revoke(self, token: str) -> bool:
        """Revoke the family of ``token`` (any of its tokens); False when the family is unknown."""
        ...


class FileRefreshStore:
    """:class:`RefreshStore` in memory, persisted as one JSON file of hashes (rewritten atomically, 0600).

    Per process: with several auth replicas, put the state dir on a shared volume or run one replica. File
    writes run in the threadpool; a lock serialises the calls.
    """

    def __init__(self, path: Path, ttl_seconds: int, max_per_subject: int = 50) -> None:
        self.path = path
        self.ttl_seconds = ttl_seconds
        self.max_per_subject = max_per_subject
        self._lock = threading.Lock()
        self._families: dict[str, RefreshRecord] = {}
        self.persistent = True
        """False while the file cannot be written (families then live in memory only)."""

    def load(self) -> None:
        """Read the file (at startup); a missing, broken or older file starts empty (users log in again)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            self._families = RefreshStoreFile.model_validate(json.loads(data)).families
        except (ValueError, ValidationError):
            log.warning(
                "refresh token store is unreadable or of an older version; starting empty",
                extra={"path": str(self.path)},
            )
            self._families = {}

    def _save(self) -> None:
        now = int(time.time())
        self._families = {f: r for f, r in self._families.items() if r.expires_at > now}
        document = RefreshStoreFile(families=self._families)
        try:
            atomic_write(self.path, document.model_dump_json().encode())
        except OSError as exc:
            # A read-only or full volume must not break logins: keep the families in memory and say so once.
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
        # Revoked families count too, so a login/revoke loop cannot grow the file either. The dict (and the
        # file) keep issue order, so "oldest" is exact even for logins within one second.
        mine = [f for f, r in self._families.items() if r.subject == subject]
        for family in mine[: max(0, len(mine) - self.max_per_subject + 1)]:
            del self._families[family]

    def _issue(self, subject: str, scope: str) -> str:
        now = int(time.time())
        token = new_token(secrets.token_urlsafe(16))
        family = family_key(token)
        assert family is not None
        with self._lock:
            self._limit_families(subject)
            self._families[family] = RefreshRecord(
                subject=subject,
                scope=scope,
                issued_at=now,
                expires_at=now + self.ttl_seconds,
                current=token_hash(token),
            )
            self._save()
        return token

    def _find(self, token: str) -> tuple[str, RefreshRecord] | None:
        family = family_key(token)
        record = self._families.get(family) if family is not None else None
        return None if family is None or record is None else (family, record)

    def _lookup(self, token: str) -> RefreshRecord | None:
        with self._lock:
            found = self._find(token)
        if found is None:
            return None
        record = found[1]
        live = record.state == "active" and record.expires_at > int(time.time())
        return record if live and hmac.compare_digest(record.current, token_hash(token)) else None

    def _rotate(self, token: str, scope: Sequence[str] | None) -> tuple[RefreshRecord, str]:
        now = int(time.time())
        with self._lock:
            found = self._find(token)
            if found is None:
                raise RefreshError("invalid")
            family, record = found
            if record.expires_at <= now:
                raise RefreshError("expired")
            if record.state == "revoked":
                raise RefreshError("revoked")
            if not hmac.compare_digest(record.current, token_hash(token)):
                self._families[family] = record.model_copy(update={"state": "revoked"})
                self._save()
                log.warning("rotated refresh token reused; family revoked", extra={"sub": record.subject})
                raise RefreshError("reused")
            if scope is not None and any(s not in record.scope.split() for s in scope):
                raise RefreshError("scope")
            successor = new_token(token.partition(".")[0])
            self._families[family] = record.model_copy(
                update={"current": token_hash(successor), "rotations": record.rotations + 1}
            )
            self._save()
        return record, successor

    def _revoke(self, token: str) -> bool:
        with self._lock:
            found = self._find(token)
            if found is None:
                return False
            family, record = found
            self._families[family] = record.model_copy(update={"state": "revoked"})
            self._save()
        return True

    async def issue(self, subject: str, scope: str) -> str:
        """See :meth:`RefreshStore.issue`."""
        return await run_in_threadpool(self._issue, subject, scope)

    async def lookup(self, token: str) -> RefreshRecord | None:
        """See :meth:`RefreshStore.lookup`."""
        return await run_in_threadpool(self._lookup, token)

    async def rotate(self, token: str, scope: Sequence[str] | None = None) -> tuple[RefreshRecord, str]:
        """See :meth:`RefreshStore.rotate`."""
        return await run_in_threadpool(self._rotate, token, scope)

    async def revoke(self, token: str) -> bool:
        """See :meth:`RefreshStore.revoke`."""
        return await run_in_threadpool(self._revoke, token)
