"""Registry credentials the Docker way: ``$DOCKER_CONFIG/config.json`` (else ``~/.docker/config.json``).

The same file ``docker login`` writes and a Kubernetes ``kubernetes.io/dockerconfigjson`` pull secret holds
(mount the secret's ``.dockerconfigjson`` key as ``config.json`` and point ``DOCKER_CONFIG`` at its
directory). An ``auths`` entry gives ``auth`` (base64 of ``user:password``) or ``username`` and
``password``; ``credHelpers`` / ``credsStore`` name a ``docker-credential-<helper>`` program, asked the way
Docker asks it. Nothing here logs or repeats a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_ENV = "DOCKER_CONFIG"


class CredentialsError(Exception):
    """The credentials file or helper cannot be read; the message names the file, never a secret."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password (or token) for one registry, and where they came from (for messages)."""

    username: str
    password: str
    source: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, source={self.source!r})"


def config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    directory = os.environ.get(CONFIG_ENV)
    if directory:
        return Path(directory) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _server_key(key: str) -> str:
    """``https://host:port/v1/`` and ``host:port`` both name ``host:port``."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0].lower()


def _from_auths(entry: Any, registry: str, source: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise CredentialsError(f"{source}: the entry for {registry} is not an object")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(
                f"{source}: the auth of {registry} is not base64 of user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise CredentialsError(f"{source}: the auth of {registry} is not base64 of user:password")
        return Credentials(username, password, source)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(secret, str):
        return Credentials(user, secret, source)
    return None


def _from_helper(helper: str, registry: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    if not helper.replace("-", "").replace("_", "").isalnum() or shutil.which(program) is None:
        raise CredentialsError(f"the credential helper {program} (named in {config_path()}) is not installed")
    try:
        proc = subprocess.run(
            [program, "get"], input=registry, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialsError(f"{program} get failed ({type(exc).__name__})") from None
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise CredentialsError(f"{program} get exited {proc.returncode}")
    try:
        answer = json.loads(proc.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise CredentialsError(f"{program} get answered something else than Username and Secret") from None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialsError(f"{program} get answered something else than Username and Secret")
    return Credentials(username, secret, program)


def lookup(registry: str) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``) from the Docker config, or None (anonymous).

    Docker's order: a per-registry helper (``credHelpers``), then an ``auths`` entry, then the default
    helper (``credsStore``).
    """
    config = _read_config()
    if config is None:
        return None
    wanted = registry.lower()
    helper = _helper_for(config.get("credHelpers"), wanted)
    if helper is not None:
        return _from_helper(helper, registry)
    auths = config.get("auths")
    if isinstance(auths, dict):
        for key, entry in auths.items():
            if _server_key(str(key)) == wanted:
                found = _from_auths(entry, registry, str(config_path()))
                if found is not None:
                    return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, registry)
    return None


def _read_config() -> dict[str, Any] | None:
    """Docker's config as a JSON object; None when there is no config file."""
    path = config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read the registry credentials ({exc.strerror})") from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CredentialsError(f"{path}: not valid JSON (expected Docker's config.json format)") from None
    if not isinstance(config, dict):
        raise CredentialsError(f"{path}: expected a JSON object (Docker's config.json format)")
    return config


def _helper_for(helpers: object, wanted: str) -> str | None:
    """The helper ``credHelpers`` names for the server ``wanted``, if any."""
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _server_key(str(key)) == wanted and isinstance(helper, str):
                return helper
    return None
