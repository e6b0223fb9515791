"""``modelberth up``: supervision logic in-process (fake processes), then the real command end to end."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelberth_cli import stack
from modelberth_cli.stack import Child, StackConfig, StackError, Supervisor
from testkit.services import free_port

# --- fakes -----------------------------------------------------------------------------------------------


class FakeProcess:
    """A process that exits when told to (or on SIGTERM, unless it ignores it)."""

    _next_pid = 40_000

    def __init__(self, ignores_sigterm: bool = False, log: list[str] | None = None, name: str = "") -> None:
        FakeProcess._next_pid += 1
        self.pid = FakeProcess._next_pid
        self.code: int | None = None
        self.ignores_sigterm = ignores_sigterm
        self.signals: list[int] = []
        self.killed = False
        self.log = log if log is not None else []
        self.name = name

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.log.append(f"{self.name}:{sig}")
        if sig == signal.SIGTERM and not self.ignores_sigterm:
            self.code = 0

    def wait(self, timeout: float | None = None) -> int:
        assert self.code is not None
        return self.code

    def kill(self) -> None:
        self.killed = True
        self.code = -9


def _supervisor(probe: Callable[[str], bool] = lambda _url: True) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    return Supervisor(out, probe=probe, poll_seconds=0.01), out


# --- supervision -----------------------------------------------------------------------------------------


def test_wait_ready_polls_until_every_child_answers() -> None:
    answers = {"http://a/readyz": iter([False, False, True]), "http://b/readyz": iter([True])}
    calls: list[str] = []

    def probe(url: str) -> bool:
        calls.append(url)
        return next(answers[url])

    supervisor, out = _supervisor(probe)
    supervisor.add(Child("a", FakeProcess(), "http://a/readyz"))
    supervisor.add(Child("b", FakeProcess(), "http://b/readyz"))
    supervisor.wait_ready(timeout=5)
    assert calls.count("http://a/readyz") == 3
    assert calls.count("http://b/readyz") == 1
    assert all(c.ready for c in supervisor.children)
    assert "a          ready after" in out.getvalue()


def test_wait_ready_fails_fast_when_a_child_exits() -> None:
    supervisor, _ = _supervisor(lambda _url: False)
    dead = FakeProcess()
    dead.code = 3
    supervisor.add(Child("ok", FakeProcess(), "http://ok/readyz"))
    supervisor.add(Child("inference", dead, "http://inf/readyz"))
    with pytest.raises(stack.ChildExitedError, match=r"inference \(pid \d+\) exited with code 3") as info:
        supervisor.wait_ready(timeout=30)
    assert info.value.code == 3


def test_wait_ready_times_out_naming_the_laggards() -> None:
    supervisor, _ = _supervisor(lambda url: "fast" in url)
    supervisor.add(Child("fast", FakeProcess(), "http://fast/readyz"))
    supervisor.add(Child("slow", FakeProcess(), "http://slow/readyz"))
    started = time.monotonic()
    with pytest.raises(StackError, match=r"not ready after 0 s: slow$"):
        supervisor.wait_ready(timeout=0.2)
    assert time.monotonic() - started < 5


def test_wait_ready_stops_on_a_signal() -> None:
    supervisor, _ = _supervisor(lambda _url: False)
    supervisor.add(Child("a", FakeProcess(), "http://a/readyz"))
    supervisor.request_stop(signal.SIGINT)
    with pytest.raises(stack.StopRequestedError):
        supervisor.wait_ready(timeout=30)


def test_watch_returns_on_signal_and_raises_when_a_child_dies() -> None:
    supervisor, _ = _supervisor()
    process = FakeProcess()
    supervisor.add(Child("auth", process))
    timer = threading.Timer(0.05, supervisor.request_stop, args=(signal.SIGTERM,))
    timer.start()
    supervisor.watch()  # returns once the "signal" arrived
    timer.join()

    supervisor, _ = _supervisor()
    process = FakeProcess()
    supervisor.add(Child("ui", process))
    threading.Timer(0.05, lambda: setattr(process, "code", 1)).start()
    with pytest.raises(stack.ChildExitedError, match="ui"):
        supervisor.watch()


def test_stop_sends_sigterm_in_reverse_start_order() -> None:
    order: list[str] = []
    supervisor, out = _supervisor()
    for name in ("auth", "inference", "ui"):
        supervisor.add(Child(name, FakeProcess(log=order, name=name)))
    already_dead = FakeProcess(name="gone", log=order)
    already_dead.code = 0
    supervisor.add(Child("gone", already_dead))
    assert supervisor.stop(timeout=1) is True
    assert order == [f"ui:{signal.SIGTERM}", f"inference:{signal.SIGTERM}", f"auth:{signal.SIGTERM}"]
    assert "ui         stopped (exit 0)" in out.getvalue()


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    supervisor, out = _supervisor()
    stubborn = FakeProcess(ignores_sigterm=True)
    polite = FakeProcess()
    supervisor.add(Child("polite", polite))
    supervisor.add(Child("stubborn", stubborn))
    assert supervisor.stop(timeout=0.1) is False
    assert stubborn.signals == [signal.SIGTERM]
    assert stubborn.killed
    assert not polite.killed
    assert "stubborn   killed" in out.getvalue()


def test_a_second_signal_kills_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor, _ = _supervisor()
    stubborn = FakeProcess(ignores_sigterm=True)
    supervisor.add(Child("stubborn", stubborn))
    clock = [100.0]
    with monkeypatch.context() as patched:
        patched.setattr(stack.time, "monotonic", lambda: clock[0])
        supervisor.request_stop(signal.SIGINT)
        # One Ctrl-C reaches make, uv and us at once, and uv forwards it again: still one request.
        clock[0] += 0.01
        supervisor.request_stop(signal.SIGINT)
        assert supervisor.stop_requested.is_set()
        assert not supervisor.force.is_set()
        clock[0] += stack.FORCE_AFTER_SECONDS
        supervisor.request_stop(signal.SIGINT)
    assert supervisor.force.is_set()
    started = time.monotonic()
    assert supervisor.stop(timeout=60) is False
    assert time.monotonic() - started < 5
    assert stubborn.killed


def test_child_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert Child("x", FakeProcess(), log_path=log).log_tail(3) == "line 47\nline 48\nline 49"
    assert Child("x", FakeProcess(), log_path=tmp_path / "missing.log").log_tail() == ""


# --- wiring and setup --------------------------------------------------------------------------------------


def _config(tmp_path: Path, **kwargs: Any) -> StackConfig:
    ports = {"auth": 18001, "inference": 18002, "ui": 18003, "prometheus": 19090}
    return StackConfig(store=str(tmp_path / "models"), state_dir=tmp_path / "state", ports=ports, **kwargs)


def test_service_env_wires_the_services_to_each_other(tmp_path: Path) -> None:
    config = _config(tmp_path)
    base = stack.base_env(config, {"PATH": "/bin"})
    assert base["MODELBERTH_STATE_DIR"] == str(config.state_dir)
    assert base["GRADIO_ANALYTICS_ENABLED"] == "False"
    auth = stack.service_env(config, "auth", base)
    inference = stack.service_env(config, "inference", base)
    ui = stack.service_env(config, "ui", base)
    assert auth["AUTH_ISSUER"] == "http://127.0.0.1:18001"
    assert inference["INFERENCE_AUTH_JWKS_URL"] == "http://127.0.0.1:18001/.well-known/jwks.json"
    assert inference["INFERENCE_AUTH_ISSUER"] == auth["AUTH_ISSUER"]
    assert inference["INFERENCE_STORE"] == config.store
    assert ui["UI_AUTH_URL"] == "http://127.0.0.1:18001"
    assert ui["UI_INFERENCE_URL"] == "http://127.0.0.1:18002"
    assert "UI_CLIENT_SECRET" not in ui  # no client given, none wired
    client = {"client_id": "modelberth-ui", "client_secret": "s" * 43}
    with_client = {name: stack.service_env(config, name, base, client) for name in stack.SERVICES}
    assert with_client["ui"]["UI_CLIENT_ID"] == "modelberth-ui"
    assert with_client["ui"]["UI_CLIENT_SECRET"] == "s" * 43
    assert not any("UI_CLIENT_SECRET" in with_client[name] for name in ("auth", "inference"))
    # An issuer the developer set is kept, and inference trusts the same one.
    custom = stack.service_env(config, "inference", {**base, "AUTH_ISSUER": "https://auth.example"})
    assert custom["INFERENCE_AUTH_ISSUER"] == "https://auth.example"


def test_service_command_runs_modelberth_serve(tmp_path: Path) -> None:
    config = _config(tmp_path)
    argv = stack.service_command(config, "inference")
    assert argv[:3] == [sys.executable, "-m", "modelberth_cli"]
    assert argv[3:] == [
        "serve", "inference", "--host", "127.0.0.1", "--port", "18002", "--store", config.store
    ]  # fmt: skip


class FakeCli:
    """Records ``modelberth`` invocations; answers like the auth CLI would."""

    def __init__(self, fail: Sequence[str] = ()) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail = set(fail)
        self.known_clients: list[str] = []

    def __call__(
        self, args: Sequence[str], env: Any, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(args), stdin))
        key = " ".join(args[:2])
        if key in self.fail:
            return subprocess.CompletedProcess(list(args), 1, "", f"{key}: boom")
        stdout = ""
        if key == "clients add":
            stdout = json.dumps(
                {"client_id": "loadtest-123", "client_secret": "s3cr3t-value", "scope": "predict"}
            )
        elif key == "clients list":
            stdout = json.dumps([{"name": "loadtest", "client_id": c} for c in self.known_clients])
        return subprocess.CompletedProcess(list(args), 0, stdout, "")


def test_demo_user_gets_a_random_password_once_then_reuses_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cli = FakeCli()
    first = stack.ensure_demo_user(config, {}, run=cli)
    assert first.created
    assert len(first.password) >= 16
    add = [c for c in cli.calls if c[0][:2] == ["users", "add"]]
    argv = [
        "users",
        "add",
        "demo",
        "--scope",
        "predict",
        "--scope",
        "models:read",
        "--password-stdin",
        "--replace",
    ]
    assert add == [(argv, first.password + "\n")]
    path = config.state_dir / "demo-credentials.json"
    assert json.loads(path.read_text()) == {"username": "demo", "password": first.password}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    second = stack.ensure_demo_user(config, {}, run=cli)
    assert second.password == first.password
    assert not second.created


def test_demo_password_from_the_environment_wins(tmp_path: Path) -> None:
    config = _config(tmp_path)
    stack.ensure_demo_user(config, {}, run=FakeCli())
    chosen = stack.ensure_demo_user(
        config, {"MODELBERTH_DEMO_PASSWORD": "correct-horse-battery"}, run=FakeCli()
    )
    assert chosen.password == "correct-horse-battery"
    assert not chosen.created
    assert chosen.from_env
    stored = json.loads((config.state_dir / "demo-credentials.json").read_text())
    assert stored["password"] == "correct-horse-battery"


def test_a_failing_users_add_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"users add failed .*boom"):
        stack.ensure_demo_user(_config(tmp_path), {}, run=FakeCli(fail=["users add"]))


def test_loadtest_client_is_registered_once(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cli = FakeCli()
    client = stack.ensure_client(config, {}, run=cli)
    assert client == {"client_id": "loadtest-123", "client_secret": "s3cr3t-value"}
    add = [
        "clients",
        "add",
        "loadtest",
        "--scope",
        "predict",
        "--scope",
        "models:read",
        "--json",
        "--replace",
    ]
    assert [c[0] for c in cli.calls] == [add]
    path = config.state_dir / "loadtest-client.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Auth still knows the client: reused without a new secret.
    again = FakeCli()
    again.known_clients = ["loadtest-123"]
    assert stack.ensure_client(config, {}, run=again) == client
    assert [c[0] for c in again.calls] == [["clients", "list", "--json"]]
    # The users file lost it (state dir partly wiped): registered again.
    lost = FakeCli()
    assert stack.ensure_client(config, {}, run=lost) == client
    assert [c[0] for c in lost.calls] == [["clients", "list", "--json"], add]


def test_ui_client_is_a_forwarder_registered_afresh_on_every_start(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cli = FakeCli()
    client = stack.ensure_ui_client(config, {}, run=cli)
    assert client == {"client_id": "loadtest-123", "client_secret": "s3cr3t-value"}  # what the CLI printed
    add = ["clients", "add", "modelberth-ui", "--client-id", "modelberth-ui", "--forwards-user-address"]
    assert [c[0] for c in cli.calls] == [[*add, "--replace", "--json"]]
    path = config.state_dir / "ui-client.json"
    assert json.loads(path.read_text()) == client
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(StackError, match=r"clients add \(ui\) failed"):
        stack.ensure_ui_client(config, {}, run=FakeCli(fail=["clients add"]))


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"client_id": "a", "client_secret": "b"}', {"client_id": "a", "client_secret": "b"}),
        ('{"id": "a", "secret": "b", "scopes": []}', {"client_id": "a", "client_secret": "b"}),
    ],
)
def test_parse_client_json(output: str, expected: dict[str, str]) -> None:
    assert stack.parse_client_json(output) == expected


@pytest.mark.parametrize("output", ["client a created", '{"client_id": "a"}', "[]"])
def test_parse_client_json_refuses_other_output(output: str) -> None:
    with pytest.raises(StackError):
        stack.parse_client_json(output)


def test_existing_model_is_used_without_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = StackConfig(store=str(tiny_model_dir), state_dir=tmp_path / "s")
    out = io.StringIO()
    assert stack.ensure_model(config, {}, out) == "iris"
    assert out.getvalue() == ""
    with pytest.raises(StackError, match="model 'churn' has no champion"):
        stack.ensure_model(StackConfig(store=str(tiny_model_dir), state_dir=tmp_path, model="churn"), {}, out)


def test_a_store_whose_models_have_no_champion_says_how_to_promote_one(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    (tiny_model_dir / "iris" / "champion").unlink()
    (tiny_model_dir / "iris" / "challenger").write_text((tiny_model_dir / "iris" / "latest").read_text())
    config = StackConfig(store=str(tiny_model_dir), state_dir=tmp_path / "s")
    with pytest.raises(StackError, match="modelberth models promote NAME VERSION"):
        stack.ensure_model(config, {}, io.StringIO())


def test_curl_uses_the_credentials_file_and_the_cards_example(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = StackConfig(store=str(tiny_model_dir), state_dir=tmp_path / "state")
    row = stack.example_row(str(tiny_model_dir), "iris")
    assert set(row) == {"sepal_length", "sepal_width", "petal_length", "petal_width"}
    assert all(isinstance(v, float) for v in row.values())
    login, predict = stack.curl_lines(config, tmp_path / "state" / "demo-credentials.json", "iris", row)
    assert "http://127.0.0.1:8001/auth/login" in login
    assert f"-d @{tmp_path}/state/demo-credentials.json" in login
    assert "http://127.0.0.1:8002/v1/models/iris/predict" in predict
    assert json.dumps({"instances": [row]}) in predict


def test_banner_prints_a_new_password_once(tmp_path: Path) -> None:
    config = _config(tmp_path, with_prometheus=True)
    path = config.state_dir / "demo-credentials.json"
    client = {"client_id": "c1", "client_secret": "never-printed"}
    new = stack.banner(
        config, stack.DemoCredentials("demo", "pw-123456", path, True), client, "iris", {"x": 1}
    )
    old = stack.banner(
        config, stack.DemoCredentials("demo", "pw-123456", path, False), client, "iris", {"x": 1}
    )
    assert "pw-123456" in new
    assert "pw-123456" not in old
    assert "never-printed" not in new
    assert "never-printed" not in old
    for url in ("http://127.0.0.1:18001", "http://127.0.0.1:18002", "http://127.0.0.1:18003", ":19090"):
        assert url in new


def test_prometheus_config_scrapes_every_job_with_a_namespace(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    config = stack.prometheus_config(
        {"modelberth-auth": "127.0.0.1:1", "modelberth-ui": "127.0.0.1:2"},
        scrape_interval="1s",
        rule_files=[rules],
    )
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert config["rule_files"] == [str(rules)]
    jobs = {c["job_name"]: c["static_configs"][0] for c in config["scrape_configs"]}
    assert jobs["modelberth-ui"] == {"targets": ["127.0.0.1:2"], "labels": {"namespace": "local"}}


def test_up_is_a_cli_command() -> None:
    from modelberth_cli.main import build_parser

    args = build_parser().parse_args(
        ["up", "--auth-port", "1234", "--with-prometheus", "--state-dir", "/tmp/x"]
    )
    config = stack.config_from_args(args)
    assert config.ports["auth"] == 1234
    assert config.ports["inference"] == 8002
    assert config.with_prometheus
    assert config.state_dir == Path("/tmp/x")
    assert Path(config.store).is_absolute()


# --- the real command ---------------------------------------------------------------------------------


class UpProcess:
    """``modelberth up`` as a real process, its output read line by line on a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first new output line matching ``predicate``; fails with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError("expected output did not appear:\n" + "\n".join(self.lines))

    def output(self) -> str:
        self.process.wait(60)
        self._reader.join(10)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def run_up(tmp_path: Path) -> Iterator[Callable[..., tuple[UpProcess, dict[str, int], Path]]]:
    started: list[UpProcess] = []

    def start(model_dir: Path, *extra: str) -> tuple[UpProcess, dict[str, int], Path]:
        ports = {"auth": free_port(), "inference": free_port(), "ui": free_port()}
        state = tmp_path / "up-state"
        argv = [
            *stack.modelberth_command("up"),
            "--store", str(model_dir), "--state-dir", str(state),
            "--auth-port", str(ports["auth"]), "--inference-port", str(ports["inference"]),
            "--ui-port", str(ports["ui"]), "--ready-timeout", "300", *extra,
        ]  # fmt: skip
        up = UpProcess(argv, dict(os.environ))
        started.append(up)
        return up, ports, state

    yield start
    for up in started:
        up.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; reaped children vanish entirely.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.mark.integration
