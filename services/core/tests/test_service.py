"""The services' one app skeleton: lifespan order, the request middleware's place, docs and /metrics."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from prometheus_client import Counter
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from modelberth_core.service import ServiceBuilder


def test_startup_background_and_shutdown_run_in_order() -> None:
    events: list[str] = []
    service = ServiceBuilder("demo")

    async def start(name: str) -> None:
        events.append(f"start {name}")

    async def forever(name: str) -> None:
        events.append(f"job {name}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append(f"cancelled {name}")
            raise

    async def aclose() -> None:
        events.append("aclose")

    service.on_startup(lambda: start("a"))
    service.on_startup(lambda: start("b"))
    service.in_background(lambda: forever("x"))
    service.on_shutdown(aclose)
    service.on_shutdown(lambda: events.append("close"))
    with TestClient(service.build(None, title="demo")) as client:
        assert client.get("/metrics").status_code == 200
        assert events[:2] == ["start a", "start b"]
        assert events[2:] == ["job x"]  # started once startup was done
    # Background tasks stop first (they may use what the hooks close); then the hooks, last registered first.
    assert events[3:] == ["cancelled x", "close", "aclose"]


def test_shutdown_hooks_run_when_startup_fails_and_when_one_of_them_fails() -> None:
    closed: list[str] = []
    service = ServiceBuilder("demo")

    async def broken_start() -> None:
        raise RuntimeError("cannot start")

    def broken_close() -> None:
        closed.append("broken")
        raise OSError("cannot close")

    service.on_shutdown(lambda: closed.append("first"))
    service.on_shutdown(lambda: closed.append("second"))
    service.on_startup(broken_start)
    with pytest.raises(RuntimeError, match="cannot start"), TestClient(service.build(None, title="demo")):
        pass
    assert closed == ["second", "first"]  # what was opened before the failure is closed again

    closed.clear()
    service = ServiceBuilder("demo")
    service.on_shutdown(lambda: closed.append("first"))
    service.on_shutdown(broken_close)
    with pytest.raises(OSError, match="cannot close"), TestClient(service.build(None, title="demo")):
        pass
    assert closed == ["broken", "first"]


class Refuse:
    """A middleware that answers 413 itself, as auth's body limit does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b'{"detail": "too large"}'})


def test_what_a_service_middleware_answers_is_counted_and_has_a_request_id() -> None:
    service = ServiceBuilder("demo")
    client = TestClient(service.build(None, title="demo", middleware=[Middleware(Refuse)]))
    response = client.post("/anything", content=b"x")
    assert response.status_code == 413
    assert len(response.headers["x-request-id"]) == 32
    assert service.http_metrics.requests.labels("unmatched", "POST", "4xx")._value.get() == 1


def test_routers_and_the_services_own_metrics_are_served() -> None:
    service = ServiceBuilder("demo")
    served = Counter("modelberth_demo_things_total", "Things.", registry=service.registry)
    served.inc(3)
    router = APIRouter()

    @router.get("/things/{name}")
    def thing(name: str) -> dict[str, str]:
        return {"name": name}

    settings = object()
    app = service.build(settings, title="demo", routers=[router])
    assert app.state.settings is settings
    assert app.state.metrics_registry is service.registry
    client = TestClient(app)
    assert client.get("/things/a").json() == {"name": "a"}
    body = client.get("/metrics").text
    assert "modelberth_demo_things_total 3.0" in body
    assert 'modelberth_demo_requests_total{method="GET",route="/things/{name}",status="2xx"} 1.0' in body


@pytest.mark.parametrize("docs", [True, False])
def test_docs_routes_are_served_only_when_asked(docs: bool) -> None:
    client = TestClient(ServiceBuilder("demo").build(None, title="demo", version="9.9", docs=docs))
    statuses = {path: client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")}
    assert statuses == dict.fromkeys(statuses, 200 if docs else 404)
    if docs:
        assert client.get("/openapi.json").json()["info"] == {"title": "demo", "version": "9.9"}
