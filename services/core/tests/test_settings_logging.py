"""Settings refuse placeholder secrets outside dev; logs are one JSON object per line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from modelberth_core.logging import JsonFormatter, request_id_var
from modelberth_core.settings import EXIT_INVALID_SETTINGS, ServiceSettings, load_settings, state_dir


class DemoSettings(ServiceSettings):
    model_config = ServiceSettings.model_config | {"env_prefix": "DEMO_"}
    api_secret: SecretStr = SecretStr("changeme")


def test_placeholder_secret_is_fine_in_dev_and_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DemoSettings().api_secret.get_secret_value() == "changeme"
    monkeypatch.setenv("DEMO_ENVIRONMENT", "prod")
    with pytest.raises(ValidationError, match="api_secret holds a placeholder secret"):
        DemoSettings()
    monkeypatch.setenv("DEMO_API_SECRET", "a-real-long-random-value")
    assert DemoSettings().environment == "prod"


SECRET = "a-real-long-random-value-0123"


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"DEMO_PORT": SECRET}, "DEMO_PORT: Input should be a valid integer"),
        ({"DEMO_ENVIRONMENT": SECRET}, "DEMO_ENVIRONMENT: Input should be 'dev', 'test' or 'prod'"),
        (  # a model-level check sees every value at once: pydantic's own message would print them all
            {"DEMO_ENVIRONMENT": "prod", "DEMO_API_SECRET": "changeme", "DEMO_HOST": SECRET},
            "DEMO_SETTINGS: Value error, api_secret holds a placeholder secret",
        ),
    ],
)
def test_invalid_settings_stop_the_process_naming_each_variable_and_no_value(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variables: dict[str, str],
    problem: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exited:
        load_settings(DemoSettings, "demo")
    assert exited.value.code == EXIT_INVALID_SETTINGS
    [record] = caplog.records
    assert record.getMessage() == "invalid settings; demo does not start"
    [line] = record.problems  # type: ignore[attr-defined]
    assert line.startswith(problem)
    formatted = JsonFormatter("demo").format(record)
    assert SECRET not in formatted
    assert "changeme" not in formatted


def test_valid_settings_load() -> None:
    assert load_settings(DemoSettings, "demo").port == 8000


def test_secret_is_not_shown_in_repr() -> None:
    assert "changeme" not in repr(DemoSettings())


def test_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELBERTH_STATE_DIR", str(tmp_path))
    assert state_dir() == tmp_path
    monkeypatch.delenv("MODELBERTH_STATE_DIR")
    assert state_dir() == Path(".modelberth")


def test_log_line_is_json_with_extra_fields_and_request_id() -> None:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "hello %s", "args": ("you",)})
    record.route = "/v1/models"
    token = request_id_var.set("rid-1")
    try:
        line = json.loads(JsonFormatter("demo").format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello you"
    assert line["service"] == "demo"
    assert line["request_id"] == "rid-1"
    assert line["route"] == "/v1/models"


def test_log_line_stays_valid_json_for_awkward_values() -> None:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "m"})
    record.ratio = float("nan")  # stdlib json would write NaN, which is not JSON
    record.path = Path("/tmp/x")  # not JSON-serialisable: written as its str
    record.text = "naïve ✓"
    line = JsonFormatter("demo").format(record)
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {line}")) == {
        **json.loads(line),
        "ratio": None,
        "path": "/tmp/x",
        "text": "naïve ✓",
    }
    record.huge = 2**70  # beyond 64 bits: orjson refuses it, the line is still written
    assert json.loads(JsonFormatter("demo").format(record))["huge"] == 2**70


def test_log_timestamps_are_utc_with_milliseconds_across_seconds() -> None:
    formatter = JsonFormatter("demo")
    stamps = []
    for created in (1_700_000_000.125, 1_700_000_000.999, 1_700_000_001.0, 1_699_999_999.5):
        record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "m"})
        record.created, record.msecs = created, (created - int(created)) * 1000
        stamps.append(json.loads(formatter.format(record))["ts"])
    assert stamps == [
        "2023-11-14T22:13:20.125Z",
        "2023-11-14T22:13:20.999Z",
        "2023-11-14T22:13:21.000Z",
        "2023-11-14T22:13:19.500Z",
    ]
