"""The contract end to end: the real trainer writes an artifact, this service loads it and predicts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from modelberth_core import contract

pytestmark = pytest.mark.integration


def test_an_artifact_from_the_real_trainer_serves_the_pipelines_predictions(
    tmp_path: Path, make_client: Callable[..., Any], signer: Any
) -> None:
    model_dir = tmp_path / "models"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelberth_cli",
            "train",
            "--dataset",
            "iris",
            "--time-budget",
            "5",
            "--out",
            str(model_dir),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    names = contract.list_models(model_dir)
    assert len(names) == 1
    name = names[0]
    version_dir = model_dir / name / str(contract.resolve_latest(model_dir, name))
    card = contract.read_card(version_dir)
    pipeline = joblib.load(version_dir / contract.MODEL_FILE)
    with make_client(model_dir) as client:
        examples = client.get(f"/v1/models/{name}/examples", headers=signer.headers()).json()["instances"]
        assert examples
        body = client.post(
            f"/v1/models/{name}/predict", json={"instances": examples}, headers=signer.headers()
        ).json()
        served = client.app.state.registry.get(name).model  # type: ignore[attr-defined]
    frame = pd.DataFrame(examples)[card.feature_names]
    assert body["version"] == card.version
    assert body["predictions"] == [str(p) for p in pipeline.predict(frame)]
    expected = pipeline.predict_proba(frame)
    got = np.array([[row[c] for c in card.classes or []] for row in body["probabilities"]])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert served.fast is not None, "the verified fast path should apply to the trainer's pipelines"
