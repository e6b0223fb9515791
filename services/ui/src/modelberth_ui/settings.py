"""UI settings, read once from ``UI_*`` environment variables by the app factory."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from modelberth_core.settings import ServiceSettings


class Settings(ServiceSettings):
    """Where the auth and inference services are, how long to wait for them and how much to accept."""

    model_config = SettingsConfigDict(env_prefix="UI_", extra="ignore", frozen=True)

    port: int = Field(default=8003, ge=1, le=65535)
    """TCP port to listen on."""
    auth_url: str = "http://127.0.0.1:8001"
    """Base URL of the auth service (``/auth/login``, ``/oauth/revoke``)."""
    inference_url: str = "http://127.0.0.1:8002"
    """Base URL of the inference service (``/v1/models...``)."""
    client_id: str = "modelberth-ui"
    """The UI's OAuth client id at auth, sent with ``client_secret`` when it logs a person in."""
    client_secret: SecretStr | None = None
    """The UI's client secret: with it, auth believes the browser address the UI forwards at login and
    throttles failed logins per person and address; without it, every UI user shares one address there."""
    connect_timeout_seconds: float = Field(default=3.0, gt=0)
    """Seconds to wait for a TCP connection to auth or inference."""
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    """Seconds to wait for an answer to a login, listing, card or example request."""
    predict_timeout_seconds: float = Field(default=30.0, gt=0)
    """Seconds to wait for one prediction request (a batch chunk can hold hundreds of rows)."""
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    """Seconds /readyz waits for each dependency's own /readyz."""
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    """Largest batch CSV accepted, in bytes; larger files are refused with a message."""
    max_batch_rows: int = Field(default=20_000, ge=1)
    """Most data rows one batch CSV may hold."""
    batch_chunk_rows: int = Field(default=500, ge=1)
    """Rows per prediction request in a batch (must not exceed inference's max_instances)."""
    batch_chunk_bytes: int = Field(default=512 * 1024, ge=1024)
    """Approximate JSON bytes per prediction request in a batch (below inference's max_body_bytes)."""
    temp_dir: Path = Path("/tmp/modelberth-ui")  # noqa: S108 - an emptyDir is mounted at /tmp in the pod
    """Gradio's upload and download folder (GRADIO_TEMP_DIR); results CSVs are written here too."""
    temp_max_age_seconds: int = Field(default=3600, ge=60)
    """Uploaded and generated files older than this many seconds are deleted."""
