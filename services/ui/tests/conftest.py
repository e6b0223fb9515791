"""Fixtures for the UI's unit tests: model cards and a fake auth + inference behind ``httpx.MockTransport``.

The fake answers with the shapes the real services use (``{"models": [...]}``, the card as JSON, 422
``detail`` lists with ``["body", "instances", row, feature]`` locations, warnings as
``{"row", "feature", "kind", "detail"}``), so the client and handlers are tested without sockets.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelberth_core import contract
from modelberth_core.contract import ModelCard
from modelberth_ui.client import ModelberthClient

AUTH = "http://auth.test"
INFERENCE = "http://inference.test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def _card(**overrides: Any) -> ModelCard:
    base: dict[str, Any] = {
        "name": "loans",
        "version": "20261122T120000Z",
        "created_at": datetime(2026, 11, 22, 12, tzinfo=UTC),
        "task": "classification",
        "target": "default",
        "classes": ["no", "yes"],
        "positive_label": "yes",
        "threshold": contract.Threshold(value=0.4, strategy="max_f1"),
        "features": [
            contract.FeatureSpec(name="age", type="numeric", required=True, min=18, max=90, example=40),
            contract.FeatureSpec(
                name="job", type="categorical", required=True, categories=["admin", "tech"], example="tech"
            ),
            contract.FeatureSpec(name="note", type="text", required=False, max_length=200, example="ok"),
            contract.FeatureSpec(name="income", type="numeric", required=False, min=0, max=1e5),
        ],
        "metrics": contract.Metrics(
            primary="roc_auc",
            greater_is_better=True,
            cv={"roc_auc": 0.8},
            test={"roc_auc": 0.82, "f1": 0.6},
            test_at_threshold={"f1": 0.61},
            confusion_matrix=[[50, 5], [7, 20]],
        ),
        "champion": contract.ChampionInfo(
            candidate="hgb", estimator="HistGradientBoostingClassifier", params={}
        ),
        "leaderboard": [
            contract.LeaderboardRow(
                candidate="logistic",
                estimator="LogisticRegression",
                cv_score=0.78,
                cv_std=0.01,
                fit_seconds=0.2,
                n_configs=4,
                params={"C": 1.0},
            ),
            contract.LeaderboardRow(
                candidate="hgb",
                estimator="HistGradientBoostingClassifier",
                cv_score=0.8,
                cv_std=0.02,
                fit_seconds=1.5,
                n_configs=8,
                params={},
            ),
        ],
        "data": contract.DataInfo(
            source="file:loans.csv",
            rows=100,
            columns=5,
            sha256="a" * 64,
            train_rows=80,
            test_rows=20,
            class_counts={"no": 70, "yes": 30},
        ),
        "versions": contract.Versions(
            python="3.11", sklearn="1.9.1", pandas="3.1", numpy="2.3", modelberth="0.1.0"
        ),
        "model_sha256": "b" * 64,
        "reference_profile": {},
        "feature_importance": {"age": 0.3, "job": 0.1, "note": 0.05, "income": 0.2},
    }
    base.update(overrides)
    return ModelCard(**base)


@pytest.fixture(scope="session")
def mixed_card() -> ModelCard:
    """A binary classifier with numeric, categorical, text and optional features."""
    return _card()


@pytest.fixture
def regression_card() -> ModelCard:
    """A regressor with one numeric feature and test RMSE/MAE/R²."""
    return _card(
        name="prices",
        task="regression",
        target="price",
        classes=None,
        positive_label=None,
        threshold=None,
        features=[contract.FeatureSpec(name="rooms", type="numeric", required=True, min=1, max=9, example=3)],
        metrics=contract.Metrics(
            primary="rmse",
            greater_is_better=False,
            cv={"rmse": 3.3},
            test={"rmse": 3.1, "mae": 2.2, "r2": 0.71},
        ),
        feature_importance={},
    )


@pytest.fixture
def iris_card(tiny_model_dir: Path) -> ModelCard:
    """The card of the root conftest's tiny real iris artifact."""
    version = contract.resolve_latest(tiny_model_dir, "iris")
    assert version is not None
    return contract.read_card(tiny_model_dir / "iris" / version)


@pytest.fixture
def report_factory() -> Callable[[list[str]], str]:
    """``report_factory(["ROC curve", ...])`` -> a report page with one PNG per caption."""
    return report_html


def report_html(captions: list[str]) -> str:
    """A report page with one embedded PNG per caption, plus things the UI must not take over."""
    png = base64.b64encode(PNG).decode()
    img = f'<img src="data:image/png;base64,{png}" alt="">'
    figures = "".join(f"<h2>{c}</h2><figure>{img}<figcaption>{c}</figcaption></figure>" for c in captions)
    svg = base64.b64encode(b"<svg onload='alert(1)'></svg>").decode()
    return (
        f"<html><head><script>alert(1)</script></head><body>{figures}"
        f'<img src="data:image/svg+xml;base64,{svg}" alt="svg"><img src="https://example.com/x.png"></body></html>'
    )


