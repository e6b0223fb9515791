"""The registry store: models in an OCI registry (``oci://HOST[:PORT]/NAMESPACE``), which every cluster has.

Model ``NAME`` lives in repository ``NAMESPACE/NAME`` (NAMESPACE may hold slashes: GHCR's ``owner/x``, ECR)::

    VERSION tags           one runnable model image per version (:mod:`modelberth_core.store.image`), whose
                           manifest annotations carry the name, version, creation time and primary score
    alias tags             champion, challenger, latest, ...: the version's manifest put under another tag
    ev.<UTC time>.<rand>   one tiny artifact per alias move: the event as JSON in a manifest annotation

Every write is ordered so nothing is half-published: a version's blobs, then its manifest under the VERSION
tag; a move writes its event artifact first (an immutable, uniquely named tag, so no read-modify-write
and concurrent moves keep every event), then the alias tag. The distribution API has no compare-and-swap:
``move_alias(expected=...)`` checks the alias just before writing it, so two moves racing inside that
window both succeed and **the last tag write wins** (both events stay in the history). The manifest digest
of each version is in its events and in :class:`Resolved` / :class:`VersionInfo`; it cannot be in the card,
which is inside the hashed layer.

Reading a version downloads only its artifact layer, checks its digest, unpacks the artifact into a local
cache (``cache_dir``, else ``$MODELBERTH_REGISTRY_CACHE``, else ``~/.cache/modelberth/registry``) and
returns that directory; the cache is used as is when the registry cannot be reached. Following an alias
costs one ``HEAD`` per poll.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    UnsupportedStore,
    VersionInfo,
    VersionNotFound,
    check_alias,
    check_name,
    check_version,
    record_event,
)
from modelberth_core.store.distribution import Manifest, RegistryClient, RegistryUnavailable
from modelberth_core.store.image import (
    ARTIFACT_LAYER,
    CREATED_ANNOTATION,
    GREATER_ANNOTATION,
    LAYER_ANNOTATION,
    METRIC_ANNOTATION,
    NAME_ANNOTATION,
    OCI_MANIFEST,
    SCORE_ANNOTATION,
    VERSION_ANNOTATION,
    Image,
    ImageError,
    build_image,
    canonical_json,
    empty_config,
)

log = logging.getLogger("modelberth.store")

CACHE_ENV = "MODELBERTH_REGISTRY_CACHE"
"""Where versions read from a registry are unpacked, when the caller names no cache directory."""
EVENT_PREFIX = "ev."
"""Tags of history events: the '.' makes them neither a version nor an alias."""
EVENT_ANNOTATION = "io.modelberth.event"
EVENT_TYPE = "application/vnd.modelberth.alias-event.v1+json"
LAYER_MARKER = ".layer-digest"
"""In a cached version directory: the digest of the layer it was unpacked from."""
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
"""One path component of an OCI repository name."""
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNPACK_RATIO, _UNPACK_FLOOR = 50, 256 << 20


def parse_location(location: str) -> tuple[str, str]:
    """``oci://HOST[:PORT]/NAMESPACE`` -> (``HOST[:PORT]``, ``NAMESPACE``), or :class:`UnsupportedStore`."""
    rest = location[len("oci://") :] if location.lower().startswith("oci://") else location
    usage = "expected oci://HOST[:PORT]/NAMESPACE, e.g. oci://ghcr.io/acme/models or oci://127.0.0.1:5000/mb"
    if any(c in rest for c in "?#@ \\"):
        raise UnsupportedStore(
            f"{location!r}: {usage}; credentials go into the Docker config.json, not the location"
        )
    registry, _, namespace = rest.partition("/")
    namespace = namespace.strip("/")
    if not registry or not namespace:
        raise UnsupportedStore(f"{location!r}: {usage}")
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$", registry):
        raise UnsupportedStore(f"{location!r}: {registry!r} is not a host[:port]; {usage}")
    for part in namespace.split("/"):
        if not _COMPONENT.match(part):
            raise UnsupportedStore(
                f"{location!r}: namespace part {part!r} is not valid in a repository name"
                " (lowercase letters and digits, separated by '.', '_', '__' or '-')"
            )
    return registry, namespace


