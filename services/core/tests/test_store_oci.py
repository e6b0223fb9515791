"""The registry store against a real registry (Debian's docker-registry, started per test on a free port).

What a user relies on: each version is a runnable image tagged VERSION with the Dockerfile's layout, aliases
are tags, every move is its own event artifact, references (alias, version, digest) resolve, reading pulls
only the artifact layer into a local cache, and every bad day (corrupt blob, dead registry, wrong password,
vanished tag) is one clear error with nothing half-published.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelberth_core import contract
from modelberth_core.store import (
    CHALLENGER,
    CHAMPION,
    LATEST,
    AliasConflict,
    AliasNotFound,
    InvalidReference,
    ModelNotFound,
    Reference,
    Resolved,
    StoreError,
    UnsupportedStore,
    VersionNotFound,
    open_store,
)
from modelberth_core.store.distribution import (
    AccessDenied,
    DigestMismatch,
    RegistryUnavailable,
    plain_http_allowed,
)
from modelberth_core.store.image import BUSYBOX_ENV, COPY_MODEL, build_image
from modelberth_core.store.oci import RegistryStore, parse_location
from testkit.registry import Registry, TokenService, docker_config

pytestmark = pytest.mark.integration

Publish = Callable[..., Resolved]
STATIC_BUSYBOX = Path("/bin/busybox")


def _store(registry: Registry, tmp_path: Path, namespace: str = "mb", **kwargs: Any) -> RegistryStore:
    store = open_store(registry.location(namespace), cache_dir=tmp_path / "cache", **kwargs)
    assert isinstance(store, RegistryStore)
    return store


def _manifest(registry: Registry, repo: str, ref: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
    response = httpx.get(
        f"{registry.url}/v2/{repo}/manifests/{ref}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=5.0,
        **kwargs,
    )
    response.raise_for_status()
    return response.json(), "sha256:" + hashlib.sha256(response.content).hexdigest()


def _blob(registry: Registry, repo: str, digest: str) -> bytes:
    response = httpx.get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=5.0, follow_redirects=True)
    response.raise_for_status()
    return response.content


def _tar_entries(layer: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text
    assert "\n" not in text, text
    return text


@pytest.fixture(autouse=True)
def _static_busybox(monkeypatch: pytest.MonkeyPatch) -> None:
    if not STATIC_BUSYBOX.is_file():
        pytest.fail("these tests need Debian's busybox-static at /bin/busybox (make install-system)")
    monkeypatch.delenv(BUSYBOX_ENV, raising=False)


# --- the image -------------------------------------------------------------------------------------------


def test_a_version_is_a_runnable_image_with_the_dockerfile_layout(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    published = publish_version(store, "iris", 0.9)
    version = published.version
    tags = oci_registry.tags("mb/iris")
    assert version in tags
    assert LATEST in tags
    manifest, digest = _manifest(oci_registry, "mb/iris", version)
    assert published.digest == digest
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["annotations"]["io.modelberth.layer"] for layer in manifest["layers"]] == [
        "copier",
        "artifact",
    ]
    config = json.loads(_blob(oci_registry, "mb/iris", manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/bin/copy-model"]
    assert config["config"]["Cmd"] == ["/models", "/mnt/models"]
    assert config["config"]["User"] == "10001:10001"
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["config"]["Labels"]["io.modelberth.model.version"] == version

    copier_layer = _blob(oci_registry, "mb/iris", manifest["layers"][0]["digest"])
    copier = _tar_entries(copier_layer)
    assert sorted(copier) == ["bin", "bin/busybox", "bin/copy-model"]
    with tarfile.open(fileobj=io.BytesIO(copier_layer), mode="r:gz") as tar:
        busybox = tar.extractfile("bin/busybox")
        assert busybox is not None
        assert busybox.read() == STATIC_BUSYBOX.read_bytes()
    assert copier["bin/copy-model"].mode == 0o755
    assert copier["bin/copy-model"].size == COPY_MODEL.stat().st_size

    layer = _blob(oci_registry, "mb/iris", manifest["layers"][1]["digest"])
    entries = _tar_entries(layer)
    base = f"models/iris/{version}"
    assert sorted(entries) == sorted(
        ["models", "models/iris", base, f"{base}/model.joblib", f"{base}/model.json", "models/iris/latest"]
    )
    for info in entries.values():  # reproducible: no owner, no time
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "", "", 0)
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(b)).hexdigest() for b in (copier_layer, layer)]
    assert config["rootfs"]["diff_ids"] == diff_ids
    # The manifest digest is in the version's publish event and in what the store lists.
    event = store.history("iris")[-1]
    assert (event.alias, event.reason, event.to_version, event.digest) == (LATEST, "publish", version, digest)
    assert [v.digest for v in store.versions("iris")] == [digest]


def test_the_same_artifact_gives_the_same_bytes_and_republishing_is_a_no_op(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    published = publish_version(store, "iris", 0.9)
    version_dir = store.fetch("iris", published.version)
    card = contract.read_card(version_dir)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build_image(version_dir, card, tmp_path / "a")
    second = build_image(version_dir, card, tmp_path / "b")
    assert first.digest == second.digest == published.digest
    assert [b.digest for b in first.blobs] == [b.digest for b in second.blobs]
    assert (tmp_path / "a" / "artifact.tar.gz").read_bytes() == (
        tmp_path / "b" / "artifact.tar.gz"
    ).read_bytes()

    assert store.push("iris", second) == (0, 0)  # every blob is there: nothing uploaded
    events = len(store.history("iris"))
    with store.staging("iris") as staged:
        for path in version_dir.iterdir():
            if not path.name.startswith("."):
                (staged / path.name).write_bytes(path.read_bytes())
        again = store.publish(staged, card)
    assert again == published
    assert len(store.history("iris")) == events  # latest already named it: no event, no move


def test_artifact_only_pushes_the_artifact_alone(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BUSYBOX_ENV, str(tmp_path / "no-busybox"))  # not needed, not read
    store = _store(oci_registry, tmp_path, artifact_only=True)
    published = publish_version(store, "iris", 0.9)
    manifest, _ = _manifest(oci_registry, "mb/iris", published.version)
    assert [layer["annotations"]["io.modelberth.layer"] for layer in manifest["layers"]] == ["artifact"]
    config = json.loads(_blob(oci_registry, "mb/iris", manifest["config"]["digest"]))
    assert "Entrypoint" not in config["config"]
    assert contract.read_card(_store(oci_registry, tmp_path / "other").fetch("iris", published.version))


def test_without_a_static_busybox_nothing_is_pushed_and_the_error_says_what_to_do(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(oci_registry, tmp_path)
    monkeypatch.setenv(BUSYBOX_ENV, str(tmp_path / "missing"))
    with pytest.raises(StoreError) as missing:
        publish_version(store, "iris", 0.9)
    assert "busybox-static" in _one_line(missing.value)
    assert "--artifact-only" in str(missing.value)
    dynamic = Path(os.path.realpath("/usr/bin/env"))  # a dynamically linked executable
    monkeypatch.setenv(BUSYBOX_ENV, str(dynamic))
    with pytest.raises(StoreError, match="dynamically linked") as linked:
        publish_version(store, "iris", 0.9)
    _one_line(linked.value)
    assert httpx.get(f"{oci_registry.url}/v2/mb/iris/tags/list", timeout=5).status_code == 404


# --- references, aliases, history ------------------------------------------------------------------------


def test_aliases_are_tags_and_every_reference_form_resolves(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path, namespace="acme/team/models")  # a namespace with slashes
    v1 = publish_version(store, "iris", 0.90)
    v2 = publish_version(store, "iris", 0.95)
    store.move_alias("iris", CHAMPION, v1.version, reason="gate", expected=None)
    store.move_alias("iris", CHALLENGER, v2.version, reason="gate")
    assert (
        "acme/team/models/iris"
        in httpx.get(f"{oci_registry.url}/v2/_catalog", timeout=5).json()["repositories"]
    )
    assert store.models() == ["iris"]
    assert store.aliases("iris") == {CHALLENGER: v2.version, CHAMPION: v1.version, LATEST: v2.version}
    assert store.resolve("iris") == Resolved("iris", v1.version, v1.digest)
    assert store.resolve("iris@challenger").version == v2.version
    assert store.resolve(f"iris:{v1.version}").digest == v1.digest
    assert store.resolve(f"iris@{v2.digest}") == Resolved("iris", v2.version, v2.digest)
    assert [v.version for v in store.versions("iris")] == [v1.version, v2.version]

    with pytest.raises(AliasConflict):
        store.move_alias("iris", CHAMPION, v2.version, reason="promote", expected=v2.version)
    assert store.champion("iris") == v1.version
    store.move_alias("iris", CHAMPION, v2.version, reason="promote", actor="ada", expected=v1.version)
    assert store.champion("iris") == v2.version
    # The challenger became the champion: its alias is removed (the registry deletes no tags, so the
    # tag is put on the removal's event), for this reader and for a fresh one alike.
    assert store.aliases("iris") == {CHAMPION: v2.version, LATEST: v2.version}
    fresh = _store(oci_registry, tmp_path / "other", namespace="acme/team/models")
    assert fresh.aliases("iris") == {CHAMPION: v2.version, LATEST: v2.version}
    with pytest.raises(AliasNotFound, match="no alias 'challenger' \\(aliases: champion, latest\\)"):
        fresh.resolve("iris@challenger")
    back = store.rollback("iris", actor="ada")
    assert (back.from_version, back.to_version, back.reason) == (v2.version, v1.version, "rollback")
    assert store.champion("iris") == v1.version

    # A fresh store (another process, empty cache) reads the same history from the registry alone.
    history = _store(oci_registry, tmp_path / "fresh", namespace="acme/team/models").history("iris")
    assert [(e.alias, e.reason, e.to_version) for e in history] == [
        (LATEST, "publish", v1.version),
        (LATEST, "publish", v2.version),
        (CHAMPION, "gate", v1.version),
        (CHALLENGER, "gate", v2.version),
        (CHAMPION, "promote", v2.version),
        (CHALLENGER, "promote", None),
        (CHAMPION, "rollback", v1.version),
    ]
    assert history[5].from_version == v2.version
    assert all(e.digest in (v1.digest, v2.digest) for e in history if e.to_version)
    assert history[4].actor == history[5].actor == "ada"
    # A challenger can be set again: the tag moves off the removal event onto a version.
    store.move_alias("iris", CHALLENGER, v2.version, reason="gate", expected=None)
    assert store.resolve("iris@challenger").version == v2.version


def test_missing_names_are_clear_errors(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    v1 = publish_version(store, "iris", 0.9)
    with pytest.raises(ModelNotFound, match="'wine' not found"):
        store.resolve("wine")
    with pytest.raises(AliasNotFound, match="no alias 'champion'"):
        store.resolve("iris")
    with pytest.raises(VersionNotFound, match="no version '20200101T000000Z'"):
        store.resolve("iris:20200101T000000Z")
    with pytest.raises(VersionNotFound, match="no manifest"):
        store.resolve("iris@sha256:" + "0" * 64)
    with pytest.raises(VersionNotFound):
        store.move_alias("iris", CHAMPION, "20200101T000000Z", reason="promote")
    with pytest.raises(InvalidReference, match="latest is moved only by publishing"):
        store.move_alias("iris", LATEST, v1.version, reason="promote")
    with pytest.raises(InvalidReference, match="repository name"):
        store.resolve("iris_")
    assert store.aliases("iris") == {LATEST: v1.version}


def test_versions_are_immutable(oci_registry: Registry, tmp_path: Path, publish_version: Publish) -> None:
    store = _store(oci_registry, tmp_path)
    v1 = publish_version(store, "iris", 0.9)
    card = store.card("iris", v1.version)
    with store.staging("iris") as staged:
        (staged / contract.MODEL_FILE).write_bytes(b"another model")
        other = card.model_copy(update={"model_sha256": hashlib.sha256(b"another model").hexdigest()})
        with pytest.raises(StoreError, match="versions are immutable"):
            store.publish(staged, other)
    assert store.resolve(f"iris:{v1.version}").digest == v1.digest


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("oci://127.0.0.1:5000", "expected oci://HOST"),
        ("oci://127.0.0.1:5000/", "expected oci://HOST"),
        ("oci:///mb", "expected oci://HOST"),
        ("oci://user:secret@ghcr.io/acme", "credentials go into the Docker config.json"),
        ("oci://ghcr.io/Acme", "namespace part 'Acme'"),
        ("oci://ghcr.io/acme//x", "namespace part ''"),
        ("oci://ghcr.io/acme?x=1", "expected oci://HOST"),
        ("oci://gh cr.io/acme", "expected oci://HOST"),
        ("oci://ghcr.io:99999x/acme", "not a host"),
    ],
)
def test_malformed_locations_say_what_is_wrong(location: str, why: str) -> None:
    with pytest.raises(UnsupportedStore, match=why.replace("?", r"\?")) as info:
        open_store(location)
    assert "secret" not in str(info.value) or "credentials" in str(info.value)


def test_locations_and_when_plain_http_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_location("oci://ghcr.io/acme/team/models") == ("ghcr.io", "acme/team/models")
    assert parse_location("oci://[::1]:5000/mb/") == ("[::1]:5000", "mb")
    for host in ("127.0.0.1:5000", "localhost:5001", "[::1]:5000", "localhost"):
        assert plain_http_allowed(host), host
    for host in ("kind-registry:5000", "ghcr.io", "127.0.0.2:5000", "10.0.0.1:5000"):
        assert not plain_http_allowed(host), host
    monkeypatch.setenv("MODELBERTH_REGISTRY_PLAIN_HTTP", "kind-registry:5000, registry.local")
    assert plain_http_allowed("kind-registry:5000")
    assert plain_http_allowed("registry.local:443")
    assert not plain_http_allowed("kind-registry:5001")
    assert RegistryStore("oci://kind-registry:5000/mb").client.base == "http://kind-registry:5000"
    assert RegistryStore("oci://ghcr.io/acme").client.base == "https://ghcr.io"


# --- reading: only the artifact layer, verified, cached ---------------------------------------------------


def test_reading_pulls_only_the_artifact_layer_checks_it_and_caches_it(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    writer = _store(oci_registry, tmp_path / "writer")
    v1 = publish_version(writer, "iris", 0.9)
    manifest, _ = _manifest(oci_registry, "mb/iris", v1.version)
    copier, artifact = (layer["digest"] for layer in manifest["layers"])
    # Ruin the copier's bytes in the registry's storage: a reader that pulled it would fail the digest.
    blob = oci_registry.blob_file(copier)
    blob.write_bytes(b"\0" * blob.stat().st_size)

    reader = _store(oci_registry, tmp_path / "reader")
    path = reader.fetch("iris", v1.version)
    assert (
        path == tmp_path / "reader" / "cache" / f"127.0.0.1_{oci_registry.port}" / "mb" / "iris" / v1.version
    )
    assert sorted(p.name for p in path.iterdir()) == [".layer-digest", "model.joblib", "model.json"]
    assert (path / contract.MODEL_FILE).read_bytes() == (
        writer.fetch("iris", v1.version) / contract.MODEL_FILE
    ).read_bytes()
    assert reader.card("iris", v1.version).version == v1.version

    oci_registry.stop()  # the cache serves what was read, when the registry is away
    assert reader.fetch("iris", v1.version) == path
    with pytest.raises(RegistryUnavailable) as down:
        reader.resolve("iris@latest")
    assert "cannot reach registry 127.0.0.1" in _one_line(down.value)
    assert artifact


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    v1 = publish_version(_store(oci_registry, tmp_path / "writer"), "iris", 0.9)
    manifest, _ = _manifest(oci_registry, "mb/iris", v1.version)
    blob = oci_registry.blob_file(manifest["layers"][-1]["digest"])
    damaged = bytearray(blob.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    blob.write_bytes(bytes(damaged))  # same size, other bytes: the registry serves it under the old digest
    reader = _store(oci_registry, tmp_path / "reader")
    with pytest.raises(DigestMismatch) as info:
        reader.fetch("iris", v1.version)
    assert "refusing it" in _one_line(info.value)
    assert not (
        tmp_path / "reader" / "cache" / f"127.0.0.1_{oci_registry.port}" / "mb" / "iris" / v1.version
    ).exists()


def test_a_registry_killed_mid_push_leaves_nothing_half_published(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    v1 = publish_version(store, "iris", 0.9)
    events = len(store.history("iris"))
    before = set(oci_registry.tags("mb/iris"))

    stop = threading.Event()

    def kill_at_the_first_new_blob() -> None:
        known = set(oci_registry.root.glob("docker/registry/v2/blobs/sha256/*/*/data"))
        while not stop.is_set():
            if set(oci_registry.root.glob("docker/registry/v2/blobs/sha256/*/*/data")) - known:
                oci_registry.kill()
                return
            time.sleep(0.001)

    killer = threading.Thread(target=kill_at_the_first_new_blob)
    killer.start()
    try:
        with store.staging("iris") as staged:
            version = store.new_version("iris")
            body = os.urandom(24 << 20)  # large enough that the kill lands during the upload
            (staged / contract.MODEL_FILE).write_bytes(body)
            card = store.card("iris", v1.version).model_copy(
                update={"version": version, "model_sha256": hashlib.sha256(body).hexdigest()}
            )
            with pytest.raises(RegistryUnavailable) as info:
                store.publish(staged, card)
    finally:
        stop.set()
        killer.join()
    _one_line(info.value)
    oci_registry.start()
    assert set(oci_registry.tags("mb/iris")) == before  # no version tag, latest unmoved, no event
    fresh = _store(oci_registry, tmp_path / "fresh")
    assert fresh.aliases("iris") == {LATEST: v1.version}
    assert len(fresh.history("iris")) == events
    assert publish_version(fresh, "iris", 0.95).version != v1.version  # and the next push works


def test_a_vanished_tag_is_a_clear_error_and_moving_the_alias_repairs_it(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    v1 = publish_version(store, "iris", 0.9)
    store.move_alias("iris", CHAMPION, v1.version, reason="gate")
    assert store.resolve("iris").version == v1.version
    import shutil

    shutil.rmtree(oci_registry.tag_dir("mb/iris", CHAMPION))  # a retention policy, a person with crane
    with pytest.raises(AliasNotFound, match="no alias 'champion'") as info:
        store.resolve("iris")
    _one_line(info.value)
    assert store.champion("iris") is None
    store.move_alias("iris", CHAMPION, v1.version, reason="promote", expected=None)
    assert store.resolve("iris").version == v1.version


def test_parallel_moves_keep_every_event(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    versions = [publish_version(store, "iris", 0.9 + i / 100).version for i in range(3)]
    before = len(store.history("iris"))
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        mine = _store(oci_registry, tmp_path / f"w{worker}")  # its own client, as another process has
        try:
            for move in range(5):
                mine.move_alias(
                    "iris", CHAMPION, versions[(worker + move) % 3], reason="promote", actor=f"w{worker}"
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    history = _store(oci_registry, tmp_path / "fresh").history("iris")
    assert len(history) == before + 20
    assert {e.actor for e in history[before:]} == {"w0", "w1", "w2", "w3"}
    assert store.champion("iris") in versions  # the last tag write won; the tag is whole


# --- credentials -----------------------------------------------------------------------------------------


def test_basic_auth_from_the_docker_config(
    registry_factory: Callable[..., Registry],
    tmp_path: Path,
    publish_version: Publish,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = registry_factory(htpasswd={"ci": "right-password"})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nowhere"))
    with pytest.raises(AccessDenied, match="asks for credentials") as none:
        publish_version(_store(registry, tmp_path), "iris", 0.9)
    assert "docker login" in _one_line(none.value)

    monkeypatch.setenv(
        "DOCKER_CONFIG", str(docker_config(tmp_path / "wrong", registry.address, "ci", "wrong-password"))
    )
    with pytest.raises(AccessDenied, match="rejected the credentials of 'ci'") as wrong:
        publish_version(_store(registry, tmp_path), "iris", 0.9)
    assert "wrong-password" not in _one_line(wrong.value)

    monkeypatch.setenv(
        "DOCKER_CONFIG", str(docker_config(tmp_path / "right", registry.address, "ci", "right-password"))
    )
    store = _store(registry, tmp_path)
    v1 = publish_version(store, "iris", 0.9)
    store.move_alias("iris", CHAMPION, v1.version, reason="gate")
    assert _store(registry, tmp_path / "reader").resolve("iris").digest == v1.digest
    assert httpx.get(f"{registry.url}/v2/mb/iris/tags/list", timeout=5).status_code == 401


def test_bearer_tokens_from_the_registrys_token_service(
    registry_factory: Callable[..., Registry],
    tmp_path: Path,
    publish_version: Publish,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = TokenService(users={"robot": "token-secret"}).start(tmp_path)
    try:
        registry = registry_factory(token=tokens)
        monkeypatch.setenv(
            "DOCKER_CONFIG", str(docker_config(tmp_path / "right", registry.address, "robot", "token-secret"))
        )
        store = _store(registry, tmp_path)
        v1 = publish_version(store, "iris", 0.9)
        store.move_alias("iris", CHAMPION, v1.version, reason="gate")
        reader = _store(registry, tmp_path / "reader")
        assert reader.resolve("iris").digest == v1.digest
        assert reader.fetch("iris", v1.version).is_dir()
        assert reader.models() == ["iris"]  # the catalog scope too
        granted = {(a["name"], ",".join(a["actions"])) for claims in tokens.issued for a in claims["access"]}
        assert ("mb/iris", "pull,push") in granted
        assert ("mb/iris", "pull") in granted
        assert ("catalog", "*") in granted

        monkeypatch.setenv(
            "DOCKER_CONFIG", str(docker_config(tmp_path / "wrong", registry.address, "robot", "nope"))
        )
        with pytest.raises(AccessDenied, match=r"token service at 127\.0\.0\.1") as wrong:
            _store(registry, tmp_path / "other").resolve("iris")
        assert "nope" not in _one_line(wrong.value)
    finally:
        tokens.stop()


def test_tls_uses_the_system_cas_and_plain_http_needs_the_host_listed(
    registry_factory: Callable[..., Registry],
    tmp_path: Path,
    publish_version: Publish,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 127.0.0.2 is a loopback address, but not one the policy lets speak plain HTTP: TLS is required.
    secure = registry_factory(tls=True, host="127.0.0.2")
    with pytest.raises(RegistryUnavailable, match="not trusted by the system CAs") as untrusted:
        _store(secure, tmp_path).resolve("iris")
    _one_line(untrusted.value)
    assert secure.ca_file is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(secure.ca_file))  # what adding a CA to the system bundle does
    v1 = publish_version(_store(secure, tmp_path), "iris", 0.9)
    assert _store(secure, tmp_path / "reader").resolve(f"iris:{v1.version}").digest == v1.digest

    plain = registry_factory(host="127.0.0.2")
    with pytest.raises(RegistryUnavailable, match="does not speak TLS; plain HTTP needs the host in"):
        _store(plain, tmp_path).resolve("iris")
    monkeypatch.setenv("MODELBERTH_REGISTRY_PLAIN_HTTP", plain.address)
    assert publish_version(_store(plain, tmp_path), "iris", 0.9).digest


def test_an_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    from testkit.registry import free_port

    store = open_store(f"oci://127.0.0.1:{free_port()}/mb", cache_dir=tmp_path)
    for call in (lambda: store.resolve("iris"), store.models, lambda: store.history("iris")):
        with pytest.raises(RegistryUnavailable, match=r"cannot reach registry 127\.0\.0\.1") as info:
            call()
        _one_line(info.value)
    with pytest.raises(StoreError):
        store.fetch("iris", "20260101T000000Z")


def test_a_reference_to_another_models_manifest_is_refused(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    iris = publish_version(store, "iris", 0.9)
    publish_version(store, "wine", 0.9)
    assert store.models() == ["iris", "wine"]
    # The registry shares blobs across repositories, but a digest names a version of one model only.
    with pytest.raises(StoreError):
        store.resolve(Reference("wine", digest=iris.digest))


def test_every_prefix_and_mutation_of_a_location_opens_or_is_refused_cleanly(tmp_path: Path) -> None:
    good = "oci://ghcr.io:443/acme/team_x/models"
    texts = {good[:i] for i in range(len(good) + 1)}
    texts |= {good[:i] + c + good[i + 1 :] for i in range(6, len(good)) for c in "/:@?#%. \x00é_A-["}
    refused: list[str] = []
    for text in sorted(texts):
        if not text.strip() or "://" not in text or not text.startswith("oci://"):
            continue
        try:
            store = open_store(text, cache_dir=tmp_path)
        except UnsupportedStore as exc:
            refused.append(str(exc))
            continue
        assert isinstance(store, RegistryStore)
        assert store.location == text
    assert refused
    assert all(message and "\n" not in message for message in refused)


def test_another_image_under_an_alias_tag_is_an_error_and_moving_the_alias_repairs_it(
    oci_registry: Registry, tmp_path: Path, publish_version: Publish
) -> None:
    store = _store(oci_registry, tmp_path)
    v1 = publish_version(store, "iris", 0.9)
    # Someone pushes an unrelated artifact (here: a history event's manifest) under the champion tag.
    event_tag = next(t for t in oci_registry.tags("mb/iris") if t.startswith("ev."))
    foreign = httpx.get(
        f"{oci_registry.url}/v2/mb/iris/manifests/{event_tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=5,
    ).content
    put = httpx.put(
        f"{oci_registry.url}/v2/mb/iris/manifests/champion",
        content=foreign,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=5,
    )
    assert put.status_code == 201
    with pytest.raises(StoreError, match="is not a modelberth version of iris") as info:
        store.resolve("iris")
    _one_line(info.value)
    assert CHAMPION not in store.aliases("iris")  # listed without the damaged alias, not a crash
    store.move_alias("iris", CHAMPION, v1.version, reason="promote")
    assert store.resolve("iris").version == v1.version
