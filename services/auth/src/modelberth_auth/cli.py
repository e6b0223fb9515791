"""``modelberth`` subcommands of the auth package: ``keys``, ``users``, ``clients``.

Import-light on purpose (``modelberth --help`` loads it): the work happens in :mod:`modelberth_auth.admin`,
imported only when a command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


def _run(name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from modelberth_auth import admin

        result: int = getattr(admin, name)(args)
        return result

    return handler


def _file_option(parser: argparse.ArgumentParser, what: str, env: str) -> None:
    parser.add_argument("--file", type=str, help=f"the {what} file (default: ${env} or the state dir)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the auth package's commands to the ``modelberth`` parser."""
    keys = subparsers.add_parser("keys", help="manage the token signing keyset (JWKS with private keys)")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = keys_sub.add_parser("generate", help="write a new keyset, or add a key to one with --add")
    generate.add_argument("--out", help="keyset file (default: $AUTH_KEYSET_FILE or <state dir>/keys.json)")
    generate.add_argument(
        "--add", action="store_true", help="append a new signing key to an existing keyset (rotation)"
    )
    generate.set_defaults(handler=_run("keys_generate"))
    klist = keys_sub.add_parser("list", help="list key ids (the last one signs)")
    _file_option(klist, "keyset", "AUTH_KEYSET_FILE")
    klist.set_defaults(handler=_run("keys_list"))
    kremove = keys_sub.add_parser("remove", help="remove a key: tokens it signed stop verifying")
    kremove.add_argument("kid")
    _file_option(kremove, "keyset", "AUTH_KEYSET_FILE")
    kremove.set_defaults(handler=_run("keys_remove"))

    uadd = _entry_commands(subparsers, USERS)
    uadd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    cadd = _entry_commands(subparsers, CLIENTS)
    cadd.add_argument("--json", action="store_true", help='print {"client_id": ..., "client_secret": ...}')
    cadd.add_argument(
        "--client-id", help="this client id instead of NAME-<random hex> (ids are public anyway)"
    )
    cadd.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the secret (32+ characters) from stdin instead of generating one; it is not printed",
    )
    cadd.add_argument(
        "--forwards-user-address",
        action="store_true",
        help="a trusted forwarder such as the UI: may send X-Modelberth-User-Address on /auth/login; "
        "no scopes, no grants",
    )


@dataclass(frozen=True, slots=True)
class Entries:
    """The words of one kind of entry in the users file, for its ``add``, ``list`` and ``remove`` commands."""

    section: str
    """The command and the file's section: ``users`` or ``clients``."""
    help: str
    add: str
    default_scopes: str
    replace: str
    list: str
    remove: str


USERS = Entries(
    section="users",
    help="manage people who log in with a password",
    add="add a user (password read from stdin, never from argv)",
    default_scopes="predict models:read",
    replace="replace an existing user's password and scopes",
    list="list users and their scopes",
    remove="remove a user",
)
CLIENTS = Entries(
    section="clients",
    help="manage API clients (client credentials grant)",
    add="add a client; prints its id and secret once",
    default_scopes="predict",
    replace="replace an existing client (new id and secret)",
    list="list clients, their ids and scopes",
    remove="remove a client by name or client id",
)


def _entry_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], entries: Entries
) -> argparse.ArgumentParser:
    """``<section> add|list|remove``, alike for users and clients; the ``add`` parser, for its own options."""
    section = entries.section
    group = subparsers.add_parser(section, help=entries.help)
    actions = group.add_subparsers(dest=f"{section}_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help=entries.add)
    add.add_argument("name")
    add.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help=f"predict, models:read, models:admin (repeatable; default: {entries.default_scopes})",
    )
    add.add_argument("--replace", action="store_true", help=entries.replace)
    listing = actions.add_parser("list", help=entries.list)
    listing.add_argument("--json", action="store_true", help="print JSON")
    remove = actions.add_parser("remove", help=entries.remove)
    remove.add_argument("name")
    for action, parser in (("add", add), ("list", listing), ("remove", remove)):
        _file_option(parser, "users", "AUTH_USERS_FILE")
        parser.set_defaults(handler=_run(f"{section}_{action}"))
    return add
