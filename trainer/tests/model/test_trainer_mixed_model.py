"""A table with numbers, categories, free text, identifiers and gaps: specs, profiles and serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from modelberth_core import contract
from modelberth_trainer.settings import TrainerSettings
from modelberth_trainer.train import run

WORDS = {
    "good": ["great", "service", "fast", "friendly", "helpful", "quick", "nice"],
    "bad": ["slow", "rude", "broken", "late", "refund", "awful", "never"],
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    rows = 500
    label = rng.choice(["good", "bad"], rows, p=[0.6, 0.4])
    frame = pd.DataFrame(
        {
            "ticket_id": np.arange(1, rows + 1),
            "amount": np.where(rng.random(rows) < 0.1, np.nan, rng.gamma(2.0, 50.0, rows)),
            "channel": rng.choice(["web", "phone", "shop"], rows),
            "review": [
                " ".join(rng.choice(WORDS[y], 5))
                + " "
                + " ".join(rng.choice(WORDS["good"] + WORDS["bad"], 3))
                for y in label
            ],
            "country": ["de"] * rows,
            "label": label,
        }
    )
    frame.loc[frame.index[:7], "channel"] = np.nan
    tmp = tmp_path_factory.mktemp("mixed")
    frame.to_csv(tmp / "tickets.csv", index=False)
    settings = TrainerSettings(
        data=tmp / "tickets.csv",
        target="label",
        store=str(tmp / "models"),
        time_budget_seconds=8,
        max_configs_per_candidate=1,
    )
    return run(settings, lambda _line: None).path


def test_feature_specs_let_inference_validate_requests(mixed: Path) -> None:
    card = contract.read_card(mixed)
    specs = {f.name: f for f in card.features}
    assert list(specs) == ["amount", "channel", "review"]
    assert specs["amount"].type == "numeric"
    assert not specs["amount"].required
    assert specs["channel"].type == "categorical"
    assert specs["channel"].categories == ["phone", "shop", "web"]
    assert not specs["channel"].required
    assert specs["review"].type == "text"
    assert specs["review"].required
    assert specs["review"].max_length is not None
    assert isinstance(specs["review"].example, str)
    dropped = {d.name: d.reason for d in card.dropped_columns}
    assert set(dropped) == {"ticket_id", "country"}
    assert card.selected.candidate == card.leaderboard[0].candidate
    assert card.leaderboard[0].candidate == "linear_tfidf" or card.leaderboard[0].cv_score is not None


def test_profiles_cover_every_feature(mixed: Path) -> None:
    card = contract.read_card(mixed)
    amount, channel, review = (card.reference_profile[k] for k in ("amount", "channel", "review"))
    assert isinstance(amount, contract.NumericProfile)
    assert 0.05 < amount.missing < 0.15
    assert isinstance(channel, contract.CategoricalProfile)
    assert set(channel.frequencies) == {"phone", "shop", "web"}
    assert isinstance(review, contract.NumericProfile)  # text is profiled by its length
    assert review.edges[0] > 10


def test_pipeline_takes_json_like_rows_with_nulls_and_unseen_values(mixed: Path) -> None:
    model = joblib.load(mixed / contract.MODEL_FILE)
    rows = pd.DataFrame(
        [
            {"amount": None, "channel": None, "review": None},
            {"amount": 10.0, "channel": "carrier pigeon", "review": "great friendly fast service"},
        ]
    )
    proba = model.predict_proba(rows)
    assert proba.shape == (2, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert model.predict(rows.iloc[[1]])[0] == "good"


def test_text_pipeline_unpickles_without_the_trainer(mixed: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['modelberth_trainer'] = None\n"
        "import joblib, pandas as pd\n"
        f"m = joblib.load({str(mixed / contract.MODEL_FILE)!r})\n"
        f"print(len(m.predict(pd.read_csv({str(mixed / contract.EXAMPLES_FILE)!r}))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == 100  # the whole 20% hold-out of 500 rows
