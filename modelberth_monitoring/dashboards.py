"""The three dashboards (overview, model, auth): panels defined once, queries from ``queries``.

Thresholds that mirror an alert say so in the panel's description; the alert rules themselves are
``charts/modelberth/files/alerts/modelberth.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from modelberth_monitoring import queries as q
from modelberth_monitoring.panels import (
    PanelBuilder,
    Query,
    Row,
    bargauge_panel,
    heatmap_panel,
    layout,
    query_variable,
    stacked,
    stat_panel,
    table_panel,
    threshold_lines,
    thresholds,
    timeseries_panel,
)

NO_THRESHOLD_LINES = threshold_lines(cm.GraphTresholdsStyleMode.OFF)
ALERT_AREA = threshold_lines(cm.GraphTresholdsStyleMode.LINE_AND_AREA)
LATENCY_STEPS = (0.2, "orange"), (0.5, "red")


def base(uid: str, title: str, description: str, *, by_model: bool = False) -> dashboard.Dashboard:
    """What every dashboard shares: tags, time, refresh, the link to the others, the scope variables."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["modelberth"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .fiscal_year_start_month(0)
        .live_now(False)
        .version(1)
        .link(
            dashboard.DashboardLink("modelberth")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["modelberth"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
            .icon("external link")
            .target_blank(False)
            .tooltip("")
            .url("")
        )
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(query_variable("namespace", "Namespace", q.NAMESPACES).multi(False).include_all(False))
        .with_variable(query_variable("job", "Job", q.JOBS).multi(True).include_all(True).all_value(".*"))
    )
    if by_model:
        model = query_variable("model", "Model", q.MODELS).multi(True).include_all(True).all_value(".*")
        board = board.with_variable(model)
    return board


# --- overview ------------------------------------------------------------------------------------------


def _per_service(family: dict[str, str], legend: str) -> list[Query]:
    """One query per service; ``{service}`` in ``legend`` names it."""
    return [Query(family[s], legend.replace("{service}", s)) for s in q.SERVICES]


def _overview_availability() -> Row:
    ready = Query(q.INFERENCE_INSTANCES_READY, "ready")
    return Row(
        "Availability",
        [
            stat_panel(
                "Instances up",
                "Scrape targets answering /metrics, per job (up == 1).",
                Query(q.INSTANCES_UP, "{{job}}"),
                unit="none",
                steps=thresholds("red", (1, "green")),
                size=(12, 4),
            ),
            stat_panel(
                "Inference instances with a model ready",
                "Inference processes whose /readyz would answer 200 (at least one model loaded).",
                ready,
                unit="none",
                steps=thresholds("red", (1, "green")),
                size=(12, 4),
            ),
        ],
    )


def _overview_traffic() -> Row:
    return Row(
        "Traffic and errors",
        [
            timeseries_panel(
                "Requests/s by service and route",
                "HTTP requests per second, by route template (probes and /metrics excluded).",
                *_per_service(q.REQUESTS_BY_ROUTE, "{service} {{route}}"),
                unit="reqps",
                steps=thresholds("green"),
            ).thresholds_style(NO_THRESHOLD_LINES),
            timeseries_panel(
                "Requests/s by status class",
                "HTTP requests per second by status class (2xx, 4xx, 5xx) and job.",
                *_per_service(q.REQUESTS_BY_STATUS, "{{job}} {{status}}"),
                unit="reqps",
                steps=thresholds("green"),
            ).thresholds_style(NO_THRESHOLD_LINES),
            timeseries_panel(
                "Error ratio (5xx)",
                "Share of requests answered 5xx, per job; 0 when there are none. Alert: > 5 % for 5 min.",
                *_per_service(q.SERVER_ERROR_RATIO, "{{job}}"),
                unit="percentunit",
                steps=thresholds("green", (0.01, "orange"), (0.05, "red")),
            ).thresholds_style(ALERT_AREA),
            timeseries_panel(
                "Client error ratio (4xx)",
                "Share of requests answered 4xx (bad input, missing or expired tokens, unknown models).",
                *_per_service(q.CLIENT_ERROR_RATIO, "{{job}}"),
                unit="percentunit",
                steps=thresholds("green", (0.1, "orange"), (0.25, "red")),
            ),
        ],
    )


