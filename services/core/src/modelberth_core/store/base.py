"""The model store interface: versions, aliases, references and the history of alias moves.

A model has immutable **versions** and named **aliases** pointing at them: ``champion`` (served by default),
``challenger`` (what the promotion gate refused, callable by alias), ``latest`` (the most recently published,
moved only by :meth:`ModelStore.publish`) and any alias a user names. Every alias move is an
:class:`AliasEvent` in the model's history. A **reference** names a model the way people type it:
``NAME`` (its champion), ``NAME@ALIAS``, ``NAME:VERSION`` or ``NAME@sha256:DIGEST``.

One interface, one module per backend (STYLE.md 3b); callers never test which backend they hold. Nothing
here imports scikit-learn: the store moves files and pointers, it never unpickles a model.
"""

from __future__ import annotations

import enum
import getpass
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelberth_core.contract import NAME_PATTERN, VERSION_PATTERN, ModelCard

CHAMPION = "champion"
"""The alias served when a reference names only the model."""
CHALLENGER = "challenger"
"""The alias the promotion gate moves to a candidate it refused."""
LATEST = "latest"
"""The most recently published version; moved only by publishing."""
RESERVED_ALIASES = (CHAMPION, CHALLENGER, LATEST)

ALIAS_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
"""Alias names: lowercase, at most 63 characters: a valid OCI tag that never looks like a version."""
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"

Reason = Literal["publish", "gate", "promote", "rollback"]
"""Why an alias moved: a new version (``latest``), the training gate, a person's promote or rollback."""

REFERENCE_FORMS = "NAME, NAME@ALIAS, NAME:VERSION or NAME@sha256:DIGEST"
_SHOWN = 80
"""Longest piece of user input repeated in an error message."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "…")


# --- errors ---------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Anything the store refuses or cannot do; the message is one line a person can act on."""


class ModelNotFound(StoreError):
    """The store holds no model of that name."""


class VersionNotFound(StoreError):
    """The model has no such (complete) version."""


class AliasNotFound(StoreError):
    """The model has no such alias."""


class InvalidReference(StoreError):
    """A model reference, name, alias or version is malformed."""


class AliasConflict(StoreError):
    """An alias moved between reading it and moving it (a conditional move found another version)."""


class NothingToRollBack(StoreError):
    """The champion's history holds no earlier version to go back to."""


class UnsupportedStore(StoreError):
    """The location names a kind of store this version of modelberth cannot open."""


# --- value types ----------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """``name`` if it is a valid model name; raise :class:`InvalidReference` otherwise."""
    if not re.match(NAME_PATTERN, name):
        raise InvalidReference(
            f"invalid model name {_shown(name)}:"
            " lowercase letters, digits, '-' and '_', at most 63 characters"
        )
    return name


def check_alias(alias: str) -> str:
    """``alias`` if it is a valid alias name; raise :class:`InvalidReference` otherwise."""
    if not re.match(ALIAS_PATTERN, alias):
        hint = "; a version is named with NAME:VERSION" if re.match(VERSION_PATTERN, alias) else ""
        raise InvalidReference(
            f"invalid alias {_shown(alias)}: a lowercase letter, then lowercase letters, digits and '-',"
            f" at most 63 characters{hint}"
        )
    return alias


