"""The gate in front of the mounted Gradio app: only what the page uses, one error shape, own uploads only.

Gradio's HTTP API is wider than the page needs and answers bad input its own way: plain-text 500s for an
unknown ``fn_index``, ``api_name`` or component id, 422s that echo the input (issue 13, point 11), and it
opens whatever server path a client names as an uploaded file (point 1). The gate is one pure ASGI app
wrapped around the mounted Gradio app, so every request to it passes here first:

- Only the routes the browser calls are reachable (the page, its assets, the queue, uploads, file
  downloads); the rest (``/gradio_api/call/*``, ``run/*``, ``api/*``, ``info``, ``component_server``...)
  answer 404.
- A URL that is not valid UTF-8 is a 400; a ``queue/join`` body is checked before Gradio reads it: JSON,
  bounded in size and depth, the fields the browser sends with their exact types, an event handler that
  exists for that session, and file references that this browser uploaded (see
  :mod:`modelberth_ui.uploads`); a file named anywhere else is refused before Gradio copies it.
- Every error Gradio itself answers becomes ``{"detail": ...}`` JSON with the same status and a fixed
  message (never the input), and an exception inside Gradio is logged and answered with a JSON 500.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelberth_core.errors import validation_details
from modelberth_ui.uploads import BROWSER_COOKIE, UploadRegistry

log = logging.getLogger("modelberth.ui.gate")

ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
"""A session hash or an upload id as the browser makes them (random base-36 or hex strings)."""
MAX_EVENT_BYTES = 1024 * 1024
"""Largest ``queue/join`` body: the form's values, not files (files come through the upload route)."""
MAX_EVENT_DEPTH = 32
"""Deepest nesting of lists and objects in a ``queue/join`` body; Gradio walks values recursively."""
MAX_EVENT_INPUTS = 1000
"""Most input values one event may carry (one per component the handler reads)."""

EventExists = Callable[[str, int], bool]
"""``exists(session_hash, fn_index)``: is there such an event handler for that session?"""


@dataclass(frozen=True)
class Route:
    """A route of the Gradio app the page uses; ``path`` is its template (the metrics label)."""

    path: str
    pattern: re.Pattern[str]
    methods: frozenset[str]


def _route(path: str, pattern: str, *methods: str) -> Route:
    return Route(path, re.compile(pattern), frozenset(methods))


READ = ("GET", "HEAD")
ROUTES = (
    _route("/", r"/", *READ),
    # The page embeds this; Gradio's script asks for it when it has to reload it (and scripts use it to
    # find the event handlers, as k8s/tests/test_monitoring.py does).
    _route("/config", r"/config/?", "GET"),
    _route("/assets/{path:path}", r"/assets/.+", *READ),
    _route("/static/{path:path}", r"/static/.+", *READ),
    _route("/favicon.ico", r"/favicon\.ico", *READ),
    _route("/manifest.json", r"/manifest\.json", *READ),
    _route("/theme.css", r"/theme\.css", *READ),
    _route("/gradio_api/queue/join", r"/gradio_api/queue/join", "POST"),
    _route("/gradio_api/queue/data", r"/gradio_api/queue/data", "GET"),
    _route("/gradio_api/heartbeat/{session_hash}", rf"/gradio_api/heartbeat/{ID_PATTERN}", "GET"),
    _route("/gradio_api/upload", r"/gradio_api/upload", "POST"),
    _route("/gradio_api/upload_progress", r"/gradio_api/upload_progress", "GET"),
    _route("/gradio_api/file={path_or_url:path}", r"/gradio_api/file=.+", *READ),
)
"""Everything the page calls (recorded from the browser test); Gradio's other routes stay unreachable."""

QUERY_IDS = {
    "/gradio_api/queue/data": ("session_hash", True),
    "/gradio_api/upload_progress": ("upload_id", True),
    "/gradio_api/upload": ("upload_id", False),
}
"""Routes that take an id in the query string: its name and whether it is required."""
ERROR_MESSAGES = {
    400: "bad request",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    413: "the file is larger than the upload limit",
    415: "unsupported content type",
    422: "invalid request",
    500: "internal error",
    503: "the UI is busy: try again in a moment",
}
"""The fixed ``detail`` of an error Gradio answered; its own text may quote the input."""
KEPT_ERROR_HEADERS = frozenset({b"allow", b"retry-after", b"www-authenticate", b"x-request-id"})


