"""Adaptive micro-batching: concurrent requests for one model share one vectorised predict call.

sklearn's fixed per-call cost (input checks, DataFrame handling) is several times the per-row cost, so at
16 concurrent single-row requests one call for all of them is far cheaper than 16 calls. The batch forms
without a timer in the common case: requests whose bytes arrived together are validated in the same event
loop turn and queue up before the worker runs. The worker then keeps yielding one loop turn at a time while
more requests keep arriving, bounded by ``max_wait_seconds``, so a lone request is never delayed by more
than one loop turn.

The predict runs on the event loop thread: on one core a worker thread only adds GIL hand-offs, and a batch
is bounded by ``max_rows`` so the loop is never blocked for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelberth_inference.model import Prediction
from modelberth_inference.validation import Columns

log = logging.getLogger("modelberth.inference.batching")

RunBatch = Callable[[list[Columns]], list[Prediction]]


@dataclass(slots=True)
class _Pending:
    columns: Columns
    future: asyncio.Future[Prediction]


class MicroBatcher:
    """Queues validated requests and predicts them in batches of at most ``max_rows`` rows."""

    def __init__(self, run: RunBatch, *, max_wait_seconds: float, max_rows: int) -> None:
        self.run = run
        self.max_wait_seconds = max_wait_seconds
        self.max_rows = max_rows
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, columns: Columns) -> Prediction:
        """Predict ``columns`` as part of the next batch."""
        loop = asyncio.get_running_loop()
        pending = _Pending(columns, loop.create_future())
        self._queue.append(pending)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            deadline = loop.time() + self.max_wait_seconds
            while self._rows() < self.max_rows and loop.time() < deadline:
                seen = len(self._queue)
                await asyncio.sleep(0)  # one loop turn: requests already read off the sockets join
                if len(self._queue) == seen:
                    break
            batch = self._take()
            self._predict(batch)

    def _rows(self) -> int:
        return sum(p.columns.n for p in self._queue)

    def _take(self) -> list[_Pending]:
        taken, rows = 0, 0
        for pending in self._queue:
            if taken and rows + pending.columns.n > self.max_rows:
                break
            taken += 1
            rows += pending.columns.n
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _predict(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # a timed-out request needs no answer
        if not live:
            return
        try:
            results = self.run([p.columns for p in live])
        except Exception:
            if len(live) == 1:
                log.exception("prediction failed")
                live[0].future.set_exception(PredictionFailed())
                return
            # One bad request must not fail its batch-mates: predict each alone to find it.
            for pending in live:
                self._predict([pending])
            return
        for pending, result in zip(live, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)


class PredictionFailed(Exception):
    """The pipeline raised on these rows (the input passed validation, the model still refused it)."""
