"""``modelberth`` subcommands of the auth package (keys, users, clients)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the auth package's commands to the ``modelberth`` parser."""
