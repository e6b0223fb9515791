"""Versions in memory besides the served one (issue 14): loaded when a request names them, bounded per model.

``/versions/{version or alias}/...`` calls a version other than the served one. It loads on first use, at
most ``max_versions`` per model counting the served version; to make room, the least recently used version
is unloaded, never the served one (it is not held here) nor a pinned one (the challenger while it shadows).
Concurrent first requests for a version share one load; versions of one model load one at a time, so memory
stays within the cap plus the version loading. A version that fails a load check is refused (409) for
:data:`LOAD_RETRY_SECONDS` without another attempt, so a broken version cannot be made to load in a loop.

Aliases are read from the store at most :data:`ALIAS_MAX_AGE_SECONDS` ago, so calling ``challenger`` costs
no store read per request and follows a moved alias within a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from modelberth_core.contract import ContractError, ModelCard
from modelberth_core.store import ModelStore, Reference, StoreError
from modelberth_inference.errors import VersionCapReached, VersionNotFound, VersionNotLoadable
from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.model import LoadedModel, LoadError, load_model
from modelberth_inference.served import Served, make_served
from modelberth_inference.settings import Settings

log = logging.getLogger("modelberth.inference.versions")

ALIAS_MAX_AGE_SECONDS = 1.0
"""How old the aliases a versioned call resolves may be: an alias moved in the store is followed within it."""
LOAD_RETRY_SECONDS = 30.0
"""A version that failed to load on demand is answered 409 without a new attempt for this long."""


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """The last version of a model that failed to load: why, for /readyz (no path) and for the log."""

    version: str
    reason: str
    message: str


class HeldVersions:
    """Per model, the versions in memory besides the served one, least recently used first."""

    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        metrics: InferenceMetrics,
        *,
        pinned: Callable[[str], set[str]],
        unloaded: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._pinned = pinned
        self._unloaded = unloaded
        self.held: dict[str, OrderedDict[str, Served]] = {}
        self._loads: dict[tuple[str, str], asyncio.Task[LoadedModel]] = {}
        self._holding: dict[tuple[str, str], asyncio.Task[Served]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[tuple[str, str], tuple[float, LoadFailure]] = {}
        self._aliases: dict[str, tuple[float, dict[str, str]]] = {}
        self._alias_reads: dict[str, asyncio.Task[dict[str, str]]] = {}
        self._catalogues: dict[str, tuple[float, list[str], dict[str, str]]] = {}
        self._cards: dict[tuple[str, str], ModelCard] = {}

    # --- loading --------------------------------------------------------------------------------------

    async def obtain(self, name: str, version: str) -> LoadedModel:
        """Load one version in a worker thread; concurrent callers for the same version share the load, and
        a caller that gives up (its request timed out) does not cancel it for the others."""
        key = (name, version)
        task = self._loads.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._load, name, version))
            self._loads[key] = task

            def done(finished: asyncio.Task[LoadedModel]) -> None:
                self._loads.pop(key, None)
                if not finished.cancelled():
                    finished.exception()  # retrieved here, so a load nobody waits for any more logs nothing

            task.add_done_callback(done)
        return await asyncio.shield(task)

    def _load(self, name: str, version: str) -> LoadedModel:
        try:
            version_dir = self.store.fetch(name, version)
        except StoreError as exc:
            raise LoadError(str(exc), "the version cannot be fetched from the model store") from exc
        # fetch gives <root>/<name>/<version>: the root is what load_model keeps every file inside.
        return load_model(
            version_dir.parent.parent, name, version, max_text_length=self.settings.max_text_length
        )

    # --- the held versions ------------------------------------------------------------------------------

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` held now, least recently used first."""
        return list(self.held.get(name, ()))

    def get(self, name: str, version: str) -> Served | None:
        """The held version (now the most recently used), if held."""
        held = self.held.get(name)
        if held is None or version not in held:
            return None
        held.move_to_end(version)
        return held[version]

    def take(self, name: str, version: str) -> Served | None:
        """Remove a version from the held ones (it becomes the served version) and return it."""
        held = self.held.get(name)
        return held.pop(version, None) if held is not None else None

    def put(self, name: str, model: LoadedModel) -> Served:
        """Hold ``model`` (the most recently used), unloading others beyond the cap; it may itself be the one
        unloaded when every other slot is pinned."""
        served = make_served(model, self.settings, self.metrics, serving=False)
        self.held.setdefault(name, OrderedDict())[model.version] = served
        self._trim(name)
        return served

    async def hold(self, name: str, version: str, serving: Callable[[], Served | None]) -> Served:
        """``version`` of ``name``, loaded now if it is not held (see the module docstring for the rules).

        The load and the holding run in a task that the requests wait for: a request that gives up (its
        time budget ran out) neither cancels them nor leaves the loaded version unheld for the next one.
        ``serving`` gives the served version when the load is done: if that is this version (the champion
        moved to it meanwhile), it is returned rather than held twice.
        """
        key = (name, version)
        failed = self._failures.get(key)
        if failed is not None and time.monotonic() - failed[0] < LOAD_RETRY_SECONDS:
            raise VersionNotLoadable(f"model {name!r} version {version} cannot be loaded: {failed[1].reason}")
        task = self._holding.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._hold(name, version, serving))
            self._holding[key] = task

            def done(finished: asyncio.Task[Served]) -> None:
                self._holding.pop(key, None)
                if not finished.cancelled():
                    finished.exception()  # retrieved: a hold nobody waits for any more logs nothing

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _hold(self, name: str, version: str, serving: Callable[[], Served | None]) -> Served:
        if not await asyncio.to_thread(self._exists, name, version):  # before queueing for the lock
            raise VersionNotFound(f"model {name!r} has no version {version}")
        # One on-demand load at a time per model: memory stays within the cap plus one version.
        async with self._locks.setdefault(name, asyncio.Lock()):
            held = self.get(name, version)
            if held is not None:
                return held
            if not self._room(name):
                raise VersionCapReached(
                    f"model {name!r} holds {self.settings.max_versions} versions in memory, none of which"
                    " may be unloaded now (served or shadowing); raise INFERENCE_MAX_VERSIONS"
                )
            try:
                model = await self.obtain(name, version)
            except LoadError as exc:
                self._failures[(name, version)] = (
                    time.monotonic(),
                    LoadFailure(version, exc.reason, str(exc)),
                )
                self.metrics.model_load_failures.labels(name).inc()
                log.error("version load failed", extra={"model": name, "version": version, "error": str(exc)})
                raise VersionNotLoadable(
                    f"model {name!r} version {version} cannot be loaded: {exc.reason}"
                ) from None
            self._failures.pop((name, version), None)
            current = serving()
            if current is not None and current.model.version == version:
                return current
            log.info(
                "version loaded on demand",
                extra={"model": name, "version": version, "load_seconds": round(model.load_seconds, 3)},
            )
            return self.put(name, model)

    def _exists(self, name: str, version: str) -> bool:
        try:
            self.store.resolve(Reference(name, version=version))
        except (StoreError, OSError):
            return False
        return True

    def _room(self, name: str) -> bool:
        """Whether one more version fits beside the served one (unloading an unpinned one if need be)."""
        held = self.versions(name)
        pinned = self._pinned(name)
        return len(held) < self.settings.max_versions - 1 or any(v not in pinned for v in held)

    def _trim(self, name: str) -> None:
        held = self.held[name]
        pinned = self._pinned(name)
        while len(held) > self.settings.max_versions - 1:
            victim = next((v for v in held if v not in pinned), None)
            if victim is None:
                return
            del held[victim]
            self._unloaded(name, victim)
            log.info("version unloaded (least recently used)", extra={"model": name, "version": victim})

    # --- aliases ----------------------------------------------------------------------------------------

    async def aliases(self, name: str, max_age: float = ALIAS_MAX_AGE_SECONDS) -> dict[str, str]:
        """``name``'s aliases (alias -> version), read from the store at most ``max_age`` seconds ago;
        concurrent callers share one read."""
        cached = self._aliases.get(name)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        task = self._alias_reads.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.read_aliases, name))
            self._alias_reads[name] = task
            task.add_done_callback(lambda _: self._alias_reads.pop(name, None))
        return await asyncio.shield(task)

    def forget_listings(self, name: str) -> None:
        """Read ``name``'s aliases and versions from the store again next time (its served version moved)."""
        self._aliases.pop(name, None)
        self._catalogues.pop(name, None)

    def read_aliases(self, name: str) -> dict[str, str]:
        """``name``'s aliases read from the store now (none when they cannot be read; logged)."""
        read_at = time.monotonic()
        try:
            aliases = self.store.aliases(name)
        except (StoreError, OSError) as exc:  # e.g. the model's directory vanished: no aliases now
            log.warning("cannot read the aliases", extra={"model": name, "error": str(exc)})
            aliases = {}
        self._aliases[name] = (read_at, aliases)
        return aliases

    # --- what the store lists, for the OpenAPI document ---------------------------------------------------

    def catalogue(self, name: str) -> tuple[list[str], dict[str, str]]:
        """``name``'s complete version ids and its aliases, as the store listed them at most
        :data:`ALIAS_MAX_AGE_SECONDS` ago (nothing when they cannot be read)."""
        cached = self._catalogues.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[0] < ALIAS_MAX_AGE_SECONDS:
            return cached[1], cached[2]
        try:
            versions = [v.version for v in self.store.versions(name)]
        except (StoreError, ContractError, OSError):  # logged where it matters: the listing, the loads
            versions = []
        aliases = self.read_aliases(name)
        self._catalogues[name] = (now, versions, aliases)
        return versions, aliases

    def read_card(self, name: str, version: str) -> ModelCard:
        """One version's card (versions are immutable: read once), without loading the model; raises what
        the store raises (:class:`StoreError`, :class:`ContractError`, :class:`OSError`)."""
        key = (name, version)
        card = self._cards.get(key)
        if card is None:
            card = self._cards[key] = self.store.card(name, version)
        return card

    def card(self, name: str, version: str) -> ModelCard | None:
        """One version's card, None when it cannot be read."""
        try:
            return self.read_card(name, version)
        except (StoreError, ContractError, OSError):  # missing or invalid: the version is not documented
            return None

    def refused(self, name: str, version: str) -> bool:
        """Whether a request for this version is answered 409 now (it failed to load not long ago)."""
        failed = self._failures.get((name, version))
        return failed is not None and time.monotonic() - failed[0] < LOAD_RETRY_SECONDS
