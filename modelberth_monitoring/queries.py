"""Every PromQL query of the dashboards, named once.

The dashboards use these constants, and k8s/tests/test_monitoring.py evaluates each of them against a real
Prometheus scraping the real services, so a query that does not parse or returns nothing fails a test.
Every selector is scoped to the dashboard's ``$namespace`` and ``$job`` (and ``$model`` where it applies).
"""

from __future__ import annotations

from typing import Final

SERVICES: Final = ("auth", "inference", "ui")
"""The services whose HTTP metrics core exports alike (``modelberth_<service>_requests_total``...)."""

SCOPE: Final = 'namespace=~"$namespace", job=~"$job"'
MODEL_SCOPE: Final = f'{SCOPE}, model=~"$model"'
RATE: Final = "[$__rate_interval]"


def selector(metric: str, scope: str = SCOPE, *matchers: str) -> str:
    """``metric{<scope>, <matchers>}``."""
    return f"{metric}{{{', '.join((scope, *matchers))}}}"


# --- template variables --------------------------------------------------------------------------------

NAMESPACES: Final = 'label_values(up{job=~".*modelberth.*"}, namespace)'
JOBS: Final = 'label_values(up{namespace=~"$namespace", job=~".*modelberth.*"}, job)'
MODELS: Final = f"label_values({selector('modelberth_inference_model_info')}, model)"

# --- every service alike -------------------------------------------------------------------------------

INSTANCES_UP: Final = f"sum by (job) ({selector('up')})"
INFERENCE_INSTANCES_READY: Final = f"sum({selector('modelberth_inference_models_ready')} > bool 0)"
CPU_PER_INSTANCE: Final = f"rate({selector('process_cpu_seconds_total')}{RATE})"
MEMORY_PER_INSTANCE: Final = selector("process_resident_memory_bytes")


def _requests(service: str, *matchers: str) -> str:
    return f"rate({selector(f'modelberth_{service}_requests_total', SCOPE, *matchers)}{RATE})"


def _status_ratio(service: str, status: str) -> str:
    """Share of ``service``'s requests answered with ``status``; 0, not absent, while there are none."""
    matcher = f'status="{status}"'
    part = f"sum by (job) ({_requests(service, matcher)})"
    whole = f"sum by (job) ({_requests(service)})"
    return f"({part} or {whole} * 0) / {whole}"


def _duration_quantile(service: str, quantile: float) -> str:
    bucket = selector(f"modelberth_{service}_request_duration_seconds_bucket")
    return f"histogram_quantile({quantile}, sum by (le, route) (rate({bucket}{RATE})))"


REQUESTS_BY_ROUTE: Final = {s: f"sum by (route) ({_requests(s)})" for s in SERVICES}
REQUESTS_BY_STATUS: Final = {s: f"sum by (job, status) ({_requests(s)})" for s in SERVICES}
SERVER_ERROR_RATIO: Final = {s: _status_ratio(s, "5xx") for s in SERVICES}
CLIENT_ERROR_RATIO: Final = {s: _status_ratio(s, "4xx") for s in SERVICES}
LATENCY_QUANTILES: Final = (0.5, 0.95, 0.99)
LATENCY: Final = {s: {q: _duration_quantile(s, q) for q in LATENCY_QUANTILES} for s in SERVICES}
"""``LATENCY[service][quantile]``: request duration quantile by route template."""
IN_FLIGHT: Final = {s: f"sum by (job) ({selector(f'modelberth_{s}_requests_in_flight')})" for s in SERVICES}

# --- ui ------------------------------------------------------------------------------------------------

UI_LOGINS_BY_OUTCOME: Final = f"sum by (outcome) (rate({selector('modelberth_ui_logins_total')}{RATE}))"
UI_PREDICTIONS_BY_KIND: Final = f"sum by (kind) (rate({selector('modelberth_ui_predictions_total')}{RATE}))"

# --- inference: the model ------------------------------------------------------------------------------

_PREDICTIONS: Final = f"rate({selector('modelberth_inference_predictions_total', MODEL_SCOPE)}{RATE})"
_CONFIDENCE: Final = selector("modelberth_inference_prediction_confidence_bucket", MODEL_SCOPE)
_LOAD_FAILURES: Final = selector("modelberth_inference_model_load_failures_total", MODEL_SCOPE)
_SHADOW_REQUESTS: Final = "modelberth_inference_shadow_requests_total"

