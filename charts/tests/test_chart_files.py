"""The chart's copies of the dashboards and alert rules equal their sources in k8s/ (`make chart-files`),
and the PrometheusRule the chart builds carries exactly the source groups."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sync-chart-files.py"


def test_chart_copies_match_k8s_sources() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_sync_check_reports_drift(tmp_path: Path) -> None:
    """The check has teeth: a changed, a missing and a stale copy are each reported."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("sync_chart_files", SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    (source / "a.json").write_text('{"title": "a"}')
    (source / "b.json").write_text('{"title": "b"}')
    module.sync(source, "*.json", target)
    assert module.drift(source, "*.json", target) == []
    (source / "a.json").write_text('{"title": "a2"}')
    (source / "b.json").unlink()
    (source / "c.json").write_text("{}")
    problems = module.drift(source, "*.json", target)
    assert [p.split()[0] for p in problems] == ["missing", "stale", "differs"]
    module.sync(source, "*.json", target)
    assert sorted(p.name for p in target.iterdir()) == ["a.json", "c.json"]


def test_prometheus_rule_holds_every_source_group(named_set: Callable[[str], list[dict[str, Any]]]) -> None:
    sources = sorted((REPO / "k8s" / "alerts").glob("*.yaml"))
    assert sources, "k8s/alerts/ has no rule file"
    expected = [g for path in sources for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    (rule,) = [d for d in named_set("monitoring") if d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == expected
