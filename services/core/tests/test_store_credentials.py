"""Registry credentials from the Docker config (what ``docker login`` writes and pull secrets hold)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from modelberth_core.store.credentials import CredentialsError, config_path, lookup


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return path


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_entries_match_by_host_and_port_in_every_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(
        tmp_path,
        monkeypatch,
        {
            "auths": {
                "https://ghcr.io/v1/": {"auth": _auth("acme", "ghp_secret:with:colons")},
                "127.0.0.1:5000": {"username": "ci", "password": "pw"},
                "kind-registry:5000": {},
            }
        },
    )
    assert config_path() == path
    found = lookup("ghcr.io")
    assert found is not None
    assert (found.username, found.password) == ("acme", "ghp_secret:with:colons")
    assert "ghp_secret" not in repr(found)
    local = lookup("127.0.0.1:5000")
    assert local is not None
    assert (local.username, local.password, local.source) == ("ci", "pw", str(path))
    assert lookup("127.0.0.1:5001") is None
    assert lookup("kind-registry:5000") is None  # an entry without credentials: anonymous


def test_no_config_is_anonymous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "missing"))
    assert lookup("ghcr.io") is None
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".docker" / "config.json"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ({"auths": {"ghcr.io": {"auth": "!!!"}}}, "not base64 of user:password"),
        (
            {"auths": {"ghcr.io": {"auth": base64.b64encode(b"no-colon").decode()}}},
            "not base64 of user:password",
        ),
        ({"auths": {"ghcr.io": "text"}}, "not an object"),
        ({"credHelpers": {"ghcr.io": "nonexistent-helper"}}, "docker-credential-nonexistent-helper"),
        ({"credsStore": "../../bin/sh"}, "is not installed"),
    ],
)
def test_a_broken_config_is_one_line_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object, why: str
) -> None:
    _config(tmp_path, monkeypatch, content)
    with pytest.raises(CredentialsError, match=why) as info:
        lookup("ghcr.io")
    assert "\n" not in str(info.value)


def test_a_credential_helper_is_asked_the_way_docker_asks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    # Docker's helper protocol: `get` reads the server on stdin and answers JSON (or says it has none).
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "ghcr.io" ]; then echo \'{"ServerURL":"ghcr.io","Username":"bot","Secret":"s3"}\';'
        " else echo 'credentials not found in native keychain'; exit 1; fi\n",
        encoding="utf-8",
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _config(tmp_path / "conf", monkeypatch, {"credHelpers": {"ghcr.io": "fake"}, "credsStore": "fake"})
    found = lookup("ghcr.io")
    assert found is not None
    assert (found.username, found.password, found.source) == (
        "bot",
        "s3",
        "docker-credential-fake",
    )
    assert lookup("other.example:5000") is None
