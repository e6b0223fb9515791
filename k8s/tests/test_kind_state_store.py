"""The kind e2e's shared auth state (issue 18), checked offline: ``k8s/valkey.yaml`` is valid, restricted and
reachable by auth only, and ``k8s/values-kind.yaml`` installs two auth replicas pointed at exactly that
Service, Secret and pod labels (a mismatch would only show on kind, in CI, as auth pods that never log in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import yaml

from testkit import chart

REPO = Path(__file__).resolve().parents[2]
NAMESPACE, RELEASE = "modelberth", "modelberth"  # as the e2e workflow installs


def _manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((REPO / "k8s" / "valkey.yaml").read_text(encoding="utf-8")) if d]
    return {d["kind"]: d for d in docs}


def _kind_release() -> list[dict[str, Any]]:
    values = yaml.safe_load((REPO / "k8s" / "values-kind.yaml").read_text(encoding="utf-8"))
    return chart.documents(chart.render(values, release=RELEASE, namespace=NAMESPACE))


def test_the_valkey_manifest_is_valid_and_restricted() -> None:
    manifests = _manifests()
    assert set(manifests) == {"Deployment", "Service", "NetworkPolicy"}
    for doc in manifests.values():
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    command = container["command"]
    # No persistence, nothing evicted, and the password only in the mounted config file, never an argument.
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert not [arg for arg in command if "pass" in arg]
    assert command[1] == "/etc/valkey/valkey.conf"


def test_kind_values_point_two_auth_replicas_at_that_valkey() -> None:
    manifests = _manifests()
    release = _kind_release()
    (auth,) = [d for d in release if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{RELEASE}-auth"]
    assert auth["spec"]["replicas"] == 2
    env = {e["name"]: e.get("value") for e in auth["spec"]["template"]["spec"]["containers"][0]["env"]}
    url = urlsplit(env["AUTH_STATE_URL"])
    service = manifests["Service"]
    assert url.hostname == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"]
    (password,) = [v for v in auth["spec"]["template"]["spec"]["volumes"] if v["name"] == "state-password"]
    config = next(
        v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
    )
    assert password["secret"]["secretName"] == config["secret"]["secretName"] == "modelberth-valkey"
    # The chart's egress policy for auth selects the Valkey pods; Valkey's own policy admits auth's pods.
    (egress,) = [
        d for d in release if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("auth-egress")
    ]
    (store_rule,) = [r for r in egress["spec"]["egress"] if r["ports"][0]["port"] == 6379]
    (peer,) = store_rule["to"]
    valkey_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert "namespaceSelector" not in peer  # the release namespace, where the workflow applies valkey.yaml
    assert peer["podSelector"]["matchLabels"].items() <= valkey_labels.items()
    auth_labels = auth["spec"]["template"]["metadata"]["labels"]
    (rule,) = manifests["NetworkPolicy"]["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= auth_labels.items()
    assert manifests["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"].items() <= valkey_labels.items()
    (pdb,) = [
        d
        for d in release
        if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == f"{RELEASE}-auth"
    ]
    assert pdb["spec"]["maxUnavailable"] == 1
