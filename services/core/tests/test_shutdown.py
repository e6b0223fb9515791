"""SIGTERM loses nothing: a request that reached the server before shutdown began is answered.

The race (the integration tests here), made deterministic: the server's main loop is replaced by an event
the test sets right after writing a request, without yielding, so the shutdown runs before the event loop
has read those bytes, exactly as when SIGTERM lands while the loop is busy. Real uvicorn, real sockets,
in-process.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import cast

import h11
import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from modelberth_core import shutdown

Scenario = Callable[[int, asyncio.Event], Awaitable[None]]
HTTP_PROTOCOLS = ["httptools", "h11"]
"""uvicorn's HTTP/1.1 implementations installed here; ``modelberth serve`` uses httptools ("auto")."""


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every request with 200 and the length of its body."""
    assert scope["type"] == "http"
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Client:
    """A blocking HTTP/1.1 client on one keep-alive connection (h11 keeps the protocol honest)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h11.Connection(our_role=h11.CLIENT)

    def write(self, body: bytes = b"x" * 100) -> None:
        """Send one whole request; it is in the server's socket buffer when this returns."""
        headers = [("host", "test"), ("content-length", str(len(body)))]
        data = self.conn.send(h11.Request(method="POST", target="/", headers=headers))
        self.sock.sendall(data + self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage()))

    def read(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The answer: status, headers, body (raises ConnectionError if the server closed instead)."""
        status, headers, body = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(65536)
                if not data and self.conn.their_state is h11.SEND_RESPONSE:
                    raise ConnectionResetError("closed without an answer")
                self.conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return status, headers, body

    def close(self) -> None:
        self.sock.close()


def run_server(port: int, scenario: Scenario, http: str = "auto") -> None:
    """Serve ``echo_app`` on ``port`` until ``scenario`` sets its event, then let the shutdown finish."""
    config = uvicorn.Config(
        echo_app,
        host="127.0.0.1",
        port=port,
        http=http,
        lifespan="off",
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    server = shutdown.build_server(config)
    stop = asyncio.Event()

    async def main_loop() -> None:
        await stop.wait()

    server.main_loop = main_loop  # type: ignore[method-assign]

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        await scenario(port, stop)
        await asyncio.wait_for(serving, 30)

    asyncio.run(run())


Answer = tuple[int, dict[bytes, bytes], bytes]


@pytest.mark.integration
@pytest.mark.parametrize("http", HTTP_PROTOCOLS)
def test_a_request_waiting_on_an_idle_keep_alive_connection_is_answered(
    port_factory: Callable[[], int], http: str
) -> None:
    answers: list[Answer] = []
    after: list[bytes] = []

    async def scenario(port: int, stop: asyncio.Event) -> None:
        client = Client(port)
        try:
            client.write()
            answers.append(await asyncio.to_thread(client.read))  # the connection is idle again
            client.write(b"y" * 7)
            stop.set()  # shutdown starts before the loop reads the request
            answers.append(await asyncio.to_thread(client.read))
            after.append(await asyncio.to_thread(client.sock.recv, 1))
        finally:
            client.close()

    run_server(port_factory(), scenario, http)
    assert [(status, body) for status, _, body in answers] == [(200, b"100"), (200, b"7")]
    assert after == [b""]  # then the server closed the connection, cleanly


@pytest.mark.integration
@pytest.mark.parametrize("http", HTTP_PROTOCOLS)
def test_a_request_on_a_connection_the_loop_has_not_accepted_yet_is_answered(
    port_factory: Callable[[], int], http: str
) -> None:
    answers: list[Answer] = []

    async def scenario(port: int, stop: asyncio.Event) -> None:
        clients = [Client(port) for _ in range(5)]  # the kernel accepts them; the loop has not run yet
        try:
            for client in clients:
                client.write(b"z" * 3)
            stop.set()
            for client in clients:
                answers.append(await asyncio.to_thread(client.read))
        finally:
            for client in clients:
                client.close()

    run_server(port_factory(), scenario, http)
    assert [(status, body) for status, _, body in answers] == [(200, b"3")] * 5


@pytest.mark.integration
def test_while_draining_answers_say_close_new_connections_are_refused_idle_ones_closed(
    port_factory: Callable[[], int],
) -> None:
    seen: dict[str, object] = {}

    async def scenario(port: int, stop: asyncio.Event) -> None:
        active, idle = Client(port), Client(port)
        try:
            for client in (active, idle):
                client.write()
                await asyncio.to_thread(client.read)
            loop = asyncio.get_running_loop()
            stop.set()
            started = loop.time()
            await asyncio.sleep(0.05)  # past the accept window, inside the drain
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                seen["new connection"] = "refused"
            active.write(b"a" * 2)
            seen["active"] = await asyncio.to_thread(active.read)
            seen["active then"] = await asyncio.to_thread(active.sock.recv, 1)
            seen["idle then"] = await asyncio.to_thread(idle.sock.recv, 1)
            seen["idle held seconds"] = loop.time() - started
        finally:
            active.close()
            idle.close()

    run_server(port_factory(), scenario)
    assert seen["new connection"] == "refused"
    status, headers, body = cast(Answer, seen["active"])
    assert (status, body, headers[b"connection"]) == (200, b"2", b"close")
    assert seen["active then"] == b""
    # A client that sends nothing keeps its connection for the drain, and no longer (not its keep-alive).
    assert seen["idle then"] == b""
    assert shutdown.DRAIN_SECONDS <= cast(float, seen["idle held seconds"]) < shutdown.DRAIN_SECONDS + 2


def test_the_middleware_adds_connection_close_only_while_draining_and_only_to_http() -> None:
    class Server:
        draining = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    def run(scope_type: str) -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        middleware = shutdown.CloseWhenDraining(app, Server())  # type: ignore[arg-type]
        asyncio.run(middleware({"type": scope_type}, receive, send))
        return sent

    normal = run("http")
    assert normal[0]["headers"] == [(b"x-a", b"1")]
    Server.draining = True
    draining = run("http")
    assert draining[0]["headers"] == [(b"x-a", b"1"), (b"connection", b"close")]
    assert draining[0]["status"] == 201
    assert draining[1] == normal[1] == {"type": "http.response.body", "body": b"ok"}
    assert run("websocket")[0]["headers"] == [(b"x-a", b"1")]  # other scopes pass through untouched
