"""Inference settings, read once from ``INFERENCE_*`` variables in the app factory."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from modelberth_core.settings import ServiceSettings
from modelberth_core.store import InvalidReference, Reference, check_name


class Settings(ServiceSettings):
    """Everything the inference service can be told through ``INFERENCE_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore", frozen=True)

    port: int = Field(default=8002, ge=1, le=65535)
    """TCP port to listen on."""
    grpc_port: int = Field(default=8012, ge=0, le=65535)
    """TCP port of the Open Inference Protocol's gRPC service, in the same process (0 turns it off)."""
    store: str = ""
    """Model store location: a directory or ``oci://HOST[:PORT]/NAMESPACE``; empty uses ``model_dir``.
    Versions are read from here only."""
    model_dir: Path = Path("artifacts/models")
    """The model store directory when ``store`` is empty (its older name)."""
    cache_dir: str = ""
    """Local directory (an emptyDir) where versions read from a registry store are unpacked; empty:
    ``$MODELBERTH_REGISTRY_CACHE``, else ``~/.cache/modelberth/registry``."""
    auth_jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    """Where the auth service publishes its public keys (fetched at start, cached)."""
    auth_issuer: str = "http://127.0.0.1:8001"
    """Required ``iss`` claim of access tokens."""
    auth_audience: str = "modelberth"
    """Required ``aud`` claim of access tokens."""
    models: str = ""
    """Optional comma-separated model references: ``iris`` (follow its champion), ``iris@challenger`` (follow
    that alias) or ``iris:20261122T144500Z`` (that version; ``iris=VERSION`` is read the same); empty serves
    the champion of every model in the store."""
    poll_seconds: float = Field(default=5.0, ge=0.0)
    """Seconds between checks of the aliases being followed (0 turns polling off)."""
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest accepted request body, in bytes (larger gets 413 while reading)."""
    max_instances: int = Field(default=1000, ge=1)
    """Most rows one request may carry."""
    max_text_length: int = Field(default=10_000, ge=1)
    """Longest accepted text value, in characters."""
    request_timeout_seconds: float = Field(default=10.0, gt=0.0)
    """Time budget of one request (reading the body, waiting for its batch); over it -> 504."""
    batch_max_wait_seconds: float = Field(default=0.002, ge=0.0, le=0.05)
    """Longest a request waits for others to join its micro-batch, in seconds."""
    max_queued: int = Field(default=256, ge=1)
    """Most requests per model in progress at once (validating, waiting for their micro-batch, predicting);
    one more is refused at once (429 with ``Retry-After``) instead of queueing toward the request timeout."""
    batch_max_rows: int = Field(default=2048, ge=1)
    """Most rows predicted in one vectorised call (a larger request is predicted alone)."""
    drift_window_rows: int = Field(default=1000, ge=10)
    """Rows in the sliding window compared with the reference profile (per model)."""
    drift_min_rows: int = Field(default=100, ge=1)
    """Rows the window needs before a drift PSI is exported."""
    prediction_log: str = ""
    """Sampled prediction log: empty (off), ``stdout``, or a file path for JSON lines (created 0600)."""
    prediction_log_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of requests written to the prediction log (0..1)."""
    prediction_log_redact: str = ""
    """Comma-separated feature names whose values are replaced by "[redacted]" in the prediction log."""
    prediction_log_max_bytes: int = Field(default=100 << 20, ge=0)
    """Size in bytes past which the prediction log file rotates (0: never)."""
    prediction_log_backups: int = Field(default=5, ge=1)
    """Rotated prediction log files kept (``<path>.1`` is the newest); older ones are deleted."""
    max_versions: int = Field(default=3, ge=2, le=100)
    """Most versions of one model held in memory, the served one included: others load when a request names
    them (``/versions/{version or alias}/...``) and the least recently used one that is neither served nor
    shadowing is unloaded to make room."""
    shadow: bool = False
    """Shadow traffic for every model: each request the served version answers is also scored by the
    model's ``challenger`` off the request path, and the two are compared (agreement metrics)."""
    shadow_models: str = ""
    """Comma-separated model names shadowed even when ``shadow`` is off."""
    shadow_queue_rows: int = Field(default=10_000, ge=1)
    """Most rows waiting for the challenger, per model; a batch that does not fit is dropped and counted."""
    shadow_tolerance: float = Field(default=0.05, ge=0.0)
    """Regression: the challenger agrees on a row when it is within this share of the champion's value
    (``|challenger - champion| <= tolerance * |champion|``); classifiers agree on equal labels."""

    @field_validator("models")
    @classmethod
    def _valid_references(cls, value: str) -> str:
        _references(value)
        return value

    @field_validator("shadow_models")
    @classmethod
    def _valid_names(cls, value: str) -> str:
        for name in _names(value):
            try:
                check_name(name)
            except InvalidReference as exc:
                raise ValueError(str(exc)) from None
        return value

    def shadowed(self, name: str) -> bool:
        """Whether requests to ``name`` are shadowed by its challenger (``shadow`` or ``shadow_models``)."""
        return self.shadow or name in _names(self.shadow_models)

    def references(self) -> dict[str, Reference]:
        """Configured models: name -> the reference to serve; empty means every model's champion."""
        return _references(self.models)

    def store_location(self) -> str:
        """Where the models are: ``store``, else ``model_dir``."""
        return self.store or str(self.model_dir)

    def redacted_fields(self) -> frozenset[str]:
        """Feature names to redact in the prediction log."""
        return frozenset(filter(None, (p.strip() for p in self.prediction_log_redact.split(","))))


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _references(text: str) -> dict[str, Reference]:
    out: dict[str, Reference] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, version = item.partition("=")
        try:
            ref = Reference.parse(f"{name}:{version}" if sep else item)
        except InvalidReference as exc:
            raise ValueError(str(exc)) from None
        if ref.name in out:
            raise ValueError(f"model {ref.name!r} is listed twice ({out[ref.name]} and {ref})")
        out[ref.name] = ref
    return out
