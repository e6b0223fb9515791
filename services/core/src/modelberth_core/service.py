"""The skeleton every modelberth service is built on, written once: the metrics registry, the HTTP request
metrics middleware, ``FastAPI(telemetry=...)``, the error handlers, ``GET /metrics`` and the lifespan.

A service's ``create_app`` makes a :class:`ServiceBuilder`, hands its :attr:`~ServiceBuilder.registry` to
its own metrics, registers what runs at startup, in the background and at shutdown, and calls
:meth:`~ServiceBuilder.build` with its settings, routers, error handlers and extra middleware::

    service = ServiceBuilder("auth")
    metrics = AuthMetrics(service.registry)
    service.on_startup(startup.run)
    service.on_shutdown(store.aclose)
    app = service.build(settings, title="modelberth auth", routers=[health.router, oauth.router])

Everything a service adds beyond that (its routes, its state on ``app.state``) stays in the service.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware

from modelberth_core.errors import install_error_handlers
from modelberth_core.metrics import (
    FASTAPI_TELEMETRY,
    HttpMetrics,
    RequestContextMiddleware,
    metrics_router,
    new_registry,
)

StartupHook = Callable[[], Awaitable[object]]
"""Awaited once at startup, in order, before the app takes requests."""
BackgroundJob = Callable[[], Coroutine[Any, Any, object]]
"""Started as a task once the startup hooks are done; cancelled (and awaited) first at shutdown."""
ShutdownHook = Callable[[], object]
"""Called at shutdown (and awaited when it returns an awaitable), the last registered first."""
ErrorHandlers = Callable[[FastAPI], None]
"""Installs a service's exception handlers (core's :func:`install_error_handlers` or a service's own)."""


class ServiceBuilder:
    """One service's app skeleton: build it, give :attr:`registry` to the service's metrics, :meth:`build`.

    The HTTP metrics are ``modelberth_<name>_requests_total{route,method,status}``,
    ``..._request_duration_seconds{route,method}`` and ``..._requests_in_flight``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        """The service's name, the ``<name>`` of its metric names (``auth``, ``inference``, ``ui``)."""
        self.registry: CollectorRegistry = new_registry()
        """The app's own Prometheus registry, served at ``/metrics`` (one per app, so tests build many)."""
        self.http_metrics = HttpMetrics(name, self.registry)
        """What the request middleware counts and times."""
        self._startup: list[StartupHook] = []
        self._background: list[BackgroundJob] = []
        self._shutdown: list[ShutdownHook] = []

    def on_startup(self, hook: StartupHook) -> None:
        """Await ``hook()`` at startup, after the hooks registered before it."""
        self._startup.append(hook)

    def in_background(self, job: BackgroundJob) -> None:
        """Run ``job()`` as a task from startup on (after the startup hooks); cancel it at shutdown."""
        self._background.append(job)

    def on_shutdown(self, hook: ShutdownHook) -> None:
        """Call ``hook()`` at shutdown (awaiting its result if it is awaitable), after the background tasks
        have stopped; hooks run last registered first, each even if an earlier one raised."""
        self._shutdown.append(hook)

    def build(
        self,
        settings: object,
        *,
        title: str,
        version: str = "0.1.0",
        description: str = "",
        routers: Sequence[APIRouter] = (),
        errors: ErrorHandlers = install_error_handlers,
        middleware: Sequence[Middleware] = (),
        docs: bool = True,
    ) -> FastAPI:
        """The app: ``settings`` and the registry on ``app.state`` (``settings``, ``metrics_registry``),
        ``errors`` installed, ``routers`` included in order (route matching walks them in that order, so
        the hot ones go first), then ``GET /metrics``.

        The request middleware is the outermost layer, so it counts and logs what ``middleware`` (listed
        outermost first) answers too. ``docs=False`` serves no ``/docs``, ``/redoc`` or ``/openapi.json``.
        """
        no_docs: dict[str, Any] = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
        app = FastAPI(
            title=title,
            version=version,
            description=description,
            lifespan=self._lifespan,
            telemetry=FASTAPI_TELEMETRY,
            middleware=[Middleware(RequestContextMiddleware, metrics=self.http_metrics), *middleware],
            **no_docs,
        )
        app.state.settings = settings
        app.state.metrics_registry = self.registry
        errors(app)
        for router in routers:
            app.include_router(router)
        app.include_router(metrics_router(self.registry))
        return app

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for hook in self._shutdown:  # pushed first: they run even when a startup hook fails
                stack.push_async_callback(_call, hook)
            for startup in self._startup:
                await startup()
            tasks = [asyncio.create_task(job()) for job in self._background]
            stack.push_async_callback(_cancel, tasks)
            yield


async def _call(hook: ShutdownHook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


async def _cancel(tasks: list[asyncio.Task[object]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
