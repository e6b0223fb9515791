"""Small, safe file writes for state the CLI and the service share: atomic, private, serialised."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

log = logging.getLogger("modelberth.auth.files")

T = TypeVar("T")

PRIVATE_MODE = 0o600
"""Keys, password hashes and refresh-token hashes are readable by their owner only."""


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_MODE) -> None:
    """Write ``data`` to a temp file in the same folder, fsync, chmod and rename it over ``path``.

    Readers (the running service) see the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def create_exclusive(path: Path, data: bytes, mode: int = PRIVATE_MODE) -> bool:
    """Create ``path`` with ``data`` only if it does not exist yet; False when it already did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    atomic_write(tmp, data, mode)
    try:
        os.link(tmp, path)  # fails if path exists: never overwrite an existing file
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` so concurrent read-modify-writes do not lose updates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class RecheckGate:
    """Lets a reader look at its file again at most once per ``interval_seconds``, one thread at a time.

    ``with gate.due() as due:``: ``due`` is True for the one caller that should look now, and the lock is
    held for the whole block, so two threads never reload the same file at once. Every other caller gets
    False at once, without taking the lock (the check sits on the token endpoint's path).
    """

    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._checked = float("-inf")
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def due(self) -> Iterator[bool]:
        """True when the interval has passed since the last look (which this caller now is)."""
        now = time.monotonic()
        if now - self._checked < self.interval_seconds:
            yield False
            return
        with self._lock:
            if now - self._checked < self.interval_seconds:  # another thread looked while we waited
                yield False
                return
            self._checked = now
            yield True


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What identifies one version of a file: inode, size and modification time."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        """The stamp of ``path`` now, or None if it does not exist."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


_UNSEEN: Final = FileStamp(-1, -1, -1)
"""The stamp of a file never looked at: differs from every real stamp and from None (absent)."""


class WatchedFile(Generic[T]):
    """A file the service reads once and again whenever its stamp (inode, size, mtime) changes, looking at
    most once per ``interval_seconds``: ``modelberth keys|users|clients`` take effect without a restart.

    ``read(path)`` parses the file into a value, or raises ``unusable`` (for an absent file too, unless an
    absent file means something, such as "no users"). A changed file that cannot be used is logged once and
    skipped: the last good value stays until the file changes again.
    """

    def __init__(
        self,
        path: Path,
        read: Callable[[Path], T],
        *,
        unusable: type[Exception],
        what: str,
        interval_seconds: float = 1.0,
    ) -> None:
        self.path = path
        self.what = what
        """What the file is, for log lines (``keyset file``)."""
        self._read = read
        self._unusable = unusable
        self._value: T | None = None
        self._stamp: FileStamp | None = _UNSEEN
        self._recheck = RecheckGate(interval_seconds)

    @property
    def value(self) -> T | None:
        """The value last read (None before the first good read), without looking at the file."""
        return self._value

    def load(self) -> T:
        """Read the file now; raise ``unusable`` if it cannot be used (the last good value then stays)."""
        stamp = FileStamp.of(self.path)
        value = self._read(self.path)
        self._value, self._stamp = value, stamp
        return value

    def current(self) -> T | None:
        """The value, read again first if the file changed since the last look (at most once per interval)."""
        with self._recheck.due() as due:
            if due:
                self._reload_if_changed()
        return self._value

    def _reload_if_changed(self) -> None:
        stamp = FileStamp.of(self.path)
        if stamp == self._stamp:
            return
        try:
            self.load()
        except self._unusable as exc:
            log.warning(
                f"{self.what} changed but is unusable; keeping the last good one", extra={"error": str(exc)}
            )
            self._stamp = stamp  # said once: not read again until it changes again
