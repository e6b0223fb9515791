"""Auth service settings, read from ``AUTH_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from modelberth_auth.state import StateAddress, StateConfig, parse_state_url
from modelberth_auth.throttle import ThrottlePolicy
from modelberth_core.settings import PLACEHOLDER_SECRETS, ServiceSettings, state_dir


class Settings(ServiceSettings):
    """Settings of the auth service (``AUTH_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore", frozen=True)

    port: int = Field(default=8001, ge=1, le=65535)
    """TCP port to listen on."""
    issuer: str = Field(default="http://127.0.0.1:8001", min_length=1)
    """The ``iss`` claim of every token and the base of the discovery document's URLs."""
    audience: str = Field(default="modelberth", min_length=1)
    """The ``aud`` claim of every token."""
    keyset_file: Path | None = None
    """JWKS with private keys (newest last signs, all verify); default ``<state_dir>/keys.json``."""
    users_file: Path | None = None
    """Users and clients (YAML, or JSON by extension); default ``<state_dir>/users.yaml``."""
    refresh_store_file: Path | None = None
    """Hashed refresh tokens (JSON); default ``<state_dir>/refresh_tokens.json``."""
    generate_keyset: bool | None = None
    """Create a keyset when the file is absent; default: only in ``environment=dev`` (never overwrites)."""
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    """Access token lifetime in seconds."""
    refresh_token_ttl_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    """Refresh token lifetime in seconds (a rotated token keeps the family's original expiry)."""
    max_refresh_tokens_per_subject: int = Field(default=50, ge=1, le=10_000)
    """Live refresh-token families per subject; the oldest is dropped beyond this."""
    login_max_failures: int = Field(default=5, ge=1, le=100_000)
    """Failed logins of one account from one source address before its attempts wait (backoff)."""
    login_backoff_seconds: float = Field(default=30.0, ge=0.0, le=86_400.0)
    """The first wait in seconds after ``login_max_failures``; it doubles with each further failure."""
    login_backoff_max_seconds: float = Field(default=900.0, ge=0.0, le=86_400.0)
    """The longest wait in seconds of one account from one address."""
    login_reset_seconds: float = Field(default=43_200.0, ge=1.0, le=30 * 86_400.0)
    """Seconds without a failure after which an account's count from an address starts over."""
    address_max_failures: int = Field(default=50, ge=1, le=1_000_000)
    """Failed logins and client authentications from one source address (IPv6: per /64) before 429."""
    address_window_seconds: float = Field(default=900.0, ge=1.0, le=86_400.0)
    """Sliding window in seconds of the per-address count."""
    reload_interval_seconds: float = Field(default=1.0, ge=0.0, le=3600.0)
    """At most this often, in seconds, the users and keyset files are checked for changes."""
    max_body_bytes: int = Field(default=65_536, ge=1024, le=10 * 1024 * 1024)
    """Larger request bodies get 413."""
    state_url: str | None = None
    """Shared state store, ``redis://host:port/db`` or ``rediss://`` (TLS), never with a password in it:
    refresh tokens and throttle counts live there for every replica. Unset: in this process (and
    ``refresh_store_file``)."""
    state_password: SecretStr | None = None
    """Password of the state store (``AUTH``; with a user name in ``state_url``, its ACL password)."""
    state_password_file: Path | None = None
    """A file holding the store's password instead (a mounted Secret: not in the environment)."""
    state_prefix: str = Field(default="modelberth:auth:", pattern=r"^[\x21-\x7e]{1,100}$")
    """Prefix of every key in the store, so that one Redis can serve several installs."""
    state_ca_file: Path | None = None
    """CA bundle that signed the store's TLS certificate (``rediss://`` only); default: the system CAs."""
    state_timeout_seconds: float = Field(default=1.0, gt=0.0, le=30.0)
    """Each store call gives up after this long (connecting, waiting for a pooled connection, answering)."""
    state_retry_seconds: float = Field(default=2.0, ge=0.1, le=300.0)
    """After a failed store call, calls fail at once for this long (503, ``Retry-After`` of this)."""
    state_max_connections: int = Field(default=32, ge=1, le=10_000)
    """Connections in this process's one pool to the store."""

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None:
            parse_state_url(value)  # ValueError with a message that never repeats the URL
        return value

    @model_validator(mode="after")
    def _backoff_fits(self) -> Settings:
        if self.login_reset_seconds < self.login_backoff_max_seconds:
            raise ValueError("login_reset_seconds must be at least login_backoff_max_seconds")
        return self

    @model_validator(mode="after")
    def _state_password_file(self) -> Settings:
        if self.state_password_file is None:
            return self
        if self.state_password is not None:
            raise ValueError("set state_password or state_password_file, not both")
        try:
            text = self.state_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise ValueError(f"state_password_file cannot be read: {reason}") from None
        if self.environment != "dev" and text.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "state_password_file holds a placeholder secret; set a real one outside environment=dev"
            )
        object.__setattr__(self, "state_password", SecretStr(text))
        return self

    @model_validator(mode="after")
    def _state_tls(self) -> Settings:
        if self.state_ca_file is not None and (self.state is None or not self.state.tls):
            raise ValueError("state_ca_file needs a rediss:// state_url (TLS)")
        return self

    @model_validator(mode="after")
    def _default_paths(self) -> Settings:
        base = state_dir()
        defaults = {
            "keyset_file": base / "keys.json",
            "users_file": base / "users.yaml",
            "refresh_store_file": base / "refresh_tokens.json",
        }
        for name, path in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, path)
        return self

    @property
    def keyset_path(self) -> Path:
        """The keyset file (resolved default)."""
        assert self.keyset_file is not None
        return self.keyset_file

    @property
    def users_path(self) -> Path:
        """The users/clients file (resolved default)."""
        assert self.users_file is not None
        return self.users_file

    @property
    def refresh_store_path(self) -> Path:
        """The refresh-token store (resolved default)."""
        assert self.refresh_store_file is not None
        return self.refresh_store_file

    @property
    def throttle_policy(self) -> ThrottlePolicy:
        """The brute-force limits these settings describe."""
        return ThrottlePolicy(
            max_failures=self.login_max_failures,
            backoff_seconds=self.login_backoff_seconds,
            backoff_max_seconds=self.login_backoff_max_seconds,
            reset_seconds=self.login_reset_seconds,
            address_max_failures=self.address_max_failures,
            address_window_seconds=self.address_window_seconds,
        )

    @property
    def state(self) -> StateAddress | None:
        """Where the shared state store is, or None for in-process state."""
        return None if self.state_url is None else parse_state_url(self.state_url)

    def state_config(self) -> StateConfig | None:
        """How to reach the shared state store, or None for in-process state."""
        address = self.state
        if address is None:
            return None
        password = self.state_password.get_secret_value() if self.state_password else None
        return StateConfig(
            address,
            password=password or None,
            prefix=self.state_prefix,
            timeout_seconds=self.state_timeout_seconds,
            retry_seconds=self.state_retry_seconds,
            max_connections=self.state_max_connections,
            ca_file=self.state_ca_file,
        )

    @property
    def may_generate_keyset(self) -> bool:
        """Whether a missing keyset file is created at startup."""
        return self.environment == "dev" if self.generate_keyset is None else self.generate_keyset
