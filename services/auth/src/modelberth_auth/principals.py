"""Users (people, password login) and clients (API clients and service accounts, client credentials),
kept in one YAML or JSON file with argon2id hashes and scopes per principal.

The CLI edits the file (locked, atomic, 0600); the service rereads it when it changes, checked at most
once per ``interval_seconds``, so ``modelberth users add`` takes effect without a restart.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from modelberth_auth.files import FileStamp, RecheckGate, atomic_write

log = logging.getLogger("modelberth.auth.principals")

Scope = Literal["predict", "models:read", "models:admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
"""The same scopes as ``modelberth_core.security.SCOPES`` (a test keeps them equal)."""
GrantType = Literal["client_credentials"]
GRANT_TYPES: tuple[GrantType, ...] = ("client_credentials",)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
"""Usernames and client names: short, printable, no separators used by HTTP Basic or YAML."""
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
"""Longer passwords are refused before hashing (argon2 cost is per byte of input too)."""

# OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1.
HASHER = PasswordHasher(
    time_cost=2, memory_cost=19_456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)


class UserRecord(BaseModel):
    """A person who logs in with a password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    password_hash: str = Field(pattern=r"^\$argon2id\$")
    """argon2id hash of the password."""
    scopes: list[Scope] = Field(default_factory=list)
    """Scopes this user's tokens may carry."""
    created_at: datetime | None = None
    """When the user was added (UTC)."""


class ClientRecord(BaseModel):
    """An API client or service account that authenticates with a client id and secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")
    """Public identifier, sent as the Basic user name or the ``client_id`` form field."""
    secret_hash: str = Field(pattern=r"^\$argon2id\$")
    """argon2id hash of the client secret."""
    scopes: list[Scope] = Field(default_factory=list)
    """Scopes this client's tokens may carry."""
    grant_types: list[GrantType] = Field(default_factory=lambda: list(GRANT_TYPES))
    """Grants this client may use at the token endpoint."""
    forwards_user_address: bool = False
    """A trusted forwarder (the UI): its ``POST /auth/login`` requests, authenticated with this client's
    secret, may name the user's address in ``X-Modelberth-User-Address`` (failed logins count against it)."""
    created_at: datetime | None = None
    """When the client was added (UTC)."""


class PrincipalsFile(BaseModel):
    """The whole file: ``users`` by name and ``clients`` by name."""

    model_config = ConfigDict(extra="forbid")

    users: dict[Name, UserRecord] = Field(default_factory=dict)
    clients: dict[Name, ClientRecord] = Field(default_factory=dict)


class PrincipalsError(Exception):
    """The users/clients file cannot be read or parsed."""


def hash_secret(secret: str) -> str:
    """argon2id hash of a password or client secret (OWASP parameters)."""
    return HASHER.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """True when ``secret`` matches ``stored_hash``; never raises for a wrong or malformed value."""
    try:
        return HASHER.verify(stored_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_client_secret() -> str:
    """A 256-bit random client secret, URL-safe."""
    return secrets.token_urlsafe(32)


def new_client_id(name: str) -> str:
    """A client id that names the client and cannot be guessed from the name alone."""
    return f"{name}-{secrets.token_hex(6)}"


def now_utc() -> datetime:
    """Now, UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def parse_document(data: bytes, path: Path) -> PrincipalsFile:
    """Parse the file's bytes (JSON for ``*.json``, YAML otherwise)."""
    try:
        raw: Any = json.loads(data) if _is_json(path) else yaml.safe_load(data)
    except (ValueError, yaml.YAMLError) as exc:
        raise PrincipalsError(f"{path} is not valid {'JSON' if _is_json(path) else 'YAML'}") from exc
    if raw is None:
        raw = {}
    try:
        return PrincipalsFile.model_validate(raw)
    except ValidationError as exc:
        where = "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()[:5])
        raise PrincipalsError(f"{path}: {where}") from exc


def read_document(path: Path) -> PrincipalsFile:
    """Read the file; an absent file is an empty one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return PrincipalsFile()
    except OSError as exc:
        raise PrincipalsError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_document(data, path)


def write_document(path: Path, document: PrincipalsFile) -> None:
    """Atomically write the file (mode 0600) in its format."""
    raw = document.model_dump(mode="json", exclude_none=True)
    if _is_json(path):
        data = json.dumps(raw, indent=2).encode() + b"\n"
    else:
        header = "# modelberth users and clients (argon2id hashes). Edit with `modelberth users|clients`.\n"
        data = (header + yaml.safe_dump(raw, sort_keys=True)).encode()
    atomic_write(path, data)


class PrincipalStore:
    """The service's view of the users/clients file, reloaded when it changes.

    A broken new version is logged and ignored (the last good one stays); an absent file means no users.
    """

    def __init__(self, path: Path, interval_seconds: float = 1.0, require_file: bool = False) -> None:
        self.path = path
        self.interval_seconds = interval_seconds
        self.require_file = require_file
        self._document: PrincipalsFile | None = None
        self._clients_by_id: dict[str, tuple[str, ClientRecord]] = {}
        self._stamp: FileStamp | None = None
        self._recheck = RecheckGate(interval_seconds)
        # Unknown users are checked against this hash, so they cost the same time as a wrong password.
        self.dummy_hash = hash_secret(secrets.token_urlsafe(16))

    @property
    def loaded(self) -> bool:
        """True once the file was read (or found absent, when that is allowed)."""
        return self._document is not None

    def load(self) -> None:
        """Read the file now; raise :class:`PrincipalsError` if it is unusable (or absent but required)."""
        stamp = FileStamp.of(self.path)
        if stamp is None and self.require_file:
            raise PrincipalsError(f"users file {self.path} does not exist")
        self._set(read_document(self.path), stamp)

    def _set(self, document: PrincipalsFile, stamp: FileStamp | None) -> None:
        self._document = document
        self._clients_by_id = {c.client_id: (name, c) for name, c in document.clients.items()}
        self._stamp = stamp
        log.info("users file loaded", extra={"users": len(document.users), "clients": len(document.clients)})

    def maybe_reload(self) -> None:
        """Reload if the file changed since the last look (at most once per interval)."""
        with self._recheck.due() as due:
            if not due:
                return
            stamp = FileStamp.of(self.path)
            if stamp == self._stamp and self._document is not None:
                return
            if stamp is None and self.require_file:
                log.warning("users file disappeared; keeping the loaded users")
                return
            try:
                document = read_document(self.path)
            except PrincipalsError as exc:
                log.warning(
                    "users file changed but is unusable; keeping the loaded one", extra={"error": str(exc)}
                )
                self._stamp = stamp
                return
            self._set(document, stamp)

    def user(self, name: str) -> UserRecord | None:
        """The user called ``name``, if any."""
        self.maybe_reload()
        return self._document.users.get(name) if self._document else None

    def client(self, client_id: str) -> tuple[str, ClientRecord] | None:
        """``(name, record)`` of the client with ``client_id``, if any."""
        self.maybe_reload()
        return self._clients_by_id.get(client_id)
