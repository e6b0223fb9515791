"""The set of models being served: initial load, polling of the aliases followed, reloads and atomic swaps;
other versions held on demand, and the challenger that shadows each served version.

Each model serves what its reference names in the store: its ``champion`` by default, or the alias or
version ``INFERENCE_MODELS`` gives. A moved alias is picked up at the next poll.

A request looks its model up once and keeps that object until it has answered, so swapping the dict entry
is the whole hot-reload protocol: new requests see the new version, in-flight ones finish on the old one,
and a version that fails any check never replaces the one serving.

Other versions (``/versions/{version or alias}/...``) are held on demand by :mod:`.versions`; the version
served before a swap stays held there, so a rollback, or promoting a version already called, is instant.
With shadowing on, the served version's batches are also scored by the model's ``challenger``
(:mod:`.shadow`), which then stays in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from modelberth_core.contract import VERSION_PATTERN, ModelCard
from modelberth_core.store import (
    ALIAS_PATTERN,
    CHALLENGER,
    CHAMPION,
    Reference,
    StoreError,
    VersionInfo,
    open_store,
)
from modelberth_core.store import VersionNotFound as StoreVersionNotFound
from modelberth_inference.drift import DriftTracker
from modelberth_inference.errors import (
    ModelNotFound,
    VersionCapReached,
    VersionNotFound,
    VersionNotLoadable,
)
from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.model import LoadError
from modelberth_inference.served import Served, make_served
from modelberth_inference.settings import Settings
from modelberth_inference.shadow import ShadowScorer
from modelberth_inference.types import RepositoryEntry
from modelberth_inference.versions import HeldVersions, LoadFailure

log = logging.getLogger("modelberth.inference.registry")

__all__ = ["LoadFailure", "LoadOutcome", "ModelRegistry", "Served"]


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    """What a (re)load did."""

    status: Literal["loaded", "unchanged", "failed", "missing"]
    version: str | None = None
    previous: str | None = None
    error: str | None = None


class ModelRegistry:
    """Loads, polls and swaps the served models; holds other versions on demand; sets up shadowing."""

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
        self.shadows: dict[str, ShadowScorer] = {}
        """Model -> the scorer its served version hands its batches to (while shadowing)."""
        self.waiting: dict[str, tuple[str, str]] = {}
        """Model -> (challenger, why) while shadowing waits for a challenger that cannot be held now."""
        self.unloaded: set[str] = set()
        """Models an admin unloaded (the repository API): not served, not reloaded by polls, not counted
        for readiness, until loaded again."""
        self.versions = HeldVersions(
            self.store, settings, metrics, pinned=self._pinned, unloaded=self._unloaded
        )

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
        names = [name for name in self.configured() if name not in self.unloaded]
        return self.scanned and bool(names or self.unloaded) and all(name in self.models for name in names)

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
        waiting = [n for n in names if n not in self.models and n not in self.unloaded]
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
            if name not in self.unloaded:  # an admin unloaded it: a moved alias does not bring it back
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
        """Load ``name``'s target version and swap it in (the old one keeps serving on failure); then
        follow its challenger for shadowing."""
        outcome = await self._load_target(name, retry_failed=retry_failed)
        await self.follow_challenger(name)
        return outcome

    async def _load_target(self, name: str, *, retry_failed: bool) -> LoadOutcome:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self.unloaded:  # unloaded while this load waited for the lock
                return LoadOutcome("missing")
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
            held = self.versions.take(name, target)  # promoted or rolled back to a version in memory
            try:
                model = held.model if held is not None else await self.versions.obtain(name, target)
            except LoadError as exc:
                self.failures[name] = LoadFailure(target, exc.reason, str(exc))
                self.metrics.model_load_failures.labels(name).inc()
                log.error(
                    "model load failed; previous version keeps serving",
                    extra={"model": name, "version": target, "serving": previous, "error": str(exc)},
                )
                return LoadOutcome("failed", version=target, previous=previous, error=str(exc))
            self._swap(name, make_served(model, self.settings, self.metrics, serving=True), current)
            return LoadOutcome("loaded", version=target, previous=previous)

    def _swap(self, name: str, served: Served, current: Served | None) -> None:
        model = served.model
        previous = current.model.version if current else None
        self.models[name] = served  # the atomic swap
        self.versions.forget_listings(name)
        self._stop_shadow(name)  # it compared the previous version; follow_challenger sets up the new pair
        self.failures.pop(name, None)
        if current is not None and previous != model.version:
            self.metrics.model_info.remove(name, previous)
            # Keep the per-version series of the versions in memory and of the previous one (its in-flight
            # requests may still finish); others would add series with every hot reload, for ever (issue 13).
            retired = self._retired.get(name)
            self._retired[name] = current.model.version
            if retired not in (None, model.version, *self.versions.versions(name)):
                self._forget_series(name, str(retired))
            self.versions.put(name, current.model)  # held: a rollback to it is instant
        self.metrics.model_info.labels(name, model.version).set(1)
        self.metrics.rejected.labels(name, "queue_full")  # 0 from the start: rates and alerts see no gap
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

    def _pinned(self, name: str) -> set[str]:
        scorer = self.shadows.get(name)
        return {scorer.challenger.version} if scorer is not None else set()

    def _unloaded(self, name: str, version: str) -> None:
        served = self.models.get(name)
        if version != self._retired.get(name) and (served is None or served.model.version != version):
            self._forget_series(name, version)

    def _forget_series(self, name: str, version: str) -> None:
        labels = {"model": name, "version": version}
        self.metrics.predictions.remove_by_labels(labels)
        self.metrics.predict_duration.remove_by_labels(labels)
        self.metrics.request_duration.remove_by_labels(labels)

    # --- the model repository extension: load and unload --------------------------------------------------

    async def load_model(self, name: str) -> str:
        """Serve ``name`` again (what its reference names now) after an unload, or load it if it is not
        served yet; the version served. Aliases are only read, never moved."""
        if name not in self.configured():
            with contextlib.suppress(StoreError):  # published since the last poll?
                await asyncio.to_thread(self.scan)
            if name not in self.configured():
                raise ModelNotFound(f"model {name!r} not found (or not one this server serves)")
        self.unloaded.discard(name)
        outcome = await self.load(name, retry_failed=True)
        if outcome.status == "missing":
            why = self.unresolved.get(name, "no complete version")
            raise ModelNotFound(f"model {name!r} has nothing to serve: {why}")
        if outcome.status == "failed":
            raise VersionNotLoadable(f"model {name!r} version {outcome.version} cannot be loaded")
        assert outcome.version is not None
        return outcome.version

    async def unload_model(self, name: str) -> None:
        """Stop serving ``name`` and free every version of it held in memory; polls leave it unloaded."""
        if name not in self.configured() and name not in self.models and name not in self.unloaded:
            raise ModelNotFound(f"model {name!r} not found")
        async with self._locks.setdefault(name, asyncio.Lock()):  # not while a load swaps it in
            self.unloaded.add(name)
            self._stop_shadow(name)
            served = self.models.pop(name, None)
            held: dict[str, Served] = dict(self.versions.held.pop(name, None) or {})
            versions = [*held, *([served.model.version] if served is not None else [])]
            if served is not None:
                self.metrics.model_info.remove(name, served.model.version)
                self.metrics.rejected.remove(name, "queue_full")
            retired = self._retired.pop(name, None)
            for version in {*versions, *([retired] if retired else [])}:
                self._forget_series(name, version)
            self.failures.pop(name, None)
            self.metrics.models_ready.set(len(self.models))
        log.info("model unloaded", extra={"model": name, "versions": sorted(versions)})

    async def index(self) -> list[RepositoryEntry]:
        """The V2 repository index: every model this server may serve, READY with each version in memory,
        else UNAVAILABLE and why (unloaded, a failed load, nothing to serve, loading)."""
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self.scan)
        names = sorted({*self.configured(), *self.models, *self.unloaded})
        entries: list[RepositoryEntry] = []
        for name in names:
            served = self.models.get(name)
            if served is not None:
                entries.append(RepositoryEntry(name, served.model.version, "READY"))
                entries.extend(RepositoryEntry(name, v, "READY") for v in self.versions.versions(name))
            elif name in self.unloaded:
                entries.append(RepositoryEntry(name, None, "UNAVAILABLE", "unloaded"))
            elif name in self.failures:
                failure = self.failures[name]
                entries.append(RepositoryEntry(name, failure.version, "UNAVAILABLE", failure.reason))
            elif name in self.unresolved:
                entries.append(RepositoryEntry(name, None, "UNAVAILABLE", "nothing to serve"))
            else:
                entries.append(RepositoryEntry(name, None, "LOADING", "not loaded yet"))
        return entries

    # --- calling a version by name --------------------------------------------------------------------

    async def version(self, served: Served, text: str) -> Served:
        """The version of ``served``'s model that ``text`` (a version id or an alias) names, loaded.

        The alias the model follows (``champion`` by default) is the served version itself, like the
        served version's id; any other version is held on demand (:class:`.versions.HeldVersions`).
        Raises :class:`VersionNotFound` (404), :class:`VersionNotLoadable` (409) or
        :class:`VersionCapReached` (503).
        """
        name = served.model.name
        if re.match(VERSION_PATTERN, text):
            version = text
        elif re.match(ALIAS_PATTERN, text):
            if text == self.reference(name).alias:
                return served
            aliases = await self.versions.aliases(name)
            found = aliases.get(text)
            if found is None:
                known = ", ".join(sorted(aliases)) or "none"
                raise VersionNotFound(f"model {name!r} has no alias {text!r} (aliases: {known})")
            version = found
        else:
            raise VersionNotFound(
                f"model {name!r} has no such version or alias: a version id looks like 20261122T144500Z, "
                "an alias is lowercase letters, digits and '-'"
            )
        if version == served.model.version:
            return served
        held = self.versions.get(name, version)
        if held is not None:
            return held
        return await self.versions.hold(name, version, lambda: self.models.get(name))

    # --- shadow traffic -------------------------------------------------------------------------------

    async def follow_challenger(self, name: str) -> None:
        """Shadow ``name``'s served version with its ``challenger`` when shadowing is on for it and the
        challenger is another version; stop when it is not (any more)."""
        served = self.models.get(name)
        if served is None or not self.settings.shadowed(name):
            self._stop_shadow(name)
            return
        challenger = (await self.versions.aliases(name, max_age=0.0)).get(CHALLENGER)
        if challenger is None or challenger == served.model.version:
            self._stop_shadow(name)
            return
        current = self.shadows.get(name)
        if current is not None and current.challenger.version == challenger:
            return
        self._stop_shadow(name)
        try:
            held = await self.version(served, challenger)
        except (VersionNotFound, VersionNotLoadable, VersionCapReached) as exc:
            if self.waiting.get(name, ("", ""))[0] != challenger:  # logged once per challenger, not per poll
                log.warning(
                    "shadow traffic waits: the challenger is not available",
                    extra={"model": name, "challenger": challenger, "error": exc.detail},
                )
            self.waiting[name] = (challenger, str(exc.detail))
            return
        self.waiting.pop(name, None)
        if self.models.get(name) is not served:  # swapped meanwhile: the next poll sets the new pair up
            return
        scorer = ShadowScorer(
            served.model,
            held.model,
            self.metrics,
            max_rows=self.settings.shadow_queue_rows,
            tolerance=self.settings.shadow_tolerance,
        )
        self.shadows[name] = scorer
        served.runner.shadow = scorer
        log.info(
            "shadow traffic on",
            extra={"model": name, "champion": served.model.version, "challenger": challenger},
        )

    def _stop_shadow(self, name: str) -> None:
        self.waiting.pop(name, None)
        scorer = self.shadows.pop(name, None)
        served = self.models.get(name)
        if scorer is not None and served is not None and served.runner.shadow is scorer:
            served.runner.shadow = None

    # --- reading --------------------------------------------------------------------------------------

    def drift_trackers(self) -> list[tuple[str, DriftTracker]]:
        """(model, tracker) for every served model, for the drift collector."""
        return [(n, served.drift) for n, served in list(self.models.items()) if served.drift is not None]

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

    async def listing(self, name: str) -> dict[str, Any]:
        """``GET /v1/models/{name}/versions``: every version (oldest first) with its primary test score and
        aliases, which ones are in memory, and what shadowing does."""
        versions, aliases = await asyncio.to_thread(self._versions_and_aliases, name)
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        served = self.models.get(name)
        in_memory = set(self.versions.versions(name))
        if served is not None:
            in_memory.add(served.model.version)
        scorer = self.shadows.get(name)
        return {
            "model": name,
            "serving": served.model.version if served else None,
            "aliases": aliases,
            "versions": [
                {
                    "version": v.version,
                    "created_at": v.created_at.isoformat(),
                    "metric": v.metric,
                    "score": v.score,
                    "greater_is_better": v.greater_is_better,
                    "aliases": sorted(by_version.get(v.version, [])),
                    "loaded": v.version in in_memory,
                }
                for v in versions
            ],
            "shadow": {"enabled": self.settings.shadowed(name), **self._shadow_state(name, scorer)},
        }

    async def history(self, name: str, limit: int) -> dict[str, Any]:
        """``GET /v1/models/{name}/history``: the ``limit`` newest alias moves, newest first, and how many
        the store holds. Raises what the store raises."""
        events = await asyncio.to_thread(self.store.history, name)
        newest = events[: -limit - 1 : -1] if limit > 0 else []
        return {
            "model": name,
            "total": len(events),
            "events": [event.model_dump(mode="json") for event in newest],
        }

    async def card_of(self, name: str, text: str) -> ModelCard:
        """The card of the version ``text`` (a version id or an alias) names, read from the store; the
        model is not loaded. Raises :class:`VersionNotFound` (404) or what the store raises."""
        version = text
        if not re.match(VERSION_PATTERN, text):
            aliases = await self.versions.aliases(name)
            found = aliases.get(text)
            if found is None:
                known = ", ".join(sorted(aliases)) or "none"
                raise VersionNotFound(f"model {name!r} has no alias {text!r} (aliases: {known})")
            version = found
        try:
            return await asyncio.to_thread(self.versions.read_card, name, version)
        except StoreVersionNotFound:
            raise VersionNotFound(f"model {name!r} has no version {version}") from None

    def _shadow_state(self, name: str, scorer: ShadowScorer | None) -> dict[str, Any]:
        if scorer is not None:
            return scorer.stats()
        if name in self.waiting:
            challenger, why = self.waiting[name]
            return {"status": "waiting", "challenger": challenger, "reason": why}
        return {"status": "off"}

    def _versions_and_aliases(self, name: str) -> tuple[list[VersionInfo], dict[str, str]]:
        return self.store.versions(name), self.versions.read_aliases(name)
