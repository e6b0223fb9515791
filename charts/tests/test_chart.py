"""The chart with real Helm: lint, schema, render with every value set, Kubernetes schema validation and the
properties every object must have (restricted PSS, probes, resources, labels, secrets kept out of NOTES)."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from modelberth_cli import main as cli
from modelberth_core import shutdown

CHART = Path(__file__).resolve().parents[1] / "modelberth"
KUBE_VERSION = "1.33.0"
SERVICES = {"auth": 8001, "inference": 8002, "ui": 8003}
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}
# prometheus-operator CRDs: kubernetes-validate ships only the built-in API schemas.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

Manifest = dict[str, Any]
Workloads = Callable[[list[Manifest]], list[tuple[Manifest, Manifest]]]


def _values_file(name: str) -> dict[str, Any] | None:
    path = {"default": None, "production": CHART / "examples" / "values-production.yaml"}.get(
        name, CHART / "ci" / f"{name}-values.yaml"
    )
    return None if path is None else yaml.safe_load(path.read_text(encoding="utf-8"))


def test_lint_strict_has_no_findings(value_set: str) -> None:
    report = helm_python.lint(CHART, _values_file(value_set), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert findings == []


def test_every_object_is_valid_for_kubernetes(manifests: list[Manifest]) -> None:
    for doc in manifests:
        obj = {k: v for k, v in doc.items() if k != "_template"}
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_every_object_has_standard_labels_and_the_release_namespace(manifests: list[Manifest]) -> None:
    for doc in manifests:
        labels = doc["metadata"].get("labels", {})
        assert set(labels) >= STANDARD_LABELS, (doc["kind"], doc["metadata"]["name"])
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert doc["metadata"]["namespace"] == "ml", doc["metadata"]["name"]
        assert len(doc["metadata"]["name"]) <= 63


def _containers(pod: Manifest) -> list[Manifest]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_container_meets_restricted_pss_with_a_read_only_root(
    manifests: list[Manifest], workloads: Workloads
) -> None:
    pods = workloads(manifests)
    assert pods
    for owner, pod in pods:
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, owner["metadata"]["name"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert psc["runAsUser"] == 10001
        assert psc["runAsGroup"] == 10001
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host_namespace)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            assert "hostPath" not in volume
        for container in _containers(pod):
            name = f"{owner['metadata']['name']}/{container['name']}"
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["runAsUser"] == 10001, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert not sc["capabilities"].get("add"), name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc.get("privileged", False) is False, name
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp, f"{name} has no writable /tmp"
            assert "emptyDir" in volumes[tmp[0]["name"]], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name


def test_services_have_probes_graceful_shutdown_and_named_ports(
    manifests: list[Manifest], workloads: Workloads
) -> None:
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in manifests
        if d["kind"] == "Deployment"
    }
    assert set(deployments) == set(SERVICES)
    for component, port in SERVICES.items():
        pod = deployments[component]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        grpc = (
            [{"name": "grpc", "containerPort": 8012, "protocol": "TCP"}] if component == "inference" else []
        )
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}, *grpc]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        # With a shared store, auth's readiness leaves the store out (an outage every pod shares must not
        # empty the Service: JWKS and client credentials keep working); /readyz itself still reports it.
        shared = component == "auth" and any(e["name"] == "AUTH_STATE_URL" for e in container["env"])
        ready = "/readyz?exclude=state" if shared else "/readyz"
        if "grpc" in container["readinessProbe"]:  # inference.grpc.readinessProbe: the same answer over gRPC
            assert container["readinessProbe"]["grpc"] == {"port": 8012, "service": ""}
        else:
            assert container["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}
        sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        # After SIGTERM the server drains (under a second), then uvicorn finishes in-flight requests for up to
        # 20 s (modelberth_core.shutdown, modelberth_cli.main); the grace period must also leave the app
        # time to stop.
        after_sigterm = math.ceil(shutdown.DRAIN_SECONDS) + cli.GRACEFUL_SHUTDOWN_SECONDS
        assert pod["terminationGracePeriodSeconds"] > sleep + after_sigterm
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[f"{component.upper()}_PORT"] == str(port)
        assert f"{component.upper()}_HOST" not in env  # the image listens on 0.0.0.0 (docker/Dockerfile)
        assert env["MODELBERTH_STATE_DIR"] == "/var/lib/modelberth"
    inference = deployments["inference"]["spec"]["template"]["spec"]["containers"][0]
    assert inference["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    services = {
        s["metadata"]["labels"]["app.kubernetes.io/component"]: s for s in manifests if s["kind"] == "Service"
    }
    for component, port in SERVICES.items():
        assert services[component]["spec"]["ports"][0] == {
            "name": "http", "port": port, "targetPort": "http", "protocol": "TCP"
        }  # fmt: skip
        assert len(services[component]["spec"]["ports"]) == (2 if component == "inference" else 1)  # + grpc
        selector = services[component]["spec"]["selector"]
        assert selector == deployments[component]["spec"]["selector"]["matchLabels"]
        assert set(selector) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }


DOCKERFILE = CHART.parents[1] / "docker" / "Dockerfile"
CHART_OVERRIDES = {
    "HOME": "the image's home is on its root filesystem, read-only in every pod",
    "MODELBERTH_STATE_DIR": "the services keep state on the chart's volume at /var/lib/modelberth",
    "INFERENCE_MODEL_DIR": "where the model lands depends on the store values (image, claim or registry)",
}
"""Variables the image sets that the chart sets again on purpose, and why (issue 16: one place each)."""


def image_env_names(dockerfile: Path = DOCKERFILE) -> set[str]:
    """Every variable an ``ENV`` instruction of the Dockerfile sets, in any stage."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("ENV "):
            names |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", line[4:]))
    return names


