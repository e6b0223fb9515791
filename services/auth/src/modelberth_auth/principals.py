"""Users (people, password login) and clients (API clients and service accounts, client credentials),
kept in one YAML or JSON file with argon2id hashes and scopes per principal.

The CLI edits the file (locked, atomic, 0600); the service rereads it when it changes, checked at most
once per ``interval_seconds``, so ``modelberth users add`` takes effect without a restart.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from modelberth_auth.files import WatchedFile, atomic_write

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


@dataclass(frozen=True, slots=True)
class _Principals:
    document: PrincipalsFile
    clients_by_id: dict[str, tuple[str, ClientRecord]]


class PrincipalStore:
    """The service's view of the users/clients file, reloaded when it changes.

    A broken new version is logged and ignored (the last good one stays); an absent file means no users,
    unless ``require_file`` (then the last good one stays, and a first load fails).
    """

    def __init__(self, path: Path, interval_seconds: float = 1.0, require_file: bool = False) -> None:
        self.path = path
        self.require_file = require_file
        self._file = WatchedFile(
            path, self._read, unusable=PrincipalsError, what="users file", interval_seconds=interval_seconds
        )
        # Unknown users are checked against this hash, so they cost the same time as a wrong password.
        self.dummy_hash = hash_secret(secrets.token_urlsafe(16))

    def _read(self, path: Path) -> _Principals:
        if self.require_file and not path.exists():
            raise PrincipalsError(f"users file {path} does not exist")
        document = read_document(path)
        log.info("users file loaded", extra={"users": len(document.users), "clients": len(document.clients)})
        by_id = {c.client_id: (name, c) for name, c in document.clients.items()}
        return _Principals(document, by_id)

    @property
    def loaded(self) -> bool:
        """True once the file was read (or found absent, when that is allowed)."""
        return self._file.value is not None

    def load(self) -> None:
        """Read the file now; raise :class:`PrincipalsError` if it is unusable (or absent but required)."""
        self._file.load()

    def user(self, name: str) -> UserRecord | None:
        """The user called ``name``, if any."""
        principals = self._file.current()
        return principals.document.users.get(name) if principals else None

    def client(self, client_id: str) -> tuple[str, ClientRecord] | None:
        """``(name, record)`` of the client with ``client_id``, if any."""
        principals = self._file.current()
        return principals.clients_by_id.get(client_id) if principals else None
