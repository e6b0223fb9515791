"""``modelberth up``: the whole product on one machine, supervised by one process.

On a fresh clone it trains the default model if none exists, creates the ``demo`` user, a load-test
client and the UI's own client (which vouches for the browser's address on logins), starts auth,
inference and ui (and, with ``--with-prometheus``, a real Prometheus) as child processes, waits for each
``/readyz`` by polling, prints the URLs, the credentials and a copy-paste curl, and on Ctrl-C / SIGTERM
stops everything: each child gets SIGTERM, so uvicorn lets in-flight requests finish. A child that dies is
reported and the stack stops with a non-zero exit code.

Everything heavy runs in subprocesses (``modelberth train``, ``modelberth users add``...): this module
imports only the standard library at import time, so ``modelberth --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

SERVICES = ("auth", "inference", "ui")
GRPC = "inference-grpc"
"""The port of inference's OIP V2 gRPC listener (``INFERENCE_GRPC_PORT``; 0 turns it off)."""
"""Started in this order, stopped in the reverse one (the UI first, auth last)."""
DEFAULT_PORTS = {"auth": 8001, "inference": 8002, "ui": 8003, "prometheus": 9090, GRPC: 8012}
DEFAULT_DATASET = "iris"
DEMO_USER = "demo"
DEMO_SCOPES = ("predict", "models:read")
LOADTEST_CLIENT = "loadtest"
LOADTEST_SCOPES = ("predict", "models:read")
UI_CLIENT = "modelberth-ui"
"""Name and client id of the UI's confidential client (``forwards_user_address``: issue 13, point 2)."""
DEMO_CREDENTIALS_FILE = "demo-credentials.json"
LOADTEST_CLIENT_FILE = "loadtest-client.json"
UI_CLIENT_FILE = "ui-client.json"
PIDS_FILE = "stack.json"
PROMETHEUS_NAMESPACE = "local"
"""The ``namespace`` label the local Prometheus attaches, so dashboards' ``$namespace`` works unchanged."""

EXIT_FAILED = 1
"""A child died, did not get ready, or a setup step failed."""
EXIT_USAGE = 2
"""Nothing was started: a port is taken, the stack already runs, or a tool is missing."""
EXIT_INTERRUPTED = 130


