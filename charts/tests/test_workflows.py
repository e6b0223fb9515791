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


def test_e2e_runs_the_registry_store_the_way_kind_documents_it() -> None:
    (job,) = _load("e2e")["jobs"].values()
    runs = [str(step.get("run", "")) + str(step.get("with", "")) for step in job["steps"]]
    text = "\n".join(runs)

    def first(needle: str) -> int:
        return next(i for i, run in enumerate(runs) if needle in run)

    # The registry container exists before the cluster; containerd learns localhost:5001 -> kind-registry:5000
    # once the nodes exist; then the registry joins the kind network (pods reach kind-registry:5000).
    assert first("--name kind-registry registry:2") < first("k8s/kind.yaml") < first("hosts.toml")
    assert "127.0.0.1:5001:5000" in text
    assert '[host."http://kind-registry:5000"]' in text
    assert first("hosts.toml") == first("docker network connect kind kind-registry")
    assert "kubectl apply -f k8s/local-registry-hosting.yaml" in text
    install = first("-f k8s/values-kind-registry.yaml")
    assert "--wait-for-jobs" in runs[install]
    assert "networkPolicy.egress.registry.cidrs" in runs[install]
    assert install < first("pytest -m e2e k8s/e2e/test_registry_store.py")
    assert "trainer" in runs[first("kind load docker-image")]
    kind = yaml.safe_load((REPO / "k8s" / "kind.yaml").read_text(encoding="utf-8"))
    assert 'config_path = "/etc/containerd/certs.d"' in kind["containerdConfigPatches"][0]


def test_the_kind_registry_values_render_a_valid_release() -> None:
    import helm_python
    import kubernetes_validate

    values: dict[str, Any] = {}
    for name in ("values-kind.yaml", "values-kind-registry.yaml"):
        layer = yaml.safe_load((REPO / "k8s" / name).read_text(encoding="utf-8"))
        values = _merge(values, layer)
    values = _merge(values, {"networkPolicy": {"egress": {"registry": {"cidrs": ["172.18.0.3/32"]}}}})
    chart = helm_python.Chart.load(REPO / "charts" / "modelberth")
    chart.validate_schema(values)
    rendered = chart.render(values, name="mbreg", namespace="modelberth-registry", is_install=True)
    docs = [
        d
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]
    kinds = {d["kind"] for d in docs}
    assert {"Job", "CronJob"} <= kinds
    assert "PersistentVolumeClaim" not in kinds
    for doc in docs:
        if doc["kind"] not in ("ServiceMonitor", "PrometheusRule"):
            kubernetes_validate.validate(doc, "1.33.0", strict=True)
    job = next(d for d in docs if d["kind"] == "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--store") + 1] == "oci://kind-registry:5000/mb"


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def test_release_pushes_images_with_the_model_image_and_the_chart_as_oci() -> None:
    workflow = _load("release")
    assert workflow["on"] == {"push": {"tags": ["v*.*.*"]}}
    text = FILES["release"].read_text(encoding="utf-8")
    for needle in ("docker/login-action@", "registry: ghcr.io", "docker push", "modelberth-model-iris",
                   "helm package", "helm push", "oci://"):  # fmt: skip
        assert needle in text, needle
