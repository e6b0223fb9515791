"""Which uploaded files each browser may use: the record behind "only files you uploaded can be opened".

Gradio hands an uploaded file's server path to the browser, and the browser sends that path back when it
calls an event handler. Nothing stops a client from sending any other path instead (issue 13, point 1), and
Gradio's own "was it uploaded?" check is off when the app is mounted rather than launched. So the gate
(:mod:`modelberth_ui.gate`) records every path Gradio's upload route returns under the uploading browser's
id, an unguessable value kept in an HttpOnly cookie, and lets an event carry only paths recorded for the
same browser.

The record lives in this process, as do the files: Gradio keeps uploads on the pod's local disk, so a
browser's upload and the event that uses it must reach the same replica anyway.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

BROWSER_COOKIE = "modelberth_ui_browser"
"""The cookie holding the browser id: HttpOnly, SameSite=Strict, set by the upload response."""


class UploadRegistry:
    """Upload paths by browser id, each forgotten after ``max_age_seconds`` (when Gradio deletes the file).

    Bounded: at most ``max_browsers`` ids (the least recently active are dropped first) and
    ``max_files_per_browser`` paths per id (the oldest first). A dropped upload just has to be sent again.
    """

    def __init__(
        self,
        max_age_seconds: float,
        *,
        max_browsers: int = 10_000,
        max_files_per_browser: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age_seconds
        self._max_browsers = max_browsers
        self._max_files = max_files_per_browser
        self._clock = clock
        self._lock = threading.Lock()
        self._browsers: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
        self._seen: dict[str, float] = {}

    def new_browser(self) -> str:
        """A fresh browser id (256 random bits), known from now on."""
        browser = secrets.token_urlsafe(32)
        with self._lock:
            self._prune()
            self._browsers[browser] = OrderedDict()
            self._seen[browser] = self._clock()
            while len(self._browsers) > self._max_browsers:
                oldest, _ = self._browsers.popitem(last=False)
                self._seen.pop(oldest, None)
        return browser

    def knows(self, browser: str | None) -> bool:
        """True for an id this registry issued and has not forgotten."""
        if not browser:
            return False
        with self._lock:
            self._prune()
            return browser in self._browsers

    def record(self, browser: str, paths: Iterable[str]) -> None:
        """Remember that ``browser`` uploaded ``paths`` (an unknown id records nothing)."""
        now = self._clock()
        with self._lock:
            files = self._browsers.get(browser)
            if files is None:
                return
            for path in paths:
                files.pop(path, None)
                files[path] = now
            while len(files) > self._max_files:
                files.popitem(last=False)
            self._browsers.move_to_end(browser)
            self._seen[browser] = now

    def owns(self, browser: str | None, path: str) -> bool:
        """True when ``browser`` uploaded exactly ``path`` and the upload is not older than the max age."""
        if not browser:
            return False
        with self._lock:
            files = self._browsers.get(browser)
            recorded = files.get(path) if files is not None else None
            return recorded is not None and self._clock() - recorded <= self._max_age

    def _prune(self) -> None:
        """Forget ids inactive for longer than the max age (their files are gone by then)."""
        cutoff = self._clock() - self._max_age
        while self._browsers:
            oldest = next(iter(self._browsers))
            if self._seen.get(oldest, 0.0) >= cutoff:
                break
            del self._browsers[oldest]
            self._seen.pop(oldest, None)
