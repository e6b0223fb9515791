"""The page: lays out the components and wires events to :mod:`modelberth_ui.handlers`. No logic here.

Two columns share the page: the login form and the app. A ``gr.State`` holds the person's session (the
token stays on the server). When a call says the token expired, the login form comes back and the app is
only visually hidden (``visible="hidden"`` keeps it in the page), so what was typed is still there after
logging in again. The prediction form is drawn by ``@gr.render`` from the chosen model's card.
"""

from __future__ import annotations

import re
import tempfile
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
        session = gr.State(None)
        card_state = gr.State(None)
        current_tab = gr.State("predict")

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
                with gr.Tab("Predict", id="predict") as predict_tab:
                    form_area = gr.Column()
                    with gr.Row():
                        with gr.Column(min_width=280):
                            form_summary = gr.Markdown(elem_id="mb-form-result")
                        with gr.Column(min_width=280):
                            form_plot = _probability_plot("mb-form-plot")

                with gr.Tab("By example", id="example") as example_tab:
                    gr.Markdown("Pick a held-out example (a test row the model never trained on).")
                    with gr.Row(equal_height=True):
                        example_index = gr.Number(
                            label="Example index", value=0, precision=0, minimum=0, elem_id="mb-example-index"
                        )
                        example_btn = gr.Button(
                            "Show and predict", variant="primary", elem_id="mb-example-go"
                        )
                    example_row = gr.Dataframe(
                        value=EMPTY_ROW, label="Example", interactive=False, elem_id="mb-example-row"
                    )
                    with gr.Row():
                        with gr.Column(min_width=280):
                            example_summary = gr.Markdown(elem_id="mb-example-result")
                        with gr.Column(min_width=280):
                            example_plot = _probability_plot("mb-example-plot")

                with gr.Tab("Batch", id="batch") as batch_tab:
                    gr.Markdown(
                        "Upload a comma-separated file whose header names the model's features "
                        "(other columns are ignored). Row 1 is the first line after the header."
                    )
                    upload = gr.File(
                        label="CSV file", file_types=[".csv"], type="filepath", elem_id="mb-upload"
                    )
                    batch_btn = gr.Button("Predict file", variant="primary", elem_id="mb-batch-go")
                    batch_msg = gr.Markdown(elem_id="mb-batch-result")
                    batch_download = gr.DownloadButton(
                        "Download results (CSV)", visible=False, elem_id="mb-batch-download"
                    )
                    batch_rejected = gr.Dataframe(
                        label="Rejected rows", interactive=False, visible=False, elem_id="mb-batch-rejected"
                    )
                    batch_plot = gr.BarPlot(
                        x="class", y="rows", y_lim=[0, None], label="Predicted class distribution",
                        visible=False, height=260,
                        elem_id="mb-batch-plot",
                    )  # fmt: skip
                    batch_results = gr.Dataframe(
                        label="Predictions", interactive=False, visible=False, max_height=420,
                        elem_id="mb-batch-table",
                    )  # fmt: skip

                with gr.Tab("Model", id="model") as model_tab:
                    model_msg = gr.Markdown(elem_id="mb-card-message")
                    card_overview = gr.Markdown(elem_id="mb-card-overview")
                    gr.Markdown("#### Metrics")
                    card_metrics = gr.Dataframe(interactive=False, elem_id="mb-card-metrics")
                    card_confusion = gr.Dataframe(
                        label="Confusion matrix (test set): rows are the actual class",
                        interactive=False, visible=False, elem_id="mb-card-confusion",
                    )  # fmt: skip
                    gr.Markdown("#### Report plots")
                    card_plots = gr.HTML(elem_id="mb-card-plots")
                    card_importance = gr.BarPlot(
                        x="feature", y="importance", y_lim=[0, None], label="Feature importance",
                        x_label_angle=-40, sort="-y", visible=False, elem_id="mb-card-importance",
                    )  # fmt: skip
                    gr.Markdown("#### Leaderboard")
                    card_leaderboard = gr.Dataframe(interactive=False, elem_id="mb-card-leaderboard")
                    gr.Markdown("#### Training data")
                    card_fingerprint = gr.Markdown(elem_id="mb-card-data")
                    gr.Markdown("#### Versions")
                    card_versions = gr.Markdown(elem_id="mb-card-versions")

                with gr.Tab("Versions", id="versions") as versions_tab:
                    gr.Markdown(
                        "Read-only: aliases move with `modelberth models promote` / `rollback` and the "
                        "trainer's gate."
                    )
                    versions_msg = gr.Markdown(elem_id="mb-versions-message")
                    versions_table = gr.Dataframe(
                        label="Versions (newest first)", interactive=False, visible=False,
                        elem_id="mb-versions-table",
                    )  # fmt: skip
                    gr.Markdown("#### Champion and challenger (test set)")
                    versions_compare = gr.Dataframe(interactive=False, elem_id="mb-versions-compare")
                    versions_notes = gr.Markdown(elem_id="mb-versions-notes")
                    gr.Markdown("#### The champion's promotion gate")
                    versions_gate = gr.Markdown(elem_id="mb-versions-gate")
                    versions_checks = gr.Dataframe(
                        interactive=False, visible=False, elem_id="mb-versions-checks"
                    )
                    gr.Markdown("#### Shadow traffic")
                    versions_shadow = gr.Markdown(elem_id="mb-versions-shadow")

        relogin_outputs = [session, login_col, app_col, login_msg]
        model_outputs = [
            model_msg, card_overview, card_metrics, card_confusion, card_plots, card_importance,
            card_leaderboard, card_fingerprint, card_versions,
        ]  # fmt: skip
        versions_outputs = [
            versions_msg, versions_table, versions_compare, versions_notes, versions_gate, versions_checks,
            versions_shadow,
        ]  # fmt: skip
        result_outputs = [
            form_summary, form_plot, example_row, example_summary, example_plot, batch_msg, batch_download,
            batch_rejected, batch_plot, batch_results,
        ]  # fmt: skip
        cleared_versions = (
            "", gr.Dataframe(value=None, visible=False), None, "", "",
            gr.Dataframe(value=None, visible=False), "",
        )  # fmt: skip
        cleared_results = (
            "", gr.BarPlot(visible=False), EMPTY_ROW, "", gr.BarPlot(visible=False), "",
            gr.DownloadButton(visible=False), gr.Dataframe(visible=False), gr.BarPlot(visible=False),
            gr.Dataframe(visible=False),
        )  # fmt: skip

        # --- log in / log out ---------------------------------------------------------------------

        def on_login(
            previous: Session | None, user: str, secret: str, request: gr.Request
        ) -> tuple[Any, ...]:
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
            [login_btn.click, password.submit],
            on_login,
            inputs=[session, username, password],
            outputs=[
                session,
                login_col,
                app_col,
                login_msg,
                password,
                model_dd,
                card_state,
                model_info,
                upload,
            ],
            api_visibility="private",
        )

        def on_logout(current: Session | None) -> tuple[Any, ...]:
            message = gr.Markdown(handlers.logout(client, current), elem_classes=[])
            return (None, None, gr.Column(visible=True), gr.Column(visible=False), message, "",
                    gr.Dropdown(choices=[], value=None), "", None)  # fmt: skip

        logout_btn.click(
            on_logout,
            inputs=[session],
            outputs=[
                session,
                card_state,
                login_col,
                app_col,
                login_msg,
                password,
                model_dd,
                model_info,
                upload,
            ],
            api_visibility="private",
        )

        # --- choosing a model ---------------------------------------------------------------------

        def on_choose(current: Session | None, name: str | None, shown: Any) -> tuple[Any, ...]:
            choice = handlers.choose_model(client, current, name)
            if choice.status != "ok":
                # Keep the chooser on the model whose form is on the page.
                previous = gr.Dropdown(value=shown["card"]["name"]) if shown else gr.skip()
                message = gr.skip() if choice.status == "expired" else choice.message
                return (*_relogin_updates(choice.status, choice.session), gr.skip(), message, previous)
            return (choice.session, gr.skip(), gr.skip(), gr.skip(), _card_state(choice.card, choice.session),
                    handlers.describe_model(choice.card), gr.skip())  # fmt: skip

        model_dd.input(
            on_choose,
            inputs=[session, model_dd, card_state],
            outputs=[*relogin_outputs, card_state, model_info, model_dd],
            api_visibility="private",
        )

        def on_card_change() -> tuple[Any, ...]:
            return (*cleared_results, "", *([None] * 8), *cleared_versions)

        def on_card_refresh(tab: str, current: Session | None, card_json: Any) -> tuple[Any, ...]:
            skipped_versions = tuple(gr.skip() for _ in versions_outputs)
            if tab == "model" and card_json:
                return (*_model_updates(current, card_json), *skipped_versions)
            if tab == "versions" and card_json:
                updates = _versions_updates(current, card_json)
                return (*updates[:4], *(gr.skip() for _ in model_outputs), *updates[4:])
            return tuple(gr.skip() for _ in range(4 + len(model_outputs) + len(versions_outputs)))

        card_state.change(
            on_card_change,
            outputs=[*result_outputs, *model_outputs, *versions_outputs],
            api_visibility="private",
        ).then(
            on_card_refresh,
            inputs=[current_tab, session, card_state],
            outputs=[*relogin_outputs, *model_outputs, *versions_outputs],
            api_visibility="private",
        )

        # --- predict: the form, drawn from the card -----------------------------------------------

        with form_area:

            @gr.render(inputs=[card_state], triggers=[card_state.change])  # type: ignore[untyped-decorator]
            def draw_form(card_json: Any) -> None:
                card = _card(card_json)
                if card is None:
                    gr.Markdown(PLACEHOLDER)
                    return
                specs = handlers.form_spec(card)
                fields: list[Any] = []
                warnings: list[Any] = []
                per_row = 3
                for start in range(0, len(specs), per_row):
                    with gr.Row():
                        row = specs[start : start + per_row]
                        for spec in row:
                            with gr.Column(min_width=220):
                                key = f"{card_json['login']}/{card.name}/{card.version}/{spec.name}"
                                fields.append(_field_component(spec, key, _field_id(spec.name)))
                                warnings.append(
                                    gr.Markdown(
                                        visible=False, elem_classes=["mb-field-warning"], key=key + "/warn"
                                    )
                                )
                        for _ in range(per_row - len(row)):
                            gr.Column(min_width=220)  # keeps the last row's fields as wide as the others
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
                    inputs=[session, card_state, *fields],
                    outputs=[*relogin_outputs, form_summary, form_plot, *warnings],
                    api_visibility="private",
                )

        # --- by example ---------------------------------------------------------------------------

        def on_example(current: Session | None, card_json: Any, index: float | None) -> tuple[Any, ...]:
            view = handlers.predict_example(client, current, _card(card_json), index, metrics)
            row = gr.skip() if view.prediction.status == "expired" else view.row
            return (*_relogin_updates(view.prediction.status, view.prediction.session), row,
                    *_prediction_updates(view.prediction))  # fmt: skip

        example_btn.click(
            on_example,
            inputs=[session, card_state, example_index],
            outputs=[*relogin_outputs, example_row, example_summary, example_plot],
            api_visibility="private",
        )

        # --- batch --------------------------------------------------------------------------------

        def on_batch(current: Session | None, card_json: Any, path: str | None) -> tuple[Any, ...]:
            view = handlers.predict_batch(
                client, current, _card(card_json), path, limits, results_dir, metrics
            )
            tables = view.tables
            if view.status == "expired":
                return (*_relogin_updates(view.status, view.session), *([gr.skip()] * 5))
            css = [] if view.status == "ok" else ["mb-error"]
            if tables is None:
                hidden = (gr.DownloadButton(visible=False), gr.Dataframe(visible=False),
                          gr.BarPlot(visible=False), gr.Dataframe(visible=False))  # fmt: skip
                message = gr.Markdown(view.message, elem_classes=css)
                return (*_relogin_updates(view.status, view.session), message, *hidden)
            return (
                *_relogin_updates(view.status, view.session),
                gr.Markdown(view.message, elem_classes=css),
                gr.DownloadButton(value=str(tables.csv_path), visible=tables.csv_path is not None),
                gr.Dataframe(value=tables.rejected, visible=not tables.rejected.empty),
                gr.BarPlot(value=tables.distribution, visible=not tables.distribution.empty),
                gr.Dataframe(value=tables.results, visible=not tables.results.empty),
            )

        gr.on(
            [upload.upload, batch_btn.click],
            on_batch,
            inputs=[session, card_state, upload],
            outputs=[*relogin_outputs, batch_msg, batch_download, batch_rejected, batch_plot, batch_results],
            api_visibility="private",
        )

        # --- the model card -----------------------------------------------------------------------

        def _model_updates(current: Session | None, card_json: Any) -> tuple[Any, ...]:
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

        def on_model_tab(current: Session | None, card_json: Any) -> tuple[Any, ...]:
            return ("model", *_model_updates(current, card_json))

        model_tab.select(
            on_model_tab,
            inputs=[session, card_state],
            outputs=[current_tab, *relogin_outputs, *model_outputs],
            api_visibility="private",
        )
        # --- versions (read-only) -----------------------------------------------------------------

        def _versions_updates(current: Session | None, card_json: Any) -> tuple[Any, ...]:
            view = handlers.versions_view(client, current, _card(card_json))
            if view.status != "ok":
                message = (
                    gr.skip()
                    if view.status == "expired"
                    else gr.Markdown(view.message, elem_classes=["mb-error"])
                )
                return (*_relogin_updates(view.status, view.session), message, *([gr.skip()] * 6))
            table, checks = view.versions, view.checks
            return (
                view.session, gr.skip(), gr.skip(), gr.skip(), gr.Markdown(view.message, elem_classes=[]),
                gr.Dataframe(value=table, visible=table is not None),
                view.comparison, view.notes, view.gate,
                gr.Dataframe(value=checks, visible=checks is not None and not checks.empty),
                view.shadow,
            )  # fmt: skip

        def on_versions_tab(current: Session | None, card_json: Any) -> tuple[Any, ...]:
            return ("versions", *_versions_updates(current, card_json))

        versions_tab.select(
            on_versions_tab,
            inputs=[session, card_state],
            outputs=[current_tab, *relogin_outputs, *versions_outputs],
            api_visibility="private",
        )
        for tab, name in ((predict_tab, "predict"), (example_tab, "example"), (batch_tab, "batch")):
            tab.select(_constant(name), outputs=[current_tab], api_visibility="private")

    return ui


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
