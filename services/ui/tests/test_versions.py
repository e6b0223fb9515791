"""The Versions tab: the client call, the read-only handler and the page that shows it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import gradio as gr
import httpx
import pytest

from modelberth_core import contract
from modelberth_core.contract import ModelCard
from modelberth_ui import handlers
from modelberth_ui.blocks import build_ui
from modelberth_ui.client import ModelberthClient, NotFoundError, UnexpectedResponseError
from modelberth_ui.handlers import EXPIRED_MESSAGE, Session

V1, V2, V3 = "20261120T090000Z", "20261121T090000Z", "20261122T120000Z"
"""V3 is the conftest card's version (the champion the fake serves)."""


def _session() -> Session:
    return Session("alice", "token-1", "refresh-1", ("models:read",), time.time() + 900)


def _version(version: str, day: int, score: float, **extra: Any) -> dict[str, Any]:
    return {
        "version": version,
        "created_at": f"2026-11-{day}T09:00:00+00:00",
        "metric": "roc_auc",
        "score": score,
        "greater_is_better": True,
        "digest": None,
        **extra,
    }


def _listing(**overrides: Any) -> dict[str, Any]:
    """The contract's shape: champion V3, challenger V2, latest V2 (a refused retrain)."""
    body: dict[str, Any] = {
        "name": "loans",
        "aliases": {"champion": V3, "challenger": V2, "latest": V2, "prod-eu": V3},
        "versions": [_version(V1, 20, 0.7), _version(V2, 21, 0.79), _version(V3, 22, 0.82)],
    }
    body.update(overrides)
    return body


def _move(
    alias: str, frm: str | None, to: str | None, reason: str, minute: int, **extra: Any
) -> dict[str, Any]:
    return {"model": "loans", "alias": alias, "from_version": frm, "to_version": to, "actor": "alice",
            "at": f"2026-11-22T12:{minute:02d}:00Z", "reason": reason, "digest": None, "detail": None,
            **extra}  # fmt: skip


def _history(total: int | None = None) -> dict[str, Any]:
    """What inference answers: newest first; a refused retrain, then the champion promoted by the gate."""
    events = [
        _move("challenger", None, V2, "gate", 30, actor="trainer", detail="metric worse by 0.03"),
        _move("champion", V1, V3, "gate", 10, actor="trainer"),
        _move("latest", None, V1, "publish", 0),
    ]
    return {"model": "loans", "total": total or len(events), "events": events}


def _gated(card: ModelCard) -> ModelCard:
    gate = contract.GateResult(
        verdict="promoted",
        champion_version=V1,
        metric="roc_auc",
        greater_is_better=True,
        candidate_score=0.82,
        champion_score=0.7,
        tolerance=0.005,
        rows=20,
        checks=[
            contract.GateCheck(
                kind="metric", name="roc_auc", passed=True, detail="0.82 vs 0.7", value=0.82, limit=0.695,
                margin=0.125,
            ),
            contract.GateCheck(
                kind="invariance", name="SEX", passed=True, detail="3% flipped", value=0.03, limit=0.05,
                margin=0.02,
            ),
        ],
    )  # fmt: skip
    return card.model_copy(update={"gate": gate})


# --- the client -----------------------------------------------------------------------------------


