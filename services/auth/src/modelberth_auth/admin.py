"""What the ``keys``, ``users`` and ``clients`` commands do. Each returns an exit code: 0 done,
1 refused (already exists, not found), 2 bad input (nothing written). Secrets are read from stdin and
printed only once (a new client's secret); files are written atomically with mode 0600."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from pathlib import Path

from modelberth_auth.files import locked
from modelberth_auth.principals import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    NAME_PATTERN,
    SCOPES,
    ClientRecord,
    PrincipalsError,
    Scope,
    UserRecord,
    hash_secret,
    new_client_id,
    new_client_secret,
    now_utc,
    read_document,
    write_document,
)

EXIT_USAGE = 2
"""Bad input (an unknown name, a bad flag): nothing was written."""

EXIT_REFUSED = 1
DEFAULT_USER_SCOPES: tuple[Scope, ...] = ("predict", "models:read")
DEFAULT_CLIENT_SCOPES: tuple[Scope, ...] = ("predict",)


def _fail(message: str, code: int = EXIT_REFUSED) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _state_dir() -> Path:
    # The same rule as modelberth_core.settings.state_dir, without importing pydantic-settings (CLI speed).
    return Path(os.environ.get("MODELBERTH_STATE_DIR") or ".modelberth")


def _keyset_path(args: argparse.Namespace, attr: str) -> Path:
    given = getattr(args, attr, None) or os.environ.get("AUTH_KEYSET_FILE")
    return Path(given) if given else _state_dir() / "keys.json"


def _users_path(args: argparse.Namespace) -> Path:
    given = args.file or os.environ.get("AUTH_USERS_FILE")
    return Path(given) if given else _state_dir() / "users.yaml"


def _scopes(given: list[str] | None, default: tuple[Scope, ...]) -> list[Scope] | None:
    if not given:
        return list(default)
    wanted = [part for item in given for part in item.replace(",", " ").split()]
    scopes: list[Scope] = [scope for scope in SCOPES if scope in wanted]
    if len(set(wanted)) != len(scopes):
        return None
    return scopes


def _valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


# -- keys ---------------------------------------------------------------------------------------------


def keys_generate(args: argparse.Namespace) -> int:
    """Write a new keyset (refusing to overwrite one), or append a key with ``--add``."""
    from joserfc.jwk import KeySet

    from modelberth_auth.keys import KeysetError, create_keyset, new_key, read_keyset, write_keyset

    path = _keyset_path(args, "out")
    if args.add:
        with locked(path):
            try:
                keys = read_keyset(path)
            except KeysetError as exc:
                return _fail(f"{exc} (without --add a new keyset is written)")
            key = new_key()
            write_keyset(path, KeySet([*keys.keys, key]))
        print(f"added key {key.kid} to {path}; it signs from now on ({len(keys.keys) + 1} keys verify)")
        return 0
    with locked(path):
        if not create_keyset(path):
            return _fail(f"{path} exists; use --add to rotate (existing keys are never overwritten)")
        kid = read_keyset(path).keys[-1].kid
    print(f"wrote keyset {path} with key {kid}")
    return 0


def keys_list(args: argparse.Namespace) -> int:
    """Print each key id; the last one signs."""
    from modelberth_auth.keys import KeysetError, read_keyset

    path = _keyset_path(args, "file")
    try:
        keys = read_keyset(path)
    except KeysetError as exc:
        return _fail(str(exc))
    for i, key in enumerate(keys.keys):
        print(f"{key.kid}{'  (signing)' if i == len(keys.keys) - 1 else ''}")
    return 0


def keys_remove(args: argparse.Namespace) -> int:
    """Remove one key; refuses to remove the last remaining one."""
    from joserfc.jwk import KeySet

    from modelberth_auth.keys import KeysetError, read_keyset, write_keyset

    path = _keyset_path(args, "file")
    with locked(path):
        try:
            keys = read_keyset(path)
        except KeysetError as exc:
            return _fail(str(exc))
        kept = [key for key in keys.keys if key.kid != args.kid]
        if len(kept) == len(keys.keys):
            return _fail(f"no key {args.kid} in {path}")
        if not kept:
            return _fail("refusing to remove the only key; add a new one first")
        write_keyset(path, KeySet(kept))
    print(f"removed key {args.kid}; tokens it signed no longer verify")
    return 0


# -- users --------------------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            return None
        return first
    return None


def users_add(args: argparse.Namespace) -> int:
    """Add (or with ``--replace`` update) a user; the password comes from stdin."""
    if not _valid_name(args.name):
        return _fail("user names are 1-64 of A-Z a-z 0-9 . _ @ - (starting alphanumeric)", EXIT_USAGE)
    scopes = _scopes(args.scope, DEFAULT_USER_SCOPES)
    if scopes is None:
        return _fail(f"unknown scope; choose from {', '.join(SCOPES)}", EXIT_USAGE)
    password = _read_password(args.password_stdin)
    if password is None:
        return _fail("no password: pipe it in with --password-stdin", EXIT_USAGE)
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        return _fail(
            f"the password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters", EXIT_USAGE
        )
    path = _users_path(args)
    record = UserRecord(password_hash=hash_secret(password), scopes=scopes, created_at=now_utc())
    with locked(path):
        try:
            document = read_document(path)
        except PrincipalsError as exc:
            return _fail(str(exc))
        if args.name in document.users and not args.replace:
            return _fail(f"user {args.name} exists; use --replace to change it")
        document.users[args.name] = record
        write_document(path, document)
    print(f"user {args.name} saved with scopes: {' '.join(scopes)}")
    return 0


def users_list(args: argparse.Namespace) -> int:
    """Print users and their scopes (never hashes)."""
    try:
        document = read_document(_users_path(args))
    except PrincipalsError as exc:
        return _fail(str(exc))
    rows = [{"name": name, "scopes": list(u.scopes)} for name, u in sorted(document.users.items())]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['name']}\t{' '.join(row['scopes'])}")
    return 0


def users_remove(args: argparse.Namespace) -> int:
    """Remove a user (their refresh tokens stop working at the next refresh)."""
    path = _users_path(args)
    with locked(path):
        try:
            document = read_document(path)
        except PrincipalsError as exc:
            return _fail(str(exc))
        if document.users.pop(args.name, None) is None:
            return _fail(f"no user {args.name}")
        write_document(path, document)
    print(f"removed user {args.name}")
    return 0


# -- clients ------------------------------------------------------------------------------------------


MIN_CLIENT_SECRET_CHARS = 32
"""A secret given on stdin must be at least this long (the generated ones have 43 URL-safe characters)."""
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"


def _client_secret(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(secret, problem)``: read from stdin with ``--secret-stdin``, else newly generated."""
    if not args.secret_stdin:
        return new_client_secret(), None
    secret = sys.stdin.readline().rstrip("\r\n")
    if not MIN_CLIENT_SECRET_CHARS <= len(secret) <= MAX_PASSWORD_CHARS:
        return None, f"a client secret must have {MIN_CLIENT_SECRET_CHARS} to {MAX_PASSWORD_CHARS} characters"
    return secret, None