def check_version(version: str) -> str:
    """``version`` if it is a valid version id; raise :class:`InvalidReference` otherwise."""
    if not re.match(VERSION_PATTERN, version):
        raise InvalidReference(
            f"invalid version {_shown(version)}: versions look like 20261122T144500Z (UTC), maybe with -N"
        )
    return version


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed model reference: exactly one of ``alias``, ``version`` or ``digest`` is set."""

    name: str
    alias: str | None = None
    version: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        # Names become file and URL paths: a Reference is valid however it was made, not only when parsed.
        check_name(self.name)
        given = [x for x in (self.alias, self.version, self.digest) if x is not None]
        if len(given) != 1:
            raise InvalidReference(f"a reference names exactly one alias, version or digest of {self.name}")
        if self.alias is not None:
            check_alias(self.alias)
        if self.version is not None:
            check_version(self.version)
        if self.digest is not None and not re.match(DIGEST_PATTERN, self.digest):
            raise InvalidReference("invalid digest: expected sha256: and 64 lowercase hex digits")

    @classmethod
    def parse(cls, text: str) -> Reference:
        """``NAME`` (its champion), ``NAME@ALIAS``, ``NAME:VERSION`` or ``NAME@sha256:<64 hex>``."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidReference(f"empty model reference; expected {REFERENCE_FORMS}")
        text = text.strip()
        try:
            if "@" in text:
                name, _, target = text.partition("@")
                if target.startswith("sha256:"):
                    if not re.match(DIGEST_PATTERN, target):
                        raise InvalidReference(
                            f"invalid digest {_shown(target)}: expected sha256: and 64 lowercase hex digits"
                        )
                    return cls(check_name(name), digest=target)
                return cls(check_name(name), alias=check_alias(target))
            if ":" in text:
                name, _, version = text.partition(":")
                return cls(check_name(name), version=check_version(version))
            return cls(check_name(text), alias=CHAMPION)
        except InvalidReference as exc:
            raise InvalidReference(
                f"invalid model reference {_shown(text)}: {exc}; expected {REFERENCE_FORMS}"
            ) from None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.digest or self.alias}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a reference names now: one version of one model (and its digest, where the store has one)."""

    name: str
    version: str
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version as listed: when it was made and its primary test score, from its card."""

    version: str
    created_at: datetime
    metric: str
    score: float | None
    greater_is_better: bool
    digest: str | None = None
    """The manifest digest, in a registry store (``NAME@sha256:...`` pins it)."""


class AliasEvent(BaseModel):
    """One alias move, as appended to the model's history.

    ``to_version`` is None when the move removed the alias: promoting the challenger clears ``challenger``
    (recorded with the promotion's reason), so a champion is never its own challenger.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=NAME_PATTERN)
    alias: str = Field(pattern=ALIAS_PATTERN)
    from_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    to_version: str | None = Field(pattern=VERSION_PATTERN)
    actor: str = Field(min_length=1, max_length=256)
    at: datetime
    reason: Reason
    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    detail: str | None = Field(default=None, max_length=2000)

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("at must carry a timezone")
        return value.astimezone(UTC)


class Unchecked(enum.Enum):
    """Sentinel type for :meth:`ModelStore.move_alias`'s ``expected``: move whatever the alias names now."""

    UNCHECKED = "unchecked"


UNCHECKED = Unchecked.UNCHECKED


