"""The V2 model repository extension: index, load, unload (scope models:admin for load and unload).

Load and unload decide what is held in memory; they never move an alias, and an unloaded model stays
unloaded (polls do not bring it back, even when its alias moves) until it is loaded again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from modelberth_core.store import FilesystemStore

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
TENSOR = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(ROW.values())}]}


def _index(client: TestClient, signer: Any, body: Any = None) -> list[dict[str, Any]]:
    response = client.post("/v2/repository/index", json=body, headers=signer.headers("models:read"))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def _refresh(client: TestClient) -> None:
    """One poll of the store, as the background poller would run it."""
    registry = client.app.state.registry  # type: ignore[attr-defined]
    client.portal.call(registry.refresh)  # type: ignore[union-attr]


def test_index_lists_each_model_and_version_in_memory(
    make_client: Callable[..., Any],
    tmp_path: Path,
    artifact_factory: Callable[..., Path],
    variant_factory: Callable[..., Path],
    signer: Any,
) -> None:
    model_dir = tmp_path / "models"
    base = artifact_factory(model_dir)
    challenger = variant_factory(model_dir, base, LogisticRegression(max_iter=500))
    with make_client(model_dir) as client:
        assert _index(client, signer) == [
            {"name": "iris", "version": base.name, "state": "READY", "reason": ""}
        ]
        called = client.post(
            "/v1/models/iris/versions/challenger/predict", json=ROW, headers=signer.headers("predict")
        )
        assert called.status_code == 200
        assert [(e["version"], e["state"]) for e in _index(client, signer)] == [
            (base.name, "READY"),
            (challenger.name, "READY"),
        ]
        assert _index(client, signer, {"ready": True}) == _index(client, signer)
        assert (
            client.post("/v2/repository/index", json={"ready": 1}, headers=signer.headers()).status_code
            == 400
        )
        forbidden = client.post("/v2/repository/index", headers=signer.headers("predict"))
        assert forbidden.status_code == 403
        assert forbidden.json() == {"error": "insufficient_scope: this call needs the models:read scope"}


def test_unload_frees_the_model_until_it_is_loaded_again_whatever_its_alias_does(
    make_client: Callable[..., Any],
    tmp_path: Path,
    artifact_factory: Callable[..., Path],
    variant_factory: Callable[..., Path],
    signer: Any,
) -> None:
    model_dir = tmp_path / "models"
    base = artifact_factory(model_dir)
    variant_factory(model_dir, base, LogisticRegression(max_iter=500))
    store = FilesystemStore(model_dir)
    with make_client(model_dir) as client:
        admin = signer.headers("models:admin")
        client.post(
            "/v1/models/iris/versions/challenger/predict", json=ROW, headers=signer.headers("predict")
        )
        for scope in ("predict", "models:read"):
            refused = client.post("/v2/repository/models/iris/unload", headers=signer.headers(scope))
            assert refused.status_code == 403
        aliases = store.aliases("iris")
        unloaded = client.post(
            "/v2/repository/models/iris/unload",
            json={"parameters": {"unload_dependents": False}},
            headers=admin,
        )
        assert unloaded.status_code == 200, unloaded.text
        assert store.aliases("iris") == aliases, "unloading never moves an alias"
        registry = client.app.state.registry  # type: ignore[attr-defined]
        assert "iris" not in registry.models
        assert registry.versions.versions("iris") == []
        metrics = client.get("/metrics").text
        assert 'rejected_requests_total{model="iris"' not in metrics
        assert 'modelberth_inference_model_info{model="iris"' not in metrics
        assert _index(client, signer) == [{"name": "iris", "state": "UNAVAILABLE", "reason": "unloaded"}]
        for method, url in (
            ("post", "/v2/models/iris/infer"),
            ("post", "/v1/models/iris/predict"),
            ("get", "/v2/models/iris/ready"),
        ):
            answer = client.request(
                method, url, json=TENSOR if "infer" in url else ROW, headers=signer.headers()
            )
            assert answer.status_code == 404, (url, answer.text)
        assert client.get("/readyz").status_code == 200, (
            "an unloaded model is an admin's choice, not unreadiness"
        )

        newer = artifact_factory(model_dir)  # the champion moves: a poll must not bring the model back
        _refresh(client)
        assert "iris" not in registry.models
        assert client.post("/v2/models/iris/infer", json=TENSOR, headers=signer.headers()).status_code == 404

        loaded = client.post("/v2/repository/models/iris/load", headers=admin)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json() == {"name": "iris", "version": newer.name, "state": "READY"}
        assert store.aliases("iris")["champion"] == newer.name
        answer = client.post("/v2/models/iris/infer", json=TENSOR, headers=signer.headers())
        assert answer.status_code == 200
        assert answer.json()["model_version"] == newer.name


def test_load_and_unload_of_an_unknown_model_are_404(
    client: TestClient, signer: Any, tiny_model_dir: Path
) -> None:
    for action in ("load", "unload"):
        response = client.post(f"/v2/repository/models/nope/{action}", headers=signer.headers())
        assert response.status_code == 404, response.text
        assert response.json() == {
            "error": "model 'nope' not found"
            + (" (or not one this server serves)" if action == "load" else "")
        }
    bad = client.post("/v2/repository/models/iris/load", content=b"[1]", headers=signer.headers())
    assert bad.status_code == 400
    assert bad.json() == {"error": "expected a JSON object"}
    override = {"parameters": {"config": '{"backend": "python"}'}}
    refused = client.post("/v2/repository/models/iris/load", json=override, headers=signer.headers())
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "load takes no parameters: the model store holds each version's card and files"
    }


def test_an_unload_racing_a_poll_stays_unloaded(client: TestClient, signer: Any) -> None:
    registry = client.app.state.registry  # type: ignore[attr-defined]

    async def race() -> None:
        await asyncio.gather(registry.refresh(), registry.unload_model("iris"), registry.refresh())

    client.portal.call(race)  # type: ignore[union-attr]
    assert "iris" not in registry.models
    assert client.post("/v1/models/iris/predict", json=ROW, headers=signer.headers()).status_code == 404
