"""End to end in a real browser: Debian's chromium, driven by Playwright, against real auth, inference and
UI processes on free ports. Screenshots of every step go to ``tests-output/ui/`` (git-ignored).

The model root holds two real artifacts published through the contract: the root conftest's tiny iris
model (numbers only) and a small ticket classifier with a number, a category and free text, so the form
is shown to follow the chosen model's card. Every prediction the page shows is compared with the
inference API's own answer for the same row.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelberth_core import contract

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
SHOTS = REPO_ROOT / "tests-output" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
TICKET = {"priority": 4.0, "channel": "phone", "text": "the payment page is down"}
"""The ticket typed into the tickets model's form."""
STEP_TIMEOUT_MS = 60_000
"""Generous: the machine is shared, and a gradio event is a websocket round trip plus a service call."""

TICKETS = [
    (5, "phone", "the site is down and customers cannot pay", "urgent"),
    (4, "chat", "outage in the payment service right now", "urgent"),
    (5, "email", "everything is broken after the release", "urgent"),
    (4, "phone", "checkout down for all users", "urgent"),
    (3, "chat", "servers are down again please help", "urgent"),
    (1, "email", "question about my invoice from march", "normal"),
    (2, "email", "thanks for the quick answer", "normal"),
    (1, "chat", "how do i change my password", "normal"),
    (2, "phone", "question about the new pricing", "normal"),
    (1, "email", "please send a copy of the invoice", "normal"),
] * 3


def publish_tickets_artifact(model_dir: Path) -> Path:
    """A real Pipeline over a number, a category and a text column, published through the contract."""
    import joblib
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from modelberth_trainer.provenance import versions

    frame = pd.DataFrame(TICKETS, columns=["priority", "channel", "text", "label"])
    x, y = frame[["priority", "channel", "text"]], frame["label"].to_numpy()
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["priority"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
                        ("txt", TfidfVectorizer(), "text"),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )
    pipeline.fit(x, y)
    classes = [str(c) for c in pipeline.classes_]
    predicted = pipeline.predict(x)
    matrix = [[int(((y == a) & (predicted == b)).sum()) for b in classes] for a in classes]
    figure, axes = plt.subplots(figsize=(3, 3))
    axes.imshow(np.asarray(matrix), cmap="Blues")
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    png = base64.b64encode(buffer.getvalue()).decode()
    version = contract.unique_version(model_dir, "tickets", datetime.now(UTC))
    with contract.staging_dir(model_dir, "tickets") as staged:
        joblib.dump(pipeline, staged / contract.MODEL_FILE)
        x.head(6).to_csv(staged / contract.EXAMPLES_FILE, index=False)
        (staged / contract.REPORT_FILE).write_text(
            "<html><body><h2>Confusion matrix</h2><figure>"
            f'<img alt="Confusion matrix (training rows)" src="data:image/png;base64,{png}">'
            "<figcaption>Confusion matrix (training rows)</figcaption></figure></body></html>",
            encoding="utf-8",
        )
        lengths = x["text"].str.len()
        card = contract.ModelCard(
            name="tickets",
            version=version,
            created_at=datetime.now(UTC),
            task="classification",
            target="label",
            classes=classes,
            positive_label="urgent",
            threshold=contract.Threshold(value=0.5, strategy="default"),
            features=[
                contract.FeatureSpec(name="priority", type="numeric", required=True, min=1, max=5, example=3),
                contract.FeatureSpec(
                    name="channel",
                    type="categorical",
                    required=True,
                    categories=["chat", "email", "phone"],
                    example="email",
                ),
                contract.FeatureSpec(
                    name="text",
                    type="text",
                    required=True,
                    max_length=int(lengths.max()),
                    example="a question",
                ),
            ],
            metrics=contract.Metrics(
                primary="f1",
                greater_is_better=True,
                cv={"f1": 1.0},
                test={"f1": 1.0, "accuracy": 1.0},
                confusion_matrix=matrix,
            ),
            champion=contract.ChampionInfo(candidate="logistic", estimator="LogisticRegression", params={}),
            leaderboard=[
                contract.LeaderboardRow(
                    candidate="logistic",
                    estimator="LogisticRegression",
                    cv_score=1.0,
                    cv_std=0.0,
                    fit_seconds=0.02,
                    n_configs=1,
                    params={},
                )
            ],
            data=contract.DataInfo(
                source="test:tickets",
                rows=len(frame),
                columns=4,
                sha256="0" * 64,
                train_rows=len(frame),
                test_rows=0,
                class_counts={c: int((y == c).sum()) for c in classes},
            ),
            versions=versions(),  # what the trainer writes into its own cards
            model_sha256=contract.sha256_file(staged / contract.MODEL_FILE),
            reference_profile={
                "priority": contract.NumericProfile(edges=[2.0, 4.0], frequencies=[0.4, 0.2, 0.4]),
                "channel": contract.CategoricalProfile(frequencies={"chat": 0.3, "email": 0.4, "phone": 0.3}),
                "text": contract.CategoricalProfile(
                    frequencies={"0-9": 0.0, "10-49": float((lengths < 50).mean()), "50+": 0.0}
                ),
            },
            feature_importance={"text": 0.7, "priority": 0.2, "channel": 0.1},
        )
        return contract.publish(model_dir, staged, card)


