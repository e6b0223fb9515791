"""The auth service: ``create_app(settings)`` builds the FastAPI app; a lifespan loads keys and users.

Run it with ``modelberth serve auth`` (or ``uvicorn --factory modelberth_auth.app:create_app``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pydantic_settings import SettingsError
from starlette.concurrency import run_in_threadpool

from modelberth_auth.errors import install_auth_error_handlers
from modelberth_auth.keys import KeyRing, KeyRingSource, KeysetError, create_keyset
from modelberth_auth.limits import BodyLimitMiddleware
from modelberth_auth.oauth import Authority
from modelberth_auth.principals import PrincipalsError, PrincipalStore
from modelberth_auth.refresh import FileRefreshStore, RefreshStore
from modelberth_auth.refresh_redis import RedisRefreshStore
from modelberth_auth.routes import health, login, oauth, wellknown
from modelberth_auth.schemas import SECURITY_SCHEMES
from modelberth_auth.settings import Settings
from modelberth_auth.state import StateMetrics, StateStore
from modelberth_auth.telemetry import AuthMetrics
from modelberth_auth.throttle import MemoryThrottle, Throttle
from modelberth_auth.throttle_redis import RedisThrottle
from modelberth_core.metrics import (
    FASTAPI_TELEMETRY,
    HttpMetrics,
    RequestContextMiddleware,
    metrics_router,
    new_registry,
)
from modelberth_core.security import TokenVerifier

log = logging.getLogger("modelberth.auth")

VERSION = "0.1.0"


@dataclass(frozen=True, slots=True)
class AuthState:
    """Where refresh tokens and throttle counts live: this process, or the shared store (``store``)."""

    refresh: RefreshStore
    throttle: Throttle
    store: StateStore | None = None
    """The shared store's connection pool; None for in-process state."""
    file: FileRefreshStore | None = None
    """The in-process refresh store's file, loaded at startup; None with a shared store."""


def build_state(settings: Settings, registry: CollectorRegistry) -> AuthState:
    """In-process state, unless ``AUTH_STATE_URL`` names a shared store (then one pool for both)."""
    address = settings.state
    if address is None:
        file = FileRefreshStore(
            settings.refresh_store_path,
            settings.refresh_token_ttl_seconds,
            settings.max_refresh_tokens_per_subject,
        )
        return AuthState(file, MemoryThrottle(settings.throttle_policy), file=file)
    password = settings.state_password.get_secret_value() if settings.state_password else None
    store = StateStore(
        address,
        password=password or None,
        prefix=settings.state_prefix,
        timeout_seconds=settings.state_timeout_seconds,
        retry_seconds=settings.state_retry_seconds,
        max_connections=settings.state_max_connections,
        ca_file=settings.state_ca_file,
        metrics=StateMetrics(registry),
    )
    refresh = RedisRefreshStore(
        store, settings.refresh_token_ttl_seconds, settings.max_refresh_tokens_per_subject
    )
    return AuthState(refresh, RedisThrottle(store, settings.throttle_policy), store=store)


class Startup:
    """Loads the keyset and the users file; readiness retries whatever is still missing."""

    def __init__(
        self, settings: Settings, keys: KeyRing, principals: PrincipalStore, state: AuthState
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.principals = principals
        self.state = state

    async def run(self) -> None:
        """At startup: create a local keyset if allowed and absent, load everything, report problems."""
        path = self.settings.keyset_path
        if self.settings.may_generate_keyset and not path.exists() and create_keyset(path):
            log.warning("no keyset found; generated a new one", extra={"path": str(path)})
        if self.state.file is not None:
            self.state.file.load()
        for problem in await self.problems():
            log.error("not ready", extra={"problem": problem})

    def ensure_loaded(self) -> list[str]:
        """Try to load what is not loaded yet; the problems that remain."""
        problems: list[str] = []
        if not self.keys.loaded:
            try:
                self.keys.load()
            except KeysetError as exc:
                problems.append(str(exc))
        if not self.principals.loaded:
            try:
                self.principals.load()
            except PrincipalsError as exc:
                problems.append(str(exc))
        return problems

    async def problems(self, *, store: bool = True) -> list[str]:
        """Why the service is not ready (empty when it is); ``store=False`` leaves the shared store out."""
        problems = await run_in_threadpool(self.ensure_loaded)
        if store and self.state.store is not None:
            problem = await self.state.store.check()
            if problem is not None:
                problems.append(problem)
        return problems


def load_settings() -> Settings:
    """Settings from ``AUTH_*``; invalid ones stop the process with each problem named on one log line.

    Never pydantic's own message: it repeats the values, and a password typed into ``AUTH_STATE_URL``
    (which is refused) must not end up in a log.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"AUTH_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in exc.errors()
        ]
    except SettingsError as exc:
        problems = [str(exc).split(" from source", 1)[0]]
    log.error("invalid settings; auth does not start", extra={"problems": problems})
    raise SystemExit(2)


def install_openapi(app: FastAPI) -> None:
    """Generate the OpenAPI document once, with the security schemes the routes refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = document.setdefault("components", {})
            components["securitySchemes"] = SECURITY_SCHEMES
            # Validation errors never echo the input (core's handler drops input and ctx): say so.
            validation = components.get("schemas", {}).get("ValidationError")
            if validation is not None:
                for echoed in ("input", "ctx"):
                    validation["properties"].pop(echoed, None)
                validation["additionalProperties"] = False
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the auth app (settings from ``AUTH_*`` unless given)."""
    settings = settings or load_settings()
    registry = new_registry()
    http_metrics = HttpMetrics("auth", registry)
    auth_metrics = AuthMetrics(registry)
    keys = KeyRing(settings.keyset_path, settings.reload_interval_seconds)
    auth_metrics.signing_keys.set_function(lambda: keys.count)
    principals = PrincipalStore(
        settings.users_path, settings.reload_interval_seconds, require_file=settings.environment != "dev"
    )
    state = build_state(settings, registry)
    authority = Authority(settings, keys, principals, state.refresh, state.throttle, auth_metrics)
    verifier = TokenVerifier(KeyRingSource(keys), issuer=settings.issuer, audience=settings.audience)
    startup = Startup(settings, keys, principals, state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await startup.run()
        where = "in this process" if state.store is None else state.store.address.display
        ready = keys.loaded and principals.loaded
        log.info("auth ready" if ready else "auth started, not ready", extra={"state": where})
        try:
            yield
        finally:
            if state.store is not None:
                await state.store.aclose()

    app = FastAPI(
        title="modelberth auth",
        version=VERSION,
        description="OAuth2 token endpoint (client credentials, refresh tokens), first-party login, JWKS.",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.auth_metrics = auth_metrics
    app.state.keys = keys
    app.state.principals = principals
    app.state.refresh = state.refresh
    app.state.throttle = state.throttle
    app.state.state_store = state.store
    app.state.authority = authority
    app.state.verifier = verifier
    app.state.startup = startup
    install_auth_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_router(registry))
    app.include_router(oauth.router)
    app.include_router(login.router)
    app.include_router(wellknown.router)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=http_metrics)
    return app
