"""checkov on the rendered chart (every value set) with no failed check.

checkov pins packaging and python-dateutil below what the workspace locks (adding it to the dev group
would downgrade pytest), so it runs in its own environment through `uvx`, pinned with a constraints
file. Skips: charts/tests/tools/checkov.yaml (global, with reasons) and checkov.io/skip annotations on
single objects; the chart README lists each one with its reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

TOOLS = Path(__file__).resolve().parent / "tools"
CHART = Path(__file__).resolve().parents[1] / "modelberth"
CHECKOV = "checkov==3.3.30"


def _skips() -> set[str]:
    config = yaml.safe_load((TOOLS / "checkov.yaml").read_text(encoding="utf-8"))
    skipped = set(config["skip-check"])
    for template in (CHART / "templates").rglob("*.yaml"):
        skipped |= set(re.findall(r"checkov\.io/skip\d+: (CKV\w+)=", template.read_text(encoding="utf-8")))
    return skipped


def test_checkov_finds_nothing_in_any_rendered_value_set(
    tmp_path: Path, named_set: Callable[[str], list[dict[str, Any]]], value_set_names: list[str]
) -> None:
    uvx = shutil.which("uvx")
    assert uvx, "uvx (from uv) runs checkov in its own environment: install uv"
    for name in value_set_names:
        folder = tmp_path / name
        folder.mkdir()
        for i, doc in enumerate(named_set(name)):
            obj = {k: v for k, v in doc.items() if k != "_template"}
            (folder / f"{i:03d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(obj), encoding="utf-8")
    done = subprocess.run(
        [uvx, "--quiet", "--from", CHECKOV, "--constraints", str(TOOLS / "checkov-constraints.txt"),
         "checkov", "--config-file", str(TOOLS / "checkov.yaml"), "--directory", str(tmp_path),
         "--output", "json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-3000:]
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    (report,) = [r for r in reports if r.get("check_type") == "kubernetes"]
    failed = sorted({(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]})
    assert failed == []
    assert report["summary"]["passed"] > 1000
    assert report["summary"]["parsing_errors"] == 0
    assert done.returncode == 0


def test_every_checkov_skip_is_explained_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    missing = sorted(check for check in _skips() if check not in readme)
    assert missing == []
