"""The container images, built and run in a real Docker engine (``make test-images``; marker ``docker``).

One module-scoped pipeline, checked step by step:

1. the engine (started if none answers, stopped again at the end if this module started it), a stand-in
   for ``python:3.11-slim-bookworm`` (debootstrap, cached by tag), the four service images from
   ``docker/Dockerfile`` with the classic builder, ``auth`` once more with BuildKit, and an iris model image
   trained inside the trainer image;
2. static checks: size budgets, OCI labels, numeric user, exec-form CMD, nothing from the build (uv,
   compilers, the proxy CA, pip.conf, tests, .env) in a final image, a model image that is the artifact
   plus a static copier;
3. the stack, wired from the chart's own rendered Deployments (same env vars, same mount paths, the model
   init container's command): auth, inference and ui as uid 10001 with a read-only root filesystem and a
   tmpfs /tmp, a token, a prediction, a short Locust run that must pass its gate;
4. SIGTERM: each container finishes a request that is in flight and exits within the pod's grace period.

Traffic goes to 127.0.0.1 only: the engine has no bridge network, containers use ``--network host`` and
listen on 127.0.0.1 on free ports. Host and port are the only settings that differ from the chart's.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.services import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
STATE = REPO / ".modelberth"
"""Engine pid file, build logs and the timing report (git-ignored)."""
DOCKER = shutil.which("/usr/bin/docker") or shutil.which("docker") or "docker"
SERVICES = ("auth", "inference", "ui", "trainer")
IMAGE_TAG = "smoke"
"""A tag of its own, so the smoke run never replaces images `make images` built on the official base."""
SIZE_LIMITS_MB = {"inference": 450, "auth": 250}
"""Budgets from the issue, in MB of 10^6 bytes as `docker images` shows them."""
UID = "10001"
RELEASE, NAMESPACE = "mb", "default"


# ---- helpers -------------------------------------------------------------------------------------------


def _script_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MODELBERTH_", "AUTH_", "INFERENCE_", "UI_"))
    }
    env["MODELBERTH_STATE_DIR"] = str(STATE)
    env.update(extra)
    return env


def _run(args: list[str], *, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    """Run a command; on failure the assertion shows its output."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def docker(*args: str, timeout: float = 600) -> str:
    return _run([DOCKER, *args], timeout=timeout)