def clients_add(args: argparse.Namespace) -> int:
    """Add a client and print its id (and its secret, once, unless it came from stdin).

    ``--forwards-user-address`` makes a trusted forwarder (the UI): it may name the user's address on
    ``POST /auth/login`` and nothing else (no scopes, no grants), so its secret cannot mint tokens.
    """
    if not _valid_name(args.name):
        return _fail("client names are 1-64 of A-Z a-z 0-9 . _ @ - (starting alphanumeric)", EXIT_USAGE)
    if args.client_id is not None and re.fullmatch(CLIENT_ID_PATTERN, args.client_id) is None:
        return _fail("client ids are 1-128 of A-Z a-z 0-9 . _ -", EXIT_USAGE)
    if args.forwards_user_address and args.scope:
        return _fail("a forwarder client gets no scopes: it only vouches for user addresses", EXIT_USAGE)
    scopes: list[Scope] | None = (
        [] if args.forwards_user_address else _scopes(args.scope, DEFAULT_CLIENT_SCOPES)
    )
    if scopes is None:
        return _fail(f"unknown scope; choose from {', '.join(SCOPES)}", EXIT_USAGE)
    secret, problem = _client_secret(args)
    if secret is None:
        return _fail(problem or "no client secret", EXIT_USAGE)
    path = _users_path(args)
    client_id = args.client_id or new_client_id(args.name.replace("@", "-"))
    record = ClientRecord(
        client_id=client_id,
        secret_hash=hash_secret(secret),
        scopes=scopes,
        grant_types=[] if args.forwards_user_address else ["client_credentials"],
        forwards_user_address=args.forwards_user_address,
        created_at=now_utc(),
    )
    with locked(path):
        try:
            document = read_document(path)
        except PrincipalsError as exc:
            return _fail(str(exc))
        if args.name in document.clients and not args.replace:
            return _fail(f"client {args.name} exists; use --replace for a new id and secret")
        if any(c.client_id == client_id for n, c in document.clients.items() if n != args.name):
            return _fail(f"another client already has the id {client_id}")
        document.clients[args.name] = record
        write_document(path, document)
    shown: dict[str, str | bool] = {"client_id": client_id, "scope": " ".join(scopes)}
    if not args.secret_stdin:
        shown["client_secret"] = secret
    if args.forwards_user_address:
        shown["forwards_user_address"] = True
    if args.json:
        print(json.dumps(shown))
    else:
        print("\n".join(f"{key}: {json.dumps(v) if isinstance(v, bool) else v}" for key, v in shown.items()))
        if not args.secret_stdin:
            print("the secret is shown only now; store it safely", file=sys.stderr)
    return 0


def clients_list(args: argparse.Namespace) -> int:
    """Print clients, their ids and scopes (never secrets)."""
    try:
        document = read_document(_users_path(args))
    except PrincipalsError as exc:
        return _fail(str(exc))
    rows = [
        {
            "name": name,
            "client_id": c.client_id,
            "scopes": list(c.scopes),
            "forwards_user_address": c.forwards_user_address,
        }
        for name, c in sorted(document.clients.items())
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        for name, c in sorted(document.clients.items()):
            role = "\tforwards user addresses" if c.forwards_user_address else ""
            print(f"{name}\t{c.client_id}\t{' '.join(c.scopes)}{role}")
    return 0


def clients_remove(args: argparse.Namespace) -> int:
    """Remove a client by name or client id; its tokens stop being issued at once."""
    path = _users_path(args)
    with locked(path):
        try:
            document = read_document(path)
        except PrincipalsError as exc:
            return _fail(str(exc))
        name = args.name if args.name in document.clients else None
        if name is None:
            name = next((n for n, c in document.clients.items() if c.client_id == args.name), None)
        if name is None:
            return _fail(f"no client {args.name}")
        del document.clients[name]
        write_document(path, document)
    print(f"removed client {name}")
    return 0