def test_the_client_reads_the_contract_and_the_inference_shape(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    contract_shape = fake_factory(mixed_card, versions={"loans": _listing()})
    listing = contract_shape.client().list_versions("token-1", "loans")
    assert [v.version for v in listing.versions] == [V1, V2, V3]
    assert listing.aliases_of(V3) == ["champion", "prod-eu"]
    assert listing.aliases_of(V2) == ["challenger", "latest"]
    assert listing.shadow is None
    request = contract_shape.requests[-1]
    assert (request.url.path, request.headers["authorization"]) == (
        "/v1/models/loans/versions",
        "Bearer token-1",
    )
    # What inference answers in practice: ``model`` for the name, per-version extras, a shadow block.
    served = _listing(
        name=None, model="loans", shadow={"enabled": True, "status": "active", "agreement": 0.9}
    )
    del served["name"]
    served["versions"][0] |= {"aliases": [], "loaded": False}
    listing = fake_factory(mixed_card, versions={"loans": served}).client().list_versions("token-1", "loans")
    assert listing.name == "loans"
    assert listing.shadow is not None
    assert listing.shadow.agreement == 0.9


@pytest.mark.parametrize(
    "broken",
    [
        {"aliases": {"Champion": V3}, "versions": []},  # not an alias the store could hold
        {"aliases": {"champion": "../etc"}, "versions": []},  # not a version id
        {"aliases": {}, "versions": [{"version": "<b>x</b>"}]},
        {"aliases": {}, "versions": "nope"},
        {"aliases": {}, "versions": [], "shadow": {"agreement": 7}},
        [],
    ],
)
def test_a_listing_of_the_wrong_shape_is_unexpected(
    broken: Any, fake_factory: Any, mixed_card: ModelCard
) -> None:
    body = {"name": "loans", **broken} if isinstance(broken, dict) else broken
    client = fake_factory(mixed_card, versions={"loans": body}).client()
    with pytest.raises(UnexpectedResponseError):
        client.list_versions("token-1", "loans")


def test_an_inference_without_the_endpoint_is_not_found(fake_factory: Any, mixed_card: ModelCard) -> None:
    with pytest.raises(NotFoundError):
        fake_factory(mixed_card).client().list_versions("token-1", "loans")


def test_a_bad_model_name_never_reaches_the_network() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent {request.url}")

    client = ModelberthClient(
        "http://auth.test", "http://inference.test", transport=httpx.MockTransport(refuse)
    )
    for name in ("../auth", "loans/versions/x", "", "a b"):
        with pytest.raises(NotFoundError):
            client.list_versions("token-1", name)


def test_the_client_reads_the_history_and_any_versions_card(fake_factory: Any, mixed_card: ModelCard) -> None:
    challenger = mixed_card.model_copy(update={"version": V2})
    fake = fake_factory(mixed_card, history={"loans": _history()}, version_cards={f"loans/{V2}": challenger})
    client = fake.client()
    history = client.get_history("token-1", "loans", limit=3)
    assert (history.name, history.total) == ("loans", 3)
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in history.events] == [
        ("challenger", None, V2, "gate"),
        ("champion", V1, V3, "gate"),
        ("latest", None, V1, "publish"),
    ]
    assert history.events[0].actor == "trainer"
    request = fake.requests[-1]
    assert (request.url.path, request.url.params["limit"], request.headers["authorization"]) == (
        "/v1/models/loans/history", "3", "Bearer token-1",
    )  # fmt: skip
    assert client.get_history("token-1", "loans", limit=10_000) is not None
    assert fake.requests[-1].url.params["limit"] == "500"  # what inference accepts at most
    assert client.get_version_card("token-1", "loans", V2) == challenger
    assert fake.requests[-1].url.path == f"/v1/models/loans/versions/{V2}/card"
    with pytest.raises(NotFoundError):
        client.get_version_card("token-1", "loans", V1)
    with pytest.raises(NotFoundError):
        fake_factory(mixed_card).client().get_history("token-1", "loans")


@pytest.mark.parametrize(
    "broken",
    [
        {"model": "loans", "total": 1, "events": [{**_move("Champion", None, V1, "gate", 1)}]},
        {"model": "loans", "total": 1, "events": [{**_move("champion", "../x", V1, "gate", 1)}]},
        {"model": "loans", "total": 1, "events": [{**_move("champion", None, V1, "gate", 1), "at": "soon"}]},
        {"model": "loans", "total": -1, "events": []},
        {"model": "loans", "events": "nope"},
        [],
    ],
)
def test_a_history_of_the_wrong_shape_is_unexpected(
    broken: Any, fake_factory: Any, mixed_card: ModelCard
) -> None:
    client = fake_factory(mixed_card, history={"loans": broken}).client()
    with pytest.raises(UnexpectedResponseError):
        client.get_history("token-1", "loans")


