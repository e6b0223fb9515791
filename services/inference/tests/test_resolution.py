"""Which version a model name serves: its champion (hot-swapped when the alias moves), or the alias or
version the settings name; never just the most recently published one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from modelberth_core.store import CHALLENGER, CHAMPION, FilesystemStore, Reference, UnsupportedStore
from modelberth_core.store import filesystem as fs
from modelberth_inference.app import create_app
from modelberth_inference.settings import Settings

Factory = Callable[..., Path]


@pytest.fixture
def three_versions(tmp_path: Path, artifact_factory: Factory) -> tuple[Path, list[str]]:
    """iris: A champion, B challenger, C only published (latest)."""
    root = tmp_path / "models"
    a = artifact_factory(root).name  # the factory makes each version champion, like a promoted one
    store = FilesystemStore(root)
    b = artifact_factory(root).name
    c = artifact_factory(root).name
    store.move_alias("iris", CHAMPION, a, reason="promote")
    store.move_alias("iris", CHALLENGER, b, reason="gate")
    assert store.aliases("iris")["latest"] == c
    return root, [a, b, c]


def _served(client: TestClient, signer: Any, name: str = "iris") -> str:
    response = client.get(f"/v1/models/{name}", headers=signer.headers())
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def _wait_for(client: TestClient, signer: Any, version: str) -> None:
    deadline = time.monotonic() + 20
    while _served(client, signer) != version:
        assert time.monotonic() < deadline, f"still serving {_served(client, signer)}, not {version}"
        time.sleep(0.05)


def test_the_champion_is_served_not_the_latest(
    make_client: Callable[..., Any], signer: Any, three_versions: tuple[Path, list[str]]
) -> None:
    root, (a, _, _) = three_versions
    with make_client(root) as client:
        assert _served(client, signer) == a
        assert (
            client.post(
                "/v1/models/iris/predict",
                json={"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
                headers=signer.headers(),
            ).json()["version"]
            == a
        )


def test_moving_champion_hot_swaps_and_a_rollback_swaps_back(
    make_client: Callable[..., Any], signer: Any, three_versions: tuple[Path, list[str]]
) -> None:
    root, (a, b, c) = three_versions
    store = FilesystemStore(root)
    with make_client(root, poll_seconds=0.05) as client:
        store.move_alias("iris", CHAMPION, c, reason="promote")
        _wait_for(client, signer, c)
        store.rollback("iris")
        _wait_for(client, signer, a)
        store.move_alias("iris", CHALLENGER, c, reason="gate")  # other aliases move nothing served
        time.sleep(0.3)
        assert _served(client, signer) == a
        assert b != a


@pytest.mark.parametrize(
    ("models", "index"),
    [("iris@challenger", 1), ("iris@latest", 2), ("iris:{v}", 0), ("iris={v}", 0), (" iris ", None)],
)
def test_settings_name_the_alias_or_version_to_serve(
    make_client: Callable[..., Any],
    signer: Any,
    three_versions: tuple[Path, list[str]],
    models: str,
    index: int | None,
) -> None:
    root, versions = three_versions
    with make_client(root, models=models.format(v=versions[0])) as client:
        assert _served(client, signer) == versions[0 if index is None else index]


def test_a_pinned_version_stays_when_the_champion_moves(
    make_client: Callable[..., Any], signer: Any, three_versions: tuple[Path, list[str]]
) -> None:
    root, (a, _, c) = three_versions
    with make_client(root, models=f"iris:{a}", poll_seconds=0.05) as client:
        FilesystemStore(root).move_alias("iris", CHAMPION, c, reason="promote")
        time.sleep(0.3)
        assert _served(client, signer) == a


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("Iris", "invalid model name"),
        ("iris@Champion", "invalid alias"),
        ("iris@20261122T144500Z", "NAME:VERSION"),
        ("iris=latest", "invalid version"),
        ("iris:", "invalid version"),
        ("iris,iris@challenger", "listed twice"),
        ("iris@sha256:xyz", "invalid digest"),
    ],
)
def test_malformed_references_are_refused_at_startup(models: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(models=models)


def test_references_parse_into_the_store_s_names() -> None:
    assert Settings(models="iris, wine@canary ,bank:20261122T144500Z").references() == {
        "iris": Reference("iris", alias=CHAMPION),
        "wine": Reference("wine", alias="canary"),
        "bank": Reference("bank", version="20261122T144500Z"),
    }


def test_an_old_store_serves_latest(
    make_client: Callable[..., Any], signer: Any, tmp_path: Path, artifact_factory: Factory
) -> None:
    root = tmp_path / "models"
    version = artifact_factory(root).name
    for leftover in (fs.HISTORY_FILE, fs.LOCK_FILE, CHAMPION):  # what the code before aliases wrote
        (root / "iris" / leftover).unlink()
    with make_client(root) as client:
        assert _served(client, signer) == version


@pytest.fixture
def refused_first(tmp_path: Path, artifact_factory: Factory) -> Path:
    """iris served; wine's only version was refused by the gate (challenger, no champion)."""
    root = tmp_path / "models"
    artifact_factory(root)
    wine = artifact_factory(root, name="wine").name
    (root / "wine" / CHAMPION).unlink()
    FilesystemStore(root).move_alias("wine", CHALLENGER, wine, reason="gate")
    return root


def test_a_model_without_champion_is_not_served_and_blocks_nothing(
    make_client: Callable[..., Any], signer: Any, refused_first: Path
) -> None:
    with make_client(refused_first) as client:
        assert client.get("/readyz").status_code == 200
        names = [m["name"] for m in client.get("/v1/models", headers=signer.headers()).json()["models"]]
        assert names == ["iris"]


def test_a_configured_model_without_champion_says_why_it_is_not_ready(
    make_client: Callable[..., Any], refused_first: Path
) -> None:
    with make_client(refused_first, ready=False, models="iris,wine") as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").json().get("reason") == "models are loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert (
            "wine (wine has no alias 'champion' (aliases: challenger, latest))" in response.json()["reason"]
        )


def test_a_store_this_version_cannot_open_fails_at_startup() -> None:
    with pytest.raises(UnsupportedStore, match="unknown store scheme 's3'"):
        create_app(Settings(store="s3://bucket/models"))
    with pytest.raises(UnsupportedStore, match="namespace part 'MB'"):
        create_app(Settings(store="oci://127.0.0.1:5000/MB"))


def test_store_wins_over_model_dir(tmp_path: Path) -> None:
    assert Settings(model_dir=tmp_path / "a", store=str(tmp_path / "b")).store_location() == str(
        tmp_path / "b"
    )
    assert Settings(model_dir=tmp_path / "a").store_location() == str(tmp_path / "a")
