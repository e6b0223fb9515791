"""Inference reading a registry store (a real docker-registry): pins, hot swaps, and bad days, during which a
running inference keeps serving (and stays ready with) what it has."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from modelberth_core.store import CHAMPION, open_store
from testkit.registry import Registry

pytestmark = pytest.mark.integration

POLL = 0.2


def _version(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/v1/models/iris/examples/0/predict", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def _settle(client: TestClient, headers: dict[str, str], want: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _version(client, headers) != want:
        assert time.monotonic() < deadline, f"still serving {_version(client, headers)}, not {want}"
        time.sleep(0.05)


def _hold(client: TestClient, headers: dict[str, str], want: str, seconds: float = 5 * POLL) -> None:
    """Several polls pass and ``want`` keeps answering, with /readyz at 200."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert _version(client, headers) == want
        assert client.get("/readyz").status_code == 200, client.get("/readyz").json()
        time.sleep(POLL / 2)


@pytest.fixture
def two_versions(oci_registry: Registry, tmp_path: Path, artifact_factory: Callable[..., Path]) -> list[str]:
    """iris twice in the registry (v2 newer), champion on the first."""
    store = open_store(oci_registry.location(), cache_dir=tmp_path / "writer-cache")
    v1 = artifact_factory(store, rows=60).name
    v2 = artifact_factory(store, rows=90).name
    store.move_alias("iris", CHAMPION, v1, reason="promote")
    return [v1, v2]


def test_pins_by_version_and_digest_serve_those_versions(
    oci_registry: Registry,
    tmp_path: Path,
    make_client: Callable[..., Any],
    signer: Any,
    two_versions: list[str],
) -> None:
    v1, v2 = two_versions
    digest = open_store(oci_registry.location(), cache_dir=tmp_path / "c").resolve(f"iris:{v2}").digest
    for models, want in ((f"iris:{v2}", v2), (f"iris@{digest}", v2), ("iris", v1), ("iris@latest", v2)):
        with make_client(
            tmp_path, store=oci_registry.location(), cache_dir=str(tmp_path / "cache"), models=models
        ) as client:
            assert _version(client, signer.headers()) == want, models


def test_a_moved_alias_hot_swaps_and_a_registry_outage_keeps_the_served_version(
    oci_registry: Registry,
    tmp_path: Path,
    make_client: Callable[..., Any],
    signer: Any,
    two_versions: list[str],
) -> None:
    v1, v2 = two_versions
    writer = open_store(oci_registry.location(), cache_dir=tmp_path / "writer-cache")
    headers = signer.headers()
    with make_client(
        tmp_path, store=oci_registry.location(), cache_dir=str(tmp_path / "cache"), poll_seconds=POLL
    ) as client:
        assert _version(client, headers) == v1
        writer.move_alias("iris", CHAMPION, v2, reason="promote")
        _settle(client, headers, v2)
        (listed,) = client.get("/v1/models", headers=headers).json()["models"]
        assert listed["digest"] == writer.resolve(f"iris:{v2}").digest  # served with the version's metadata

        oci_registry.stop()  # the registry goes away: polls fail, predictions and readiness do not
        _hold(client, headers, v2)
        assert client.get("/v1/models", headers=headers).status_code == 200

        oci_registry.start()  # back, and a move made meanwhile is picked up
        writer.move_alias("iris", CHAMPION, v1, reason="rollback")
        _settle(client, headers, v1)


def test_a_version_with_a_corrupt_layer_never_replaces_the_served_one(
    oci_registry: Registry,
    tmp_path: Path,
    make_client: Callable[..., Any],
    signer: Any,
    two_versions: list[str],
) -> None:
    v1, v2 = two_versions
    manifest = httpx.get(
        f"{oci_registry.url}/v2/mb/iris/manifests/{v2}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=5,
    ).json()
    blob = oci_registry.blob_file(manifest["layers"][-1]["digest"])
    damaged = bytearray(blob.read_bytes())
    damaged[-100] ^= 0x01
    blob.write_bytes(bytes(damaged))
    headers = signer.headers()
    with make_client(
        tmp_path, store=oci_registry.location(), cache_dir=str(tmp_path / "cache"), poll_seconds=POLL
    ) as client:
        open_store(oci_registry.location(), cache_dir=tmp_path / "w").move_alias(
            "iris", CHAMPION, v2, reason="promote"
        )
        _hold(client, headers, v1)
        reload = client.post("/v1/models/iris/reload", headers=headers)
        assert reload.status_code == 409
        assert "refusing it" in reload.json()["detail"]
        metrics = client.get("/metrics").text
        assert 'modelberth_inference_model_load_failures_total{model="iris"}' in metrics
        assert not (tmp_path / "cache" / f"127.0.0.1_{oci_registry.port}" / "mb" / "iris" / v2).exists()


def test_a_vanished_champion_tag_keeps_the_served_version(
    oci_registry: Registry,
    tmp_path: Path,
    make_client: Callable[..., Any],
    signer: Any,
    two_versions: list[str],
) -> None:
    v1, v2 = two_versions
    headers = signer.headers()
    with make_client(
        tmp_path, store=oci_registry.location(), cache_dir=str(tmp_path / "cache"), poll_seconds=POLL
    ) as client:
        assert _version(client, headers) == v1
        shutil.rmtree(oci_registry.tag_dir("mb/iris", CHAMPION))
        _hold(client, headers, v1)
        open_store(oci_registry.location(), cache_dir=tmp_path / "w").move_alias(
            "iris", CHAMPION, v2, reason="promote", expected=None
        )
        _settle(client, headers, v2)


def test_an_unreachable_registry_at_start_says_why_inference_is_not_ready(
    tmp_path: Path, make_client: Callable[..., Any]
) -> None:
    from testkit.registry import free_port

    location = f"oci://127.0.0.1:{free_port()}/mb"
    with make_client(tmp_path, ready=False, store=location, cache_dir=str(tmp_path / "cache")) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["reason"] == "models are loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["reason"].startswith(
            "cannot list the models in the store: cannot reach registry"
        )
