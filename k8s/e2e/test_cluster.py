"""End to end on a real cluster after `helm install` (the e2e workflow; never in `make test`).

Everything goes through the ingress, as a user would: E2E_BASE_URL (e.g. http://modelberth.local) is the
one host; E2E_USERNAME / E2E_PASSWORD are the bootstrap user's (read from its Secret by the workflow).
Cluster-side checks (NetworkPolicies, Prometheus, Grafana dashboards) use kubectl with the current context;
E2E_NAMESPACE / E2E_RELEASE name the release (default modelberth/modelberth).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

# Not MODELBERTH_*: the root conftest clears those for every test.
BASE_URL = os.environ.get("E2E_BASE_URL", "http://modelberth.local").rstrip("/")
NAMESPACE = os.environ.get("E2E_NAMESPACE", "modelberth")
RELEASE = os.environ.get("E2E_RELEASE", "modelberth")
MONITORING_NAMESPACE = os.environ.get("E2E_MONITORING_NAMESPACE", "monitoring")
PROMETHEUS_SERVICE = os.environ.get("E2E_PROMETHEUS_SERVICE", "kube-prometheus-stack-prometheus:http-web")


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    assert value, f"{name} is not set: the e2e workflow exports it (see .github/workflows/e2e.yml)"
    return value


def kubectl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=BASE_URL, timeout=15.0) as http:
        yield http


@pytest.fixture(scope="module")
def token(client: httpx.Client) -> str:
    response = client.post(
        "/auth/login", json={"username": _env("E2E_USERNAME"), "password": _env("E2E_PASSWORD")}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_ui_is_served_at_the_root(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


def test_discovery_names_the_public_url_as_issuer(client: httpx.Client) -> None:
    config = client.get("/.well-known/openid-configuration")
    assert config.status_code == 200
    assert config.json()["issuer"] == BASE_URL
    jwks = client.get("/.well-known/jwks.json").json()
    assert jwks["keys"]
    assert all("d" not in key for key in jwks["keys"]), "the public JWKS leaks a private key"


def test_wrong_password_is_refused(client: httpx.Client) -> None:
    response = client.post(
        "/auth/login", json={"username": _env("E2E_USERNAME"), "password": uuid.uuid4().hex}
    )
    assert response.status_code in (400, 401)
    assert "detail" in response.json()


def test_prediction_through_the_ingress(client: httpx.Client, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/models/iris/predict", json={"instances": [{}]}).status_code == 401
    listing = client.get("/v1/models", headers=headers)
    assert listing.status_code == 200, listing.text
    assert "iris" in listing.text
    example = client.get("/v1/models/iris/examples/0", headers=headers)
    assert example.status_code == 200, example.text
    row: Any = example.json()
    instance = row.get("instance", row.get("features", row)) if isinstance(row, dict) else row
    predicted = client.post("/v1/models/iris/predict", json={"instances": [instance]}, headers=headers)
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert body["model"] == "iris"
    assert len(body["predictions"]) == 1
    assert abs(sum(body["probabilities"][0].values()) - 1.0) < 1e-6


def test_token_issued_outside_verifies_inside(client: httpx.Client, token: str) -> None:
    """The issuer is the public URL, so a token from the ingress verifies in the in-cluster inference pods."""
    response = client.get("/v1/models/iris", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def _run_probe_pod(namespace: str, labels: str, url: str) -> bool:
    """Start a throwaway pod (the auth image, already on the node) that GETs ``url``; True if it answered."""
    name = f"netpol-probe-{uuid.uuid4().hex[:8]}"
    image = json.loads(kubectl("-n", NAMESPACE, "get", "deployment", f"{RELEASE}-auth", "-o", "json"))[
        "spec"
    ]["template"]["spec"]["containers"][0]["image"]
    overrides = {
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": name,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "python",
                        "-c",
                        f"import urllib.request as u; u.urlopen({url!r}, timeout=5); print('REACHED')",
                    ],
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
        ["kubectl", "-n", namespace, "run", name, "--rm", "-i", "--restart=Never", f"--labels={labels}",
         f"--image={image}", f"--overrides={json.dumps(overrides)}", "--pod-running-timeout=90s"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    return "REACHED" in done.stdout


def test_network_policies_keep_strangers_out() -> None:
    auth = f"http://{RELEASE}-auth.{NAMESPACE}.svc:8001/readyz"
    assert not _run_probe_pod("default", "app=stranger", auth), "a pod in another namespace reached auth"
    assert not _run_probe_pod(NAMESPACE, "app=stranger", auth), (
        "an unlabelled pod in the namespace reached auth"
    )


def _prometheus(query: str) -> list[dict[str, Any]]:
    proxy = f"/api/v1/namespaces/{MONITORING_NAMESPACE}/services/{PROMETHEUS_SERVICE}/proxy"
    path = f"{proxy}/api/v1/query?query={urllib.parse.quote(query)}"
    return list(json.loads(kubectl("get", "--raw", path))["data"]["result"])


def test_prometheus_scrapes_all_three_services() -> None:
    query = f'up{{namespace="{NAMESPACE}",job=~".*modelberth-(auth|inference|ui)"}}'
    deadline = time.monotonic() + 180
    jobs: dict[str, str] = {}
    while time.monotonic() < deadline:
        jobs = {r["metric"]["job"]: r["value"][1] for r in _prometheus(query)}
        if len(jobs) == 3 and set(jobs.values()) == {"1"}:
            break
        time.sleep(5)
    assert sorted(jobs) == sorted(f"{RELEASE}-{c}" for c in ("auth", "inference", "ui"))
    assert set(jobs.values()) == {"1"}


def test_alert_rules_are_loaded() -> None:
    path = f"/api/v1/namespaces/{MONITORING_NAMESPACE}/services/{PROMETHEUS_SERVICE}/proxy/api/v1/rules"
    groups = json.loads(kubectl("get", "--raw", path))["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert "ModelberthTargetDown" in alerts


def test_grafana_dashboards_are_published() -> None:
    maps = json.loads(kubectl("get", "configmap", "-A", "-l", "grafana_dashboard=1", "-o", "json"))["items"]
    ours = [m for m in maps if m["metadata"]["namespace"] == NAMESPACE]
    assert len(ours) >= 3
    for config_map in ours:
        ((_, text),) = config_map["data"].items()
        assert json.loads(text)["title"].startswith("modelberth")
