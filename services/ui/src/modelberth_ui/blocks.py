"""The page: lays out the components and wires events to :mod:`modelberth_ui.handlers`. No logic here.

Two columns share the page: the login form and the app. A ``gr.State`` holds the person's session (the
token stays on the server). When a call says the token expired, the login form comes back and the app is
only visually hidden (``visible="hidden"`` keeps it in the page), so what was typed is still there after
logging in again. The prediction form is drawn by ``@gr.render`` from the chosen model's card.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from modelberth_core.contract import ModelCard
from modelberth_ui import handlers
from modelberth_ui.batch import BatchLimits
from modelberth_ui.client import ModelberthClient
from modelberth_ui.handlers import EXPIRED_MESSAGE, PredictionView, Session
from modelberth_ui.metrics import UiMetrics

CSS = """
#mb-login { max-width: 420px; margin: 2rem auto 0 auto; }
#mb-app, #mb-header { max-width: 1100px; margin-left: auto; margin-right: auto; width: 100%; }
.mb-field-warning p { color: #b45309; font-size: 0.85rem; margin: 0; }
.mb-error p { color: #b91c1c; }
.mb-plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.mb-plot { margin: 0; }
.mb-plot img { width: 100%; height: auto; border: 1px solid #e5e7eb; border-radius: 6px; }
.mb-plot figcaption { font-size: 0.85rem; text-align: center; color: #4b5563; }
"""
"""Page styles, passed to ``gr.mount_gradio_app(css=...)``; no external fonts or stylesheets."""

PLACEHOLDER = "Log in and choose a model to see its form."
EMPTY_ROW = pd.DataFrame({"feature": [], "value": []})


def _card(value: Any) -> ModelCard | None:
    return ModelCard.model_validate(value["card"]) if value else None


def _card_state(card: ModelCard | None, session: Session | None) -> dict[str, Any] | None:
    """The chosen card as JSON, tagged with the login that chose it.

    JSON because gradio hashes state values to notice changes (a frozen pydantic model breaks that); the
    login tag makes a different person's login redraw the form even for the same card.
    """
    if card is None:
        return None
    return {"login": session.login_id if session else "", "card": card.model_dump(mode="json")}


def _relogin_updates(status: str, session: Session | None) -> tuple[Any, Any, Any, Any]:
    """Session, login column, app column and login message after a call with ``status``."""
    if status == "expired":
        text = EXPIRED_MESSAGE if session is not None else handlers.NOT_LOGGED_IN_MESSAGE
        message = gr.Markdown(text, elem_classes=["mb-error"])
        return session, gr.Column(visible=True), gr.Column(visible="hidden"), message
    return session, gr.skip(), gr.skip(), gr.skip()


def _prediction_updates(view: PredictionView) -> tuple[Any, Any]:
    """The summary Markdown and the probability bar chart for a prediction."""
    if view.status == "expired":
        return gr.skip(), gr.skip()  # the login form says why; the last result stays on the page
    summary = gr.Markdown(view.summary, elem_classes=[] if view.status == "ok" else ["mb-error"])
    if view.probabilities is None:
        return summary, gr.BarPlot(visible=False)
    return summary, gr.BarPlot(value=view.probabilities, visible=True)


@dataclass
class _Shell:
    """What every tab shares: the states, the login column, the app column and the model chooser."""

    session: gr.State
    card_state: gr.State
    current_tab: gr.State
    login_col: gr.Column
    app_col: gr.Column
    login_msg: gr.Markdown
    username: gr.Textbox
    password: gr.Textbox
    login_btn: gr.Button
    model_dd: gr.Dropdown
    logout_btn: gr.Button
    model_info: gr.Markdown

    @property
    def relogin(self) -> list[Any]:
        """The outputs of :func:`_relogin_updates`."""
        return [self.session, self.login_col, self.app_col, self.login_msg]


@dataclass
class _Tabs:
    """The components of every tab that events write to (outputs lists, in the order handlers return)."""

    predict: gr.Tab
    form_area: gr.Column
    form: list[Any]
    """The form's summary and probability plot."""
    example: gr.Tab
    example_index: gr.Number
    example_btn: gr.Button
    example_out: list[Any]
    """The example's row, summary and probability plot."""
    batch: gr.Tab
    upload: gr.File
    batch_btn: gr.Button
    batch_out: list[Any]
    """Message, download, rejected rows, distribution, results."""
    model: gr.Tab
    model_out: list[Any]
    versions: gr.Tab
    versions_out: list[Any]

    @property
    def results(self) -> list[Any]:
        """Every prediction output (cleared when another model is chosen)."""
        return [*self.form, *self.example_out, *self.batch_out]


def build_ui(
    client: ModelberthClient,
    *,
    limits: BatchLimits | None = None,
    out_dir: Path | None = None,
    metrics: UiMetrics | None = None,
    delete_cache: tuple[int, int] | None = None,
) -> gr.Blocks:
    """The whole UI as one ``gr.Blocks``: ``client`` is shared, all per-person data lives in ``gr.State``."""
    limits = limits or BatchLimits(5 * 1024 * 1024, 20_000, 500, 512 * 1024)
    results_dir = out_dir or Path(tempfile.gettempdir()) / "modelberth-ui" / "results"

    ui = gr.Blocks(title="modelberth", analytics_enabled=False, delete_cache=delete_cache)
    with ui:
        shell, tabs = _layout()
        _wire_login(client, shell, tabs, metrics)
        _wire_model_choice(client, shell, tabs)
        _wire_form(client, shell, tabs, metrics)
        _wire_example(client, shell, tabs, metrics)
        _wire_batch(client, shell, tabs, limits, results_dir, metrics)
        _wire_model_tab(client, shell, tabs)
        _wire_versions_tab(client, shell, tabs)
        for tab, name in ((tabs.predict, "predict"), (tabs.example, "example"), (tabs.batch, "batch")):
            tab.select(_constant(name), outputs=[shell.current_tab], api_visibility="private")
    return ui


# --- layout -----------------------------------------------------------------------------------------


def _layout() -> tuple[_Shell, _Tabs]:
    session, card_state, current_tab = gr.State(None), gr.State(None), gr.State("predict")
    with gr.Row(elem_id="mb-header"):
        gr.Markdown("## modelberth")
    with gr.Column(elem_id="mb-login") as login_col:
        gr.Markdown("### Log in")
        login_msg = gr.Markdown(elem_id="mb-login-message")
        username = gr.Textbox(label="Username", elem_id="mb-username")
        password = gr.Textbox(label="Password", type="password", elem_id="mb-password")
        login_btn = gr.Button("Log in", variant="primary", elem_id="mb-login-button")
    with gr.Column(visible=False, elem_id="mb-app") as app_col:
        with gr.Row():
            model_dd = gr.Dropdown(label="Model", choices=[], scale=4, min_width=200, elem_id="mb-model")
            logout_btn = gr.Button(
                "Log out", size="sm", variant="secondary", scale=0, min_width=90, elem_id="mb-logout"
            )
        model_info = gr.Markdown(elem_id="mb-model-info")
        with gr.Tabs():
            predict, form_area, form = _predict_tab()
            example, example_index, example_btn, example_out = _example_tab()
            batch, upload, batch_btn, batch_out = _batch_tab()
            model, model_out = _model_tab()
            versions, versions_out = _versions_tab()
    shell = _Shell(
        session, card_state, current_tab, login_col, app_col, login_msg, username, password, login_btn,
        model_dd, logout_btn, model_info,
    )  # fmt: skip
    tabs = _Tabs(
        predict, form_area, form, example, example_index, example_btn, example_out, batch, upload, batch_btn,
        batch_out, model, model_out, versions, versions_out,
    )  # fmt: skip
    return shell, tabs


def _predict_tab() -> tuple[gr.Tab, gr.Column, list[Any]]:
    with gr.Tab("Predict", id="predict") as tab:
        form_area = gr.Column()
        with gr.Row():
            with gr.Column(min_width=280):
                summary = gr.Markdown(elem_id="mb-form-result")
            with gr.Column(min_width=280):
                plot = _probability_plot("mb-form-plot")
    return tab, form_area, [summary, plot]


def _example_tab() -> tuple[gr.Tab, gr.Number, gr.Button, list[Any]]:
    with gr.Tab("By example", id="example") as tab:
        gr.Markdown("Pick a held-out example (a test row the model never trained on).")
        with gr.Row(equal_height=True):
            index = gr.Number(
                label="Example index", value=0, precision=0, minimum=0, elem_id="mb-example-index"
            )
            button = gr.Button("Show and predict", variant="primary", elem_id="mb-example-go")
        row = gr.Dataframe(value=EMPTY_ROW, label="Example", interactive=False, elem_id="mb-example-row")
        with gr.Row():
            with gr.Column(min_width=280):
                summary = gr.Markdown(elem_id="mb-example-result")
            with gr.Column(min_width=280):
                plot = _probability_plot("mb-example-plot")
    return tab, index, button, [row, summary, plot]


def _batch_tab() -> tuple[gr.Tab, gr.File, gr.Button, list[Any]]:
    with gr.Tab("Batch", id="batch") as tab:
        gr.Markdown(
            "Upload a comma-separated file whose header names the model's features "
            "(other columns are ignored). Row 1 is the first line after the header."
        )
        upload = gr.File(label="CSV file", file_types=[".csv"], type="filepath", elem_id="mb-upload")
        button = gr.Button("Predict file", variant="primary", elem_id="mb-batch-go")
        message = gr.Markdown(elem_id="mb-batch-result")
        download = gr.DownloadButton("Download results (CSV)", visible=False, elem_id="mb-batch-download")
        rejected = gr.Dataframe(
            label="Rejected rows", interactive=False, visible=False, elem_id="mb-batch-rejected"
        )
        plot = gr.BarPlot(
            x="class", y="rows", y_lim=[0, None], label="Predicted class distribution", visible=False,
            height=260, elem_id="mb-batch-plot",
        )  # fmt: skip
        results = gr.Dataframe(
            label="Predictions", interactive=False, visible=False, max_height=420, elem_id="mb-batch-table"
        )
    return tab, upload, button, [message, download, rejected, plot, results]


def _card_parts(prefix: str, between: Callable[[], list[Any]] | None = None) -> tuple[list[Any], list[Any]]:
    """A card as the Model tab shows it: overview, metrics, confusion matrix, leaderboard, training data
    (:class:`handlers.CardParts`); ``prefix`` starts each element id. ``between`` draws what comes after
    the metrics (the report's plots); its components are returned second."""
    overview = gr.Markdown(elem_id=f"{prefix}-overview")
    gr.Markdown("#### Metrics")
    metrics = gr.Dataframe(interactive=False, elem_id=f"{prefix}-metrics")
    confusion = gr.Dataframe(
        label="Confusion matrix (test set): rows are the actual class", interactive=False, visible=False,
        elem_id=f"{prefix}-confusion",
    )  # fmt: skip
    extra = between() if between is not None else []
    gr.Markdown("#### Leaderboard")
    leaderboard = gr.Dataframe(interactive=False, elem_id=f"{prefix}-leaderboard")
    gr.Markdown("#### Training data")
    data = gr.Markdown(elem_id=f"{prefix}-data")
    return [overview, metrics, confusion, leaderboard, data], extra


def _report_plots() -> list[Any]:
    gr.Markdown("#### Report plots")
    plots = gr.HTML(elem_id="mb-card-plots")
    importance = gr.BarPlot(
        x="feature", y="importance", y_lim=[0, None], label="Feature importance", x_label_angle=-40,
        sort="-y", visible=False, elem_id="mb-card-importance",
    )  # fmt: skip
    return [plots, importance]


def _model_tab() -> tuple[gr.Tab, list[Any]]:
    with gr.Tab("Model", id="model") as tab:
        message = gr.Markdown(elem_id="mb-card-message")
        (overview, metrics, confusion, leaderboard, data), (plots, importance) = _card_parts(
            "mb-card", _report_plots
        )
        gr.Markdown("#### Versions")
        versions = gr.Markdown(elem_id="mb-card-versions")
    return tab, [message, overview, metrics, confusion, plots, importance, leaderboard, data, versions]


def _versions_tab() -> tuple[gr.Tab, list[Any]]:
    with gr.Tab("Versions", id="versions") as tab:
        gr.Markdown(
            "Read-only: aliases move with `modelberth models promote` / `rollback` and the trainer's gate."
        )
        message = gr.Markdown(elem_id="mb-versions-message")
        table = gr.Dataframe(
            label="Versions (newest first)", interactive=False, visible=False, elem_id="mb-versions-table"
        )
        gr.Markdown("#### History of alias moves (newest first)")
        history = gr.Dataframe(interactive=False, visible=False, elem_id="mb-versions-history")
        history_note = gr.Markdown(elem_id="mb-versions-history-note")
        gr.Markdown("#### Champion and challenger (test set)")
        compare = gr.Dataframe(interactive=False, elem_id="mb-versions-compare")
        notes = gr.Markdown(elem_id="mb-versions-notes")
        gr.Markdown("#### The champion's promotion gate")
        gate = gr.Markdown(elem_id="mb-versions-gate")
        checks = gr.Dataframe(interactive=False, visible=False, elem_id="mb-versions-checks")
        gr.Markdown("#### Shadow traffic")
        shadow = gr.Markdown(elem_id="mb-versions-shadow")
        gr.Markdown("### The challenger's card")
        challenger_note = gr.Markdown(elem_id="mb-challenger-note")
        with gr.Column(visible=False, elem_id="mb-challenger-card") as challenger_box:
            challenger, _ = _card_parts("mb-challenger")
    outputs = [
        message, table, history, history_note, compare, notes, gate, checks, shadow, challenger_note,
        challenger_box, *challenger,
    ]  # fmt: skip
    return tab, outputs


# --- log in / log out ---------------------------------------------------------------------------------


def _wire_login(client: ModelberthClient, shell: _Shell, tabs: _Tabs, metrics: UiMetrics | None) -> None:
    def on_login(previous: Session | None, user: str, secret: str, request: gr.Request) -> tuple[Any, ...]:
        # The browser's address as uvicorn saw it (behind a proxy: as the trusted proxy forwarded it).
        address = request.client.host if request is not None and request.client else None
        result = handlers.login(client, previous, user, secret, metrics, address)
        if not result.ok:
            message = gr.Markdown(result.message, elem_classes=["mb-error"])
            return (result.session, gr.skip(), gr.skip(), message, "", gr.skip(), gr.skip(), gr.skip(),
                    gr.skip())  # fmt: skip
        cleared = gr.Markdown("", elem_classes=[])
        shown = (result.session, gr.Column(visible=False), gr.Column(visible=True), cleared, "")
        if result.relogin:  # same person, same model, same form: nothing to redo
            return (*shown, gr.skip(), gr.skip(), gr.skip(), gr.skip())
        choices = [(f"{m.name} ({m.version})" if m.version else m.name, m.name) for m in result.models]
        info = handlers.describe_model(result.card) or result.message
        # Someone new starts without the file the last person uploaded in this browser.
        return (*shown, gr.Dropdown(choices=choices, value=result.selected),
                _card_state(result.card, result.session), info, None)  # fmt: skip

    gr.on(
        [shell.login_btn.click, shell.password.submit],
        on_login,
        inputs=[shell.session, shell.username, shell.password],
        outputs=[
            *shell.relogin,
            shell.password,
            shell.model_dd,
            shell.card_state,
            shell.model_info,
            tabs.upload,
        ],
        api_visibility="private",
    )

    def on_logout(current: Session | None) -> tuple[Any, ...]:
        message = gr.Markdown(handlers.logout(client, current), elem_classes=[])
        return (None, None, gr.Column(visible=True), gr.Column(visible=False), message, "",
                gr.Dropdown(choices=[], value=None), "", None)  # fmt: skip

    shell.logout_btn.click(
        on_logout,
        inputs=[shell.session],
        outputs=[
            shell.session,
            shell.card_state,
            shell.login_col,
            shell.app_col,
            shell.login_msg,
            shell.password,
            shell.model_dd,
            shell.model_info,
            tabs.upload,
        ],
        api_visibility="private",
    )


# --- choosing a model -----------------------------------------------------------------------------------


def _cleared_results() -> tuple[Any, ...]:
    return (
        "", gr.BarPlot(visible=False), EMPTY_ROW, "", gr.BarPlot(visible=False), "",
        gr.DownloadButton(visible=False), gr.Dataframe(visible=False), gr.BarPlot(visible=False),
        gr.Dataframe(visible=False),
    )  # fmt: skip


def _cleared_versions() -> tuple[Any, ...]:
    hidden = gr.Dataframe(value=None, visible=False)
    return ("", hidden, hidden, "", None, "", "", hidden, "", "", *_card_updates(None))


def _wire_model_choice(client: ModelberthClient, shell: _Shell, tabs: _Tabs) -> None:
    def on_choose(current: Session | None, name: str | None, shown: Any) -> tuple[Any, ...]:
        choice = handlers.choose_model(client, current, name)
        if choice.status != "ok":
            # Keep the chooser on the model whose form is on the page.
            previous = gr.Dropdown(value=shown["card"]["name"]) if shown else gr.skip()
            message = gr.skip() if choice.status == "expired" else choice.message
            return (*_relogin_updates(choice.status, choice.session), gr.skip(), message, previous)
        return (choice.session, gr.skip(), gr.skip(), gr.skip(), _card_state(choice.card, choice.session),
                handlers.describe_model(choice.card), gr.skip())  # fmt: skip

    shell.model_dd.input(
        on_choose,
        inputs=[shell.session, shell.model_dd, shell.card_state],
        outputs=[*shell.relogin, shell.card_state, shell.model_info, shell.model_dd],
        api_visibility="private",
    )

    def on_card_change() -> tuple[Any, ...]:
        return (*_cleared_results(), "", *([None] * 8), *_cleared_versions())

    def on_card_refresh(tab: str, current: Session | None, card_json: Any) -> tuple[Any, ...]:
        skipped_versions = tuple(gr.skip() for _ in tabs.versions_out)
        if tab == "model" and card_json:
            return (*_model_updates(client, current, card_json), *skipped_versions)
        if tab == "versions" and card_json:
            updates = _versions_updates(client, current, card_json)
            return (*updates[:4], *(gr.skip() for _ in tabs.model_out), *updates[4:])
        return tuple(gr.skip() for _ in range(4 + len(tabs.model_out) + len(tabs.versions_out)))

    shell.card_state.change(
        on_card_change,
        outputs=[*tabs.results, *tabs.model_out, *tabs.versions_out],
        api_visibility="private",
    ).then(
        on_card_refresh,
        inputs=[shell.current_tab, shell.session, shell.card_state],
        outputs=[*shell.relogin, *tabs.model_out, *tabs.versions_out],
        api_visibility="private",
    )


# --- predict: the form, drawn from the card ---------------------------------------------------------------


def _wire_form(client: ModelberthClient, shell: _Shell, tabs: _Tabs, metrics: UiMetrics | None) -> None:
    with tabs.form_area:

        @gr.render(inputs=[shell.card_state], triggers=[shell.card_state.change])  # type: ignore[untyped-decorator]
        def draw_form(card_json: Any) -> None:
            card = _card(card_json)
            if card is None:
                gr.Markdown(PLACEHOLDER)
                return
            specs = handlers.form_spec(card)
            fields, warnings = _draw_fields(specs, f"{card_json['login']}/{card.name}/{card.version}")
            predict_btn = gr.Button("Predict", variant="primary", elem_id="mb-predict")

            def on_predict(current: Session | None, card_value: Any, *values: Any) -> tuple[Any, ...]:
                view = handlers.predict_form(client, current, _card(card_value), values, metrics)
                notes = [
                    gr.Markdown(f"⚠ {view.field_messages[s.name]}", visible=True)
                    if s.name in view.field_messages
                    else gr.Markdown(visible=False)
                    for s in specs
                ]
                return (*_relogin_updates(view.status, view.session), *_prediction_updates(view), *notes)

            predict_btn.click(
                on_predict,
                inputs=[shell.session, shell.card_state, *fields],
                outputs=[*shell.relogin, *tabs.form, *warnings],
                api_visibility="private",
            )


def _draw_fields(
    specs: list[handlers.FieldSpec], prefix: str, per_row: int = 3
) -> tuple[list[Any], list[Any]]:
    """The form's fields, ``per_row`` to a row, each with its (hidden) warning; keys start with ``prefix``."""
    fields: list[Any] = []
    warnings: list[Any] = []
    for start in range(0, len(specs), per_row):
        with gr.Row():
            row = specs[start : start + per_row]
            for spec in row:
                with gr.Column(min_width=220):
                    key = f"{prefix}/{spec.name}"
                    fields.append(_field_component(spec, key, _field_id(spec.name)))
                    warnings.append(
                        gr.Markdown(visible=False, elem_classes=["mb-field-warning"], key=key + "/warn")
                    )
            for _ in range(per_row - len(row)):
                gr.Column(min_width=220)  # keeps the last row's fields as wide as the others
    return fields, warnings


# --- by example and batch ---------------------------------------------------------------------------------


def _wire_example(client: ModelberthClient, shell: _Shell, tabs: _Tabs, metrics: UiMetrics | None) -> None:
    def on_example(current: Session | None, card_json: Any, index: float | None) -> tuple[Any, ...]:
        view = handlers.predict_example(client, current, _card(card_json), index, metrics)
        row = gr.skip() if view.prediction.status == "expired" else view.row
        return (*_relogin_updates(view.prediction.status, view.prediction.session), row,
                *_prediction_updates(view.prediction))  # fmt: skip

    tabs.example_btn.click(
        on_example,
        inputs=[shell.session, shell.card_state, tabs.example_index],
        outputs=[*shell.relogin, *tabs.example_out],
        api_visibility="private",
    )


def _wire_batch(
    client: ModelberthClient,
    shell: _Shell,
    tabs: _Tabs,
    limits: BatchLimits,
    results_dir: Path,
    metrics: UiMetrics | None,
) -> None:
    def on_batch(current: Session | None, card_json: Any, path: str | None) -> tuple[Any, ...]:
        view = handlers.predict_batch(client, current, _card(card_json), path, limits, results_dir, metrics)
        return (*_relogin_updates(view.status, view.session), *_batch_updates(view))

    gr.on(
        [tabs.upload.upload, tabs.batch_btn.click],
        on_batch,
        inputs=[shell.session, shell.card_state, tabs.upload],
        outputs=[*shell.relogin, *tabs.batch_out],
        api_visibility="private",
    )


def _batch_updates(view: handlers.BatchView) -> tuple[Any, ...]:
    """Message, download, rejected rows, distribution and results after a batch."""
    if view.status == "expired":
        return tuple(gr.skip() for _ in range(5))
    message = gr.Markdown(view.message, elem_classes=[] if view.status == "ok" else ["mb-error"])
    tables = view.tables
    if tables is None:
        return (message, gr.DownloadButton(visible=False), gr.Dataframe(visible=False),
                gr.BarPlot(visible=False), gr.Dataframe(visible=False))  # fmt: skip
    return (
        message,
        gr.DownloadButton(value=str(tables.csv_path), visible=tables.csv_path is not None),
        gr.Dataframe(value=tables.rejected, visible=not tables.rejected.empty),
        gr.BarPlot(value=tables.distribution, visible=not tables.distribution.empty),
        gr.Dataframe(value=tables.results, visible=not tables.results.empty),
    )


# --- the model card ---------------------------------------------------------------------------------------


def _model_updates(client: ModelberthClient, current: Session | None, card_json: Any) -> tuple[Any, ...]:
    view = handlers.model_view(client, current, _card(card_json))
    if view.status != "ok":
        message = gr.skip() if view.status == "expired" else view.message
        return (*_relogin_updates(view.status, view.session), message, *([gr.skip()] * 8))
    confusion, importance = view.confusion, view.importance
    return (
        view.session, gr.skip(), gr.skip(), gr.skip(), view.message, view.overview, view.metrics,
        gr.Dataframe(value=confusion, visible=confusion is not None and not confusion.empty),
        view.plots,
        gr.BarPlot(value=importance, visible=importance is not None and not importance.empty),
        view.leaderboard, view.fingerprint, view.versions,
    )  # fmt: skip


def _wire_model_tab(client: ModelberthClient, shell: _Shell, tabs: _Tabs) -> None:
    def on_model_tab(current: Session | None, card_json: Any) -> tuple[Any, ...]:
        return ("model", *_model_updates(client, current, card_json))

    tabs.model.select(
        on_model_tab,
        inputs=[shell.session, shell.card_state],
        outputs=[shell.current_tab, *shell.relogin, *tabs.model_out],
        api_visibility="private",
    )


# --- versions (read-only) ---------------------------------------------------------------------------------


def _shown_table(value: pd.DataFrame | None) -> Any:
    return gr.Dataframe(value=value, visible=value is not None and not value.empty)


def _card_updates(parts: handlers.CardParts | None) -> tuple[Any, ...]:
    """The column around :func:`_card_parts` and its outputs for a card, or hidden and cleared."""
    if parts is None:
        hidden = gr.Dataframe(value=None, visible=False)
        return (gr.Column(visible=False), "", hidden, hidden, hidden, "")
    return (
        gr.Column(visible=True),
        parts.overview, _shown_table(parts.metrics), _shown_table(parts.confusion),
        _shown_table(parts.leaderboard), parts.fingerprint,
    )  # fmt: skip


def _versions_updates(client: ModelberthClient, current: Session | None, card_json: Any) -> tuple[Any, ...]:
    view = handlers.versions_view(client, current, _card(card_json))
    if view.status != "ok":
        message = (
            gr.skip() if view.status == "expired" else gr.Markdown(view.message, elem_classes=["mb-error"])
        )
        return (*_relogin_updates(view.status, view.session), message, *([gr.skip()] * 15))
    table = view.versions
    return (
        view.session, gr.skip(), gr.skip(), gr.skip(), gr.Markdown(view.message, elem_classes=[]),
        gr.Dataframe(value=table, visible=table is not None), _shown_table(view.history), view.history_note,
        view.comparison, view.notes, view.gate, _shown_table(view.checks), view.shadow, view.challenger_note,
        *_card_updates(view.challenger),
    )  # fmt: skip


def _wire_versions_tab(client: ModelberthClient, shell: _Shell, tabs: _Tabs) -> None:
    def on_versions_tab(current: Session | None, card_json: Any) -> tuple[Any, ...]:
        return ("versions", *_versions_updates(client, current, card_json))

    tabs.versions.select(
        on_versions_tab,
        inputs=[shell.session, shell.card_state],
        outputs=[shell.current_tab, *shell.relogin, *tabs.versions_out],
        api_visibility="private",
    )


def _probability_plot(elem_id: str) -> Any:
    return gr.BarPlot(
        x="class", y="probability", y_lim=[0, 1], label="Class probabilities", visible=False, height=260,
        elem_id=elem_id,
    )  # fmt: skip


def _constant(value: str) -> Any:
    def constant() -> str:
        return value

    return constant


def _field_id(name: str) -> str:
    """A DOM id for a feature's field (``mb-field-<name>``, other characters as ``_``)."""
    return "mb-field-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _field_component(spec: handlers.FieldSpec, key: str, elem_id: str) -> Any:
    """The input component for one feature."""
    if spec.kind == "number":
        return gr.Number(
            label=spec.label, info=spec.info, value=spec.value, key=key, interactive=True, elem_id=elem_id
        )
    if spec.kind == "dropdown":
        return gr.Dropdown(
            label=spec.label, info=spec.info, value=spec.value, choices=list(spec.choices), key=key,
            allow_custom_value=False, interactive=True, elem_id=elem_id,
        )  # fmt: skip
    return gr.Textbox(
        label=spec.label, info=spec.info, value=spec.value, lines=spec.lines, max_length=spec.max_length,
        key=key, interactive=True, elem_id=elem_id,
    )  # fmt: skip