def _overview_latency() -> Row:
    latency_alert = {
        "auth": "Alert: p95 > 500 ms for 10 min (auth and inference).",
        "inference": "Alert: p95 > 500 ms for 10 min (auth and inference).",
        "ui": "Alert: p95 > 500 ms for 10 min (not for the UI: Gradio streams).",
    }
    return Row(
        "Latency",
        [
            timeseries_panel(
                f"{s} latency p50 / p95 / p99 by route",
                f"Request duration quantiles of {s}, by route template. {latency_alert[s]}",
                *(Query(q.LATENCY[s][p], f"p{round(p * 100)} {{{{route}}}}") for p in q.LATENCY_QUANTILES),
                unit="s",
                steps=thresholds("green", *LATENCY_STEPS),
                width=8,
            )
            for s in q.SERVICES
        ],
    )


def _overview_saturation() -> Row:
    return Row(
        "Saturation",
        [
            timeseries_panel(
                "Requests in flight",
                "Requests being handled right now, per job.",
                *_per_service(q.IN_FLIGHT, "{{job}}"),
                unit="short",
                steps=thresholds("green", (50, "orange"), (200, "red")),
                width=8,
            ).decimals(0),
            timeseries_panel(
                "CPU per instance",
                "CPU seconds used per second by each process (1 = one full core).",
                Query(q.CPU_PER_INSTANCE, "{{job}} {{instance}}"),
                unit="percentunit",
                steps=thresholds("green", (0.8, "orange"), (0.95, "red")),
                width=8,
            ),
            timeseries_panel(
                "Resident memory per instance",
                "Resident set size of each process.",
                Query(q.MEMORY_PER_INSTANCE, "{{job}} {{instance}}"),
                unit="bytes",
                steps=thresholds("green", (1.5 * 2**30, "orange"), (2 * 2**30, "red")),
                width=8,
            ),
        ],
    )


def _overview_ui() -> Row:
    return Row(
        "UI",
        [
            timeseries_panel(
                "UI logins/s by outcome",
                "Sign-ins through the Gradio UI.",
                Query(q.UI_LOGINS_BY_OUTCOME, "{{outcome}}"),
                unit="reqps",
                steps=thresholds("green"),
            ).thresholds_style(NO_THRESHOLD_LINES),
            timeseries_panel(
                "UI predictions/s by kind",
                "Predictions requested through the UI (form, example, batch...).",
                Query(q.UI_PREDICTIONS_BY_KIND, "{{kind}}"),
                unit="reqps",
                steps=thresholds("green"),
            ).thresholds_style(NO_THRESHOLD_LINES),
        ],
    )


def overview() -> dashboard.Dashboard:
    """Traffic, errors, latency and saturation of every service."""
    board = base(
        "modelberth-overview",
        "modelberth / Service overview",
        "Traffic, errors, latency and saturation of auth, inference and ui.",
    )
    rows = [_overview_availability(), _overview_traffic(), _overview_latency(), _overview_saturation()]
    return layout(board, [*rows, _overview_ui()])


# --- model ---------------------------------------------------------------------------------------------


def _model_served() -> Row:
    return Row(
        "What is served",
        [
            table_panel(
                "Model version in service",
                "Each model and version currently loaded, with the number of inference instances serving it "
                "(two rows for one model = a rollout in progress).",
                Query(q.MODELS_IN_SERVICE, "__auto"),
                rename_value="instances",
                size=(12, 6),
            ),
            stat_panel(
                "Instances with a model ready",
                "Inference instances with at least one model loaded.",
                Query(q.INFERENCE_INSTANCES_READY, "ready"),
                unit="none",
                steps=thresholds("red", (1, "green")),
                size=(6, 6),
            ),
            stat_panel(
                "Model load failures (1 h)",
                "Failed loads (schema, scikit-learn version, checksum or unpickling) in the last hour. "
                "Alert: 3 or more in 15 min.",
                Query(q.MODEL_LOAD_FAILURES_1H, "{{model}}"),
                unit="none",
                steps=thresholds("green", (1, "orange"), (3, "red")),
                size=(6, 6),
            ),
        ],
    )