def test_bad_names_and_versions_never_reach_the_network() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent {request.url}")

    client = ModelberthClient(
        "http://auth.test", "http://inference.test", transport=httpx.MockTransport(refuse)
    )
    for name in ("../auth", "loans/versions/x", "", "a b"):
        with pytest.raises(NotFoundError):
            client.get_history("token-1", name)
        with pytest.raises(NotFoundError):
            client.get_version_card("token-1", name, V1)
    for version in ("../../auth", "Champion", f"{V1}/../x", "", "a" * 64, "champion?x=1"):
        with pytest.raises(NotFoundError):
            client.get_version_card("token-1", "loans", version)


# --- the handler ----------------------------------------------------------------------------------


def test_the_view_lists_versions_and_compares_champion_with_challenger(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    shadow = {"enabled": True, "status": "active", "champion": V3, "challenger": V2, "compared_rows": 200,
              "agreeing_rows": 183, "agreement": 0.915}  # fmt: skip
    fake = fake_factory(_gated(mixed_card), versions={"loans": _listing(shadow=shadow)})
    view = handlers.versions_view(fake.client(), _session(), mixed_card)
    # This inference serves neither the history nor other versions' cards: said, and the rest still shows.
    assert view.history is None
    assert view.history_note.startswith("This inference does not serve the history")
    assert (view.challenger, view.challenger_note) == (None, f"The card of challenger `{V2}` cannot be read.")
    assert (view.status, view.message) == ("ok", "")
    assert view.versions is not None
    assert view.versions.to_dict("records") == [
        {"version": V3, "created": "2026-11-22 09:00 UTC", "metric": "roc_auc", "score": 0.82,
         "aliases": "champion, prod-eu"},
        {"version": V2, "created": "2026-11-21 09:00 UTC", "metric": "roc_auc", "score": 0.79,
         "aliases": "challenger, latest"},
        {"version": V1, "created": "2026-11-20 09:00 UTC", "metric": "roc_auc", "score": 0.7, "aliases": ""},
    ]  # fmt: skip
    assert view.comparison is not None
    rows = view.comparison.to_dict("records")
    assert rows[0] == {"metric": "roc_auc (primary)", f"champion {V3}": 0.82, f"challenger {V2}": 0.79,
                       "challenger − champion": -0.03}  # fmt: skip
    assert rows[1] == {
        "metric": "f1",
        f"champion {V3}": 0.6,
        f"challenger {V2}": "—",
        "challenger − champion": "—",
    }
    assert "challenger is not better than the champion" in view.notes
    assert f"models diff loans {V3} {V2}" in view.notes
    assert view.gate.startswith(f"**Gate: promoted** against champion `{V1}`")
    assert view.checks is not None
    assert view.checks[["check", "passed", "margin"]].to_dict("records") == [
        {"check": "roc_auc", "passed": "✓", "margin": 0.125},
        {"check": "SEX", "passed": "✓", "margin": 0.02},
    ]
    assert view.shadow == (
        f"Shadow agreement between champion `{V3}` and challenger `{V2}`: **91.5%** "
        "(183 of 200 compared rows)."
    )
    # Read-only: the tab only reads (the card, the listing, the history, the challenger's card), never posts.
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("GET", "/v1/models/loans"),
        ("GET", "/v1/models/loans/versions"),
        ("GET", "/v1/models/loans/history"),
        ("GET", f"/v1/models/loans/versions/{V2}/card"),
    ]


