"""Shadow traffic: the challenger scores what the champion answered, off the request path (issue 14).

The served version's batch runner hands every predicted micro-batch (its validated columns and the
champion's outputs) to :meth:`ShadowScorer.offer`, which only appends it to a bounded queue: the requests in
that batch are answered at once. A worker task on the event loop then predicts the queued batches with the
challenger, one per loop turn, and compares the two. The challenger's work thus interleaves with request
handling like another micro-batch and never delays an answer; a batch that does not fit the queue is dropped
and counted. Working per micro-batch rather than per request keeps the cost to one vectorised call per batch.

Agreement: a classifier's row agrees when both models give the same label; a regression row when the
challenger lies within ``tolerance`` of the champion's value, relative to it. Rows whose champion output was
not finite were never answered and are not compared; a challenger's non-finite output disagrees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.model import LoadedModel, Prediction

log = logging.getLogger("modelberth.inference.shadow")

FAILURE_LOG_SECONDS = 60.0
"""A failing challenger is logged at most this often (each failure is counted)."""


@dataclass(slots=True)
class _Batch:
    data: dict[str, npt.NDArray[Any]]
    champion: Prediction
    requests: int
    rows: int


def incompatibility(champion: LoadedModel, challenger: LoadedModel) -> str | None:
    """Why the challenger cannot score the champion's requests (None when it can).

    The champion's requests carry the champion's features, validated against its card: the challenger must
    need no other feature, read each as the same kind (number or text), and solve the same task.
    """
    if champion.card.task != challenger.card.task:
        return f"the challenger is a {challenger.card.task} model, the champion a {champion.card.task} model"
    kinds = {f.name: f.type == "numeric" for f in champion.card.features}
    missing = [f.name for f in challenger.card.features if f.name not in kinds]
    if missing:
        return "the challenger needs features the champion's requests do not carry: " + ", ".join(missing)
    differing = [f.name for f in challenger.card.features if kinds[f.name] != (f.type == "numeric")]
    if differing:
        return "the challenger reads these features as another type: " + ", ".join(differing)
    return None


def agreement(
    champion: Prediction, challenger: Prediction, *, regression: bool, tolerance: float
) -> tuple[int, int]:
    """(compared rows, agreeing rows) of two models' outputs for the same rows."""
    n = len(champion.predictions)
    if regression:
        ours = np.asarray(champion.predictions, dtype=np.float64)
        theirs = np.asarray(challenger.predictions, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            agree = np.abs(theirs - ours) <= tolerance * np.abs(ours)  # NaN compares False
    else:
        agree = np.asarray(champion.predictions, dtype=object) == np.asarray(
            challenger.predictions, dtype=object
        )
    if challenger.invalid_rows is not None:
        agree[challenger.invalid_rows] = False
    if champion.invalid_rows is None:
        return n, int(np.count_nonzero(agree))
    answered = np.ones(n, dtype=bool)
    answered[champion.invalid_rows] = False
    return int(np.count_nonzero(answered)), int(np.count_nonzero(agree & answered))


class ShadowScorer:
    """Scores one champion's traffic with one challenger; counts and compares (see the module docstring)."""

    def __init__(
        self,
        champion: LoadedModel,
        challenger: LoadedModel,
        metrics: InferenceMetrics,
        *,
        max_rows: int,
        tolerance: float,
    ) -> None:
        self.champion = champion
        self.challenger = challenger
        self.max_rows = max_rows
        self.tolerance = tolerance
        self.regression = champion.card.task == "regression"
        self.incompatible = incompatibility(champion, challenger)
        self._names = list(challenger.validator.names)
        self._queue: deque[_Batch] = deque()
        self._queued_rows = 0
        self._worker: asyncio.Task[None] | None = None
        self._last_failure_log = -FAILURE_LOG_SECONDS
        name = champion.name
        # Created now, so each series starts at 0 and a rate() sees the first batches too.
        self._scored = metrics.shadow_requests.labels(name, "scored")
        self._dropped = metrics.shadow_requests.labels(name, "dropped")
        self._failed = metrics.shadow_requests.labels(name, "failed")
        self._compared = metrics.shadow_compared_rows.labels(name)
        self._agreeing = metrics.shadow_agreeing_rows.labels(name)
        self._latency = metrics.predict_duration.labels(name, challenger.version, "shadow")
        self.requests = {"scored": 0, "dropped": 0, "failed": 0}
        self.compared_rows = 0
        self.agreeing_rows = 0
        if self.incompatible:
            log.warning(
                "shadow traffic off: the challenger cannot score the champion's requests",
                extra={
                    "model": name,
                    "champion": champion.version,
                    "challenger": challenger.version,
                    "reason": self.incompatible,
                },
            )

    def offer(self, data: dict[str, npt.NDArray[Any]], champion: Prediction, requests: int) -> None:
        """Queue a batch the champion answered (``requests`` requests); drop it when the queue is full."""
        if self.incompatible is not None:
            self._fail(requests)
            return
        rows = len(champion.predictions)
        if self._queued_rows + rows > self.max_rows:
            self._dropped.inc(requests)
            self.requests["dropped"] += requests
            return
        self._queue.append(_Batch(data, champion, requests, rows))
        self._queued_rows += rows
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            # Yield first: the batch's requests (woken when the champion's results are set, after this
            # task was created) send their answers before the challenger takes the loop.
            await asyncio.sleep(0)
            batch = self._queue.popleft()
            self._queued_rows -= batch.rows
            self._score(batch)

    def _score(self, batch: _Batch) -> None:
        columns = {name: batch.data[name] for name in self._names}
        start = time.perf_counter()
        try:
            result = self.challenger.predict(columns)
        except Exception as exc:  # a pickle's pipeline can raise anything; the champion answered regardless
            self._fail(batch.requests, exc)
            return
        self._latency.observe(time.perf_counter() - start)
        compared, agreeing = agreement(
            batch.champion, result, regression=self.regression, tolerance=self.tolerance
        )
        self._scored.inc(batch.requests)
        self._compared.inc(compared)
        self._agreeing.inc(agreeing)
        self.requests["scored"] += batch.requests
        self.compared_rows += compared
        self.agreeing_rows += agreeing

    def _fail(self, requests: int, exc: Exception | None = None) -> None:
        self._failed.inc(requests)
        self.requests["failed"] += requests
        now = time.monotonic()
        if exc is not None and now - self._last_failure_log >= FAILURE_LOG_SECONDS:
            self._last_failure_log = now
            log.warning(
                "the challenger failed to score shadow traffic (counted; logged at most once a minute)",
                extra={
                    "model": self.champion.name,
                    "challenger": self.challenger.version,
                    "error": type(exc).__name__,
                },
            )

    @property
    def pending_rows(self) -> int:
        """Rows queued for the challenger now."""
        return self._queued_rows

    def stats(self) -> dict[str, Any]:
        """What this champion/challenger pair has done so far, for ``GET /v1/models/{name}/versions``."""
        return {
            "champion": self.champion.version,
            "challenger": self.challenger.version,
            "status": "incompatible" if self.incompatible else "active",
            "reason": self.incompatible,
            "requests": dict(self.requests),
            "compared_rows": self.compared_rows,
            "agreeing_rows": self.agreeing_rows,
            "agreement": round(self.agreeing_rows / self.compared_rows, 6) if self.compared_rows else None,
        }
