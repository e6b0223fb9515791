"""The auth service: ``create_app(settings)`` builds the FastAPI app; a lifespan loads keys and users.

Run it with ``modelberth serve auth`` (or ``uvicorn --factory modelberth_auth.app:create_app``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from modelberth_auth.errors import install_auth_error_handlers
from modelberth_auth.keys import KeyRing, KeyRingSource, KeysetError, create_keyset
from modelberth_auth.limits import BodyLimitMiddleware
from modelberth_auth.oauth import Authority
from modelberth_auth.principals import PrincipalsError, PrincipalStore
from modelberth_auth.refresh import FileRefreshStore
from modelberth_auth.routes import health, login, oauth, wellknown
from modelberth_auth.schemas import SECURITY_SCHEMES
from modelberth_auth.settings import Settings
from modelberth_auth.telemetry import AuthMetrics
from modelberth_auth.throttle import MemoryThrottle
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


class Startup:
    """Loads the keyset and the users file; readiness retries whatever is still missing."""

    def __init__(
        self, settings: Settings, keys: KeyRing, principals: PrincipalStore, refresh: FileRefreshStore
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.principals = principals
        self.refresh = refresh

    def run(self) -> None:
        """At startup: create a local keyset if allowed and absent, load everything, report problems."""
        path = self.settings.keyset_path
        if self.settings.may_generate_keyset and not path.exists() and create_keyset(path):
            log.warning("no keyset found; generated a new one", extra={"path": str(path)})
        self.refresh.load()
        for problem in self.ensure_loaded():
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
    settings = settings or Settings()
    registry = new_registry()
    http_metrics = HttpMetrics("auth", registry)
    auth_metrics = AuthMetrics(registry)
    keys = KeyRing(settings.keyset_path, settings.reload_interval_seconds)
    auth_metrics.signing_keys.set_function(lambda: keys.count)
    principals = PrincipalStore(
        settings.users_path, settings.reload_interval_seconds, require_file=settings.environment != "dev"
    )
    refresh = FileRefreshStore(
        settings.refresh_store_path,
        settings.refresh_token_ttl_seconds,
        settings.max_refresh_tokens_per_subject,
    )
    throttle = MemoryThrottle(settings.throttle_policy)
    authority = Authority(settings, keys, principals, refresh, throttle, auth_metrics)
    verifier = TokenVerifier(KeyRingSource(keys), issuer=settings.issuer, audience=settings.audience)
    startup = Startup(settings, keys, principals, refresh)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        startup.run()
        log.info("auth ready" if keys.loaded and principals.loaded else "auth started, not ready")
        yield

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
    app.state.refresh = refresh
    app.state.throttle = throttle
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