class Journey:
    """The browser page plus what the steps share: screenshots, the API token and external requests."""

    def __init__(self, page: Any, ui_url: str, auth_url: str, api: httpx.Client, token: str) -> None:
        self.page = page
        self.ui_url = ui_url
        self.auth_url = auth_url
        self.api = api
        self.token = token
        self.step = 0
        self.external: list[str] = []
        page.on("request", self._record)

    def _record(self, request: Any) -> None:
        if not request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
            self.external.append(request.url)

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(SHOTS / f"{self.step:02d}-{name}.png"), full_page=True)

    def api_predict(self, model: str, instance: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post(
            f"/v1/models/{model}/predict",
            json={"instances": [instance]},
            headers={"authorization": f"Bearer {self.token}"},
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_for_probabilities(self, result_id: str, expected: dict[str, float]) -> None:
        """Wait until the result shows ``expected``: a stale table from an earlier prediction may still be
        on the page while the new one is on its way."""
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        shown = self.shown_probabilities(result_id)
        while shown != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            shown = self.shown_probabilities(result_id)
        assert shown == expected

    def shown_probabilities(self, result_id: str) -> dict[str, float]:
        rows = self.page.locator(f"#{result_id} table tbody tr")
        shown: dict[str, float] = {}
        for i in range(rows.count()):
            cells = rows.nth(i).locator("td").all_inner_texts()
            shown[cells[0].strip()] = float(cells[1])
        return shown


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A headless Debian chromium page (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: run scripts/install-system-deps.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
            accept_downloads=True,
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


def _add_user(name: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "modelberth_cli", "users", "add", name, "--password-stdin"],
        input=PASSWORD.encode(),
        check=True,
        env=os.environ.copy(),
        capture_output=True,
    )


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "modelberth_cli", *args],
        check=True,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    return done.stdout


def _rotate_signing_key(journey: Journey, timeout: float = 60.0) -> str:
    """Add a signing key and remove the old one; return a token from the new key once inference uses it.

    Inference refetches the JWKS when it sees an unknown key id; after that, tokens signed by the removed
    key are refused (401), which is what an expired session looks like to the UI.
    """
    old_kid = _cli("keys", "list").split()[0]
    _cli("keys", "generate", "--add")
    _cli("keys", "remove", old_kid)
    auth_url = journey.auth_url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        login = httpx.post(f"{auth_url}/auth/login", json={"username": "alice", "password": PASSWORD})
        token: str = login.json()["access_token"]
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        if header["kid"] != old_kid:
            headers = {"authorization": f"Bearer {token}"}
            if journey.api.get("/v1/models", headers=headers).status_code == 200:
                old = journey.api.get("/v1/models", headers={"authorization": f"Bearer {journey.token}"})
                assert old.status_code == 401
                return token
        time.sleep(0.5)
    raise AssertionError("inference never accepted a token from the new signing key")


def test_a_person_uses_the_ui_end_to_end(
    start_service: Callable[..., Any],
    tiny_model_dir: Path,
    artifact_factory: Callable[..., Path],
    browser_page: Any,
    tmp_path: Path,
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    publish_tickets_artifact(tiny_model_dir)
    artifact_factory(tiny_model_dir, rows=90, alias="challenger")  # a retrain the gate refused
    _add_user("alice")
    # Generous start timeouts: other test suites share this machine's two cores.
    auth = start_service("auth", timeout=180.0)
    inference = start_service(
        "inference",
        env={
            "INFERENCE_MODEL_DIR": str(tiny_model_dir),
            "INFERENCE_AUTH_JWKS_URL": f"{auth.url}/.well-known/jwks.json",
        },
        timeout=180.0,
    )
    ui = start_service(
        "ui",
        env={"UI_AUTH_URL": auth.url, "UI_INFERENCE_URL": inference.url, "UI_TEMP_DIR": str(tmp_path / "ui")},
        timeout=240.0,  # cold `import gradio` is slow on a busy 2-core machine
    )
    token = httpx.post(f"{auth.url}/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    with httpx.Client(base_url=inference.url, timeout=10.0) as api:
        journey = Journey(browser_page, ui.url, auth.url, api, token["access_token"])
        _run(journey, tmp_path, tiny_model_dir)
    assert journey.external == [], "the page must not fetch anything from outside"
    metrics = httpx.get(f"{ui.url}/metrics").text
    for sample in (
        'modelberth_ui_logins_total{outcome="invalid_credentials"} 1.0',
        'modelberth_ui_logins_total{outcome="success"} 2.0',
        'modelberth_ui_predictions_total{kind="form"} 3.0',
        'modelberth_ui_predictions_total{kind="example"} 1.0',
        'modelberth_ui_predictions_total{kind="batch"} 1.0',
    ):
        assert sample in metrics


def _run(journey: Journey, tmp_path: Path, store_dir: Path) -> None:
    """The steps a person takes, in order; each leaves the page as the next expects it."""
    _log_in(journey)
    _predict_with_the_form(journey)
    _predict_an_example(journey)
    _predict_a_file(journey, tmp_path)
    _read_the_model_card(journey)
    _follow_the_versions(journey, store_dir)
    _switch_models(journey)
    _expire_the_session(journey)
    _phone_then_log_out(journey)


def _log_in(journey: Journey) -> None:
    page = journey.page

    # 1. The login form; a wrong password is refused with a clear message.
    page.goto(journey.ui_url + "/", wait_until="load")
    page.locator("#mb-username input, #mb-username textarea").first.wait_for()
    journey.shot("login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.locator("#mb-login-button").click()
    page.get_by_text("Wrong username or password.").wait_for()
    assert page.locator("#mb-app").is_hidden()
    journey.shot("wrong-password")

    # 2. Log in: the app shows the first model (iris) and its version.
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#mb-login-button").click()
    page.get_by_label("sepal_length").wait_for()
    info = page.locator("#mb-model-info").inner_text()
    assert "iris" in info
    assert "version" in info
    assert page.locator("#mb-login").is_hidden()
    journey.shot("logged-in")


def _predict_with_the_form(journey: Journey) -> None:
    page = journey.page

    # 3. Predict from the form: the probabilities shown equal the API's for the same row.
    row = {"sepal_length": 9.1, "sepal_width": 3.0, "petal_length": 4.5, "petal_width": 1.5}
    for name, value in row.items():
        page.locator(f"#mb-field-{name} input").fill(str(value))
    page.locator("#mb-predict").click()
    page.locator("#mb-form-result table").wait_for()
    expected = journey.api_predict("iris", row)
    shown = journey.shown_probabilities("mb-form-result")
    assert shown == {k: round(v, 4) for k, v in expected["probabilities"][0].items()}
    assert f"Prediction: {expected['predictions'][0]}" in page.locator("#mb-form-result").inner_text()
    # 9.1 is above the training range: the warning sits next to the field.
    page.get_by_text("outside the training range").first.wait_for()
    page.locator("#mb-form-plot").wait_for()
    journey.shot("predict-form")


def _predict_an_example(journey: Journey) -> None:
    page = journey.page

    # 4. By example: held-out row 2 and its prediction, as the API predicts it.
    page.get_by_role("tab", name="By example").click()
    page.locator("#mb-example-index input").fill("2")
    page.locator("#mb-example-go").click()
    page.locator("#mb-example-result table").wait_for()
    example = journey.api.post(
        "/v1/models/iris/examples/2/predict", headers={"authorization": f"Bearer {journey.token}"}
    ).json()
    shown = journey.shown_probabilities("mb-example-result")
    assert shown == {k: round(v, 4) for k, v in example["probabilities"][0].items()}
    table = page.locator("#mb-example-row").inner_text()
    assert "sepal_length" in table
    assert str(example["instance"]["sepal_length"]) in table
    journey.shot("by-example")


def _predict_a_file(journey: Journey, tmp_path: Path) -> None:
    page = journey.page

    # 5. Batch: one bad row is listed with its reason, the others are predicted; the download works.
    csv_path = tmp_path / "flowers.csv"
    csv_path.write_text(
        "sepal_length,sepal_width,petal_length,petal_width,species\n"
        "5.1,3.5,1.4,0.2,setosa\n"
        "6.7,3.0,5.2,2.3,virginica\n"
        "abc,3.0,4.5,1.5,versicolor\n"
        "5.9,3.0,4.2,1.5,versicolor\n",
        encoding="utf-8",
    )
    page.get_by_role("tab", name="Batch").click()
    page.locator("#mb-upload input[type=file]").set_input_files(str(csv_path))
    page.get_by_text("Predicted 3 of 4 rows.").wait_for()
    rejected = page.locator("#mb-batch-rejected").inner_text()
    assert "sepal_length" in rejected
    assert "'abc' is not a finite number" in rejected
    page.locator("#mb-batch-table").wait_for()
    page.locator("#mb-batch-plot").wait_for()
    journey.shot("batch")
    with page.expect_download() as download_info:
        page.locator("#mb-batch-download").click()
    downloaded = Path(download_info.value.path()).read_text(encoding="utf-8").splitlines()
    assert downloaded[0].startswith("row,prediction,p(setosa),p(versicolor),p(virginica),warnings,error,")
    assert len(downloaded) == 5
    assert "'abc' is not a finite number" in downloaded[3]


def _read_the_model_card(journey: Journey) -> None:
    page = journey.page

    # 6. The model card: overview, metrics, leaderboard, data fingerprint, versions.
    page.get_by_role("tab", name="Model").click()
    page.locator("#mb-card-overview").get_by_text("Selected:").wait_for()
    page.locator("#mb-card-versions table").wait_for()
    assert "LogisticRegression" in page.locator("#mb-card-leaderboard").inner_text()
    assert "sklearn:iris" in page.locator("#mb-card-data").inner_text()
    journey.shot("model-card")


def _follow_the_versions(journey: Journey, store_dir: Path) -> None:
    page = journey.page

    # 6b. The versions tab, read-only: the versions with their aliases, champion against challenger, the
    #     challenger's card, and the history of alias moves; a real promote and rollback (the CLI on the
    #     store inference reads) show up in that history.
    auth = {"authorization": f"Bearer {journey.token}"}
    served = journey.api.get("/v1/models/iris", headers=auth).json()["version"]
    challenger = journey.api.get("/v1/models/iris/versions", headers=auth).json()["aliases"]["challenger"]
    page.get_by_role("tab", name="Versions").click()
    page.locator("#mb-versions-compare").get_by_text(f"champion {served}").first.wait_for()
    assert f"challenger {challenger}" in page.locator("#mb-versions-compare").inner_text()
    assert "(primary)" in page.locator("#mb-versions-compare").inner_text()
    assert "Shadow" in page.locator("#mb-versions-shadow").inner_text()
    assert page.get_by_role("button", name="Promote").count() == 0
    # Gradio's tables also render hidden copies of their cells: wait for the ones shown.
    page.locator("#mb-versions-table").get_by_text(served).filter(visible=True).first.wait_for()
    assert "champion" in page.locator("#mb-versions-table").inner_text()
    # The challenger's card, as the Model tab shows the champion's.
    page.locator("#mb-challenger-overview").get_by_text(challenger).first.wait_for()
    assert "LogisticRegression" in page.locator("#mb-challenger-leaderboard").inner_text()
    history = page.locator("#mb-versions-history")
    history.get_by_text(f"(none) → {challenger}").filter(visible=True).first.wait_for()
    journey.shot("versions")

    _cli("models", "promote", "iris", "challenger", "--store", str(store_dir), "--actor", "release-bot")
    _cli("models", "rollback", "iris", "--store", str(store_dir), "--actor", "on-call")
    page.get_by_role("tab", name="Model").click()
    page.locator("#mb-card-overview").get_by_text("Selected:").wait_for()
    page.get_by_role("tab", name="Versions").click()
    history.get_by_text("on-call").filter(visible=True).first.wait_for()
    for shown in (f"{served} → {challenger}", f"{challenger} → (removed)", f"{challenger} → {served}"):
        history.get_by_text(shown).filter(visible=True).first.wait_for()
    text = history.inner_text()
    assert text.index("on-call") < text.index("release-bot")  # newest first
    assert f"rollback: rolled back from {challenger}" in text
    # Promoting the challenger removed its alias: the rolled-back model has none now.
    page.locator("#mb-challenger-note").get_by_text("This model has no challenger.").wait_for()
    page.locator("#mb-challenger-card").wait_for(state="hidden")
    journey.shot("versions-history")
    page.get_by_role("tab", name="Model").click()
    page.locator("#mb-card-overview").get_by_text("Selected:").wait_for()


def _switch_models(journey: Journey) -> None:
    page = journey.page

    # 7. Another model: the form follows its card (a dropdown and a text box); the report's plot shows.
    page.locator("#mb-model input").click()
    page.get_by_role("option", name="tickets").first.click()
    page.get_by_text("Confusion matrix (training rows)").first.wait_for()
    assert page.locator("#mb-card-plots img").count() == 1
    journey.shot("model-card-tickets")
    page.get_by_role("tab", name="Predict").click()
    page.locator("#mb-field-text textarea, #mb-field-text input").first.fill("the payment page is down")
    page.locator("#mb-field-channel input").click()
    page.get_by_role("option", name="phone").click()
    page.locator("#mb-field-priority input").fill("4")
    page.locator("#mb-predict").click()
    page.locator("#mb-form-result table").wait_for()
    expected = journey.api_predict("tickets", TICKET)
    shown = journey.shown_probabilities("mb-form-result")
    assert shown == {k: round(v, 4) for k, v in expected["probabilities"][0].items()}
    journey.shot("predict-tickets")


def _expire_the_session(journey: Journey) -> None:
    page = journey.page

    # 8. The session ends under the person's hands (the signing key is rotated away, so inference answers
    #    401): the page asks to log in again, and the form still holds what was typed.
    page.locator("#mb-field-priority input").fill("2")
    journey.token = _rotate_signing_key(journey)
    page.locator("#mb-predict").click()
    page.get_by_text("Your session has expired").wait_for()
    assert page.locator("#mb-login").is_visible()
    journey.shot("session-expired")
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#mb-login-button").click()
    page.locator("#mb-login").wait_for(state="hidden")
    kept = page.locator("#mb-field-text textarea, #mb-field-text input").first.input_value()
    assert kept == "the payment page is down"
    assert page.locator("#mb-field-priority input").input_value() == "2"
    page.locator("#mb-predict").click()
    expected = journey.api_predict("tickets", {**TICKET, "priority": 2.0})
    # The table of the last prediction before the session expired is still shown until this one lands.
    journey.wait_for_probabilities(
        "mb-form-result", {k: round(v, 4) for k, v in expected["probabilities"][0].items()}
    )
    journey.shot("logged-in-again")


def _phone_then_log_out(journey: Journey) -> None:
    page = journey.page

    # 9. Phone width: the same page, one column.
    page.set_viewport_size({"width": 390, "height": 844})
    time.sleep(0.5)  # let the layout settle before the screenshot
    journey.shot("phone")
    page.set_viewport_size({"width": 1200, "height": 900})

    # 10. Log out: back to the login form, nothing of the session left on screen.
    page.locator("#mb-logout").click()
    page.get_by_text("You are logged out.").wait_for()
    assert page.locator("#mb-app").is_hidden()
    journey.shot("logged-out")
