"""The promotion gate: a candidate becomes champion only if it is not worse on the same rows and its
checks pass; otherwise it is published as challenger and the champion stays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelberth_cli.main import main
from modelberth_core import contract
from modelberth_core.store import CHALLENGER, CHAMPION, LATEST, FilesystemStore, Resolved
from modelberth_trainer import gate
from modelberth_trainer.artifact import Trained
from modelberth_trainer.settings import TrainerSettings
from modelberth_trainer.train import run

PETALS = ["petal_length_cm", "petal_width_cm"]
FAST: dict[str, Any] = {"time_budget_seconds": 5, "candidates": ["logistic"], "max_configs_per_candidate": 1}


def _train(store: Path, lines: list[str] | None = None, **kwargs: Any) -> Trained:
    settings = TrainerSettings(**{"dataset": "iris", "store": str(store), **FAST, **kwargs})
    return run(settings, (lines if lines is not None else []).append)


def _csv(path: Path, rows: int = 300, seed: int = 0, classes: str = "abc", leak: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    x1, x2, extra = rng.normal(size=(3, rows))
    cut = np.quantile(x1 + 0.5 * x2, np.linspace(0, 1, len(classes) + 1)[1:-1])
    y = np.asarray(list(classes))[np.searchsorted(cut, x1 + 0.5 * x2 + rng.normal(0, 0.3, rows))]
    frame = pd.DataFrame({"x1": x1, "x2": x2, "extra": extra, "y": y, "z": rng.choice(["p", "q"], rows)})
    frame["n"] = rng.integers(0, 3, rows)
    if leak:
        frame["settled"] = pd.Series(y).map({c: i for i, c in enumerate(classes)}) + rng.normal(0, 0.01, rows)
    frame.to_csv(path, index=False)
    return path


def test_first_version_becomes_champion_and_a_worse_one_challenger(tmp_path: Path) -> None:
    store_dir = tmp_path / "models"
    first = _train(store_dir)
    assert first.promoted
    assert first.gate.verdict == "promoted"
    assert first.gate.champion_version is None
    assert [c.kind for c in first.gate.checks] == ["leaks"]

    lines: list[str] = []
    worse = _train(store_dir, lines, drop=PETALS)
    store = FilesystemStore(store_dir)
    assert not worse.promoted
    assert worse.alias == CHALLENGER
    assert store.aliases("iris") == {
        CHAMPION: first.published.version,
        CHALLENGER: worse.published.version,
        LATEST: worse.published.version,
    }
    result = contract.read_card(worse.path).gate
    assert result is not None
    assert result.verdict == "refused"
    assert result.champion_version == first.published.version
    # The champion uses the petal columns the candidate dropped: it was scored on the rows as read.
    assert result.champion_score is not None
    assert result.candidate_score is not None
    assert result.champion_score - result.candidate_score > 0.1
    metric = next(c for c in result.checks if c.kind == "metric")
    assert not metric.passed
    assert metric.margin == pytest.approx(result.candidate_score - (result.champion_score - 0.005))
    assert result.reasons == [f"metric f1_macro: {metric.detail}"]
    report = (worse.path / contract.REPORT_FILE).read_text(encoding="utf-8")
    assert "Promotion gate: champion vs candidate" in report
    assert "<b>Refused</b>" in report
    assert report.count("<figcaption>ROC curves on the same test rows") == 1
    assert lines[-1] == (
        f"gate: REFUSED iris:{worse.published.version}: published as challenger;"
        f" champion stays {first.published.version}"
    )
    assert any(line.startswith("gate: FAIL  metric f1_macro") for line in lines)
    events = [(e.alias, e.reason, e.to_version) for e in store.history("iris") if e.alias != LATEST]
    assert events == [
        (CHAMPION, "gate", first.published.version),
        (CHALLENGER, "gate", worse.published.version),
    ]


def test_not_worse_within_the_tolerance_is_promoted(tmp_path: Path) -> None:
    store_dir = tmp_path / "models"
    first = _train(store_dir)
    same = _train(store_dir)  # same data, seed and search: an equal score is not worse
    assert same.promoted
    assert same.gate.champion_version == first.published.version
    assert same.gate.candidate_score == same.gate.champion_score
    lenient = _train(store_dir, drop=PETALS, gate_tolerance=0.5)
    assert lenient.promoted
    assert FilesystemStore(store_dir).champion("iris") == lenient.published.version


def test_no_gate_promotes_a_worse_model_and_says_so(tmp_path: Path) -> None:
    store_dir = tmp_path / "models"
    _train(store_dir)
    forced = _train(store_dir, drop=PETALS, no_gate=True)
    assert forced.promoted
    assert forced.gate.verdict == "skipped"
    assert forced.gate.checks == []
    event = FilesystemStore(store_dir).history("iris")[-1]
    assert (event.alias, event.reason, event.to_version) == (CHAMPION, "gate", forced.published.version)
    assert event.detail == "--no-gate: promoted without comparison or checks"


def _tamper_sklearn(version_dir: Path) -> None:
    card = json.loads((version_dir / contract.CARD_FILE).read_text())
    card["versions"]["sklearn"] = "0.0.1"
    (version_dir / contract.CARD_FILE).write_text(json.dumps(card))


def _tamper_model(version_dir: Path) -> None:
    with (version_dir / contract.MODEL_FILE).open("ab") as fh:
        fh.write(b"tampered")


@pytest.mark.parametrize(
    ("champion", "candidate", "tamper", "refusal"),
    [
        (
            {},
            {"csv": {"drop_column": "extra"}},
            None,
            "its features ['extra'] are missing from the candidate's data",
        ),
        ({}, {"target": "z"}, None, "it predicts 'y', the candidate 'z'"),
        (
            {},
            {"csv": {"classes": "ab"}, "allow_leaks": True},
            None,
            "its classes ['c'] are missing from the candidate's data",
        ),
        (
            {"target": "n"},
            {"target": "n", "task": "regression", "candidates": ["ridge"]},
            None,
            "it is a classification model",
        ),
        ({}, {}, _tamper_sklearn, "it was built with scikit-learn 0.0.1"),
        ({}, {}, _tamper_model, "does not match the card's"),
    ],
)
def test_a_champion_that_cannot_be_compared_refuses_promotion(
    tmp_path: Path, champion: dict[str, Any], candidate: dict[str, Any], tamper: Any, refusal: str
) -> None:
    store_dir = tmp_path / "models"
    data = _csv(tmp_path / "d.csv")
    first = _train(store_dir, data=data, name="d", **{"target": "y", **champion})
    assert first.promoted
    if tamper is not None:
        tamper(first.path)
    csv = dict(candidate.pop("csv", {}))
    other = data
    if csv:
        other = _csv(tmp_path / "other.csv", classes=csv.get("classes", "abc"))
        if "drop_column" in csv:
            pd.read_csv(other).drop(columns=[csv["drop_column"]]).to_csv(other, index=False)
    second = _train(store_dir, data=other, name="d", **{"target": "y", **candidate})
    assert not second.promoted
    (check,) = [c for c in second.gate.checks if not c.passed]
    assert check.kind == "comparable"
    assert refusal in check.detail
    assert second.gate.champion_score is None
    assert FilesystemStore(store_dir).champion("d") == first.published.version


def test_a_standing_leak_warning_blocks_even_the_first_version(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", leak=True)
    refused = _train(tmp_path / "a", data=data, target="y")
    assert not refused.promoted
    (check,) = [c for c in refused.gate.checks if not c.passed]
    assert check.kind == "leaks"
    assert "'settled'" in check.detail
    assert FilesystemStore(tmp_path / "a").aliases("d") == {
        CHALLENGER: refused.published.version,
        LATEST: refused.published.version,
    }
    allowed = _train(tmp_path / "b", data=data, target="y", allow_leaks=True)
    assert allowed.promoted
    assert "allowed by --allow-leaks" in allowed.gate.checks[-1].detail


EXPECT_PASS = """
examples:
  - name: setosa
    input: {sepal_length_cm: 5.1, sepal_width_cm: 3.5, petal_length_cm: 1.4, petal_width_cm: 0.2}
    expect: setosa