class QueueJoin(BaseModel):
    """The body the page posts to ``/gradio_api/queue/join`` to run an event handler; nothing else."""

    model_config = ConfigDict(strict=True, extra="forbid")

    data: list[Any] = Field(max_length=MAX_EVENT_INPUTS)
    event_data: Any = None
    fn_index: int = Field(ge=0)
    trigger_id: int | None = None
    session_hash: str = Field(pattern=rf"^{ID_PATTERN}$")


class Refused(Exception):
    """A request the gate answers itself with ``{"detail": detail}``."""

    def __init__(self, status_code: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}


class GradioGate:
    """Pure ASGI app in front of the mounted Gradio app (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, uploads: UploadRegistry, event_exists: EventExists) -> None:
        self.app = app
        self.uploads = uploads
        self.event_exists = event_exists

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # the page uses none
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        try:
            route = self._match(scope)
            if route.path == "/gradio_api/queue/join":
                receive = await self._check_event(scope, receive)
        except Refused as exc:
            await _send_json(send, exc.status_code, exc.detail, exc.headers)
            return
        shaped = _ShapedErrors(send)
        inner_send: Send = shaped
        if route.path == "/gradio_api/upload":
            inner_send = self._recording_uploads(scope, shaped)
        try:
            await self.app(scope, receive, inner_send)
        except Exception as exc:
            if shaped.finished:  # gradio answered (a 500, reshaped above) and then raised
                log.error("the gradio app failed", exc_info=exc, extra={"route": route.path})
            elif shaped.started:
                # Gradio ends an event stream by raising, e.g. for a session it does not know (a tab left
                # open across a restart): close the stream properly instead of dropping the connection.
                if not _ends_a_stream(exc):
                    log.error("the gradio app failed", exc_info=exc, extra={"route": route.path})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                log.error("the gradio app failed", exc_info=exc, extra={"route": route.path})
                await _send_json(send, 500, ERROR_MESSAGES[500])

    # --- routing ----------------------------------------------------------------------------------

    def _match(self, scope: Scope) -> Route:
        """The allowed route for this request; :class:`Refused` when there is none or its URL is bad."""
        scope.pop("route", None)  # a refusal is counted as "unmatched" unless a route is named below
        try:
            unquote_to_bytes(scope.get("raw_path") or scope["path"].encode()).decode("utf-8")
            query = dict(
                parse_qsl(
                    scope.get("query_string", b"").decode("latin-1"),
                    keep_blank_values=True,
                    encoding="utf-8",
                    errors="strict",
                )
            )
        except UnicodeDecodeError:
            raise Refused(400, "the URL is not valid UTF-8") from None
        path = _route_path(scope)
        candidates = [route for route in ROUTES if route.pattern.fullmatch(path)]
        if not candidates:
            raise Refused(404, ERROR_MESSAGES[404])
        method = scope["method"]
        route = next((r for r in candidates if method in r.methods), None)
        if route is None:
            allowed = ", ".join(sorted(set().union(*(r.methods for r in candidates))))
            scope["route"] = candidates[0]
            raise Refused(405, ERROR_MESSAGES[405], {"allow": allowed})
        scope["route"] = route
        if route.path in ("/", "/config") and (query.get("page") or query.get("deep_link")):
            raise Refused(400, "this UI has one page and no deep links")
        expected = QUERY_IDS.get(route.path)
        if expected is not None:
            name, required = expected
            value = query.get(name)
            if (value is not None or required) and not re.fullmatch(ID_PATTERN, value or ""):
                raise Refused(422, _field_error(["query", name], f"{name} is missing or malformed"))
        return route

    # --- queue/join -------------------------------------------------------------------------------

    async def _check_event(self, scope: Scope, receive: Receive) -> Receive:
        """Check a ``queue/join`` body; return a ``receive`` that replays it to Gradio."""
        if _content_type(scope) != "application/json":
            raise Refused(415, "send the event as JSON (content-type: application/json)")
        body = await _read_body(scope, receive, MAX_EVENT_BYTES)
        try:
            payload = json.loads(body.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise Refused(400, "the body is not valid JSON (UTF-8, finite numbers)") from None
        problem = _value_problem(payload, MAX_EVENT_DEPTH)
        if problem:
            raise Refused(400, problem)
        try:
            event = QueueJoin.model_validate(payload)
        except ValidationError as exc:
            raise Refused(422, validation_details(exc.errors())) from None
        if not self.event_exists(event.session_hash, event.fn_index):
            raise Refused(422, _field_error(["body", "fn_index"], "no event handler has this index"))
        browser = _cookie(scope, BROWSER_COOKIE)
        for path in _file_paths([event.data, event.event_data]):
            if not self.uploads.owns(browser, path):
                raise Refused(403, "a file in this event was not uploaded from this browser: upload it again")
        return _replay(body, receive)

    # --- uploads ----------------------------------------------------------------------------------

    def _recording_uploads(self, scope: Scope, send: Send) -> Send:
        """A ``send`` that records the paths Gradio's upload route answers under this browser's id."""
        browser = _cookie(scope, BROWSER_COOKIE)
        new_cookie = None
        if not self.uploads.knows(browser):
            browser = self.uploads.new_browser()
            secure = "; Secure" if scope.get("scheme") == "https" else ""
            new_cookie = f"{BROWSER_COOKIE}={browser}; Path=/; HttpOnly; SameSite=Strict{secure}"
        assert browser is not None
        start: Message | None = None
        chunks: list[bytes] = []

        async def recording_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] != 200:
                    await send(message)
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            try:
                paths = json.loads(body)
            except ValueError:
                paths = []
            if isinstance(paths, list):
                self.uploads.record(browser, [p for p in paths if isinstance(p, str)])
            headers = list(start.get("headers", []))
            if new_cookie is not None:
                headers.append((b"set-cookie", new_cookie.encode("latin-1")))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return recording_send


class _ShapedErrors:
    """A ``send`` that passes answers through but turns an error (status >= 400) into our JSON shape."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._error: Message | None = None
        self.started = False
        """The response head went out."""
        self.finished = False
        """The whole response went out."""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] >= 400:
                self._error = message
                return
            self.started = True
        elif message["type"] == "http.response.body":
            if self._error is not None:
                if not message.get("more_body", False) and not self.finished:
                    status = self._error["status"]
                    kept = {
                        k.decode("latin-1"): v.decode("latin-1")
                        for k, v in self._error.get("headers", [])
                        if k.lower() in KEPT_ERROR_HEADERS
                    }
                    await _send_json(self._send, status, _message(status), kept)
                    self.started = self.finished = True
                return
            self.finished = not message.get("more_body", False)
        await self._send(message)


