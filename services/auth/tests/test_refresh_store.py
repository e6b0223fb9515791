"""The refresh-token store on its own: rotation, exact reuse detection, revocation and bounded size."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from modelberth_auth.refresh import FileRefreshStore, RefreshError

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def reason(store: FileRefreshStore, token: str) -> str:
    with pytest.raises(RefreshError) as caught:
        run(store.rotate(token))
    return caught.value.reason


def test_rotate_reuse_revoke(tmp_path: Path) -> None:
    store = FileRefreshStore(tmp_path / "r.json", ttl_seconds=3600)
    first = run(store.issue("alice", "predict"))
    record, second = run(store.rotate(first))
    assert (record.subject, record.scope) == ("alice", "predict")
    assert reason(store, first) == "reused"
    assert reason(store, second) == "revoked"
    for garbage in ("nope", "", ".", "a.b.c", first.split(".")[0] + "x." + first.split(".")[1]):
        assert reason(store, garbage) == "invalid"
    third = run(store.issue("alice", "predict"))
    assert run(store.revoke(third))
    assert not run(store.revoke("nope"))


def test_reuse_of_any_earlier_token_revokes_the_family_every_time(tmp_path: Path) -> None:
    # Issue 13, point 8: 100 quick rotations (many within one second), then each earlier token replayed
    # on its own copy of the store. Before, only the 20 newest rotated tokens were remembered: replaying
    # an older one was "invalid" and the thief's live token kept working.
    path = tmp_path / "r.json"
    store = FileRefreshStore(path, ttl_seconds=3600)
    tokens = [run(store.issue("alice", "predict"))]
    for _ in range(100):
        tokens.append(run(store.rotate(tokens[-1]))[1])
    live = tokens[-1]
    for i, earlier in enumerate(tokens[:-1]):
        copy = tmp_path / f"copy-{i}.json"
        shutil.copy(path, copy)
        replica = FileRefreshStore(copy, ttl_seconds=3600)
        replica.load()
        assert run(replica.lookup(live)) is not None
        assert reason(replica, earlier) == "reused", i
        assert reason(replica, live) == "revoked", i
        assert run(replica.lookup(live)) is None
    # And on the original, one replay after another: the first revokes, the rest find it revoked.
    assert reason(store, tokens[50]) == "reused"
    assert {reason(store, t) for t in tokens} == {"revoked"}


def test_the_store_keeps_one_record_per_family_however_often_it_rotates(tmp_path: Path) -> None:
    store = FileRefreshStore(tmp_path / "r.json", ttl_seconds=3600)
    token = run(store.issue("alice", "predict"))
    for _ in range(60):
        _, token = run(store.rotate(token))
    families = json.loads((tmp_path / "r.json").read_text())["families"]
    assert len(families) == 1
    assert next(iter(families.values()))["rotations"] == 60


def test_lookup_finds_only_the_live_token(tmp_path: Path) -> None:
    store = FileRefreshStore(tmp_path / "r.json", ttl_seconds=3600)
    first = run(store.issue("alice", "predict models:read"))
    assert run(store.lookup(first)) is not None
    _, second = run(store.rotate(first))
    assert run(store.lookup(first)) is None  # a rotated token is no candidate for anything but rotate()
    live = run(store.lookup(second))
    assert live is not None
    assert live.scope == "predict models:read"


def test_login_revoke_loop_is_bounded(tmp_path: Path) -> None:
    store = FileRefreshStore(tmp_path / "r.json", ttl_seconds=3600, max_per_subject=3)
    for _ in range(10):
        assert run(store.revoke(run(store.issue("alice", "predict"))))
    survivor = run(store.issue("bob", "predict"))
    stored = json.loads((tmp_path / "r.json").read_text())["families"]
    assert len(stored) == 4  # three of alice's families, one of bob's
    run(store.rotate(survivor))


@pytest.mark.parametrize(
    "content",
    ["{broken", '{"version": 1, "tokens": {}}', '{"version": 2, "families": {"x": {"subject": 1}}}'],
)
def test_unreadable_or_older_store_starts_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    store = FileRefreshStore(path, ttl_seconds=60)
    store.load()
    assert reason(store, "anything.at-all") == "invalid"
    run(store.issue("alice", "predict"))
    assert json.loads(path.read_text())["version"] == 2


def test_unwritable_store_keeps_tokens_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    store = FileRefreshStore(blocker / "r.json", ttl_seconds=60)
    token = run(store.issue("alice", "predict"))
    assert not store.persistent
    record, _ = run(store.rotate(token))
    assert record.subject == "alice"


def test_the_oldest_family_goes_first_even_within_one_second(tmp_path: Path) -> None:
    for _ in range(20):  # ties of the one-second issued_at must not decide which session survives
        store = FileRefreshStore(tmp_path / "r.json", ttl_seconds=3600, max_per_subject=3)
        tokens = [run(store.issue("alice", "predict")) for _ in range(4)]
        assert reason(store, tokens[0]) == "invalid"
        assert all(run(store.lookup(t)) is not None for t in tokens[1:])
        (tmp_path / "r.json").unlink()


def test_a_refresh_asking_for_more_than_its_grant_changes_nothing(tmp_path: Path) -> None:
    store = FileRefreshStore(tmp_path / "r.json", ttl_seconds=3600)
    token = run(store.issue("alice", "predict models:read"))
    for wanted in (["models:admin"], ["predict", "models:admin"], ["models"]):
        with pytest.raises(RefreshError) as caught:
            run(store.rotate(token, wanted))
        assert caught.value.reason == "scope"
        assert run(store.lookup(token)) is not None
    _, successor = run(store.rotate(token, ["predict"]))
    assert run(store.lookup(successor)) is not None
    with pytest.raises(RefreshError) as caught:
        run(store.rotate(token, ["models:admin"]))
    assert caught.value.reason == "reused"  # reuse is detected before any scope question
