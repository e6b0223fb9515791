"""uvicorn, with a shutdown that answers every request that reached the server before SIGTERM.

uvicorn's ``Server.shutdown`` closes the listening socket and then, in the same step of the event loop,
closes every connection that has no request *parsed* yet. A request whose bytes already sit in the kernel's
socket buffer, unread because the loop was busy, is dropped with a reset: the client wrote it before SIGTERM
and never hears back (``bench/sigterm_soak.py`` measured 11 such requests in 40 runs). The same happens to a
connection the kernel accepted before SIGTERM but the loop had not yet. This is uvicorn discussion #2315
(https://github.com/Kludex/uvicorn/discussions/2315; a fix proposed in PR #3124 was not merged), and it holds
for every HTTP protocol uvicorn has: see ``Server.shutdown`` and ``HttpToolsProtocol.shutdown`` /
``H11Protocol.shutdown`` in uvicorn 0.54.

:class:`GracefulServer` puts a short drain in front of uvicorn's own shutdown, the HTTP/1.1 way of leaving
(RFC 9112 §9.6; Go's ``http.Server.Shutdown`` and Armeria also answer ``Connection: close`` while stopping):

1. for three event-loop iterations the server still accepts and reads, so connections and requests that
   reached the kernel before SIGTERM get in; then it stops listening (new connections are refused, which a
   client may always retry elsewhere);
2. from then on every response says ``Connection: close``, so clients stop reusing their connection (told
   earlier, they would reconnect while the server still listens, and be reset when it stops);
3. it keeps reading until every connection has closed or :data:`DRAIN_SECONDS` have passed.

Then uvicorn's shutdown runs unchanged: it closes the connections that stayed idle and lets requests in
progress finish (up to its graceful timeout). In Kubernetes the preStop sleep has removed the pod from the
endpoints before SIGTERM, so by then the drain only meets requests already on their way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE

DRAIN_SECONDS = 0.5
"""How long the drain waits for open connections to close before uvicorn closes the idle ones."""

DRAIN_ACCEPT_ITERATIONS = 3
"""Event-loop iterations during which the server still accepts. A connection the kernel queued before
SIGTERM is accepted in the first and attached to its transport in the second; closing the listener before
that resets it (asyncio's ``Server._attach``); a third for margin. Kept short: any connection that arrives
in this window and is still queued when the listener closes is reset."""

DRAIN_MIN_PASSES = 10
"""Read passes the drain takes at least, however slow the loop (a request in a socket buffer needs one)."""

DRAIN_STEP_SECONDS = 0.01
"""One pass: the drain lasts at least ``DRAIN_MIN_PASSES * DRAIN_STEP_SECONDS`` (0.1 s)."""

logger = logging.getLogger("uvicorn.error")


class CloseWhenDraining:
    """ASGI middleware: once ``server.draining`` is set, every response starting says ``Connection: close``,
    and uvicorn closes the connection after sending it (a client then reconnects, elsewhere). Costs about
    1 µs per request (measured against an app that does nothing)."""

    def __init__(self, app: ASGIApp, server: GracefulServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.server.draining:
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class GracefulServer(uvicorn.Server):
    """``uvicorn.Server`` that drains before its shutdown (see the module docstring)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.draining = False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain, then uvicorn's own shutdown."""
        if not self.force_exit:
            logger.info("Draining: answering what has arrived, then closing idle connections")
            await self.drain()
        self.draining = True
        await super().shutdown(sockets)

    async def drain(self) -> None:
        """Accept for :data:`DRAIN_ACCEPT_ITERATIONS` iterations of the loop; stop listening and answer
        ``Connection: close``; read for at least :data:`DRAIN_MIN_PASSES` passes, and on until no connection
        is left or :data:`DRAIN_SECONDS` have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        for _ in range(DRAIN_ACCEPT_ITERATIONS):
            await asyncio.sleep(0)  # exactly one iteration: its select sees every socket ready by now
        for server in self.servers:
            server.close()
        self.draining = True
        passes = 0
        while not self.force_exit and (
            passes < DRAIN_MIN_PASSES or (self.server_state.connections and loop.time() < deadline)
        ):
            await asyncio.sleep(DRAIN_STEP_SECONDS)
            passes += 1


def build_server(config: uvicorn.Config) -> GracefulServer:
    """Load the app of ``config`` and wrap it so that it answers ``Connection: close`` while draining."""
    config.load()
    server = GracefulServer(config)
    config.loaded_app = CloseWhenDraining(config.loaded_app, server)
    return server


def serve(app: str, **kwargs: Any) -> None:
    """Like ``uvicorn.run(app, **kwargs)`` for one worker, with :class:`GracefulServer`."""
    server = build_server(uvicorn.Config(app, **kwargs))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: uvicorn re-raises it once it has stopped
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # uvicorn has logged why
