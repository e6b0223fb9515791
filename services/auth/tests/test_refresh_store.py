"""The refresh-token store on its own: rotation, reuse detection, revocation and bounded size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelberth_auth.tokens import MAX_ROTATED_KEPT, RefreshError, RefreshStore


def test_rotate_reuse_revoke(tmp_path: Path) -> None:
    store = RefreshStore(tmp_path / "r.json", ttl_seconds=3600)
    first = store.issue("alice", "predict")
    record, second = store.rotate(first)
    assert (record.subject, record.scope) == ("alice", "predict")
    with pytest.raises(RefreshError) as reused:
        store.rotate(first)
    assert reused.value.reason == "reused"
    with pytest.raises(RefreshError) as revoked:
        store.rotate(second)
    assert revoked.value.reason == "revoked"
    with pytest.raises(RefreshError) as unknown:
        store.rotate("nope")
    assert unknown.value.reason == "invalid"
    third = store.issue("alice", "predict")
    assert store.revoke(third)
    assert not store.revoke("nope")


def test_rotated_history_is_bounded(tmp_path: Path) -> None:
    store = RefreshStore(tmp_path / "r.json", ttl_seconds=3600)
    token = store.issue("alice", "predict")
    for _ in range(MAX_ROTATED_KEPT + 15):
        _, token = store.rotate(token)
    stored = json.loads((tmp_path / "r.json").read_text())["tokens"]
    assert len(stored) == MAX_ROTATED_KEPT + 1


def test_login_revoke_loop_is_bounded(tmp_path: Path) -> None:
    store = RefreshStore(tmp_path / "r.json", ttl_seconds=3600, max_per_subject=3)
    for _ in range(10):
        assert store.revoke(store.issue("alice", "predict"))
    survivor = store.issue("bob", "predict")
    stored = json.loads((tmp_path / "r.json").read_text())["tokens"]
    assert len(stored) == 4  # three of alice's families, one of bob's
    store.rotate(survivor)


def test_unreadable_store_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("{broken")
    store = RefreshStore(path, ttl_seconds=60)
    store.load()
    with pytest.raises(RefreshError):
        store.rotate("anything")
    store.issue("alice", "predict")
    assert json.loads(path.read_text())["version"] == 1


def test_unwritable_store_keeps_tokens_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    store = RefreshStore(blocker / "r.json", ttl_seconds=60)
    token = store.issue("alice", "predict")
    assert not store.persistent
    record, _ = store.rotate(token)
    assert record.subject == "alice"
