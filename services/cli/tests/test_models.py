"""``modelberth models``: list, history, promote, rollback and diff, as a person or CI script runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modelberth_cli.main import main
from modelberth_core import contract
from modelberth_core.store import CHALLENGER, CHAMPION, LATEST, FilesystemStore, Resolved, open_store
from testkit.registry import Registry

Publish = Callable[..., Resolved]


@pytest.fixture
def store(tmp_path: Path, publish_version: Publish) -> tuple[FilesystemStore, list[str]]:
    """iris with a champion (0.95), a refused challenger (0.80) and a third version (0.97) only published."""
    store = FilesystemStore(tmp_path / "models")
    a = publish_version(store, score=0.95).version
    store.move_alias("iris", CHAMPION, a, reason="gate", detail="first version")
    b = publish_version(store, score=0.80).version
    store.move_alias("iris", CHALLENGER, b, reason="gate", detail="metric worse")
    c = publish_version(store, score=0.97).version
    publish_version(store, name="wine")
    return store, [a, b, c]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["models", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_list_shows_each_models_aliases_and_champion_score(
    store: tuple[FilesystemStore, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, (a, b, c) = store
    code, out, _ = _run(["list", "--store", s.location, "--json"], capsys)
    assert code == 0
    listing = {m["name"]: m for m in json.loads(out)["models"]}
    assert listing["iris"] == {
        "name": "iris",
        "versions": 3,
        "aliases": {CHALLENGER: b, CHAMPION: a, LATEST: c},
        "metric": "f1_macro",
        "champion_score": 0.95,
    }
    assert listing["wine"]["aliases"] == {LATEST: listing["wine"]["aliases"][LATEST]}
    assert listing["wine"]["champion_score"] is None
    code, out, _ = _run(["list", "--store", s.location], capsys)
    assert out.splitlines()[1].split() == ["iris", a, "f1_macro", "0.9500", b, c, "3"]


def test_an_empty_store_lists_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["list", "--store", str(tmp_path)], capsys)[:2] == (0, f"no models in {tmp_path}\n")


def test_the_store_comes_from_the_environment_or_model_dir(
    store: tuple[FilesystemStore, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s, _ = store
    monkeypatch.setenv("MODELBERTH_STORE", s.location)
    code, out, _ = _run(["list", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["store"] == s.location
    monkeypatch.delenv("MODELBERTH_STORE")
    code, out, _ = _run(["history", "iris", "--model-dir", s.location, "--json"], capsys)
    assert code == 0


def test_history_shows_versions_metrics_aliases_and_events(
    store: tuple[FilesystemStore, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, (a, b, c) = store
    code, out, _ = _run(["history", "iris", "--store", s.location, "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert [(v["version"], v["score"], v["aliases"]) for v in data["versions"]] == [
        (a, 0.95, [CHAMPION]),
        (b, 0.80, [CHALLENGER]),
        (c, 0.97, [LATEST]),
    ]
    assert [(e["alias"], e["reason"], e["to_version"]) for e in data["events"] if e["alias"] != LATEST] == [
        (CHAMPION, "gate", a),
        (CHALLENGER, "gate", b),
    ]
    code, out, _ = _run(["history", "iris", "--store", s.location], capsys)
    assert "metric worse" in out
    (row,) = [line.split() for line in out.splitlines() if line.startswith(b)]
    assert row[3:] == ["f1_macro", "0.8000", "challenger"]


def test_promote_then_rollback_twice(
    store: tuple[FilesystemStore, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, (a, b, c) = store
    code, out, _ = _run(["promote", "iris", "challenger", "--store", s.location, "--actor", "ci-bot"], capsys)
    assert (code, out) == (
        0,
        f"iris@champion: {a} -> {b} (promote by ci-bot)\n"
        f"iris@challenger: removed ({b} is the champion now)\n",
    )
    assert "challenger" not in s.aliases("iris")  # the champion is no longer its own challenger
    cleared = s.history("iris")[-1]
    assert (cleared.alias, cleared.from_version, cleared.to_version) == ("challenger", b, None)
    assert (cleared.reason, cleared.actor) == ("promote", "ci-bot")
    code, out, _ = _run(["history", "iris", "--store", s.location], capsys)
    assert "(removed)" in out
    code, out, _ = _run(["promote", "iris", c, "--store", s.location, "--json"], capsys)
    event = json.loads(out)
    assert (code, event["from_version"], event["to_version"], event["reason"]) == (0, b, c, "promote")
    assert _run(["rollback", "iris", "--store", s.location], capsys)[1].startswith(
        f"iris@champion: {c} -> {b}"
    )
    assert _run(["rollback", "iris", "--store", s.location], capsys)[1].startswith(
        f"iris@champion: {b} -> {a}"
    )
    before = _snapshot(Path(s.location))
    code, out, err = _run(["rollback", "iris", "--store", s.location], capsys)
    assert (code, out) == (2, "")
    assert err == f"modelberth models: error: iris@champion ({a}) has no earlier champion in its history" + (
        " to roll back to\n"
    )
    assert _snapshot(Path(s.location)) == before


def test_promote_to_another_alias_and_promote_what_is_already_there(
    store: tuple[FilesystemStore, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, (a, _, c) = store
    assert _run(["promote", "iris", c, "--alias", "canary", "--store", s.location], capsys)[0] == 0
    assert s.resolve("iris@canary").version == c
    assert s.champion("iris") == a
    history = len(s.history("iris"))
    code, out, _ = _run(["promote", "iris", a, "--store", s.location], capsys)
    assert (code, out) == (0, f"iris@champion already names {a}; nothing moved\n")
    assert len(s.history("iris")) == history


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "nope", "champion"], "model 'nope' not found in {store} (models: iris, wine)"),
        (
            ["promote", "iris", "20990101T000000Z"],
            "iris has no version '20990101T000000Z' (3 versions, newest: ",
        ),
        (["promote", "iris", "canary"], "iris has no alias 'canary' (aliases: challenger, champion, latest)"),
        (["promote", "iris", "Canary"], "invalid alias 'Canary'"),
        (["promote", "iris", "champion", "--alias", "latest"], "latest is moved only by publishing"),
        (["promote", "iris", "champion", "--alias", "a_b"], "invalid alias 'a_b'"),
        (["promote", "iris", "../../etc"], "invalid model reference"),
        (["promote", "../x", "champion"], "invalid model name '../x'"),
        (["rollback", "wine"], "wine has no champion to roll back"),
        (["history", "nope"], "model 'nope' not found"),
        (["diff", "iris", "champion", "20990101T000000Z"], "iris has no version '20990101T000000Z'"),
        (["diff", "iris", "champion", "sha256:" + "a" * 64], "digest references need a registry store"),
        (["list", "--store", "oci://127.0.0.1:9/mb"], "cannot reach registry 127.0.0.1:9"),
        (["list", "--store", "oci://127.0.0.1:9/Mb"], "namespace part 'Mb' is not valid"),
        (["list", "--store", "s3://bucket/models"], "unknown store scheme 's3'"),
    ],
)
def test_unknown_or_malformed_names_are_one_line_exit_2_and_move_nothing(
    store: tuple[FilesystemStore, list[str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    s, _ = store
    before = _snapshot(Path(s.location))
    if "--store" not in argv:
        argv = [*argv, "--store", s.location]
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("modelberth models: error: ")
    assert err.count("\n") == 1
    assert message.format(store=s.location) in err
    assert _snapshot(Path(s.location)) == before


@pytest.mark.parametrize("command", ["history", "promote", "rollback", "diff"])
@pytest.mark.parametrize("name", ["", "Iris", "../iris", "iris/..", "a" * 200, "iris\x00", "iris\n", "ïris"])
def test_no_model_name_crashes_a_command(
    store: tuple[FilesystemStore, list[str]], capsys: pytest.CaptureFixture[str], command: str, name: str
) -> None:
    s, _ = store
    extra = {"history": [], "rollback": [], "promote": ["champion"], "diff": ["champion", "latest"]}[command]
    code, _, err = _run([command, name, *extra, "--store", s.location], capsys)
    assert code == 2
    assert err.startswith("modelberth models: error: ")
    assert len(err) < 400


def test_diff_compares_metrics_params_schema_and_data(
    store: tuple[FilesystemStore, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, (a, b, _) = store
    card_path = Path(s.location) / "iris" / b / contract.CARD_FILE
    raw = json.loads(card_path.read_text())
    raw["features"] = raw["features"][:2]
    raw["selected"]["params"]["C"] = 1.0
    raw["data"]["sha256"] = "f" * 64
    card_path.write_text(json.dumps(raw))
    code, out, _ = _run(["diff", "iris", "champion", "challenger", "--store", s.location, "--json"], capsys)
    assert code == 0
    diff = json.loads(out)
    assert diff["versions"] == {"a": a, "b": b}
    assert diff["metrics"]["test"]["f1_macro"]["delta"] == pytest.approx(0.80 - 0.95)
    assert diff["params"] == {"C": {"a": 23.8, "b": 1.0}}
    assert diff["schema"]["features_removed"] == ["petal_length_cm", "petal_width_cm"]
    assert diff["data"]["sha256"]["b"] == "f" * 64
    code, out, _ = _run(["diff", "iris", a, b, "--store", s.location], capsys)
    assert "features removed: petal_length_cm, petal_width_cm" in out
    assert "f1_macro           0.9500    0.8000    -0.1500" in out


def test_a_damaged_card_is_an_error_not_a_crash(
    store: tuple[FilesystemStore, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, (a, _, _) = store
    (Path(s.location) / "iris" / a / contract.CARD_FILE).write_text("{not json")
    code, _, err = _run(["diff", "iris", "champion", "latest", "--store", s.location], capsys)
    assert code == 1
    assert "not a valid model card" in err


def test_the_models_commands_work_on_a_registry_and_show_digests(
    oci_registry: Registry,
    tmp_path: Path,
    publish_version: Publish,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELBERTH_REGISTRY_CACHE", str(tmp_path / "cli-cache"))
    store = open_store(oci_registry.location("mb"), cache_dir=tmp_path / "cache")
    v1 = publish_version(store, "iris", 0.9)
    v2 = publish_version(store, "iris", 0.95)
    location = oci_registry.location()
    assert main(["models", "promote", "iris", v1.version, "--store", location]) == 0
    assert main(["models", "promote", "iris", v2.version, "--store", location]) == 0
    assert main(["models", "rollback", "iris", "--store", location]) == 0
    capsys.readouterr()
    assert main(["models", "history", "iris", "--store", location, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {v["version"]: v["digest"] for v in listed["versions"]} == {
        v1.version: v1.digest,
        v2.version: v2.digest,
    }
    assert listed["aliases"][CHAMPION] == v1.version
    assert main(["models", "history", "iris", "--store", location]) == 0
    assert v2.digest in capsys.readouterr().out
    assert main(["models", "diff", "iris", v1.version, v2.version, "--store", location]) == 0
    assert "f1_macro" in capsys.readouterr().out


@pytest.mark.integration
def test_a_reader_that_leaves_early_is_no_traceback(
    store: tuple[FilesystemStore, list[str]], tmp_path: Path
) -> None:
    """``modelberth models history iris | head -1``: the pipe closes before the table is written."""
    root = tmp_path / "models"
    command = [sys.executable, "-m", "modelberth_cli", "models", "history", "iris", "--store", str(root)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # the reader is gone before the command writes its first line
    with process.stderr:
        err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, err
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
