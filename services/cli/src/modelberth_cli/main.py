"""The ``modelberth`` command (also ``python -m modelberth_cli``). Subcommands come from the installed
packages' entry points, so each image has exactly the commands of the packages it carries, and
``modelberth --help`` imports none of them beyond their small ``cli`` modules.

- group ``modelberth.commands``: ``name = "pkg.cli:register"``; ``register(subparsers)`` adds parsers whose
  ``handler`` default takes the parsed namespace and returns an exit code.
- group ``modelberth.services``: ``name = "pkg.app:create_app"``; ``modelberth serve NAME`` runs it under
  uvicorn with one worker, with a shutdown that answers every request sent before SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from modelberth_cli import models, stack

EXIT_USAGE = 2
"""Exit code for bad input (bad flags, unreadable data): nothing was written."""

EXIT_BROKEN_PIPE = 141
"""Exit code when the output's reader went away: 128 + SIGPIPE, what a shell reports for tools it kills."""

DEFAULT_PORTS = {"auth": 8001, "inference": 8002, "ui": 8003}
"""Local defaults; each service keeps its own port so they can run side by side."""

KEEP_ALIVE_SECONDS = 75
"""Idle keep-alive connections live longer here than in the clients (httpx 5 s, ingress-nginx 60 s), so a
client never sends a request on a connection the server is closing at that moment (seen as "server
disconnected without sending a response" with uvicorn's default of 5 s, equal to httpx's)."""

GRACEFUL_SHUTDOWN_SECONDS = 20
"""How long uvicorn lets in-flight requests finish after SIGTERM and the drain (``shutdown.DRAIN_SECONDS``);
the pod's grace period must cover the preStop sleep plus both."""

Handler = Callable[[argparse.Namespace], int]


def _service_factories() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="modelberth.services")}


def _serve(args: argparse.Namespace) -> int:
    from modelberth_core import shutdown
    from modelberth_core.logging import configure_logging

    name: str = args.service
    prefix = name.upper()
    host = args.host or os.environ.get(f"{prefix}_HOST") or "127.0.0.1"
    port = args.port or int(os.environ.get(f"{prefix}_PORT") or DEFAULT_PORTS.get(name, 8000))
    # The factory reads its settings from the environment; flags win over variables.
    os.environ[f"{prefix}_HOST"], os.environ[f"{prefix}_PORT"] = host, str(port)
    for key, value in args.set or []:
        os.environ[f"{prefix}_{key.upper()}"] = value
    store = getattr(args, "store", None) or (
        None if os.environ.get("INFERENCE_STORE") else os.environ.get("MODELBERTH_STORE")
    )
    if name == "inference" and store:
        os.environ["INFERENCE_STORE"] = store
    configure_logging(name, os.environ.get(f"{prefix}_LOG_LEVEL", "info"))
    # uvicorn, with a drain before its shutdown so SIGTERM loses no request (see modelberth_core.shutdown).
    shutdown.serve(
        _service_factories()[name],
        factory=True,
        host=host,
        port=port,
        workers=1,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    """The full parser: this package's commands (serve, up, models) plus every installed package's."""
    parser = argparse.ArgumentParser(
        prog="modelberth", description="Train, serve and operate tabular models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    services = sorted(_service_factories())
    if services:
        serve = sub.add_parser("serve", help="run one service (one uvicorn worker; scale with replicas)")
        serve.add_argument("service", choices=services)
        serve.add_argument("--host", help="interface (default 127.0.0.1, or <SERVICE>_HOST)")
        serve.add_argument("--port", type=int, help="port (default auth 8001, inference 8002, ui 8003)")
        serve.add_argument(
            "--store",
            "--model-dir",
            dest="store",
            metavar="LOCATION",
            help="inference only: the model store (INFERENCE_STORE, else MODELBERTH_STORE)",
        )
        serve.add_argument(
            "--set",
            action="append",
            type=_key_value,
            metavar="KEY=VALUE",
            help="any other setting, exported as <SERVICE>_KEY",
        )
        serve.set_defaults(handler=_serve)
    stack.register(sub)
    models.register(sub)
    for ep in sorted(entry_points(group="modelberth.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelberth`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader left (``modelberth models history iris | head``): stop quietly like other command-line
        # tools. stdout goes to /dev/null so the interpreter's own flush at exit cannot raise again (the
        # recipe in the signal module's documentation, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
