"""``GET /v1/models/{name}/history`` (the alias moves, newest first, bounded) and
``GET /v1/models/{name}/versions/{version}/card`` (any version's card, read without loading the model), on a
directory store and on a real registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelberth_core import contract
from modelberth_core.store import CHALLENGER, CHAMPION, FilesystemStore, ModelStore, open_store
from modelberth_inference import versions as versions_module
from testkit.registry import Registry

FIELDS = {"model", "alias", "from_version", "to_version", "actor", "at", "reason", "digest", "detail"}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions ``load_model`` is called for on demand (a spy: it still loads them)."""
    seen: list[str] = []
    real = versions_module.load_model

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(versions_module, "load_model", spy)
    return seen


def _history(client: TestClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    answer = client.get(f"/v1/models/iris/history{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def check_history_and_cards(
    client: TestClient, store: ModelStore, headers: dict[str, str], loads: list[str]
) -> None:
    """Both routes tell what the store holds, reading a card loads no version, and promoting the challenger
    shows in the history."""
    aliases = store.aliases("iris")
    champion, challenger = aliases[CHAMPION], aliases[CHALLENGER]
    assert loads == [champion]  # the served version, at start
    body = _history(client, headers)
    recorded = store.history("iris")
    assert body["model"] == "iris"
    assert body["total"] == len(recorded)
    assert body["events"] == [json.loads(e.model_dump_json()) for e in reversed(recorded)]  # newest first
    assert all(set(e) == FIELDS for e in body["events"])
    assert body["events"][0]["alias"] == CHALLENGER
    assert body["events"][0]["to_version"] == challenger

    for ref, version in ((CHALLENGER, challenger), (challenger, challenger), (CHAMPION, champion)):
        card = client.get(f"/v1/models/iris/versions/{ref}/card", headers=headers)
        assert card.status_code == 200, card.text
        assert card.json() == store.card("iris", version).model_dump(mode="json")
        assert card.json()["version"] == version
    assert loads == [champion]
    listing = client.get("/v1/models/iris/versions", headers=headers).json()
    assert [v["loaded"] for v in listing["versions"]] == [True, False]  # nothing held besides the served

    store.move_alias("iris", CHAMPION, challenger, reason="promote", actor="ada")
    newest = _history(client, headers, "?limit=2")
    assert newest["total"] == len(recorded) + 2
    cleared, promoted = newest["events"]
    assert (promoted["alias"], promoted["from_version"], promoted["to_version"]) == (
        CHAMPION,
        champion,
        challenger,
    )
    assert (promoted["reason"], promoted["actor"]) == ("promote", "ada")
    assert (cleared["alias"], cleared["from_version"], cleared["to_version"]) == (
        CHALLENGER,
        challenger,
        None,
    )


def test_history_and_any_versions_card_on_a_directory_store(
    make_client: Callable[..., Any], store_dir: Path, signer: Any, loads: list[str]
) -> None:
    store = FilesystemStore(store_dir)
    with make_client(store_dir) as client:
        check_history_and_cards(client, store, signer.headers("models:read"), loads)


def test_the_history_is_bounded_and_newest_first(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    store = FilesystemStore(store_dir)
    aliases = store.aliases("iris")
    for n in range(30):  # a nightly job that moved an alias back and forth for a month
        target = aliases[CHALLENGER] if n % 2 == 0 else aliases[CHAMPION]
        store.move_alias("iris", f"canary-{n % 3}", target, reason="promote", actor=f"job-{n}")
    headers = signer.headers("models:read")
    with make_client(store_dir) as client:
        everything = _history(client, headers, "?limit=500")
        assert everything["total"] == len(everything["events"]) == len(store.history("iris"))
        times = [e["at"] for e in everything["events"]]
        assert times == sorted(times, reverse=True)
        default = _history(client, headers)
        assert len(default["events"]) == min(50, default["total"])
        three = _history(client, headers, "?limit=3")
        assert [e["actor"] for e in three["events"]] == ["job-29", "job-28", "job-27"]
        assert three["total"] == everything["total"]
        for bad in ("0", "-1", "501", "1e3", "abc", "", "9" * 40):
            answer = client.get(f"/v1/models/iris/history?limit={bad}", headers=headers)
            assert answer.status_code == 422, bad
            assert answer.json()["detail"][0]["loc"] == ["query", "limit"]
            assert bad not in json.dumps(answer.json()) or bad in ("", "0")


def test_unknown_or_malformed_names_are_clear_json_errors(
    make_client: Callable[..., Any], store_dir: Path, signer: Any, loads: list[str]
) -> None:
    headers = signer.headers("models:read")
    with make_client(store_dir) as client:
        for path, status, detail in [
            ("/v1/models/nope/history", 404, "model 'nope' not found"),
            ("/v1/models/nope/versions/challenger/card", 404, "model 'nope' not found"),
            ("/v1/models/..%2F..%2Fetc/history", 404, None),
            ("/v1/models/iris/versions/20990101T000000Z/card", 404, "model 'iris' has no version"),
            ("/v1/models/iris/versions/canary/card", 404, "model 'iris' has no alias 'canary'"),
            ("/v1/models/iris/versions/Champion/card", 422, None),
            ("/v1/models/iris/versions/2026-01-01/card", 422, None),
            ("/v1/models/iris/versions/%C3%A9t%C3%A9/card", 422, None),
            ("/v1/models/iris/versions/" + "a" * 64 + "/card", 422, None),
            ("/v1/models/iris/versions/..%2F..%2Fetc/card", 404, None),
        ]:
            answer = client.get(path, headers=headers)
            assert answer.status_code == status, (path, answer.text)
            assert answer.headers["content-type"].startswith("application/json"), path
            body = answer.json()
            if detail is not None:
                assert body["detail"].startswith(detail), (path, body)
            assert str(store_dir) not in answer.text
        assert len(loads) == 1  # the served version, at start


def test_scopes_and_a_damaged_store(make_client: Callable[..., Any], store_dir: Path, signer: Any) -> None:
    challenger = FilesystemStore(store_dir).aliases("iris")[CHALLENGER]
    with make_client(store_dir) as client:
        for path in ("/v1/models/iris/history", "/v1/models/iris/versions/champion/card"):
            assert client.get(path, headers=signer.headers("models:read")).status_code == 200, path
            assert client.get(path, headers=signer.headers("predict")).status_code == 403, path
            assert client.get(path).status_code == 401, path
        (store_dir / "iris" / challenger / contract.CARD_FILE).write_text("{not json", encoding="utf-8")
        card = client.get(f"/v1/models/iris/versions/{challenger}/card", headers=signer.headers())
        assert card.status_code == 503
        assert card.json() == {"detail": "the card of model 'iris' cannot be read now"}
        (store_dir / "iris" / "history.jsonl").chmod(0)
        try:
            history = client.get("/v1/models/iris/history", headers=signer.headers())
        finally:
            (store_dir / "iris" / "history.jsonl").chmod(0o644)
        if history.status_code != 200:  # root reads a file whatever its mode
            assert history.status_code == 503
            assert history.json() == {"detail": "the history of model 'iris' cannot be read now"}
        assert str(store_dir) not in card.text + history.text


@pytest.mark.integration
def test_history_and_any_versions_card_on_a_registry(
    oci_registry: Registry,
    tmp_path: Path,
    make_client: Callable[..., Any],
    signer: Any,
    artifact_factory: Callable[..., Path],
    loads: list[str],
) -> None:
    store = open_store(oci_registry.location(), cache_dir=tmp_path / "writer-cache")
    artifact_factory(store, rows=60)
    artifact_factory(store, rows=90, alias=CHALLENGER)
    with make_client(tmp_path, store=oci_registry.location(), cache_dir=str(tmp_path / "cache")) as client:
        check_history_and_cards(client, store, signer.headers("models:read"), loads)
        assert all(e["digest"] for e in _history(client, signer.headers())["events"] if e["to_version"])
