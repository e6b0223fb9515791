"""The set of models being served: initial load, polling of the aliases followed, reloads and atomic swaps.

Each model serves what its reference names in the store: its ``champion`` by default, or the alias or
version ``INFERENCE_MODELS`` gives. A moved alias is picked up at the next poll.

A request looks its model up once and keeps that object until it has answered, so swapping the dict entry
is the whole hot-reload protocol: new requests see the new version, in-flight ones finish on the old one,
and a version that fails any check never replaces the one serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from modelberth_core.store import CHAMPION, Reference, StoreError, open_store
from modelberth_inference.batching import MicroBatcher
from modelberth_inference.model import LoadedModel, LoadError, Prediction, columns_from, load_model
from modelberth_inference.monitoring import DriftTracker, InferenceMetrics
from modelberth_inference.settings import Settings
from modelberth_inference.validation import Columns

log = logging.getLogger("modelberth.inference.registry")


@dataclass(slots=True)
class Served:
    """A loaded version with its micro-batcher and drift window."""

    model: LoadedModel
    batcher: MicroBatcher
    drift: DriftTracker


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """The last version of a model that failed to load: why, for /readyz (no path) and for the log."""

    version: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    """What a (re)load did."""

    status: Literal["loaded", "unchanged", "failed", "missing"]
    version: str | None = None
    previous: str | None = None
    error: str | None = None


class _BatchRunner:
    """Predicts one batch for one version and records the per-batch metrics (vectorised)."""

    def __init__(self, model: LoadedModel, metrics: InferenceMetrics, drift: DriftTracker) -> None:
        self.model = model
        self.metrics = metrics
        self.drift = drift
        self._counters: dict[str, Any] = {}  # label children, created on first use (absent until then)

    def _count(self, label: str, amount: int) -> None:
        counter = self._counters.get(label)
        if counter is None:
            counter = self._counters[label] = self.metrics.predictions.labels(
                self.model.name, self.model.version, label
            )
        counter.inc(amount)

    def __call__(self, items: list[Columns]) -> list[Prediction]:
        model = self.model
        data = columns_from(model, items)
        result = model.predict(data)
        total = sum(c.n for c in items)
        self.metrics.batch_size.observe(total)
        self._observe(result, data, total)
        if len(items) == 1:
            return [result]
        out: list[Prediction] = []
        start = 0
        for item in items:
            end = start + item.n
            out.append(
                Prediction(
                    result.predictions[start:end],
                    None if result.proba is None else result.proba[start:end],
                    None if result.label_index is None else result.label_index[start:end],
                    _rows_within(result.invalid_rows, start, end),
                )
            )
            start = end
        return out

    def _observe(self, result: Prediction, data: dict[str, npt.NDArray[Any]], total: int) -> None:
        """Class counts, confidence and drift of the rows that were predicted (not the refused ones)."""
        model = self.model
        label_index, proba = result.label_index, result.proba
        if result.invalid_rows is not None:  # rare: mask the refused rows out of every metric
            keep = np.ones(total, dtype=bool)
            keep[result.invalid_rows] = False
            data = {name: column[keep] for name, column in data.items()}
            total = int(keep.sum())
            label_index = None if label_index is None else label_index[keep]
            proba = None if proba is None else proba[keep]
        if label_index is not None:
            counts = np.bincount(label_index, minlength=len(model.classes)).tolist()
            for label, count in zip(model.classes, counts, strict=False):
                if count:
                    self._count(label, count)
            if proba is not None:
                chosen = proba[np.arange(total), label_index]
                self.metrics.confidence.observe_many((model.name,), chosen)
        elif total:
            self._count("", total)
        if total:
            self.drift.update(data, total)


def _rows_within(rows: npt.NDArray[np.intp] | None, start: int, end: int) -> npt.NDArray[np.intp] | None:
    """The rows of ``rows`` in [start, end), renumbered from 0 (None when there are none)."""
    if rows is None:
        return None
    inside = rows[(rows >= start) & (rows < end)]
    return inside - start if len(inside) else None


class ModelRegistry:
    """Loads, polls and swaps the served models."""

    def __init__(self, settings: Settings, metrics: InferenceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, Served] = {}
        self.failures: dict[str, LoadFailure] = {}
        self._retired: dict[str, str] = {}  # model -> the version served before the current one
        self.unresolved: dict[str, str] = {}
        """Configured models whose reference names nothing now, and why."""
        self.scanned = False
        self._locks: dict[str, asyncio.Lock] = {}
        self.store = open_store(settings.store_location(), cache_dir=settings.cache_dir or None)
        self._scan: tuple[list[str], list[str]] = ([], [])
        """The last scan: (models in the store, those with something to serve). Probes and 404s read this,
        never the store itself: a registry store answers over the network, and may be away."""
        self._digests: dict[tuple[str, str], str] = {}
        """(model, version) -> manifest digest, where the store has digests (a registry)."""
        self.scan_error: str | None = None
        """Why the last listing of the store failed (a registry away, no catalog API), or None."""

    def get(self, name: str) -> Served | None:
        """The served version of ``name``, if any."""
        return self.models.get(name)

    def configured(self) -> list[str]:
        """Model names to serve: the configured references, else every model in the store that had a
        champion at the last scan (a model published later is picked up by the next poll or a reload)."""
        references = self.settings.references()
        if references:
            return sorted(references)
        return list(self._scan[1])

    def scan(self) -> None:
        """Read the store's model list (blocking: call it in a thread); on failure keep the last one."""
        if self.settings.references():
            return
        try:
            names = self.store.models()
        except StoreError as exc:  # keep the last scan; /readyz says why nothing new is known
            self.scan_error = str(exc)
            raise
        self.scan_error = None
        # A served model whose alias vanished keeps serving (and counting for readiness): taking the pod
        # out of its Service over a missing tag would stop serving what it has.
        targets = [name for name in names if self.target(name) is not None or name in self.models]
        self._scan = (names, sorted({*targets, *self.models}))

    def reference(self, name: str) -> Reference:
        """What ``name`` follows: its configured reference, else its champion."""
        return self.settings.references().get(name) or Reference(name, alias=CHAMPION)

    def target(self, name: str) -> str | None:
        """The version ``name`` should serve now; None (and the reason in ``unresolved``) if it names none."""
        try:
            resolved = self.store.resolve(self.reference(name))
        except StoreError as exc:
            self.unresolved[name] = str(exc)
            return None
        self.unresolved.pop(name, None)
        if resolved.digest is not None:
            self._digests[(name, resolved.version)] = resolved.digest
        return resolved.version

    @property
    def ready(self) -> bool:
        """True once the first scan is done and every configured model serves a version."""
        names = self.configured()
        return self.scanned and bool(names) and all(name in self.models for name in names)

    def load_failures(self) -> dict[str, dict[str, str]]:
        """Model -> {version, reason} of each target version that failed to load (whether an older version
        still serves or not): what /readyz shows, without paths."""
        return {
            name: {"version": failure.version, "reason": failure.reason}
            for name, failure in sorted(self.failures.items())
        }

    def not_ready_reason(self) -> str:
        """Why :attr:`ready` is False, for /readyz."""
        if not self.scanned:
            return "models are loading"
        names = self.configured()
        if not names:
            # /readyz answers anyone: say what is missing, never where the store is (the log has it).
            if self.scan_error is not None:
                return f"cannot list the models in the store: {self.scan_error}"
            if self._scan[0]:
                return "no model in the store has a champion (modelberth models promote)"
            return "no models in the store"
        waiting = [n for n in names if n not in self.models]
        failed = [n for n in waiting if n in self.failures]
        if failed:
            return "models failed to load: " + ", ".join(failed)
        unresolved = [f"{n} ({self.unresolved[n]})" for n in waiting if n in self.unresolved]
        if unresolved:
            return "models with nothing to serve: " + "; ".join(unresolved)
        return "models not loaded yet: " + ", ".join(waiting)

    async def refresh(self) -> None:
        """Load every configured model whose target version is not the one serving."""
        await asyncio.to_thread(self.scan)
        for name in self.configured():
            await self.load(name)
        self.scanned = True

    async def poll(self, interval_seconds: float) -> None:
        """Refresh forever, every ``interval_seconds``."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.refresh()
            except Exception:  # polling must survive a bad directory listing
                log.exception("model poll failed")

    async def load(self, name: str, *, retry_failed: bool = False) -> LoadOutcome:
        """Load ``name``'s target version in a worker thread and swap it in; keep the old one on failure."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            target = await asyncio.to_thread(self.target, name)
            current = self.models.get(name)
            previous = current.model.version if current else None
            if target is None:
                return LoadOutcome("missing", previous=previous)
            if previous == target:
                self.failures.pop(name, None)  # e.g. latest moved back from a broken version
                return LoadOutcome("unchanged", version=target, previous=previous)
            failed = self.failures.get(name)
            if failed and failed.version == target and not retry_failed:
                return LoadOutcome("failed", version=target, previous=previous, error=failed.message)
            try:
                model = await asyncio.to_thread(self._load, name, target)
            except LoadError as exc:
                self.failures[name] = LoadFailure(target, exc.reason, str(exc))
                self.metrics.model_load_failures.labels(name).inc()
                log.error(
                    "model load failed; previous version keeps serving",
                    extra={"model": name, "version": target, "serving": previous, "error": str(exc)},
                )
                return LoadOutcome("failed", version=target, previous=previous, error=str(exc))
            self._swap(name, model, previous)
            return LoadOutcome("loaded", version=target, previous=previous)

    def _load(self, name: str, version: str) -> LoadedModel:
        try:
            version_dir = self.store.fetch(name, version)
        except StoreError as exc:
            raise LoadError(str(exc), "the version cannot be fetched from the model store") from exc
        # fetch gives <root>/<name>/<version>: the root is what load_model keeps every file inside.
        return load_model(
            version_dir.parent.parent, name, version, max_text_length=self.settings.max_text_length
        )

    def _swap(self, name: str, model: LoadedModel, previous: str | None) -> None:
        settings = self.settings
        drift = DriftTracker(
            model.card.features,
            model.card.reference_profile,
            settings.drift_window_rows,
            settings.drift_min_rows,
        )
        batcher = MicroBatcher(
            _BatchRunner(model, self.metrics, drift),
            max_wait_seconds=settings.batch_max_wait_seconds,
            max_rows=settings.batch_max_rows,
        )
        self.models[name] = Served(model, batcher, drift)  # the atomic swap
        self.failures.pop(name, None)
        if previous is not None and previous != model.version:
            self.metrics.model_info.remove(name, previous)
            # Keep the per-version series of the serving and the previous version (its in-flight requests
            # may still finish); older ones would add series with every hot reload, for ever (issue 13).
            retired = self._retired.get(name)
            if retired is not None and retired != model.version:
                self.metrics.predictions.remove_by_labels({"model": name, "version": retired})
            self._retired[name] = previous
        self.metrics.model_info.labels(name, model.version).set(1)
        self.metrics.models_ready.set(len(self.models))
        self.metrics.model_load_seconds.observe(model.load_seconds)
        log.info(
            "model loaded",
            extra={
                "model": name,
                "version": model.version,
                "previous": previous,
                "load_seconds": round(model.load_seconds, 3),
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(model.loaded_at)),
            },
        )

    def drift_trackers(self) -> list[tuple[str, DriftTracker]]:
        """(model, tracker) for every served model, for the drift collector."""
        return [(name, served.drift) for name, served in list(self.models.items())]

    def summary(self) -> list[dict[str, Any]]:
        """One line per served model, for ``GET /v1/models``."""
        out = []
        for name in sorted(self.models):
            card = self.models[name].model.card
            out.append(
                {
                    "name": name,
                    "version": card.version,
                    "task": card.task,
                    "target": card.target,
                    "classes": card.classes,
                    "features": card.feature_names,
                    "created_at": card.created_at.isoformat(),
                    "digest": self._digests.get((name, card.version)),
                    "metrics": {"primary": card.metrics.primary, "test": card.metrics.test},
                    "selected": card.selected.model_dump(mode="json"),
                }
            )
        return out
