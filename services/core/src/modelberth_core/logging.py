"""Structured logs: one JSON object per line on stderr, with the request id when there is one.

Every line goes through one :class:`JsonLineHandler`. Records are written at once; the access log, one line
per request, takes a cheaper lane (:func:`log_request`): its line is built straight from its five values
(no ``LogRecord``), and lines wait in memory at most :data:`ACCESS_FLUSH_SECONDS` to be written together.
Building a record and writing plus flushing stderr for each request cost a single-row prediction about a
tenth of its throughput (issue 17). Any other line writes the waiting ones first, so the order holds, and
exit (``logging.shutdown``) writes what is left.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from typing import IO, Any, Final

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The current request's id, set by the request middleware and added to every log line."""

access_log = logging.getLogger("modelberth.access")
"""One line per request: method, route template, status and duration (see :func:`log_request`)."""

ACCESS_FLUSH_SECONDS: Final = 0.2
"""The longest an access-log line waits in memory before it is written."""
MAX_WAITING_LINES: Final = 256
"""Past this many waiting lines the request that adds one writes them all (memory stays bounded)."""

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line; ``extra={...}`` fields are kept, the rest of the record is not."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def _timestamp(self, created: float, msecs: int) -> str:
        second = int(created)
        cached, text = self._second
        if second != cached:  # strftime once a second, not once per access-log line
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{msecs:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created, int(record.msecs)),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            # orjson: the access log writes one line per request, and stdlib json is most of its cost
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # e.g. an int beyond 64 bits, which orjson refuses and json prints
            return json.dumps(entry, default=str, ensure_ascii=False)

    def request_line(self, method: str, route: str, status: int, seconds: float) -> str:
        """The access-log line :meth:`format` would write for ``access_log.info("request", extra=...)``."""
        now = time.time()
        entry: dict[str, Any] = {
            "ts": self._timestamp(now, int((now - int(now)) * 1000)),
            "level": "info",
            "service": self.service,
            "logger": access_log.name,
            "msg": "request",
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry["method"] = method
        entry["route"] = route
        entry["status"] = status
        entry["duration_ms"] = round(seconds * 1e3, 2)
        return orjson.dumps(entry).decode()


class JsonLineHandler(logging.Handler):
    """Writes JSON lines to a text stream: records at once, access-log lines gathered (module docstring).

    A daemon thread writes gathered lines :data:`ACCESS_FLUSH_SECONDS` after the first of them arrives; it
    sleeps while there are none. Lines that cannot be written (stderr closed) are dropped, as the stdlib
    handler would after printing its complaint, but the request that produced them never sees an error.
    """

    def __init__(
        self, stream: IO[str], formatter: JsonFormatter, flush_seconds: float = ACCESS_FLUSH_SECONDS
    ) -> None:
        super().__init__()
        self.stream = stream
        self.json_formatter = formatter
        self.setFormatter(formatter)
        self.flush_seconds = flush_seconds
        self._waiting: list[str] = []
        self._closed = False
        self._wake = threading.Condition(self.lock)  # the handler's RLock
        self._flusher = threading.Thread(target=self._run, name="log-flusher", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Write the waiting lines, then this record's (``handle`` holds the lock)."""
        try:
            line = self.format(record)
            self._waiting.append(line + "\n")
            self._write_waiting()
        except Exception:
            self.handleError(record)

    def add_line(self, line: str) -> None:
        """Queue one access-log line; written within ``flush_seconds``, or now if many are waiting."""
        with self.lock:  # type: ignore[union-attr]
            waiting = self._waiting
            waiting.append(line + "\n")
            if len(waiting) == 1:
                self._wake.notify()
            elif len(waiting) >= MAX_WAITING_LINES:
                self._write_quietly()

    def serves_alone(self, logger: logging.Logger) -> bool:
        """True when this handler is the only place ``logger``'s records go: no filter, level or other
        handler (a test's ``caplog``, say) would see a line it skips."""
        if self.filters or self.level > logging.INFO:
            return False
        current: logging.Logger | None = logger
        while current is not None:
            if current.filters:
                return False
            if current.handlers:
                return current.handlers == [self]
            if not current.propagate:
                return False
            current = current.parent
        return False

    def flush(self) -> None:
        """Write the waiting lines now."""
        with self.lock:  # type: ignore[union-attr]
            self._write_quietly()

    def close(self) -> None:
        """Write the waiting lines and stop the flusher thread."""
        with self.lock:  # type: ignore[union-attr]
            self._write_quietly()
            self._closed = True
            self._wake.notify()
        super().close()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._waiting or self._closed)
                if self._closed:
                    return
            time.sleep(self.flush_seconds)  # let the lines of the next requests join this write
            self.flush()

    def _write_waiting(self) -> None:
        text = "".join(self._waiting)
        self._waiting.clear()
        self.stream.write(text)
        self.stream.flush()

    def _write_quietly(self) -> None:
        # A closed or broken stderr: nothing else could report it either.
        if self._waiting:
            with contextlib.suppress(OSError, ValueError):
                self._write_waiting()


_handler: JsonLineHandler | None = None
"""The handler :func:`configure_logging` installed, which the access log's lane writes to."""


def log_request(method: str, route: str, status: int, seconds: float) -> None:
    """Write the access-log line of one request (``msg`` "request" plus these four values, in ms).

    Through the handler's lane when it alone receives the access log, as configured; through a normal
    record otherwise, so tests capturing logs and custom set-ups see the same line.
    """
    if not access_log.isEnabledFor(logging.INFO):
        return
    handler = _handler
    if handler is not None and handler.serves_alone(access_log):
        handler.add_line(handler.json_formatter.request_line(method, route, status, seconds))
        return
    extra = {"method": method, "route": route, "status": status, "duration_ms": round(seconds * 1e3, 2)}
    access_log.info("request", extra=extra)


def configure_logging(service: str, level: str = "info") -> None:
    """Send the root, uvicorn and service loggers to stderr as JSON; uvicorn's access log is off.

    Access logs are written by our middleware instead, which knows the route template and skips probes.
    """
    global _handler
    # The logging HOWTO's "Optimization" settings: these lines never show the thread, the process or the
    # caller's file and line, so records need not collect them (about a third of an access-log record's cost).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    if _handler is not None:
        _handler.close()  # configured again (tests): its flusher thread stops
    root = logging.getLogger()
    _handler = JsonLineHandler(sys.stderr, JsonFormatter(service))
    root.handlers[:] = [_handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
