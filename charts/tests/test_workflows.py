"""The GitHub workflows: actionlint and zizmor find nothing, and they have the jobs and hardening the
project requires (read-only token, actions pinned by SHA with a version comment, no persisted checkout
credentials, a timeout on every job, one aggregate job in CI)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
FILES = {name: WORKFLOWS / f"{name}.yml" for name in ("ci", "e2e", "release")}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(FILES[name].read_text(encoding="utf-8"))
    # PyYAML reads the key `on` as True (YAML 1.1).
    data["on"] = data.pop(True, data.get("on"))
    return data


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: `uv sync` installs it from the dev group"
    return found


def test_actionlint_finds_nothing() -> None:
    done = subprocess.run(
        [_tool("actionlint"), "-no-color", *map(str, FILES.values())],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_finds_nothing(persona: str) -> None:
    done = subprocess.run(
        [_tool("zizmor"), "--offline", f"--persona={persona}", "--no-progress", str(WORKFLOWS)],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout


@pytest.mark.parametrize("name", sorted(FILES))
def test_hardening(name: str) -> None:
    workflow = _load(name)
    assert workflow["permissions"] == {"contents": "read"}
    for job_name, job in workflow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"{name}/{job_name} has no timeout-minutes"
        for permission, level in job.get("permissions", {}).items():
            assert level in ("read", "none") or (name == "release" and permission == "packages"), job_name
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, f"{name}/{job_name}"
    for line in FILES[name].read_text(encoding="utf-8").splitlines():
        match = USES.match(line)
        if match:
            ref, comment = match.groups()
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"not pinned by SHA: {ref}"
            assert re.search(r"#\s*v\d+(\.\d+)*", comment), f"no version comment: {line.strip()}"


def test_ci_runs_lint_tests_and_chart_then_one_aggregate_job() -> None:
    jobs = _load("ci")["jobs"]
    assert {"lint", "test", "chart", "ci"} <= set(jobs)
    runs = {name: " ".join(str(s.get("run", "")) for s in job.get("steps", [])) for name, job in jobs.items()}
    assert "make lint" in runs["lint"]
    assert "make test" in runs["test"]
    assert "make chart-test" in runs["chart"]
    assert "helm lint" in runs["chart"]
    aggregate = jobs["ci"]
    assert aggregate["if"] == "always()"
    assert sorted(aggregate["needs"]) == sorted(set(jobs) - {"ci"})
    assert _load("ci")["on"]["pull_request"] is None or "pull_request" in _load("ci")["on"]


def test_e2e_installs_on_kind_tests_and_load_tests() -> None:
    (job,) = _load("e2e")["jobs"].values()
    text = FILES["e2e"].read_text(encoding="utf-8")
    uses = " ".join(str(s.get("uses", "")) for s in job["steps"])
    assert "helm/kind-action@" in uses
    assert "config: k8s/kind.yaml" in text
    for needle in (
        "ingress-nginx",
        "kube-prometheus-stack",
        "-f k8s/monitoring-values.yaml",
        "make images",
        "make -s model-image",
        "kind load docker-image",
        "-f k8s/values-kind.yaml",
        "--wait",
        "helm test",
        "pytest -m e2e k8s/e2e",
        'make loadtest HOST="$BASE_URL"',
        "BASE_URL: http://modelberth.local",
        # Issue 18: the plain Valkey goes in before the chart, whose kind values run two auth replicas on it.
        'scripts/kind-state-store.sh "$NAMESPACE"',
        '[ "$ready" = "2" ]',
    ):
        assert needle in text, needle
    assert text.index("scripts/kind-state-store.sh") < text.index("-f k8s/values-kind.yaml")
    failure_steps = [s for s in job["steps"] if s.get("if") == "failure()"]
    assert any("kubectl" in str(s.get("run", "")) and "logs" in str(s.get("run", "")) for s in failure_steps)
    assert any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in failure_steps)


def test_release_pushes_images_with_the_model_image_and_the_chart_as_oci() -> None:
    workflow = _load("release")
    assert workflow["on"] == {"push": {"tags": ["v*.*.*"]}}
    text = FILES["release"].read_text(encoding="utf-8")
    for needle in ("docker/login-action@", "registry: ghcr.io", "docker push", "modelberth-model-iris",
                   "helm package", "helm push", "oci://"):  # fmt: skip
        assert needle in text, needle