def default_actor() -> str:
    """Who moves an alias when no token subject is given: the OS user (``uid:N`` when it has no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid:{os.getuid()}"


def record_event(
    name: str,
    alias: str,
    previous: str | None,
    version: str | None,
    *,
    reason: Reason,
    actor: str | None,
    detail: str | None = None,
    digest: str | None = None,
) -> AliasEvent:
    """The history event of one alias move, stamped now; :class:`InvalidReference` naming the field when a
    value cannot be recorded (e.g. an actor over 256 characters), before anything moved."""
    try:
        return AliasEvent(
            model=name,
            alias=alias,
            from_version=previous,
            to_version=version,
            actor=actor or default_actor(),
            at=datetime.now(UTC),
            reason=reason,
            digest=digest,
            detail=detail,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidReference(f"cannot record the move: {where}: {first['msg']}") from None


def champion_lineage(events: Iterable[AliasEvent], current: str | None) -> list[str]:
    """The champion's versions as a stack, oldest first, ending with the current champion.

    Gate and promote moves push the new version; a rollback pops back to the version it moved to. Moves
    of other aliases do not count. ``current`` (what the pointer says now) ends the stack even when the
    history misses its move (a store older than the history).
    """
    stack: list[str] = []
    for event in events:
        if event.alias != CHAMPION or event.to_version is None:
            continue
        if event.reason == "rollback":
            while stack and stack[-1] != event.to_version:
                stack.pop()
            if not stack:
                stack.append(event.to_version)
        elif not stack or stack[-1] != event.to_version:
            stack.append(event.to_version)
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)
    return stack


# --- the interface --------------------------------------------------------------------------------------


class ModelStore(ABC):
    """Where versions live and which version each alias names. One backend per kind of location."""

    @property
    @abstractmethod
    def location(self) -> str:
        """The location this store was opened from, as the user wrote it (for messages)."""

    @abstractmethod
    def models(self) -> list[str]:
        """Names of the models in the store, sorted."""

    @abstractmethod
    def versions(self, name: str) -> list[VersionInfo]:
        """Complete versions of ``name``, oldest first; raise :class:`ModelNotFound`."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version for ``name``; raise :class:`ModelNotFound`."""

    @abstractmethod
    def resolve(self, ref: Reference | str) -> Resolved:
        """The version a reference names now; raise a :class:`StoreError` subclass saying what is missing."""

    @abstractmethod
    def card(self, name: str, version: str) -> ModelCard:
        """The model card of one version; raise :class:`VersionNotFound`."""

    @abstractmethod
    def fetch(self, name: str, version: str) -> Path:
        """A local directory holding ``model.joblib`` and ``model.json`` (and the report) of one version."""

    @abstractmethod
    def staging(self, name: str) -> AbstractContextManager[Path]:
        """A fresh local directory to write a new version into; removed when the block ends."""

    @abstractmethod
    def new_version(self, name: str, now: datetime | None = None) -> str:
        """A version id for ``name`` that no existing version has (the UTC time, ``-N`` when taken)."""

    @abstractmethod
    def publish(self, staged: Path, card: ModelCard, *, actor: str | None = None) -> Resolved:
        """Add the version in ``staged`` (it holds ``model.joblib``; the card is written here) and move
        ``latest`` to it. The version appears complete or not at all; versions are immutable."""

    @abstractmethod
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
        """Point ``alias`` at ``version`` and append the event to the history.

        ``expected`` makes the move conditional: it happens only if the alias names that version now
        (None: only if the alias does not exist), else :class:`AliasConflict`. ``latest`` moves only with
        ``reason="publish"``. The actor defaults to :func:`default_actor`.

        Moving ``champion`` to the version ``challenger`` names removes ``challenger`` in the same
        operation (a second event, ``to_version`` None, same reason and actor): the challenger became the
        champion, and a model whose challenger is its champion would have nothing to compare.
        """

    @abstractmethod
    def history(self, name: str) -> list[AliasEvent]:
        """Every alias move of ``name``, oldest first; raise :class:`ModelNotFound`."""

    # --- built on the primitives above: the same for every backend ---

    def champion(self, name: str) -> str | None:
        """The version ``name``'s champion names, or None when it has none; a damaged champion raises."""
        try:
            return self.resolve(Reference(name, alias=CHAMPION)).version
        except AliasNotFound:
            return None

    def lineage(self, name: str) -> list[str]:
        """The champion's versions, oldest first, ending with the current one (:func:`champion_lineage`)."""
        return champion_lineage(self.history(name), self.champion(name))

    def rollback(self, name: str, *, actor: str | None = None) -> AliasEvent:
        """Move ``champion`` back to the version it replaced; again, one step further back.

        Raises :class:`NothingToRollBack` (nothing moved) when there is no earlier champion, and
        :class:`AliasConflict` when the champion moves while this runs.
        """
        current = self.champion(name)
        if current is None:
            raise NothingToRollBack(f"{name} has no champion to roll back")
        stack = champion_lineage(self.history(name), current)
        if len(stack) < 2:
            raise NothingToRollBack(
                f"{name}@champion ({current}) has no earlier champion in its history to roll back to"
            )
        return self.move_alias(
            name,
            CHAMPION,
            stack[-2],
            reason="rollback",
            actor=actor,
            detail=f"rolled back from {current}",
            expected=current,
        )

    def _no_model_message(self, name: str, known: Sequence[str] | None = None) -> str:
        known = self.models() if known is None else known
        listing = ", ".join(known[:20]) if known else "none"
        return f"model {_shown(name)} not found in {self.location} (models: {listing})"
