"""``python -m modelberth_trainer train ...``: the same command as ``modelberth train``."""

from __future__ import annotations

import argparse
import sys

from modelberth_trainer.cli import register


def main(argv: list[str] | None = None) -> int:
    """Parse ``train`` arguments and run the handler."""
    parser = argparse.ArgumentParser(prog="python -m modelberth_trainer")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
