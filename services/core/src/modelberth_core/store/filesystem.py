"""The filesystem store, the embedded default: a directory (a local disk or a PVC) holding

::

    <root>/<name>/<version>/       model.joblib, model.json, report.html, examples.csv (immutable)
    <root>/<name>/<alias>          one line: the version the alias names (latest, champion, challenger...)
    <root>/<name>/history.jsonl    every alias move, one JSON object per line, append-only
    <root>/<name>/.lock            flock(2) target serialising writers of this model
    <root>/<name>/.staging-*       versions being written (renamed into place when complete)

Writers (publish, alias moves) take an exclusive ``flock`` on the model's ``.lock``, append the event to the
history (one ``write``, fsynced) and then rename a fsynced temporary pointer over the old one, so parallel
processes never lose an event or tear a pointer, and a reader always sees a complete version id. Readers
take no lock, so a read-only mount (inference) works: an unfinished last history line is skipped.

A store written before aliases existed has only ``latest`` and no history: there ``champion`` reads as
``latest`` (noted once in the log), so no migration step is needed; the first publish into it makes that
version the champion explicitly, so publishing never changes what is served.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from modelberth_core import contract
from modelberth_core.contract import CARD_FILE, VERSION_PATTERN, ModelCard
from modelberth_core.store.base import (
    ALIAS_PATTERN,
    CHALLENGER,
    CHAMPION,
    LATEST,
    UNCHECKED,
    AliasConflict,
    AliasEvent,
    AliasNotFound,
    InvalidReference,
    ModelNotFound,
    ModelStore,
    Reason,
    Reference,
    Resolved,
    StoreError,
    Unchecked,
    VersionInfo,
    VersionNotFound,
    check_alias,
    check_name,
    check_version,
    record_event,
)

log = logging.getLogger("modelberth.store")

HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
STAGING_PREFIX = ".staging-"
FILE_MODE = 0o644
"""Pointers and history are readable by the serving process, which may run as another user."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FilesystemStore(ModelStore):
    """Models in a directory tree; see the module docstring for the layout and the locking."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._legacy_noted: set[str] = set()

    def __repr__(self) -> str:
        return f"FilesystemStore({str(self.root)!r})"

    @property
    def location(self) -> str:
        """The root directory."""
        return str(self.root)

    # --- reading ---------------------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        base = self.root / check_name(name)
        if not base.is_dir():
            raise ModelNotFound(self._no_model_message(name))
        return base

    def models(self) -> list[str]:
        """Directories under the root whose names are valid model names."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and re.match(contract.NAME_PATTERN, p.name)
        )

    def _version_ids(self, base: Path) -> list[str]:
        return sorted(
            p.name for p in base.iterdir() if re.match(VERSION_PATTERN, p.name) and (p / CARD_FILE).is_file()
        )

    def versions(self, name: str) -> list[VersionInfo]:
        """Every complete version (its card exists), oldest first, with its primary test score."""
        base = self._model_dir(name)
        out = []
        for version in self._version_ids(base):
            card = self.card(name, version)
            out.append(
                VersionInfo(
                    version=version,
                    created_at=card.created_at,
                    metric=card.metrics.primary,
                    score=card.metrics.test.get(card.metrics.primary),
                    greater_is_better=card.metrics.greater_is_better,
                )
            )
        return out

    def _read_pointer(self, base: Path, alias: str) -> str | None:
        try:
            text = (base / alias).read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{base / alias}: cannot read the alias pointer ({exc})") from exc
        if not re.match(VERSION_PATTERN, text):
            raise StoreError(f"{base / alias}: the alias pointer holds no version id")
        return text

    def _pointer_names(self, base: Path) -> list[str]:
        return sorted(p.name for p in base.iterdir() if re.match(ALIAS_PATTERN, p.name) and p.is_file())

    def _complete(self, base: Path, version: str) -> bool:
        return (base / version / CARD_FILE).is_file()

    def _latest(self, base: Path) -> str | None:
        try:
            version = self._read_pointer(base, LATEST)
        except StoreError:  # as before aliases: a damaged latest falls back to the newest version
            version = None
        if version is not None and self._complete(base, version):
            return version
        versions = self._version_ids(base)  # no (valid) pointer: the newest complete version
        return versions[-1] if versions else None

    def _is_legacy(self, base: Path) -> bool:
        # Every write (publish included) appends to the history: a model without one was written before
        # aliases existed, when latest was what got served.
        return not (base / HISTORY_FILE).exists()

    def _alias(self, base: Path, alias: str) -> str | None:
        if alias == LATEST:
            return self._latest(base)
        version = self._read_pointer(base, alias)
        if version is None and alias == CHAMPION and self._is_legacy(base):
            version = self._latest(base)
            if version is not None and base.name not in self._legacy_noted:
                self._legacy_noted.add(base.name)
                log.info(
                    "no champion alias yet: serving latest as champion (a store written before aliases)",
                    extra={"model": base.name, "version": version, "store": self.location},
                )
        return version

    def aliases(self, name: str) -> dict[str, str]:
        """Every pointer file's alias, plus champion = latest for a store without aliases."""
        base = self._model_dir(name)
        out: dict[str, str] = {}
        for alias in {*self._pointer_names(base), LATEST, CHAMPION}:
            try:
                version = self._alias(base, alias)
            except StoreError as exc:  # resolving this alias says why; listing the others still works
                log.warning("unreadable alias pointer skipped", extra={"model": name, "error": str(exc)})
                continue
            if version is not None:
                out[alias] = version
        return dict(sorted(out.items()))

    def resolve(self, ref: Reference | str) -> Resolved:
        """The version a reference names; digests need a registry store."""
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        base = self._model_dir(ref.name)
        if ref.digest is not None:
            raise InvalidReference(
                f"{ref}: digest references need a registry store; {self.location} is a directory"
            )
        if ref.version is not None:
            if not self._complete(base, ref.version):
                raise VersionNotFound(self._no_version_message(base, ref.version))
            return Resolved(ref.name, ref.version)
        assert ref.alias is not None
        version = self._alias(base, ref.alias)
        if version is None:
            known = ", ".join(sorted(self.aliases(ref.name))) or "none"
            raise AliasNotFound(f"{ref.name} has no alias {ref.alias!r} (aliases: {known})")
        if not self._complete(base, version):
            raise VersionNotFound(f"{ref} points at {version}, which is not a complete version")
        return Resolved(ref.name, version)

    def _no_version_message(self, base: Path, version: str) -> str:
        versions = self._version_ids(base)
        newest = f"newest: {versions[-1]}" if versions else "it has none"
        return f"{base.name} has no version {version!r} ({len(versions)} versions, {newest})"

    def card(self, name: str, version: str) -> ModelCard:
        """The validated card of one version."""
        base = self._model_dir(name)
        if not re.match(VERSION_PATTERN, version) or not self._complete(base, version):
            raise VersionNotFound(self._no_version_message(base, version))
        return contract.read_card(base / version)

    def fetch(self, name: str, version: str) -> Path:
        """The version directory itself (nothing to download)."""
        base = self._model_dir(name)
        if not re.match(VERSION_PATTERN, version) or not self._complete(base, version):
            raise VersionNotFound(self._no_version_message(base, version))
        return base / version

    def history(self, name: str) -> list[AliasEvent]:
        """The history file's events; an unfinished last line (a writer mid-append) is skipped."""
        path = self._model_dir(name) / HISTORY_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the history ({exc.strerror})") from exc
        lines = raw.split(b"\n")
        events = []
        for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline yet
            if not line.strip():
                continue
            try:
                events.append(AliasEvent.model_validate_json(line))
            except ValidationError:
                log.warning("unreadable history line skipped", extra={"file": str(path), "line": number})
        return events

    # --- writing ---------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, base: Path) -> Iterator[None]:
        try:
            fd = os.open(base / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise StoreError(
                f"cannot write to {base} ({exc.strerror}); is the store mounted read-only?"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def staging(self, name: str) -> AbstractContextManager[Path]:
        """A temporary directory beside the final one: same filesystem, so the publish rename is atomic."""
        return self._staging(check_name(name))

    @contextmanager
    def _staging(self, name: str) -> Iterator[Path]:
        base = self.root / name
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=base, prefix=STAGING_PREFIX))
        except OSError as exc:
            raise StoreError(
                f"cannot write to {base} ({exc.strerror}); is the store mounted read-only?"
            ) from exc
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def new_version(self, name: str, now: datetime | None = None) -> str:
        """The UTC timestamp of ``now``, with ``-2``, ``-3``... when a version of that second exists."""
        base = self.root / check_name(name)
        first = contract.new_version(now)
        version, n = first, 1
        while (base / version).exists():
            n += 1
            version = f"{first}-{n}"
        return version

    def publish(self, staged: Path, card: ModelCard, *, actor: str | None = None) -> Resolved:
        """Check the checksum, write ``model.json``, fsync, rename into place and move ``latest``."""
        name = check_name(card.name)
        check_version(card.version)
        contract.verify_checksum(staged, card)
        payload = card.model_dump(mode="json")
        ModelCard.model_validate(payload)  # a card that does not round-trip is a bug, not an artifact
        (staged / CARD_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        for path in staged.iterdir():  # the version must be on disk before any pointer names it
            if path.is_file():
                with path.open("rb") as fh:
                    os.fsync(fh.fileno())
        staged.chmod(0o755)  # mkdtemp makes it 0700; the serving process may run as another user
        base = self.root / name
        with self._locked(base):
            final = base / card.version
            if final.exists():
                raise StoreError(f"{final} already exists; versions are immutable")
            previous = self._latest(base)
            if previous is not None and self._is_legacy(base):
                # A store from before aliases serves latest as champion: keep serving it once latest moves.
                self._move(
                    base,
                    CHAMPION,
                    previous,
                    previous=None,
                    reason="promote",
                    actor=actor,
                    detail="the served version of a store written before aliases became its champion",
                )
            staged.rename(final)
            _fsync_dir(base)
            self._move(base, LATEST, card.version, previous=previous, reason="publish", actor=actor)
        return Resolved(name, card.version)

    def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        reason: Reason,
        actor: str | None = None,
        detail: str | None = None,
        expected: str | Unchecked | None = UNCHECKED,
    ) -> AliasEvent:
        """Point ``alias`` at a complete ``version``, under the model lock (see the interface)."""
        check_alias(alias)
        check_version(version)
        if (alias == LATEST) != (reason == "publish"):
            raise InvalidReference(
                "latest is moved only by publishing a new version"
                if alias == LATEST
                else f"reason 'publish' moves only latest, not {alias!r}"
            )
        base = self._model_dir(name)
        with self._locked(base):
            if not self._complete(base, version):
                raise VersionNotFound(self._no_version_message(base, version))
            try:
                current = self._alias(base, alias)
            except StoreError:  # a damaged pointer: moving the alias is how it gets repaired
                log.warning("replacing an unreadable alias pointer", extra={"model": name, "alias": alias})
                current = None
            if expected is not UNCHECKED and current != expected:
                raise AliasConflict(
                    f"{name}@{alias} names {current or 'nothing'} now, not {expected or 'nothing'}"
                    " (it moved meanwhile); nothing was moved"
                )
            event = self._move(
                base, alias, version, previous=current, reason=reason, actor=actor, detail=detail
            )
            if alias == CHAMPION:
                self._clear_challenger(base, version, reason=reason, actor=actor)
            return event

    def _clear_challenger(self, base: Path, champion: str, *, reason: Reason, actor: str | None) -> None:
        """Under the lock, after the champion moved to ``champion``: remove a challenger naming it.

        The champion moves first: were this step to fail (a full disk), the model is left as before the
        fix, a challenger equal to its champion (which shadowing ignores), never without its champion.
        """
        try:
            challenger = self._read_pointer(base, CHALLENGER)
        except StoreError:  # a damaged challenger is not this move's business
            return
        if challenger != champion:
            return
        event = record_event(
            base.name,
            CHALLENGER,
            challenger,
            None,
            reason=reason,
            actor=actor,
            detail=f"cleared: {champion} is the champion now",
        )
        self._append(base / HISTORY_FILE, event)
        (base / CHALLENGER).unlink(missing_ok=True)
        _fsync_dir(base)

    def _move(
        self,
        base: Path,
        alias: str,
        version: str,
        *,
        previous: str | None,
        reason: Reason,
        actor: str | None,
        detail: str | None = None,
    ) -> AliasEvent:
        """Under the lock: prepare the pointer, append the event, then rename the pointer into place."""
        event = record_event(base.name, alias, previous, version, reason=reason, actor=actor, detail=detail)
        fd, tmp = tempfile.mkstemp(dir=base, prefix=f".{alias}.", suffix=".tmp")
        try:
            try:
                os.fchmod(fd, FILE_MODE)
                _write_all(fd, (version + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._append(base / HISTORY_FILE, event)
            os.replace(tmp, base / alias)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(base)
        return event

    def _append(self, path: Path, event: AliasEvent) -> None:
        """One ``write`` of one line, fsynced; on failure (a full disk) the file is cut back to its old
        size, so no half line stays behind."""
        line = event.model_dump_json().encode() + b"\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, size)
                why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror
                raise StoreError(f"{path}: cannot record the alias move ({why}); nothing was moved") from exc
        finally:
            os.close(fd)
