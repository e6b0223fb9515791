"""A model version as a runnable OCI image, built without a Docker engine and byte-reproducible.

The layout is the one ``docker/model/Dockerfile`` produces::

    /bin/busybox                     Debian's static busybox (the copier's shell, cp, sha256sum)
    /bin/copy-model                  the copier script (entrypoint: copy-model /models /mnt/models)
    /models/NAME/VERSION/...         the artifact: model.joblib, model.json, report.html, examples.csv
    /models/NAME/latest              one line: VERSION (copy-model copies models that have it)

in two gzipped layers, the copier first (identical for every model and version, so a registry stores it
once) and the artifact last, each marked with the ``io.modelberth.layer`` annotation so a reader pulls
only the artifact. ``artifact_only`` builds the artifact layer alone: enough for an image volume and for
the registry store, not runnable.

Every byte is a function of the version's files: entries sorted, uid/gid 0 with no names, mode 0755 for
directories and executables and 0644 for files, mtime 0, PAX tar, gzip with mtime 0 and no file name,
JSON with sorted keys. Pushing the same version twice therefore pushes the same digests (a no-op).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import re
import struct
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from modelberth_core import contract
from modelberth_core.contract import ModelCard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

LAYER_ANNOTATION = "io.modelberth.layer"
"""On a layer descriptor: ``copier`` or ``artifact``."""
ARTIFACT_LAYER = "artifact"
COPIER_LAYER = "copier"
NAME_ANNOTATION = "io.modelberth.model.name"
VERSION_ANNOTATION = "org.opencontainers.image.version"
CREATED_ANNOTATION = "org.opencontainers.image.created"
METRIC_ANNOTATION = "io.modelberth.model.metric"
SCORE_ANNOTATION = "io.modelberth.model.score"
GREATER_ANNOTATION = "io.modelberth.model.greater-is-better"
SHA256_ANNOTATION = "io.modelberth.model.sha256"

BUSYBOX_ENV = "MODELBERTH_BUSYBOX"
"""Where the static busybox is, when not at /bin/busybox."""
DEFAULT_BUSYBOX = Path("/bin/busybox")
COPY_MODEL = Path(__file__).with_name("copy-model")
"""The copier script (docker/model/copy-model links here, so both image builds use the same file)."""
SOURCE = "https://github.com/modelberth/modelberth"
UID = "10001:10001"
_CHUNK = 1 << 20
_ELF_MACHINES = {
    3: "386",
    8: "mips",
    20: "ppc",
    21: "ppc64le",
    22: "s390x",
    40: "arm",
    62: "amd64",
    183: "arm64",
}
_ELF_MACHINES[243] = "riscv64"
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ImageError(Exception):
    """The image cannot be built (no static busybox, an odd file in the artifact); one line to act on."""


@dataclass(frozen=True, slots=True)
class Blob:
    """Content the registry stores under its digest: in a file (layers) or in memory (config)."""

    media_type: str
    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def descriptor(self) -> dict[str, Any]:
        """The OCI descriptor naming this blob."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


