"""``modelberth train`` on bad input: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelberth_cli.main import build_parser, main
from modelberth_trainer.cli import settings_from_args


def _good(path: Path) -> Path:
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"a": rng.normal(size=60), "b": rng.choice(["x", "y"], 60), "y": rng.choice(["p", "q"], 60)}
    ).to_csv(path, index=False)
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = _good(tmp_path / "good.csv")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    one_class = tmp_path / "one.csv"
    one_class.write_text("a,y\n" + "".join(f"{i % 7},same\n" for i in range(30)))
    all_missing = tmp_path / "missing.csv"
    all_missing.write_text("a,gone,y\n" + "".join(f"{i},,{'pq'[i % 2]}\n" for i in range(30)))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,y\n" + "".join(f"{i},caf\xe9{i % 2}\n" for i in range(30)).encode("latin-1"))
    return {
        "missing target": (["--data", str(good), "--target", "nope"], "target column 'nope' not found"),
        "empty file": (["--data", str(empty)], "empty"),
        "one class": (["--data", str(one_class), "--target", "y"], "only one class"),
        "all-missing column": (["--data", str(all_missing), "--target", "y"], "column 'gone' is empty"),
        "encoding": (["--data", str(latin), "--target", "y"], "unreadable encoding"),
        "unknown dataset": (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        "missing file": (["--data", str(tmp_path / "absent.csv")], "cannot read"),
        "cost without pair": (["--data", str(good), "--cost-fp", "1"], "go together"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing target",
        "empty file",
        "one class",
        "all-missing column",
        "encoding",
        "unknown dataset",
        "missing file",
        "cost without pair",
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "models"
    code = main(["train", *argv, "--out", str(out), "--time-budget", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not out.exists() or not any(out.rglob("*"))


def test_flags_override_trainer_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAINER_TIME_BUDGET_SECONDS", "33")
    monkeypatch.setenv("TRAINER_SEED", "7")
    monkeypatch.setenv("TRAINER_DATASET", "wine")
    args = build_parser().parse_args(
        ["train", "--seed", "3", "--drop", "a", "b", "--no-header", "--columns", "x,y"]
    )
    settings = settings_from_args(args)
    assert settings.time_budget_seconds == 33  # type: ignore[attr-defined]
    assert settings.seed == 3  # type: ignore[attr-defined]
    assert settings.dataset == "wine"  # type: ignore[attr-defined]
    assert settings.drop == ["a", "b"]  # type: ignore[attr-defined]
    assert settings.no_header
    assert settings.columns == ["x", "y"]


def test_cli_module_stays_import_light() -> None:
    import subprocess
    import sys

    script = (
        "import sys, modelberth_trainer.cli\n"
        "print(any(m in sys.modules for m in ('sklearn', 'pandas', 'matplotlib')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


def test_train_small_csv_end_to_end_publishes_a_complete_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _good(tmp_path / "good.csv")
    out = tmp_path / "models"
    code = main(["train", "--data", str(data), "--target", "y", "--out", str(out), "--time-budget", "8"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "[1/3]" in printed
    assert "rank" in printed
    assert "published" in printed
    version = (out / "good" / "latest").read_text().strip()
    assert sorted(p.name for p in (out / "good" / version).iterdir()) == [
        "examples.csv",
        "model.joblib",
        "model.json",
        "report.html",
    ]
    assert not [p for p in (out / "good").iterdir() if p.name.startswith(".staging")]
