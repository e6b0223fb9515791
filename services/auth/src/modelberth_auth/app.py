"""The auth service: ``create_app(settings)`` builds the FastAPI app; a lifespan loads keys and users.

Run it with ``modelberth serve auth`` (or ``uvicorn --factory modelberth_auth.app:create_app``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from modelberth_auth.errors import install_auth_error_handlers
from modelberth_auth.keys import KeyRing, KeyRingSource, KeysetError, create_keyset
from modelberth_auth.limits import BodyLimitMiddleware
from modelberth_auth.metrics import AuthMetrics
from modelberth_auth.oauth import Authority
from modelberth_auth.principals import PrincipalsError, PrincipalStore
from modelberth_auth.refresh import FileRefreshStore, RefreshStore
from modelberth_auth.refresh_redis import RedisRefreshStore
from modelberth_auth.routes import health, login, oauth, wellknown
from modelberth_auth.schemas import SECURITY_SCHEMES
from modelberth_auth.settings import Settings
from modelberth_auth.state import StateMetrics, StateStore
from modelberth_auth.throttle import MemoryThrottle, Throttle
from modelberth_auth.throttle_redis import RedisThrottle
from modelberth_core.security import TokenVerifier
from modelberth_core.service import ServiceBuilder
from modelberth_core.settings import load_settings

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
    config = settings.state_config()
    if config is None:
        file = FileRefreshStore(
            settings.refresh_store_path,
            settings.refresh_token_ttl_seconds,
            settings.max_refresh_tokens_per_subject,
        )
        return AuthState(file, MemoryThrottle(settings.throttle_policy), file=file)
    store = StateStore(config, metrics=StateMetrics(registry))
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
        where = "in this process" if self.state.store is None else self.state.store.address.display
        ready = self.keys.loaded and self.principals.loaded
        log.info("auth ready" if ready else "auth started, not ready", extra={"state": where})

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
    settings = settings or load_settings(Settings, "auth")
    service = ServiceBuilder("auth")
    auth_metrics = AuthMetrics(service.registry)
    keys = KeyRing(settings.keyset_path, settings.reload_interval_seconds)
    auth_metrics.signing_keys.set_function(lambda: keys.count)
    principals = PrincipalStore(
        settings.users_path, settings.reload_interval_seconds, require_file=settings.environment != "dev"
    )
    state = build_state(settings, service.registry)
    authority = Authority(settings, keys, principals, state.refresh, state.throttle, auth_metrics)
    verifier = TokenVerifier(KeyRingSource(keys), issuer=settings.issuer, audience=settings.audience)
    startup = Startup(settings, keys, principals, state)
    service.on_startup(startup.run)
    if state.store is not None:
        service.on_shutdown(state.store.aclose)
    app = service.build(
        settings,
        title="modelberth auth",
        version=VERSION,
        description="OAuth2 token endpoint (client credentials, refresh tokens), first-party login, JWKS.",
        routers=[health.router, oauth.router, login.router, wellknown.router],
        errors=install_auth_error_handlers,
        middleware=[Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)],
    )
    app.state.auth_metrics = auth_metrics
    app.state.keys = keys
    app.state.principals = principals
    app.state.refresh = state.refresh
    app.state.throttle = state.throttle
    app.state.state_store = state.store
    app.state.authority = authority
    app.state.verifier = verifier
    app.state.startup = startup
    install_openapi(app)
    return app
