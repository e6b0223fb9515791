"""The prediction log: sampled JSON lines (who asked, which version, the validated inputs, the outputs).

It is an audit trail, and an audit trail must never take predictions down (issue 13): a full disk used to
turn every prediction into a 500 while ``/readyz`` said ready. So the request path only queues a record
(a lock and an append); a writer thread, woken at most every :data:`WRITE_SECONDS`, serialises and
writes what has gathered, and a write that fails is counted
(``modelberth_inference_prediction_log_dropped_total{reason}``), logged at most once per interval and shown
in ``/readyz``. A queue that a stalled disk lets grow is bounded, past which records are dropped and
counted the same way. Shutdown drains the queue.

The file holds model inputs: it is created 0600 (its directories 0700), an existing one is narrowed to
0600, and it rotates by size the way ``logging.handlers.RotatingFileHandler`` does (``path`` ->
``path.1`` ... ``path.N``). That handler is not used as such: it formats ``LogRecord``s, stats the file
on every record, opens rotated files with the umask's mode and reports errors by printing a traceback per
record. A lock file next to the log (``flock``) keeps a second process from rotating it under the first.
A path that cannot work (a directory, a path under a regular file, no permission, a read-only file system)
is a :class:`PredictionLogError` at startup, one line, instead of a traceback; a full disk at startup is not
a configuration error: the service starts, and the log retries.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import random
import stat
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter

from modelberth_inference.validation import Columns

log = logging.getLogger("modelberth.inference.prediction_log")

MAX_PENDING_ROWS: Final = 100_000
"""Rows queued for the writer at most; past that (a stalled disk) records are dropped and counted."""
WRITE_SECONDS: Final = 0.2
"""The writer wakes this long after the first record of a batch and writes every record queued by then in
one write, instead of waking (and taking the GIL from the event loop) for each record."""
WRITE_EARLY_ROWS: Final = MAX_PENDING_ROWS // 4
"""Queued rows that wake the writer before :data:`WRITE_SECONDS` are up (big batches)."""
FAILURE_LOG_SECONDS: Final = 60.0
"""A failing log is reported in the service log at most once per this many seconds."""
CLOSE_TIMEOUT_SECONDS: Final = 10.0
"""How long shutdown waits for the writer to drain the queue."""
TRANSIENT: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR})
"""Errors a disk has on a bad day (full, over quota, failing): never a reason not to start."""


class PredictionLogError(Exception):
    """The prediction log's path cannot work; the message is one line, fit for a startup error."""


