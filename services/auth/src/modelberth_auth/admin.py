"""What the ``keys``, ``users`` and ``clients`` commands do. Each returns an exit code: 0 done,
1 refused (already exists, not found), 2 bad input (nothing written). Secrets are read from stdin and
printed only once (a new client's secret); files are written atomically with mode 0600."""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from modelberth_auth.files import locked
from modelberth_auth.principals import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    NAME_PATTERN,
    SCOPES,
    ClientRecord,
    PrincipalsError,
    PrincipalsFile,
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


# -- users and clients: the entries of one file, edited alike ---------------------------------------


class Refused(Exception):
    """A command that stops without writing anything: ``message`` on stderr, exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


Command = Callable[[argparse.Namespace], int]


def _command(run: Command) -> Command:
    """``run``, with :class:`Refused` and an unreadable users file turned into an error line and a code."""

    @functools.wraps(run)
    def command(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except Refused as exc:
            return _fail(str(exc), exc.code)
        except PrincipalsError as exc:
            return _fail(str(exc))

    return command


Section = Literal["users", "clients"]
"""Which entries of the users file: people, or API clients."""


def _entries(document: PrincipalsFile, section: Section) -> dict[str, Any]:
    entries: dict[str, Any] = document.users if section == "users" else document.clients
    return entries


@contextlib.contextmanager
def _editing(args: argparse.Namespace, section: Section) -> Iterator[dict[str, Any]]:
    """The ``section`` of the users file, read under its lock and written back when the block ends (not
    when it raises)."""
    path = _users_path(args)
    with locked(path):
        document = read_document(path)
        yield _entries(document, section)
        write_document(path, document)


def _checked_name(args: argparse.Namespace, noun: str) -> str:
    if re.fullmatch(NAME_PATTERN, args.name) is None:
        raise Refused(f"{noun} names are 1-64 of A-Z a-z 0-9 . _ @ - (starting alphanumeric)", EXIT_USAGE)
    name: str = args.name
    return name


def _checked_scopes(given: list[str] | None, default: tuple[Scope, ...]) -> list[Scope]:
    scopes = _scopes(given, default)
    if scopes is None:
        raise Refused(f"unknown scope; choose from {', '.join(SCOPES)}", EXIT_USAGE)
    return scopes


Row = Callable[[str, Any], dict[str, Any]]
"""An entry (name, record) as a JSON object, for ``--json``."""
Line = Callable[[str, Any], str]
"""An entry (name, record) as one line of text."""


def _list(args: argparse.Namespace, section: Section, row: Row, line: Line) -> int:
    """Print each entry of ``section`` (never a hash): a JSON list with ``--json``, else a line each."""
    entries = sorted(_entries(read_document(_users_path(args)), section).items())
    if args.json:
        print(json.dumps([row(name, entry) for name, entry in entries]))
    else:
        print("".join(line(name, entry) + "\n" for name, entry in entries), end="")
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


@_command
def users_add(args: argparse.Namespace) -> int:
    """Add (or with ``--replace`` update) a user; the password comes from stdin."""
    name = _checked_name(args, "user")
    scopes = _checked_scopes(args.scope, DEFAULT_USER_SCOPES)
    password = _read_password(args.password_stdin)
    if password is None:
        raise Refused("no password: pipe it in with --password-stdin", EXIT_USAGE)
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise Refused(
            f"the password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters", EXIT_USAGE
        )
    record = UserRecord(password_hash=hash_secret(password), scopes=scopes, created_at=now_utc())
    with _editing(args, "users") as users:
        if name in users and not args.replace:
            raise Refused(f"user {name} exists; use --replace to change it")
        users[name] = record
    print(f"user {name} saved with scopes: {' '.join(scopes)}")
    return 0


@_command
def users_list(args: argparse.Namespace) -> int:
    """Print users and their scopes (never hashes)."""
    return _list(
        args,
        "users",
        lambda name, user: {"name": name, "scopes": list(user.scopes)},
        lambda name, user: f"{name}\t{' '.join(user.scopes)}",
    )


@_command
def users_remove(args: argparse.Namespace) -> int:
    """Remove a user (their refresh tokens stop working at the next refresh)."""
    with _editing(args, "users") as users:
        if users.pop(args.name, None) is None:
            raise Refused(f"no user {args.name}")
    print(f"removed user {args.name}")
    return 0


# -- clients ------------------------------------------------------------------------------------------


MIN_CLIENT_SECRET_CHARS = 32
"""A secret given on stdin must be at least this long (the generated ones have 43 URL-safe characters)."""
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"


def _client_secret(args: argparse.Namespace) -> str:
    """The secret: read from stdin with ``--secret-stdin``, else newly generated."""
    if not args.secret_stdin:
        return new_client_secret()
    secret = sys.stdin.readline().rstrip("\r\n")
    if not MIN_CLIENT_SECRET_CHARS <= len(secret) <= MAX_PASSWORD_CHARS:
        raise Refused(
            f"a client secret must have {MIN_CLIENT_SECRET_CHARS} to {MAX_PASSWORD_CHARS} characters",
            EXIT_USAGE,
        )
    return secret


def _client_scopes(args: argparse.Namespace) -> list[Scope]:
    if not args.forwards_user_address:
        return _checked_scopes(args.scope, DEFAULT_CLIENT_SCOPES)
    if args.scope:
        raise Refused("a forwarder client gets no scopes: it only vouches for user addresses", EXIT_USAGE)
    return []


def _show_client(record: ClientRecord, secret: str | None, as_json: bool) -> None:
    shown: dict[str, str | bool] = {"client_id": record.client_id, "scope": " ".join(record.scopes)}
    if secret is not None:
        shown["client_secret"] = secret
    if record.forwards_user_address:
        shown["forwards_user_address"] = True
    if as_json:
        print(json.dumps(shown))
        return
    print("\n".join(f"{key}: {json.dumps(v) if isinstance(v, bool) else v}" for key, v in shown.items()))
    if secret is not None:
        print("the secret is shown only now; store it safely", file=sys.stderr)


@_command
def clients_add(args: argparse.Namespace) -> int:
    """Add a client and print its id (and its secret, once, unless it came from stdin).

    ``--forwards-user-address`` makes a trusted forwarder (the UI): it may name the user's address on
    ``POST /auth/login`` and nothing else (no scopes, no grants), so its secret cannot mint tokens.
    """
    name = _checked_name(args, "client")
    if args.client_id is not None and re.fullmatch(CLIENT_ID_PATTERN, args.client_id) is None:
        raise Refused("client ids are 1-128 of A-Z a-z 0-9 . _ -", EXIT_USAGE)
    scopes = _client_scopes(args)
    secret = _client_secret(args)
    client_id = args.client_id or new_client_id(name.replace("@", "-"))
    record = ClientRecord(
        client_id=client_id,
        secret_hash=hash_secret(secret),
        scopes=scopes,
        grant_types=[] if args.forwards_user_address else ["client_credentials"],
        forwards_user_address=args.forwards_user_address,
        created_at=now_utc(),
    )
    with _editing(args, "clients") as clients:
        if name in clients and not args.replace:
            raise Refused(f"client {name} exists; use --replace for a new id and secret")
        if any(c.client_id == client_id for n, c in clients.items() if n != name):
            raise Refused(f"another client already has the id {client_id}")
        clients[name] = record
    _show_client(record, None if args.secret_stdin else secret, args.json)
    return 0


@_command
def clients_list(args: argparse.Namespace) -> int:
    """Print clients, their ids and scopes (never secrets)."""

    def row(name: str, client: ClientRecord) -> dict[str, Any]:
        return {
            "name": name,
            "client_id": client.client_id,
            "scopes": list(client.scopes),
            "forwards_user_address": client.forwards_user_address,
        }

    def line(name: str, client: ClientRecord) -> str:
        role = "\tforwards user addresses" if client.forwards_user_address else ""
        return f"{name}\t{client.client_id}\t{' '.join(client.scopes)}{role}"

    return _list(args, "clients", row, line)


@_command
def clients_remove(args: argparse.Namespace) -> int:
    """Remove a client by name or client id; its tokens stop being issued at once."""
    with _editing(args, "clients") as clients:
        name = args.name if args.name in clients else None
        if name is None:
            name = next((n for n, c in clients.items() if c.client_id == args.name), None)
        if name is None:
            raise Refused(f"no client {args.name}")
        del clients[name]
    print(f"removed client {name}")
    return 0