def _model_predictions() -> Row:
    return Row(
        "Predictions",
        [
            timeseries_panel(
                "Predictions/s by class",
                "Rows predicted per second, by predicted class.",
                Query(q.PREDICTIONS_BY_CLASS, "{{model}} {{class}}"),
                unit="ops",
                steps=thresholds("green"),
            )
            .thresholds_style(NO_THRESHOLD_LINES)
            .stacking(stacked()),
            timeseries_panel(
                "Class share",
                "Share of each predicted class; a shift without a change in traffic is a sign of drift.",
                Query(q.CLASS_SHARE, "{{model}} {{class}}"),
                unit="percentunit",
                steps=thresholds("green"),
            )
            .max(1)
            .thresholds_style(NO_THRESHOLD_LINES),
            heatmap_panel(
                "Confidence distribution",
                "Top-class probability of each prediction (histogram buckets per interval).",
                Query(q.CONFIDENCE_BUCKETS, "{{le}}"),
                unit="percentunit",
            ),
            timeseries_panel(
                "Confidence p10 / median",
                "Low quantiles of the top-class probability; a drop means the model is less sure of recent "
                "inputs.",
                Query(q.CONFIDENCE[0.1], "{{model}} p10"),
                Query(q.CONFIDENCE[0.5], "{{model}} median"),
                unit="percentunit",
                steps=thresholds("red", (0.5, "orange"), (0.7, "green")),
            ).max(1),
            timeseries_panel(
                "Batch size p50 / p95",
                "Rows per prediction request.",
                Query(q.BATCH_SIZE[0.5], "p50"),
                Query(q.BATCH_SIZE[0.95], "p95"),
                unit="short",
                steps=thresholds("green"),
            ).thresholds_style(NO_THRESHOLD_LINES),
            timeseries_panel(
                "Input warnings/s by feature and kind",
                "Accepted inputs outside the training range, unseen categories, missing optional values...",
                Query(q.INPUT_WARNINGS, "{{model}} {{feature}} {{kind}}"),
                unit="ops",
                steps=thresholds("green", (0.1, "orange"), (1, "red")),
            ).thresholds_style(NO_THRESHOLD_LINES),
        ],
    )


def _model_drift_and_loading() -> Sequence[Row]:
    psi_steps = thresholds("green", (0.1, "orange"), (0.2, "red"))
    drift = Row(
        "Drift",
        [
            timeseries_panel(
                "Feature drift (PSI) by feature",
                "Population stability index of recent inputs against the training profile. < 0.1 stable, "
                "0.1-0.2 moderate, > 0.2 significant (alert after 15 min).",
                Query(q.FEATURE_DRIFT_PSI, "{{model}} {{feature}}"),
                unit="none",
                steps=psi_steps,
                width=16,
            )
            .decimals(3)
            .thresholds_style(ALERT_AREA),
            bargauge_panel(
                "PSI now",
                "Current population stability index per feature (max over instances).",
                Query(q.FEATURE_DRIFT_PSI, "{{feature}}"),
                unit="none",
                steps=psi_steps,
            )
            .decimals(3)
            .min(0)
            .max(0.5),
        ],
    )
    loading = Row(
        "Loading",
        [
            timeseries_panel(
                "Model load failures",
                "Failed model loads per interval, by model.",
                Query(q.MODEL_LOAD_FAILURES, "{{model}}"),
                unit="none",
                steps=thresholds("green", (1, "red")),
            ).decimals(0),
            timeseries_panel(
                "Mean model load time",
                "Average time to verify and load an artifact, per instance.",
                Query(q.MEAN_MODEL_LOAD_SECONDS, "{{instance}}"),
                unit="s",
                steps=thresholds("green", (10, "orange"), (30, "red")),
            ),
        ],
    )
    return drift, loading


