"""The load test's payloads and gate, in-process (the locustfile itself needs gevent, so it runs in the
integration test as a real Locust process)."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from modelberth_core.contract import read_card, resolve_latest


def _load_workload() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "workload.py"
    spec = importlib.util.spec_from_file_location("modelberth_loadtest_workload", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


workload = _load_workload()

CARD_FEATURES = [
    {"name": "age", "type": "numeric", "required": True, "min": 18, "max": 90, "example": 40},
    {"name": "plan", "type": "categorical", "required": True, "categories": ["basic", "pro"]},
    {"name": "note", "type": "text", "required": False, "max_length": 30, "example": "hello"},
]


def test_random_rows_stay_inside_the_cards_ranges_and_categories() -> None:
    features = workload.features_from_metadata({"features": CARD_FEATURES})
    rng = random.Random(1)
    rows = [workload.random_row(features, rng) for _ in range(500)]
    assert all(set(row) == {"age", "plan", "note"} for row in rows)
    assert all(18 <= row["age"] <= 90 for row in rows)
    assert {row["plan"] for row in rows} == {"basic", "pro"}
    assert all(0 < len(row["note"]) <= 30 for row in rows)


def test_rows_for_a_real_card(tiny_model_dir: Path) -> None:
    card = read_card(tiny_model_dir / "iris" / str(resolve_latest(tiny_model_dir, "iris")))
    features = workload.features_from_metadata(json.loads(card.model_dump_json()))
    row = workload.random_row(features, random.Random(0))
    for spec in card.features:
        assert spec.min is not None
        assert spec.max is not None
        assert spec.min <= row[spec.name] <= spec.max


def test_invalid_payloads_break_the_contract_in_different_ways() -> None:
    features = workload.features_from_metadata({"features": CARD_FEATURES})
    payloads = dict(workload.invalid_payloads(features))
    assert set(payloads) == {
        "missing feature",
        "unknown feature",
        "instances not a list",
        "text for a number",
        "boolean for a number",
    }
    assert "age" not in json.loads(payloads["missing feature"])["instances"][0]
    assert json.loads(payloads["text for a number"])["instances"][0]["age"] == "abc"
    assert json.loads(payloads["boolean for a number"])["instances"][0]["age"] is True


def test_metadata_shapes() -> None:
    assert workload.model_names({"models": [{"name": "iris"}, {"name": "churn"}]}) == ["iris", "churn"]
    assert workload.model_names(["a"]) == ["a"]
    assert workload.example_count({"index": 0, "count": 10}) == 10
    assert workload.example_count({}) == 1
    with pytest.raises(ValueError, match="features"):
        workload.features_from_metadata({"name": "x"})


def test_gate() -> None:
    assert workload.gate(100, 0, 120, 0.0, 200) == []
    assert workload.gate(100, 1, 120, 0.0, 200) == ["failure ratio 1.00% > 0.00% (1/100)"]
    assert workload.gate(100, 0, 250, 0.0, 200) == ["p95 250 ms > 200 ms"]
    assert workload.gate(0, 0, 0, 0.0, 200) == ["no requests were made"]


def test_client_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELBERTH_STATE_DIR", str(tmp_path))
    path = workload.default_client_file()
    assert path == tmp_path / "loadtest-client.json"
    assert workload.read_client_file(path) is None
    path.write_text(json.dumps({"client_id": "c", "client_secret": "s"}))
    assert workload.read_client_file(path) == ("c", "s")
