"""The chart's files/ are the one copy of the dashboards and alert rules (issue 16): the dashboard JSON is
exactly what modelberth_monitoring generates, and the PrometheusRule the chart builds carries exactly the
groups of files/alerts/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from modelberth_monitoring import __main__ as generator
from modelberth_monitoring.dashboards import DASHBOARDS, render

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "charts" / "modelberth" / "files"


def test_committed_dashboards_are_what_the_code_generates() -> None:
    """Regenerating gives the same bytes: edit modelberth_monitoring, then `make dashboards`."""
    assert generator.TARGET == FILES / "dashboards"
    assert sorted(p.stem for p in generator.TARGET.glob("*.json")) == sorted(DASHBOARDS)
    assert generator.drift() == []


def test_generation_is_deterministic_and_valid_json() -> None:
    for name in DASHBOARDS:
        text = render(name)
        assert text == render(name)
        assert text.endswith("}\n")
        assert json.loads(text)["uid"] == f"modelberth-{name}"


def test_check_reports_drift(tmp_path: Path) -> None:
    """The check has teeth: a changed, a missing and a stale file are each reported; writing fixes them."""
    generator.write(tmp_path)
    assert generator.drift(tmp_path) == []
    (tmp_path / "overview.json").write_text(render("overview").replace('"reqps"', '"ops"'))
    (tmp_path / "auth.json").unlink()
    (tmp_path / "old.json").write_text("{}")
    problems = generator.drift(tmp_path)
    assert sorted(p.split()[0] for p in problems) == ["differs", "missing", "stale"], problems
    assert generator.main(["--check"]) == 0
    generator.write(tmp_path)
    assert generator.drift(tmp_path) == []
    assert not (tmp_path / "old.json").exists()


def test_prometheus_rule_holds_every_source_group(named_set: Callable[[str], list[dict[str, Any]]]) -> None:
    sources = sorted((FILES / "alerts").glob("*.yaml"))
    assert sources, "charts/modelberth/files/alerts/ has no rule file"
    expected = [g for path in sources for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    (rule,) = [d for d in named_set("monitoring") if d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == expected


def test_no_second_copy_outside_the_chart() -> None:
    """Dashboards and rules live once: nothing under k8s/ duplicates them any more."""
    assert not (REPO / "k8s" / "dashboards").exists()
    assert not (REPO / "k8s" / "alerts").exists()
