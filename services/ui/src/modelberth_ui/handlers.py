"""What the UI does, as plain functions: inputs in, a result object out. No gradio here.

Every function that calls a service takes the person's :class:`Session`. A 401 (or a token past its
expiry) comes back as ``status="expired"`` with the session marked expired, so the page can ask to log in
again while everything typed into the form stays where it is.
"""

from __future__ import annotations

import html
import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from modelberth_core.contract import FeatureSpec, ModelCard
from modelberth_ui import batch, card_view, lifecycle_view
from modelberth_ui.client import (
    ApiError,
    ForbiddenError,
    InvalidCredentialsError,
    InvalidInputError,
    ModelberthClient,
    ModelHistory,
    ModelSummary,
    ModelVersions,
    NotFoundError,
    PredictResponse,
    RateLimitedError,
    SessionExpiredError,
    UnexpectedResponseError,
)
from modelberth_ui.inputs import as_float, convert_value
from modelberth_ui.metrics import UiMetrics
from modelberth_ui.notices import notices_by_row

log = logging.getLogger("modelberth.ui")

Status = Literal["ok", "invalid", "expired", "error"]
HISTORY_ROWS = 50
"""Alias moves the Versions tab shows (the newest)."""

EXPIRED_MESSAGE = "Your session has expired. Log in again to continue: your inputs are kept."
NOT_LOGGED_IN_MESSAGE = "Please log in first."
EXPIRY_MARGIN_SECONDS = 5.0
"""Treat a token as expired this long before its ``exp``, so a request does not race the clock."""


@dataclass(frozen=True)
class Session:
    """One person's sign-in, kept in per-browser-session state (never in a URL, never global)."""

    username: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    """Unix time the access token expires, from ``expires_in``."""
    expired: bool = False
    login_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """New at every login: what the page shows is tied to it, so another person starts with a clean page."""

    def active(self, now: float | None = None) -> bool:
        """True while the token can still be sent."""
        if self.expired:
            return False
        if self.expires_at is None:
            return True
        return (now if now is not None else time.time()) < self.expires_at - EXPIRY_MARGIN_SECONDS


def _token(session: Session | None) -> str:
    if session is None:
        raise SessionExpiredError(NOT_LOGGED_IN_MESSAGE)
    if not session.active():
        raise SessionExpiredError(EXPIRED_MESSAGE)
    return session.access_token


def expire(session: Session | None) -> Session | None:
    """The same session marked expired (kept so a re-login by the same person keeps the page as is)."""
    return replace(session, expired=True) if session is not None else None


# --- login / logout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a login attempt and, on success, what the page needs to show the app."""

    ok: bool
    message: str
    session: Session | None = None
    relogin: bool = False
    """True when the same person logged in again after expiry: keep the chosen model and the form."""
    models: list[ModelSummary] = field(default_factory=list)
    selected: str | None = None
    card: ModelCard | None = None


def login(
    client: ModelberthClient,
    previous: Session | None,
    username: str,
    password: str,
    metrics: UiMetrics | None = None,
    address: str | None = None,
) -> LoginResult:
    """Log in with ``/auth/login``; on success list the models and load the first one's card.

    ``address`` is the browser's, forwarded to auth so failed logins are throttled per person and address.
    """
    username = (username or "").strip()
    if not username or not password:
        return LoginResult(False, "Enter your username and password.", session=previous)
    try:
        grant = client.login(username, password, address)
    except InvalidCredentialsError:
        _count_login(metrics, "invalid_credentials")
        return LoginResult(False, "Wrong username or password.", session=previous)
    except RateLimitedError as exc:
        _count_login(metrics, "rate_limited")
        wait = f" in {math.ceil(exc.retry_after)} seconds" if exc.retry_after else " later"
        return LoginResult(False, f"Too many failed attempts. Try again{wait}.", session=previous)
    except ApiError as exc:
        _count_login(metrics, "error")
        log.warning("login failed", extra={"error": type(exc).__name__})
        return LoginResult(False, f"Cannot log in right now: {exc.message}.", session=previous)
    _count_login(metrics, "success")
    expires_at = time.time() + grant.expires_in if grant.expires_in else None
    session = Session(username, grant.access_token, grant.refresh_token, grant.scopes, expires_at)
    if previous is not None and previous.expired and previous.username == username:
        return LoginResult(True, f"Welcome back, {username}.", session=session, relogin=True)
    try:
        models = client.list_models(session.access_token)
    except ApiError as exc:
        return LoginResult(True, f"Logged in, but the models cannot be listed: {exc.message}.", session)
    if not models:
        return LoginResult(True, "Logged in. No model is being served yet.", session, models=models)
    selected = models[0].name
    try:
        card = client.get_card(session.access_token, selected)
    except ApiError as exc:
        return LoginResult(
            True, f"Logged in, but the card of {selected} cannot be loaded: {exc.message}.", session, False,
            models, selected,
        )  # fmt: skip
    return LoginResult(True, f"Logged in as {username}.", session, False, models, selected, card)


