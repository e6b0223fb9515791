"""The model store: where versions live, which version each alias names, and the history of alias moves.

``open_store(location)`` picks the backend from the location: a directory path is the filesystem store (the
embedded default). Everything else uses the :class:`ModelStore` interface and never asks which backend it
holds. See :mod:`modelberth_core.store.base` for the names (references, aliases, events, errors).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from modelberth_core.store.base import (
    ALIAS_PATTERN,
    CHALLENGER,
    CHAMPION,
    DIGEST_PATTERN,
    LATEST,
    REFERENCE_FORMS,
    RESERVED_ALIASES,
    UNCHECKED,
    AliasConflict,
    AliasEvent,
    AliasNotFound,
    InvalidReference,
    ModelNotFound,
    ModelStore,
    NothingToRollBack,
    Reason,
    Reference,
    Resolved,
    StoreError,
    Unchecked,
    UnsupportedStore,
    VersionInfo,
    VersionNotFound,
    champion_lineage,
    check_alias,
    check_name,
    check_version,
    default_actor,
)
from modelberth_core.store.filesystem import FilesystemStore

__all__ = [
    "ALIAS_PATTERN",
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_LOCATION",
    "DIGEST_PATTERN",
    "LATEST",
    "REFERENCE_FORMS",
    "RESERVED_ALIASES",
    "STORE_ENV",
    "UNCHECKED",
    "AliasConflict",
    "AliasEvent",
    "AliasNotFound",
    "FilesystemStore",
    "InvalidReference",
    "ModelNotFound",
    "ModelStore",
    "NothingToRollBack",
    "Reason",
    "Reference",
    "Resolved",
    "StoreError",
    "Unchecked",
    "UnsupportedStore",
    "VersionInfo",
    "VersionNotFound",
    "champion_lineage",
    "check_alias",
    "check_name",
    "check_version",
    "default_actor",
    "default_location",
    "open_store",
]

STORE_ENV = "MODELBERTH_STORE"
"""The environment variable every command reads the store location from when no flag gives it."""
DEFAULT_LOCATION = "artifacts/models"
"""The store of a fresh checkout: a directory relative to the working directory."""

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def default_location(explicit: str | Path | None = None) -> str:
    """``explicit`` if given, else ``$MODELBERTH_STORE``, else ``artifacts/models``."""
    if explicit is not None and str(explicit) != "":
        return str(explicit)
    return os.environ.get(STORE_ENV) or DEFAULT_LOCATION


def open_store(location: str | Path) -> ModelStore:
    """The store at ``location``: a directory path (or ``file://`` URL) opens the filesystem store."""
    text = str(location)
    if not text.strip():
        raise UnsupportedStore("empty store location; give a directory (e.g. artifacts/models)")
    match = _SCHEME.match(text)
    if match is None:
        return FilesystemStore(Path(text))
    scheme = match.group(1).lower()
    if scheme == "file":
        return FilesystemStore(Path(text[len("file://") :]))
    if scheme == "oci":
        raise UnsupportedStore(
            f"{text}: OCI registry stores (oci://HOST/NAMESPACE) are not supported by this version of"
            " modelberth; use a directory"
        )
    raise UnsupportedStore(f"{text}: unknown store scheme {scheme!r}; use a directory")