class Process(Protocol):
    """What the supervisor needs of a child process (``subprocess.Popen`` has it)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


@dataclass
class Child:
    """One supervised process: its name, handle, log file and readiness URL."""

    name: str
    process: Process
    ready_url: str | None = None
    log_path: Path | None = None
    ready: bool = False

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the process wrote (for reporting a crash)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class StackError(Exception):
    """The stack cannot start or keep running; the message says why."""


class ChildExitedError(StackError):
    """A child exited while it should have been running."""

    def __init__(self, child: Child, code: int) -> None:
        super().__init__(f"{child.name} (pid {child.process.pid}) exited with code {code}")
        self.child = child
        self.code = code


class StopRequestedError(StackError):
    """SIGINT or SIGTERM arrived while waiting."""


def http_ready(url: str) -> bool:
    """True when ``GET url`` answers 200 (one attempt, short timeout)."""
    import httpx

    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


FORCE_AFTER_SECONDS = 1.0
"""A second stop signal at least this long after the first kills the children instead of waiting."""


class Supervisor:
    """Starts nothing itself: watches children, waits for their readiness and stops them in order."""

    def __init__(
        self,
        out: TextIO,
        probe: Callable[[str], bool] = http_ready,
        poll_seconds: float = 0.2,
    ) -> None:
        self.out = out
        self.probe = probe
        self.poll_seconds = poll_seconds
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self.force = threading.Event()
        self._first_signal_at = float("-inf")

    def add(self, child: Child) -> Child:
        """Supervise ``child`` from now on."""
        self.children.append(child)
        return child

    def request_stop(self, _signum: int, _frame: FrameType | None = None) -> None:
        """Signal handler: the first signal stops gracefully, a second one kills what is left.

        A terminal's Ctrl-C reaches make, ``uv run`` and this process at once, and ``uv run`` forwards it
        once more: signals within ``FORCE_AFTER_SECONDS`` of the first count as that same request.
        """
        now = time.monotonic()
        if self.stop_requested.is_set():
            if now - self._first_signal_at >= FORCE_AFTER_SECONDS:
                self.force.set()
            return
        self._first_signal_at = now
        self.stop_requested.set()

    def check_alive(self) -> None:
        """Raise :class:`ChildExitedError` for the first child that is no longer running."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise ChildExitedError(child, code)

    def wait_ready(self, timeout: float) -> None:
        """Poll every child's readiness URL until all answer 200; fail fast if one exits or a signal came."""
        start = time.monotonic()
        deadline = start + timeout
        pending = [c for c in self.children if c.ready_url and not c.ready]
        while pending:
            if self.stop_requested.is_set():
                raise StopRequestedError("stop requested while starting")
            self.check_alive()
            for child in list(pending):
                if child.ready_url is not None and self.probe(child.ready_url):
                    child.ready = True
                    pending.remove(child)
                    self._say(f"  {child.name:<10} ready after {time.monotonic() - start:.1f} s")
            if not pending:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(c.name for c in pending)
                raise StackError(f"not ready after {timeout:.0f} s: {names}")
            self.stop_requested.wait(self.poll_seconds)

    def watch(self) -> None:
        """Block until a signal arrives (returns) or a child exits (raises :class:`ChildExitedError`)."""
        while not self.stop_requested.is_set():
            self.check_alive()
            self.stop_requested.wait(self.poll_seconds)

    def stop(self, timeout: float) -> bool:
        """SIGTERM each running child in reverse start order and wait for it; SIGKILL after ``timeout``.

        Returns True when every child exited on its own after SIGTERM (none had to be killed).
        """
        clean = True
        for child in reversed(self.children):
            process = child.process
            if process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline and not self.force.is_set():
                self.force.wait(0.05)
            code = process.poll()
            if code is None:
                clean = False
                process.kill()
                code = process.wait(5.0)
                why = "second Ctrl-C" if self.force.is_set() else f"did not stop within {timeout:.0f} s"
                self._say(f"  {child.name:<10} killed ({why})")
            else:
                # uvicorn re-raises the SIGTERM after its graceful shutdown, so -15 is a clean stop too.
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
                self._say(f"  {child.name:<10} stopped ({how})")
        return clean

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


# --- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackConfig:
    """Everything ``modelberth up`` needs; built from flags, which default to environment variables."""

    store: str
    state_dir: Path
    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    dataset: str = DEFAULT_DATASET
    model: str | None = None
    with_prometheus: bool = False
    rules_dir: Path | None = None
    ready_timeout: float = 180.0
    stop_timeout: float = 30.0

    def url(self, service: str) -> str:
        """Base URL of ``service`` (auth, inference, ui, prometheus)."""
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def logs_dir(self) -> Path:
        """Where each child's stdout and stderr go (``<state_dir>/logs/<name>.log``)."""
        return self.state_dir / "logs"