def _count_login(metrics: UiMetrics | None, outcome: Any) -> None:
    if metrics is not None:
        metrics.login(outcome)


def logout(client: ModelberthClient, session: Session | None) -> str:
    """Forget the session; revoke its refresh token so it cannot mint new access tokens."""
    if session is not None and session.refresh_token:
        try:
            client.revoke(session.refresh_token)
        except ApiError as exc:
            # Logging out must always work for the person; the token still expires on its own.
            log.warning("refresh token revocation failed", extra={"error": type(exc).__name__})
    return "You are logged out."


# --- choosing a model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """The card of the model a person picked (or why there is none)."""

    status: Status
    message: str
    session: Session | None
    card: ModelCard | None = None


def choose_model(client: ModelberthClient, session: Session | None, name: str | None) -> ModelChoice:
    """Load the card of ``name``."""
    if not name:
        return ModelChoice("invalid", "Choose a model.", session)
    try:
        card = client.get_card(_token(session), name)
    except SessionExpiredError:
        return ModelChoice("expired", _expired_text(session), expire(session))
    except ApiError as exc:
        return ModelChoice("error", f"Cannot load the card of {name}: {exc.message}.", session)
    return ModelChoice("ok", "", session, card)


def describe_model(card: ModelCard | None) -> str:
    """One line under the model chooser: version, task, target, primary test score."""
    if card is None:
        return ""
    kind: str = card.task
    if card.classes:
        kind = f"classification into {len(card.classes)} classes"
    primary = card.metrics.primary
    score = card.metrics.test.get(primary)
    scored = f" · test {primary} {score:.3g}" if score is not None else ""
    return f"**{card.name}** · version `{card.version}` · {kind} of *{card.target}*{scored}"


def _expired_text(session: Session | None) -> str:
    return NOT_LOGGED_IN_MESSAGE if session is None else EXPIRED_MESSAGE


# --- the form -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """How to draw one input of the prediction form."""

    name: str
    kind: Literal["number", "dropdown", "text"]
    label: str
    info: str
    value: Any
    required: bool
    choices: tuple[str, ...] = ()
    lines: int = 1
    max_length: int | None = None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def form_spec(card: ModelCard) -> list[FieldSpec]:
    """One field per feature, in the model's order: numbers, dropdowns or text boxes."""
    return [_field(feature) for feature in card.features]


def _field(feature: FeatureSpec) -> FieldSpec:
    note = (f"{feature.description} · " if feature.description else "") + "{hint}"
    note += "" if feature.required else " · optional"
    if feature.type == "numeric":
        if feature.min is not None and feature.max is not None:
            hint = f"training range {_fmt(feature.min)} – {_fmt(feature.max)}"
        else:
            hint = "a number"
        return FieldSpec(
            feature.name, "number", feature.name, note.format(hint=hint), as_float(feature.example),
            feature.required,
        )  # fmt: skip
    if feature.type == "categorical":
        choices = tuple(feature.categories or ())
        example = str(feature.example) if feature.example is not None else None
        value: Any = example if example in choices else None
        if value is None and feature.required and choices:
            value = choices[0]
        hint = f"{len(choices)} categories seen in training"
        return FieldSpec(
            feature.name, "dropdown", feature.name, note.format(hint=hint), value, feature.required,
            choices,
        )  # fmt: skip
    longest = feature.max_length
    hint = f"free text (training texts up to {longest} characters)" if longest else "free text"
    return FieldSpec(
        feature.name, "text", feature.name, note.format(hint=hint),
        str(feature.example) if feature.example is not None else "", feature.required, (),
        3 if longest is None or longest > 80 else 1, longest,
    )  # fmt: skip


