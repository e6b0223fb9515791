"""Handlers: login, the generated form, predictions, examples, batch CSV and the model card view."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from modelberth_core.contract import ModelCard
from modelberth_ui import handlers
from modelberth_ui.batch import BatchLimits
from modelberth_ui.handlers import EXPIRED_MESSAGE, Session
from modelberth_ui.metrics import UiMetrics

LIMITS = BatchLimits(max_bytes=100_000, max_rows=1000, chunk_rows=500, chunk_bytes=512 * 1024)


def _session(**kwargs: Any) -> Session:
    return Session("alice", "token-1", "refresh-1", ("predict",), time.time() + 900, **kwargs)


def _metrics() -> tuple[UiMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return UiMetrics(registry), registry


def _values(card: ModelCard, **overrides: Any) -> list[Any]:
    return [overrides.get(spec.name, spec.value) for spec in handlers.form_spec(card)]


# --- login ----------------------------------------------------------------------------------------


def test_wrong_password_shows_a_clear_message_and_counts(fake_factory: Any, mixed_card: ModelCard) -> None:
    metrics, registry = _metrics()
    result = handlers.login(fake_factory(mixed_card).client(), None, "alice", "nope", metrics)
    assert (result.ok, result.message, result.session) == (False, "Wrong username or password.", None)
    assert registry.get_sample_value("modelberth_ui_logins_total", {"outcome": "invalid_credentials"}) == 1.0


def test_login_loads_the_models_and_the_first_card(fake_factory: Any, mixed_card: ModelCard) -> None:
    metrics, registry = _metrics()
    before = registry.get_sample_value("modelberth_ui_logins_total", {"outcome": "success"})
    result = handlers.login(fake_factory(mixed_card).client(), None, " alice ", "correct horse", metrics)
    assert result.ok
    assert not result.relogin
    assert result.session is not None
    assert result.session.username == "alice"
    assert result.session.scopes == ("predict", "models:read")
    assert result.selected == "loans"
    assert result.card == mixed_card
    assert before is None
    assert registry.get_sample_value("modelberth_ui_logins_total", {"outcome": "success"}) == 1.0


def test_lockout_tells_how_long_to_wait(fake_factory: Any, mixed_card: ModelCard) -> None:
    result = handlers.login(fake_factory(mixed_card, locked=True).client(), None, "alice", "x")
    assert result.message == "Too many failed attempts. Try again in 30 seconds."


def test_empty_fields_do_not_call_auth(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    assert handlers.login(fake.client(), None, "", "").message == "Enter your username and password."
    assert fake.requests == []


def test_session_repr_hides_the_tokens() -> None:
    assert "token-1" not in repr(_session())
    assert "refresh-1" not in repr(_session())


def test_logout_revokes_the_refresh_token(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    assert handlers.logout(fake.client(), _session()) == "You are logged out."
    assert [r.url.path for r in fake.requests] == ["/oauth/revoke"]


# --- the form -------------------------------------------------------------------------------------


def test_form_spec_follows_the_card(mixed_card: ModelCard) -> None:
    specs = {s.name: s for s in handlers.form_spec(mixed_card)}
    assert [s.name for s in handlers.form_spec(mixed_card)] == ["age", "job", "note", "income"]
    assert (specs["age"].kind, specs["age"].info, specs["age"].value) == (
        "number",
        "training range 18 – 90",
        40.0,
    )
    assert (specs["job"].kind, specs["job"].choices, specs["job"].value) == (
        "dropdown",
        ("admin", "tech"),
        "tech",
    )
    assert (specs["note"].kind, specs["note"].lines, specs["note"].max_length) == ("text", 3, 200)
    assert specs["note"].info.endswith("· optional")
    assert specs["income"].value is None
    assert not specs["income"].required


def test_iris_form_has_four_number_fields(iris_card: ModelCard) -> None:
    specs = handlers.form_spec(iris_card)
    assert [s.kind for s in specs] == ["number"] * 4
    assert all(s.info.startswith("training range ") for s in specs)


def test_predict_form_shows_probabilities_and_field_warnings(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    metrics, registry = _metrics()
    fake = fake_factory(mixed_card)
    view = handlers.predict_form(
        fake.client(), _session(), mixed_card, _values(mixed_card, age=120.0), metrics
    )
    assert view.status == "ok"
    assert fake.predict_calls() == [[{"age": 120.0, "job": "tech", "note": "ok", "income": None}]]
    assert view.probabilities is not None
    assert view.probabilities.to_dict("list") == {"class": ["no", "yes"], "probability": [0.4, 0.6]}
    assert "### Prediction: yes" in view.summary
    assert "| yes | 0.6000 |" in view.summary
    assert "P(yes) ≥ 0.4" in view.summary
    assert view.field_messages == {"age": "outside the training range [18.0, 90.0]"}
    assert registry.get_sample_value("modelberth_ui_predictions_total", {"kind": "form"}) == 1.0


def test_a_missing_required_value_is_caught_before_sending(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    view = handlers.predict_form(fake.client(), _session(), mixed_card, _values(mixed_card, age=None, job=""))
    assert view.status == "invalid"
    assert view.field_messages == {"age": "a value is required", "job": "a value is required"}
    assert fake.requests == []


def test_a_service_rejection_is_shown_next_to_the_field(fake_factory: Any, mixed_card: ModelCard) -> None:
    def reject(instance: dict[str, Any]) -> list[dict[str, Any]]:
        return (
            [{"feature": "note", "msg": "text longer than 100 characters"}]
            if len(instance["note"]) > 100
            else []
        )

    fake = fake_factory(mixed_card, reject=reject)
    view = handlers.predict_form(fake.client(), _session(), mixed_card, _values(mixed_card, note="x" * 150))
    assert view.status == "invalid"
    assert view.field_messages == {"note": "text longer than 100 characters"}


def test_expired_token_asks_to_log_in_again_and_keeps_the_page(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    fake = fake_factory(mixed_card, expired_tokens={"token-1"})
    view = handlers.predict_form(fake.client(), _session(), mixed_card, _values(mixed_card))
    assert (view.status, view.summary) == ("expired", EXPIRED_MESSAGE)
    assert view.session is not None
    assert view.session.expired
    fake.token = "token-2"
    again = handlers.login(fake.client(), view.session, "alice", "correct horse")
    # Same person: the page keeps its model and form (relogin), and only the token changes.
    assert again.relogin
    assert again.session is not None
    assert again.session.access_token == "token-2"
    assert again.models == []
    assert again.card is None
    retry = handlers.predict_form(fake.client(), again.session, mixed_card, _values(mixed_card))
    assert retry.status == "ok"


def test_a_token_past_its_expiry_is_not_sent(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card)
    old = Session("alice", "token-1", None, (), time.time() - 1)
    assert handlers.predict_form(fake.client(), old, mixed_card, _values(mixed_card)).status == "expired"
    assert (
        handlers.predict_form(fake.client(), None, mixed_card, _values(mixed_card)).summary
        == "Please log in first."
    )
    assert fake.requests == []


def test_another_person_logging_in_after_expiry_gets_a_fresh_page(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    fake = fake_factory(mixed_card, users={"alice": "a", "bob": "b"})
    result = handlers.login(fake.client(), handlers.expire(_session()), "bob", "b")
    assert not result.relogin
    assert result.card == mixed_card


def test_regression_shows_the_value_with_the_test_error(
    fake_factory: Any, regression_card: ModelCard
) -> None:
    view = handlers.predict_form(fake_factory(regression_card).client(), _session(), regression_card, [4.0])
    assert view.probabilities is None
    assert "### Predicted price: 12.5" in view.summary
    assert "RMSE 3.1, MAE 2.2, R² 0.710" in view.summary
    assert "± 3.1" in view.summary


# --- by example -----------------------------------------------------------------------------------


def test_predict_example_shows_the_row_and_prediction(fake_factory: Any, mixed_card: ModelCard) -> None:
    metrics, registry = _metrics()
    row = {"age": 33, "job": "admin", "note": "hi", "income": None}
    fake = fake_factory(mixed_card, examples={"loans": [row]})
    view = handlers.predict_example(fake.client(), _session(), mixed_card, 0, metrics)
    assert view.prediction.status == "ok"
    assert view.row.to_dict("list") == {
        "feature": ["age", "job", "note", "income"],
        "value": ["33", "admin", "hi", ""],
    }
    assert [r.url.path for r in fake.requests] == ["/v1/models/loans/examples/0/predict"]
    assert registry.get_sample_value("modelberth_ui_predictions_total", {"kind": "example"}) == 1.0


@pytest.mark.parametrize("index", [5, -1, 1.5, None])
def test_predict_example_refuses_bad_indexes(fake_factory: Any, mixed_card: ModelCard, index: Any) -> None:
    fake = fake_factory(mixed_card, examples={"loans": [{"age": 1}]})
    view = handlers.predict_example(fake.client(), _session(), mixed_card, index)
    assert view.prediction.status == "invalid"
    assert view.row.empty


# --- the model card -------------------------------------------------------------------------------


def test_model_view_shows_card_and_report_plots(
    fake_factory: Any, mixed_card: ModelCard, report_factory: Any
) -> None:
    fake = fake_factory(mixed_card, reports={"loans": report_factory(["ROC curve", "Confusion matrix"])})
    view = handlers.model_view(fake.client(), _session(), mixed_card)
    assert view.status == "ok"
    assert view.message == ""
    assert view.plots.count("<figure") == 2
    assert "<figcaption>ROC curve</figcaption>" in view.plots
    assert "script" not in view.plots
    assert "svg" not in view.plots
    assert "example.com" not in view.plots
    assert view.metrics is not None
    assert view.metrics["metric"].tolist() == ["roc_auc", "f1"]
    assert view.metrics["test at threshold"].tolist()[1] == 0.61
    assert view.confusion is not None
    assert view.confusion.to_dict("list") == {
        "actual \\ predicted": ["no", "yes"],
        "no": [50, 7],
        "yes": [5, 20],
    }
    assert view.leaderboard is not None
    assert view.leaderboard["candidate"].tolist() == ["hgb ★", "logistic"]
    assert view.importance is not None
    assert view.importance["feature"].tolist() == [
        "age",
        "income",
        "job",
        "note",
    ]
    assert "`" + "a" * 64 + "`" in view.fingerprint
    assert "train / test rows | 80 / 20" in view.fingerprint
    assert "| scikit-learn | 1.9.1 |" in view.versions
    assert "| served: loans |" in view.versions


def test_model_view_without_a_report_still_shows_the_card(fake_factory: Any, mixed_card: ModelCard) -> None:
    view = handlers.model_view(fake_factory(mixed_card).client(), _session(), mixed_card)
    assert view.status == "ok"
    assert "not available" in view.plots
    assert "HistGradientBoostingClassifier" in view.overview


# --- batch ----------------------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str, name: str = "rows.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_batch_lists_bad_rows_and_predicts_the_rest(
    fake_factory: Any, mixed_card: ModelCard, tmp_path: Path
) -> None:
    def reject(instance: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"feature": "note", "msg": "text too long"}] if instance["note"] == "LONG" else []

    metrics, registry = _metrics()
    fake = fake_factory(mixed_card, reject=reject)
    path = _csv(
        tmp_path,
        "age,job,note,income,default\n"
        "30,tech,fine,100,no\n"
        "abc,tech,fine,,no\n"  # row 2: not a number (caught before sending)
        "40,admin,LONG,,yes\n"  # row 3: rejected by the service
        "95,admin,,,no\n"  # row 4: out of range -> warning, still predicted
        "50,tech\n",  # row 5: too few cells
    )
    view = handlers.predict_batch(
        fake.client(), _session(), mixed_card, path, LIMITS, tmp_path / "out", metrics
    )
    assert view.status == "ok"
    assert view.tables is not None
    tables = view.tables
    assert tables.counts == {"rows": 5, "predicted": 2, "rejected": 3}
    assert tables.results["row"].tolist() == [1, 4]
    assert tables.results["warnings"].tolist() == ["", "age: outside the training range [18.0, 90.0]"]
    assert tables.rejected.to_dict("list") == {
        "row": [2, 3, 5],
        "field": ["age", "note", ""],
        "reason": ["'abc' is not a finite number", "text too long", "has 2 values, the header has 5"],
    }
    assert tables.distribution.to_dict("list") == {"class": ["no", "yes"], "rows": [0, 2]}
    assert "Ignored column(s): default." in tables.message
    # First request: rows 1, 3, 4; the service names row 3 (index 1); the rest is re-sent.
    assert [[r["age"] for r in call] for call in fake.predict_calls()] == [[30.0, 40.0, 95.0], [30.0, 95.0]]
    assert tables.csv_path is not None
    download = pd.read_csv(tables.csv_path, keep_default_na=False)
    assert download["row"].tolist() == [1, 2, 3, 4, 5]
    assert download["prediction"].tolist() == ["yes", "", "", "yes", ""]
    assert download["error"].tolist()[1] == "age: 'abc' is not a finite number"
    assert registry.get_sample_value("modelberth_ui_predictions_total", {"kind": "batch"}) == 1.0


def test_batch_isolates_bad_rows_the_service_does_not_name(
    fake_factory: Any, iris_card: ModelCard, tmp_path: Path
) -> None:
    def reject(instance: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"feature": "sepal_length", "msg": "bad"}] if instance["sepal_length"] == 6.66 else []

    fake = fake_factory(iris_card, reject=reject, unlocated_errors=True, max_instances=3)
    lines = ["sepal_length,sepal_width,petal_length,petal_width"]
    lines += [f"{6.66 if i in (2, 7) else 5.0},3.0,1.4,0.2" for i in range(1, 11)]
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    limits = BatchLimits(100_000, 1000, chunk_rows=4, chunk_bytes=512 * 1024)
    view = handlers.predict_batch(fake.client(), _session(), iris_card, path, limits, tmp_path)
    assert view.tables is not None
    assert view.tables.rejected["row"].tolist() == [2, 7]
    assert view.tables.results["row"].tolist() == [1, 3, 4, 5, 6, 8, 9, 10]
    sizes = [len(call) for call in fake.predict_calls()]
    assert sizes[:2] == [4, 2]  # 4 rows are too many (413): the chunk is split in halves


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"age,note\n1,x\n", "Missing column(s): job. The header must name the model's features"),
        (b"age,job,note\n", "The file has a header but no rows."),
        ("age,job,note\n1,tëch,x\n".encode("latin-1"), "The file is not UTF-8 text."),
        (b"age,age,job,note\n1,1,tech,x\n", "Columns appear twice: age."),
    ],
)
def test_unusable_files_are_refused_with_a_reason(
    fake_factory: Any, mixed_card: ModelCard, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    view = handlers.predict_batch(
        fake_factory(mixed_card).client(), _session(), mixed_card, path, LIMITS, tmp_path
    )
    assert view.status == "invalid"
    assert view.message.startswith(message)


def test_files_over_the_limit_are_refused(fake_factory: Any, mixed_card: ModelCard, tmp_path: Path) -> None:
    fake = fake_factory(mixed_card)
    path = _csv(tmp_path, "age,job,note\n" + "30,tech,x\n" * 20)
    limits = BatchLimits(max_bytes=100, max_rows=1000, chunk_rows=10, chunk_bytes=10_000)
    view = handlers.predict_batch(fake.client(), _session(), mixed_card, path, limits, tmp_path)
    assert view.status == "invalid"
    assert view.message == "The file is 213 bytes, above the 100 bytes limit. Split it into smaller files."
    assert fake.requests == []


def test_batch_with_an_expired_token_asks_to_log_in(
    fake_factory: Any, iris_card: ModelCard, tmp_path: Path
) -> None:
    fake = fake_factory(iris_card, expired_tokens={"token-1"})
    path = _csv(tmp_path, "sepal_length,sepal_width,petal_length,petal_width\n5,3,1,0.2\n")
    view = handlers.predict_batch(fake.client(), _session(), iris_card, path, LIMITS, tmp_path)
    assert view.status == "expired"
    assert view.session is not None
    assert view.session.expired


def test_regression_batch_distribution_is_a_histogram(
    fake_factory: Any, regression_card: ModelCard, tmp_path: Path
) -> None:
    path = _csv(tmp_path, "rooms\n1\n2\n3\n")
    view = handlers.predict_batch(
        fake_factory(regression_card).client(), _session(), regression_card, path, LIMITS, tmp_path
    )
    assert view.tables is not None
    assert int(view.tables.distribution["rows"].sum()) == 3
    assert "prediction" in view.tables.results.columns
