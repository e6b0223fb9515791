"""Fixtures every package's tests share, as thin pytest fixtures over :mod:`testkit` (the importable
harness the benchmarks use too): a clean environment, free ports, real service processes, a small real
model artifact, a real registry, Prometheus and Redis.

Lives at the repository root so that ``pytest`` from the root gives it to every package's tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from testkit.artifacts import write_tiny_artifact
from testkit.prometheus import Prometheus, start_prometheus
from testkit.redis_server import RedisServer
from testkit.registry import Registry, registry_fixture
from testkit.services import ServiceLauncher, ServiceProcess, free_port

ENV_PREFIXES = ("AUTH_", "INFERENCE_", "UI_", "TRAINER_", "MODELBERTH_")
REPO_ROOT = Path(__file__).resolve().parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
"""Real public datasets (see its README); tests read them in place, never copy them."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--artifact-dir``: aim the trainer's model tests at an artifact built elsewhere (CI builds one)."""
    parser.addoption(
        "--artifact-dir",
        default=None,
        help="a model version dir (or a model root holding iris/latest) for trainer/tests/model; "
        "default: train one in a session fixture",
    )


GRPC_OFF = "0"
"""Inference's gRPC listener is on by default on one fixed port (8012): two test apps (or a developer's
stack) would fight over it. Tests that drive gRPC give their process a free port."""


@pytest.fixture(scope="session", autouse=True)
def _grpc_off_in_tests() -> Iterator[None]:
    """``INFERENCE_GRPC_PORT=0`` for module- and session-scoped fixtures too (``_clean_env`` runs later)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFERENCE_GRPC_PORT", GRPC_OFF)
        yield


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's settings; local state goes to a per-test folder."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELBERTH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("INFERENCE_GRPC_PORT", GRPC_OFF)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory: ``start_service("auth", env={...})`` runs the service on a free port and waits for /readyz.

    Every process started is stopped (by its PID) when the test ends.
    """
    launcher = ServiceLauncher(tmp_path)
    yield launcher.start
    launcher.stop_all()


@pytest.fixture(scope="module")
def start_module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServiceProcess]]:
    """``start_service`` for a whole module (tests that only read share one process; a start takes seconds),
    in an environment cleaned as ``_clean_env`` cleans each test's."""
    directory = tmp_path_factory.mktemp("services")
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(ENV_PREFIXES):
                patch.delenv(key)
        patch.setenv("MODELBERTH_STATE_DIR", str(directory / "state"))
        patch.setenv("INFERENCE_GRPC_PORT", GRPC_OFF)
        launcher = ServiceLauncher(directory)
        yield launcher.start
        launcher.stop_all()


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """A model store holding one tiny iris artifact (``iris/<version>/``), its ``champion`` and ``latest``."""
    model_dir = tmp_path / "models"
    write_tiny_artifact(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def artifact_factory() -> Callable[..., Path]:
    """``artifact_factory(model_dir, name="iris", rows=60, alias="champion")`` publishes a tiny version and
    points the alias at it; returns its dir."""
    return write_tiny_artifact


@pytest.fixture
def port_factory() -> Callable[[], int]:
    """``port_factory()`` returns a free port on 127.0.0.1."""
    return free_port


@pytest.fixture
def oci_registry(tmp_path: Path) -> Iterator[Registry]:
    """A real, open OCI registry (Debian's docker-registry) on a free port, storage in ``tmp_path``."""
    yield from registry_fixture(tmp_path / "registry")


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """``registry_factory(htpasswd={...} | token=TokenService | tls=True, host=...)``: more registries,
    each stopped (by PID) when the test ends (see testkit/registry.py)."""
    from testkit.registry import start_registry

    started: list[Registry] = []

    def start(**kwargs: Any) -> Registry:
        registry = start_registry(tmp_path / f"registry-{len(started)}", **kwargs)
        started.append(registry)
        return registry

    yield start
    for registry in reversed(started):
        registry.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """``prometheus({job: "host:port"}, rule_files=[...])`` starts a real Prometheus (Debian's package)
    scraping the targets every second; it is stopped by its PID when the test ends."""
    started: list[Prometheus] = []

    def start(targets: dict[str, str], rule_files: Sequence[Path] = ()) -> Prometheus:
        started.append(start_prometheus(tmp_path, targets, rule_files))
        return started[-1]

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture(scope="module")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], RedisServer]]:
    """``redis_servers()`` starts one more real redis-server; all are stopped (by PID) after the module."""
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server (no persistence, a password) for one test."""
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()
