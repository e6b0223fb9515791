"""Monitoring as code, proven: dashboards and alert rules are checked for shape in-process, then every
PromQL expression they contain is evaluated by a real Prometheus scraping the real services (issue 6).

The proof fails when a query does not parse, returns nothing, or names a metric no service exports.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "k8s" / "dashboards").glob("*.json"))
ALERT_FILES = sorted((REPO / "k8s" / "alerts").glob("*.yaml"))

BRIEF_METRICS = {
    # core's HTTP metrics, per service
    *(
        f"modelberth_{s}_{m}"
        for s in ("auth", "inference", "ui")
        for m in ("requests_total", "requests_in_flight")
    ),
    *(f"modelberth_{s}_request_duration_seconds" for s in ("auth", "inference", "ui")),
    "modelberth_auth_token_requests_total",
    "modelberth_auth_login_failures_total",
    "modelberth_auth_rate_limited_total",
    "modelberth_inference_predictions_total",
    "modelberth_inference_prediction_confidence",
    "modelberth_inference_batch_size",
    "modelberth_inference_input_warnings_total",
    "modelberth_inference_feature_drift_psi",
    "modelberth_inference_model_info",
    "modelberth_inference_model_load_seconds",
    "modelberth_inference_model_load_failures_total",
    "modelberth_inference_models_ready",
    "modelberth_inference_predict_duration_seconds",
    "modelberth_inference_shadow_requests_total",
    "modelberth_inference_shadow_compared_rows_total",
    "modelberth_inference_shadow_agreeing_rows_total",
    "modelberth_ui_logins_total",
    "modelberth_ui_predictions_total",
}
"""Every metric the shared conventions name: each must be shown on some dashboard."""

GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
"""Stand-ins for Grafana's interval variables; 1m holds ≥ 4 scrapes at the proof's 1 s interval."""


# --- reading dashboards and rules ------------------------------------------------------------------------


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, expr)`` for every panel target of a dashboard."""
    out = []
    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            out.append((f"{dashboard['uid']} / {panel['title']} / {target['refId']}", target["expr"]))
    return out


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, query)`` of every query-type template variable."""
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((var["name"], query))
    return out


def alert_rules() -> list[tuple[str, dict[str, Any]]]:
    """``(file, rule)`` for every rule of every alert file."""
    rules: list[tuple[str, dict[str, Any]]] = []
    for path in ALERT_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend((path.name, rule) for rule in group["rules"])
    return rules


# --- PromQL helpers ------------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace ``$var`` / ``${var}`` like Grafana would; an unknown variable is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(one, expr)


COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*bool)?\s*$")
NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def strip_threshold(expr: str) -> str:
    """``X > 0.2`` -> ``X``: the value an alert compares, so the proof sees data even when all is well.

    Only a comparison with a number at the top level (outside parentheses, braces, brackets and strings)
    is removed; anything else is returned unchanged.
    """
    depth, quote, last = 0, "", -1
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote and expr[i - 1] != "\\":
                quote = ""
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch in "<>=!":
            nxt = expr[i + 1] if i + 1 < len(expr) else ""
            prev = expr[i - 1] if i else ""
            if ch in "=!" and nxt != "=":
                continue  # =~ and !~ only occur inside braces; a lone = is not an operator here
            if prev in "<>=!":
                continue  # second character of a two-character operator
            last = i
    if last < 0:
        return expr
    operator = COMPARISON.match(expr[last:].split(None, 1)[0] + " ")
    rest = expr[last:]
    op_len = 2 if rest[:2] in ("==", "!=", ">=", "<=") else 1
    tail = rest[op_len:].strip()
    if tail.startswith("bool"):
        tail = tail[4:]
    if operator is None or not NUMBER.fullmatch(tail):
        return expr
    return expr[:last].rstrip()


METRIC_TOKEN = re.compile(r"\b(?:modelberth|process|up)\w*")
NAME_REGEX = re.compile(r'__name__\s*=~\s*"([^"]+)"')
ALTERNATION = re.compile(r"\(([\w|]+)\)")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads, with simple ``__name__=~"a_(x|y)_b"`` regexes expanded."""
    names: set[str] = set()
    without_regex = NAME_REGEX.sub("", expr)
    for token in METRIC_TOKEN.findall(without_regex):
        if token.startswith("modelberth_") or token.startswith("process_") or token == "up":
            names.add(token)
    for pattern in NAME_REGEX.findall(expr):
        parts = ALTERNATION.split(pattern)
        literals, choices = parts[0::2], [p.split("|") for p in parts[1::2]]
        for combo in itertools.product(*choices):
            names.add("".join(itertools.chain.from_iterable(zip(literals, (*combo, ""), strict=True))))
    return names


