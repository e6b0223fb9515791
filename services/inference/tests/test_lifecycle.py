"""The model lifecycle with real processes: the trainer's gate, the ``models`` commands and a running
inference that follows the champion without a restart, calls the challenger by alias and shadows the
champion with it, measured by a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelberth_core.store import CHALLENGER, CHAMPION, FilesystemStore

pytestmark = pytest.mark.integration

PETALS = ["petal_length_cm", "petal_width_cm"]
SETOSA = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}


def _modelberth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelberth_cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _token(auth_url: str) -> dict[str, str]:
    added = _modelberth(
        "clients", "add", "lifecycle", "--scope", "predict", "--scope", "models:read", "--json"
    )
    assert added.returncode == 0, added.stderr
    response = httpx.post(
        auth_url + "/oauth/token",
        data={"grant_type": "client_credentials", **json.loads(added.stdout)},
        timeout=10.0,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@dataclass(frozen=True)
class _Inference:
    """The running inference process, as a client with a predict/read token sees it."""

    url: str
    headers: dict[str, str]

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, headers=self.headers, timeout=10.0)
        assert response.status_code == 200, response.text
        return response.json()

    def served(self) -> str:
        return str(self.get("/v1/models/iris")["version"])

    def wait_for(self, version: str) -> None:
        deadline = time.monotonic() + 30
        while self.served() != version:
            assert time.monotonic() < deadline, f"inference still serves {self.served()}, not {version}"
            time.sleep(0.1)

    def predict(self, row: dict[str, float], path: str = "/v1/models/iris/predict") -> httpx.Response:
        return httpx.post(self.url + path, json={"instances": [row]}, headers=self.headers, timeout=30.0)

    def predicted_by(self, row: dict[str, float]) -> str:
        response = self.predict(row)
        assert response.status_code == 200, response.text
        return str(response.json()["version"])


def test_train_gate_promote_and_rollback_under_a_running_inference(
    start_service: Callable[..., Any], prometheus: Callable[..., Any], tmp_path: Path
) -> None:
    store_dir = tmp_path / "models"
    store = FilesystemStore(store_dir)
    train = ["train", "--dataset", "iris", "--store", str(store_dir), "--time-budget", "3"]
    train += ["--candidates", "logistic"]

    first = _modelberth(*train)
    assert first.returncode == 0, first.stderr
    champion = store.champion("iris")
    assert champion is not None
    assert first.stdout.strip().splitlines()[-1] == f"gate: PROMOTED iris:{champion} to champion"

    auth = start_service("auth", timeout=180.0)
    process = start_service(
        "inference",
        env={
            "INFERENCE_STORE": str(store_dir),
            "INFERENCE_AUTH_JWKS_URL": auth.url + "/.well-known/jwks.json",
            "INFERENCE_POLL_SECONDS": "0.2",
            "INFERENCE_SHADOW": "true",
        },
        timeout=180.0,
    )
    pid = process.process.pid
    inference = _Inference(process.url, _token(auth.url))
    prom = prometheus({"modelberth-inference": process.url.removeprefix("http://")})
    prom.wait(lambda: prom.value('up{job="modelberth-inference"}') == 1, "inference to be scraped")
    assert inference.served() == champion
    assert inference.predicted_by(SETOSA) == champion

    # A worse candidate (no petal features) is refused: challenger, exit 3, the champion keeps serving.
    worse = _modelberth(*train, "--drop", *PETALS)
    assert worse.returncode == 3, worse.stdout[-2000:] + worse.stderr
    challenger = store.aliases("iris")[CHALLENGER]
    assert challenger != champion
    assert store.champion("iris") == champion
    assert worse.stdout.strip().splitlines()[-1] == (
        f"gate: REFUSED iris:{challenger}: published as challenger; champion stays {champion}"
    )
    time.sleep(1.0)  # five poll intervals: nothing may have moved
    assert inference.served() == champion

    _challenger_answers_by_alias(inference, champion, challenger)
    _shadowing_is_measured(inference, prom, champion)

    # promote: the running process switches at its next poll, no restart.
    promoted = _modelberth("models", "promote", "iris", "challenger", "--store", str(store_dir))
    assert promoted.returncode == 0, promoted.stderr
    inference.wait_for(challenger)
    assert inference.predicted_by(SEPALS) == challenger

    rolled = _modelberth("models", "rollback", "iris", "--store", str(store_dir))
    assert rolled.returncode == 0, rolled.stderr
    inference.wait_for(champion)
    assert inference.predicted_by(SETOSA) == champion
    assert process.process.poll() is None
    assert process.process.pid == pid
    _history_lists_every_move(store_dir, champion, challenger)


SEPALS = {k: v for k, v in SETOSA.items() if k not in PETALS}


def _challenger_answers_by_alias(inference: _Inference, champion: str, challenger: str) -> None:
    """The challenger answers by alias (V1) and by id (V2) without becoming champion; the listing shows
    both."""
    by_alias = inference.predict(SEPALS, "/v1/models/iris/versions/challenger/predict")
    assert by_alias.status_code == 200, by_alias.text
    assert by_alias.json()["version"] == challenger
    v2 = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in SEPALS.items()]}
    infer = httpx.post(
        inference.url + f"/v2/models/iris/versions/{challenger}/infer",
        json=v2,
        headers=inference.headers,
        timeout=10.0,
    )
    assert infer.json()["model_version"] == challenger, infer.text
    unknown = inference.predict(SEPALS, "/v1/models/iris/versions/nightly/predict")
    assert unknown.status_code == 404
    assert unknown.json()["detail"].startswith("model 'iris' has no alias 'nightly'")
    listing = inference.get("/v1/models/iris/versions")
    assert [(v["version"], v["aliases"], v["loaded"]) for v in listing["versions"]] == [
        (champion, [CHAMPION], True),
        (challenger, [CHALLENGER, "latest"], True),
    ]
    assert inference.served() == champion


def _shadowing_is_measured(inference: _Inference, prom: Any, champion: str) -> None:
    """Every answered request is scored by the challenger too; Prometheus sees the agreement."""
    deadline = time.monotonic() + 30
    listing = inference.get("/v1/models/iris/versions")
    while listing["shadow"].get("status") != "active":  # set up at the next poll after the gate
        assert time.monotonic() < deadline, listing["shadow"]
        time.sleep(0.1)
        listing = inference.get("/v1/models/iris/versions")
    rows = [{**SETOSA, "petal_length_cm": 1.4 + i / 10, "sepal_width_cm": 3.5 - i / 20} for i in range(40)]
    for row in rows:
        assert inference.predicted_by(row) == champion
    compared = 'sum(modelberth_inference_shadow_compared_rows_total{model="iris"})'
    prom.wait(lambda: prom.value(compared) == len(rows), "the shadow-compared rows to be scraped")
    agreement = prom.value('sum(modelberth_inference_shadow_agreeing_rows_total{model="iris"}) / ' + compared)
    shadow = inference.get("/v1/models/iris/versions")
    assert shadow["shadow"]["compared_rows"] == len(rows)
    assert abs(agreement - shadow["shadow"]["agreement"]) < 1e-6
    assert 0.0 <= agreement <= 1.0


def _history_lists_every_move(store_dir: Path, champion: str, challenger: str) -> None:
    history = _modelberth("models", "history", "iris", "--store", str(store_dir), "--json")
    assert history.returncode == 0, history.stderr
    moves = [
        (e["alias"], e["reason"], e["from_version"], e["to_version"])
        for e in json.loads(history.stdout)["events"]
        if e["alias"] in (CHAMPION, CHALLENGER)
    ]
    assert moves == [
        (CHAMPION, "gate", None, champion),
        (CHALLENGER, "gate", None, challenger),
        (CHAMPION, "promote", champion, challenger),
        (CHALLENGER, "promote", challenger, None),  # the challenger became the champion: removed
        (CHAMPION, "rollback", challenger, champion),
    ]
