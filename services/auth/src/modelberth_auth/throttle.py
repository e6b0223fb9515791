"""Brute-force protection: failed logins counted per username and per client address in a sliding window.

In memory and per process: each auth replica counts on its own, and a restart forgets the counts
(documented in the service README). Behind a proxy set uvicorn's ``FORWARDED_ALLOW_IPS`` so the client
address is the caller's, not the proxy's.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class LoginThrottle:
    """After ``max_failures`` failures for one key within ``window_seconds``, that key is locked until the
    oldest of them leaves the window."""

    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until the most locked of ``keys`` unlocks, or None if none is locked."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is not None and len(times) >= self.max_failures:
                    unlock = times[len(times) - self.max_failures] + self.window_seconds
                    wait = max(wait, unlock - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def fail(self, *keys: str) -> None:
        """Record one failure for each key."""
        now = self.clock()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._prune(now)
            for key in keys:
                times = self._failures.setdefault(key, deque(maxlen=self.max_failures))
                times.append(now)

    def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (a successful login for that username)."""
        with self._lock:
            self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        if len(self._failures) >= self.max_keys:
            # Still full of live keys (a distributed attack): forget the oldest half rather than grow.
            by_age = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._failures[key]