invariance:
  - {column: sepal_width_cm, max_flip_rate: 1.0}
  - {column: colour, max_flip_rate: 0.0}
directional:
  - {column: petal_length_cm, direction: increasing, label: virginica}
"""
EXPECT_FAIL = """
examples:
  - name: setosa called virginica
    input: {sepal_length_cm: 5.1, sepal_width_cm: 3.5, petal_length_cm: 1.4, petal_width_cm: 0.2}
    expect: virginica
invariance:
  - {column: petal_length_cm, max_flip_rate: 0.0}
directional:
  - {column: petal_length_cm, direction: decreasing, label: virginica, by: 1.0}
"""


def test_behavioural_checks_block_promotion_and_say_by_how_much(tmp_path: Path) -> None:
    iris = pd.read_csv(_iris_csv(tmp_path))
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(EXPECT_PASS)
    bad.write_text(EXPECT_FAIL)
    data = tmp_path / "iris.csv"
    iris.assign(colour=np.resize(["red", "blue"], len(iris))).to_csv(data, index=False)
    passed = _train(tmp_path / "a", data=data, target="species", drop=["colour"], expectations=good)
    assert passed.promoted
    assert [(c.kind, c.passed) for c in passed.gate.checks] == [
        ("leaks", True),
        ("example", True),
        ("invariance", True),
        ("invariance", True),
        ("directional", True),
    ]
    assert "not a feature of this model" in passed.gate.checks[3].detail

    failed = _train(tmp_path / "b", data=data, target="species", drop=["colour"], expectations=bad)
    assert not failed.promoted
    checks = {c.kind: c for c in failed.gate.checks if not c.passed}
    assert set(checks) == {"example", "invariance", "directional"}
    assert checks["example"].detail.startswith("predicted 'setosa'")
    assert "expected 'virginica'" in checks["example"].detail
    assert checks["example"].margin is not None
    assert checks["example"].margin < 0
    flip = checks["invariance"]
    assert flip.value is not None
    assert flip.value > 0
    assert flip.margin == pytest.approx(-flip.value)
    assert "(at most 0.0% allowed)" in flip.detail
    assert checks["directional"].value is not None
    assert checks["directional"].value > 0.5
    assert len(failed.gate.reasons) == 3
    report = (failed.path / contract.REPORT_FILE).read_text(encoding="utf-8")
    assert "setosa called virginica" in report


def _iris_csv(tmp_path: Path) -> Path:
    from modelberth_trainer.data import load_bundled

    path = tmp_path / "iris-source.csv"
    load_bundled("iris").frame.to_csv(path, index=False)
    return path


def test_the_command_exits_3_when_refused_and_0_when_promoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        "--dataset",
        "iris",
        "--store",
        str(tmp_path),
        "--time-budget",
        "5",
        "--candidates",
        "logistic",
    ]
    assert main(argv) == 0
    assert main([*argv, "--drop", *PETALS]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("gate: REFUSED iris:")
    assert main([*argv, "--drop", *PETALS, "--no-gate"]) == 0


def test_a_promotion_that_lost_a_race_lands_as_challenger(tmp_path: Path) -> None:
    store_dir = tmp_path / "models"
    first = _train(store_dir)
    second = _train(store_dir, drop=PETALS)
    store = FilesystemStore(store_dir)
    stale = gate.GateOutcome(second.gate.model_copy(update={"verdict": "promoted", "champion_version": None}))
    assert gate.apply(store, Resolved("iris", second.published.version), stale) == CHALLENGER
    assert store.champion("iris") == first.published.version
    assert "promotion lost a race" in (store.history("iris")[-1].detail or "")


def test_an_unreadable_champion_pointer_refuses_and_a_promote_repairs_it(tmp_path: Path) -> None:
    store_dir = tmp_path / "models"
    first = _train(store_dir)
    (first.path.parent / CHAMPION).write_text("not a version\n")
    second = _train(store_dir)
    assert not second.promoted
    (check,) = [c for c in second.gate.checks if not c.passed]
    assert check.detail.startswith("cannot read the champion: ")
    FilesystemStore(store_dir).move_alias("iris", CHAMPION, first.published.version, reason="promote")
    assert _train(store_dir).promoted
