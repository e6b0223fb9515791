"""Calling a version by id or alias (issue 14): the listing, the versioned V1 and V2 routes, loading on
demand within ``max_versions`` (least recently used first, never the served version), one load for
concurrent first requests, and 404/409/503 bodies that name what is wrong and never a path."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sklearn.dummy import DummyClassifier

from modelberth_core import contract
from modelberth_core.store import CHALLENGER, CHAMPION, FilesystemStore
from modelberth_inference import versions as versions_module
from modelberth_inference.errors import VersionCapReached, VersionNotFound
from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.registry import ModelRegistry
from modelberth_inference.settings import Settings

ROW = {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 4.1, "petal_width": 1.3}
V2_ROW = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}
SETOSA_ONLY = DummyClassifier(strategy="constant", constant="setosa")


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions ``load_model`` is called for (it still loads them: a spy, not a stand-in)."""
    seen: list[str] = []
    real = versions_module.load_model

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[2])
        time.sleep(0.05)  # widen the window in which concurrent first requests could each start a load
        return real(*args, **kwargs)

    monkeypatch.setattr(versions_module, "load_model", spy)
    return seen


def _aliases(store_dir: Path) -> dict[str, str]:
    return FilesystemStore(store_dir).aliases("iris")


def test_the_challenger_is_callable_by_alias_and_by_id_without_being_served(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    aliases = _aliases(store_dir)
    champion, challenger = aliases[CHAMPION], aliases[CHALLENGER]
    headers = signer.headers("predict")
    with make_client(store_dir) as client:
        for ref in (CHALLENGER, challenger):
            answer = client.post(f"/v1/models/iris/versions/{ref}/predict", json=ROW, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == challenger
            assert answer.json()["predictions"] == ["setosa"]
        for ref in (CHAMPION, champion, "latest"):
            path = f"/v1/models/iris/versions/{ref}/predict"
            expected = challenger if ref == "latest" else champion  # latest: the last published
            assert client.post(path, json=ROW, headers=headers).json()["version"] == expected
        served = client.post("/v1/models/iris/predict", json=ROW, headers=headers).json()
        assert served["version"] == champion
        assert served["predictions"] == ["versicolor"]
        v2 = client.post("/v2/models/iris/versions/challenger/infer", json=V2_ROW, headers=headers)
        assert v2.status_code == 200, v2.text
        assert v2.json()["model_version"] == challenger
        assert v2.json()["outputs"][0]["data"] == ["setosa"]
        reader = signer.headers("models:read")
        meta = client.get("/v2/models/iris/versions/challenger", headers=reader)
        assert meta.status_code == 200
        assert meta.json()["versions"] == [challenger]
        ready = client.get(f"/v2/models/iris/versions/{challenger}/ready", headers=reader)
        assert ready.json() == {"name": "iris", "ready": True, "version": challenger}
        assert client.get("/readyz").json()["models"] == {"iris": champion}


def test_versions_lists_scores_aliases_and_what_is_in_memory(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    aliases = _aliases(store_dir)
    with make_client(store_dir) as client:
        listing = client.get("/v1/models/iris/versions", headers=signer.headers("models:read"))
        assert listing.status_code == 200, listing.text
        body = listing.json()
        assert body["model"] == "iris"
        assert body["serving"] == aliases[CHAMPION]
        assert body["aliases"] == aliases
        assert [v["version"] for v in body["versions"]] == sorted(set(aliases.values()))  # oldest first
        first, second = body["versions"]
        assert first["aliases"] == [CHAMPION]
        assert second["aliases"] == [CHALLENGER, "latest"]
        assert first["metric"] == "f1_macro"
        assert isinstance(first["score"], float)
        assert first["greater_is_better"] is True
        assert first["created_at"].startswith("20")
        assert (first["loaded"], second["loaded"]) == (True, False)
        assert body["shadow"] == {"enabled": False, "status": "off"}
        client.post(
            "/v1/models/iris/versions/challenger/predict", json=ROW, headers=signer.headers("predict")
        )
        again = client.get("/v1/models/iris/versions", headers=signer.headers("models:read")).json()
        assert [v["loaded"] for v in again["versions"]] == [True, True]


def test_scopes_are_those_of_the_unversioned_routes(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    with make_client(store_dir) as client:
        reader, predictor = signer.headers("models:read"), signer.headers("predict")
        calls = [
            ("POST", "/v1/models/iris/versions/challenger/predict", ROW, predictor, reader),
            ("POST", "/v2/models/iris/versions/challenger/infer", V2_ROW, predictor, reader),
            ("GET", "/v1/models/iris/versions", None, reader, predictor),
            ("GET", "/v2/models/iris/versions/challenger", None, reader, predictor),
            ("GET", "/v2/models/iris/versions/challenger/ready", None, reader, predictor),
        ]
        for method, path, body, allowed, refused in calls:
            assert client.request(method, path, json=body, headers=allowed).status_code == 200, path
            denied = client.request(method, path, json=body, headers=refused)
            assert denied.status_code == 403, path
            assert client.request(method, path, json=body).status_code == 401, path


def test_unknown_versions_and_aliases_are_404s_that_name_them_and_no_path(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    headers = signer.headers()
    with make_client(store_dir) as client:
        cases = {
            "20990101T000000Z": "model 'iris' has no version 20990101T000000Z",
            "nightly": "model 'iris' has no alias 'nightly' (aliases: challenger, champion, latest)",
            "x" * 5000: "model 'iris' has no such version or alias",
            "%E2%80%AE%00": "model 'iris' has no such version or alias",
            "sha256:" + "0" * 64: "model 'iris' has no such version or alias",
        }
        for ref, message in cases.items():
            v1 = client.post(f"/v1/models/iris/versions/{ref}/predict", json=ROW, headers=headers)
            v2 = client.post(f"/v2/models/iris/versions/{ref}/infer", json=V2_ROW, headers=headers)
            meta = client.get(f"/v2/models/iris/versions/{ref}", headers=headers)
            for response, key in ((v1, "detail"), (v2, "error"), (meta, "error")):
                assert response.status_code == 404, (ref[:20], response.text)
                text = response.json()[key]
                assert text.startswith(message), text
                assert str(store_dir) not in response.text
                assert "x" * 100 not in response.text
        unknown_model = client.post("/v1/models/wine/versions/champion/predict", json=ROW, headers=headers)
        assert unknown_model.status_code == 404
        assert client.get("/v1/models/wine/versions", headers=headers).status_code == 404


def test_a_version_that_fails_its_checks_is_a_409_naming_the_check(
    make_client: Callable[..., Any],
    store_dir: Path,
    signer: Any,
    artifact_factory: Callable[..., Path],
    loads: list[str],
) -> None:
    broken = artifact_factory(store_dir, alias="broken")
    (broken / contract.MODEL_FILE).write_bytes(b"tampered")
    headers = signer.headers()
    with make_client(store_dir) as client:
        loads.clear()
        for _ in range(3):
            answer = client.post("/v1/models/iris/versions/broken/predict", json=ROW, headers=headers)
            assert answer.status_code == 409, answer.text
            assert answer.json() == {
                "detail": f"model 'iris' version {broken.name} cannot be loaded: "
                "the model file is missing or its sha256 differs from the card's"
            }
        assert loads == [broken.name]  # refused again without another attempt
        v2 = client.post(f"/v2/models/iris/versions/{broken.name}/infer", json=V2_ROW, headers=headers)
        assert v2.status_code == 409
        assert client.post("/v1/models/iris/predict", json=ROW, headers=headers).status_code == 200


def test_versions_beyond_the_cap_unload_least_recently_used_never_the_served_one(
    make_client: Callable[..., Any],
    store_dir: Path,
    signer: Any,
    variant_factory: Callable[..., Path],
    loads: list[str],
) -> None:
    base = store_dir / "iris" / _aliases(store_dir)[CHAMPION]
    extra = [variant_factory(store_dir, base, SETOSA_ONLY, alias=None).name for _ in range(2)]
    challenger = _aliases(store_dir)[CHALLENGER]
    headers = signer.headers()
    with make_client(store_dir, max_versions=3) as client:

        def loaded() -> set[str]:
            listing = client.get("/v1/models/iris/versions", headers=headers).json()
            return {v["version"] for v in listing["versions"] if v["loaded"]}

        def call(version: str) -> None:
            path = f"/v1/models/iris/versions/{version}/predict"
            assert client.post(path, json=ROW, headers=headers).json()["version"] == version

        champion = _aliases(store_dir)[CHAMPION]
        loads.clear()
        call(challenger)
        call(extra[0])
        assert loaded() == {champion, challenger, extra[0]}
        call(challenger)  # now the most recently used: extra[0] goes first
        call(extra[1])
        assert loaded() == {champion, challenger, extra[1]}
        call(extra[0])
        assert loaded() == {champion, extra[1], extra[0]}
        assert loads == [challenger, extra[0], extra[1], extra[0]]
        assert client.post("/v1/models/iris/predict", json=ROW, headers=headers).json()["version"] == champion
        metrics = client.get("/metrics").text
        assert f'version="{challenger}"' not in metrics  # an unloaded version's series go with it
        assert f'version="{extra[0]}"' in metrics


def test_concurrent_first_requests_for_a_version_load_it_once(
    store_dir: Path, loads: list[str], tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry

    registry = ModelRegistry(Settings(model_dir=store_dir), InferenceMetrics(CollectorRegistry()))
    challenger = _aliases(store_dir)[CHALLENGER]

    async def scenario() -> None:
        await registry.refresh()
        served = registry.get("iris")
        assert served is not None
        loads.clear()
        results = await asyncio.gather(
            *(registry.version(served, ref) for ref in [CHALLENGER, challenger] * 10)
        )
        assert len({id(r) for r in results}) == 1
        assert results[0].model.version == challenger

    asyncio.run(scenario())
    assert loads == [challenger]


def test_no_room_when_every_slot_holds_a_version_that_must_stay(
    store_dir: Path, variant_factory: Callable[..., Path]
) -> None:
    from prometheus_client import CollectorRegistry

    base = store_dir / "iris" / _aliases(store_dir)[CHAMPION]
    other = variant_factory(store_dir, base, SETOSA_ONLY, alias=None).name
    settings = Settings(model_dir=store_dir, max_versions=2, shadow=True)
    registry = ModelRegistry(settings, InferenceMetrics(CollectorRegistry()))

    async def scenario() -> None:
        await registry.refresh()  # the challenger is held and pinned: it shadows the champion
        served = registry.get("iris")
        assert served is not None
        assert set(registry.shadows) == {"iris"}
        with pytest.raises(VersionCapReached, match=r"holds 2 versions in memory.*INFERENCE_MAX_VERSIONS"):
            await registry.version(served, other)
        with pytest.raises(VersionNotFound):
            await registry.version(served, "20990101T000000Z")
        assert (await registry.version(served, CHALLENGER)).model.version == _aliases(store_dir)[CHALLENGER]

    asyncio.run(scenario())


def test_promoting_a_version_in_memory_swaps_without_loading_it_again(
    make_client: Callable[..., Any], store_dir: Path, signer: Any, loads: list[str]
) -> None:
    store = FilesystemStore(store_dir)
    champion, challenger = _aliases(store_dir)[CHAMPION], _aliases(store_dir)[CHALLENGER]
    headers = signer.headers()
    with make_client(store_dir) as client:
        client.post("/v1/models/iris/versions/challenger/predict", json=ROW, headers=headers)
        loads.clear()
        store.move_alias("iris", CHAMPION, challenger, reason="promote")
        assert client.post("/v1/models/iris/reload", headers=headers).json()["status"] == "loaded"
        assert (
            client.post("/v1/models/iris/predict", json=ROW, headers=headers).json()["version"] == challenger
        )
        store.rollback("iris")
        assert client.post("/v1/models/iris/reload", headers=headers).json()["status"] == "loaded"
        assert client.post("/v1/models/iris/predict", json=ROW, headers=headers).json()["version"] == champion
        assert loads == []  # both were in memory: the old champion stays held after a swap


def test_a_request_that_gives_up_does_not_cancel_the_load_for_others(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry

    registry = ModelRegistry(Settings(model_dir=store_dir), InferenceMetrics(CollectorRegistry()))
    release = threading.Event()
    real = versions_module.load_model

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return real(*args, **kwargs)

    async def scenario() -> None:
        await registry.refresh()
        served = registry.get("iris")
        assert served is not None
        monkeypatch.setattr(versions_module, "load_model", slow)
        impatient = asyncio.create_task(asyncio.wait_for(registry.version(served, CHALLENGER), 0.05))
        patient = asyncio.create_task(registry.version(served, CHALLENGER))
        with pytest.raises(TimeoutError):
            await impatient  # its request timed out while the version was loading
        release.set()
        held = await asyncio.wait_for(patient, 10)
        assert held.model.version == _aliases(store_dir)[CHALLENGER]

    asyncio.run(scenario())


def test_the_versioned_predict_keeps_every_check_of_the_unversioned_one(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    headers = signer.headers()
    with make_client(store_dir) as client:
        path = "/v1/models/iris/versions/challenger/predict"
        assert client.post(path, json={**ROW, "extra": 1}, headers=headers).status_code == 422
        assert client.post(path, content=b"{", headers=headers).status_code == 400
        typed = client.post(path, content=b"{}", headers={**headers, "content-type": "text/plain"})
        assert typed.status_code == 415
        assert client.post(path, json={"instances": [ROW] * 1001}, headers=headers).status_code == 422
        assert client.post(path, json={**ROW, "sepal_length": 1e300}, headers=headers).status_code == 422


def test_a_damaged_card_in_the_store_is_a_503_for_the_listing_not_a_500(
    make_client: Callable[..., Any], store_dir: Path, signer: Any
) -> None:
    challenger = store_dir / "iris" / _aliases(store_dir)[CHALLENGER]
    headers = signer.headers()
    with make_client(store_dir) as client:
        (challenger / contract.CARD_FILE).write_text("{not json", encoding="utf-8")
        listing = client.get("/v1/models/iris/versions", headers=headers)
        assert listing.status_code == 503
        assert listing.json() == {"detail": "the versions of model 'iris' cannot be read now"}
        by_alias = client.post("/v1/models/iris/versions/challenger/predict", json=ROW, headers=headers)
        assert by_alias.status_code == 409
        assert by_alias.json()["detail"].endswith("cannot be loaded: the model card cannot be read")
        assert str(store_dir) not in listing.text + by_alias.text
        assert client.get("/openapi.json").status_code == 200
        assert client.post("/v1/models/iris/predict", json=ROW, headers=headers).status_code == 200


def test_a_slow_load_answers_504_in_time_and_the_version_is_there_afterwards(
    make_client: Callable[..., Any], store_dir: Path, signer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    calls: list[str] = []
    real = versions_module.load_model

    def slow(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        release.wait(10)
        return real(*args, **kwargs)

    headers = signer.headers()
    with make_client(store_dir, request_timeout_seconds=0.3) as client:
        monkeypatch.setattr(versions_module, "load_model", slow)
        for path, key in (
            ("/v2/models/iris/versions/challenger", "error"),
            ("/v2/models/iris/versions/challenger/ready", "error"),
        ):
            started = time.monotonic()
            answer = client.get(path, headers=headers)
            assert answer.status_code == 504, answer.text
            assert answer.json() == {key: "request timed out after 0.3 s"}
            assert time.monotonic() - started < 3
        v1 = client.post("/v1/models/iris/versions/challenger/predict", json=ROW, headers=headers)
        assert v1.status_code == 504
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/v2/models/iris/versions/challenger/ready", headers=headers).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert calls == [_aliases(store_dir)[CHALLENGER]]  # one load for all of them
