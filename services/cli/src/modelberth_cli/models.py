"""``modelberth models``: list, inspect and move the aliases of the models in a store.

``list``, ``history NAME``, ``promote NAME VERSION [--alias ALIAS]``, ``rollback NAME`` and
``diff NAME A B``; each takes ``--store`` (``$MODELBERTH_STORE``) and ``--json``. An unknown model, version
or alias is one line on stderr and exit status 2, with nothing moved.

Import-light, like every command module: the store (pydantic, the contract) loads in the handler only.
"""

from __future__ import annotations

import argparse

from modelberth_core.arguments import add_store_option

CHAMPION = "champion"
"""The default alias of ``promote`` (``modelberth_core.store.CHAMPION``, not imported here to stay light)."""


def _handle(args: argparse.Namespace) -> int:
    from modelberth_cli.models_commands import run

    return run(args)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``modelberth models ...`` to the CLI."""
    common = argparse.ArgumentParser(add_help=False)
    add_store_option(common)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", metavar="WHO", help="who to record in the history (default: the OS user)")

    models = subparsers.add_parser(
        "models",
        help="list models, show their history, promote, roll back and compare versions",
        description="Inspect the models of a store and move their aliases. Every command takes --store "
        "(else $MODELBERTH_STORE, else artifacts/models) and --json. An unknown model, version or alias is "
        "one line on stderr and exit status 2, with nothing moved.",
    )
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    listing = sub.add_parser(
        "list", parents=[common], help="every model with its champion, challenger, latest"
    )
    listing.set_defaults(handler=_handle)

    history = sub.add_parser(
        "history", parents=[common], help="a model's versions (metrics, aliases) and every alias move"
    )
    history.add_argument("name")
    history.set_defaults(handler=_handle)

    promote = sub.add_parser(
        "promote",
        parents=[common, actor],
        help="point an alias (default champion) at a version",
        description="Point ALIAS (default champion) at VERSION: a version id, or an alias such as "
        "challenger. A running inference picks the new champion up within its poll interval.",
    )
    promote.add_argument("name")
    promote.add_argument("version", help="a version id, or an alias naming one (e.g. challenger)")
    promote.add_argument("--alias", default=CHAMPION, help="the alias to move (default champion; not latest)")
    promote.set_defaults(handler=_handle)

    rollback = sub.add_parser(
        "rollback",
        parents=[common, actor],
        help="champion back to the version it replaced (again: one step further back)",
    )
    rollback.add_argument("name")
    rollback.set_defaults(handler=_handle)

    diff = sub.add_parser(
        "diff", parents=[common], help="two versions side by side: metrics, params, schema, data fingerprint"
    )
    diff.add_argument("name")
    diff.add_argument("a", help="a version id or an alias")
    diff.add_argument("b", help="a version id or an alias")
    diff.set_defaults(handler=_handle)