def test_the_view_shows_the_history_and_the_challengers_full_card(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    metrics = mixed_card.metrics.model_copy(update={"test": {"roc_auc": 0.79, "f1": 0.66, "brier": 0.2}})
    challenger = mixed_card.model_copy(update={"version": V2, "metrics": metrics})
    fake = fake_factory(
        mixed_card,
        versions={"loans": _listing()},
        history={"loans": _history(total=120)},
        version_cards={f"loans/{V2}": challenger},
    )
    view = handlers.versions_view(fake.client(), _session(), mixed_card)
    assert view.status == "ok"
    assert view.history is not None
    assert view.history.to_dict("records") == [
        {"time (UTC)": "2026-11-22 12:30:00", "alias": "challenger", "from → to": f"(none) → {V2}",
         "who": "trainer", "why": "gate: metric worse by 0.03"},
        {"time (UTC)": "2026-11-22 12:10:00", "alias": "champion", "from → to": f"{V1} → {V3}",
         "who": "trainer", "why": "gate"},
        {"time (UTC)": "2026-11-22 12:00:00", "alias": "latest", "from → to": f"(none) → {V1}",
         "who": "alice", "why": "publish"},
    ]  # fmt: skip
    assert view.history_note == "The 3 newest of 120 moves; `modelberth models history loans` lists them all."
    # The challenger's card, rendered as the Model tab renders the champion's.
    assert view.challenger is not None
    assert view.challenger_note == ""
    assert view.challenger.overview == handlers.card_view.overview(challenger)
    assert f"`{V2}`" in view.challenger.overview
    assert view.challenger.metrics.equals(handlers.card_view.metrics_table(challenger))
    assert view.challenger.leaderboard.equals(handlers.card_view.leaderboard_table(challenger))
    assert view.challenger.fingerprint == handlers.card_view.fingerprint(challenger)
    # With its card, every test metric is compared, not only the primary one.
    assert view.comparison is not None
    rows = {r["metric"]: r for r in view.comparison.to_dict("records")}
    assert rows["f1"][f"challenger {V2}"] == 0.66
    assert rows["f1"]["challenger − champion"] == pytest.approx(0.06)
    assert rows["brier"][f"champion {V3}"] == "—"
    assert "Its card is below" in view.notes


def test_a_removed_challenger_shows_in_the_history_and_no_card_is_read(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    history = _history()
    history["events"].insert(
        0, _move("challenger", V2, None, "promote", 40, detail=f"cleared: {V2} is the champion now")
    )
    history["total"] = 4
    listing = _listing(aliases={"champion": V3, "latest": V2})
    fake = fake_factory(mixed_card, versions={"loans": listing}, history={"loans": history})
    view = handlers.versions_view(fake.client(), _session(), mixed_card)
    assert view.history is not None
    assert view.history.iloc[0]["from → to"] == f"{V2} → (removed)"
    assert view.history.iloc[0]["why"] == f"promote: cleared: {V2} is the champion now"
    assert (view.challenger, view.challenger_note) == (None, "This model has no challenger.")
    assert not [r for r in fake.requests if r.url.path.endswith("/card")]


def test_a_lower_is_better_challenger_that_wins_is_called_better(
    fake_factory: Any, regression_card: ModelCard
) -> None:
    listing = {
        "name": "prices",
        "aliases": {"champion": V3, "challenger": V2},
        "versions": [
            {**_version(V2, 21, 2.9), "metric": "rmse"},
            {**_version(V3, 22, 3.1), "metric": "rmse"},
        ],
    }
    view = handlers.versions_view(
        fake_factory(regression_card, versions={"prices": listing}).client(), _session(), regression_card
    )
    assert view.comparison is not None
    assert view.comparison.iloc[0]["challenger − champion"] == pytest.approx(-0.2)
    assert "challenger is better than the champion (lower is better)" in view.notes


def test_without_the_versions_endpoint_the_champion_still_shows(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    view = handlers.versions_view(fake_factory(mixed_card).client(), _session(), mixed_card)
    assert view.status == "ok"
    assert view.message == "This inference does not list versions: only the version it serves is shown."
    assert view.versions is None
    assert view.comparison is not None
    assert list(view.comparison.columns) == ["metric", f"champion {V3}"]
    assert "does not list versions" in view.notes
    assert view.shadow == "Shadow agreement: not available (this inference does not report shadow traffic)."
    assert "carries no gate verdict" in view.gate
    assert view.checks is not None
    assert view.checks.empty


@pytest.mark.parametrize(
    ("shadow", "line"),
    [
        ({"enabled": False, "status": "off"}, "Shadow traffic: off for this model."),
        ({"enabled": True, "status": "active", "champion": V3, "challenger": V2, "compared_rows": 0,
          "agreeing_rows": 0, "agreement": None},
         f"Shadow traffic: on between champion `{V3}` and challenger `{V2}`; no request has been compared "
         "yet."),
        ({"enabled": True, "status": "incompatible", "reason": "the challenger needs column x"},
         "Shadow traffic: off, the challenger cannot score the champion's requests "
         "(the challenger needs column x)."),
    ],
)  # fmt: skip
def test_every_shadow_state_is_worded(
    shadow: Any, line: str, fake_factory: Any, mixed_card: ModelCard
) -> None:
    fake = fake_factory(mixed_card, versions={"loans": _listing(shadow=shadow)})
    assert handlers.versions_view(fake.client(), _session(), mixed_card).shadow == line


def test_no_challenger_and_a_moved_champion_are_said(fake_factory: Any, mixed_card: ModelCard) -> None:
    listing = _listing(aliases={"champion": V1, "latest": V3})
    view = handlers.versions_view(
        fake_factory(mixed_card, versions={"loans": listing}).client(), _session(), mixed_card
    )
    assert (
        view.message
        == f"The champion is now `{V1}`; inference still serves `{V3}` (it switches within seconds)."
    )
    assert view.notes == "- This model has no challenger."
    assert view.comparison is not None
    assert list(view.comparison.columns) == ["metric", f"champion {V3}"]


def test_an_expired_session_asks_to_log_in_again(fake_factory: Any, mixed_card: ModelCard) -> None:
    fake = fake_factory(mixed_card, versions={"loans": _listing()}, expired_tokens={"token-1"})
    view = handlers.versions_view(fake.client(), _session(), mixed_card)
    assert (view.status, view.message) == ("expired", EXPIRED_MESSAGE)
    assert view.session is not None
    assert view.session.expired
    assert handlers.versions_view(fake.client(), None, mixed_card).status == "expired"


def test_a_broken_listing_or_a_missing_model_is_an_error_not_a_crash(
    fake_factory: Any, mixed_card: ModelCard
) -> None:
    broken = fake_factory(mixed_card, versions={"loans": {"name": "loans", "versions": 3}})
    view = handlers.versions_view(broken.client(), _session(), mixed_card)
    assert view.status == "error"
    assert (
        view.message
        == "The versions of loans cannot be loaded: the versions of loans have an unexpected shape."
    )
    gone = fake_factory(versions={}).client()
    assert handlers.versions_view(gone, _session(), mixed_card).status == "error"
    assert handlers.versions_view(gone, _session(), None).message == "Choose a model first."


# --- the page -------------------------------------------------------------------------------------


def test_the_page_builds_with_a_read_only_versions_tab(fake_factory: Any, mixed_card: ModelCard) -> None:
    async def build() -> gr.Blocks:
        # Inside a running loop, as the app factory runs: gradio binds its locks to it instead of leaking one.
        return build_ui(fake_factory(mixed_card).client())

    ui = asyncio.run(build())
    tabs = [b for b in ui.blocks.values() if isinstance(b, gr.Tab) and b.id == "versions"]
    assert len(tabs) == 1
    inside: list[Any] = []
    stack = list(tabs[0].children)
    while stack:
        block = stack.pop()
        inside.append(block)
        stack.extend(getattr(block, "children", []))
    assert not [b for b in inside if isinstance(b, gr.Button | gr.Dropdown | gr.Textbox | gr.Number)]
    assert all(b.interactive is False for b in inside if isinstance(b, gr.Dataframe))
    # Selecting the tab runs the versions handler (the gate lets through only registered events).
    selects = [d for d in ui.fns.values() if d.fn is not None and d.fn.__name__ == "on_versions_tab"]
    assert len(selects) == 1
