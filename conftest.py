"""Fixtures every package's tests share: a clean environment, free ports, real service processes and a
small real model artifact written through the contract.

Lives at the repository root so that ``pytest`` from the root gives it to every package's tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.registry import Registry, registry_fixture

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """A service started with ``modelberth serve NAME`` on a free port, as a real OS process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


def wait_ready(url: str, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})")


def _service_starter(
    directory: Path, base_env: dict[str, str] | None = None
) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(
        name: str, env: dict[str, str] | None = None, ready_path: str = "/readyz", timeout: float = 60.0
    ) -> ServiceProcess:
        port = free_port()
        log_path = directory / f"{name}-{port}.log"
        full_env = {**(os.environ if base_env is None else base_env), **(env or {})}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelberth_core.cli", "serve", name, "--port", str(port)],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        service = ServiceProcess(name, f"http://127.0.0.1:{port}", process, log_path)
        started.append(service)
        try:
            wait_ready(service.url + ready_path, timeout, process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not become ready: {exc}\n{service.logs()[-4000:]}") from exc
        return service

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory: ``start_service("auth", env={...})`` runs the service on a free port and waits for /readyz.

    Every process started is stopped (by its PID) when the test ends.
    """
    yield from _service_starter(tmp_path)


@pytest.fixture(scope="module")
def start_module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServiceProcess]]:
    """``start_service`` for a whole module (tests that only read share one process; a start takes seconds),
    in an environment cleaned as ``_clean_env`` cleans each test's."""
    directory = tmp_path_factory.mktemp("services")
    env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIXES)}
    env.update(MODELBERTH_STATE_DIR=str(directory / "state"), INFERENCE_GRPC_PORT=GRPC_OFF)
    yield from _service_starter(directory, env)


def write_tiny_artifact(
    model_dir: Path | str | Any,
    name: str = "iris",
    rows: int = 60,
    now: datetime | None = None,
    alias: str = "champion",
) -> Path:
    """Fit a small real Pipeline on iris, publish it into the store (a directory, an ``oci://`` location or
    an open ModelStore) and make it champion (like a version the trainer promoted), or point another
    ``alias`` at it (``challenger``: a version the gate refused).

    Fast (well under a second) and complete enough for inference and UI tests; the trainer's own tests
    and the contract test cover artifacts the trainer writes.
    """
    import joblib
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from modelberth_core import contract
    from modelberth_core.store import CHAMPION, ModelStore, open_store
    from modelberth_trainer.train import versions

    iris = load_iris(as_frame=True)
    frame = iris.frame.sample(n=rows, random_state=0)
    features = [c.replace(" (cm)", "").replace(" ", "_") for c in iris.feature_names]
    x = frame[iris.feature_names].set_axis(features, axis=1)
    y = np.asarray(iris.target_names)[frame["target"].to_numpy()]
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    pipeline = Pipeline(
        [
            ("prep", ColumnTransformer([("num", numeric, features)])),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )
    pipeline.fit(x, y)
    store = model_dir if isinstance(model_dir, ModelStore) else open_store(model_dir)
    version = store.new_version(name, now or datetime.now(UTC))
    with store.staging(name) as staged:
        joblib.dump(pipeline, staged / contract.MODEL_FILE)
        x.head(10).to_csv(staged / contract.EXAMPLES_FILE, index=False)
        (staged / contract.REPORT_FILE).write_text("<html><body>tiny</body></html>", encoding="utf-8")
        profile: dict[str, contract.Profile] = {}
        specs = []
        for col in features:
            values = x[col].to_numpy(dtype=float)
            edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1])).tolist()
            counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
            profile[col] = contract.NumericProfile(edges=edges, frequencies=(counts / counts.sum()).tolist())
            specs.append(
                contract.FeatureSpec(
                    name=col,
                    type="numeric",
                    required=True,
                    min=float(values.min()),
                    max=float(values.max()),
                    example=float(np.median(values)),
                )
            )
        accuracy = float((pipeline.predict(x) == y).mean())
        card = contract.ModelCard(
            name=name,
            version=version,
            created_at=datetime.now(UTC),
            task="classification",
            target="species",
            classes=[str(c) for c in pipeline.classes_],
            features=specs,
            metrics=contract.Metrics(
                primary="f1_macro",
                greater_is_better=True,
                cv={"f1_macro": accuracy},
                test={"f1_macro": accuracy, "accuracy": accuracy},
            ),
            selected=contract.SelectedInfo(
                candidate="logistic", estimator="LogisticRegression", params={"C": 1.0}
            ),
            leaderboard=[
                contract.LeaderboardRow(
                    candidate="logistic",
                    estimator="LogisticRegression",
                    cv_score=accuracy,
                    cv_std=0.0,
                    fit_seconds=0.01,
                    n_configs=1,
                    params={"C": 1.0},
                )
            ],
            data=contract.DataInfo(
                source="sklearn:iris", rows=rows, columns=5, sha256="0" * 64, train_rows=rows, test_rows=0
            ),
            versions=versions(),  # what the trainer writes into its own cards
            model_sha256=contract.sha256_file(staged / contract.MODEL_FILE),
            reference_profile=profile,
        )
        store.publish(staged, card)
    # Served at once, as a version that passed the promotion gate would be (or the alias asked for).
    store.move_alias(
        name, alias, version, reason="promote" if alias == CHAMPION else "gate", detail="test artifact"
    )
    return store.fetch(name, version)


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


class Prometheus:
    """A real Prometheus process with a 1 s scrape interval, queried over its HTTP API."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.http = httpx.Client(base_url=url, timeout=10.0, trust_env=False)

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (``status: starting`` while it is not listening yet)."""
        try:
            response = self.http.get("/api/v1/query", params={"query": expr})
        except httpx.TransportError:  # not listening yet
            return {"status": "starting", "data": {"result": []}}
        if response.status_code == 503:  # still starting: the TSDB is not open yet
            return {"status": "starting", "data": {"result": []}}
        body: dict[str, Any] = response.json()
        return body

    def value(self, expr: str) -> float:
        """The first sample's value of an instant query, NaN when there is none."""
        result = self.query(expr).get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else float("nan")

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll ``condition`` until it holds; fail if Prometheus exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            if condition():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """``prometheus({job: "host:port"}, rule_files=[...])`` starts a real Prometheus (Debian's package)
    scraping the targets every second; it is stopped by its PID when the test ends."""
    started: list[Prometheus] = []

    def start(targets: dict[str, str], rule_files: Sequence[Path] = ()) -> Prometheus:
        from modelberth_core.stack import prometheus_config

        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps(prometheus_config(targets, scrape_interval="1s", rule_files=rule_files)))
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        prom = Prometheus(f"http://127.0.0.1:{port}", process, log)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.http.close()
        if prom.process.poll() is None:
            prom.process.send_signal(signal.SIGTERM)
            try:
                prom.process.wait(30)
            except subprocess.TimeoutExpired:
                prom.process.kill()