def inspect(ref: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(docker("image", "inspect", ref))[0]
    return info


def wait_ready(url: str, container: str, timeout: float = 180.0) -> None:
    """Poll ``url`` until 200; fail early (with the logs) if the container stops."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        state = docker("inspect", "--format", "{{.State.Running}}", container).strip()
        assert state == "true", f"{container} stopped before {url} was ready:\n{container_logs(container)}"
        try:
            response = httpx.get(url, timeout=3.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {timeout:.0f} s ({last}):\n{container_logs(container)}")


def container_logs(name: str) -> str:
    proc = subprocess.run([DOCKER, "logs", "--tail", "60", name], capture_output=True, text=True, check=False)
    return proc.stdout + proc.stderr


# ---- the pipeline: engine, images, chart wiring --------------------------------------------------------


@dataclass
class Build:
    base: str
    revision: str
    images: dict[str, str]
    model_image: str


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    """Sizes and timings of this run, written to .modelberth/docker/smoke-report.json at the end."""
    data: dict[str, Any] = {"images_mb": {}, "seconds": {}, "sigterm_stop_seconds": {}}
    t0 = time.monotonic()
    yield data
    data["seconds"]["whole module"] = time.monotonic() - t0
    data["seconds"] = {key: round(value, 1) for key, value in data["seconds"].items()}
    (STATE / "docker").mkdir(parents=True, exist_ok=True)
    (STATE / "docker" / "smoke-report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def engine(report: dict[str, Any]) -> Iterator[str]:
    """A Docker engine; stopped at the end only if this module started it (by its recorded PID)."""
    started = _run([str(SCRIPTS / "docker-engine.sh"), "start"], env=_script_env()).strip() == "started"
    yield DOCKER
    if started:
        _run([str(SCRIPTS / "docker-engine.sh"), "stop"], env=_script_env())


@pytest.fixture(scope="module")
def build(engine: str, report: dict[str, Any]) -> Iterator[Build]:
    """The stand-in base, the four images (classic builder) and an iris model image; timings recorded."""
    seconds: dict[str, float] = report["seconds"]
    t0 = time.monotonic()
    base = _run([str(SCRIPTS / "docker-base-image.sh")], env=_script_env(), timeout=900).split()[-1]
    seconds["base image"] = time.monotonic() - t0
    # One revision for every image, even if someone commits while this runs.
    revision = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"]).strip()
    env = _script_env(BASE_IMAGE=base, IMAGE_TAG=IMAGE_TAG, REVISION=revision)
    env.pop("DOCKER_BUILDKIT", None)
    t0 = time.monotonic()
    _run([str(SCRIPTS / "docker-build.sh"), *SERVICES], env=env, timeout=1800)
    seconds["service images (classic builder)"] = time.monotonic() - t0
    t0 = time.monotonic()
    out = _run(
        [str(SCRIPTS / "docker-model-image.sh"), "--dataset", "iris", "--time-budget", "5"],
        env={**env, "BUILD_TRAINER": "0"},
        timeout=900,
    )
    seconds["model image (train + build)"] = time.monotonic() - t0
    images = {svc: f"modelberth-{svc}:{IMAGE_TAG}" for svc in SERVICES}
    result = Build(base=base, revision=revision, images=images, model_image=out.split()[-1])
    for ref in [*images.values(), result.model_image]:
        report["images_mb"][ref] = round(inspect(ref)["Size"] / 1e6, 1)
    yield result
    # Keep the engine's disk from growing run after run: this run's model image, and our own final
    # images that a newer build untagged (with them go their now unreferenced intermediate layers).
    source = inspect(images["auth"])["Config"]["Labels"]["org.opencontainers.image.source"]
    subprocess.run([DOCKER, "rmi", result.model_image], capture_output=True, check=False, timeout=120)
    subprocess.run(
        [DOCKER, "image", "prune", "--force", "--filter", f"label=org.opencontainers.image.source={source}"],
        capture_output=True,
        check=False,
        timeout=300,
    )


def render_chart(public_url: str) -> dict[str, dict[str, Any]]:
    """The chart's Deployments by component, rendered with helm's own engine (helm-python-sdk)."""
    from testkit import chart

    deployments = chart.by_kind({"publicUrl": public_url}, release=RELEASE, namespace=NAMESPACE)["Deployment"]
    return {doc["metadata"]["labels"].get("app.kubernetes.io/component", ""): doc for doc in deployments}


def pod_container(deployment: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    spec = deployment["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = spec.get("initContainers" if init else "containers") or []
    for container in containers:
        if container["name"] == name:
            return container
    raise AssertionError(
        f"no {'init ' if init else ''}container {name!r} in the chart's {deployment['metadata']['name']}"
    )


def chart_env(
    container: dict[str, Any],
    urls: dict[str, str],
    ports: dict[str, int],
    secrets: dict[tuple[str, str], str] | None = None,
) -> dict[str, str]:
    """The container's env from the chart, with in-cluster service URLs pointed at 127.0.0.1 and
    ``secretKeyRef`` values taken from ``secrets`` ((Secret name, key) -> value)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and (ref["name"], ref["key"]) in (secrets or {}):
            env[item["name"]] = (secrets or {})[(ref["name"], ref["key"])]
            continue
        assert "value" in item, f"env {item['name']} comes from {item.get('valueFrom')}: teach the smoke test"
        value = str(item["value"])
        for svc in ports:
            value = re.sub(
                rf"https?://[a-z0-9.-]*-{svc}\.{NAMESPACE}\.svc(?:\.cluster\.local)?:\d+", urls[svc], value
            )
        env[item["name"]] = value
    return env


@dataclass
class Service:
    name: str
    container: str
    url: str


@dataclass
class Stack:
    auth: Service
    inference: Service
    ui: Service
    client_id: str
    client_secret: str
    model: str
    version: str
    grace_seconds: int
    """The chart's terminationGracePeriodSeconds minus its preStop sleep: what uvicorn has after SIGTERM."""
    containers: list[str] = field(default_factory=list)
    stop_seconds: dict[str, float] = field(default_factory=dict)

    def token(self) -> str:
        response = httpx.post(
            f"{self.auth.url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


SECURE = ["--read-only", "--user", f"{UID}:{UID}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
"""What the chart's securityContext asks of every container."""


def one_off(image: str, args: list[str], env: dict[str, str], mounts: list[str]) -> str:
    """An init-container-like run: no network, read-only root, uid 10001."""
    cmd = [DOCKER, "run", "--rm", "--network", "none", *SECURE, "--tmpfs", "/tmp:rw,nosuid,nodev"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    for mount in mounts:
        cmd += ["-v", mount]
    return _run([*cmd, image, *args], timeout=300)


def fill_model_volume(build: Build, deployment: dict[str, Any], models_dir: Path) -> tuple[str, str]:
    """Run the chart's model init container command into ``models_dir`` (an emptyDir); the model's name and
    version it copied."""
    init = pod_container(deployment, "model", init=True)
    init_target = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "models")
    models_dir.mkdir()
    models_dir.chmod(0o777)  # an emptyDir is world-writable
    copy = [DOCKER, "run", "--rm", "--network", "none", *SECURE, "-v", f"{models_dir}:{init_target}"]
    if init.get("command"):
        copy += [
            "--entrypoint",
            init["command"][0],
            build.model_image,
            *init["command"][1:],
            *init.get("args", []),
        ]
    else:
        copy += [build.model_image, *init.get("args", [])]
    _run(copy, timeout=120)
    (model_name,) = [p.name for p in models_dir.iterdir() if (p / "latest").is_file()]
    return model_name, (models_dir / model_name / "latest").read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def stack(build: Build, report: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """auth, inference and ui containers wired like the chart wires the pods."""
    work = tmp_path_factory.mktemp("docker-smoke")
    suffix = f"{os.getpid()}-{int(time.time())}"
    ports = {svc: free_port() for svc in ("auth", "inference", "ui")}
    urls = {svc: f"http://127.0.0.1:{port}" for svc, port in ports.items()}
    deployments = render_chart(public_url=urls["auth"])
    containers: list[str] = []

    def start(svc: str, env: dict[str, str], mounts: list[str], tmpfs: list[str]) -> Service:
        name = f"mb-smoke-{svc}-{suffix}"
        cmd = [
            DOCKER,
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            *SECURE,
            "--stop-timeout",
            str(grace),
        ]
        for path in ["/tmp", *tmpfs]:
            cmd += ["--tmpfs", f"{path}:rw,nosuid,nodev,mode=1777,size=256m"]
        for key, value in env.items():
            cmd += ["-e", f"{key}={value}"]
        for mount in mounts:
            cmd += ["-v", mount]
        container = pod_container(deployments[svc], svc)
        # The chart's command (its args, if any, follow); the image's CMD when the chart sets none.
        command = [*container.get("command", []), *container.get("args", [])]
        _run([*cmd, build.images[svc], *command], timeout=120)
        containers.append(name)
        return Service(svc, name, urls[svc])

    pod = deployments["inference"]["spec"]["template"]["spec"]
    grace = int(pod.get("terminationGracePeriodSeconds", 30))
    prestop = pod_container(deployments["inference"], "inference").get("lifecycle", {}).get("preStop", {})
    after_sigterm = grace - int(prestop.get("sleep", {}).get("seconds", 0))
    try:
        # -- auth: keyset as a read-only "Secret" mount, users file in the writable state dir ("emptyDir").
        auth_c = pod_container(deployments["auth"], "auth")
        auth_env = chart_env(auth_c, urls, ports) | {
            "AUTH_HOST": "127.0.0.1",
            "AUTH_PORT": str(ports["auth"]),
        }
        keyset_file = Path(auth_env["AUTH_KEYSET_FILE"])
        users_file = Path(auth_env["AUTH_USERS_FILE"])
        keys_dir, state_dir = work / "keyset", work / "auth-state"
        for folder in (keys_dir, state_dir):
            folder.mkdir()
            folder.chmod(0o777)
        one_off(
            build.images["auth"],
            ["modelberth", "keys", "generate", "--out", f"/keys/{keyset_file.name}"],
            {},
            [f"{keys_dir}:/keys"],
        )
        client = json.loads(
            one_off(
                build.images["auth"],
                [
                    "modelberth",
                    "clients",
                    "add",
                    "smoke",
                    "--scope",
                    "predict",
                    "--scope",
                    "models:read",
                    "--json",
                ],
                {
                    "AUTH_USERS_FILE": str(users_file),
                    "AUTH_KEYSET_FILE": str(keyset_file),
                    "MODELBERTH_STATE_DIR": str(users_file.parent),
                },
                [f"{state_dir}:{users_file.parent}", f"{keys_dir}:{keyset_file.parent}:ro"],
            )
            .strip()
            .splitlines()[-1]
        )
        # The UI's own confidential client, as auth's init container registers it from the bootstrap Secret.
        ui_client = json.loads(
            one_off(
                build.images["auth"],
                [
                    *("modelberth", "clients", "add", "modelberth-ui", "--client-id", "modelberth-ui"),
                    *("--forwards-user-address", "--json"),
                ],
                {
                    "AUTH_USERS_FILE": str(users_file),
                    "AUTH_KEYSET_FILE": str(keyset_file),
                    "MODELBERTH_STATE_DIR": str(users_file.parent),
                },
                [f"{state_dir}:{users_file.parent}", f"{keys_dir}:{keyset_file.parent}:ro"],
            )
            .strip()
            .splitlines()[-1]
        )
        auth = start(
            "auth", auth_env, [f"{keys_dir}:{keyset_file.parent}:ro", f"{state_dir}:{users_file.parent}"], []
        )

        # -- inference: the model init container's command fills an emptyDir, mounted read-only here.
        inf_c = pod_container(deployments["inference"], "inference")
        model_mount = next(m["mountPath"] for m in inf_c["volumeMounts"] if m["name"] == "models")
        models_dir = work / "models"
        model_name, version = fill_model_volume(build, deployments["inference"], models_dir)
        inf_env = chart_env(inf_c, urls, ports) | {
            "INFERENCE_HOST": "127.0.0.1",
            "INFERENCE_PORT": str(ports["inference"]),
        }
        # The state dir is an emptyDir in the chart: a tmpfs here.
        inference = start(
            "inference", inf_env, [f"{models_dir}:{model_mount}:ro"], [inf_env["MODELBERTH_STATE_DIR"]]
        )

        # -- ui
        ui_c = pod_container(deployments["ui"], "ui")
        bootstrap = {(f"{RELEASE}-modelberth-bootstrap", "ui-client-secret"): ui_client["client_secret"]}
        ui_env = chart_env(ui_c, urls, ports, bootstrap) | {
            "UI_HOST": "127.0.0.1",
            "UI_PORT": str(ports["ui"]),
        }
        ui = start("ui", ui_env, [], [ui_env["MODELBERTH_STATE_DIR"]])

        t0 = time.monotonic()
        for service in (auth, inference, ui):
            wait_ready(f"{service.url}/readyz", service.container)
        report["seconds"]["containers ready"] = time.monotonic() - t0
        stack = Stack(
            auth,
            inference,
            ui,
            client["client_id"],
            client["client_secret"],
            model_name,
            version,
            after_sigterm,
            containers,
        )
        yield stack
        report["sigterm_stop_seconds"] = stack.stop_seconds
    finally:
        for name in containers:
            log = container_logs(name)
            (STATE / "docker").mkdir(parents=True, exist_ok=True)
            (STATE / "docker" / f"{name.rsplit('-', 2)[0]}.log").write_text(log, encoding="utf-8")
            subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, check=False, timeout=60)


# ---- static checks -------------------------------------------------------------------------------------


def test_service_images_fit_their_budgets_and_carry_labels(build: Build) -> None:
    for svc, ref in build.images.items():
        info = inspect(ref)
        config = info["Config"]
        size_mb = info["Size"] / 1e6
        if svc in SIZE_LIMITS_MB:
            assert size_mb < SIZE_LIMITS_MB[svc], (
                f"{ref} is {size_mb:.0f} MB, budget {SIZE_LIMITS_MB[svc]} MB"
            )
        assert config["User"] == f"{UID}:{UID}", ref
        labels = config["Labels"] or {}
        for key in ("source", "revision", "version", "created"):
            assert labels.get(f"org.opencontainers.image.{key}"), (
                f"{ref} lacks org.opencontainers.image.{key}"
            )
        assert labels["org.opencontainers.image.revision"] == build.revision
        # The venv and labels come from the stages parametrised by SERVICE: built for this very target.
        assert labels["org.opencontainers.image.title"] == f"modelberth-{svc}", ref
        assert labels.get("org.opencontainers.image.description", "").startswith(f"modelberth {svc}"), ref
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["PYTHONDONTWRITEBYTECODE"] == "1", ref
        if svc == "trainer":
            assert env["MPLCONFIGDIR"].startswith("/tmp/"), ref
            continue
        # What is a property of the image is set in the image, once (issue 16): the chart does not repeat it.
        assert env[f"{svc.upper()}_HOST"] == "0.0.0.0", ref
        assert config["Cmd"] == ["modelberth", "serve", svc], f"{ref}: CMD must be exec form"
        assert not config.get("Entrypoint")
        (port,) = config["ExposedPorts"]
        assert port == {"auth": "8001/tcp", "inference": "8002/tcp", "ui": "8003/tcp"}[svc]


FORBIDDEN_CHECK = r"""
set -u
bad=0
for tool in uv gcc cc g++ make strip; do
  if command -v "$tool" >/dev/null 2>&1; then echo "tool: $tool at $(command -v "$tool")"; bad=1; fi
done
names='-name pip.conf -o -name .env -o -name build-ca.pem -o -name extra-ca.pem -o -name uv.lock'
for f in $(find / -xdev \( $names \) 2>/dev/null); do
  echo "file: $f"; bad=1
done
for d in /src /tmp/build-certs /opt/uv; do [ -e "$d" ] && { echo "dir: $d"; bad=1; }; done
for d in $(find /opt/venv/lib -type d -path '*modelberth_*' -name tests 2>/dev/null); do
  echo "tests: $d"; bad=1
done
exit $bad
"""


def _extra_ca_lines(image: str) -> list[str]:
    """One distinctive base64 line of each certificate the builder trusted but the base image does not."""
    bundle = REPO / "docker" / "certs" / "extra-ca.pem"
    if not bundle.is_file():
        return []
    pem = re.compile(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", re.S)
    base = _run(
        [
            DOCKER,
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "cat",
            image,
            "/etc/ssl/certs/ca-certificates.crt",
        ]
    )
    known = {body.replace("\n", "") for body in pem.findall(base)}
    lines = []
    for body in pem.findall(bundle.read_text(encoding="utf-8")):
        if body.replace("\n", "") not in known:
            rows = body.split("\n")
            lines.append(rows[len(rows) // 2])
    return lines


def test_final_images_hold_nothing_from_the_build(build: Build) -> None:
    extra_ca = _extra_ca_lines(build.images["auth"])
    for ref in build.images.values():
        proc = subprocess.run(
            [
                DOCKER,
                "run",
                "--rm",
                "--network",
                "none",
                "--user",
                "0",
                "--entrypoint",
                "sh",
                ref,
                "-c",
                FORBIDDEN_CHECK,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert proc.returncode == 0, f"{ref} holds build leftovers:\n{proc.stdout}{proc.stderr}"
        for line in extra_ca:
            found = subprocess.run(
                [DOCKER, "run", "--rm", "--network", "none", "--entrypoint", "grep", ref,
                 "-rlF", "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev", line, "/"],
                capture_output=True, text=True, check=False, timeout=300,
            )  # fmt: skip
            assert found.stdout.strip() == "", f"{ref}: the builder's extra CA is in {found.stdout.split()}"
        history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref)
        assert "build-ca" not in history, f"{ref}: a final-stage layer touches the CA"
        assert "certs" not in history, f"{ref}: a final-stage layer touches the CA"


def test_buildkit_builds_the_same_dockerfile(build: Build, report: dict[str, Any]) -> None:
    """Both builders: the classic one built everything above; BuildKit builds the auth target here."""
    ref = "modelberth-auth:smoke-buildkit"
    env = _script_env(DOCKER_BUILDKIT="1")
    t0 = time.monotonic()
    _run(
        [DOCKER, "build", "--network", "host", "-f", str(REPO / "docker" / "Dockerfile"), "--target", "auth",
         "-t", ref, "--build-arg", "SERVICE=auth", "--build-arg", f"BASE_IMAGE={build.base}",
         "--build-arg", "REVISION=buildkit",
         "--progress", "plain", str(REPO)],
        env=env, timeout=1800,
    )  # fmt: skip
    report["seconds"]["auth (BuildKit)"] = time.monotonic() - t0
    config = inspect(ref)["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Labels"]["org.opencontainers.image.revision"] == "buildkit"
    assert config["Cmd"] == ["modelberth", "serve", "auth"]


def test_model_image_is_the_artifact_and_a_static_copier(build: Build) -> None:
    ref = build.model_image
    info = inspect(ref)
    name, version = ref.rsplit(":", 1)
    labels = info["Config"]["Labels"]
    assert labels["io.modelberth.model.version"] == version
    assert name.endswith(f"model-{labels['io.modelberth.model.name']}")
    assert info["Config"]["User"] == f"{UID}:{UID}"
    container = docker("create", ref).strip()
    try:
        exported = subprocess.run(
            [DOCKER, "export", container], capture_output=True, check=True, timeout=120
        ).stdout
    finally:
        docker("rm", container)
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
    model = labels["io.modelberth.model.name"]
    # docker create adds empty mount points (.dockerenv, etc/hosts, dev/console); the rest is ours.
    ours = [f for f in files if not f.startswith(("etc/", "dev/", ".dockerenv"))]
    assert ours[:2] == ["bin/busybox", "bin/copy-model"]
    assert f"models/{model}/latest" in ours
    assert {"model.joblib", "model.json"} <= {
        Path(f).name for f in ours if f.startswith(f"models/{model}/{version}/")
    }
    assert all(f.startswith(("bin/", f"models/{model}/")) for f in ours), ours
    assert info["Size"] < 20e6, f"{ref} is {info['Size'] / 1e6:.1f} MB"


def test_model_copy_refuses_a_corrupt_artifact(build: Build, tmp_path: Path) -> None:
    """The init container fails (pod does not start) rather than serve a model whose bytes changed."""
    src = tmp_path / "src"
    dst = tmp_path / "dst"
    dst.mkdir()
    dst.chmod(0o777)
    container = docker("create", build.model_image).strip()
    try:
        _run([DOCKER, "cp", f"{container}:/models", str(src)])
    finally:
        docker("rm", container)
    (artifact,) = list(src.glob("*/*/model.joblib"))
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    subprocess.run(["chmod", "-R", "a+rX", str(src)], check=True)
    proc = subprocess.run(
        [DOCKER, "run", "--rm", "--network", "none", "--read-only", "--user", f"{UID}:{UID}",
         "-v", f"{src}:/models:ro", "-v", f"{dst}:/mnt/models", build.model_image],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr
    assert not list(dst.glob("*/2*")), "a corrupt version must not land in the volume"


def test_a_model_image_pushed_by_the_registry_store_pulls_and_its_init_container_copies_it(
    engine: str, tmp_path: Path
) -> None:
    """Issue 15: the image the trainer pushes without a Docker engine is a real, runnable image: the engine
    pulls it from a real registry and the chart's init container command copies the model out of it."""
    from modelberth_core.store import FilesystemStore, open_store
    from testkit.artifacts import write_tiny_artifact
    from testkit.registry import start_registry

    registry = start_registry(tmp_path / "registry")
    pulled: list[str] = []
    try:
        store = open_store(registry.location("mb"), cache_dir=tmp_path / "cache")
        version = write_tiny_artifact(store).name
        image = f"{registry.address}/mb/iris:{version}"
        pulled.append(image)
        docker("pull", image, timeout=300)  # a loopback registry: the engine speaks plain HTTP to it
        info = inspect(image)
        assert info["Config"]["User"] == f"{UID}:{UID}"
        assert info["Config"]["Entrypoint"] == ["/bin/copy-model"]
        assert info["Config"]["Labels"]["io.modelberth.model.version"] == version

        init = pod_container(render_chart("http://modelberth.local")["inference"], "model", init=True)
        target = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "models")
        dst = tmp_path / "emptydir"
        dst.mkdir()
        dst.chmod(0o777)  # an emptyDir is world-writable
        _run(
            [DOCKER, "run", "--rm", "--network", "none", "--read-only", "--user", f"{UID}:{UID}",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-v", f"{dst}:{target}",
             "--entrypoint", init["command"][0], image, *init["command"][1:], *init.get("args", [])],
            timeout=120,
        )  # fmt: skip
        copied = FilesystemStore(dst)  # what inference reads from the emptyDir
        assert copied.resolve("iris").version == version
        pushed = store.fetch("iris", version)
        for name in ("model.joblib", "model.json"):
            assert (copied.fetch("iris", version) / name).read_bytes() == (pushed / name).read_bytes()
    finally:
        registry.stop()
        for ref in pulled:
            subprocess.run([DOCKER, "rmi", "-f", ref], capture_output=True, check=False, timeout=120)


# ---- the running stack ---------------------------------------------------------------------------------


def test_containers_run_as_10001_on_a_read_only_root(stack: Stack) -> None:
    for service in (stack.auth, stack.inference, stack.ui):
        status = docker("exec", service.container, "cat", "/proc/1/status")
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
        assert uids is not None, status
        assert uids.groups() == (UID, UID), f"{service.name}: real/effective uid {uids.groups()}"
        cmdline = docker("exec", service.container, "cat", "/proc/1/cmdline").split("\0")
        assert cmdline[1:4] == ["/opt/venv/bin/modelberth", "serve", service.name], cmdline
        probe = subprocess.run(
            [DOCKER, "exec", service.container, "sh", "-c", "echo x > /opt/venv/probe || echo x > /probe"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert probe.returncode != 0
        assert "Read-only file system" in probe.stderr, probe.stderr
        docker("exec", service.container, "sh", "-c", "echo x > /tmp/probe")  # the tmpfs is writable
        assert (
            docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", service.container).strip()
            == "true"
        )


def test_token_and_prediction_through_the_containers(stack: Stack) -> None:
    token = stack.token()
    headers = {"authorization": f"Bearer {token}"}
    api = stack.inference.url
    models = httpx.get(f"{api}/v1/models", headers=headers, timeout=30)
    assert models.status_code == 200, models.text
    assert stack.model in models.text
    row = httpx.get(f"{api}/v1/models/{stack.model}/examples/0", headers=headers, timeout=30)
    assert row.status_code == 200, row.text
    instance = row.json().get("instance", row.json())
    answer = httpx.post(
        f"{api}/v1/models/{stack.model}/predict", json={"instances": [instance]}, headers=headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == stack.model
    assert body["version"] == stack.version
    assert len(body["predictions"]) == 1
    assert (
        httpx.post(
            f"{api}/v1/models/{stack.model}/predict", json={"instances": [instance]}, timeout=30
        ).status_code
        == 401
    )
    page = httpx.get(f"{stack.ui.url}/", timeout=60)
    assert page.status_code == 200
    assert "gradio" in page.text.lower()


def test_locust_short_run_passes_its_gate(stack: Stack, tmp_path: Path) -> None:
    locustfile = REPO / "loadtest" / "locustfile.py"
    assert locustfile.is_file(), "loadtest/locustfile.py is missing"
    env = _script_env(
        LOCUST_CLIENT_ID=stack.client_id, LOCUST_CLIENT_SECRET=stack.client_secret, LOADTEST_P95_MS="1000"
    )
    report = tmp_path / "locust"
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary",
         "-u", "4", "-r", "4", "-t", "15s", "--stop-timeout", "5",
         "--host", stack.inference.url, "--auth-url", stack.auth.url, "--model", stack.model,
         "--json-file", str(report)],
        capture_output=True, text=True, check=False, timeout=180, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, f"locust gate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    stats = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    total = sum(entry["num_requests"] for entry in stats)
    failures = sum(entry["num_failures"] for entry in stats)
    assert failures == 0
    assert total > 20, f"only {total} requests in 15 s"


def _trickle(body: bytes, pause: float, sent: threading.Event) -> Iterator[bytes]:
    """``body`` in three parts ``pause`` seconds apart: the request is in flight all that time.
    ``sent`` is set once the headers and the first part have been handed to the socket."""
    third = max(1, len(body) // 3)
    for i, part in enumerate((body[:third], body[third : 2 * third], body[2 * third :])):
        if i:
            sent.set()
            time.sleep(pause)
        yield part


def _in_flight_requests(stack: Stack) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """One real, state-free request per service whose body can be trickled: (url, body, headers)."""
    token = stack.token()
    row = httpx.get(
        f"{stack.inference.url}/v1/models/{stack.model}/examples/0",
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    instance = row.get("instance", row)
    boundary = "modelberthsmoke"
    upload = (
        f'--{boundary}\r\ncontent-disposition: form-data; name="files"; filename="rows.csv"\r\n'
        "content-type: text/csv\r\n\r\n"
        + ",".join(instance)
        + "\r\n"
        + ",".join(map(str, instance.values()))
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    return {
        "auth": (
            f"{stack.auth.url}/oauth/token",
            f"grant_type=client_credentials&client_id={stack.client_id}&client_secret={stack.client_secret}".encode(),
            {"content-type": "application/x-www-form-urlencoded"},
        ),
        "inference": (
            f"{stack.inference.url}/v1/models/{stack.model}/predict",
            json.dumps({"instances": [instance] * 50}).encode(),
            {"content-type": "application/json", "authorization": f"Bearer {token}"},
        ),
        "ui": (
            f"{stack.ui.url}/gradio_api/upload",
            upload,
            {"content-type": f"multipart/form-data; boundary={boundary}"},
        ),
    }


def _send_trickled(
    url: str, body: bytes, headers: dict[str, str], sent: threading.Event, result: dict[str, Any]
) -> None:
    try:
        with httpx.Client(timeout=60) as client:
            response = client.post(
                url,
                content=_trickle(body, 1.5, sent),
                headers=headers | {"content-length": str(len(body)), "connection": "close"},
            )
        result["status"] = response.status_code
        result["text"] = response.text[:300]
    except httpx.HTTPError as exc:
        result["error"] = repr(exc)
    finally:
        result["done_at"] = time.monotonic()
        sent.set()


def test_sigterm_lets_in_flight_requests_finish_within_the_grace_period(stack: Stack) -> None:
    """Like a pod stop after the preStop sleep: SIGTERM while a request is in flight; it must complete,
    and the container must exit 0 before the kubelet would SIGKILL it."""
    requests = _in_flight_requests(stack)
    budget = stack.grace_seconds
    for service in (stack.ui, stack.inference, stack.auth):
        url, body, headers = requests[service.name]
        result: dict[str, Any] = {}
        sent = threading.Event()
        sender = threading.Thread(target=_send_trickled, args=(url, body, headers, sent, result))
        sender.start()
        assert sent.wait(30), f"{service.name}: the request was never sent"
        time.sleep(0.3)  # let the server's event loop accept it and parse the headers
        t0 = time.monotonic()
        docker("kill", "--signal", "TERM", service.container)
        sender.join(60)
        exit_code = docker("wait", service.container, timeout=budget + 30).strip()
        stopped_after = time.monotonic() - t0
        stack.stop_seconds[service.name] = round(stopped_after, 1)
        assert "error" not in result, f"{service.name}: in-flight request failed: {result['error']}"
        assert result["status"] == 200, f"{service.name}: {result['status']} {result['text']}"
        assert result["done_at"] > t0 + 1.0, f"{service.name}: the request finished before SIGTERM"
        assert exit_code == "0", f"{service.name} exited {exit_code}:\n{container_logs(service.container)}"
        assert stopped_after < budget, (
            f"{service.name} took {stopped_after:.1f} s to stop (budget {budget} s)"
        )
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{service.url}/healthz", timeout=5)