def _model_shadow() -> Row:
    return Row(
        "Shadow traffic: challenger vs champion",
        [
            timeseries_panel(
                "Shadow agreement by model",
                "Share of the rows the champion answered on which the challenger agrees (same label; "
                "regression: within INFERENCE_SHADOW_TOLERANCE of the champion's value), scored off the "
                "request path. Below 90 % for long, promoting the challenger would change that many answers.",
                Query(q.SHADOW_AGREEMENT, "{{model}}"),
                unit="percentunit",
                steps=thresholds("red", (0.9, "green")),
            )
            .decimals(1)
            .max(1),
            timeseries_panel(
                "Shadow requests/s by outcome",
                "Requests the champion answered, by what the shadow did with them: scored by the challenger, "
                "dropped (the shadow queue was full: INFERENCE_SHADOW_QUEUE_ROWS) or failed (the challenger "
                "raised or cannot read the champion's requests).",
                Query(q.SHADOW_REQUESTS_BY_OUTCOME, "{{model}} {{outcome}}"),
                unit="reqps",
                steps=thresholds("green"),
            ),
            timeseries_panel(
                "Predict latency p95 by version",
                "95th percentile of one vectorised predict call, by model version and traffic (request: "
                "answering requests, by the served version or a version called by name; shadow: the "
                "challenger scoring the champion's traffic).",
                Query(q.PREDICT_LATENCY_P95_BY_VERSION, "{{model}} {{version}} {{traffic}}"),
                unit="s",
                steps=thresholds("green", (0.05, "orange")),
            ),
            stat_panel(
                "Shadow-scored share (1 h)",
                "Share of the champion's requests that the challenger scored in the last hour (the rest were "
                "dropped or failed).",
                Query(q.SHADOW_SCORED_SHARE_1H, "{{model}}"),
                unit="percentunit",
                steps=thresholds("red", (0.9, "orange"), (0.99, "green")),
                size=(12, 8),
            ).decimals(1),
        ],
    )


def _model_requests() -> Row:
    return Row(
        "Requests per model and version",
        [
            timeseries_panel(
                "Model requests/s by version and protocol",
                "Answered inference requests per second, by model, the version that answered (the served one "
                "or one called by name) and protocol (v1, v2, grpc).",
                Query(q.MODEL_REQUESTS_BY_VERSION, "{{model}} {{version}} {{protocol}}"),
                unit="reqps",
                steps=thresholds("green"),
            ),
            timeseries_panel(
                "Model request latency p95 by version",
                "95th percentile of an answered request, from its arrival to its answer (token, body, "
                "validation, the wait for its micro-batch, the prediction), by model and version.",
                Query(q.MODEL_REQUEST_LATENCY_P95, "{{model}} {{version}}"),
                unit="s",
                steps=thresholds("green", (0.1, "orange")),
            ),
            timeseries_panel(
                "Rejected requests/s (queue full, 429)",
                "Requests refused at once with 429 and Retry-After because INFERENCE_MAX_QUEUED requests of "
                "the model were already in progress: add replicas, or raise the limit if latency allows.",
                Query(q.REJECTED_BY_MODEL, "{{model}} {{reason}}"),
                unit="reqps",
                steps=thresholds("green", (0.01, "red")),
            ),
        ],
    )


def model() -> dashboard.Dashboard:
    """What the served models predict and how their inputs compare with the training data."""
    board = base(
        "modelberth-model",
        "modelberth / Model",
        "What the served models predict and how their inputs compare with the training data.",
        by_model=True,
    )
    rows = [
        _model_served(),
        _model_requests(),
        _model_predictions(),
        *_model_drift_and_loading(),
        _model_shadow(),
    ]
    return layout(board, rows)


# --- auth ----------------------------------------------------------------------------------------------


