"""The NetworkPolicies admit exactly the flows of issue 8 and nothing else.

A small evaluator applies Kubernetes' NetworkPolicy semantics (a pod selected by no policy of a direction is
open in that direction; otherwise a flow needs one matching rule; egress of the source AND ingress of the
destination must both allow it) to every (source, destination, port) among the release's pods and the pods
around them (ingress controller, Prometheus, CoreDNS, strangers), and the allowed set is compared to the
expected one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Manifest = dict[str, Any]
NAMESPACE = "ml"


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    ports: tuple[tuple[int, str], ...] = ()
    ours: bool = False
    ip: str | None = None
    """Set for endpoints outside the cluster (namespace ""), which only ipBlock peers match."""


def _release_pod(component: str, *ports: int) -> Pod:
    labels = {
        "app.kubernetes.io/name": "modelberth",
        "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": component,
    }
    return Pod(component, NAMESPACE, labels, tuple((port, "TCP") for port in ports), ours=True)


PODS = [
    _release_pod("auth", 8001),
    _release_pod("inference", 8002, 8012),  # http and grpc
    _release_pod("ui", 8003),
    _release_pod("test"),
    _release_pod("trainer"),
    Pod(
        "ingress-controller",
        "ingress-nginx",
        {"app.kubernetes.io/name": "ingress-nginx"},
        ((80, "TCP"), (443, "TCP")),
    ),
    Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, ((9090, "TCP"),)),
    Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, ((53, "UDP"), (53, "TCP"))),
    Pod("stranger-same-namespace", NAMESPACE, {"app": "other"}, ((8080, "TCP"),)),
    Pod("stranger-other-namespace", "default", {"app": "other"}, ((8080, "TCP"),)),
    # A look-alike of the ingress controller in another namespace must not get in.
    Pod("fake-controller", "default", {"app.kubernetes.io/name": "ingress-nginx"}, ((80, "TCP"),)),
    # Outside the cluster: ci/registry-values.yaml opens 203.0.113.0/24 (but .1) on 443 to the registry and
    # 198.51.100.0/24 on 443 to the data source.
    Pod("registry", "", {}, ((443, "TCP"), (80, "TCP")), ip="203.0.113.5"),
    Pod("registry-excluded-address", "", {}, ((443, "TCP"),), ip="203.0.113.1"),
    Pod("data-source", "", {}, ((443, "TCP"),), ip="198.51.100.7"),
    Pod("internet", "", {}, ((443, "TCP"),), ip="192.0.2.9"),
    # Auth's shared state store (issue 18): in the cluster (ci/auth-state: namespace "cache"), a look-alike
    # elsewhere, a managed one in 10.20.0.0/24 and anything else outside.
    Pod("valkey", "cache", {"app.kubernetes.io/name": "valkey"}, ((6379, "TCP"), (6380, "TCP"))),
    Pod("valkey-elsewhere", "default", {"app.kubernetes.io/name": "valkey"}, ((6379, "TCP"), (6380, "TCP"))),
    Pod("managed-redis", "", {}, ((6379, "TCP"), (6380, "TCP")), ip="10.20.0.5"),
    Pod("internet", "", {}, ((6379, "TCP"), (443, "TCP")), ip="192.0.2.1"),
]


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"evaluator handles matchLabels only: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict[str, Any], policy_ns: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        assert set(peer) == {"ipBlock"}
        block = peer["ipBlock"]
        assert set(block) <= {"cidr", "except"}
        if pod.ip is None:
            return False  # pods in the cluster: never matched by ipBlock here (implementation-defined)
        ip = ipaddress.ip_address(pod.ip)
        excepted = any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
        return ip in ipaddress.ip_network(block["cidr"]) and not excepted
    if pod.ip is not None:
        return False  # selectors match pods in the cluster only
    ns_ok = (
        _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod.namespace})
        if "namespaceSelector" in peer
        else pod.namespace == policy_ns
    )
    pod_ok = _matches(peer["podSelector"], pod.labels) if "podSelector" in peer else True
    return ns_ok and pod_ok


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def _allowed(
    policies: list[Manifest], direction: str, subject: Pod, other: Pod, port: int, protocol: str
) -> bool:
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and _matches(p["spec"]["podSelector"], subject.labels)
        and direction in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed_flows(policies: list[Manifest]) -> set[tuple[str, str, int, str]]:
    """Every (source, destination, port, protocol) the policies admit, where at least one end is ours."""
    flows = set()
    for src in PODS:
        for dst in PODS:
            if src == dst or not (src.ours or dst.ours):
                continue
            for port, protocol in dst.ports:
                if _allowed(policies, "Egress", src, dst, port, protocol) and _allowed(
                    policies, "Ingress", dst, src, port, protocol
                ):
                    flows.add((src.name, dst.name, port, protocol))
    return flows


DNS = {(src, "coredns", 53, proto) for src in ("inference", "ui", "test") for proto in ("UDP", "TCP")}
EXPECTED = {
    ("ingress-controller", "auth", 8001, "TCP"),
    ("ingress-controller", "inference", 8002, "TCP"),
    # gRPC has the same callers as HTTP; of them only the controller reaches it (the ui's and the helm test's
    # egress is HTTP only), and Prometheus scrapes the http port alone.
    ("ingress-controller", "inference", 8012, "TCP"),
    ("ingress-controller", "ui", 8003, "TCP"),
    ("ui", "auth", 8001, "TCP"),
    ("ui", "inference", 8002, "TCP"),
    ("inference", "auth", 8001, "TCP"),
    ("test", "auth", 8001, "TCP"),
    ("test", "inference", 8002, "TCP"),
    ("test", "ui", 8003, "TCP"),
    *DNS,
}
SCRAPES = {
    ("prometheus", "auth", 8001, "TCP"),
    ("prometheus", "inference", 8002, "TCP"),
    ("prometheus", "ui", 8003, "TCP"),
}


def _policies(manifests: list[Manifest]) -> list[Manifest]:
    return [d for d in manifests if d["kind"] == "NetworkPolicy"]


def test_default_values_admit_exactly_the_service_flows(named_set: Callable[[str], list[Manifest]]) -> None:
    assert allowed_flows(_policies(named_set("default"))) == EXPECTED


def test_monitoring_namespace_may_scrape_the_http_ports(named_set: Callable[[str], list[Manifest]]) -> None:
    assert allowed_flows(_policies(named_set("monitoring"))) == EXPECTED | SCRAPES


def test_trainer_pods_get_no_network_at_all(named_set: Callable[[str], list[Manifest]]) -> None:
    flows = allowed_flows(_policies(named_set("trainer")))
    assert flows == EXPECTED
    assert not {f for f in flows if "trainer" in f[:2]}


def test_registry_store_opens_only_the_registry_and_data_addresses_and_ports(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    flows = allowed_flows(_policies(named_set("registry")))
    assert flows == EXPECTED | {
        ("inference", "registry", 443, "TCP"),
        ("trainer", "registry", 443, "TCP"),
        ("trainer", "data-source", 443, "TCP"),
        ("trainer", "coredns", 53, "UDP"),
        ("trainer", "coredns", 53, "TCP"),
    }
    # Not the registry's other port, not the excluded address, not the internet; inference never reaches the
    # data source.
    assert not {f for f in flows if f[1] in ("registry-excluded-address", "internet")}
    assert ("inference", "data-source", 443, "TCP") not in flows


AUTH_DNS = {("auth", "coredns", 53, proto) for proto in ("UDP", "TCP")}


def test_auth_reaches_its_state_store_and_nothing_else(named_set: Callable[[str], list[Manifest]]) -> None:
    """Issue 18: with auth.state.url, auth gets DNS and the store (its pods by label in their namespace, a
    managed one by CIDR), on the store's port only."""
    store = {("auth", "valkey", 6380, "TCP"), ("auth", "managed-redis", 6380, "TCP")}
    assert allowed_flows(_policies(named_set("auth-state"))) == EXPECTED | AUTH_DNS | store
    managed = {("auth", "managed-redis", 6379, "TCP")}
    assert allowed_flows(_policies(named_set("production"))) == EXPECTED | SCRAPES | AUTH_DNS | managed


def test_without_policies_everything_is_open() -> None:
    """The evaluator itself: no policy means every flow, so the assertions above have teeth."""
    flows = allowed_flows([])
    assert ("stranger-other-namespace", "auth", 8001, "TCP") in flows
    assert ("auth", "stranger-other-namespace", 8080, "TCP") in flows
    assert flows > EXPECTED
