"""The settings base every service shares: environment-driven, typed, and strict about secrets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
