"""``AUTH_STATE_*`` (issue 18): which URLs are taken, that a password never goes inside one, and that a
refused setting stops the process with a message that names it and repeats no value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modelberth_auth.app import create_app
from modelberth_auth.refresh import FileRefreshStore
from modelberth_auth.settings import Settings
from modelberth_auth.state import StateAddress, StateConfig, StateStore, parse_state_url
from modelberth_auth.throttle import MemoryThrottle

SECRET = "hunter2-Secret"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1", StateAddress("127.0.0.1", 6379, 0, tls=False)),
        ("redis://valkey:6380/3", StateAddress("valkey", 6380, 3, tls=False)),
        ("rediss://cache.example.com:6380/0", StateAddress("cache.example.com", 6380, 0, tls=True)),
        ("rediss://auth-svc@cache.example.com", StateAddress("cache.example.com", 6379, 0, True, "auth-svc")),
        ("redis://[::1]:7000/", StateAddress("::1", 7000, 0, tls=False)),
    ],
)
def test_store_urls_that_are_taken(url: str, address: StateAddress) -> None:
    assert parse_state_url(url) == address
    assert Settings(state_url=url).state == address
    assert SECRET not in address.display


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"redis://:{SECRET}@127.0.0.1:6379/0", "must not contain a password"),
        (f"redis://default:{SECRET}@127.0.0.1", "must not contain a password"),
        (f"rediss://user:{SECRET}@cache.example.com", "must not contain a password"),
        ("redis://user:@127.0.0.1", "must not contain a password"),
        (f"redis://127.0.0.1/0?password={SECRET}", "takes no query"),
        (f"redis://127.0.0.1/0#{SECRET}", "takes no query"),
        ("unix:///run/redis.sock", "must start with redis:// or rediss://"),
        ("http://127.0.0.1:6379", "must start with redis:// or rediss://"),
        (f"{SECRET}", "must start with redis:// or rediss://"),
        ("redis://", "names no host"),
        ("redis://127.0.0.1:99999", "not a valid URL"),
        (f"redis://127.0.0.1/{SECRET}", "must be a database number"),
    ],
)
def test_store_urls_that_are_refused_say_why_without_repeating_the_url(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_state_url(url)
    assert SECRET not in str(caught.value)
    with pytest.raises(ValidationError, match=message):
        Settings(state_url=url)


def test_unset_keeps_the_state_in_this_process(tmp_path: Path) -> None:
    settings = Settings(state_url="  ")
    assert settings.state is None
    app = create_app(Settings(keyset_file=tmp_path / "k.json", users_file=tmp_path / "u.yaml"))
    assert isinstance(app.state.refresh, FileRefreshStore)
    assert isinstance(app.state.throttle, MemoryThrottle)
    assert app.state.state_store is None


def test_other_state_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="state_ca_file needs a rediss://"):
        Settings(state_url="redis://127.0.0.1", state_ca_file=Path("/ca.pem"))
    assert Settings(state_url="rediss://h", state_ca_file=Path("/ca.pem")).state_ca_file == Path("/ca.pem")
    for prefix in ("", "has space:", "x" * 101, "tab\t:"):
        with pytest.raises(ValidationError):
            Settings(state_prefix=prefix)
    with pytest.raises(ValidationError, match="placeholder secret"):
        Settings(environment="prod", state_url="redis://h", state_password="changeme")


def test_the_password_may_come_from_a_mounted_file(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")
    settings = Settings(state_url="redis://h", state_password_file=path)
    assert settings.state_password is not None
    assert settings.state_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    with pytest.raises(ValidationError, match="not both"):
        Settings(state_password="x" * 20, state_password_file=path)
    with pytest.raises(ValidationError, match="state_password_file cannot be read: No such file") as caught:
        Settings(state_password_file=tmp_path / "missing")
    assert SECRET not in str(caught.value)
    path.write_text("changeme\n")
    with pytest.raises(ValidationError, match="placeholder secret"):
        Settings(environment="prod", state_url="redis://h", state_password_file=path)


def test_the_store_config_carries_every_setting_and_never_shows_the_password(tmp_path: Path) -> None:
    assert Settings().state_config() is None
    settings = Settings(
        state_url="rediss://auth-svc@cache.example.com:6380/2",
        state_password=SECRET,
        state_prefix="install-a:",
        state_timeout_seconds=0.25,
        state_retry_seconds=7,
        state_max_connections=3,
        state_ca_file=tmp_path / "ca.pem",
    )
    config = settings.state_config()
    assert config == StateConfig(
        StateAddress("cache.example.com", 6380, 2, True, "auth-svc"),
        password=SECRET,
        prefix="install-a:",
        timeout_seconds=0.25,
        retry_seconds=7,
        max_connections=3,
        ca_file=tmp_path / "ca.pem",
    )
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    store = StateStore(config)  # connects lazily: building one is safe without a server
    assert (store.address, store.prefix, store.timeout_seconds, store.retry_seconds) == (
        config.address, "install-a:", 0.25, 7,
    )  # fmt: skip
    assert Settings(state_url="redis://h", state_password="").state_config() == StateConfig(
        StateAddress("h", 6379, 0, False), prefix="modelberth:auth:", timeout_seconds=1.0, retry_seconds=2.0,
        max_connections=32,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(
    "variables",
    [
        {"AUTH_STATE_URL": f"redis://:{SECRET}@127.0.0.1:6379/0"},
        {"AUTH_STATE_URL": f"redis://127.0.0.1?password={SECRET}"},
        {"AUTH_STATE_URL": "redis://127.0.0.1", "AUTH_STATE_TIMEOUT_SECONDS": SECRET},
    ],
    ids=["password in the url", "password in the query", "not a number"],
)
def test_a_refused_setting_stops_the_process_with_a_clear_message(
    tmp_path: Path, auth_env: Any, variables: dict[str, str]
) -> None:
    env = {**os.environ, **auth_env.env(), **variables}
    done = subprocess.run(
        [sys.executable, "-m", "modelberth_cli", "serve", "auth", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "invalid settings; auth does not start" in output
    assert "AUTH_STATE_" in output
    assert SECRET not in output
    assert "Traceback" not in output
