"""The gate in front of the Gradio app: one error shape, only the routes the page uses (issue 13, point 11).

Each class of bad request is tried in a loop: event indexes of every wrong type and range, the Gradio
routes the page never calls with every method, URLs that are not UTF-8, bodies that are not JSON, too big
or too deep, and 422s that used to quote the input. Every answer must be a 4xx with a JSON ``{"detail"}``
body that does not contain the marker planted in the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from modelberth_core.contract import ModelCard
from modelberth_ui.app import create_app
from modelberth_ui.gate import MAX_EVENT_BYTES, MAX_EVENT_DEPTH
from modelberth_ui.settings import Settings

# Gradio's queue summarises each event with pandas calls that pandas 3 deprecates, in its event task; the
# strict filter would turn them into exceptions there. Our own pandas code is held to it in test_handlers.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

MARKER = "ECHO-7f3a"
"""Planted in every bad request; no answer may contain it."""
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
UNUSED_ROUTES = [
    f"/gradio_api/call/{MARKER}",
    f"/gradio_api/call/{MARKER}/abc",
    f"/gradio_api/call/v2/{MARKER}",
    "/gradio_api/call/on_login",
    f"/gradio_api/run/{MARKER}",
    "/gradio_api/run/predict",
    f"/gradio_api/api/{MARKER}",
    "/gradio_api/api/predict",
    f"/run/{MARKER}",
    f"/api/{MARKER}",
    "/gradio_api/info",
    "/gradio_api/openapi.json",
    "/gradio_api/component_server",
    "/gradio_api/component_server/",
    "/gradio_api/startup-events",
    "/gradio_api/reset",
    "/gradio_api/cancel",
    f"/gradio_api/deep_link?session_hash={MARKER}",
    "/gradio_api/runs",
    "/gradio_api/run-history/records",
    "/login",
    "/logout",
    "/gradio_api/user",
    "/gradio_api/token",
    "/gradio_api/app_id",
    "/gradio_api/login_check",
    f"/gradio_api/proxy=http://127.0.0.1:9/{MARKER}",
    f"/gradio_api/file/{MARKER}",
    f"/gradio_api/stream/{MARKER}/close",
    f"/gradio_api/stream/{MARKER}/1/2/playlist.m3u8",
    "/gradio_api/dev/reload",
    "/gradio_api/mcp/sse",
    "/monitoring",
    "/svelte/index.js",
    "/pwa_icon",
    "/robots.txt",
    f"/{MARKER}",
]
"""Gradio routes (and a few guesses) the page never calls: all must be unreachable."""


@pytest.fixture(scope="module")
def ui(
    tmp_path_factory: pytest.TempPathFactory, fake_factory: Any, mixed_card: ModelCard
) -> Iterator[TestClient]:
    """The UI app in process, talking to the fake auth and inference; one for the module (a build is ~1 s)."""
    tmp_path = tmp_path_factory.mktemp("gate")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))

        async def build() -> Any:
            return create_app(Settings(temp_dir=tmp_path / "ui"), client=fake_factory(mixed_card).client())

        with TestClient(asyncio.run(build()), raise_server_exceptions=False) as client:
            yield client


def assert_clean_error(response: httpx.Response, *statuses: int) -> None:
    """A 4xx (one of ``statuses`` when given), JSON ``{"detail": ...}``, and no trace of the input."""
    request = f"{response.request.method} {response.request.url}"
    assert 400 <= response.status_code < 500, f"{request} -> {response.status_code} {response.text[:200]}"
    if statuses:
        assert response.status_code in statuses, f"{request} -> {response.status_code}"
    assert response.headers["content-type"] == "application/json", request
    if response.request.method == "HEAD":
        return
    body = response.json()
    assert list(body) == ["detail"], request
    assert MARKER not in response.text, request


def _join(ui: TestClient, raw: str | bytes, content_type: str = "application/json") -> httpx.Response:
    return ui.post("/gradio_api/queue/join", content=raw, headers={"content-type": content_type})


def _event(**fields: Any) -> dict[str, Any]:
    return {"data": [], "event_data": None, "fn_index": 9, "trigger_id": None, "session_hash": "s1", **fields}


# --- event indexes and names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn_index",
    ["NaN", "Infinity", "-Infinity", "-1", "999", "18446744073709551616", "1.5", "1e2", "true", "false",
     "null", f'"{MARKER}"', '"0"', "[]", "{}", "-0.0"],
)  # fmt: skip
def test_every_bad_event_index_is_a_clean_4xx(ui: TestClient, fn_index: str) -> None:
    body = json.dumps(_event(data=[MARKER])).replace('"fn_index": 9', f'"fn_index": {fn_index}')
    assert_clean_error(_join(ui, body), 400, 422)


@pytest.mark.parametrize(
    "fields",
    [
        {"api_name": MARKER},
        {"api_name": "on_login", "fn_index": None},
        {"api_name": f"/{MARKER}"},
        {"event_id": MARKER},
        {"oauth_token": MARKER},
        {"batched": True},
        {"simple_format": True},
        {"session_hash": f"{MARKER}/../x"},
        {"session_hash": ""},
        {"session_hash": "s" * 65},
        {"session_hash": None},
        {"data": MARKER},
        {"data": {"x": MARKER}},
        {"data": [None] * 1001},
        {"trigger_id": MARKER},
        {"trigger_id": 1.5},
    ],
)
def test_unknown_names_and_malformed_fields_are_a_clean_4xx(ui: TestClient, fields: dict[str, Any]) -> None:
    assert_clean_error(_join(ui, json.dumps(_event(**fields))), 422)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("route", UNUSED_ROUTES)
def test_routes_the_page_never_calls_are_gone(ui: TestClient, route: str, method: str) -> None:
    body = {"data": [MARKER], "component_id": 99999, "fn_name": MARKER, "session_hash": "s1"}
    response = ui.request(method, route, json=body)
    assert_clean_error(response, 404, 405)


@pytest.mark.parametrize("component_id", [-1, 0, 5, 99999, MARKER, None])
def test_component_server_is_gone_for_every_component_id(ui: TestClient, component_id: Any) -> None:
    body = {"data": MARKER, "component_id": component_id, "fn_name": "x", "session_hash": "s1"}
    for route in ("/gradio_api/component_server", "/gradio_api/component_server/"):
        assert_clean_error(ui.post(route, json=body), 404)


# --- URLs -----------------------------------------------------------------------------------------

BAD_UTF8 = ["%ff", "%fe%ff", "%c3%28", "%e2%82", "%ed%a0%80", "%f8%88%80%80%80", "%c0%af", "a%80b"]
"""Byte sequences that are not UTF-8: stray, truncated, surrogate, overlong."""
USED_ROUTES = [
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/assets/x.js"),
    ("GET", "/theme.css"),
    ("GET", "/gradio_api/queue/data?session_hash=s1"),
    ("GET", "/gradio_api/heartbeat/s1"),
    ("POST", "/gradio_api/upload"),
    ("GET", "/gradio_api/upload_progress?upload_id=u1"),
    ("GET", "/gradio_api/file=/tmp/x.csv"),
    ("POST", "/gradio_api/queue/join"),
]


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize(("method", "route"), USED_ROUTES)
def test_urls_that_are_not_utf8_are_a_400(ui: TestClient, method: str, route: str, bad: str) -> None:
    joiner = "&" if "?" in route else "?"
    for url in (f"{route}{joiner}page={bad}", f"{route}{joiner}{bad}={MARKER}", f"{route}{joiner}q={bad}"):
        assert_clean_error(ui.request(method, url), 400)
    if route == "/":
        assert_clean_error(ui.request(method, f"/{bad}"), 400)


@pytest.mark.parametrize("query", ["page=x", f"page={MARKER}", "deep_link=abc", "page=&deep_link=x"])
def test_the_page_has_no_other_pages_or_deep_links(ui: TestClient, query: str) -> None:
    for route in ("/", "/config"):
        assert_clean_error(ui.get(f"{route}?{query}"), 400)
    assert ui.get("/?__theme=light").status_code == 200  # a setting the page's own script reads
    assert ui.get("/config").json()["dependencies"]


@pytest.mark.parametrize(
    "url",
    [
        "/gradio_api/queue/data",
        f"/gradio_api/queue/data?session_hash={MARKER}/x",
        "/gradio_api/upload_progress",
        f"/gradio_api/upload_progress?upload_id={MARKER}!",
        f"/gradio_api/heartbeat/{MARKER}!",
        f"/gradio_api/file=/etc/{MARKER}/passwd",
        f"/gradio_api/file={MARKER}",
        "/gradio_api/file=/etc/passwd",
    ],
)
def test_answers_that_used_to_quote_the_input_do_not(ui: TestClient, url: str) -> None:
    response = ui.get(url)
    assert_clean_error(response)
    assert "/etc/passwd" not in response.text


def test_an_upload_gradio_refuses_keeps_the_error_shape(ui: TestClient) -> None:
    # Gradio answers these itself (plain text); the gate reshapes the answer.
    assert_clean_error(
        ui.post("/gradio_api/upload", content=MARKER, headers={"content-type": "text/plain"}), 400
    )
    assert_clean_error(
        ui.post(f"/gradio_api/upload?upload_id={MARKER}!", files={"files": ("a.csv", b"x")}), 422
    )


# --- bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        f'{{"data": ["{MARKER}"'.encode(),
        b'{"data": ["\xff\xfe"], "fn_index": 9, "session_hash": "s1"}',
        b'{"data": ["\xed\xa0\x80"], "fn_index": 9, "session_hash": "s1"}',
        b'{"data": ["\\ud800"], "fn_index": 9, "session_hash": "s1"}',
        b'{"data": [{"\\udfff": 1}], "fn_index": 9, "session_hash": "s1"}',
        b'{"data": [NaN], "fn_index": 9, "session_hash": "s1"}',
        b'{"data": [1e400], "fn_index": 9, "session_hash": "s1"}',
        f'["{MARKER}"]'.encode(),
        f'"{MARKER}"'.encode(),
        b"null",
    ],
)
def test_bodies_that_are_not_an_event_are_a_clean_4xx(ui: TestClient, raw: bytes) -> None:
    assert_clean_error(_join(ui, raw), 400, 422)


@pytest.mark.parametrize("depth", [MAX_EVENT_DEPTH + 1, 1000, 20_000])
def test_deeply_nested_events_are_a_400(ui: TestClient, depth: int) -> None:
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        body = json.dumps(_event()).replace('"data": []', f'"data": [{nested}]')
        assert_clean_error(_join(ui, body), 400)


def test_a_huge_event_is_a_413_before_it_is_read(ui: TestClient) -> None:
    body = json.dumps(_event(data=["x" * MAX_EVENT_BYTES]))
    assert_clean_error(_join(ui, body), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_an_event_that_is_not_declared_json_is_a_415(ui: TestClient, content_type: str) -> None:
    assert_clean_error(_join(ui, json.dumps(_event()), content_type), 415)


def test_a_well_formed_event_still_reaches_gradio(ui: TestClient, gradio_http: Any) -> None:
    page = gradio_http(ui)
    select = page.fn_index("constant")
    response = page.join("s1", select, [])
    assert response.status_code == 200
    assert set(response.json()) == {"event_id"}
    assert page.messages("s1")[-1]["msg"] == "close_stream"  # the event ran to its end


def test_an_event_stream_for_an_unknown_session_ends_cleanly(
    ui: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Gradio ends this stream by raising: it must be closed properly, and is no error worth a log line.
    caplog.set_level(logging.ERROR)
    response = ui.get("/gradio_api/queue/data", params={"session_hash": "never-joined"})
    assert response.status_code == 200
    assert '"session_not_found":true' in response.text
    assert [r for r in caplog.records if r.name.startswith("modelberth") and r.levelno >= logging.ERROR] == []


def test_refused_requests_do_not_grow_the_metric_labels(ui: TestClient) -> None:
    for i in range(20):
        ui.get(f"/{MARKER}/{i}")
        ui.post(f"/gradio_api/call/{MARKER}{i}")
    metrics = ui.get("/metrics").text
    assert MARKER not in metrics
    assert 'route="unmatched"' in metrics
