"""``--expectations FILE``: every malformed file is one clear line (exit 2) before any training starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelberth_cli.main import main
from modelberth_trainer import expectations
from modelberth_trainer.errors import DataError
from modelberth_trainer.prepare import prepare
from modelberth_trainer.settings import TrainerSettings

SETOSA = "{sepal_length_cm: 5.1, sepal_width_cm: 3.5, petal_length_cm: 1.4, petal_width_cm: 0.2}"
GOOD = f"""
examples:
  - name: a typical setosa
    input: {SETOSA}
    expect: setosa
invariance:
  - column: sepal_width_cm
    max_flip_rate: 0.1
directional:
  - column: petal_length_cm
    direction: increasing
    label: virginica
    by: 0.5
"""


def _file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "expectations.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_parses(tmp_path: Path) -> None:
    parsed = expectations.load(_file(tmp_path, GOOD))
    assert parsed.examples[0].expect == "setosa"
    assert parsed.invariance[0].max_flip_rate == 0.1
    assert parsed.directional[0].by == 0.5
    assert parsed.directional[0].max_violation_rate == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("examples:\n  - input: {a: 1\n", "not valid YAML (line 3, column 1)"),
        ("examples: [\n", "not valid YAML"),
        ("\tinvariance: []\n", "not valid YAML"),
        ("", "empty; expected a mapping"),
        ("# only a comment\n", "empty; expected a mapping"),
        ("- a\n- b\n", "expected a mapping with examples, invariance and/or directional, got a list"),
        ("just text\n", "got a str"),
        ("examples: []\n", "declares no checks"),
        ("exampels: []\n", "exampels: Extra inputs are not permitted"),
        ("invariance:\n  - column: sex\n", "invariance[0].max_flip_rate: Field required"),
        (
            "invariance:\n  - {column: sex, max_flip_rate: 2}\n",
            "invariance[0].max_flip_rate: Input should be",
        ),
        ("invariance:\n  - {column: sex, max_flip_rate: .nan}\n", "invariance[0].max_flip_rate"),
        ("directional:\n  - {column: x, direction: up}\n", "directional[0].direction: Input should be"),
        ("directional:\n  - {column: x, direction: increasing, by: -1}\n", "directional[0].by"),
        ("examples:\n  - {input: {}, expect: a}\n", "examples[0].input: Dictionary should have at least"),
        ("examples:\n  - {input: {a: [1, 2]}, expect: a}\n", "examples[0].input.a"),
        ("examples: {input: 1}\n", "examples: Input should be a valid list"),
        ("invariance:\n  - {column: a}\n  - {column: b}\n", "max_flip_rate: Field required (and 1 more)"),
        ("examples: []\nexamples: []\n", "duplicate key 'examples'"),
        ("invariance:\n  - {column: a, column: b, max_flip_rate: 0}\n", "duplicate key 'column'"),
        ("a: &x [1]\nb: *x\n", "anchors and aliases are not supported"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_malformed_files_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(DataError) as info:
        expectations.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_oversized_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read the expectations file"):
        expectations.load(tmp_path / "absent.yaml")
    with pytest.raises(DataError, match="not UTF-8"):
        expectations.load(_file(tmp_path, b"examples:\n  - \xff\xfe\n"))
    with pytest.raises(DataError, match="larger than 1024 KiB"):
        expectations.load(_file(tmp_path, "#" * (expectations.MAX_FILE_BYTES + 1)))


def test_a_billion_laughs_is_refused_without_expanding(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    with pytest.raises(DataError, match="anchors and aliases"):
        expectations.load(_file(tmp_path, "\n".join(lines) + "\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "examples:\n  - {input: {sepal_length_cm: 5.1, colour: red}, expect: setosa}\n",
            "examples[0].input names columns the data does not have: ['colour']",
        ),
        (
            "examples:\n  - {input: {sepal_length_cm: 5.1}, expect: setosa}\n",
            "examples[0].input lacks the model's features ['petal_length_cm', 'petal_width_cm',",
        ),
        (f"examples:\n  - {{input: {SETOSA}, expect: rose}}\n", "examples[0].expect 'rose' is not a class"),
        (
            "examples:\n  - {input: {sepal_length_cm: big, sepal_width_cm: 3.5, petal_length_cm: 1.4,"
            " petal_width_cm: 0.2}, expect: setosa}\n",
            "numeric features need numbers: ['sepal_length_cm']",
        ),
        (
            "invariance:\n  - {column: sex, max_flip_rate: 0}\n",
            "invariance[0].column 'sex' is not in the data",
        ),
        (
            "directional:\n  - {column: petal_length_cm, direction: increasing}\n",
            "directional[0]: name the class whose probability is the score (label)",
        ),
        (
            "directional:\n  - {column: petal_length_cm, direction: increasing, label: rose}\n",
            "directional[0].label 'rose' is not a class",
        ),
    ],
)
def test_checks_the_data_cannot_support_are_refused_before_training(
    tmp_path: Path, text: str, message: str
) -> None:
    parsed = expectations.load(_file(tmp_path, text))
    prep = prepare(TrainerSettings(dataset="iris", store=str(tmp_path / "m")), lambda _line: None)
    with pytest.raises(DataError, match="expectations: ") as info:
        expectations.check_against(parsed, prep)
    assert message in str(info.value)


def test_only_numeric_columns_can_be_raised(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("size,colour,y\n" + "".join(f"{i},{'rgb'[i % 3]},{'pq'[i % 2]}\n" for i in range(60)))
    parsed = expectations.load(_file(tmp_path, "directional:\n  - {column: colour, direction: increasing}\n"))
    prep = prepare(TrainerSettings(data=data, target="y", positive_label="q"), lambda _line: None)
    with pytest.raises(DataError, match=r"directional\[0\].column .colour. is not numeric"):
        expectations.check_against(parsed, prep)


def test_the_command_refuses_a_bad_file_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "models"
    path = _file(tmp_path, "invariance:\n  - column: sex\n")
    code = main(["train", "--dataset", "iris", "--store", str(store), "--expectations", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == (
        f"modelberth train: error: {path}: invariance[0].max_flip_rate: Field required"
    )
    assert "search:" not in captured.out  # refused before the time budget was spent
    assert not store.exists()