def test_up_starts_everything_prints_a_working_curl_and_stops_cleanly(
    run_up: Callable[..., tuple[UpProcess, dict[str, int], Path]], tiny_model_dir: Path
) -> None:
    prometheus_port = free_port()
    up, ports, state = run_up(tiny_model_dir, "--with-prometheus", "--prometheus-port", str(prometheus_port))
    up.wait_for(lambda line: line.startswith("Get a token and make a prediction"), timeout=330)
    login = up.wait_for(lambda line: line.strip().startswith("TOKEN="), timeout=5).strip()
    predict = up.wait_for(lambda line: line.strip().startswith("curl "), timeout=5).strip()
    banner = "\n".join(up.lines)
    password = json.loads((state / "demo-credentials.json").read_text())["password"]
    assert password in banner  # a new random password is shown once
    assert stat.S_IMODE((state / "demo-credentials.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "loadtest-client.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "ui-client.json").stat().st_mode) == 0o600

    for name, port in ports.items():
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200, name
    result = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{login}\n{predict}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "iris"
    assert answer["predictions"][0] in {"setosa", "versicolor", "virginica"}

    # --with-prometheus: a real Prometheus scrapes all three services and has loaded the alert rules.
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    deadline = time.monotonic() + 60
    up_series: list[Any] = []
    while time.monotonic() < deadline and len(up_series) < 3:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up == 1"}, timeout=5)
        up_series = answer.json()["data"]["result"] if answer.status_code == 200 else []
        time.sleep(0.5)
    jobs = {s["metric"]["job"] for s in up_series}
    assert jobs == {"modelberth-auth", "modelberth-inference", "modelberth-ui"}
    assert {s["metric"]["namespace"] for s in up_series} == {"local"}
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert any(r["name"] == "ModelberthFeatureDrift" for g in rules for r in g["rules"])

    pids = json.loads((state / "stack.json").read_text())
    assert pids["supervisor"] == up.process.pid
    children = {name: info["pid"] for name, info in pids["services"].items()}
    assert set(children) == {"auth", "inference", "ui", "prometheus"}
    assert all(_alive(pid) for pid in children.values())

    # The UI process got its own client's credentials (and only the UI did); auth accepts them as the
    # forwarder of a browser's address on login, and the failures then count against that address.
    environ = {
        name: dict(
            item.split("=", 1)
            for item in Path(f"/proc/{children[name]}/environ").read_text().split("\0")
            if "=" in item
        )
        for name in ("auth", "inference", "ui")
    }
    ui_client = json.loads((state / "ui-client.json").read_text())
    assert environ["ui"]["UI_CLIENT_ID"] == ui_client["client_id"] == "modelberth-ui"
    assert environ["ui"]["UI_CLIENT_SECRET"] == ui_client["client_secret"]
    assert all("UI_CLIENT_SECRET" not in environ[name] for name in ("auth", "inference"))
    auth_url = f"http://127.0.0.1:{ports['auth']}"
    forwarded = httpx.post(
        f"{auth_url}/auth/login",
        json={"username": "demo", "password": password},
        auth=(ui_client["client_id"], ui_client["client_secret"]),
        headers={"X-Modelberth-User-Address": "198.51.100.9"},
        timeout=10,
    )
    assert forwarded.status_code == 200, forwarded.text
    wrong = httpx.post(
        f"{auth_url}/auth/login",
        json={"username": "demo", "password": password},
        auth=(ui_client["client_id"], "not-the-secret"),
        headers={"X-Modelberth-User-Address": "198.51.100.9"},
        timeout=10,
    )
    assert wrong.status_code == 401

    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(60) == 0
    output = up.output()
    assert "prometheus stopped (exit 0)" in output
    for name in ("ui", "inference", "auth"):
        # uvicorn finishes in-flight requests, then re-raises SIGTERM: exit 0 or -15 are both clean.
        assert re.search(rf"{name:<10} stopped \((exit 0|signal SIGTERM)\)", output), output
    assert not any(_alive(pid) for pid in children.values())
    assert not (state / "stack.json").exists()