def default_cache_dir() -> Path:
    """``$MODELBERTH_REGISTRY_CACHE``, else ``$XDG_CACHE_HOME/modelberth/registry`` (``~/.cache``)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelberth" / "registry"


@dataclass(frozen=True, slots=True)
class _Version:
    """A version's manifest as read: what listing, resolving and fetching need."""

    version: str
    manifest: Manifest
    created_at: datetime
    metric: str
    score: float | None
    greater_is_better: bool
    artifact: dict[str, Any]


def _parse_version(manifest: Manifest, name: str, where: str) -> _Version:
    """A modelberth version manifest of model ``name``; raise :class:`StoreError` for anything else."""
    try:
        doc = json.loads(manifest.body)
        notes = doc.get("annotations") or {}
        version = notes[VERSION_ANNOTATION]
        if notes[NAME_ANNOTATION] != name or not re.match(VERSION_PATTERN, version):
            raise ValueError("not this model")
        layers = [layer for layer in doc["layers"] if isinstance(layer, dict)]
        artifact = next(
            (x for x in layers if (x.get("annotations") or {}).get(LAYER_ANNOTATION) == ARTIFACT_LAYER),
            layers[-1],
        )
        if not re.match(r"^sha256:[0-9a-f]{64}$", str(artifact["digest"])) or int(artifact["size"]) < 0:
            raise ValueError("bad layer descriptor")
        score_text = notes.get(SCORE_ANNOTATION) or ""
        created = datetime.fromisoformat(notes[CREATED_ANNOTATION])
        return _Version(
            version=version,
            manifest=manifest,
            created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
            metric=str(notes.get(METRIC_ANNOTATION) or ""),
            score=float(score_text) if score_text else None,
            greater_is_better=notes.get(GREATER_ANNOTATION, "true") == "true",
            artifact=artifact,
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise StoreError(f"{where} is not a modelberth version of {name} (no model annotations)") from None


def _is_removal(manifest: Manifest) -> bool:
    """Whether ``manifest`` is the event artifact of an alias removal (an alias tag on it: no alias)."""
    try:
        doc = json.loads(manifest.body)
        if doc.get("artifactType") != EVENT_TYPE:
            return False
        event = AliasEvent.model_validate_json(doc["annotations"][EVENT_ANNOTATION])
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError):
        return False
    return event.to_version is None


