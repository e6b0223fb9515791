"""The model store: where versions live, which version each alias names, and the history of alias moves.

``open_store(location)`` picks the backend from the location: a directory path is the filesystem store (the
embedded default), ``oci://HOST[:PORT]/NAMESPACE`` the registry store (:mod:`modelberth_core.store.oci`).
Everything else uses the :class:`ModelStore` interface and never asks which backend it holds. See
:mod:`modelberth_core.store.base` for the names (references, aliases, events, errors).
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


def open_store(
    location: str | Path, *, cache_dir: str | Path | None = None, artifact_only: bool = False
) -> ModelStore:
    """The store at ``location``: a directory path (or ``file://`` URL) opens the filesystem store,
    ``oci://HOST[:PORT]/NAMESPACE`` the registry store.

    Options only a registry store uses (a directory has no use for them): ``cache_dir``, where versions
    read from the registry are unpacked (default ``$MODELBERTH_REGISTRY_CACHE``, else
    ``~/.cache/modelberth/registry``), and ``artifact_only``, push images of the artifact alone, without
    the static busybox copier.
    """
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
        from modelberth_core.store.oci import RegistryStore  # httpx and tarfile load only when used

        return RegistryStore(text, cache_dir=cache_dir, artifact_only=artifact_only)
    raise UnsupportedStore(
        f"{text}: unknown store scheme {scheme!r}; use a directory or oci://HOST[:PORT]/NAMESPACE"
    )