@pytest.mark.integration
def test_up_stops_everything_when_a_child_dies(
    run_up: Callable[..., tuple[UpProcess, dict[str, int], Path]], tiny_model_dir: Path
) -> None:
    up, _ports, state = run_up(tiny_model_dir)
    up.wait_for(lambda line: line.startswith("Get a token and make a prediction"), timeout=330)
    children = {n: i["pid"] for n, i in json.loads((state / "stack.json").read_text())["services"].items()}
    os.kill(children["inference"], signal.SIGKILL)
    assert up.process.wait(60) == 1
    output = up.output()
    assert f"inference (pid {children['inference']}) exited with code -9" in output
    assert not any(_alive(pid) for pid in children.values())


@pytest.mark.integration
def test_up_refuses_a_taken_port(
    run_up: Callable[..., tuple[UpProcess, dict[str, int], Path]], tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up, _ports, _state = run_up(tmp_path / "models", "--auth-port", str(port))
        assert up.process.wait(60) == stack.EXIT_USAGE
    assert f"port {port} (auth) is in use" in up.output()


def test_local_prometheus_loads_the_charts_alert_rules_by_default() -> None:
    """`modelberth up --with-prometheus` evaluates the same rule file the chart ships (its one copy)."""
    rules = stack.find_rules_dir()
    assert rules is not None
    assert rules.parts[-4:] == ("charts", "modelberth", "files", "alerts")
    assert (rules / "modelberth.yaml").is_file()


def test_the_grpc_port_is_wired_checked_and_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference's gRPC listener gets the stack's port (8012 unless told), a taken one stops the start
    before anything runs, and the banner says where it is; 0 turns it off and it is not printed."""
    from modelberth_cli.main import build_parser

    monkeypatch.delenv("INFERENCE_GRPC_PORT")  # the test session turns gRPC off by default
    assert stack.config_from_args(build_parser().parse_args(["up"])).ports[stack.GRPC] == 8012
    args = build_parser().parse_args(["up", "--inference-grpc-port", "0"])
    assert stack.config_from_args(args).ports[stack.GRPC] == 0
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = _config(tmp_path)
        config = StackConfig(config.store, config.state_dir, ports={**config.ports, stack.GRPC: port})
        inference = stack.service_env(config, "inference", stack.base_env(config, {}))
        assert inference["INFERENCE_GRPC_PORT"] == str(port)
        assert f"port {port} (inference-grpc) is in use; pick another with --inference-grpc-port" in (
            stack.preflight(config)
        )
    credentials = stack.DemoCredentials("demo", "pw", config.state_dir / "c.json", False)
    client = {"client_id": "c1", "client_secret": "s"}
    assert f"grpc       127.0.0.1:{port}" in stack.banner(config, credentials, client, "iris", {})
    off = StackConfig(config.store, config.state_dir, ports={**config.ports, stack.GRPC: 0})
    assert stack.service_env(off, "inference", {})["INFERENCE_GRPC_PORT"] == "0"
    assert "grpc " not in stack.banner(off, credentials, client, "iris", {})
    assert not any("inference-grpc" in problem for problem in stack.preflight(off))
