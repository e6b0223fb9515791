"""The artifact the model tests examine: ``--artifact-dir`` (built by CI) or one trained here on iris."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelberth_core import contract
from modelberth_trainer.settings import TrainerSettings
from modelberth_trainer.train import run


def _version_dir(path: Path) -> Path:
    if (path / contract.CARD_FILE).is_file():
        return path
    for root in (path, path / "models"):
        version = contract.resolve_latest(root, "iris")
        if version:
            return root / "iris" / version
    raise pytest.UsageError(f"--artifact-dir {path}: no model.json there and no iris model under it")


@pytest.fixture(scope="session")
def iris_artifact(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published iris version directory."""
    given = request.config.getoption("--artifact-dir")
    if given:
        return _version_dir(Path(given))
    out = tmp_path_factory.mktemp("models")
    settings = TrainerSettings(dataset="iris", store=str(out), time_budget_seconds=20, seed=0)
    return run(settings, lambda _line: None).path
