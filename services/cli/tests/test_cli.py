"""The ``modelberth`` command: installed packages contribute their subcommands."""

from __future__ import annotations

import argparse

import pytest

from modelberth_cli import main as cli
from modelberth_core import shutdown


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


def test_serve_runs_one_worker_that_outlives_client_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelberth_core import logging as core_logging
    from modelberth_core import shutdown

    seen: dict[str, object] = {}
    monkeypatch.setattr(shutdown, "serve", lambda app, **kwargs: seen.update(app=app, **kwargs))
    monkeypatch.setattr(core_logging, "configure_logging", lambda *_: None)
    # serve exports its flags for the app factory; registering them here lets monkeypatch undo that.
    monkeypatch.setenv("AUTH_HOST", "")
    monkeypatch.setenv("AUTH_PORT", "")
    assert cli.main(["serve", "auth", "--port", "18999"]) == 0
    assert seen["app"] == "modelberth_auth.app:create_app"
    assert seen["factory"] is True
    assert seen["workers"] == 1
    assert seen["port"] == 18999
    # httpx drops idle connections after 5 s; the server must keep them longer or requests race its close.
    assert isinstance(seen["timeout_keep_alive"], int)
    assert seen["timeout_keep_alive"] > 60


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--store", "/srv/a"], {}, "/srv/a"),
        (["--model-dir", "/srv/b"], {"MODELBERTH_STORE": "/srv/env"}, "/srv/b"),
        ([], {"MODELBERTH_STORE": "/srv/env"}, "/srv/env"),
        ([], {"MODELBERTH_STORE": "/srv/env", "INFERENCE_STORE": "/srv/own"}, "/srv/own"),
        ([], {}, None),
    ],
)
def test_serve_inference_takes_the_store_from_flag_or_environment(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], expected: str | None
) -> None:
    import os

    from modelberth_core import logging as core_logging

    monkeypatch.setattr(shutdown, "serve", lambda *_, **__: None)
    monkeypatch.setattr(core_logging, "configure_logging", lambda *_: None)
    for key in ("INFERENCE_HOST", "INFERENCE_PORT", "INFERENCE_STORE", "MODELBERTH_STORE"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["serve", "inference", "--port", "18998", *argv]) == 0
    assert os.environ.get("INFERENCE_STORE") == expected


HEAVY = (
    "sklearn", "pandas", "numpy", "scipy", "matplotlib", "gradio", "fastapi", "starlette", "uvicorn",
    "pydantic", "httpx", "redis", "cryptography", "joserfc", "argon2", "prometheus_client", "yaml",
)  # fmt: skip


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["up", "--help"], ["serve", "--help"]])
def test_help_imports_no_heavy_package(argv: list[str]) -> None:
    """``modelberth --help`` with every installed package's commands stays a standard-library affair: a
    command module that imports its implementation at the top makes every invocation slow."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "from modelberth_cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True)
    assert "usage: modelberth" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == []
