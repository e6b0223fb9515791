"""The ``modelberth`` command: installed packages contribute their subcommands."""

from __future__ import annotations

import argparse

import pytest

from modelberth_core import cli


def test_no_command_prints_help_and_exits_with_usage_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == cli.EXIT_USAGE
    out = capsys.readouterr().out
    assert "serve" in out
    assert "train" in out


def test_serve_knows_every_service_of_the_workspace() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "inference", "--port", "9999", "--set", "poll_seconds=5"])
    assert args.service == "inference"
    assert args.port == 9999
    assert args.set == [("poll_seconds", "5")]
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "nope"])


def test_set_needs_key_equals_value() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        cli._key_value("novalue")
