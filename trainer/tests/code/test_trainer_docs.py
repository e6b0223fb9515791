"""The trainer's docs match the command: trainer/README.md lists every flag of ``modelberth train --help``
and names no flag or setting that does not exist, and every ``modelberth train`` example in the READMEs
parses and names files that exist, run from the repository root (as a new user would)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from modelberth_cli.main import build_parser

REPO = Path(__file__).resolve().parents[3]
READMES = [REPO / "README.md", REPO / "trainer" / "README.md"]
OTHER_FLAGS = {"--artifact-dir"}
"""Flags trainer/README.md names that belong to something else: ``--artifact-dir`` is a pytest option."""


def _train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train: argparse.ArgumentParser = sub.choices["train"]
    return train


def _flags() -> set[str]:
    return {flag for action in _train_parser()._actions for flag in action.option_strings}


def _examples() -> list[tuple[str, list[str]]]:
    """Each ``modelberth train`` command in a code block of the READMEs, continuation lines joined."""
    examples = []
    for readme in READMES:
        text = readme.read_text(encoding="utf-8")
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                if "modelberth train" not in line:
                    continue  # other commands and YAML (whose quotes need not balance for shlex)
                words = shlex.split(line, comments=True)
                if "modelberth" in words and words[words.index("modelberth") + 1 :][:1] == ["train"]:
                    argv = words[words.index("modelberth") + 2 :]
                    examples.append((f"{readme.relative_to(REPO)}: train {' '.join(argv)}", argv))
    return examples


def test_the_readme_lists_every_flag_of_train() -> None:
    table = (REPO / "trainer" / "README.md").read_text(encoding="utf-8")
    first_cells = re.findall(r"^\| (`-[^|]*)\|", table, re.MULTILINE)
    documented = {flag for cell in first_cells for flag in re.findall(r"`(--?[\w-]+)", cell)}
    assert _flags() - documented == set(), "flags of `modelberth train --help` missing from trainer/README.md"


def test_the_readme_names_no_flag_train_lacks() -> None:
    text = (REPO / "trainer" / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    assert named - _flags() - OTHER_FLAGS == set()


def test_the_readme_names_only_real_settings() -> None:
    from modelberth_trainer.settings import TrainerSettings

    text = (REPO / "trainer" / "README.md").read_text(encoding="utf-8")
    named = {name.lower() for name in re.findall(r"TRAINER_([A-Z0-9_]+[A-Z0-9])", text)}
    assert named - set(TrainerSettings.model_fields) == set()
    assert len(named) > 15


def test_there_are_examples_to_check() -> None:
    assert len(_examples()) >= 5


@pytest.mark.parametrize(("where", "argv"), _examples(), ids=[w for w, _ in _examples()])
def test_every_train_example_parses_and_its_files_exist(where: str, argv: list[str]) -> None:
    args = _train_parser().parse_args(argv)
    for path in (args.data, args.test_data):
        if path is not None:
            assert (REPO / path).is_file(), f"{where}: {path} does not exist from the repository root"
    if args.data is None:
        assert args.dataset is None or "/" not in args.dataset