def test_the_chart_sets_only_what_depends_on_its_values_and_the_image_the_rest(
    manifests: list[Manifest], workloads: Workloads
) -> None:
    """Runtime environment is set in one place (issue 16): a property of the image (listening on 0.0.0.0,
    PYTHONDONTWRITEBYTECODE, Gradio offline, caches in /tmp) lives in docker/Dockerfile and nowhere in the
    chart; the helm test pod may run any image with python, so it is left out."""
    owned_by_image = image_env_names()
    expected = {"AUTH_HOST", "UI_HOST", "PYTHONDONTWRITEBYTECODE", "GRADIO_ANALYTICS_ENABLED", "MPLCONFIGDIR"}
    assert expected <= owned_by_image
    for owner, pod in workloads(manifests):
        if owner.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test":
            continue
        spec = pod["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            names = {e["name"] for e in container.get("env", [])}
            twice = (names & owned_by_image) - set(CHART_OVERRIDES)
            assert not twice, f"{owner['metadata']['name']}/{container['name']} repeats the image's {twice}"


def _deployment(manifests: list[Manifest], component: str) -> Manifest:
    (deployment,) = [
        d
        for d in manifests
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return deployment


def _env(manifests: list[Manifest], component: str) -> dict[str, Any]:
    """name -> value, or -> the ``valueFrom`` mapping for variables read from a Secret."""
    containers = _deployment(manifests, component)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in containers[0]["env"]}


def test_services_are_wired_to_each_other_and_to_the_public_issuer(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    manifests = named_set("default")
    auth, inference, ui = (_env(manifests, c) for c in ("auth", "inference", "ui"))
    assert auth["AUTH_ISSUER"] == "http://modelberth.local"
    assert inference["INFERENCE_AUTH_ISSUER"] == auth["AUTH_ISSUER"]
    assert inference["INFERENCE_AUTH_AUDIENCE"] == auth["AUTH_AUDIENCE"] == "modelberth"
    assert (
        inference["INFERENCE_AUTH_JWKS_URL"] == "http://rel-modelberth-auth.ml.svc:8001/.well-known/jwks.json"
    )
    assert inference["INFERENCE_MODEL_DIR"] == "/models"
    assert ui["UI_AUTH_URL"] == "http://rel-modelberth-auth.ml.svc:8001"
    assert ui["UI_INFERENCE_URL"] == "http://rel-modelberth-inference.ml.svc:8002"
    assert auth["AUTH_KEYSET_FILE"] == "/etc/modelberth/keyset/keys.json"
    assert auth["AUTH_USERS_FILE"] == "/var/lib/modelberth/users.yaml"
    # The UI's own client (issue 13, point 2): its id, and its secret from the bootstrap Secret.
    assert ui["UI_CLIENT_ID"] == "modelberth-ui"
    assert ui["UI_CLIENT_SECRET"] == {
        "secretKeyRef": {"name": "rel-modelberth-bootstrap", "key": "ui-client-secret"}
    }
    tls = named_set("tls")
    assert _env(tls, "auth")["AUTH_ISSUER"] == "https://modelberth.local"
    assert _env(named_set("production"), "inference")["INFERENCE_AUTH_ISSUER"] == "https://ml.example.com"


def _inference_pod(manifests: list[Manifest]) -> Manifest:
    (deployment,) = [
        d
        for d in manifests
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"
    ]
    return dict(deployment["spec"]["template"]["spec"])


def test_the_model_comes_from_the_model_image_copied_or_mounted(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    copied = _inference_pod(named_set("default"))
    (init,) = copied["initContainers"]
    assert init["image"] == "ghcr.io/modelberth/modelberth-model-iris:0.1.0"
    assert init["command"] == ["/bin/copy-model", "/models", "/mnt/models"]
    assert {"name": "models", "mountPath": "/mnt/models"} in init["volumeMounts"]
    assert {"name": "models", "emptyDir": {"sizeLimit": "1Gi"}} in copied["volumes"]

    mounted = _inference_pod(named_set("imagevolume"))
    assert "initContainers" not in mounted
    assert {
        "name": "models",
        "image": {
            "reference": "ghcr.io/modelberth/modelberth-model-iris:0.1.0",
            "pullPolicy": "IfNotPresent",
        },
    } in mounted["volumes"]
    env = {e["name"]: e["value"] for e in mounted["containers"][0]["env"]}
    assert env["INFERENCE_MODEL_DIR"] == "/model-image/models"

    pvc = _inference_pod(named_set("trainer"))
    claim = next(v for v in pvc["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    assert claim == {"claimName": "rel-modelberth-models", "readOnly": True}


def _inference_env(pod: Manifest) -> list[Manifest]:
    (container,) = [c for c in pod["containers"] if c["name"] == "inference"]
    env: list[Manifest] = container["env"]
    return env


def test_prediction_log_is_off_by_default_and_wired_to_the_env_when_on(
    named_set: Callable[[str], list[Manifest]], render: Callable[[dict[str, Any] | None], list[Manifest]]
) -> None:
    default = _inference_pod(named_set("default"))
    assert not [e for e in _inference_env(default) if e["name"].startswith("INFERENCE_PREDICTION_LOG")]
    assert "prediction-log" not in [v["name"] for v in default["volumes"]]

    pod = _inference_pod(named_set("predictionlog"))
    env = _inference_env(pod)
    names = [e["name"] for e in env]
    # Kubernetes expands $(POD_NAME) only from a variable defined earlier in the list.
    assert names.index("POD_NAME") < names.index("INFERENCE_PREDICTION_LOG")
    assert env[names.index("POD_NAME")]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    values = {e["name"]: e["value"] for e in env if "value" in e}
    assert values["INFERENCE_PREDICTION_LOG"] == "/var/log/modelberth/predictions-$(POD_NAME).jsonl"
    assert values["INFERENCE_PREDICTION_LOG_SAMPLE_RATE"] == "0.5"
    assert values["INFERENCE_PREDICTION_LOG_MAX_BYTES"] == "10485760"
    assert values["INFERENCE_PREDICTION_LOG_BACKUPS"] == "3"
    assert values["INFERENCE_PREDICTION_LOG_REDACT"] == "petal_width"
    (container,) = [c for c in pod["containers"] if c["name"] == "inference"]
    assert {"name": "prediction-log", "mountPath": "/var/log/modelberth"} in container["volumeMounts"]
    assert {"name": "prediction-log", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]

    # The service reads exactly these variables (as the kubelet expands them) into valid settings.
    from modelberth_inference.settings import Settings

    expanded = {
        k.removeprefix("INFERENCE_").lower(): v.replace("$(POD_NAME)", "rel-modelberth-inference-abc12")
        for k, v in values.items()
        if k.startswith("INFERENCE_PREDICTION_LOG")
    }
    settings = Settings(**expanded)
    assert settings.prediction_log == "/var/log/modelberth/predictions-rel-modelberth-inference-abc12.jsonl"
    assert (settings.prediction_log_max_bytes, settings.prediction_log_backups) == (10485760, 3)
    assert settings.redacted_fields() == frozenset({"petal_width"})

    claim = {"type": "persistentVolumeClaim", "sizeLimit": "1Gi", "claimName": "audit"}
    on_pvc = _inference_pod(render({"inference": {"predictionLog": {"enabled": True, "volume": claim}}}))
    assert {"name": "prediction-log", "persistentVolumeClaim": {"claimName": "audit"}} in on_pvc["volumes"]
    stdout = _inference_pod(render({"inference": {"predictionLog": {"enabled": True, "target": "stdout"}}}))
    stdout_env = {e["name"]: e.get("value") for e in _inference_env(stdout)}
    assert stdout_env["INFERENCE_PREDICTION_LOG"] == "stdout"
    assert "prediction-log" not in [v["name"] for v in stdout["volumes"]]


def test_trainer_job_and_cronjob_publish_into_the_claim_inference_reads(
    named_set: Callable[[str], list[Manifest]], workloads: Workloads
) -> None:
    manifests = named_set("trainer")
    kinds = {d["kind"] for d in manifests}
    assert {"Job", "CronJob", "PersistentVolumeClaim"} <= kinds
    for owner, pod in workloads(manifests):
        if owner["kind"] not in ("Job", "CronJob"):
            continue
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["modelberth", "train"]
        assert container["args"][:4] == ["--dataset", "iris", "--store", "/models"]
        claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
        assert claim == {"claimName": "rel-modelberth-models"}
    cron = next(d for d in manifests if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_registry_mode_needs_no_pvc_and_no_model_image(
    named_set: Callable[[str], list[Manifest]], workloads: Workloads
) -> None:
    manifests = named_set("registry")
    assert "PersistentVolumeClaim" not in {d["kind"] for d in manifests}
    pod = _inference_pod(manifests)
    assert "initContainers" not in pod
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["INFERENCE_STORE"] == "oci://registry.example.com/acme/models"
    assert env["INFERENCE_CACHE_DIR"] == "/models"
    assert env["DOCKER_CONFIG"] == "/etc/modelberth/registry"
    assert "INFERENCE_MODEL_DIR" not in env
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {"sizeLimit": "1Gi"}}
    assert volumes["registry-auth"]["secret"] == {
        "secretName": "registry-pull",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    images = {c["image"] for _, p in workloads(manifests) for c in p["spec"].get("containers", [])}
    assert not any("modelberth-model-" in image for image in images)


def test_trainer_jobs_train_on_the_users_data_and_push_to_the_registry(
    named_set: Callable[[str], list[Manifest]], workloads: Workloads, render: Callable[..., list[Manifest]]
) -> None:
    jobs = [(o, p) for o, p in workloads(named_set("registry")) if o["kind"] in ("Job", "CronJob")]
    assert len(jobs) == 2
    for _, pod in jobs:
        (container,) = pod["spec"]["containers"]
        args = container["args"]
        assert "--dataset" not in args
        assert args[args.index("--store") + 1] == "oci://registry.example.com/acme/models"
        assert args[args.index("--data-sha256") + 1] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0" * 2
        assert args[args.index("--target") + 1] == "y"
        assert args[args.index("--name") + 1] == "bank"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TRAINER_DATA_URL"] == "https://data.example.com/bank/bank-full.csv"
        assert env["DOCKER_CONFIG"] == "/etc/modelberth/registry"
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert "models" not in volumes
        assert volumes["registry-auth"]["secret"]["secretName"] == "registry-push"

    # A CSV on the user's own claim, read-only; a presigned URL from a Secret; kind's plain-HTTP registry.
    on_claim = render(
        {
            "inference": {"model": {"source": "pvc"}},
            "trainer": {"enabled": True, "data": {"pvc": {"claimName": "datasets", "path": "bank/full.csv"}}},
        }
    )
    ((_, pod),) = [(o, p) for o, p in workloads(on_claim) if o["kind"] == "Job"]
    (container,) = pod["spec"]["containers"]
    assert container["args"][:4] == ["--data", "/data/bank/full.csv", "--store", "/models"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in container["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}} in pod[
        "spec"
    ]["volumes"]
    secret_url = render(
        {
            "inference": {"model": {"source": "registry"}},
            "modelStore": {
                "registry": "kind-registry:5000",
                "namespace": "mb",
                "plainHttp": ["kind-registry:5000"],
            },
            "networkPolicy": {
                "egress": {
                    "registry": {"cidrs": ["172.18.0.0/16"], "ports": [5000]},
                    "data": {"cidrs": ["0.0.0.0/0"], "except": ["169.254.169.254/32"]},
                }
            },
            "trainer": {"enabled": True, "data": {"urlSecret": {"name": "bank-url"}}, "name": "bank"},
        }
    )
    ((_, pod),) = [(o, p) for o, p in workloads(secret_url) if o["kind"] == "Job"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRAINER_DATA_URL"]["valueFrom"] == {"secretKeyRef": {"name": "bank-url", "key": "url"}}
    assert env["MODELBERTH_REGISTRY_PLAIN_HTTP"]["value"] == "kind-registry:5000"
    assert "DOCKER_CONFIG" not in env  # no secret: anonymous, as kind's registry is
    assert container["args"][container["args"].index("--store") + 1] == "oci://kind-registry:5000/mb"


def _trainer_jobs(manifests: list[Manifest]) -> list[Manifest]:
    """The Job spec of the install Job and of the CronJob's template."""
    jobs = [d["spec"] for d in manifests if d["kind"] == "Job"]
    jobs += [d["spec"]["jobTemplate"]["spec"] for d in manifests if d["kind"] == "CronJob"]
    return jobs


def test_trainer_jobs_run_the_gate_with_its_tolerance_and_checks(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    manifests = named_set("trainer")
    (configmap,) = [
        d for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-gate")
    ]
    checks = yaml.safe_load(configmap["data"]["expectations.yaml"])
    assert checks["examples"][0]["expect"] == "setosa"
    jobs = _trainer_jobs(manifests)
    assert len(jobs) == 2
    for job in jobs:
        pod = job["template"]["spec"]
        (container,) = pod["containers"]
        args = container["args"]
        assert args[args.index("--gate-tolerance") + 1] == "0.01"
        assert args[args.index("--expectations") + 1] == "/etc/modelberth/gate/expectations.yaml"
        assert "--no-gate" not in args
        assert "--allow-leaks" not in args
        mount = next(m for m in container["volumeMounts"] if m["name"] == "gate")
        assert (mount["mountPath"], mount["readOnly"]) == ("/etc/modelberth/gate", True)
        volume = next(v for v in pod["volumes"] if v["name"] == "gate")
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]


def test_a_refused_promotion_or_bad_input_is_never_retried(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    for job in _trainer_jobs(named_set("trainer")):
        rules = job["podFailurePolicy"]["rules"]
        assert rules[0] == {
            "action": "FailJob",
            "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2, 3]},
        }
        assert rules[1] == {
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        }
        assert job["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it
        assert job["backoffLimit"] == 2  # crashes (exit 1, OOM) are still retried


@pytest.mark.parametrize(
    ("gate", "present", "absent"),
    [
        ({"disabled": True, "allowLeaks": True}, ["--no-gate", "--allow-leaks"], ["--expectations"]),
        ({"existingConfigMap": "my-checks"}, ["--expectations"], ["--no-gate"]),
    ],
)
def test_gate_values_become_flags(
    render: Callable[[dict[str, Any] | None], list[Manifest]],
    gate: dict[str, Any],
    present: list[str],
    absent: list[str],
) -> None:
    values = {"inference": {"model": {"source": "pvc"}}, "trainer": {"enabled": True, "gate": gate}}
    manifests = render(values)
    assert not [d for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-gate")]
    (job,) = _trainer_jobs(manifests)
    args = job["template"]["spec"]["containers"][0]["args"]
    assert all(flag in args for flag in present)
    assert not any(flag in args for flag in absent)
    if "existingConfigMap" in gate:
        volume = next(v for v in job["template"]["spec"]["volumes"] if v["name"] == "gate")
        assert volume["configMap"]["name"] == "my-checks"


@pytest.mark.parametrize(
    ("models", "ok"),
    [
        (["iris", "iris@challenger", "wine:20261122T144500Z", "bank=20261122T144500Z-2"], True),
        (["Iris"], False),
        (["iris@Champion"], False),
        (["iris:latest"], False),
    ],
)
def test_inference_models_take_store_references(
    render: Callable[[dict[str, Any] | None], list[Manifest]], models: list[str], ok: bool
) -> None:
    values = {"inference": {"models": models}}
    if ok:
        env = {
            e["name"]: e.get("value")
            for d in render(values)
            if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("inference")
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["INFERENCE_MODELS"] == ",".join(models)
    else:
        with pytest.raises(Exception, match="models"):
            render(values)


def test_shadow_traffic_and_the_version_cap_are_wired_to_the_settings(
    render: Callable[[dict[str, Any] | None], list[Manifest]],
) -> None:
    from modelberth_inference.settings import Settings

    def inference_settings(values: dict[str, Any] | None) -> Settings:
        env = {e["name"]: e["value"] for e in _inference_env(_inference_pod(render(values))) if "value" in e}
        names = (
            "MAX_VERSIONS",
            "MAX_QUEUED",
            "SHADOW",
            "SHADOW_MODELS",
            "SHADOW_QUEUE_ROWS",
            "SHADOW_TOLERANCE",
        )
        return Settings(**{n.lower(): env[f"INFERENCE_{n}"] for n in names if f"INFERENCE_{n}" in env})

    default = inference_settings(None)
    assert (default.max_versions, default.shadow, default.shadow_models) == (3, False, "")
    assert default.max_queued == Settings().max_queued, "the chart's default is the service's"
    assert inference_settings({"inference": {"maxQueued": 8}}).max_queued == 8
    assert not default.shadowed("iris")
    shadow = {"enabled": False, "models": ["iris", "churn"], "queueRows": 500, "tolerance": 0.1}
    chosen = inference_settings({"inference": {"maxVersions": 5, "shadow": shadow}})
    assert (chosen.max_versions, chosen.shadow_queue_rows, chosen.shadow_tolerance) == (5, 500, 0.1)
    assert chosen.shadowed("churn")
    assert not chosen.shadowed("wine")
    assert inference_settings({"inference": {"shadow": {"enabled": True}}}).shadowed("wine")


def test_hpa_scales_inference_on_cpu_and_requests_per_second(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    (hpa,) = [d for d in named_set("autoscaling") if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-modelberth-inference"
    types = [m["type"] for m in hpa["spec"]["metrics"]]
    assert types == ["Resource", "Pods"]
    (deployment,) = [
        d
        for d in named_set("autoscaling")
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("inference")
    ]
    assert "replicas" not in deployment["spec"]


def test_every_service_has_a_pdb_and_an_own_service_account(manifests: list[Manifest]) -> None:
    pdbs = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in manifests
        if d["kind"] == "PodDisruptionBudget"
    }
    assert pdbs == set(SERVICES)
    accounts = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "ServiceAccount"}
    for account in accounts.values():
        assert account["automountServiceAccountToken"] is False
    for doc in manifests:
        if doc["kind"] == "Deployment":
            assert doc["spec"]["template"]["spec"]["serviceAccountName"] in accounts


def test_generated_keyset_is_a_usable_es256_jwks() -> None:
    """The keyset Helm builds from sprig's P-256 key signs tokens that its public half verifies."""
    from joserfc import jwt
    from joserfc.jwk import ECKey, KeySet

    chart = helm_python.Chart.load(CHART)
    (secret,) = [
        doc
        for doc in yaml.safe_load_all(
            chart.render(None, name="rel", namespace="ml", is_install=True)[
                "modelberth/templates/auth/secret-keyset.yaml"
            ]
        )
        if doc
    ]
    keyset = json.loads(base64.b64decode(secret["data"]["keys.json"]))
    (jwk,) = keyset["keys"]
    assert {jwk[k] for k in ("kty", "crv", "alg", "use")} == {"EC", "P-256", "ES256", "sig"}
    assert {len(jwk[k]) for k in ("d", "x", "y")} == {43}  # 32 bytes, base64url, no padding
    private = KeySet.import_key_set(keyset).keys[0]
    token = jwt.encode({"alg": "ES256", "kid": jwk["kid"]}, {"sub": "t", "iss": "i"}, private)
    public = ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y")})
    assert jwt.decode(token, public, algorithms=["ES256"]).claims["sub"] == "t"
    # A second render is a second key: the Secret is generated once, then kept through lookup.
    again = chart.render(None, name="rel", namespace="ml", is_install=True)[
        "modelberth/templates/auth/secret-keyset.yaml"
    ]
    assert secret["data"]["keys.json"] not in again


def test_secrets_and_checksums(named_set: Callable[[str], list[Manifest]], workloads: Workloads) -> None:
    default = named_set("default")
    secrets = {d["metadata"]["name"] for d in default if d["kind"] == "Secret"}
    assert secrets == {"rel-modelberth-auth-keyset", "rel-modelberth-bootstrap"}
    (auth,) = [d for d in default if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-auth")]
    assert len(auth["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]) == 64
    existing = named_set("existing-secrets")
    assert not [d for d in existing if d["kind"] == "Secret"]
    (auth,) = [d for d in existing if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-auth")]
    volumes = {
        v["name"]: v.get("secret", {}).get("secretName") for v in auth["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["keyset"] == "modelberth-keyset"
    assert volumes["users"] == "modelberth-users"
    assert volumes["bootstrap"] == "modelberth-bootstrap"
    assert volumes["ui-client"] == "modelberth-bootstrap"  # the UI client's secret: key ui-client-secret
    assert _env(existing, "ui")["UI_CLIENT_SECRET"]["secretKeyRef"] == {
        "name": "modelberth-bootstrap",
        "key": "ui-client-secret",
    }


def _bootstrap_keys(manifests: list[Manifest]) -> set[str]:
    secrets = [d for d in manifests if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-bootstrap")]
    return {key for secret in secrets for key in secret["data"]}


def test_the_ui_client_secret_is_generated_once_or_brought(render: Callable[..., list[Manifest]]) -> None:
    default = render(None)
    assert _bootstrap_keys(default) == {"username", "password", "ui-client-secret"}
    (secret,) = [d for d in default if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-bootstrap")]
    assert len(base64.b64decode(secret["data"]["ui-client-secret"])) == 48  # ~285 bits; auth wants 32+
    # Auth's init container registers the client from the same Secret, as a forwarder with the same id.
    auth = _deployment(default, "auth")["spec"]["template"]["spec"]
    script = auth["initContainers"][0]["args"][0]
    assert 'clients add "modelberth-ui" --client-id "modelberth-ui"' in script
    assert (
        "--forwards-user-address --secret-stdin --replace < /etc/modelberth/ui-client/client-secret" in script
    )
    (volume,) = [v for v in auth["volumes"] if v["name"] == "ui-client"]
    assert volume["secret"]["secretName"] == "rel-modelberth-bootstrap"
    assert volume["secret"]["items"] == [{"key": "ui-client-secret", "path": "client-secret"}]
    # Without the UI there is no UI client; with its own Secret the chart generates none for it.
    assert _bootstrap_keys(render({"ui": {"enabled": False}})) == {"username", "password"}
    own = render(
        {"ui": {"authClient": {"existingSecret": "ui-creds", "secretKey": "secret", "clientId": "web"}}}
    )
    assert _bootstrap_keys(own) == {"username", "password"}
    assert _env(own, "ui")["UI_CLIENT_ID"] == "web"
    assert _env(own, "ui")["UI_CLIENT_SECRET"] == {"secretKeyRef": {"name": "ui-creds", "key": "secret"}}
    own_auth = _deployment(own, "auth")["spec"]["template"]["spec"]
    (volume,) = [v for v in own_auth["volumes"] if v["name"] == "ui-client"]
    assert volume["secret"]["secretName"] == "ui-creds"
    assert 'clients add "web" --client-id "web"' in own_auth["initContainers"][0]["args"][0]
    # No bootstrap user, but the UI: the generated Secret holds the client secret only.
    users_only = render(
        {
            "auth": {"bootstrap": {"enabled": False}, "users": {"existingSecret": "u"}},
            "tests": {"enabled": False},
        }
    )
    assert _bootstrap_keys(users_only) == {"ui-client-secret"}


def test_services_believe_forwarded_addresses_only_from_the_configured_proxies(
    render: Callable[..., list[Manifest]],
) -> None:
    services = ("auth", "inference", "ui")
    default = render(None)
    assert {_env(default, c)["FORWARDED_ALLOW_IPS"] for c in services} == {"127.0.0.1,::1"}
    proxies = render({"ingress": {"forwardedAllowIps": ["10.244.0.0/16", "fd00::/8"]}})
    assert {_env(proxies, c)["FORWARDED_ALLOW_IPS"] for c in services} == {"10.244.0.0/16,fd00::/8"}
    # A component's own env wins, without a second entry of the same name.
    override = render(
        {
            "ingress": {"forwardedAllowIps": ["10.244.0.0/16"]},
            "auth": {"env": {"FORWARDED_ALLOW_IPS": "10.0.0.7"}},
        }
    )
    env = _deployment(override, "auth")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "FORWARDED_ALLOW_IPS"] == ["10.0.0.7"]
    assert _env(override, "inference")["FORWARDED_ALLOW_IPS"] == "10.244.0.0/16"


def test_notes_tell_how_to_reach_and_test_but_print_no_secret(rendered_text: dict[str, str]) -> None:
    notes = rendered_text["modelberth/templates/NOTES.txt"]
    assert "helm test rel" in notes
    assert "/v1/models/iris/predict" in notes
    assert "port-forward svc/rel-modelberth-ui 8003" in notes
    for path, text in rendered_text.items():
        if "secret" not in path:
            continue
        for doc in yaml.safe_load_all(text):
            for value in (doc or {}).get("data", {}).values():
                assert value not in notes
                assert base64.b64decode(value).decode() not in notes or len(base64.b64decode(value)) < 8


def test_helm_test_pod_is_a_restricted_hook_that_logs_in_and_predicts(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    hooks = [d for d in named_set("default") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert {d["kind"] for d in hooks} == {"Pod", "ConfigMap"}
    (pod,) = [d for d in hooks if d["kind"] == "Pod"]
    assert (
        pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    )
    (config,) = [d for d in hooks if d["kind"] == "ConfigMap"]
    script = config["data"]["smoke.py"]
    for path in ("/auth/login", "/oauth/token", "/examples/0/predict", "/readyz"):
        assert path in script
    compile(script, "smoke.py", "exec")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["AUTH_URL"] == "http://rel-modelberth-auth.ml.svc:8001"
    assert env["INFERENCE_URL"] == "http://rel-modelberth-inference.ml.svc:8002"


def test_monitoring_objects_carry_the_release_label_and_dashboard_label(
    named_set: Callable[[str], list[Manifest]],
) -> None:
    assert not [d for d in named_set("default") if d["kind"] in CRD_KINDS]
    manifests = named_set("monitoring")
    monitors = [d for d in manifests if d["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == set(SERVICES)
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["endpoints"][0]["port"] == "http"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    (rule,) = [d for d in manifests if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboards = [
        d
        for d in manifests
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    sources = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert len(dashboards) == len(sources) >= 1
    for dashboard in dashboards:
        ((key, text),) = dashboard["data"].items()
        assert json.loads(text) == json.loads(
            (CHART / "files" / "dashboards" / key).read_text(encoding="utf-8")
        )


_INVALID = [
    ({"trainer": {"enabled": True}}, "trainer.enabled needs inference.model.source=pvc or registry"),
    (
        {"inference": {"model": {"source": "registry"}}},
        "inference.model.source=registry needs modelStore.registry",
    ),
    (
        {"inference": {"model": {"source": "registry"}}, "modelStore": {"registry": "ghcr.io"}},
        "needs networkPolicy.egress.registry.cidrs",
    ),
    (
        {
            "inference": {"model": {"source": "pvc"}},
            "trainer": {"enabled": True, "data": {"url": "https://example.com/d.csv"}},
        },
        "trainer.data.url with networkPolicy.enabled needs networkPolicy.egress.data.cidrs",
    ),
    (
        {
            "inference": {"model": {"source": "pvc"}},
            "trainer": {
                "enabled": True,
                "data": {"url": "https://example.com/d.csv", "pvc": {"claimName": "d", "path": "d.csv"}},
            },
        },
        "set either pvc.claimName or url",
    ),
    (
        {"trainer": {"data": {"pvc": {"claimName": "d"}}}},
        "trainer.data.pvc.claimName needs trainer.data.pvc.path",
    ),
    (
        {"trainer": {"data": {"url": "https://example.com/d.csv", "urlSecret": {"name": "s"}}}},
        "set url or urlSecret.name, not both",
    ),
    ({"ingress": {"tls": {"enabled": True}}}, "ingress.tls.enabled needs ingress.tls.secretName"),
    ({"auth": {"enabled": False}}, "inference.enabled needs auth.enabled"),
    ({"auth": {"bootstrap": {"enabled": False}}}, "auth needs users: set auth.users.existingSecret"),
    (
        {"auth": {"bootstrap": {"enabled": False}, "users": {"existingSecret": "u"}}},
        "tests.enabled needs auth.bootstrap.enabled",
    ),
    (
        {"inference": {"model": {"source": "pvc", "imageVolume": True}}},
        "imageVolume applies to inference.model.source=image",
    ),
    (
        {"inference": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        "minReplicas must not exceed",
    ),
    ({"ui": {"terminationGracePeriodSeconds": 10}}, "ui.terminationGracePeriodSeconds must exceed"),
    # With gRPC on, its calls in flight get 10 s after uvicorn's shutdown: 36 is not enough for inference.
    (
        {"inference": {"terminationGracePeriodSeconds": 36}},
        "then 10 s for gRPC calls in flight",
    ),
    ({"inference": {"grpc": {"port": 8002}}}, "inference.grpc.port must differ from inference.service.port"),
    (
        {"inference": {"grpc": {"ingress": {"enabled": True}}}},
        "inference.grpc.ingress.enabled needs ingress.enabled and ingress.tls.enabled",
    ),
    # 5 s preStop + under 1 s of drain + 20 s graceful: 26 leaves the app no time to stop.
    ({"auth": {"terminationGracePeriodSeconds": 26}}, "auth.terminationGracePeriodSeconds must exceed"),
    (
        {"inference": {"predictionLog": {"enabled": True, "volume": {"sizeLimit": "500Mi"}}}},
        "= 629145600 bytes must fit the emptyDir's sizeLimit 500Mi",
    ),
    (
        {"inference": {"predictionLog": {"enabled": True, "rotation": {"maxBytes": 0}}}},
        "= 0 bytes must fit the emptyDir's sizeLimit",
    ),
    (
        {"inference": {"predictionLog": {"enabled": True, "volume": {"type": "persistentVolumeClaim"}}}},
        "needs inference.predictionLog.volume.claimName",
    ),
    (
        {"auth": {"state": {"url": "redis://valkey:6379/0"}}},
        "auth.state.url with networkPolicy.enabled needs networkPolicy.stateStore.cidrs",
    ),
    (
        {
            "auth": {"state": {"url": "redis://valkey", "tls": {"caSecret": "ca"}}},
            "networkPolicy": {"enabled": False},
        },
        "auth.state.tls.caSecret needs a rediss://",
    ),
    (
        {
            "auth": {
                "state": {"url": "redis://v"},
                "autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 3},
            },
            "networkPolicy": {"enabled": False},
        },
        "auth.autoscaling.minReplicas must not exceed",
    ),
]


@pytest.mark.parametrize(("values", "message"), _INVALID, ids=[m for _, m in _INVALID])
def test_invalid_combinations_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    chart = helm_python.Chart.load(CHART)
    with pytest.raises(helm_python.HelmError, match=message.replace(".", r"\.")):
        chart.render(values, name="rel", namespace="ml", is_install=True)


@pytest.mark.parametrize(
    "values", [{"replicaCount": 2}, {"autoscaling": {"enabled": True}}], ids=["replicas", "autoscaling"]
)
def test_auth_scales_out_only_with_the_shared_store_even_without_the_schema(
    tmp_path: Path, values: dict[str, Any]
) -> None:
    """The schema refuses more than one auth pod without auth.state.url; with schema validation skipped
    (``helm install --skip-schema-validation``) the template still fails, and says why."""
    chart = helm_python.Chart.load(CHART)
    with pytest.raises(helm_python.HelmError, match="auth"):
        chart.render({"auth": values}, name="rel", namespace="ml", is_install=True)
    unchecked = tmp_path / "modelberth"
    shutil.copytree(CHART, unchecked)
    (unchecked / "values.schema.json").unlink()
    with pytest.raises(helm_python.HelmError) as caught:
        helm_python.Chart.load(unchecked).render(
            {"auth": values}, name="rel", namespace="ml", is_install=True
        )
    assert "auth.replicaCount > 1 and auth.autoscaling need auth.state.url (Redis or Valkey)" in str(
        caught.value
    )
    shared = {**values, "state": {"url": "redis://valkey:6379/0"}}
    network = {"stateStore": {"podSelector": {"matchLabels": {"app": "valkey"}}}}
    rendered = chart.render(
        {"auth": shared, "networkPolicy": network}, name="rel", namespace="ml", is_install=True
    )
    assert rendered


_SCHEMA_ERRORS = [
    ({"auth": {"replicaCount": "two"}}, "replicaCount"),
    ({"inference": {"service": {"port": "8002"}}}, "port"),
    ({"ingress": {"enabled": "yes"}}, "enabled"),
    ({"inference": {"model": {"source": "s3"}}}, "source"),
    ({"ui": {"replicas": 2}}, "replicas"),
    ({"ingres": {"enabled": False}}, "ingres"),
    ({"auth": {"securityContext": {"allowPrivilegeEscalation": True}}}, "allowPrivilegeEscalation"),
    ({"monitoring": {"serviceMonitor": {"interval": 15}}}, "interval"),
    ({"ingress": {"forwardedAllowIps": "10.0.0.0/8"}}, "forwardedAllowIps"),
    ({"ingress": {"forwardedAllowIps": ["*"]}}, "forwardedAllowIps"),
    ({"ingress": {"forwardedAllowIps": ["10.0.0.0/8; rm -rf"]}}, "forwardedAllowIps"),
    ({"ui": {"authClient": {"clientId": "has space"}}}, "clientId"),
    ({"ui": {"authClient": {"secretKey": "a/b"}}}, "secretKey"),
    # `modelberth train --dataset` takes a bundled dataset's name only; a CSV path fails the Job otherwise.
    ({"inference": {"predictionLog": {"sampleRate": 1.5}}}, "sampleRate"),
    ({"inference": {"predictionLog": {"path": "/x"}}}, "path"),
    ({"inference": {"predictionLog": {"volume": {"sizeLimit": "1.5Gi"}}}}, "sizeLimit"),
    ({"inference": {"predictionLog": {"redact": ["a,b"]}}}, "redact"),
    ({"trainer": {"data": {"dataset": "/models/data/train.csv"}}}, "dataset"),
    # The old key is gone: a CSV goes to trainer.data.pvc or trainer.data.url.
    ({"trainer": {"dataset": "iris"}}, "dataset"),
    ({"trainer": {"data": {"sha256": "abc"}}}, "sha256"),
    ({"trainer": {"data": {"url": "file:///etc/passwd"}}}, "url"),
    ({"trainer": {"data": {"pvc": {"claimName": "d", "path": "/etc/passwd"}}}}, "path"),
    ({"modelStore": {"namespace": "Acme/Models"}}, "namespace"),
    ({"modelStore": {"registry": "https://ghcr.io"}}, "registry"),
    ({"networkPolicy": {"egress": {"registry": {"cidrs": ["ghcr.io"]}}}}, "cidrs"),
    ({"networkPolicy": {"egress": {"registry": {"ports": [0]}}}}, "ports"),
    # Issue 18: never a password in the store's URL, more than one auth pod only with the store.
    ({"auth": {"state": {"url": "redis://:hunter2@valkey:6379/0"}}}, "url"),
    ({"auth": {"state": {"url": "redis://default:hunter2@valkey"}}}, "url"),
    ({"auth": {"state": {"url": "redis://valkey/0?password=hunter2"}}}, "url"),
    ({"auth": {"state": {"url": "http://valkey:6379"}}}, "url"),
    ({"auth": {"state": {"prefix": "has space"}}}, "prefix"),
    ({"auth": {"replicaCount": 3}}, "replicaCount"),
    ({"auth": {"autoscaling": {"enabled": True}}}, "enabled"),
    ({"auth": {"state": {"host": "valkey"}}}, "host"),
    ({"networkPolicy": {"stateStore": {"cidrs": ["10.0.0.1"]}}}, "cidrs"),
    ({"inference": {"maxVersions": 1}}, "maxVersions"),
    ({"inference": {"maxQueued": 0}}, "maxQueued"),
    ({"inference": {"shadow": {"enabled": "yes"}}}, "enabled"),
    ({"inference": {"shadow": {"models": ["Iris"]}}}, "models"),
    ({"inference": {"shadow": {"queueRows": 0}}}, "queueRows"),
    ({"inference": {"shadow": {"alias": "challenger"}}}, "alias"),
]


@pytest.mark.parametrize(("values", "key"), _SCHEMA_ERRORS, ids=[k for _, k in _SCHEMA_ERRORS])
def test_wrong_types_and_unknown_keys_fail_schema_validation(values: dict[str, Any], key: str) -> None:
    chart = helm_python.Chart.load(CHART)
    with pytest.raises(helm_python.HelmValuesError) as caught:
        chart.validate_schema(values)
    assert key in str(caught.value)
    report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] or [m for m in report["messages"] if m["severity"] == 3]


def test_the_trainer_dataset_values_are_the_bundled_datasets() -> None:
    from modelberth_trainer.settings import BUNDLED_DATASETS

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    data = schema["properties"]["trainer"]["properties"]["data"]
    assert data["properties"]["dataset"]["enum"] == list(BUNDLED_DATASETS)


def test_every_value_is_documented() -> None:
    """Each leaf key in values.yaml has a comment line right above it; block headers and the shared
    security anchors (documented as a block) are exempt."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    undocumented = []
    in_anchor = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if line and not line[0].isspace():
            in_anchor = line.startswith("x-")
        if in_anchor or not stripped or stripped.startswith(("#", "- ")) or ":" not in stripped:
            continue
        if stripped.endswith(":"):
            continue  # a block header: its children carry the comments
        if not lines[i - 1].strip().startswith("#"):
            undocumented.append(f"{i + 1}: {line}")
    assert undocumented == []


def test_production_example_pins_every_image_by_digest(
    named_set: Callable[[str], list[Manifest]], workloads: Workloads
) -> None:
    """Why checkov's CKV_K8S_43 (image digest) is skipped globally: the production values pin digests."""
    images = [
        c["image"]
        for _, pod in workloads(named_set("production"))
        if "hook" not in str(pod)
        for c in _containers(pod)
    ]
    assert images
    assert all("@sha256:" in image for image in images), images


def test_scoring_is_an_indexed_job_whose_pods_each_score_one_part(
    named_set: Callable[[str], list[Manifest]], workloads: Workloads
) -> None:
    manifests = named_set("scoring")
    (job, pod) = next(
        (o, p) for o, p in workloads(manifests) if o["metadata"]["name"].startswith("rel-modelberth-scoring")
    )
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 2)
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "FailIndex"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["modelberth", "score"]
    # its own image: pyarrow is only in the Dockerfile's `scoring` target, not in the serving image
    assert container["image"].rsplit(":", 1)[0].endswith("/modelberth-scoring"), container["image"]
    # what the image sets (PYTHONDONTWRITEBYTECODE, the state dir in /tmp...) is not set again (issue 16)
    repeated = ({e["name"] for e in container["env"]} & image_env_names()) - set(CHART_OVERRIDES)
    assert not repeated, repeated
    args = container["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--shard"] == "$(SHARD_INDEX)/4"
    assert pairs["--input"] == "/input/customers-2026-11.parquet"
    assert pairs["--output"] == "/output/scores/2026-11"
    assert pairs["--keep"] == "customer_id"
    assert pairs["--store"] == "/models"
    env = {e["name"]: e for e in container["env"]}
    # $(SHARD_INDEX) expands only from a variable defined before it in the container's env
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert env["OMP_NUM_THREADS"]["value"] == "1"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["input"]["persistentVolumeClaim"] == {"claimName": "scoring-input", "readOnly": True}
    assert volumes["output"]["persistentVolumeClaim"] == {"claimName": "scoring-output"}
    # store and input on claims: the scoring pods get no egress at all (default deny)
    policies = [d["metadata"]["name"] for d in manifests if d["kind"] == "NetworkPolicy"]
    assert not any("scoring" in name for name in policies)


def test_scoring_from_a_url_and_a_registry_reaches_only_those_hosts(
    render: Callable[..., list[Manifest]],
) -> None:
    values = yaml.safe_load((CHART / "ci" / "scoring-values.yaml").read_text(encoding="utf-8"))
    values["scoring"]["input"] = {
        "pvc": {"claimName": "", "path": ""},
        "url": "https://data.example.com/x.csv",
    }
    values["inference"] = {"model": {"source": "registry"}}
    values["modelStore"] = {"registry": "registry.example.com", "namespace": "acme/models"}
    values["networkPolicy"] = {
        "egress": {
            "registry": {"cidrs": ["10.1.0.0/16"], "except": [], "ports": [443]},
            "scoringInput": {"cidrs": ["192.0.2.0/24"], "except": [], "ports": [443]},
        }
    }
    manifests = render(values)
    (policy,) = [d for d in manifests if d["kind"] == "NetworkPolicy" and "scoring" in d["metadata"]["name"]]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "scoring"
    blocks = [p["to"][0].get("ipBlock", {}).get("cidr") for p in policy["spec"]["egress"]]
    assert blocks == [None, "10.1.0.0/16", "192.0.2.0/24"]  # DNS, the registry, the input host
    job = next(d for d in manifests if d["kind"] == "Job" and "scoring" in d["metadata"]["name"])
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--input") + 1] == "https://data.example.com/x.csv"
    assert args[args.index("--store") + 1] == "oci://registry.example.com/acme/models"
    values["networkPolicy"]["egress"]["scoringInput"]["cidrs"] = []
    with pytest.raises(Exception, match="scoringInput"):
        render(values)


def test_grpc_port_service_probe_and_ingress_are_wired(
    render: Callable[[dict[str, Any] | None], list[Manifest]],
) -> None:
    """The OIP gRPC listener: a named container port, the Service's grpc port (h2c), the setting the process
    reads, an optional grpc readiness probe, and an Ingress of its own only when asked (TLS on)."""
    from modelberth_inference.settings import Settings

    default = render(None)
    env = {e["name"]: e.get("value") for e in _inference_env(_inference_pod(default))}
    assert Settings(grpc_port=env["INFERENCE_GRPC_PORT"]).grpc_port == 8012
    (service,) = [
        d for d in default if d["kind"] == "Service" and d["metadata"]["name"].endswith("-inference")
    ]
    assert service["spec"]["ports"][1] == {
        "name": "grpc", "port": 8012, "targetPort": "grpc", "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    }  # fmt: skip
    (container,) = _inference_pod(default)["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert [d for d in default if d["kind"] == "Ingress"] == [
        d for d in default if d["kind"] == "Ingress" and not d["metadata"]["name"].endswith("-inference-grpc")
    ]

    probed = _inference_pod(render({"inference": {"grpc": {"readinessProbe": True, "port": 9012}}}))
    (container,) = probed["containers"]
    assert container["readinessProbe"]["grpc"] == {"port": 9012, "service": ""}
    assert "httpGet" not in container["readinessProbe"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}

    off = render({"inference": {"grpc": {"enabled": False}}})
    (container,) = _inference_pod(off)["containers"]
    assert [p["name"] for p in container["ports"]] == ["http"]
    env = {e["name"]: e.get("value") for e in _inference_env(_inference_pod(off))}
    assert Settings(grpc_port=env["INFERENCE_GRPC_PORT"]).grpc_port == 0
    (service,) = [d for d in off if d["kind"] == "Service" and d["metadata"]["name"].endswith("-inference")]
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]

    routed = render(
        {
            "ingress": {"tls": {"enabled": True, "secretName": "tls"}},
            "inference": {"grpc": {"ingress": {"enabled": True, "annotations": {"a": "b"}}}},
        }
    )
    (grpc_ingress,) = [
        d for d in routed if d["kind"] == "Ingress" and d["metadata"]["name"].endswith("-grpc")
    ]
    assert grpc_ingress["metadata"]["annotations"] == {
        "a": "b", "nginx.ingress.kubernetes.io/backend-protocol": "GRPC"
    }  # fmt: skip
    (rule,) = grpc_ingress["spec"]["rules"]
    assert rule["host"] == "modelberth.local"
    assert rule["http"]["paths"] == [
        {
            "path": "/inference.GRPCInferenceService",
            "pathType": "Prefix",
            "backend": {"service": {"name": "rel-modelberth-inference", "port": {"name": "grpc"}}},
        }
    ]
    assert grpc_ingress["spec"]["tls"] == [{"hosts": ["modelberth.local"], "secretName": "tls"}]