class Sink(Protocol):
    """Where lines go: a rotating file or a stream."""

    def write_lines(self, lines: list[bytes]) -> int:
        """Append whole lines; return how many were written before an ``OSError`` (then raised)."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class PartialWrite(OSError):
    """A write failed after ``written`` of its lines were stored."""

    def __init__(self, cause: OSError, written: int) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.written = written


class StreamSink:
    """Lines to a binary stream (the container's stdout); no rotation."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write_lines(self, lines: list[bytes]) -> int:
        """Write and flush."""
        try:
            self.stream.write(b"".join(lines))
            self.stream.flush()
        except OSError as exc:
            raise PartialWrite(exc, 0) from exc
        return len(lines)

    def close(self) -> None:
        """Nothing to close: the stream is the process's."""


class RotatingFile:
    """Appends lines to a 0600 file, rotating it past ``max_bytes`` into ``backups`` numbered files.

    A failed write is cut back to the last whole line (``ftruncate``), so the file never ends in half a
    record that the next one would be glued to. A path that is a character device (``/dev/null``) is
    written without rotation or a lock.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.size = 0
        self._fd: int | None = None
        self._regular = True
        self._lock_fd: int | None = None
        self._open_at_start()

    # -- opening -------------------------------------------------------------------------------------

    def _open_at_start(self) -> None:
        where = f"prediction log {self.path}"
        self._make_directory(where)
        self._regular = stat.S_ISREG(self._kind(where))
        if self._regular:
            self._take_lock(where)
        try:
            self._open()
        except OSError as exc:
            if exc.errno in TRANSIENT:  # a full disk now is a bad day, not a bad path: start and retry
                log.error(
                    "prediction log cannot be opened yet; predictions continue without it",
                    extra={"error": errno.errorcode.get(exc.errno or 0, "OSError"), "detail": exc.strerror},
                )
                return
            self.close()
            if isinstance(exc, PermissionError):
                raise PredictionLogError(f"{where}: permission denied") from None
            raise PredictionLogError(f"{where}: cannot be opened ({exc.strerror})") from None

    def _make_directory(self, where: str) -> None:
        """The log's directory, created 0700 if missing (PredictionLogError when it cannot be)."""
        parent = self.path.parent
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not parent.is_dir():
                raise PredictionLogError(f"{where}: {parent} is not a directory")
        except (FileExistsError, NotADirectoryError):
            raise PredictionLogError(f"{where}: a part of its directory is a file, not a directory") from None
        except PermissionError:
            raise PredictionLogError(f"{where}: no permission to create its directory") from None
        except OSError as exc:
            raise PredictionLogError(f"{where}: cannot create its directory ({exc.strerror})") from None

    def _kind(self, where: str) -> int:
        """The path's file mode: a regular file (also when it does not exist yet) or a character device."""
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
        except OSError as exc:
            raise PredictionLogError(f"{where}: cannot inspect it ({exc.strerror})") from None
        if stat.S_ISDIR(mode):
            raise PredictionLogError(
                f"{where}: is a directory; give a file path, e.g. {self.path}/predictions.jsonl"
            )
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise PredictionLogError(f"{where}: is neither a regular file nor a character device")
        return mode

    def _take_lock(self, where: str) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno in TRANSIENT:
                return  # no lock on a full disk; the log itself will report failing writes
            raise PredictionLogError(f"{where}: cannot create its lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PredictionLogError(
                f"{where}: another process is writing it (give each process its own file)"
            ) from None
        self._lock_fd = fd

    def _lock_late(self) -> None:
        """Take the lock a full disk kept us from taking at startup (before the first write)."""
        where = f"prediction log {self.path}"
        try:
            self._take_lock(where)
        except PredictionLogError as exc:  # counted as a failed write; its text without the path
            raise OSError(errno.EBUSY, str(exc).removeprefix(where + ": ")) from None

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
                os.fchmod(fd, 0o600)  # a file left by an older version was 0644: it holds model inputs
        except OSError:
            os.close(fd)
            raise
        self.size = info.st_size if stat.S_ISREG(info.st_mode) else 0
        self._fd = fd

    # -- writing -------------------------------------------------------------------------------------

    def write_lines(self, lines: list[bytes]) -> int:
        """Append ``lines``, rotating before a line would take the file past ``max_bytes``."""
        written = 0
        try:
            if self._fd is None:
                if self._regular and self._lock_fd is None:
                    self._lock_late()
                self._open()
            rotate = self._regular and self.max_bytes > 0
            chunk: list[bytes] = []
            pending = 0
            for line in lines:
                if rotate and self.size + pending + len(line) > self.max_bytes and self.size + pending > 0:
                    if chunk:
                        self._append(b"".join(chunk))
                        written += len(chunk)
                        chunk, pending = [], 0
                    self._rotate()
                chunk.append(line)
                pending += len(line)
            if chunk:
                self._append(b"".join(chunk))
                written += len(chunk)
        except OSError as exc:
            raise PartialWrite(exc, written) from exc
        return written

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):  # a write to a nearly full disk can store only a part
                done += os.write(self._fd, view[done:])
        except OSError:
            if done and self._regular:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self.size)  # back to the last whole line
            raise
        self.size += done

    def _rotate(self) -> None:
        """``path.{N-1}`` -> ``path.N`` ... ``path`` -> ``path.1``, then a new empty ``path`` (0600)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        """Close the file and release the lock."""
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None


@dataclass(slots=True)
class _Entry:
    ts: float
    request_id: str | None
    model: str
    version: str
    sub: str | None
    client_id: str | None
    columns: Columns
    outputs: list[Any]
    latency_seconds: float


class PredictionLog:
    """Queues sampled records on the request path; a writer thread writes them to a :class:`Sink`."""

    def __init__(
        self,
        sink: Sink,
        *,
        sample_rate: float,
        redact: frozenset[str],
        registry: CollectorRegistry,
        failure_log_seconds: float = FAILURE_LOG_SECONDS,
        write_seconds: float = WRITE_SECONDS,
    ) -> None:
        self.sink = sink
        self.write_seconds = write_seconds
        self.sample_rate = sample_rate
        self.redact = redact
        self.failure_log_seconds = failure_log_seconds
        self.written = Counter(
            "modelberth_inference_prediction_log_written_total",
            "Records written to the prediction log.",
            registry=registry,
        )
        self.dropped = Counter(
            "modelberth_inference_prediction_log_dropped_total",
            "Records not written to the prediction log: write_error (disk full, I/O error) or queue_full "
            "(the writer fell behind); predictions were answered all the same.",
            ["reason"],
            registry=registry,
        )
        self._dropped_write = self.dropped.labels("write_error")
        self._dropped_queue = self.dropped.labels("queue_full")
        # The request path enters the lock itself, which costs less than entering the Condition around it.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._pending: deque[_Entry] = deque()
        self._pending_rows = 0
        self._submitted = 0
        self._done = 0
        self._closing = False
        self._flush_target = 0  # flush() waits for the records submitted before it: no gathering for them
        # What /readyz shows; written by the writer thread, read by requests (plain values: no lock needed).
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._unreported = 0
        self._last_report = -float("inf")
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # -- the request path ----------------------------------------------------------------------------

    def submit(
        self,
        *,
        request_id: str | None,
        model: str,
        version: str,
        sub: str | None,
        client_id: str | None,
        columns: Columns,
        outputs: list[Any],
        latency_seconds: float,
    ) -> None:
        """Queue one request's record, if it is sampled (sampling is not security-relevant)."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:  # noqa: S311
            return
        entry = _Entry(
            time.time(), request_id, model, version, sub, client_id, columns, outputs, latency_seconds
        )
        with self._lock:
            if self._pending_rows + columns.n > MAX_PENDING_ROWS:
                self._dropped_queue.inc()
                return
            pending = self._pending
            pending.append(entry)
            self._pending_rows += columns.n
            self._submitted += 1
            if len(pending) == 1 or self._pending_rows >= WRITE_EARLY_ROWS:
                self._cv.notify()

    def status(self) -> dict[str, Any]:
        """``{"status": "ok" | "failing", "last_error", "failing_since"}`` for /readyz (no path)."""
        failing_since = self._failing_since
        if failing_since is None:
            return {"status": "ok"}
        return {
            "status": "failing",
            "last_error": self._last_error,
            "failing_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(failing_since)),
        }

    # -- the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closing:
                    self._cv.wait()
                if not self._pending and self._closing:
                    return
                # Let the records of the next requests join this write; close, flush and a big queue
                # end the wait early.
                self._cv.wait_for(self._write_now, self.write_seconds)
                batch = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
            try:
                self._write(batch)
            except Exception:  # the writer must outlive any record; this one is counted as dropped
                log.exception("prediction log writer failed on a batch")
                self._dropped_write.inc(len(batch))
            with self._cv:
                self._done += len(batch)
                self._cv.notify_all()

    def _write_now(self) -> bool:
        return self._closing or self._pending_rows >= WRITE_EARLY_ROWS or self._flush_target > self._done

    def _write(self, batch: list[_Entry]) -> None:
        lines = [self._line(entry) for entry in batch]
        try:
            written = self.sink.write_lines(lines)
        except PartialWrite as exc:
            self.written.inc(exc.written)
            self._failed(exc, len(lines) - exc.written)
            return
        self.written.inc(written)
        if self._failing_since is not None:
            log.warning(
                "prediction log writes recovered",
                extra={"failing_seconds": round(time.time() - self._failing_since, 1)},
            )
            self._failing_since = None
            self._last_error = None
            self._unreported = 0

    def _failed(self, exc: OSError, lost: int) -> None:
        self._dropped_write.inc(lost)
        name = errno.errorcode.get(exc.errno or 0, "OSError")
        self._last_error = f"{name}: {exc.strerror}" if exc.strerror else name
        now = time.time()
        if self._failing_since is None:
            self._failing_since = now
        self._unreported += lost
        if time.monotonic() - self._last_report >= self.failure_log_seconds:
            self._last_report = time.monotonic()
            log.error(
                "prediction log write failed; predictions continue without it",
                extra={"error": self._last_error, "dropped_records": self._unreported},
            )
            self._unreported = 0

    def _line(self, entry: _Entry) -> bytes:
        inputs = entry.columns.rows()
        if self.redact:
            inputs = [
                {k: ("[redacted]" if k in self.redact else v) for k, v in row.items()} for row in inputs
            ]
        record = {
            "ts": entry.ts,
            "request_id": entry.request_id,
            "model": entry.model,
            "version": entry.version,
            "sub": entry.sub,
            "client_id": entry.client_id,
            "inputs": inputs,
            "outputs": entry.outputs,
            "latency_ms": round(entry.latency_seconds * 1e3, 3),
        }
        try:
            return orjson.dumps(record, default=str) + b"\n"
        except TypeError:  # a lone surrogate in a text value (valid JSON escape, not UTF-8): escape it
            return json.dumps(record, default=str, ensure_ascii=True).encode("ascii") + b"\n"

    # -- lifecycle -----------------------------------------------------------------------------------

    def flush(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> bool:
        """Wait until every record queued so far is written or dropped; False on timeout."""
        with self._cv:
            target = self._flush_target = self._submitted
            self._cv.notify_all()
            return self._cv.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Drain the queue (at most ``timeout`` seconds: a hung disk must not hang shutdown), then close."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("prediction log writer did not drain in time; its last records are lost")
            return
        self.sink.close()


def open_prediction_log(
    target: str,
    *,
    sample_rate: float,
    redact: frozenset[str],
    max_bytes: int,
    backups: int,
    registry: CollectorRegistry,
) -> PredictionLog:
    """The log ``target`` names: ``stdout`` or a file path (see the module docstring for the checks)."""
    sink: Sink
    if target == "stdout":
        sink = StreamSink(sys.stdout.buffer)
    else:
        sink = RotatingFile(Path(target), max_bytes, backups)
    return PredictionLog(sink, sample_rate=sample_rate, redact=redact, registry=registry)
