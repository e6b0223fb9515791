"""Argument types and options that every package's ``modelberth`` subcommands spell alike.

Packages register their own subcommands (entry points, see ``modelberth_cli.main``) and may not import the
command-line package, so what they share lives here.
"""

from __future__ import annotations

import argparse

EXIT_ERROR = 1
"""Exit status when something failed that is not the input's fault (a full disk, an unreachable store)."""

EXIT_USAGE = 2
"""Exit status for bad usage or input (bad flags, an unreadable file): nothing was written."""

STORE_HELP = (
    "the model store: a directory or oci://HOST[:PORT]/NAMESPACE ($MODELBERTH_STORE, "
    "default artifacts/models)"
)


def column_names(text: str) -> list[str]:
    """``a,b,c`` as a list of column names; an empty name is a usage error."""
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """``--store LOCATION`` (alias ``--model-dir``) into ``args.store``."""
    parser.add_argument("--store", "--model-dir", dest="store", metavar="LOCATION", help=STORE_HELP)