@dataclass(frozen=True, slots=True)
class Image:
    """What is pushed for one version: the blobs (layers, then config) and the manifest."""

    layers: list[Blob]
    config: Blob
    manifest: bytes
    digest: str

    @property
    def blobs(self) -> list[Blob]:
        """Every blob the manifest names, layers first (what must be in before the manifest)."""
        return [*self.layers, self.config]


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces: the same value always gives the same bytes (and digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def empty_config() -> Blob:
    """The OCI empty descriptor's blob (``{}``), the config of artifacts that are not images."""
    return Blob(OCI_EMPTY, sha256_digest(b"{}"), 2, data=b"{}")


# --- the copier ------------------------------------------------------------------------------------------


def elf_architecture(path: Path) -> str:
    """The OCI architecture of a static ELF executable; raise :class:`ImageError` if it is not one."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF":
                raise ImageError(f"{path} is not an ELF executable")
            is64, little = head[4] == 2, head[5] == 1
            end = "<" if little else ">"
            machine = struct.unpack(end + "H", head[18:20])[0]
            if is64:
                phoff = struct.unpack(end + "Q", head[32:40])[0]
                phentsize, phnum = struct.unpack(end + "HH", head[54:58])
            else:
                phoff = struct.unpack(end + "I", head[28:32])[0]
                phentsize, phnum = struct.unpack(end + "HH", head[42:46])
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
    except OSError as exc:
        raise ImageError(f"cannot read {path} ({exc.strerror})") from None
    for i in range(phnum):
        (kind,) = struct.unpack(end + "I", table[i * phentsize : i * phentsize + 4])
        if kind == 3:  # PT_INTERP: needs a dynamic loader and a libc the image does not have
            raise ImageError(
                f"{path} is dynamically linked (Debian's busybox package): the model image has no libc;"
                " install busybox-static (apt-get install busybox-static), or push with --artifact-only"
            )
    arch = _ELF_MACHINES.get(machine)
    if arch is None:
        raise ImageError(f"{path}: unknown ELF machine {machine}")
    if arch == "ppc64le" and not little:
        arch = "ppc64"
    return arch


def find_busybox() -> Path:
    """The static busybox to copy into the image: ``$MODELBERTH_BUSYBOX``, else /bin/busybox."""
    configured = os.environ.get(BUSYBOX_ENV)
    path = Path(configured) if configured else DEFAULT_BUSYBOX
    if not path.is_file():
        where = f"{BUSYBOX_ENV}={configured}" if configured else str(DEFAULT_BUSYBOX)
        raise ImageError(
            f"the model image's copier needs Debian's static busybox, and {where} does not exist:"
            " apt-get install busybox-static (make install-system), or push the artifact alone with"
            " --artifact-only (enough for the registry store and image volumes)"
        )
    return path


# --- reproducible layers ----------------------------------------------------------------------------------


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: BinaryIO | io.RawIOBase | gzip.GzipFile) -> None:
        super().__init__()
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += len(view)
        self.sink.write(view)
        return len(view)


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str
    mode: int
    source: Path | None = None
    data: bytes | None = None

    @property
    def is_dir(self) -> bool:
        return self.source is None and self.data is None


def _dirs(*paths: str) -> list[_Entry]:
    return [_Entry(p, 0o755) for p in paths]


def _write_layer(entries: Iterable[_Entry], dest: Path, annotation: str) -> tuple[Blob, str]:
    """Write a gzipped tar of ``entries`` (in order) to ``dest``; the blob and its diff id."""
    with dest.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for entry in entries:
                    info = tarfile.TarInfo(entry.path + ("/" if entry.is_dir else ""))
                    info.mode, info.mtime = entry.mode, 0
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if entry.is_dir:
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif entry.data is not None:
                        info.size = len(entry.data)
                        tar.addfile(info, io.BytesIO(entry.data))
                    else:
                        assert entry.source is not None
                        with entry.source.open("rb") as fh:
                            info.size = os.fstat(fh.fileno()).st_size
                            tar.addfile(info, fh)
    blob = Blob(
        OCI_LAYER_GZIP,
        "sha256:" + compressed.sha.hexdigest(),
        compressed.size,
        path=dest,
        annotations={LAYER_ANNOTATION: annotation},
    )
    return blob, "sha256:" + plain.sha.hexdigest()


def artifact_files(version_dir: Path) -> list[Path]:
    """The version's files, sorted; anything but plain files with plain names is refused."""
    files = []
    for path in sorted(version_dir.iterdir()):
        if path.name.startswith("."):
            continue  # bookkeeping of the stores (a cache marker), never part of the artifact
        if path.is_symlink() or not path.is_file() or not _FILE_NAME.match(path.name):
            raise ImageError(f"{path}: a version holds only plain files with plain names")
        files.append(path)
    if not (version_dir / contract.MODEL_FILE).is_file() or not (version_dir / contract.CARD_FILE).is_file():
        raise ImageError(f"{version_dir}: no {contract.MODEL_FILE} and {contract.CARD_FILE} to package")
    return files


def build_image(version_dir: Path, card: ModelCard, work: Path, *, artifact_only: bool = False) -> Image:
    """The image of one version (its files in ``version_dir``), its layers written into ``work``."""
    name, version = card.name, card.version
    layers: list[Blob] = []
    diff_ids: list[str] = []
    history: list[dict[str, Any]] = []
    created = card.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if artifact_only:
        arch = _ARCHES.get(platform.machine().lower(), platform.machine().lower())
    else:
        busybox = find_busybox()
        arch = elf_architecture(busybox)
        copier = [
            *_dirs("bin"),
            _Entry("bin/busybox", 0o755, source=busybox),
            _Entry("bin/copy-model", 0o755, source=COPY_MODEL),
        ]
        blob, diff_id = _write_layer(copier, work / "copier.tar.gz", COPIER_LAYER)
        layers.append(blob)
        diff_ids.append(diff_id)
        history.append({"created": created, "created_by": "modelberth: static busybox + copy-model"})
    base = f"models/{name}/{version}"
    artifact = [
        *_dirs("models", f"models/{name}", base),
        *(_Entry(f"{base}/{path.name}", 0o644, source=path) for path in artifact_files(version_dir)),
        _Entry(f"models/{name}/{contract.LATEST_FILE}", 0o644, data=f"{version}\n".encode()),
    ]
    blob, diff_id = _write_layer(artifact, work / "artifact.tar.gz", ARTIFACT_LAYER)
    layers.append(blob)
    diff_ids.append(diff_id)
    history.append({"created": created, "created_by": f"modelberth: model {name} version {version}"})

    labels = {
        "org.opencontainers.image.title": f"modelberth-model-{name}",
        "org.opencontainers.image.description": f"modelberth model {name} version {version}",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": card.git_sha or "unknown",
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.source": SOURCE,
        "io.modelberth.model.name": name,
        "io.modelberth.model.version": version,
        "io.modelberth.model.sha256": card.model_sha256,
    }
    runtime: dict[str, Any] = {"Labels": labels, "WorkingDir": "/"}
    if not artifact_only:
        runtime.update(User=UID, Entrypoint=["/bin/copy-model"], Cmd=["/models", "/mnt/models"])
    config_data = canonical_json(
        {
            "architecture": arch,
            "os": "linux",
            "created": created,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
    )
    config = Blob(OCI_CONFIG, sha256_digest(config_data), len(config_data), data=config_data)
    score = card.metrics.test.get(card.metrics.primary)
    annotations = {
        NAME_ANNOTATION: name,
        VERSION_ANNOTATION: version,
        CREATED_ANNOTATION: card.created_at.isoformat(),
        METRIC_ANNOTATION: card.metrics.primary,
        SCORE_ANNOTATION: "" if score is None else repr(float(score)),
        GREATER_ANNOTATION: "true" if card.metrics.greater_is_better else "false",
        SHA256_ANNOTATION: card.model_sha256,
    }
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor() for layer in layers],
            "annotations": annotations,
        }
    )
    return Image(layers, config, manifest, sha256_digest(manifest))
