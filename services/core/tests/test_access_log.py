"""The access log's lane (issue 17): the same line as a record, written within the flush interval, in order
with every other line, on exit, from many threads at once, and never an error for the request."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelberth_core import logging as core_logging
from modelberth_core.logging import (
    MAX_WAITING_LINES,
    JsonFormatter,
    JsonLineHandler,
    access_log,
    configure_logging,
    log_request,
    request_id_var,
)

ROUTE = "/v1/models/{name}:predict"


@contextlib.contextmanager
def installed() -> Iterator[tuple[JsonLineHandler, io.StringIO]]:
    """A handler alone on the root logger, as ``configure_logging`` leaves it, whose flusher waits a minute
    (so a test decides when lines are written); everything is put back afterwards. Entered in the test's
    body: pytest adds its own capturing handlers to the root around each test phase."""
    stream = io.StringIO()
    handler = JsonLineHandler(stream, JsonFormatter("demo"), flush_seconds=60.0)
    root = logging.getLogger()
    saved = root.handlers[:], root.level, core_logging._handler
    core_logging._handler = handler
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        assert handler.serves_alone(access_log), "the lane is taken"
        yield handler, stream
    finally:
        root.handlers[:], level, core_logging._handler = saved
        root.setLevel(level)
        handler.close()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text == "" or text.endswith("\n"), "only whole lines are written"
    return [json.loads(line) for line in text.splitlines()]


def test_the_lane_writes_the_line_a_record_would() -> None:
    with installed() as (handler, stream):
        token = request_id_var.set("rid-7")
        try:
            log_request("POST", ROUTE, 200, 0.012345)
            assert stream.getvalue() == "", "the line waits for the flusher"
            handler.flush()
            # A second handler on the root (a test's caplog, say) sends the line through a record instead.
            root = logging.getLogger()
            root.addHandler(logging.NullHandler())
            log_request("POST", ROUTE, 200, 0.012345)
        finally:
            request_id_var.reset(token)
        fast, record = _lines(stream)
        assert fast.pop("ts")[:10] == record.pop("ts")[:10]
        assert fast == record
        assert list(fast) == [
            "level",
            "service",
            "logger",
            "msg",
            "request_id",
            "method",
            "route",
            "status",
            "duration_ms",
        ]
        assert fast == {
            "level": "info",
            "service": "demo",
            "logger": "modelberth.access",
            "msg": "request",
            "request_id": "rid-7",
            "method": "POST",
            "route": ROUTE,
            "status": 200,
            "duration_ms": 12.35,
        }


def test_any_other_line_writes_the_waiting_ones_first() -> None:
    with installed() as (_, stream):
        log_request("GET", "/a", 200, 0.001)
        log_request("GET", "/b", 404, 0.001)
        logging.getLogger("modelberth.test").warning("after two requests")
        assert [line.get("route", line["msg"]) for line in _lines(stream)] == [
            "/a",
            "/b",
            "after two requests",
        ]


def test_lines_are_written_within_the_flush_interval() -> None:
    stream = io.StringIO()
    handler = JsonLineHandler(stream, JsonFormatter("demo"), flush_seconds=0.05)
    try:
        handler.add_line(handler.json_formatter.request_line("GET", "/a", 200, 0.001))
        deadline = time.monotonic() + 10
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [line["route"] for line in _lines(stream)] == ["/a"], "the flusher thread wrote it"
    finally:
        handler.close()


def test_waiting_lines_are_bounded() -> None:
    with installed() as (_, stream):
        for i in range(MAX_WAITING_LINES):
            log_request("GET", f"/{i}", 200, 0.001)
        assert len(_lines(stream)) == MAX_WAITING_LINES, "the request that filled the buffer wrote it"


def test_a_level_above_info_turns_the_access_log_off() -> None:
    with installed() as (handler, stream):
        logging.getLogger().setLevel(logging.WARNING)
        log_request("GET", "/a", 200, 0.001)
        handler.flush()
        assert stream.getvalue() == ""


def test_caplog_sees_access_lines_as_records(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=access_log.name):
        log_request("DELETE", "/x/{id}", 204, 0.5)
    (record,) = [r for r in caplog.records if r.name == access_log.name]
    assert record.getMessage() == "request"
    fields = {key: record.__dict__[key] for key in ("method", "route", "status", "duration_ms")}
    assert fields == {"method": "DELETE", "route": "/x/{id}", "status": 204, "duration_ms": 500.0}


class _BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(32, "Broken pipe")


def test_a_broken_stderr_never_fails_the_request() -> None:
    with installed() as (handler, _):
        handler.stream = _BrokenStream()
        for i in range(MAX_WAITING_LINES + 1):  # the inline write fails too
            log_request("GET", f"/{i}", 200, 0.001)
        handler.flush()
        handler.stream.close()
        log_request("GET", "/closed", 200, 0.001)
        handler.flush()  # a closed stream (ValueError) is dropped as quietly


def test_many_threads_write_whole_lines_and_lose_none() -> None:
    with installed() as (handler, stream):
        per_thread, threads = 500, 8

        def work(n: int) -> None:
            for i in range(per_thread):
                log_request("GET", f"/{n}/{i}", 200, 0.001)
                if i % 97 == 0:
                    logging.getLogger("modelberth.test").warning("thread %d at %d", n, i)

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        handler.flush()
        lines = _lines(stream)
        routes = [line["route"] for line in lines if "route" in line]
        assert sorted(routes) == sorted(f"/{n}/{i}" for n in range(threads) for i in range(per_thread))
        for n in range(threads):  # each thread's lines keep their order
            mine = [int(r.rsplit("/", 1)[1]) for r in routes if r.startswith(f"/{n}/")]
            assert mine == sorted(mine)


def test_lines_still_waiting_at_exit_are_written() -> None:
    code = (
        "from modelberth_core.logging import configure_logging, log_request\n"
        "configure_logging('demo')\n"
        "for i in range(3):\n"
        "    log_request('POST', f'/r{i}', 200, 0.002)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert [json.loads(line)["route"] for line in done.stderr.splitlines()] == ["/r0", "/r1", "/r2"]


def test_configuring_again_stops_the_previous_flusher(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(core_logging, "_handler", None)
    for name in ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    try:
        configure_logging("one")
        first = core_logging._handler
        assert first is not None
        configure_logging("two")
        first._flusher.join(5)
        assert not first._flusher.is_alive()
        assert root.handlers == [core_logging._handler]
    finally:
        if core_logging._handler is not None:
            core_logging._handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)


def test_a_forged_request_id_cannot_forge_fields_or_lines() -> None:
    forged = 'x","level":"error","msg":"admin logged in'  # printable, so the middleware keeps it
    with installed() as (handler, stream):
        token = request_id_var.set(forged)
        try:
            log_request("GET", "/a", 200, 0.001)
        finally:
            request_id_var.reset(token)
        handler.flush()
        (line,) = _lines(stream)
    assert line["request_id"] == forged
    assert (line["level"], line["msg"]) == ("info", "request")
