"""Auth on a shared Redis/Valkey (issue 18) in the chart: the env and mounts auth reads, the probes that keep
a store outage from emptying the Service, the HPA and the PDB that keeps one pod up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Manifest = dict[str, Any]
STORE_NETWORK = {"stateStore": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "valkey"}}}}


def _auth(manifests: list[Manifest], kind: str = "Deployment") -> Manifest:
    (doc,) = [d for d in manifests if d["kind"] == kind and d["metadata"]["name"] == "rel-modelberth-auth"]
    return doc


def _env(deployment: Manifest) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_default_keeps_state_in_the_one_pod(named_set: Callable[[str], list[Manifest]]) -> None:
    default = named_set("default")
    auth = _auth(default)
    assert auth["spec"]["replicas"] == 1
    assert not [name for name in _env(auth) if name.startswith("AUTH_STATE_")]
    assert not [d for d in default if d["kind"] == "HorizontalPodAutoscaler"]
    assert not [d for d in default if d["metadata"]["name"].endswith("-auth-egress")]


def test_the_store_is_wired_with_its_password_from_a_file_and_tls_ca(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    manifests = named_set("auth-state")
    auth = _auth(manifests)
    env = _env(auth)
    assert env["AUTH_STATE_URL"] == "rediss://modelberth-valkey.cache.svc:6380/0"
    assert env["AUTH_STATE_PREFIX"] == "ml:rel:auth:"  # one store, several releases and namespaces
    assert env["AUTH_STATE_PASSWORD_FILE"] == "/etc/modelberth/state-password/password"
    assert env["AUTH_STATE_CA_FILE"] == "/etc/modelberth/state-ca/ca.crt"
    assert "AUTH_STATE_PASSWORD" not in env  # a file, never the environment
    pod = auth["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state-password"]["secret"] == {
        "secretName": "modelberth-state",
        "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}],
    }
    assert volumes["state-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["state-password"] == {
        "name": "state-password",
        "mountPath": "/etc/modelberth/state-password",
        "readOnly": True,
    }
    assert mounts["state-ca"]["mountPath"] == "/etc/modelberth/state-ca"
    # Readiness and startup leave the store out: an outage every pod shares keeps them in the Service.
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?exclude=state"


def test_auth_scales_with_an_hpa_and_its_pdb_keeps_one_pod_up(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    manifests = named_set("auth-state")
    auth = _auth(manifests)
    assert "replicas" not in auth["spec"]  # the HPA owns it
    hpa = _auth(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": auth["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = _auth(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1  # with at least two pods, a drain leaves one serving
    assert pdb["spec"]["selector"]["matchLabels"] == auth["spec"]["selector"]["matchLabels"]


def test_two_replicas_with_a_plain_store_and_a_prefix(render: Callable[..., list[Manifest]]) -> None:
    manifests = render(
        {
            "auth": {"replicaCount": 2, "state": {"url": "redis://valkey:6379/0", "prefix": "team-a:"}},
            "networkPolicy": STORE_NETWORK,
        }
    )
    auth = _auth(manifests)
    assert auth["spec"]["replicas"] == 2
    env = _env(auth)
    assert (env["AUTH_STATE_URL"], env["AUTH_STATE_PREFIX"]) == ("redis://valkey:6379/0", "team-a:")
    assert "AUTH_STATE_PASSWORD_FILE" not in env  # no existingSecret: no password
    assert "AUTH_STATE_CA_FILE" not in env
    names = {v["name"] for v in auth["spec"]["template"]["spec"]["volumes"]}
    assert not names & {"state-password", "state-ca"}
    assert not [d for d in manifests if d["kind"] == "HorizontalPodAutoscaler"]
    # Without network policies there is nothing to open, and nothing to ask for.
    open_ = render(
        {"auth": {"replicaCount": 2, "state": {"url": "redis://v"}}, "networkPolicy": {"enabled": False}}
    )
    assert not [d for d in open_ if d["kind"] == "NetworkPolicy"]
