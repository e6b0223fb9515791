"""Leakage: preprocessing is fitted on the training part only; a planted proxy column is flagged."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from modelberth_core import contract
from modelberth_trainer.prepare import prepare
from modelberth_trainer.settings import TrainerSettings
from modelberth_trainer.train import run


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _tabular(rows: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, 1.0, rows)
    x2 = rng.normal(-shift, 2.0, rows)
    x2[rng.random(rows) < 0.1] = np.nan
    logit = 1.0 * x1 - 0.4 * np.nan_to_num(x2)
    y = np.where(rng.random(rows) < 1 / (1 + np.exp(-(logit - 1.0 * shift))), "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": x2, "city": rng.choice(["a", "b", "c"], rows), "y": y})


def _settings(tmp_path: Path, data: Path, **kwargs: object) -> TrainerSettings:
    base: dict[str, object] = {
        "data": data,
        "target": "y",
        "store": str(tmp_path / "models"),
        "time_budget_seconds": 10,
        "candidates": ["logistic"],
        "max_configs_per_candidate": 1,
    }
    return TrainerSettings(**{**base, **kwargs})  # type: ignore[arg-type]


def _linear_numeric_steps(version_dir: Path) -> tuple[object, object]:
    pipeline = joblib.load(version_dir / contract.MODEL_FILE)
    numeric = pipeline.named_steps["prep"].named_transformers_["num"]
    return numeric.named_steps["simpleimputer"], numeric.named_steps["standardscaler"]


def test_preprocessing_statistics_equal_train_only_statistics_on_a_holdout_split(tmp_path: Path) -> None:
    data = _write(tmp_path / "d.csv", _tabular(600, 0.0, 0))
    settings = _settings(tmp_path, data)
    version_dir = run(settings, lambda _line: None).path
    prep = prepare(settings, lambda _line: None)  # same seed: the same split
    imputer, scaler = _linear_numeric_steps(version_dir)
    train, everything = prep.x_train, pd.concat([prep.x_train, prep.x_test])
    assert imputer.statistics_ == pytest.approx(train[["x1", "x2"]].median().to_numpy())
    imputed = train[["x1", "x2"]].fillna(train[["x1", "x2"]].median())
    assert scaler.mean_[:2] == pytest.approx(imputed.mean().to_numpy())
    assert not np.allclose(imputer.statistics_, everything[["x1", "x2"]].median().to_numpy())
    card = contract.read_card(version_dir)
    assert card.data.train_rows == len(train)
    assert card.data.test_rows == len(prep.x_test)
    assert card.reference_profile["x1"].missing == 0.0  # type: ignore[union-attr]


def test_preprocessing_never_sees_a_shifted_user_test_file(tmp_path: Path) -> None:
    train = _tabular(400, 0.0, 1)
    test = _tabular(200, 5.0, 2)  # far away: any leak would move the statistics
    settings = _settings(
        tmp_path, _write(tmp_path / "train.csv", train), test_data=_write(tmp_path / "test.csv", test)
    )
    version_dir = run(settings, lambda _line: None).path
    imputer, scaler = _linear_numeric_steps(version_dir)
    assert imputer.statistics_ == pytest.approx(train[["x1", "x2"]].median().to_numpy())
    imputed = train[["x1", "x2"]].fillna(train[["x1", "x2"]].median())
    assert scaler.mean_[:2] == pytest.approx(imputed.mean().to_numpy())
    card = contract.read_card(version_dir)
    assert card.data.test_source == str(tmp_path / "test.csv")
    assert card.data.train_rows == 400
    assert card.data.test_rows == 200


def test_a_planted_proxy_column_is_flagged_in_console_card_and_report(tmp_path: Path) -> None:
    frame = _tabular(800, 0.0, 3)
    rng = np.random.default_rng(4)
    proxy = (frame["y"] == "yes").astype(float) + rng.normal(0, 0.05, len(frame))
    frame.insert(0, "settled_amount", proxy)
    lines: list[str] = []
    version_dir = run(_settings(tmp_path, _write(tmp_path / "d.csv", frame)), lines.append).path
    card = contract.read_card(version_dir)
    assert [w.column for w in card.leak_warnings] == ["settled_amount"]
    assert card.leak_warnings[0].score > 0.99
    assert card.leak_warnings[0].metric == "roc_auc"
    assert any("LEAK WARNING" in line and "settled_amount" in line for line in lines)
    report = (version_dir / contract.REPORT_FILE).read_text()
    assert "--drop settled_amount" in report


def test_no_leak_warning_without_a_proxy(tmp_path: Path) -> None:
    version_dir = run(
        _settings(tmp_path, _write(tmp_path / "d.csv", _tabular(600, 0.0, 5))), lambda _line: None
    ).path
    assert contract.read_card(version_dir).leak_warnings == []


def test_duplicate_rows_across_the_split_are_reported(tmp_path: Path) -> None:
    frame = _tabular(300, 0.0, 6)
    frame = pd.concat([frame, frame.head(100)], ignore_index=True)
    version_dir = run(_settings(tmp_path, _write(tmp_path / "d.csv", frame)), lambda _line: None).path
    notes = " ".join(contract.read_card(version_dir).notes)
    assert "repeat another training row" in notes
    assert "also occur in the training part" in notes