def _auth_counts() -> list[PanelBuilder]:
    """The last hour's totals, as big numbers."""
    return [
        stat_panel(
            "Signing keys loaded",
            "Keys in auth's keyset (the newest signs; older ones still verify).",
            Query(q.SIGNING_KEYS, "{{job}}"),
            unit="none",
            steps=thresholds("red", (1, "green")),
            size=(6, 4),
        ),
        stat_panel(
            "Login failures (1 h)",
            "Failed logins in the last hour.",
            Query(q.LOGIN_FAILURES_1H, "failures"),
            unit="none",
            steps=thresholds("green", (20, "orange"), (100, "red")),
            size=(6, 4),
        ),
        stat_panel(
            "Rate limited (1 h)",
            "Requests refused with 429 in the last hour.",
            Query(q.RATE_LIMITED_1H, "429"),
            unit="none",
            steps=thresholds("green", (10, "orange"), (100, "red")),
            size=(6, 4),
        ),
        stat_panel(
            "Tokens issued (1 h)",
            "Tokens issued in the last hour, all grants.",
            Query(q.TOKENS_ISSUED_1H, "tokens"),
            unit="none",
            steps=thresholds("green"),
            size=(6, 4),
        ).color_mode(cm.BigValueColorMode.VALUE),
    ]


def auth() -> dashboard.Dashboard:
    """Token issuance, failed logins and rate limiting of the auth service."""
    tokens = Row(
        "Tokens",
        [
            timeseries_panel(
                "Tokens issued/s by grant",
                "Successful token responses per second, by grant type (client_credentials, refresh_token, "
                "password login).",
                Query(q.TOKENS_ISSUED_BY_GRANT, "{{grant_type}}"),
                unit="reqps",
                steps=thresholds("green"),
            )
            .thresholds_style(NO_THRESHOLD_LINES)
            .stacking(stacked()),
            timeseries_panel(
                "Token requests/s by grant and outcome",
                "All token requests, including refused ones (bad client secret, revoked refresh token...).",
                Query(q.TOKEN_REQUESTS_BY_GRANT_AND_OUTCOME, "{{grant_type}} {{outcome}}"),
                unit="reqps",
                steps=thresholds("green"),
            ).thresholds_style(NO_THRESHOLD_LINES),
        ],
    )
    protection = Row(
        "Sign-in protection",
        [
            timeseries_panel(
                "Login failures/s by reason",
                "Failed password logins by reason. Alert: more than 1/s for 5 min (credential stuffing).",
                Query(q.LOGIN_FAILURES_BY_REASON, "{{reason}}"),
                unit="reqps",
                steps=thresholds("green", (0.2, "orange"), (1, "red")),
            ),
            timeseries_panel(
                "Rate-limited requests/s",
                "Requests refused with 429 because a client or account exceeded its attempt budget.",
                Query(q.RATE_LIMITED, "{{job}}"),
                unit="reqps",
                steps=thresholds("green", (0.1, "orange"), (1, "red")),
            ),
            *_auth_counts(),
        ],
    )
    latency = Row(
        "Latency",
        [
            timeseries_panel(
                "Auth latency p95 by route",
                "95th percentile duration per route; password and secret hashing dominate the token routes.",
                Query(q.LATENCY["auth"][0.95], "{{route}}"),
                unit="s",
                steps=thresholds("green", *LATENCY_STEPS),
                width=24,
            )
        ],
    )
    board = base(
        "modelberth-auth",
        "modelberth / Auth",
        "Token issuance, failed logins and rate limiting of the auth service.",
    )
    return layout(board, [tokens, protection, latency])


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "overview": overview,
    "model": model,
    "auth": auth,
}
"""File stem -> builder: ``charts/modelberth/files/dashboards/<stem>.json``."""


def render(name: str) -> str:
    """The JSON text of one dashboard, as committed: sorted keys, two-space indent, a final newline."""
    return (
        json.dumps(json.loads(JSONEncoder().encode(DASHBOARDS[name]().build())), indent=2, sort_keys=True)
        + "\n"
    )
