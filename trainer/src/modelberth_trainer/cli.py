"""``modelberth`` subcommands of the trainer (train)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the trainer's commands to the ``modelberth`` parser."""