@dataclass
class FakeApi:
    """Auth and inference as one MockTransport handler; every request is recorded."""

    cards: dict[str, ModelCard]
    users: dict[str, str] = field(default_factory=lambda: {"alice": "correct horse"})
    token: str = "token-1"
    expires_in: int = 900
    expired_tokens: set[str] = field(default_factory=set)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    locked: bool = False
    ready: bool = True
    max_instances: int = 1000
    reject: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
    """Server-side validation: errors ``{"feature", "msg"}`` for one instance (default: none)."""
    unlocated_errors: bool = False
    """Answer a 422 without naming rows (so the client must isolate bad rows itself)."""
    versions: dict[str, Any] = field(default_factory=dict)
    """Body of ``GET /v1/models/{name}/versions`` per model; a model not in it answers 404 (an inference
    that does not list versions)."""
    history: dict[str, Any] = field(default_factory=dict)
    """Body of ``GET /v1/models/{name}/history`` per model; a model not in it answers 404."""
    version_cards: dict[str, ModelCard] = field(default_factory=dict)
    """``"model/version-or-alias"`` -> the card ``GET /v1/models/{name}/versions/{ref}/card`` answers."""
    requests: list[httpx.Request] = field(default_factory=list)

    def client(self, **kwargs: Any) -> ModelberthClient:
        """A ModelberthClient whose traffic goes to this fake."""
        return ModelberthClient(AUTH, INFERENCE, transport=httpx.MockTransport(self), **kwargs)

    def predict_calls(self) -> list[list[dict[str, Any]]]:
        """The instances of every predict request, in order."""
        return [
            json.loads(r.content)["instances"]
            for r in self.requests
            if r.url.path.endswith("/predict") and "/examples/" not in r.url.path
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        host, path = request.url.host, request.url.path
        if path == "/readyz":
            return httpx.Response(
                200 if self.ready else 503, json={"status": "ready" if self.ready else "no"}
            )
        if host == "auth.test":
            return self._auth(request, path)
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or bearer[7:] in self.expired_tokens:
            return httpx.Response(
                401,
                json={"detail": "token expired"},
                headers={"www-authenticate": 'Bearer error="invalid_token"'},
            )
        return self._inference(request, path)

    def _auth(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/oauth/revoke":
            return httpx.Response(200, json={})
        if path != "/auth/login":
            return httpx.Response(404, json={"detail": "not found"})
        if self.locked:
            return httpx.Response(
                429, json={"detail": "too many failed logins"}, headers={"retry-after": "30"}
            )
        body = json.loads(request.content)
        if self.users.get(body.get("username")) != body.get("password"):
            return httpx.Response(
                401, json={"error": "invalid_grant", "error_description": "invalid username or password"}
            )
        return httpx.Response(
            200,
            json={
                "access_token": self.token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": "predict models:read",
                "refresh_token": "refresh-1",
            },
        )

    def _lifecycle(self, card: ModelCard, rest: list[str]) -> httpx.Response:
        """``/history``, ``/versions`` and ``/versions/{ref}/card``: 404 for what this fake was not given."""
        if rest == ["history"] and card.name in self.history:
            return httpx.Response(200, json=self.history[card.name])
        if rest == ["versions"] and card.name in self.versions:
            return httpx.Response(200, json=self.versions[card.name])
        other = self.version_cards.get(f"{card.name}/{rest[1]}") if rest[2:] == ["card"] else None
        if other is not None:
            return httpx.Response(200, json=other.model_dump(mode="json"))
        return httpx.Response(404, json={"detail": "Not Found"})

    def _inference(self, request: httpx.Request, path: str) -> httpx.Response:
        parts = path.strip("/").split("/")
        if parts == ["v1", "models"]:
            models = [{"name": c.name, "version": c.version, "task": c.task} for c in self.cards.values()]
            return httpx.Response(200, json={"models": models})
        card = self.cards.get(parts[2]) if len(parts) > 2 else None
        if card is None:
            return httpx.Response(404, json={"detail": "model not found"})
        rest = parts[3:]
        if not rest:
            return httpx.Response(200, json={**card.model_dump(mode="json"), "status": "ready"})
        if rest == ["report"]:
            if card.name not in self.reports:
                return httpx.Response(404, json={"detail": "no report"})
            return httpx.Response(200, text=self.reports[card.name], headers={"content-type": "text/html"})
        if rest[0] in ("history", "versions"):
            return self._lifecycle(card, rest)
        if rest[0] == "examples":
            rows = self.examples.get(card.name, [])
            index = int(rest[1])
            if not 0 <= index < len(rows):
                return httpx.Response(
                    404, json={"detail": f"example {index} not found ({len(rows)} examples)"}
                )
            if rest[2:] == ["predict"]:
                return self._predict(card, [rows[index]], {"index": index, "instance": rows[index]})
            return httpx.Response(200, json={"index": index, "count": len(rows), "instance": rows[index]})
        if rest == ["predict"]:
            return self._predict(card, json.loads(request.content)["instances"], {})
        return httpx.Response(404, json={"detail": "not found"})

    def _predict(
        self, card: ModelCard, instances: list[dict[str, Any]], extra: dict[str, Any]
    ) -> httpx.Response:
        if len(instances) > self.max_instances:
            return httpx.Response(413, json={"detail": f"too many instances: {len(instances)}"})
        errors = []
        for row, instance in enumerate(instances):
            for problem in (self.reject or (lambda _: []))(instance):
                loc: list[Any] = (
                    ["body", "instances"] if self.unlocated_errors else ["body", "instances", row]
                )
                errors.append(
                    {"loc": [*loc, problem["feature"]], "msg": problem["msg"], "type": "value_error"}
                )
        if errors:
            return httpx.Response(422, json={"detail": errors})
        warnings = [
            {
                "row": row,
                "feature": spec.name,
                "kind": "out_of_range",
                "detail": f"outside the training range [{spec.min}, {spec.max}]",
            }
            for row, instance in enumerate(instances)
            for spec in card.features
            if _out_of_range(spec, instance.get(spec.name))
        ]
        body: dict[str, Any] = {"model": card.name, "version": card.version, "warnings": warnings, **extra}
        if card.task == "classification":
            classes = card.classes or []
            body["predictions"] = [classes[-1] for _ in instances]
            share = 1.0 / len(classes)
            body["probabilities"] = [
                {c: round(share + (0.1 if i == len(classes) - 1 else -0.1 / (len(classes) - 1)), 6)
                 for i, c in enumerate(classes)}
                for _ in instances
            ]  # fmt: skip
        else:
            body["predictions"] = [12.5 for _ in instances]
        return httpx.Response(200, json=body)


def _out_of_range(spec: contract.FeatureSpec, value: Any) -> bool:
    if spec.type != "numeric" or not isinstance(value, int | float):
        return False
    return (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max)


@pytest.fixture(scope="session")
def fake_factory() -> Callable[..., FakeApi]:
    """``fake_factory(card, ...)`` -> a FakeApi serving those cards."""

    def make(*cards: ModelCard, **kwargs: Any) -> FakeApi:
        return FakeApi({c.name: c for c in cards}, **kwargs)

    return make


class GradioHttp:
    """Runs the page's events over HTTP the way the browser does: ``queue/join``, then ``queue/data``.

    Works with a TestClient (in process) and with an httpx.Client aimed at a real UI process alike.
    """

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        page = http.get("/").text
        start = page.index("window.gradio_config = ") + len("window.gradio_config = ")
        self.config: dict[str, Any] = json.JSONDecoder().raw_decode(page, start)[0]

    def fn_index(self, name: str) -> int:
        """The index of the event handler whose function is called ``name``."""
        for dependency in self.config["dependencies"]:
            if dependency.get("api_name") == name:
                return int(dependency["id"])
        raise KeyError(name)

    def join(self, session: str, fn_index: Any, data: list[Any], **extra: Any) -> httpx.Response:
        """POST ``queue/join`` as the page does (``extra`` adds or overrides fields)."""
        body = {"data": data, "event_data": None, "fn_index": fn_index, "trigger_id": None,
                "session_hash": session, **extra}  # fmt: skip
        return self.http.post("/gradio_api/queue/join", json=body)

    def messages(self, session: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every message of ``session``'s event stream until it closes (all its events completed)."""
        found: list[dict[str, Any]] = []
        with self.http.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": session}, timeout=timeout
        ) as stream:
            assert stream.status_code == 200, stream.status_code
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    message = json.loads(line[6:])
                    found.append(message)
                    if message.get("msg") in ("close_stream", "unexpected_error"):
                        break
        return found

    def run(self, session: str, name: str, data: list[Any]) -> dict[str, Any]:
        """Run handler ``name`` and return its ``process_completed`` message."""
        joined = self.join(session, self.fn_index(name), data)
        assert joined.status_code == 200, joined.text
        event_id = joined.json()["event_id"]
        for message in self.messages(session):
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                return message
        raise AssertionError(f"{name} never completed")


@pytest.fixture
def gradio_http() -> type[GradioHttp]:
    """``gradio_http(client)`` -> a :class:`GradioHttp` for the page ``client`` serves."""
    return GradioHttp