def _ends_a_stream(exc: BaseException) -> bool:
    """An HTTPException raised inside a started response (Starlette wraps it in a RuntimeError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StarletteHTTPException):
            return True
        seen = seen.__cause__
    return False


def _field_error(loc: list[str], msg: str) -> list[dict[str, Any]]:
    """A validation ``detail`` in the shape core's handler gives FastAPI's (location and reason)."""
    return [{"loc": loc, "msg": msg, "type": "value_error"}]


def _message(status: int) -> str:
    if status in ERROR_MESSAGES:
        return ERROR_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "request failed"


async def _send_json(send: Send, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _route_path(scope: Scope) -> str:
    """The path inside the mounted app (Starlette keeps the full path and moves the prefix to root_path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _content_type(scope: Scope) -> str:
    return (_header(scope, b"content-type") or "").split(";")[0].strip().lower()


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # http.cookies raises CookieError and others on junk; a bad cookie is no cookie
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = _header(scope, b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, f"the event is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "the request ended before its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the event is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the client's own ``receive`` (which reports its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400: JSON allows the digits, no one can compute with the value
        raise ValueError("number out of range")
    return number


def _value_problem(value: Any, max_depth: int) -> str | None:
    """Why a decoded body cannot go on (too deep, a lone surrogate from a ``\\ud800`` escape), or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "the body holds text that is not valid Unicode"
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return f"the body is nested deeper than {max_depth} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _file_paths(values: list[Any]) -> Iterator[str]:
    """Every ``path`` string in an object, however it is tagged: Gradio treats such objects as files."""
    stack = list(values)
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str):
                yield path
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
