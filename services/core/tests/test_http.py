"""Core HTTP plumbing every service shares: error shape, request metrics, request ids, /metrics."""

from __future__ import annotations

import math

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, StrictFloat

from modelberth_core.errors import ServiceError
from modelberth_core.metrics import HttpMetrics
from modelberth_core.service import ServiceBuilder


class Point(BaseModel):
    x: StrictFloat = Field(allow_inf_nan=False)


def make_app() -> tuple[FastAPI, HttpMetrics]:
    """An app on the services' one skeleton (auth, inference and ui are built the same way)."""
    service = ServiceBuilder("demo")
    app = service.build(None, title="demo")

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise ServiceError(409, "item 0 is reserved")
        if item_id == 13:
            raise RuntimeError("boom")
        return {"id": item_id}

    @app.post("/points")
    def point(body: Point) -> dict[str, float]:
        return {"x": body.x}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app, service.http_metrics


def sample(metrics: HttpMetrics, route: str, status: str) -> float:
    value = metrics.requests.labels(route, "GET", status)._value.get()
    return float(value)


def test_service_error_has_the_one_error_shape() -> None:
    app, _ = make_app()
    response = TestClient(app).get("/items/0")
    assert response.status_code == 409
    assert response.json() == {"detail": "item 0 is reserved"}


def test_validation_error_names_the_field_without_echoing_the_value() -> None:
    app, _ = make_app()
    client = TestClient(app)
    for raw in (b'{"x": NaN}', b'{"x": 1e400}', b'{"x": false}', b'{"x": "1.5"}', b"{}"):
        response = client.post("/points", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, raw
        detail = response.json()["detail"]
        assert detail
        assert all("input" not in err and "ctx" not in err for err in detail)
    response = client.post("/points", content=b'{"x": true}', headers={"content-type": "application/json"})
    assert response.json()["detail"][0]["loc"] == ["body", "x"]


def test_unexpected_error_is_a_json_500_without_internals() -> None:
    app, _ = make_app()
    response = TestClient(app, raise_server_exceptions=False).get("/items/13")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}


def test_request_metrics_use_the_route_template_and_skip_probes() -> None:
    app, metrics = make_app()
    client = TestClient(app)
    assert sample(metrics, "/items/{item_id}", "2xx") == 0
    for item_id in (1, 2, 3):
        assert client.get(f"/items/{item_id}").status_code == 200
    client.get("/healthz")
    client.get("/no/such/path")
    assert sample(metrics, "/items/{item_id}", "2xx") == 3
    assert sample(metrics, "unmatched", "4xx") == 1
    assert sample(metrics, "/healthz", "2xx") == 0
    body = client.get("/metrics").text
    assert 'modelberth_demo_requests_total{method="GET",route="/items/{item_id}",status="2xx"} 3.0' in body
    assert "process_cpu_seconds_total" in body
    assert 'route="/metrics"' not in body


def test_request_id_is_returned_and_a_callers_id_is_kept_only_if_sane() -> None:
    app, _ = make_app()
    client = TestClient(app)
    generated = [client.get("/items/1").headers["x-request-id"] for _ in range(50)]
    assert len(set(generated)) == 50
    assert all(len(rid) == 32 and set(rid) <= set("0123456789abcdef") for rid in generated)
    assert client.get("/items/1", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    forged = client.get("/items/1", headers={"x-request-id": "x" * 200}).headers["x-request-id"]
    assert forged != "x" * 200


def test_two_apps_in_one_process_do_not_share_metrics() -> None:
    first, first_metrics = make_app()
    _, second_metrics = make_app()
    TestClient(first).get("/items/1")
    assert sample(first_metrics, "/items/{item_id}", "2xx") == 1
    assert sample(second_metrics, "/items/{item_id}", "2xx") == 0
    assert not math.isnan(sample(second_metrics, "/items/{item_id}", "2xx"))


ODD_METHODS = [
    "PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "PURGE", "LINK", "UNLINK", "BREW",
    "WHEN", "FOO", "get", "Post", "X" * 40, "M-SEARCH", "NOTIFY", "SUBSCRIBE", "REPORT", "CHECKOUT",
    *(f"VERB{i}" for i in range(60)),
]  # fmt: skip
"""Methods uvicorn parses and passes on (any RFC 9110 token): WebDAV, cache purges, case variants, noise."""


def test_method_label_is_bounded_whatever_verbs_arrive() -> None:
    app, metrics = make_app()
    client = TestClient(app)
    paths = ["/items/1", "/points", "/no/such/path"]
    for method in ODD_METHODS:
        for path in paths:
            assert client.request(method, path).status_code < 500, method
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"):
        client.request(method, "/items/1")
    series = [
        sample.labels
        for family in metrics.requests.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    methods = {labels["method"] for labels in series}
    standard = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
    assert methods <= standard | {"other"}
    assert "other" in methods
    # Unknown verbs add at most one series per route and status class, never one per verb.
    others = [labels for labels in series if labels["method"] == "other"]
    assert len(others) == len({(labels["route"], labels["status"]) for labels in others}) <= 2 * len(paths)
    histogram_methods = {
        sample.labels["method"] for family in metrics.duration.collect() for sample in family.samples
    }
    assert histogram_methods <= methods
