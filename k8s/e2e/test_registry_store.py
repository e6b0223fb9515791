"""The registry store on a real cluster (issue 15), after the e2e workflow has

1. started kind's documented local registry (a ``registry:2`` container ``kind-registry`` on the kind
   network: ``localhost:5001`` for the host and the nodes' containerd, ``kind-registry:5000`` over plain
   HTTP for pods),
2. installed a second release with ``k8s/values-kind-registry.yaml``, whose install Job trained iris in the
   cluster and pushed it, and whose inference follows ``champion`` from the registry (no PVC, no model image).

Here: the pushed version is in the registry with ``champion``; the node's containerd pulls that model image
from ``localhost:5001`` and runs its copier (a real, runnable image); a second training Job (made from the
CronJob) is promoted and the same inference pod answers with the new version without a restart.

Environment (set by the workflow): E2E_REGISTRY_BASE_URL (the release's ingress host), E2E_REGISTRY_NAMESPACE,
E2E_REGISTRY_RELEASE, E2E_REGISTRY_USERNAME / E2E_REGISTRY_PASSWORD (its bootstrap user), E2E_REGISTRY_URL
(the registry from the host, http://localhost:5001), E2E_REGISTRY_REPOSITORY (mb/iris).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

BASE_URL = os.environ.get("E2E_REGISTRY_BASE_URL", "http://modelberth-registry.local").rstrip("/")
NAMESPACE = os.environ.get("E2E_REGISTRY_NAMESPACE", "modelberth-registry")
RELEASE = os.environ.get("E2E_REGISTRY_RELEASE", "mbreg")
REGISTRY = os.environ.get("E2E_REGISTRY_URL", "http://localhost:5001").rstrip("/")
REPOSITORY = os.environ.get("E2E_REGISTRY_REPOSITORY", "mb/iris")
POLL_SECONDS = 5
"""inference.pollSeconds in k8s/values-kind-registry.yaml."""


def kubectl(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    assert value, f"{name} is not set: the e2e workflow exports it (see .github/workflows/e2e.yml)"
    return value


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=BASE_URL, timeout=15.0) as http:
        response = http.post(
            "/auth/login",
            json={"username": _env("E2E_REGISTRY_USERNAME"), "password": _env("E2E_REGISTRY_PASSWORD")},
        )
        assert response.status_code == 200, response.text
        http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        yield http


def _tags() -> list[str]:
    response = httpx.get(f"{REGISTRY}/v2/{REPOSITORY}/tags/list", timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["tags"])


def _digest(tag: str) -> str:
    response = httpx.head(
        f"{REGISTRY}/v2/{REPOSITORY}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    assert response.status_code == 200
    return str(response.headers["docker-content-digest"])


def _champion() -> str:
    """The version tag whose manifest the champion tag names."""
    champion = _digest("champion")
    (version,) = [t for t in _tags() if t[:1].isdigit() and _digest(t) == champion]
    return version


def _served(client: httpx.Client) -> str:
    response = client.post("/v1/models/iris/examples/0/predict")
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def _inference_pods() -> dict[str, int]:
    pods = json.loads(
        kubectl(
            "-n", NAMESPACE, "get", "pods", "-o", "json",
            "-l", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=inference",
        )
    )["items"]  # fmt: skip
    return {
        p["metadata"]["name"]: sum(c["restartCount"] for c in p["status"]["containerStatuses"]) for p in pods
    }


def test_the_install_job_pushed_a_version_and_champion() -> None:
    tags = _tags()
    assert "champion" in tags
    assert "latest" in tags
    assert [t for t in tags if t[:1].isdigit()], tags
    assert any(t.startswith("ev.") for t in tags), "every alias move is an event artifact"


def test_the_nodes_containerd_pulls_the_model_image_and_its_copier_runs() -> None:
    version = _champion()
    name = f"copier-{uuid.uuid4().hex[:8]}"
    overrides: dict[str, Any] = {
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "out", "emptyDir": {}}],
            "containers": [
                {
                    "name": name,
                    "image": f"localhost:5001/{REPOSITORY}:{version}",
                    "args": ["/models", "/out"],
                    "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        }
    }
    done = subprocess.run(
        ["kubectl", "-n", "default", "run", name, "--rm", "-i", "--restart=Never",
         f"--image=localhost:5001/{REPOSITORY}:{version}", f"--overrides={json.dumps(overrides)}",
         "--pod-running-timeout=120s"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert '"event":"model copied"' in done.stdout, done.stdout + done.stderr
    assert version in done.stdout


def test_a_promoted_retraining_is_served_without_a_pod_restart(client: httpx.Client) -> None:
    first = _champion()
    assert _served(client) == first
    pods = _inference_pods()
    job = f"retrain-{uuid.uuid4().hex[:6]}"
    kubectl("-n", NAMESPACE, "create", "job", job, f"--from=cronjob/{RELEASE}-modelberth-trainer")
    kubectl("-n", NAMESPACE, "wait", "--for=condition=complete", f"job/{job}", "--timeout=600s", timeout=660)
    second = _champion()
    assert second != first, "the retraining was not promoted (same data, same seed: it is not worse)"
    deadline = time.monotonic() + POLL_SECONDS + 60
    while _served(client) != second:
        assert time.monotonic() < deadline, f"inference still answers with {_served(client)}, not {second}"
        time.sleep(1)
    assert _inference_pods() == pods, "the new version must load live, not through a restart"