def modelberth_command(*args: str) -> list[str]:
    """argv running the ``modelberth`` CLI with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "modelberth_cli", *args]


def base_env(config: StackConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment every child shares: the caller's, plus the state dir and offline Gradio."""
    env = dict(environ)
    env["MODELBERTH_STATE_DIR"] = str(config.state_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def service_env(
    config: StackConfig, name: str, env: Mapping[str, str], ui_client: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The cross-wiring for one service: inference trusts auth's JWKS and issuer, the UI calls both (with
    ``ui_client``'s credentials, given to the UI process only)."""
    auth_url = config.url("auth")
    issuer = env.get("AUTH_ISSUER") or auth_url
    wired = dict(env)
    if name == "auth":
        wired["AUTH_ISSUER"] = issuer
    elif name == "inference":
        wired["INFERENCE_STORE"] = config.store
        wired["INFERENCE_AUTH_JWKS_URL"] = f"{auth_url}/.well-known/jwks.json"
        wired["INFERENCE_AUTH_ISSUER"] = issuer
        wired["INFERENCE_GRPC_PORT"] = str(config.ports.get(GRPC, 0))
    elif name == "ui":
        wired["UI_AUTH_URL"] = auth_url
        wired["UI_INFERENCE_URL"] = config.url("inference")
        if ui_client is not None:
            wired["UI_CLIENT_ID"] = ui_client["client_id"]
            wired["UI_CLIENT_SECRET"] = ui_client["client_secret"]
    return wired


def service_command(config: StackConfig, name: str) -> list[str]:
    """argv of ``modelberth serve NAME`` on the configured host and port."""
    argv = modelberth_command("serve", name, "--host", config.host, "--port", str(config.ports[name]))
    if name == "inference":
        argv += ["--store", config.store]
    return argv


def prometheus_config(
    targets: Mapping[str, str],
    *,
    scrape_interval: str = "5s",
    rule_files: Sequence[Path] = (),
    namespace: str = PROMETHEUS_NAMESPACE,
) -> dict[str, Any]:
    """A Prometheus configuration scraping ``{job: "host:port"}``, each with a ``namespace`` label.

    Jobs are named like the Kubernetes Services (``modelberth-auth``...), so the dashboards' and alert
    rules' ``job`` matchers behave the same locally and in the cluster. JSON is valid YAML.
    """
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target], "labels": {"namespace": namespace}}],
            }
            for job, target in targets.items()
        ],
    }


def find_rules_dir() -> Path | None:
    """The chart's alert rules (``charts/modelberth/files/alerts``) of the source checkout this package runs
    from, or of the working directory."""
    for root in (Path(__file__).resolve().parents[4], Path.cwd()):
        candidate = root / "charts" / "modelberth" / "files" / "alerts"
        if candidate.is_dir():
            return candidate
    return None