# --- in-process checks ---------------------------------------------------------------------------------


def test_helpers() -> None:
    assert strip_threshold('max by (f) (x{a=~"b"}) > 0.2') == 'max by (f) (x{a=~"b"})'
    assert strip_threshold("sum(rate(x[5m])) >= 3") == "sum(rate(x[5m]))"
    assert strip_threshold("sum(\n  a > bool 0\n) < 1") == "sum(\n  a > bool 0\n)"
    assert strip_threshold("up == 0") == "up"
    assert strip_threshold("a > b") == "a > b"
    assert strip_threshold("rate(x[5m])") == "rate(x[5m])"
    assert substitute('x{job=~"$job"}[$__rate_interval]', {"job": "a|b", "__rate_interval": "1m"}) == (
        'x{job=~"a|b"}[1m]'
    )
    with pytest.raises(KeyError, match=r"\$jb"):
        substitute('x{job=~"$jb"}', {"job": "a"})
    assert metric_names('sum(rate({__name__=~"modelberth_(auth|ui)_requests_total"}[5m])) / up') == {
        "modelberth_auth_requests_total",
        "modelberth_ui_requests_total",
        "up",
    }


def test_there_are_three_dashboards_and_alert_rules() -> None:
    assert {p.stem for p in DASHBOARDS} >= {"overview", "model", "auth"}
    assert ALERT_FILES


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_shape(path: Path) -> None:
    dashboard = load_dashboard(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "job"} <= set(variables)
    # No hard-coded datasource uid anywhere: every reference goes through ${datasource}.
    text = path.read_text(encoding="utf-8")
    uids = set(re.findall(r'"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"', text))
    assert uids <= {"${datasource}", "-- Grafana --"}, uids
    ids = [p["id"] for p in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in iter_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        where = f"{path.stem} / {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel.get("description"), where
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{where}: no unit"
        assert defaults["thresholds"]["steps"], f"{where}: no thresholds"
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where
            # Every metric selector is scoped to the chosen namespace and job.
            for selector in re.findall(r"\b\w+\{([^}]*)\}", target["expr"]):
                assert 'namespace=~"$namespace"' in selector, f"{where}: {selector}"
                assert 'job=~"$job"' in selector, f"{where}: {selector}"


def test_dashboards_cover_the_issue_and_every_metric_of_the_brief() -> None:
    titles = {
        p.stem: " | ".join(panel["title"].lower() for panel in iter_panels(load_dashboard(p)["panels"]))
        for p in DASHBOARDS
    }
    for words in ("requests/s", "error ratio", "p50 / p95 / p99", "in flight", "instances up"):
        assert words in titles["overview"], words
    for words in (
        "by class",
        "confidence",
        "input warnings",
        "drift (psi)",
        "version in service",
        "load failures",
        "shadow agreement",
        "shadow requests/s by outcome",
        "latency p95 by version",
    ):
        assert words in titles["model"], words
    for words in ("tokens issued/s by grant", "login failures", "rate-limited"):
        assert words in titles["auth"], words
    shown: set[str] = set()
    for path in DASHBOARDS:
        for _, expr in dashboard_queries(load_dashboard(path)):
            shown |= {re.sub(r"_(bucket|sum|count)$", "", name) for name in metric_names(expr)}
    assert shown >= BRIEF_METRICS, sorted(BRIEF_METRICS - shown)
    psi = next(
        panel
        for panel in iter_panels(load_dashboard(REPO / "k8s" / "dashboards" / "model.json")["panels"])
        if "drift (psi)" in panel["title"].lower()
    )
    assert {"color": "red", "value": 0.2} in psi["fieldConfig"]["defaults"]["thresholds"]["steps"]


def test_alert_rules_cover_the_issue() -> None:
    rules = {rule["alert"]: rule for _, rule in alert_rules()}
    assert {
        "ModelberthHighErrorRatio",
        "ModelberthHighLatencyP95",
        "ModelberthFeatureDrift",
        "ModelberthNoReadyInference",
        "ModelberthModelLoadFailures",
        "ModelberthLoginFailureSpike",
        "ModelberthShadowDisagreement",
    } <= set(rules)
    drift = rules["ModelberthFeatureDrift"]
    assert drift["for"] == "15m"
    assert drift["expr"].rstrip().endswith("> 0.2")
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        assert strip_threshold(rule["expr"]) != rule["expr"], f"{name}: not a threshold comparison"


# --- the proof against real processes ------------------------------------------------------------------


def _modelberth(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "modelberth_core.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _drive_ui(ui_url: str, username: str, password: str) -> None:
    """Sign in (once wrong, once right) and predict an example through the Gradio queue, as a browser does."""
    with httpx.Client(base_url=ui_url, timeout=30.0, trust_env=False) as http:
        assert http.get("/").status_code == 200
        config = http.get("/config").json()
        ids = {
            c["props"]["elem_id"]: c["id"] for c in config["components"] if c.get("props", {}).get("elem_id")
        }
        session = uuid.uuid4().hex[:11]

        def click(elem_id: str, data: list[Any]) -> dict[str, Any]:
            dep = next(d for d in config["dependencies"] if any(t[0] == ids[elem_id] for t in d["targets"]))
            joined = http.post(
                "/gradio_api/queue/join",
                json={
                    "data": data,
                    "fn_index": dep["id"],
                    "trigger_id": ids[elem_id],
                    "session_hash": session,
                    "event_data": None,
                },
            )
            assert joined.status_code == 200, joined.text
            with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        message: dict[str, Any] = json.loads(line[5:])
                        if message.get("msg") == "process_completed":
                            assert message.get("success", True), message
                            return message
            raise AssertionError(f"no answer to {elem_id}")

        click("mb-login-button", [None, username, "not-the-password"])
        click("mb-login-button", [None, username, password])
        click("mb-example-go", [None, None, 1])


def _drive_traffic(
    auth_url: str,
    inference_url: str,
    ui_url: str,
    model_dir: Path,
    demo_password: str,
    client: dict[str, str],
    artifact_factory: Callable[..., Path],
) -> None:
    auth = httpx.Client(base_url=auth_url, timeout=30.0, trust_env=False)
    api = httpx.Client(base_url=inference_url, timeout=30.0, trust_env=False)
    # Token grants: client credentials (with models:admin for the reload), password login, refresh.
    granted = auth.post("/oauth/token", data={"grant_type": "client_credentials", **client})
    assert granted.status_code == 200, granted.text
    admin = {"authorization": f"Bearer {granted.json()['access_token']}"}
    login = auth.post("/auth/login", json={"username": "demo", "password": demo_password})
    assert login.status_code == 200, login.text
    refreshed = auth.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": login.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    user = {"authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert auth.get("/.well-known/openid-configuration").status_code == 200

    # Valid predictions (single rows, a batch), metadata, examples; out-of-range values make warnings.
    card = api.get("/v1/models/iris", headers=user).json()
    row = {f["name"]: f["example"] for f in card["features"]}
    assert api.get("/v1/models", headers=user).status_code == 200
    for i in range(20):
        shifted = {k: round(v * (0.9 + i / 100), 3) for k, v in row.items()}
        assert (
            api.post("/v1/models/iris/predict", json={"instances": [shifted]}, headers=user).status_code
            == 200
        )
    batch = [{k: round(v * (0.8 + j / 250), 3) for k, v in row.items()} for j in range(100)]
    assert api.post("/v1/models/iris/predict", json={"instances": batch}, headers=user).status_code == 200
    far = {**row, "petal_length": 42.0}
    answer = api.post("/v1/models/iris/predict", json={"instances": [far]}, headers=user)
    assert answer.status_code == 200
    assert answer.json()["warnings"], answer.json()
    assert api.post("/v1/models/iris/examples/0/predict", headers=user).status_code == 200

    # Bad inputs and bad tokens: 422, 401, 404.
    for bad in (
        {"instances": [{"sepal_length": "abc"}]},
        {"instances": "rows"},
        {"instances": [{**row, "x": 1}]},
    ):
        assert api.post("/v1/models/iris/predict", json=bad, headers=user).status_code == 422
    assert api.post("/v1/models/iris/predict", json={"instances": [row]}).status_code == 401
    assert api.get("/v1/models/nope", headers=user).status_code == 404

    # A broken new version: the reload fails, the old version keeps serving.
    broken = artifact_factory(model_dir)
    (broken / "model.joblib").write_bytes(b"not a pickle")
    failed = api.post("/v1/models/iris/reload", headers=admin)
    assert failed.status_code == 409, failed.text

    _drive_ui(ui_url, "demo", demo_password)

    # Failed logins last: a bad client secret, an unknown user, a wrong password, then the lockout (429).
    wrong_secret = {**client, "client_secret": "wrong-secret"}
    refused = auth.post("/oauth/token", data={"grant_type": "client_credentials", **wrong_secret})
    assert refused.status_code in (400, 401), refused.text  # RFC 6749 5.2: 401 only for HTTP Basic
    assert auth.post("/auth/login", json={"username": "nobody", "password": "x" * 12}).status_code == 401
    statuses = [
        auth.post("/auth/login", json={"username": "demo", "password": "wrong-password"}).status_code
        for _ in range(4)
    ]
    assert statuses[-1] == 429, statuses
    auth.close()
    api.close()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_every_dashboard_and_alert_query_returns_data_from_the_real_services(
    start_service: Callable[..., Any],
    prometheus: Callable[..., Any],
    tiny_model_dir: Path,
    artifact_factory: Callable[..., Path],
) -> None:
    started = time.monotonic()
    demo_password = "proof-" + uuid.uuid4().hex[:12]
    _modelberth("users", "add", "demo", "--scope", "predict", "--scope", "models:read", "--password-stdin",
                stdin=demo_password + "\n")  # fmt: skip
    client_json = json.loads(
        _modelberth(
            "clients",
            "add",
            "prober",
            "--scope",
            "predict",
            "--scope",
            "models:read",
            "--scope",
            "models:admin",
            "--json",
        )
    )
    client = {"client_id": client_json["client_id"], "client_secret": client_json["client_secret"]}
    issuer = "http://127.0.0.1:8001"
    auth = start_service("auth", env={"AUTH_ISSUER": issuer, "AUTH_LOGIN_MAX_FAILURES": "3"}, timeout=180)
    artifact_factory(tiny_model_dir, rows=40, alias="challenger")  # shadows every prediction below
    inference_env = {
        "INFERENCE_MODEL_DIR": str(tiny_model_dir),
        "INFERENCE_AUTH_JWKS_URL": f"{auth.url}/.well-known/jwks.json",
        "INFERENCE_AUTH_ISSUER": issuer,
        "INFERENCE_POLL_SECONDS": "0",
        "INFERENCE_SHADOW": "true",
    }
    inference = start_service("inference", env=inference_env, timeout=180)
    ui = start_service("ui", env={"UI_AUTH_URL": auth.url, "UI_INFERENCE_URL": inference.url}, timeout=180)
    targets = {f"modelberth-{s.name}": s.url.removeprefix("http://") for s in (auth, inference, ui)}
    prom = prometheus(targets, rule_files=ALERT_FILES)
    prom.wait(lambda: prom.value('count(up{namespace="local"} == 1)') == 3, "all three targets up", 90)

    _drive_traffic(auth.url, inference.url, ui.url, tiny_model_dir, demo_password, client, artifact_factory)

    # Wait until a scrape has seen the last of the traffic (the lockout), then a few more for rate().
    prom.wait(lambda: prom.value("sum(modelberth_auth_rate_limited_total)") >= 1, "the lockout to be scraped")
    prom.wait(
        lambda: prom.value("sum(modelberth_ui_predictions_total)") >= 1, "the UI prediction to be scraped"
    )
    prom.wait(
        lambda: prom.value("sum(modelberth_inference_shadow_compared_rows_total)") >= 120,
        "the shadow-scored rows to be scraped",
    )

    exported = set(prom.http.get("/api/v1/label/__name__/values").json()["data"])
    values = {
        **GRAFANA_BUILTINS,
        "namespace": "local",
        "job": "(" + "|".join(targets) + ")",
        "model": "(iris)",
    }
    checks: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        dashboard = load_dashboard(path)
        checks += [(where, substitute(expr, values)) for where, expr in dashboard_queries(dashboard)]
        for name, query in variable_queries(dashboard):
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", substitute(query, values), re.S)
            assert match, f"{path.stem} variable {name}: {query}"
            selector, label = match.groups()
            found = prom.http.get(f"/api/v1/label/{label}/values", params={"match[]": selector}).json()
            assert found["status"] == "success", found
            assert found["data"], f"{path.stem} variable ${name} has no values: {query}"
            checks.append((f"{path.stem} variable {name}", selector))
    for file, rule in alert_rules():
        checks.append((f"{file} {rule['alert']}", strip_threshold(rule["expr"])))

    unknown = {
        f"{where}: {name}" for where, expr in checks for name in metric_names(expr) if name not in exported
    }
    assert not unknown, "queries name metrics no service exports:\n" + "\n".join(sorted(unknown))

    pending = dict(checks)
    problems: dict[str, str] = {}
    deadline = time.monotonic() + 45
    while pending and time.monotonic() < deadline:
        for where, expr in list(pending.items()):
            body = prom.query(expr)
            if body.get("status") != "success":
                problems[where] = f"does not parse: {body.get('error')}\n    {expr}"
                del pending[where]
            elif body["data"]["result"]:
                del pending[where]
        if pending:
            time.sleep(1.0)
    problems |= {where: f"returned no data\n    {expr}" for where, expr in pending.items()}
    assert not problems, "\n".join(f"{w}: {p}" for w, p in sorted(problems.items()))
    assert len(checks) > 60
    # Prometheus loaded the very same rule files, so they are valid for it too.
    groups = prom.http.get("/api/v1/rules").json()["data"]["groups"]
    assert sum(len(g["rules"]) for g in groups) == len(alert_rules())
    assert time.monotonic() - started < 240