MODELS_IN_SERVICE: Final = (
    f"count by (model, version) ({selector('modelberth_inference_model_info', MODEL_SCOPE)})"
)
MODEL_LOAD_FAILURES_1H: Final = f"sum by (model) (increase({_LOAD_FAILURES}[1h]))"
MODEL_LOAD_FAILURES: Final = f"sum by (model) (increase({_LOAD_FAILURES}{RATE}))"
MEAN_MODEL_LOAD_SECONDS: Final = (
    f"sum by (job, instance) ({selector('modelberth_inference_model_load_seconds_sum')})"
    f" / sum by (job, instance) ({selector('modelberth_inference_model_load_seconds_count')})"
)
PREDICTIONS_BY_CLASS: Final = f"sum by (model, class) ({_PREDICTIONS})"
CLASS_SHARE: Final = f"{PREDICTIONS_BY_CLASS} / ignoring (class) group_left sum by (model) ({_PREDICTIONS})"
CONFIDENCE_BUCKETS: Final = f"sum by (le) (increase({_CONFIDENCE}{RATE}))"
CONFIDENCE: Final = {
    q: f"histogram_quantile({q}, sum by (le, model) (rate({_CONFIDENCE}{RATE})))" for q in (0.1, 0.5)
}
"""``CONFIDENCE[quantile]``: quantile of the top-class probability, by model."""
_BATCH_SIZE: Final = selector("modelberth_inference_batch_size_bucket")
BATCH_SIZE: Final = {
    q: f"histogram_quantile({q}, sum by (le) (rate({_BATCH_SIZE}{RATE})))" for q in (0.5, 0.95)
}
"""``BATCH_SIZE[quantile]``: rows per prediction request."""
INPUT_WARNINGS: Final = (
    "sum by (model, feature, kind) "
    f"(rate({selector('modelberth_inference_input_warnings_total', MODEL_SCOPE)}{RATE}))"
)
FEATURE_DRIFT_PSI: Final = (
    f"max by (model, feature) ({selector('modelberth_inference_feature_drift_psi', MODEL_SCOPE)})"
)
SHADOW_AGREEMENT: Final = (
    "sum by (model) "
    f"(rate({selector('modelberth_inference_shadow_agreeing_rows_total', MODEL_SCOPE)}{RATE}))"
    " / sum by (model) "
    f"(rate({selector('modelberth_inference_shadow_compared_rows_total', MODEL_SCOPE)}{RATE}))"
)
SHADOW_REQUESTS_BY_OUTCOME: Final = (
    f"sum by (model, outcome) (rate({selector(_SHADOW_REQUESTS, MODEL_SCOPE)}{RATE}))"
)
SHADOW_SCORED_SHARE_1H: Final = (
    f"""sum by (model) (increase({selector(_SHADOW_REQUESTS, MODEL_SCOPE, 'outcome="scored"')}[1h]))"""
    f" / sum by (model) (increase({selector(_SHADOW_REQUESTS, MODEL_SCOPE)}[1h]))"
)
PREDICT_LATENCY_P95_BY_VERSION: Final = (
    "histogram_quantile(0.95, sum by (le, model, version, traffic) "
    f"(rate({selector('modelberth_inference_predict_duration_seconds_bucket', MODEL_SCOPE)}{RATE})))"
)

# --- inference: requests per model and version, backpressure (issue 17) --------------------------------

_MODEL_REQUESTS: Final = "modelberth_inference_model_request_duration_seconds"
_REJECTED: Final = selector("modelberth_inference_rejected_requests_total", MODEL_SCOPE)
MODEL_REQUESTS_BY_VERSION: Final = (
    f"sum by (model, version, protocol) (rate({selector(f'{_MODEL_REQUESTS}_count', MODEL_SCOPE)}{RATE}))"
)
MODEL_REQUEST_LATENCY_P95: Final = (
    "histogram_quantile(0.95, sum by (le, model, version) "
    f"(rate({selector(f'{_MODEL_REQUESTS}_bucket', MODEL_SCOPE)}{RATE})))"
)
REJECTED_BY_MODEL: Final = f"sum by (model, reason) (rate({_REJECTED}{RATE}))"
"""Requests refused at once with 429 because the model's queue was full (INFERENCE_MAX_QUEUED)."""

# --- auth ----------------------------------------------------------------------------------------------

_TOKENS: Final = "modelberth_auth_token_requests_total"
_ISSUED: Final = selector(_TOKENS, SCOPE, 'outcome="success"')
TOKENS_ISSUED_BY_GRANT: Final = f"sum by (grant_type) (rate({_ISSUED}{RATE}))"
TOKEN_REQUESTS_BY_GRANT_AND_OUTCOME: Final = f"sum by (grant_type, outcome) (rate({selector(_TOKENS)}{RATE}))"
LOGIN_FAILURES_BY_REASON: Final = (
    f"sum by (reason) (rate({selector('modelberth_auth_login_failures_total')}{RATE}))"
)
RATE_LIMITED: Final = f"sum by (job) (rate({selector('modelberth_auth_rate_limited_total')}{RATE}))"
SIGNING_KEYS: Final = f"max by (job) ({selector('modelberth_auth_signing_keys')})"
LOGIN_FAILURES_1H: Final = f"sum(increase({selector('modelberth_auth_login_failures_total')}[1h]))"
RATE_LIMITED_1H: Final = f"sum(increase({selector('modelberth_auth_rate_limited_total')}[1h]))"
TOKENS_ISSUED_1H: Final = f"sum(increase({_ISSUED}[1h]))"