# --- setup steps (each a subprocess of the modelberth CLI) ---------------------------------------------

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def run_cli(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``modelberth ARGS`` and capture its output (stdin is the only way secrets go in)."""
    return subprocess.run(
        modelberth_command(*args), input=stdin, env=dict(env), capture_output=True, text=True, check=False
    )


def _must(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise StackError(f"{what} failed (exit {result.returncode}): {detail}")
    return result.stdout


def _served_models(store: str) -> list[str]:
    """Models of the store that have a champion: what inference will serve."""
    from modelberth_core.store import StoreError, open_store

    opened = open_store(store)
    served = []
    for name in opened.models():
        try:
            opened.resolve(name)
        except StoreError:
            continue
        served.append(name)
    return served


def ensure_model(config: StackConfig, env: Mapping[str, str], out: TextIO) -> str:
    """The model to show in the curl; trains ``config.dataset`` first when the store holds no model."""
    from modelberth_core.store import StoreError, open_store

    try:
        known = open_store(config.store).models()
        if not known:
            out.write(f"No model in {config.store}: training {config.dataset!r} first...\n")
            out.flush()
            # The trainer's progress goes to the console: training is the one slow step of a first start.
            argv = modelberth_command("train", "--dataset", config.dataset, "--store", config.store)
            code = subprocess.run(argv, env=dict(env), check=False).returncode
            if code != 0:
                raise StackError(f"training {config.dataset!r} failed (exit {code})")
        models = _served_models(config.store)
    except StoreError as exc:
        raise StackError(str(exc)) from exc
    if not models:
        raise StackError(
            f"no model in {config.store} has a champion to serve;"
            " see `modelberth models list` and promote one with `modelberth models promote NAME VERSION`"
        )
    if config.model:
        if config.model not in models:
            raise StackError(f"model {config.model!r} has no champion in {config.store} (these do: {models})")
        return config.model
    return config.dataset if config.dataset in models else models[0]


def example_row(store: str, name: str) -> dict[str, Any]:
    """One valid input row for model ``name``'s champion, from its card's example values (for the curl)."""
    from modelberth_core.store import StoreError, open_store

    opened = open_store(store)
    try:
        champion = opened.resolve(name)
    except StoreError:
        return {}
    card = opened.card(name, champion.version)
    row: dict[str, Any] = {}
    for feature in card.features:
        value: Any = feature.example
        if value is None:
            if feature.type == "numeric":
                value = feature.min if feature.min is not None else 0.0
            elif feature.categories:
                value = feature.categories[0]
            else:
                value = ""
        row[feature.name] = value
    return row


def write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class DemoCredentials:
    """The demo user's login; the file holds exactly the body ``POST /auth/login`` expects."""

    username: str
    password: str
    path: Path
    created: bool
    """True when the password was generated on this start (so it is printed, once)."""
    from_env: bool = False
    """True when ``MODELBERTH_DEMO_PASSWORD`` set it."""


def ensure_demo_user(config: StackConfig, env: Mapping[str, str], run: Runner = run_cli) -> DemoCredentials:
    """Create (or update) the demo user with the given, the stored or a new random password.

    ``MODELBERTH_DEMO_PASSWORD`` wins; otherwise the password in ``demo-credentials.json`` is reused; else
    a random one is generated. ``users add --replace`` runs on every start so the users file always
    matches the credentials file (even after a partial ``rm`` of the state dir).
    """
    path = config.state_dir / DEMO_CREDENTIALS_FILE
    stored = _read_json(path) or {}
    given = env.get("MODELBERTH_DEMO_PASSWORD")
    stored_password = stored.get("password") if isinstance(stored.get("password"), str) else None
    password = given or stored_password or secrets.token_urlsafe(12)
    created = not given and stored_password is None
    scopes = [arg for scope in DEMO_SCOPES for arg in ("--scope", scope)]
    argv = ["users", "add", DEMO_USER, *scopes, "--password-stdin", "--replace"]
    _must(run(argv, env, password + "\n"), "users add")
    if stored_password != password or stored.get("username") != DEMO_USER:
        write_private_json(path, {"username": DEMO_USER, "password": password})
    return DemoCredentials(DEMO_USER, password, path, created, from_env=bool(given))


def ensure_client(config: StackConfig, env: Mapping[str, str], run: Runner = run_cli) -> dict[str, str]:
    """The load-test client's id and secret: reused from the state dir while auth still knows the id,
    otherwise registered (again) now."""
    path = config.state_dir / LOADTEST_CLIENT_FILE
    stored = _read_json(path)
    if stored and isinstance(stored.get("client_id"), str) and isinstance(stored.get("client_secret"), str):
        listing = run(["clients", "list", "--json"], env)
        if listing.returncode == 0 and stored["client_id"] in listing.stdout:
            return {"client_id": stored["client_id"], "client_secret": stored["client_secret"]}
    scopes = [arg for scope in LOADTEST_SCOPES for arg in ("--scope", scope)]
    output = _must(
        run(["clients", "add", LOADTEST_CLIENT, *scopes, "--json", "--replace"], env), "clients add"
    )
    client = parse_client_json(output)
    write_private_json(path, client)
    return client


def ensure_ui_client(config: StackConfig, env: Mapping[str, str], run: Runner = run_cli) -> dict[str, str]:
    """The UI's client (``forwards_user_address``, no scopes, no grants), registered with a new secret on
    every start, so the users file and ``ui-client.json`` (0600) always agree; only the UI gets it."""
    argv = [
        "clients",
        "add",
        UI_CLIENT,
        "--client-id",
        UI_CLIENT,
        "--forwards-user-address",
        "--replace",
        "--json",
    ]
    client = parse_client_json(_must(run(argv, env), "clients add (ui)"))
    write_private_json(config.state_dir / UI_CLIENT_FILE, client)
    return client


def parse_client_json(output: str) -> dict[str, str]:
    """``{"client_id", "client_secret"}`` from the JSON ``clients add --json`` prints."""
    try:
        data = json.loads(output)
    except ValueError as exc:
        raise StackError(f"clients add --json printed no JSON: {output[:200]!r}") from exc
    client_id = data.get("client_id") or data.get("id") if isinstance(data, dict) else None
    secret = data.get("client_secret") or data.get("secret") if isinstance(data, dict) else None
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise StackError("clients add --json printed no client_id/client_secret")
    return {"client_id": client_id, "client_secret": secret}


# --- preflight, banner, pids ---------------------------------------------------------------------------


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (we could bind it a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def preflight(config: StackConfig) -> list[str]:
    """Problems that mean nothing should start: a running stack, a taken port, a missing prometheus."""
    problems: list[str] = []
    pids = _read_json(config.state_dir / PIDS_FILE)
    supervisor = pids.get("supervisor") if pids else None
    if isinstance(supervisor, int) and supervisor != os.getpid() and pid_alive(supervisor):
        problems.append(f"a stack already runs from {config.state_dir} (pid {supervisor}); stop it first")
    names = [*SERVICES, "prometheus"] if config.with_prometheus else list(SERVICES)
    if config.ports.get(GRPC, 0):
        names.append(GRPC)
    for name in names:
        if not port_free(config.host, config.ports[name]):
            problems.append(f"port {config.ports[name]} ({name}) is in use; pick another with --{name}-port")
    if config.with_prometheus and shutil.which("prometheus") is None:
        problems.append(
            "prometheus is not installed: `make install-system` or "
            "`apt-get install -y --no-install-recommends prometheus`"
        )
    return problems


def curl_lines(config: StackConfig, credentials_path: Path, model: str, row: Mapping[str, Any]) -> list[str]:
    """Two shell lines: get a token as the demo user, then make one prediction with it."""
    login = (
        f"TOKEN=$(curl -sSf -X POST {config.url('auth')}/auth/login -H 'content-type: application/json' "
        f"-d @{shlex.quote(str(credentials_path))} "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    body = json.dumps({"instances": [dict(row)]})
    predict = (
        f"curl -sSf -X POST {config.url('inference')}/v1/models/{model}/predict "
        f"-H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d {shlex.quote(body)}"
    )
    return [login, predict]


def banner(
    config: StackConfig,
    credentials: DemoCredentials,
    client: Mapping[str, str],
    model: str,
    row: Mapping[str, Any],
) -> str:
    """What a person needs once the stack is ready: URLs, credentials and a copy-paste curl."""
    names = [*SERVICES, "prometheus"] if config.with_prometheus else list(SERVICES)
    lines = ["", "modelberth is up. Ctrl-C stops everything.", ""]
    for name in names:
        extra = "  (API docs: /docs)" if name in ("auth", "inference") else ""
        lines.append(f"  {name:<11}{config.url(name)}{extra}")
        if name == "inference" and config.ports.get(GRPC, 0):
            lines.append(
                f"  {'grpc':<11}{config.host}:{config.ports[GRPC]}  (OIP V2: inference.GRPCInferenceService)"
            )
    lines.append("")
    if credentials.created:
        password = f"{credentials.password}  (new: shown this once; kept in {credentials.path})"
    elif credentials.from_env:
        password = "(from MODELBERTH_DEMO_PASSWORD)"  # noqa: S105 - a label, not a secret
    else:
        password = f"(in {credentials.path})"
    lines += [
        f"  demo user  {credentials.username}  password {password}",
        f"  load-test client  {client['client_id']}  (secret in {config.state_dir / LOADTEST_CLIENT_FILE})",
        f"  logs       {config.logs_dir}/<service>.log",
        "",
        "Get a token and make a prediction:",
        "",
        *(f"  {line}" for line in curl_lines(config, credentials.path, model, row)),
        "",
        "Load test:  make loadtest",
        "",
    ]
    return "\n".join(lines)


def write_pids(config: StackConfig, children: Sequence[Child]) -> None:
    """``<state_dir>/stack.json``: the supervisor's and each child's pid, URL and log."""
    data = {
        "supervisor": os.getpid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "services": {
            c.name: {"pid": c.process.pid, "url": config.url(c.name), "log": str(c.log_path)}
            for c in children
        },
    }
    write_private_json(config.state_dir / PIDS_FILE, data)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the child gets SIGTERM if the supervisor is killed, so no orphan keeps a port."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start one child in its own process group (the terminal's Ctrl-C reaches only the supervisor,
    which then sends SIGTERM), its output written to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


@contextlib.contextmanager
def _signals_to(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_prometheus(config: StackConfig, supervisor: Supervisor) -> None:
    """Write a config scraping the three services (rules: the chart's ``files/alerts``); start Prometheus."""
    prom_dir = config.state_dir / "prometheus"
    (prom_dir / "data").mkdir(parents=True, exist_ok=True)
    rules_dir = config.rules_dir or find_rules_dir()
    rule_files = sorted(rules_dir.glob("*.yaml")) if rules_dir else []
    targets = {f"modelberth-{name}": f"{config.host}:{config.ports[name]}" for name in SERVICES}
    config_path = prom_dir / "prometheus.yml"
    config_path.write_text(json.dumps(prometheus_config(targets, rule_files=rule_files), indent=2) + "\n")
    argv = [
        "prometheus",
        f"--config.file={config_path}",
        f"--storage.tsdb.path={prom_dir / 'data'}",
        f"--web.listen-address={config.host}:{config.ports['prometheus']}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    log_path = config.logs_dir / "prometheus.log"
    process = spawn(argv, os.environ, log_path)
    supervisor.add(Child("prometheus", process, f"{config.url('prometheus')}/-/ready", log_path))


def run_stack(config: StackConfig, out: TextIO, environ: Mapping[str, str] | None = None) -> int:
    """Set up, start, supervise and stop the stack; returns the process exit code."""
    problems = preflight(config)
    if problems:
        out.write("".join(f"modelberth up: {p}\n" for p in problems))
        return EXIT_USAGE
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = base_env(config, os.environ if environ is None else environ)
    try:
        model = ensure_model(config, env, out)
        credentials = ensure_demo_user(config, env)
        client = ensure_client(config, env)
        ui_client = ensure_ui_client(config, env)
    except StackError as exc:
        out.write(f"modelberth up: {exc}\n")
        return EXIT_FAILED
    supervisor = Supervisor(out)
    code = EXIT_FAILED
    with _signals_to(supervisor.request_stop):
        try:
            out.write("Starting auth, inference and ui...\n")
            out.flush()
            for name in SERVICES:
                log_path = config.logs_dir / f"{name}.log"
                wired = service_env(config, name, env, ui_client)
                process = spawn(service_command(config, name), wired, log_path)
                supervisor.add(Child(name, process, f"{config.url(name)}/readyz", log_path))
            if config.with_prometheus:
                start_prometheus(config, supervisor)
            write_pids(config, supervisor.children)
            supervisor.wait_ready(config.ready_timeout)
            out.write(banner(config, credentials, client, model, _safe_example(config, model)) + "\n")
            out.flush()
            supervisor.watch()
            out.write("Stopping...\n")
            code = 0
        except StopRequestedError:
            out.write("Stopping before everything was ready...\n")
            code = 0
        except ChildExitedError as exc:
            out.write(f"modelberth up: {exc}; stopping the rest.\n")
            tail = exc.child.log_tail()
            if tail:
                out.write(f"--- last lines of {exc.child.log_path} ---\n{tail}\n---\n")
        except StackError as exc:
            out.write(f"modelberth up: {exc}; stopping.\n")
            for child in supervisor.children:
                if not child.ready and child.log_tail():
                    out.write(f"--- last lines of {child.log_path} ---\n{child.log_tail()}\n---\n")
        finally:
            out.flush()
            clean = supervisor.stop(config.stop_timeout)
            (config.state_dir / PIDS_FILE).unlink(missing_ok=True)
    out.flush()
    return code if clean else max(code, EXIT_FAILED)


def _safe_example(config: StackConfig, model: str) -> dict[str, Any]:
    from modelberth_core.contract import ContractError
    from modelberth_core.store import StoreError

    try:
        return example_row(config.store, model)
    except (ContractError, StoreError):
        return {}


# --- CLI -----------------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _absolute(location: str) -> str:
    """A directory made absolute (children run elsewhere); a URL as given."""
    return location if "://" in location else str(Path(location).resolve())


def config_from_args(args: argparse.Namespace) -> StackConfig:
    """A :class:`StackConfig` from parsed ``modelberth up`` flags (paths made absolute)."""
    rules = Path(args.rules_dir).resolve() if args.rules_dir else None
    return StackConfig(
        store=_absolute(args.store),
        state_dir=Path(args.state_dir).resolve(),
        host=args.host,
        ports={
            "auth": args.auth_port,
            "inference": args.inference_port,
            "ui": args.ui_port,
            "prometheus": args.prometheus_port,
            GRPC: args.inference_grpc_port,
        },
        dataset=args.dataset,
        model=args.model,
        with_prometheus=args.with_prometheus,
        rules_dir=rules,
        ready_timeout=args.ready_timeout,
        stop_timeout=args.stop_timeout,
    )


def _up(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        return run_stack(config, sys.stdout)
    except KeyboardInterrupt:  # Ctrl-C during setup (training), before any service started
        return EXIT_INTERRUPTED


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``modelberth up`` to the CLI."""
    env = os.environ
    up = subparsers.add_parser(
        "up",
        help="run auth, inference and ui locally (trains iris first if there is no model); Ctrl-C stops",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    up.add_argument(
        "--store",
        "--model-dir",
        dest="store",
        default=env.get("MODELBERTH_STORE") or env.get("INFERENCE_MODEL_DIR") or "artifacts/models",
        metavar="LOCATION",
        help="the model store (MODELBERTH_STORE, default artifacts/models)",
    )
    up.add_argument(
        "--state-dir",
        default=env.get("MODELBERTH_STATE_DIR") or ".modelberth",
        help="keys, users, credentials, pids, logs (MODELBERTH_STATE_DIR, default .modelberth)",
    )
    up.add_argument("--host", default=env.get("MODELBERTH_HOST") or "127.0.0.1", help="interface")
    for name in (*SERVICES, GRPC, "prometheus"):
        var = (
            "MODELBERTH_PROMETHEUS_PORT" if name == "prometheus" else f"{name.upper().replace('-', '_')}_PORT"
        )
        up.add_argument(
            f"--{name}-port",
            type=int,
            default=_env_int(var, DEFAULT_PORTS[name]),
            help=f"{name} port ({var}, default {DEFAULT_PORTS[name]})",
        )
    up.add_argument("--dataset", default=DEFAULT_DATASET, help="trained when no model exists (default iris)")
    up.add_argument("--model", help="model shown in the printed curl (default: the dataset's, or the first)")
    up.add_argument(
        "--with-prometheus",
        action="store_true",
        default=env.get("MODELBERTH_WITH_PROMETHEUS", "").lower() in ("1", "true", "yes"),
        help="also run Prometheus scraping the services, with the alert rules (MODELBERTH_WITH_PROMETHEUS)",
    )
    up.add_argument(
        "--rules-dir",
        help="alert rules for Prometheus (default: charts/modelberth/files/alerts of this checkout)",
    )
    up.add_argument(
        "--ready-timeout",
        type=float,
        default=float(env.get("MODELBERTH_READY_TIMEOUT") or 180.0),
        help="seconds to wait for every /readyz (default 180)",
    )
    up.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds each child gets to finish in-flight requests after SIGTERM before SIGKILL",
    )
    up.set_defaults(handler=_up)
