"""``modelberth`` subcommands of the auth package: ``keys``, ``users``, ``clients``.

Import-light on purpose (``modelberth --help`` loads it): the work happens in :mod:`modelberth_auth.admin`,
imported only when a command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


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

    users = subparsers.add_parser("users", help="manage people who log in with a password")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    uadd = users_sub.add_parser("add", help="add a user (password read from stdin, never from argv)")
    uadd.add_argument("name")
    uadd.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="predict, models:read, models:admin (repeatable; default: predict models:read)",
    )
    uadd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    uadd.add_argument("--replace", action="store_true", help="replace an existing user's password and scopes")
    _file_option(uadd, "users", "AUTH_USERS_FILE")
    uadd.set_defaults(handler=_run("users_add"))
    ulist = users_sub.add_parser("list", help="list users and their scopes")
    ulist.add_argument("--json", action="store_true", help="print JSON")
    _file_option(ulist, "users", "AUTH_USERS_FILE")
    ulist.set_defaults(handler=_run("users_list"))
    uremove = users_sub.add_parser("remove", help="remove a user")
    uremove.add_argument("name")
    _file_option(uremove, "users", "AUTH_USERS_FILE")
    uremove.set_defaults(handler=_run("users_remove"))

    clients = subparsers.add_parser("clients", help="manage API clients (client credentials grant)")
    clients_sub = clients.add_subparsers(dest="clients_command", metavar="ACTION", required=True)
    cadd = clients_sub.add_parser("add", help="add a client; prints its id and secret once")
    cadd.add_argument("name")
    cadd.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="predict, models:read, models:admin (repeatable; default: predict)",
    )
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
    cadd.add_argument("--replace", action="store_true", help="replace an existing client (new id and secret)")
    _file_option(cadd, "users", "AUTH_USERS_FILE")
    cadd.set_defaults(handler=_run("clients_add"))
    clist = clients_sub.add_parser("list", help="list clients, their ids and scopes")
    clist.add_argument("--json", action="store_true", help="print JSON")
    _file_option(clist, "users", "AUTH_USERS_FILE")
    clist.set_defaults(handler=_run("clients_list"))
    cremove = clients_sub.add_parser("remove", help="remove a client by name or client id")
    cremove.add_argument("name")
    _file_option(cremove, "users", "AUTH_USERS_FILE")
    cremove.set_defaults(handler=_run("clients_remove"))