def instance_from_form(card: ModelCard, values: Sequence[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The instance to send for the form's ``values`` (in feature order), and per-field problems."""
    instance: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for feature, raw in zip(card.features, values, strict=True):
        value, problem = convert_value(feature, raw)
        if problem:
            problems[feature.name] = problem
        instance[feature.name] = value
    return instance, problems


# --- predictions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionView:
    """What the page shows for one prediction."""

    status: Status
    summary: str
    session: Session | None
    probabilities: pd.DataFrame | None = None
    """Columns ``class`` and ``probability`` in the model's class order (for the bar chart)."""
    field_messages: dict[str, str] = field(default_factory=dict)
    response: PredictResponse | None = None


def predict_form(
    client: ModelberthClient,
    session: Session | None,
    card: ModelCard | None,
    values: Sequence[Any],
    metrics: UiMetrics | None = None,
) -> PredictionView:
    """Predict the row typed into the form."""
    if card is None:
        return PredictionView("invalid", "Choose a model first.", session)
    instance, problems = instance_from_form(card, values)
    if problems:
        return PredictionView(
            "invalid", "Fix the highlighted fields, then predict again.", session, field_messages=problems
        )
    try:
        response = client.predict(_token(session), card.name, [instance])
    except SessionExpiredError:
        return PredictionView("expired", _expired_text(session), expire(session))
    except InvalidInputError as exc:
        by_field = {p.field: p.message for p in exc.problems if p.field}
        general = [p.message for p in exc.problems if not p.field] or ([] if by_field else [exc.message])
        text = "The service rejected this input." + "".join(f"\n\n- {m}" for m in general)
        return PredictionView("invalid", text, session, field_messages=by_field)
    except ApiError as exc:
        return PredictionView("error", _error_text(exc), session)
    if metrics is not None:
        metrics.prediction("form")
    return present_prediction(card, response, session)


def _error_text(exc: ApiError) -> str:
    if isinstance(exc, ForbiddenError):
        return f"Your account may not do this ({exc.message}). Ask an admin for the `predict` scope."
    if isinstance(exc, NotFoundError):
        return f"Not found: {exc.message}."
    return f"The prediction failed: {exc.message}."


def present_prediction(card: ModelCard, response: PredictResponse, session: Session | None) -> PredictionView:
    """Summary text, probability table and per-field warnings for the first prediction of ``response``."""
    rows = notices_by_row(response.warnings, len(response.predictions), card.feature_names)
    notices = rows[0] if rows else []
    field_messages: dict[str, str] = {}
    general: list[str] = []
    for notice in notices:
        if notice.feature:
            joined = field_messages.get(notice.feature)
            field_messages[notice.feature] = f"{joined}; {notice.message}" if joined else notice.message
        else:
            general.append(notice.message)
    prediction = response.predictions[0]
    lines: list[str] = []
    probabilities: pd.DataFrame | None = None
    if card.task == "classification":
        lines.append(f"### Prediction: {prediction}")
        probs = response.probabilities[0] if response.probabilities else None
        if probs:
            order = [c for c in (card.classes or []) if c in probs] + [
                c for c in probs if c not in (card.classes or [])
            ]
            probabilities = pd.DataFrame({"class": order, "probability": [float(probs[c]) for c in order]})
            lines.append("| class | probability |\n|---|---:|")
            for name, p in sorted(probs.items(), key=lambda item: -item[1]):
                lines.append(f"| {name} | {p:.4f} |")
        if card.threshold is not None and card.positive_label is not None:
            lines.append(
                f"\nDecision threshold: *{card.positive_label}* when P({card.positive_label}) ≥ "
                f"{card.threshold.value:.3g} ({card.threshold.strategy})."
            )
    else:
        value = as_float(prediction)
        shown = f"{value:.6g}" if value is not None else str(prediction)
        lines.append(f"### Predicted {card.target}: {shown}")
        lines.append(regression_context(card))
    lines.append(f"\n<small>model {response.model} · version {response.version}</small>")
    if notices:
        lines.append("\n**Warnings**")
        lines.extend(f"- ⚠ {n.feature + ': ' if n.feature else ''}{n.message}" for n in notices)
    return PredictionView("ok", "\n".join(lines), session, probabilities, field_messages, response)


def regression_context(card: ModelCard) -> str:
    """How far off a regression prediction typically is, from the card's test scores."""
    test = card.metrics.test
    parts = [f"{name.upper()} {test[name]:.4g}" for name in ("rmse", "mae") if name in test]
    if "r2" in test:
        parts.append(f"R² {test['r2']:.3f}")
    if not parts:
        return ""
    typical = test.get("rmse", test.get("mae"))
    spread = f" A typical error is about ± {typical:.4g}." if typical is not None else ""
    return f"On held-out test data: {', '.join(parts)}.{spread}"


# --- by example -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleView:
    """A held-out example and its prediction."""

    row: pd.DataFrame
    """Columns ``feature`` and ``value``."""
    prediction: PredictionView


def predict_example(
    client: ModelberthClient,
    session: Session | None,
    card: ModelCard | None,
    index: float | int | None,
    metrics: UiMetrics | None = None,
) -> ExampleView:
    """Fetch held-out example ``index`` and predict it on the service side."""
    empty = pd.DataFrame({"feature": [], "value": []})
    if card is None:
        return ExampleView(empty, PredictionView("invalid", "Choose a model first.", session))
    if index is None or not float(index).is_integer() or index < 0:
        return ExampleView(empty, PredictionView("invalid", "Enter a whole number ≥ 0.", session))
    position = int(index)
    try:
        token = _token(session)
        response = client.predict_example(token, card.name, position)
        # The example endpoint returns the row with its prediction; ask for it only if it did not.
        instance = response.instance
        if instance is None:
            instance = client.get_example(token, card.name, position).instance
    except SessionExpiredError:
        return ExampleView(empty, PredictionView("expired", _expired_text(session), expire(session)))
    except NotFoundError as exc:
        text = f"There is no held-out example {position} ({exc.message})."
        return ExampleView(empty, PredictionView("invalid", text, session))
    except ApiError as exc:
        return ExampleView(empty, PredictionView("error", _error_text(exc), session))
    if metrics is not None:
        metrics.prediction("example")
    names = card.feature_names + [k for k in instance if k not in card.feature_names]
    row = pd.DataFrame({"feature": names, "value": [_cell(instance.get(name)) for name in names]})
    return ExampleView(row, present_prediction(card, response, session))


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


# --- batch ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchView:
    """What the Batch tab shows after an upload."""

    status: Status
    message: str
    session: Session | None
    tables: batch.BatchTables | None = None


def predict_batch(
    client: ModelberthClient,
    session: Session | None,
    card: ModelCard | None,
    path: str | Path | None,
    limits: batch.BatchLimits,
    out_dir: Path,
    metrics: UiMetrics | None = None,
) -> BatchView:
    """Check an uploaded CSV against the card, predict the good rows in chunks, list the bad ones."""
    if card is None:
        return BatchView("invalid", "Choose a model first.", session)
    if path is None:
        return BatchView("invalid", "Upload a CSV file first.", session)
    try:
        parsed = batch.read_csv(Path(path), card, limits)
    except batch.BatchRefusedError as exc:
        return BatchView("invalid", str(exc), session)
    except OSError:
        return BatchView("error", "The uploaded file could not be read. Upload it again.", session)
    try:
        outcome = batch.predict_rows(client, _token(session), card, parsed.rows, limits)
    except SessionExpiredError:
        return BatchView("expired", _expired_text(session), expire(session))
    except ApiError as exc:
        return BatchView("error", _error_text(exc), session)
    if metrics is not None and outcome.predicted:
        metrics.prediction("batch")
    tables = batch.present(card, parsed, outcome, out_dir)
    return BatchView("ok", tables.message, session, tables)


# --- the model card -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelView:
    """The Model tab's content."""

    status: Status
    message: str
    session: Session | None
    overview: str = ""
    metrics: pd.DataFrame | None = None
    leaderboard: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None
    plots: str = ""
    importance: pd.DataFrame | None = None
    fingerprint: str = ""
    versions: str = ""


def model_view(client: ModelberthClient, session: Session | None, card: ModelCard | None) -> ModelView:
    """The card as tables and text, plus the report's plots (fetched now; the rest is in the card)."""
    if card is None:
        return ModelView("invalid", "Choose a model first.", session)
    try:
        token = _token(session)
        served = {m.name: m.version for m in client.list_models(token)}
        report = client.get_report(token, card.name)
        plots = card_view.plots_html(card_view.report_plots(report))
        message = ""
    except SessionExpiredError:
        return ModelView("expired", _expired_text(session), expire(session))
    except ApiError as exc:
        served = {}
        plots = f"<p>The training report is not available: {html.escape(exc.message)}.</p>"
        message = "The report could not be loaded; the card is shown without its plots."
    return ModelView(
        "ok",
        message,
        session,
        card_view.overview(card),
        card_view.metrics_table(card),
        card_view.leaderboard_table(card),
        card_view.confusion_table(card),
        plots,
        card_view.importance_table(card),
        card_view.fingerprint(card),
        card_view.versions(card, served),
    )


# --- the versions tab -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CardParts:
    """A card as the Model tab shows it (:mod:`.card_view`): overview, metrics, confusion, leaderboard,
    training data."""

    overview: str
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    leaderboard: pd.DataFrame
    fingerprint: str

    @classmethod
    def of(cls, card: ModelCard) -> CardParts:
        """The parts of ``card``."""
        return cls(
            card_view.overview(card),
            card_view.metrics_table(card),
            card_view.confusion_table(card),
            card_view.leaderboard_table(card),
            card_view.fingerprint(card),
        )


@dataclass(frozen=True)
class VersionsView:
    """The Versions tab: the version table, the history of alias moves, champion against challenger (and
    the challenger's card), the gate, shadow agreement."""

    status: Status
    message: str
    session: Session | None
    versions: pd.DataFrame | None = None
    """None when the inference does not list versions (the table is hidden)."""
    comparison: pd.DataFrame | None = None
    notes: str = ""
    gate: str = ""
    checks: pd.DataFrame | None = None
    shadow: str = ""
    history: pd.DataFrame | None = None
    """Newest alias moves first; None when the inference serves no history (the table is hidden)."""
    history_note: str = ""
    challenger: CardParts | None = None
    """The challenger's card; None when the model has none (or it cannot be read: ``challenger_note``)."""
    challenger_note: str = ""


@dataclass(frozen=True)
class _Lifecycle:
    """What the Versions tab reads besides the champion's card."""

    listing: ModelVersions | None
    history: ModelHistory | None
    history_note: str
    challenger: ModelCard | None
    challenger_note: str


def _read_lifecycle(client: ModelberthClient, token: str, name: str, champion: str) -> _Lifecycle:
    """The listing, the history and the challenger's card; each may be missing on an older inference
    (404: said in a note), an expired session or a service error raises."""
    try:
        listing: ModelVersions | None = client.list_versions(token, name)
    except NotFoundError:
        listing = None
    history: ModelHistory | None = None
    try:
        history = client.get_history(token, name, HISTORY_ROWS)
        note = (
            ""
            if history.total <= len(history.events)
            else (
                f"The {len(history.events)} newest of {history.total} moves; `modelberth models history "
                f"{name}` lists them all."
            )
        )
    except NotFoundError:
        note = "This inference does not serve the history of alias moves (`modelberth models history`)."
    if listing is None:
        return _Lifecycle(listing, history, note, None, "The challenger is not known: no versions listing.")
    challenger = listing.aliases.get("challenger")
    if challenger is None or challenger == champion:
        return _Lifecycle(listing, history, note, None, "This model has no challenger.")
    try:
        card = client.get_version_card(token, name, challenger)
        return _Lifecycle(listing, history, note, card, "")
    except NotFoundError:
        return _Lifecycle(
            listing, history, note, None, f"The card of challenger `{challenger}` cannot be read."
        )
    except UnexpectedResponseError as exc:
        return _Lifecycle(listing, history, note, None, f"The challenger's card is not shown: {exc.message}.")


def versions_view(client: ModelberthClient, session: Session | None, card: ModelCard | None) -> VersionsView:
    """Versions and aliases of the chosen model, the history of its alias moves, its champion against its
    challenger (with the challenger's card), and shadow agreement.

    The champion's card is fetched again (an alias may have moved since the model was chosen). An
    inference without ``GET /v1/models/{name}/versions`` (404) still shows the champion, with a note.
    """
    if card is None:
        return VersionsView("invalid", "Choose a model first.", session)
    try:
        token = _token(session)
        champion = client.get_card(token, card.name)
        read = _read_lifecycle(client, token, card.name, champion.version)
    except SessionExpiredError:
        return VersionsView("expired", _expired_text(session), expire(session))
    except ApiError as exc:
        return VersionsView("error", f"The versions of {card.name} cannot be loaded: {exc.message}.", session)
    listing = read.listing
    message = (
        ""
        if listing is not None
        else ("This inference does not list versions: only the version it serves is shown.")
    )
    served = listing.aliases.get("champion") if listing is not None else None
    if served is not None and served != champion.version:
        message = (
            f"The champion is now `{served}`; inference still serves `{champion.version}` "
            "(it switches within seconds)."
        )
    comparison, notes = lifecycle_view.comparison_table(champion, listing, read.challenger)
    return VersionsView(
        "ok",
        message,
        session,
        lifecycle_view.versions_table(listing) if listing is not None else None,
        comparison,
        "\n".join(f"- {note}" for note in notes),
        lifecycle_view.gate_summary(champion),
        lifecycle_view.gate_checks(champion),
        lifecycle_view.shadow_line(listing.shadow if listing is not None else None),
        lifecycle_view.history_table(read.history) if read.history is not None else None,
        read.history_note,
        CardParts.of(read.challenger) if read.challenger is not None else None,
        read.challenger_note,
    )
