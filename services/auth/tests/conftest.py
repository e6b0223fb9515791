"""Fixtures of the auth tests: a real keyset and users file in ``tmp_path``, and apps built on them.

argon2id with OWASP parameters costs tens of milliseconds per hash, so the few hashes are made once per
session and written into each test's own files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelberth_auth.app import create_app
from modelberth_auth.keys import create_keyset
from modelberth_auth.principals import ClientRecord, PrincipalsFile, UserRecord, hash_secret, write_document
from modelberth_auth.settings import Settings

PASSWORD = "correct horse battery staple"
CLIENT_SECRET = "svc-secret-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class AuthEnv:
    """Files and credentials of one test's auth service."""

    state: Path
    keyset_file: Path
    users_file: Path
    refresh_file: Path
    username: str = "demo"
    password: str = PASSWORD
    admin: str = "root"
    client_id: str = "svc-0a1b2c"
    client_secret: str = CLIENT_SECRET
    reader_id: str = "reader-3d4e5f"
    no_grant_id: str = "nogrant-6a7b8c"
    forwarder_id: str = "modelberth-ui"

    def settings(self, **overrides: object) -> Settings:
        """Settings pointing at these files (reloads checked on every request unless overridden)."""
        values: dict[str, object] = {
            "keyset_file": self.keyset_file,
            "users_file": self.users_file,
            "refresh_store_file": self.refresh_file,
            "reload_interval_seconds": 0.0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def env(self, **extra: str) -> dict[str, str]:
        """The same as ``AUTH_*`` variables, for a real process."""
        return {
            "AUTH_KEYSET_FILE": str(self.keyset_file),
            "AUTH_USERS_FILE": str(self.users_file),
            "AUTH_REFRESH_STORE_FILE": str(self.refresh_file),
            "AUTH_RELOAD_INTERVAL_SECONDS": "0",
            **extra,
        }


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    """argon2id hashes of the test password and client secret (computed once)."""
    return {"password": hash_secret(PASSWORD), "secret": hash_secret(CLIENT_SECRET)}


@pytest.fixture
def auth_env(tmp_path: Path, hashes: dict[str, str]) -> AuthEnv:
    """A keyset and a users file with users demo (predict, models:read) and root (all scopes) and clients
    svc (predict), reader (predict, models:read), nogrant (no grant types) and the UI's forwarder
    (``forwards_user_address``, no scopes, no grants), all sharing one secret."""
    return make_auth_env(tmp_path, hashes)


@pytest.fixture(scope="session")
def auth_env_factory(hashes: dict[str, str]) -> Callable[[Path], AuthEnv]:
    """``auth_env_factory(directory)``: :func:`auth_env`'s files there (for fixtures of a wider scope)."""
    return lambda directory: make_auth_env(directory, hashes)


def make_auth_env(tmp_path: Path, hashes: dict[str, str]) -> AuthEnv:
    """The files of :func:`auth_env` under ``tmp_path`` (for fixtures of a wider scope)."""
    state = tmp_path / "auth-state"
    env = AuthEnv(state, state / "keys.json", state / "users.yaml", state / "refresh.json")
    assert create_keyset(env.keyset_file)
    document = PrincipalsFile(
        users={
            env.username: UserRecord(password_hash=hashes["password"], scopes=["predict", "models:read"]),
            env.admin: UserRecord(
                password_hash=hashes["password"], scopes=["predict", "models:read", "models:admin"]
            ),
        },
        clients={
            "svc": ClientRecord(client_id=env.client_id, secret_hash=hashes["secret"], scopes=["predict"]),
            "reader": ClientRecord(
                client_id=env.reader_id, secret_hash=hashes["secret"], scopes=["predict", "models:read"]
            ),
            "nogrant": ClientRecord(
                client_id=env.no_grant_id, secret_hash=hashes["secret"], scopes=["predict"], grant_types=[]
            ),
            "ui": ClientRecord(
                client_id=env.forwarder_id,
                secret_hash=hashes["secret"],
                scopes=[],
                grant_types=[],
                forwards_user_address=True,
            ),
        },
    )
    write_document(env.users_file, document)
    return env


@pytest.fixture
def client(auth_env: AuthEnv) -> Iterator[TestClient]:
    """The app in-process (lifespan run), on ``auth_env``'s files."""
    with TestClient(create_app(auth_env.settings())) as test_client:
        yield test_client
