"""Smoke tests of the app factory: the UI builds, the probes answer and the metrics are served."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from modelberth_core.contract import ModelCard
from modelberth_ui.app import create_app
from modelberth_ui.settings import Settings


@pytest.fixture
def app_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``app_factory(fake)`` -> the UI app talking to ``fake`` through MockTransport."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))

    async def build(fake: Any) -> Any:
        # Inside a running loop, like uvicorn calls the factory: gradio then binds its locks to that
        # loop instead of creating (and leaking) one of its own.
        return create_app(Settings(temp_dir=tmp_path / "ui"), client=fake.client())

    def make(fake: Any) -> Any:
        return asyncio.run(build(fake))

    return make


def test_invalid_settings_stop_the_ui_without_a_traceback_or_a_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, pydantic's error went out as a traceback whose input_value held every UI_* value.
    secret = "not-a-placeholder-0123456789"
    monkeypatch.setenv("UI_ENVIRONMENT", "prod")
    monkeypatch.setenv("UI_CLIENT_SECRET", "changeme")
    monkeypatch.setenv("UI_CLIENT_ID", secret)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exited:
        create_app()
    assert exited.value.code == 2
    [record] = caplog.records
    assert record.getMessage() == "invalid settings; ui does not start"
    assert record.problems == [  # type: ignore[attr-defined]
        "UI_SETTINGS: Value error, client_secret holds a placeholder secret; set a real one outside "
        "environment=dev"
    ]
    assert secret not in str(record.__dict__)


def test_the_ui_builds_and_the_probes_answer(
    app_factory: Any, fake_factory: Any, mixed_card: ModelCard
) -> None:
    fake = fake_factory(mixed_card)
    app = app_factory(fake)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["dependencies"] == {"auth": "ready", "inference": "ready"}
        fake.ready = False
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["detail"] == "waiting for auth: HTTP 503, inference: HTTP 503"
        page = client.get("/")
        assert page.status_code == 200
        # Offline: the page names no font or script host.
        for host in ("fonts.googleapis.com", "fonts.gstatic.com", "cdn.jsdelivr.net", "unpkg.com"):
            assert host not in page.text
        metrics = client.get("/metrics").text
    assert 'modelberth_ui_requests_total{method="GET",route="/",status="2xx"} 1.0' in metrics
    assert "modelberth_ui_request_duration_seconds_bucket" in metrics
    # Counters with labels appear once something happened; probes are not counted as requests.
    assert "modelberth_ui_logins_total{" not in metrics
    assert 'route="/healthz"' not in metrics


def test_settings_come_from_ui_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UI_AUTH_URL", "http://auth:8001")
    monkeypatch.setenv("UI_INFERENCE_URL", "http://inference:8002")
    monkeypatch.setenv("UI_MAX_UPLOAD_BYTES", "1024")
    settings = Settings()
    assert (settings.auth_url, settings.inference_url, settings.max_upload_bytes) == (
        "http://auth:8001",
        "http://inference:8002",
        1024,
    )
    assert settings.port == 8003


# Gradio's queue summarises each event with pandas calls pandas 3 deprecates, in its event task.
@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
def test_a_login_through_the_page_forwards_the_browser_address(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_factory: Any,
    mixed_card: ModelCard,
    gradio_http: Any,
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    fake = fake_factory(mixed_card)
    secret = SecretStr("ui-client-secret-0123456789")
    settings = Settings(temp_dir=tmp_path / "ui", client_secret=secret)

    async def build() -> Any:
        return create_app(settings, client=fake.client(client_secret=secret))

    with TestClient(asyncio.run(build())) as client:
        done = gradio_http(client).run("s1", "on_login", [None, "alice", "correct horse"])
    assert done["success"] is True
    login = next(r for r in fake.requests if r.url.path == "/auth/login")
    # TestClient's peer address: what uvicorn would report as the browser's (or its trusted proxy's).
    assert login.headers["x-modelberth-user-address"] == "testclient"
    assert login.headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize("secret", [None, "ui-client-secret-0123456789"])
def test_a_ui_without_client_secret_warns_once_at_startup(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fake_factory: Any,
    mixed_card: ModelCard,
    secret: str | None,
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    settings = Settings(temp_dir=tmp_path / "ui", client_secret=secret)
    caplog.set_level(logging.WARNING, logger="modelberth.ui")

    async def build() -> Any:
        return create_app(settings, client=fake_factory(mixed_card).client())

    asyncio.run(build())
    warnings = [r for r in caplog.records if r.name == "modelberth.ui" and r.levelno == logging.WARNING]
    assert len(warnings) == (1 if secret is None else 0)
    if secret is not None:
        assert secret not in caplog.text


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
def test_logging_out_or_in_as_someone_new_clears_the_uploaded_file(
    app_factory: Any, fake_factory: Any, mixed_card: ModelCard, gradio_http: Any
) -> None:
    # The file the last person uploaded in this browser must not be offered to the next one.
    with TestClient(app_factory(fake_factory(mixed_card))) as client:
        page = gradio_http(client)
        upload = next(c["id"] for c in page.config["components"] if c["props"].get("elem_id") == "mb-upload")
        for name, data in (("on_login", [None, "alice", "correct horse"]), ("on_logout", [None])):
            done = page.run("s1", name, data)
            outputs = next(d["outputs"] for d in page.config["dependencies"] if d["api_name"] == name)
            assert done["output"]["data"][outputs.index(upload)] is None


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # gradio's queue summary, not ours
def test_the_versions_tab_loads_through_the_gate(
    app_factory: Any, fake_factory: Any, mixed_card: ModelCard, gradio_http: Any
) -> None:
    # The tab's event is one the page calls, so the gate lets it through; it reads the versions listing.
    listing = {
        "name": "loans",
        "aliases": {"champion": mixed_card.version, "latest": mixed_card.version},
        "versions": [{"version": mixed_card.version, "metric": "roc_auc", "score": 0.82}],
        "shadow": {"enabled": False, "status": "off"},
    }
    move = {
        "model": "loans",
        "alias": "champion",
        "from_version": None,
        "to_version": mixed_card.version,
        "actor": "ci-bot",
        "at": "2026-11-22T12:00:00Z",
        "reason": "promote",
        "digest": None,
        "detail": None,
    }
    history = {"model": "loans", "total": 1, "events": [move]}  # fmt: skip
    fake = fake_factory(mixed_card, versions={"loans": listing}, history={"loans": history})
    with TestClient(app_factory(fake)) as client:
        page = gradio_http(client)
        page.run("s1", "on_login", [None, "alice", "correct horse"])
        done = page.run("s1", "on_versions_tab", [None, None])
    outputs = next(d["outputs"] for d in page.config["dependencies"] if d["api_name"] == "on_versions_tab")
    by_id = dict(zip(outputs, done["output"]["data"], strict=True))
    ids = {c["props"].get("elem_id"): c["id"] for c in page.config["components"]}
    table = by_id[ids["mb-versions-table"]]
    assert table["value"]["data"] == [[mixed_card.version, "", "roc_auc", 0.82, "champion, latest"]]
    assert by_id[ids["mb-versions-shadow"]] == "Shadow traffic: off for this model."
    moves = by_id[ids["mb-versions-history"]]
    assert moves["value"]["data"] == [
        ["2026-11-22 12:00:00", "champion", f"(none) → {mixed_card.version}", "ci-bot", "promote"]
    ]
    assert moves["visible"] is True
    assert by_id[ids["mb-challenger-note"]] == "This model has no challenger."
    assert ("GET", "/v1/models/loans/versions") in [(r.method, r.url.path) for r in fake.requests]
