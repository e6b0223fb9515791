"""``modelberth keys|users|clients``: through ``modelberth_cli.main.main`` and one real subprocess."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelberth_auth.app import create_app
from modelberth_auth.keys import read_keyset
from modelberth_auth.principals import SCOPES, read_document
from modelberth_auth.settings import Settings
from modelberth_cli.main import main
from modelberth_core.security import SCOPES as CORE_SCOPES

PASSWORD = "a long enough password"


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def state() -> Path:
    return Path(os.environ["MODELBERTH_STATE_DIR"])


def test_users_add_list_remove(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(["users", "add", "alice", "--scope", "predict", "--password-stdin"], monkeypatch, PASSWORD + "\n")
        == 0
    )
    users_file = state / "users.yaml"
    assert mode(users_file) == 0o600
    text = users_file.read_text()
    assert PASSWORD not in text
    record = read_document(users_file).users["alice"]
    assert record.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert record.scopes == ["predict"]
    capsys.readouterr()
    assert run(["users", "list", "--json"], monkeypatch) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "alice", "scopes": ["predict"]}]
    assert run(["users", "add", "alice", "--password-stdin"], monkeypatch, PASSWORD) == 1  # exists
    assert (
        run(
            ["users", "add", "alice", "--replace", "--scope", "models:read models:admin", "--password-stdin"],
            monkeypatch,
            PASSWORD,
        )
        == 0
    )
    assert read_document(users_file).users["alice"].scopes == ["models:read", "models:admin"]
    assert run(["users", "remove", "alice"], monkeypatch) == 0
    assert read_document(users_file).users == {}
    assert run(["users", "remove", "alice"], monkeypatch) == 1


@pytest.mark.parametrize(
    ("argv", "stdin"),
    [
        (["users", "add", "bob", "--password-stdin"], "short\n"),
        (["users", "add", "bob", "--password-stdin"], "\n"),
        (["users", "add", "bob"], ""),  # no password source: never a default password
        (["users", "add", "bob", "--scope", "superuser", "--password-stdin"], PASSWORD),
        (["users", "add", "bad name", "--password-stdin"], PASSWORD),
        (["users", "add", "x:y", "--password-stdin"], PASSWORD),
        (["clients", "add", "svc", "--scope", "root"], ""),
        (["clients", "add", "a:b"], ""),
        (["clients", "add", "ui", "--secret-stdin"], "too-short\n"),
        (["clients", "add", "ui", "--secret-stdin"], ""),
        (["clients", "add", "ui", "--client-id", "has space"], ""),
        (["clients", "add", "ui", "--client-id", "a:b"], ""),
        (["clients", "add", "ui", "--forwards-user-address", "--scope", "predict"], ""),
    ],
)
def test_bad_input_writes_nothing(
    argv: list[str], stdin: str, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(argv, monkeypatch, stdin) == 2
    assert not (state / "users.yaml").exists()


def test_clients_add_prints_secret_once(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(
            ["clients", "add", "loadtest", "--scope", "predict", "--scope", "models:read", "--json"],
            monkeypatch,
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert set(created) == {"client_id", "client_secret", "scope"}
    assert created["client_id"].startswith("loadtest-")
    assert len(created["client_secret"]) >= 40
    text = (state / "users.yaml").read_text()
    assert created["client_secret"] not in text
    assert run(["clients", "list"], monkeypatch) == 0
    listed = capsys.readouterr().out
    assert created["client_id"] in listed
    assert created["client_secret"] not in listed
    assert run(["clients", "add", "loadtest"], monkeypatch) == 1
    assert run(["clients", "add", "plain"], monkeypatch) == 0
    plain = capsys.readouterr().out
    assert "client_id: plain-" in plain
    assert "client_secret: " in plain
    assert run(["clients", "remove", created["client_id"]], monkeypatch) == 0  # by id
    assert run(["clients", "remove", "plain"], monkeypatch) == 0  # by name
    assert read_document(state / "users.yaml").clients == {}
    assert run(["clients", "remove", "plain"], monkeypatch) == 1


def test_a_forwarder_client_with_a_given_id_and_secret(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the chart's init container runs: the id and the secret come from a Secret, nothing is printed.
    secret = "s" * 43
    argv = ["clients", "add", "modelberth-ui", "--client-id", "modelberth-ui", "--forwards-user-address"]
    assert run([*argv, "--secret-stdin", "--json"], monkeypatch, secret + "\n") == 0
    created = json.loads(capsys.readouterr().out)
    assert created == {"client_id": "modelberth-ui", "scope": "", "forwards_user_address": True}
    record = read_document(state / "users.yaml").clients["modelberth-ui"]
    assert (record.client_id, record.scopes, record.grant_types) == ("modelberth-ui", [], [])
    assert record.forwards_user_address
    assert secret not in (state / "users.yaml").read_text()
    assert run([*argv, "--secret-stdin"], monkeypatch, secret) == 1  # exists
    assert run([*argv, "--secret-stdin", "--replace"], monkeypatch, secret) == 0
    assert secret not in capsys.readouterr().out
    # Another client may not take the same id (ids must name one client).
    assert run(["clients", "add", "other", "--client-id", "modelberth-ui"], monkeypatch) == 1
    assert run(["clients", "list", "--json"], monkeypatch) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {"name": "modelberth-ui", "client_id": "modelberth-ui", "scopes": [], "forwards_user_address": True}
    ]
    # A generated secret is printed once, as for any client (what `modelberth up` uses).
    assert run(["clients", "add", "ui2", "--forwards-user-address"], monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "forwards_user_address: true" in printed
    assert "client_secret: " in printed


def test_plain_lists_show_one_tab_separated_line_per_entry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_user = ["users", "add", "--password-stdin"]
    assert run([*add_user[:2], "bob", "--scope", "predict", *add_user[2:]], monkeypatch, PASSWORD) == 0
    assert run([*add_user[:2], "ann", "--scope", "models:read", "--scope", "predict", *add_user[2:]],
               monkeypatch, PASSWORD) == 0  # fmt: skip
    assert run(["clients", "add", "svc", "--client-id", "svc-1"], monkeypatch) == 0
    argv = ["clients", "add", "ui", "--client-id", "ui-1", "--forwards-user-address"]
    assert run(argv, monkeypatch) == 0
    capsys.readouterr()
    assert run(["users", "list"], monkeypatch) == 0
    assert capsys.readouterr().out == "ann\tpredict models:read\nbob\tpredict\n"
    assert run(["clients", "list"], monkeypatch) == 0
    assert capsys.readouterr().out == "svc\tsvc-1\tpredict\nui\tui-1\t\tforwards user addresses\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["users", "add", "bob", "--password-stdin"],
        ["users", "list"],
        ["users", "remove", "bob"],
        ["clients", "add", "svc"],
        ["clients", "list", "--json"],
        ["clients", "remove", "svc"],
    ],
)
def test_a_broken_users_file_is_named_and_left_alone(
    argv: list[str], state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users_file = state / "users.yaml"
    users_file.parent.mkdir(parents=True, exist_ok=True)
    users_file.write_text("users: [unclosed")
    assert run(argv, monkeypatch, PASSWORD) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {users_file} is not valid YAML\n"
    assert captured.out == ""
    assert users_file.read_text() == "users: [unclosed"


def test_keys_generate_add_list_remove(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keyset = state / "keys.json"
    assert run(["keys", "generate"], monkeypatch) == 0
    assert mode(keyset) == 0o600
    first = keyset.read_bytes()
    assert run(["keys", "generate"], monkeypatch) == 1  # never overwritten
    assert keyset.read_bytes() == first
    assert run(["keys", "generate", "--add"], monkeypatch) == 0
    keys = read_keyset(keyset).keys
    assert len(keys) == 2
    assert mode(keyset) == 0o600
    old_kid, new_kid = keys[0].kid, keys[1].kid
    capsys.readouterr()
    assert run(["keys", "list"], monkeypatch) == 0
    assert capsys.readouterr().out.splitlines() == [old_kid, f"{new_kid}  (signing)"]
    assert run(["keys", "remove", "no-such-kid"], monkeypatch) == 1
    assert run(["keys", "remove", str(old_kid)], monkeypatch) == 0
    assert [k.kid for k in read_keyset(keyset).keys] == [new_kid]
    assert run(["keys", "remove", str(new_kid)], monkeypatch) == 1  # never the last key


def test_keys_generate_out_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "secret" / "jwks.json"
    assert run(["keys", "generate", "--out", str(out)], monkeypatch) == 0
    assert len(read_keyset(out).keys) == 1
    assert run(["keys", "generate", "--add", "--out", str(out)], monkeypatch) == 0
    assert len(read_keyset(out).keys) == 2
    assert run(["keys", "generate", "--add", "--out", str(tmp_path / "missing.json")], monkeypatch) == 1
    users = tmp_path / "users.json"
    monkeypatch.setenv("AUTH_USERS_FILE", str(users))
    assert run(["users", "add", "carol", "--password-stdin"], monkeypatch, PASSWORD) == 0
    assert json.loads(users.read_text())["users"]["carol"]["scopes"] == ["predict", "models:read"]


def test_running_service_picks_up_changes(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(reload_interval_seconds=0)
    with TestClient(create_app(settings)) as http:
        assert http.get("/readyz").status_code == 200  # dev: keyset generated, no users yet
        login = {"username": "dave", "password": PASSWORD}
        assert http.post("/auth/login", json=login).status_code == 401
        assert run(["users", "add", "dave", "--password-stdin"], monkeypatch, PASSWORD) == 0
        assert http.post("/auth/login", json=login).status_code == 200
        capsys.readouterr()
        assert run(["clients", "add", "batch", "--json"], monkeypatch) == 0
        created = json.loads(capsys.readouterr().out)
        form = {"grant_type": "client_credentials", **{k: created[k] for k in ("client_id", "client_secret")}}
        assert http.post("/oauth/token", data=form).status_code == 200
        assert run(["clients", "remove", "batch"], monkeypatch) == 0
        assert http.post("/oauth/token", data=form).json()["error"] == "invalid_client"
        assert run(["users", "remove", "dave"], monkeypatch) == 0
        assert http.post("/auth/login", json=login).status_code == 401


def test_real_subprocess(state: Path) -> None:
    added = subprocess.run(
        [sys.executable, "-m", "modelberth_cli", "users", "add", "demo", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    document: Any = read_document(state / "users.yaml")
    assert set(document.users) == {"demo"}
    assert mode(state / "users.yaml") == 0o600


def test_scope_lists_agree() -> None:
    assert SCOPES == CORE_SCOPES


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "keys" in out
    assert "users" in out
    assert "clients" in out


def test_generated_key_ids_can_be_typed_on_a_command_line() -> None:
    # A base64url thumbprint starts with "-" once in 64 keys, and `keys remove -X...` reads as an option.
    from modelberth_auth.keys import new_key

    kids = [str(new_key().kid) for _ in range(200)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", kid) for kid in kids)
    assert len(set(kids)) == len(kids)
