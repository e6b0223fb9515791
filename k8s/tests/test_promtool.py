"""promtool, which ships with Debian's prometheus package, accepts the alert rules and their unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALERT_FILES = sorted((REPO / "charts" / "modelberth" / "files" / "alerts").glob("*.yaml"))

pytestmark = pytest.mark.integration


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make install-system` (Debian package prometheus)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False, timeout=120)


def test_promtool_check_rules_accepts_every_alert_file() -> None:
    assert ALERT_FILES
    result = _promtool("check", "rules", *map(str, ALERT_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_when_they_should() -> None:
    """Synthetic series in k8s/tests/alerts-test.yaml: drift fires after 15 min and not before, etc."""
    result = _promtool("test", "rules", str(REPO / "k8s" / "tests" / "alerts-test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check has teeth: a typo in PromQL fails it."""
    broken = tmp_path / "broken.yaml"
    rule = "      - alert: X\n        expr: sum(rate(x[5m]) > 1\n"
    broken.write_text("groups:\n  - name: x\n    rules:\n" + rule)
    assert _promtool("check", "rules", str(broken)).returncode != 0
