"""A request body size limit (pure ASGI): bigger bodies get 413 before any parsing."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelberth_auth.errors import NO_STORE, OAUTH_PREFIX


class BodyLimitMiddleware:
    """Buffer the body up to ``max_bytes`` (auth bodies are small) and refuse anything larger with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(scope, send, 400, "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    await self._refuse(scope, send, 413, "request body too large")
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, send, 413, "request body too large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, text: str) -> None:
        oauth = str(scope.get("path", "")).startswith(OAUTH_PREFIX)
        payload = {"error": "invalid_request", "error_description": text} if oauth else {"detail": text}
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        if oauth:
            headers += [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()]
        body = orjson.dumps(payload)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
