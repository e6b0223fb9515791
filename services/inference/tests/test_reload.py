"""Loading checks, readiness, hot reload (POST and polling) and failed loads that keep the old version."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelberth_core import contract
from modelberth_inference.model import LoadError, load_model

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _version_dir(model_dir: Path) -> Path:
    return model_dir / "iris" / str(contract.resolve_latest(model_dir, "iris"))


def _edit_card(version_dir: Path, **changes: Any) -> None:
    path = version_dir / contract.CARD_FILE
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "sklearn":
            raw["versions"]["sklearn"] = value
        else:
            raw[key] = value
    path.write_text(json.dumps(raw))


def _metric(client: TestClient, line_start: str) -> str | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return line.rsplit(" ", 1)[1]
    return None


def test_load_checks_schema_then_sklearn_then_checksum(tiny_model_dir: Path) -> None:
    version_dir = _version_dir(tiny_model_dir)
    version = version_dir.name
    (version_dir / contract.MODEL_FILE).write_bytes(b"not a pickle")  # every check below fails before joblib
    _edit_card(version_dir, schema_version=99, sklearn="0.1.0")
    with pytest.raises(LoadError, match="schema_version 99 is not supported"):
        load_model(tiny_model_dir, "iris", version, max_text_length=100)
    _edit_card(version_dir, schema_version=contract.SCHEMA_VERSION)
    with pytest.raises(LoadError, match=r"built with scikit-learn 0\.1\.0, this server runs"):
        load_model(tiny_model_dir, "iris", version, max_text_length=100)
    import sklearn

    _edit_card(version_dir, sklearn=sklearn.__version__)
    with pytest.raises(LoadError, match="does not match the card's"):
        load_model(tiny_model_dir, "iris", version, max_text_length=100)


def test_load_refuses_paths_outside_the_model_dir(tiny_model_dir: Path) -> None:
    with pytest.raises(LoadError, match="no such version"):
        load_model(tiny_model_dir, "iris", "../../etc", max_text_length=100)


def test_readyz_is_503_until_a_model_is_there(
    make_client: Callable[..., Any], artifact_factory: Callable[..., Path], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    with make_client(model_dir, ready=False, poll_seconds=0.05) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["reason"] == "models are loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"] == "no models in the store"
        assert str(model_dir) not in not_ready.text
        assert client.get("/v2/health/ready").status_code == 400
        assert client.get("/healthz").status_code == 200
        artifact_factory(model_dir)
        deadline = time.monotonic() + 20
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _metric(client, "modelberth_inference_models_ready") == "1.0"


def test_post_reload_swaps_to_the_new_latest(
    client: TestClient, signer: Any, tiny_model_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    admin = signer.headers("models:admin models:read predict")
    old = _version_dir(tiny_model_dir).name
    unchanged = client.post("/v1/models/iris/reload", headers=admin)
    assert unchanged.json() == {
        "model": "iris",
        "status": "unchanged",
        "version": old,
        "previous_version": old,
    }
    new = artifact_factory(tiny_model_dir, rows=90).name
    response = client.post("/v1/models/iris/reload", headers=admin)
    assert response.status_code == 200
    assert response.json() == {"model": "iris", "status": "loaded", "version": new, "previous_version": old}
    assert client.get("/v1/models/iris", headers=admin).json()["version"] == new
    assert client.post("/v1/models/iris/predict", json=ROW, headers=admin).json()["version"] == new
    assert _metric(client, f'modelberth_inference_model_info{{model="iris",version="{new}"}}') == "1.0"
    assert _metric(client, f'modelberth_inference_model_info{{model="iris",version="{old}"}}') is None
    assert client.post("/v1/models/nope/reload", headers=admin).status_code == 404


def test_a_failed_load_keeps_the_old_version_and_is_counted(
    client: TestClient, signer: Any, tiny_model_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    admin = signer.headers("models:admin predict")
    old = _version_dir(tiny_model_dir).name
    assert _metric(client, 'modelberth_inference_model_load_failures_total{model="iris"}') is None
    broken = artifact_factory(tiny_model_dir)
    with (broken / contract.MODEL_FILE).open("ab") as fh:
        fh.write(b"tampered")
    response = client.post("/v1/models/iris/reload", headers=admin)
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"reload of iris {broken.name} failed (still serving {old}):")
    assert "does not match the card's" in response.json()["detail"]
    assert client.post("/v1/models/iris/predict", json=ROW, headers=admin).json()["version"] == old
    assert _metric(client, 'modelberth_inference_model_load_failures_total{model="iris"}') == "1.0"
    assert client.get("/readyz").status_code == 200


def test_readyz_names_the_newer_version_that_failed_and_why(
    client: TestClient, signer: Any, tiny_model_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    """The old version keeps serving (ready), and /readyz says which version did not load and why, in
    words without paths (it answers without a token)."""
    admin = signer.headers("models:admin predict")
    old = _version_dir(tiny_model_dir).name
    assert client.get("/readyz").json()["load_failures"] == {}
    broken = artifact_factory(tiny_model_dir)
    with (broken / contract.MODEL_FILE).open("ab") as fh:
        fh.write(b"tampered")
    assert client.post("/v1/models/iris/reload", headers=admin).status_code == 409
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"iris": old}
    assert ready.json()["load_failures"] == {
        "iris": {
            "version": broken.name,
            "reason": "the model file is missing or its sha256 differs from the card's",
        }
    }
    assert str(tiny_model_dir) not in ready.text
    contract.set_latest(tiny_model_dir, "iris", old)  # rolled back: nothing has failed any more
    assert client.post("/v1/models/iris/reload", headers=admin).json()["status"] == "unchanged"
    assert client.get("/readyz").json()["load_failures"] == {}


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("schema", "the card's schema_version is not one this server reads ({supported})"),
        ("sklearn", "built with another scikit-learn version than this server runs"),
        ("pickle", "the model file does not load (KeyError)"),  # joblib reads b"n" as an opcode
    ],
)
def test_readyz_is_503_with_the_reason_when_no_version_loads(
    make_client: Callable[..., Any], tiny_model_dir: Path, breakage: str, reason: str
) -> None:
    version_dir = _version_dir(tiny_model_dir)
    if breakage == "schema":
        _edit_card(version_dir, schema_version=99)
    elif breakage == "sklearn":
        _edit_card(version_dir, sklearn="0.1.0")
    else:
        (version_dir / contract.MODEL_FILE).write_bytes(b"not a pickle")
        _edit_card(version_dir, model_sha256=contract.sha256_file(version_dir / contract.MODEL_FILE))
    with make_client(tiny_model_dir, ready=False) as client:
        deadline = time.monotonic() + 20
        while client.get("/readyz").json()["reason"] == "models are loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["load_failures"] == {
        "iris": {
            "version": version_dir.name,
            "reason": reason.format(supported=", ".join(map(str, contract.SUPPORTED_SCHEMA_VERSIONS))),
        }
    }
    assert str(tiny_model_dir) not in response.text


def test_polling_follows_the_latest_pointer(
    make_client: Callable[..., Any], signer: Any, tiny_model_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    first = _version_dir(tiny_model_dir).name
    with make_client(tiny_model_dir, poll_seconds=0.05) as client:
        headers = signer.headers()
        second = artifact_factory(tiny_model_dir).name
        deadline = time.monotonic() + 20
        while client.get("/v1/models/iris", headers=headers).json()["version"] != second:
            assert time.monotonic() < deadline, "poll did not pick up the new version"
            time.sleep(0.05)
        contract.set_latest(tiny_model_dir, "iris", first)  # a rollback is just the pointer moving back
        while client.get("/v1/models/iris", headers=headers).json()["version"] != first:
            assert time.monotonic() < deadline, "poll did not follow the rollback"
            time.sleep(0.05)


def test_pinned_version_is_served_and_not_moved(
    make_client: Callable[..., Any], signer: Any, tiny_model_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    first = _version_dir(tiny_model_dir).name
    artifact_factory(tiny_model_dir)
    with make_client(tiny_model_dir, models=f"iris={first}") as client:
        assert client.get("/v1/models/iris", headers=signer.headers()).json()["version"] == first
