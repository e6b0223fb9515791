"""The settings base every service shares: environment-driven, typed, and strict about secrets."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

log = logging.getLogger("modelberth.settings")

Environment = Literal["dev", "test", "prod"]

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "admin", "dev"})
"""Values a secret may only have in ``environment="dev"``."""


def state_dir() -> Path:
    """Local state (keys, users, pids): ``$MODELBERTH_STATE_DIR``, default ``.modelberth/`` in the cwd."""
    return Path(os.environ.get("MODELBERTH_STATE_DIR") or ".modelberth")


class ServiceSettings(BaseSettings):
    """Fields every service has; subclasses set ``env_prefix`` (``AUTH_``, ``INFERENCE_``, ``UI_``)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Environment = "dev"
    """dev, test or prod: placeholder secrets are refused outside dev."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port to listen on."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Minimum level of the JSON logs written to stderr."""

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> ServiceSettings:
        if self.environment == "dev":
            return self
        for name, value in self:
            if (
                isinstance(value, SecretStr)
                and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
            ):
                raise ValueError(f"{name} holds a placeholder secret; set a real one outside environment=dev")
        return self


S = TypeVar("S", bound=BaseSettings)

EXIT_INVALID_SETTINGS = 2
"""Exit status of a service whose settings are invalid (a usage error, as for the ``modelberth`` command)."""


def settings_problems(exc: ValidationError, env_prefix: str) -> list[str]:
    """Each problem as ``<PREFIX><FIELD>: <why>`` (``<PREFIX>SETTINGS`` when it concerns several fields).

    Never pydantic's own message: it repeats the values, and a secret (or a password typed into a URL)
    must not end up in a log.
    """
    return [
        f"{env_prefix}{'_'.join(str(part) for part in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
        for err in exc.errors()
    ]


def load_settings(cls: type[S], service: str) -> S:
    """``cls()`` from the environment; invalid settings stop the process with one error line naming each
    variable and why, without its value (status :data:`EXIT_INVALID_SETTINGS`, no traceback)."""
    try:
        return cls()
    except ValidationError as exc:
        problems = settings_problems(exc, str(cls.model_config.get("env_prefix", "")))
    except SettingsError as exc:  # a value that is not JSON where JSON is expected, say
        problems = [str(exc).split(" from source", 1)[0]]
    log.error(f"invalid settings; {service} does not start", extra={"problems": problems})
    raise SystemExit(EXIT_INVALID_SETTINGS)