class RegistryStore(ModelStore):
    """Models as images in an OCI registry; see the module docstring for the layout and the ordering."""

    def __init__(
        self, location: str, *, cache_dir: Path | str | None = None, artifact_only: bool = False
    ) -> None:
        self.registry, self.namespace = parse_location(location)
        self._location = location
        self.client = RegistryClient(self.registry)
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        self.cache = root / re.sub(r"[^A-Za-z0-9.-]", "_", self.registry) / self.namespace
        self.artifact_only = artifact_only
        self._by_digest: dict[tuple[str, str], _Version] = {}
        self._version_digests: dict[tuple[str, str], str] = {}
        self._events: dict[tuple[str, str], AliasEvent | None] = {}
        self._event_digests: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"RegistryStore({self._location!r})"

    @property
    def location(self) -> str:
        """The ``oci://`` location as given."""
        return self._location

    # --- reading ---------------------------------------------------------------------------------------

    def _repo(self, name: str) -> str:
        check_name(name)
        if not _COMPONENT.match(name):
            raise InvalidReference(
                f"model name {name!r} cannot be a registry repository name (no '_' at either end, no '___')"
            )
        return f"{self.namespace}/{name}"

    def models(self) -> list[str]:
        """Repositories ``NAMESPACE/NAME`` the registry lists (``/v2/_catalog``) with a valid model name."""
        prefix = self.namespace + "/"
        names = []
        for repo in self.client.catalog():
            rest = repo[len(prefix) :] if repo.startswith(prefix) else ""
            if rest and "/" not in rest and re.match(contract.NAME_PATTERN, rest) and _COMPONENT.match(rest):
                names.append(rest)
        return sorted(set(names))

    def _tags(self, name: str) -> list[str]:
        tags = self.client.tags(self._repo(name))
        if not tags:
            raise ModelNotFound(self._missing_model(name))
        return tags

    def _missing_model(self, name: str) -> str:
        try:
            return self._no_model_message(name)
        except StoreError:  # a registry that does not list repositories
            return f"model {name!r} not found in {self.location}"

    def _version_at(self, name: str, digest: str) -> _Version | None:
        """The version manifest ``digest`` of ``name`` (cached: a digest names immutable bytes), or None
        when there is none or it records an alias removal (an alias tag on it is a removed alias)."""
        known = self._by_digest.get((name, digest))
        if known is not None:
            return known
        if (name, digest) in self._event_digests:
            return None
        manifest = self.client.manifest(self._repo(name), digest)
        if manifest is None:
            return None
        if _is_removal(manifest):
            self._event_digests.add((name, digest))
            return None
        parsed = _parse_version(manifest, name, f"{self.namespace}/{name}@{digest}")
        self._by_digest[(name, digest)] = parsed
        self._version_digests[(name, parsed.version)] = digest
        return parsed

    def _tagged(self, name: str, tag: str) -> _Version | None:
        """What ``tag`` names now (one HEAD, then the cache), or None when the tag does not exist."""
        digest = self.client.manifest_digest(self._repo(name), tag)
        return None if digest is None else self._version_at(name, digest)

    def _version(self, name: str, version: str) -> _Version:
        check_version(version)
        digest = self._version_digests.get((name, version))
        found = self._version_at(name, digest) if digest else self._tagged(name, version)
        if found is None or found.version != version:
            raise VersionNotFound(self._no_version_message(name, version))
        return found

    def _no_version_message(self, name: str, version: str) -> str:
        versions = sorted(t for t in self._tags(name) if re.match(VERSION_PATTERN, t))
        newest = f"newest: {versions[-1]}" if versions else "it has none"
        return f"{name} has no version {version!r} ({len(versions)} versions, {newest})"

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version tag, oldest first, with its score from the manifest annotations."""
        out = []
        for tag in sorted(t for t in self._tags(name) if re.match(VERSION_PATTERN, t)):
            try:
                found = self._version(name, tag)
            except StoreError as exc:
                log.warning(
                    "unreadable version skipped", extra={"model": name, "tag": tag, "error": str(exc)}
                )
                continue
            out.append(
                VersionInfo(
                    version=found.version,
                    created_at=found.created_at,
                    metric=found.metric,
                    score=found.score,
                    greater_is_better=found.greater_is_better,
                    digest=found.manifest.digest,
                )
            )
        return out

    def aliases(self, name: str) -> dict[str, str]:
        """Every alias tag and the version it names."""
        out: dict[str, str] = {}
        for tag in self._tags(name):
            if not re.match(ALIAS_PATTERN, tag):
                continue
            try:
                found = self._tagged(name, tag)
            except StoreError as exc:
                log.warning(
                    "unreadable alias skipped", extra={"model": name, "alias": tag, "error": str(exc)}
                )
                continue
            if found is not None:
                out[tag] = found.version
        return dict(sorted(out.items()))

    def resolve(self, ref: Reference | str) -> Resolved:
        """What a reference names: an alias costs one HEAD, a digest is checked against the bytes."""
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        name = ref.name
        if ref.digest is not None:
            found = self._version_at(name, ref.digest)
            if found is None:
                self._tags(name)  # ModelNotFound first
                raise VersionNotFound(f"{name} has no manifest {ref.digest} in {self.location}")
            return Resolved(name, found.version, found.manifest.digest)
        if ref.version is not None:
            found = self._version(name, ref.version)
            return Resolved(name, found.version, found.manifest.digest)
        assert ref.alias is not None
        found = self._tagged(name, ref.alias)
        if found is None:
            known = ", ".join(self.aliases(name)) or "none"
            raise AliasNotFound(f"{name} has no alias {ref.alias!r} (aliases: {known})")
        return Resolved(name, found.version, found.manifest.digest)

    def card(self, name: str, version: str) -> ModelCard:
        """The card, read from the version's artifact (fetched into the cache once)."""
        return contract.read_card(self.fetch(name, version))

    def _cached(self, name: str, version: str, layer: str | None) -> Path | None:
        final = self.cache / name / version
        try:
            marker = (final / LAYER_MARKER).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if (layer is None or marker == layer) and (final / CARD_FILE).is_file():
            return final
        return None

    def fetch(self, name: str, version: str) -> Path:
        """The version unpacked in the local cache: only its artifact layer is downloaded, digest checked."""
        self._repo(name)
        check_version(version)
        try:
            found = self._version(name, version)
        except RegistryUnavailable:
            cached = self._cached(name, version, None)
            if cached is None:
                raise
            log.warning(
                "registry unreachable: using the cached version",
                extra={"model": name, "version": version, "store": self.location},
            )
            return cached
        layer = str(found.artifact["digest"])
        cached = self._cached(name, version, layer)
        if cached is not None:
            return cached
        return self._download(name, found, layer)

    def _download(self, name: str, found: _Version, layer: str) -> Path:
        base = self.cache / name
        try:
            base.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(dir=base, prefix=".fetch-"))
        except OSError as exc:
            raise StoreError(f"cannot write the registry cache {base} ({exc.strerror})") from exc
        try:
            archive = work / "layer.tar.gz"
            size = int(found.artifact["size"])
            with archive.open("wb") as sink:
                self.client.pull_blob(self._repo(name), layer, size, sink)
            unpacked = work / found.version
            self._unpack(archive, unpacked, name, found.version, size)
            card = contract.read_card(unpacked)
            if card.name != name or card.version != found.version:
                raise StoreError(f"{name}:{found.version} holds the card of {card.name}:{card.version}")
            contract.verify_checksum(unpacked, card)
            (unpacked / LAYER_MARKER).write_text(layer + "\n", encoding="utf-8")
            return self._install(unpacked, base / found.version)
        except contract.ContractError as exc:
            raise StoreError(f"{name}:{found.version} from {self.location}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot write the registry cache {base} ({exc.strerror})") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _unpack(self, archive: Path, dest: Path, name: str, version: str, size: int) -> None:
        """The regular files under ``models/NAME/VERSION/`` only; nothing else leaves the archive."""
        prefix = f"models/{name}/{version}/"
        limit = max(_UNPACK_FLOOR, size * _UNPACK_RATIO)
        total = 0
        dest.mkdir()
        try:
            with tarfile.open(archive, mode="r:gz") as tar:
                for member in tar:
                    path = member.name.removeprefix("./")
                    if not path.startswith(prefix):
                        continue
                    leaf = path[len(prefix) :]
                    if not member.isreg() or not _FILE.match(leaf):
                        if member.isdir() and leaf.strip("/") == "":
                            continue
                        raise StoreError(
                            f"{name}:{version}: the artifact layer holds {path!r}, not a plain file"
                        )
                    total += member.size
                    if total > limit:
                        raise StoreError(f"{name}:{version}: the artifact unpacks to more than {limit} bytes")
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, (dest / leaf).open("xb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise StoreError(f"{name}:{version}: the artifact layer is not a valid tar.gz ({exc})") from None
        if not (dest / CARD_FILE).is_file():
            raise StoreError(f"{name}:{version}: the artifact layer holds no {prefix}{CARD_FILE}")

    def _install(self, unpacked: Path, final: Path) -> Path:
        """Rename the checked version into place; a stale copy (another layer) is replaced."""
        unpacked.chmod(0o755)
        try:
            unpacked.rename(final)
        except OSError:
            if self._cached(final.parent.name, final.name, (unpacked / LAYER_MARKER).read_text().strip()):
                return final  # another process unpacked the same layer first
            stale = final.with_name(f".stale-{final.name}-{secrets.token_hex(4)}")
            final.rename(stale)
            unpacked.rename(final)
            shutil.rmtree(stale, ignore_errors=True)
        return final

    def _event_at(self, name: str, tag: str) -> AliasEvent | None:
        key = (name, tag)
        if key in self._events:
            return self._events[key]
        manifest = self.client.manifest(self._repo(name), tag)
        event = None
        if manifest is not None:
            try:
                notes = json.loads(manifest.body).get("annotations") or {}
                event = AliasEvent.model_validate_json(notes[EVENT_ANNOTATION])
                if event.model != name:
                    raise ValueError("another model's event")
            except (ValueError, KeyError, TypeError, AttributeError, ValidationError):
                log.warning("unreadable history event skipped", extra={"model": name, "tag": tag})
                event = None
        self._events[key] = event  # events are immutable: read each once
        return event

    def history(self, name: str) -> list[AliasEvent]:
        """Every event artifact of ``name``, oldest first (their tags sort by time)."""
        tags = sorted(t for t in self._tags(name) if t.startswith(EVENT_PREFIX))
        events = [self._event_at(name, tag) for tag in tags]
        return sorted((e for e in events if e is not None), key=lambda e: e.at)

    # --- writing ---------------------------------------------------------------------------------------

    def staging(self, name: str) -> AbstractContextManager[Path]:
        """A local temporary directory (beside the cache) to write a version into before pushing it."""
        return self._staging(check_name(name))

    @contextmanager
    def _staging(self, name: str) -> Iterator[Path]:
        base = self.cache / name
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=base, prefix=".staging-"))
        except OSError as exc:
            raise StoreError(f"cannot write the registry cache {base} ({exc.strerror})") from exc
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def new_version(self, name: str, now: datetime | None = None) -> str:
        """The UTC timestamp of ``now``, with ``-2``, ``-3``... when a version tag of that second exists."""
        try:
            taken = set(self._tags(name))
        except ModelNotFound:
            taken = set()
        first = contract.new_version(now)
        version, n = first, 1
        while version in taken:
            n += 1
            version = f"{first}-{n}"
        return version

    def push(self, name: str, image: Image) -> tuple[int, int]:
        """Every blob the registry lacks, then nothing else; (blobs uploaded, bytes uploaded)."""
        repo = self._repo(name)
        uploaded = size = 0
        for blob in image.blobs:
            if not self.client.has_blob(repo, blob.digest):
                self.client.push_blob(repo, blob)
                uploaded, size = uploaded + 1, size + blob.size
        return uploaded, size

    def publish(self, staged: Path, card: ModelCard, *, actor: str | None = None) -> Resolved:
        """Build the version's image, push its blobs, then its manifest as tag VERSION, then move ``latest``.

        Re-publishing the same files is a no-op (the image is byte-identical); a different image under an
        existing version tag is refused (versions are immutable).
        """
        name, version = check_name(card.name), check_version(card.version)
        repo = self._repo(name)
        contract.verify_checksum(staged, card)
        payload = card.model_dump(mode="json")
        ModelCard.model_validate(payload)
        (staged / CARD_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        with tempfile.TemporaryDirectory(dir=staged.parent, prefix=".image-") as work:
            try:
                image = build_image(staged, card, Path(work), artifact_only=self.artifact_only)
            except ImageError as exc:
                raise StoreError(str(exc)) from None
            existing = self.client.manifest_digest(repo, version)
            if existing is not None and existing != image.digest:
                raise StoreError(
                    f"{repo}:{version} already exists as {existing[:19]}…; versions are immutable"
                )
            previous = self._latest(name)
            uploaded, size = self.push(name, image)
            if existing is None:
                self.client.put_manifest(repo, version, image.manifest, OCI_MANIFEST)
            log.info(
                "version pushed",
                extra={
                    "model": name,
                    "version": version,
                    "digest": image.digest,
                    "blobs_uploaded": uploaded,
                    "bytes_uploaded": size,
                    "store": self.location,
                },
            )
            manifest = Manifest(image.manifest, image.digest, OCI_MANIFEST)
            self._by_digest[(name, image.digest)] = _parse_version(manifest, name, f"{repo}:{version}")
            self._version_digests[(name, version)] = image.digest
            self._cache_staged(
                staged, name, version, str(self._by_digest[(name, image.digest)].artifact["digest"])
            )
        if previous is None or previous.version != version:
            self._move(
                name,
                LATEST,
                self._by_digest[(name, image.digest)],
                previous=previous.version if previous else None,
                reason="publish",
                actor=actor,
            )
        return Resolved(name, version, image.digest)

    def _latest(self, name: str) -> _Version | None:
        try:
            return self._tagged(name, LATEST)
        except RegistryUnavailable:
            raise
        except StoreError as exc:  # another image under the tag: publishing repairs it
            log.warning("replacing an unreadable latest", extra={"model": name, "error": str(exc)})
            return None

    def _cache_staged(self, staged: Path, name: str, version: str, layer: str) -> None:
        """Keep the pushed files in the cache, so reading the version back downloads nothing."""
        try:
            base = self.cache / name
            tmp = Path(tempfile.mkdtemp(dir=base, prefix=".fetch-"))
            unpacked = tmp / version
            shutil.copytree(staged, unpacked)
            (unpacked / LAYER_MARKER).write_text(layer + "\n", encoding="utf-8")
            self._install(unpacked, base / version)
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:  # only a cache: the version is in the registry
            log.warning("could not cache the pushed version", extra={"model": name, "error": str(exc)})

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
        """Write the event, then the alias tag. ``expected`` is checked just before the tag write: the
        registry has no compare-and-swap, so a move racing inside that window wins if it writes last."""
        check_alias(alias)
        check_version(version)
        if (alias == LATEST) != (reason == "publish"):
            raise InvalidReference(
                "latest is moved only by publishing a new version"
                if alias == LATEST
                else f"reason 'publish' moves only latest, not {alias!r}"
            )
        target = self._version(name, version)
        try:
            current_version = self._tagged(name, alias)
            current = current_version.version if current_version else None
        except RegistryUnavailable:
            raise
        except StoreError as exc:  # a damaged alias (another image under its tag): moving it repairs it
            log.warning(
                "replacing an unreadable alias", extra={"model": name, "alias": alias, "error": str(exc)}
            )
            current = None
        if expected is not UNCHECKED and current != expected:
            raise AliasConflict(
                f"{name}@{alias} names {current or 'nothing'} now, not {expected or 'nothing'}"
                " (it moved meanwhile); nothing was moved"
            )
        event = self._move(name, alias, target, previous=current, reason=reason, actor=actor, detail=detail)
        if alias == CHAMPION:
            self._clear_challenger(name, target.version, reason=reason, actor=actor)
        return event

    def _clear_challenger(self, name: str, champion: str, *, reason: Reason, actor: str | None) -> None:
        """After the champion moved to ``champion``: remove a challenger naming it.

        The distribution API deletes manifests, not tags (and deleting the version's manifest would take
        the champion tag with it), so the ``challenger`` tag is put on the removal's own event artifact,
        which every reader takes for "no such alias". Like any move, it is not atomic with the champion's:
        a failure here leaves a challenger equal to the champion, which shadowing ignores.
        """
        try:
            found = self._tagged(name, CHALLENGER)
        except RegistryUnavailable:
            raise
        except StoreError:  # a damaged challenger is not this move's business
            return
        if found is None or found.version != champion:
            return
        event = record_event(
            name,
            CHALLENGER,
            champion,
            None,
            reason=reason,
            actor=actor,
            detail=f"cleared: {champion} is the champion now",
        )
        body = self._push_event(name, event)
        self.client.put_manifest(self._repo(name), CHALLENGER, body, OCI_MANIFEST)

    def _move(
        self,
        name: str,
        alias: str,
        target: _Version,
        *,
        previous: str | None,
        reason: Reason,
        actor: str | None,
        detail: str | None = None,
    ) -> AliasEvent:
        """Push the event artifact (its own new tag), then put the version's manifest under ``alias``."""
        event = record_event(
            name,
            alias,
            previous,
            target.version,
            reason=reason,
            actor=actor,
            detail=detail,
            digest=target.manifest.digest,
        )
        self._push_event(name, event)
        self.client.put_manifest(
            self._repo(name), alias, target.manifest.body, target.manifest.media_type or OCI_MANIFEST
        )
        return event

    def _push_event(self, name: str, event: AliasEvent) -> bytes:
        """Push ``event`` as an artifact under its own new ``ev.`` tag; its manifest bytes."""
        repo = self._repo(name)
        config = empty_config()
        if not self.client.has_blob(repo, config.digest):
            self.client.push_blob(repo, config)
        body = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": EVENT_TYPE,
                "config": config.descriptor(),
                "layers": [config.descriptor()],
                "annotations": {EVENT_ANNOTATION: event.model_dump_json()},
            }
        )
        tag = f"{EVENT_PREFIX}{event.at:%Y%m%dT%H%M%S.%f}Z.{secrets.token_hex(4)}"
        self.client.put_manifest(repo, tag, body, OCI_MANIFEST)
        self._events[(name, tag)] = event
        return body
