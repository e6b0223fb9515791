"""Live reloads of the keyset and users files: the once-per-interval re-check gate and the one
"read the file again when its stamp changes" helper both files use."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelberth_auth.files import RecheckGate, WatchedFile
from modelberth_auth.keys import KeyRing, KeysetError, create_keyset
from modelberth_auth.principals import PrincipalsFile, PrincipalStore, UserRecord, write_document


def test_one_look_per_interval() -> None:
    gate = RecheckGate(interval_seconds=0.3)
    looks = []
    for _ in range(5):
        with gate.due() as due:
            looks.append(due)
    assert looks == [True, False, False, False, False]
    time.sleep(0.35)
    with gate.due() as due:
        assert due


def test_zero_interval_looks_every_time() -> None:
    gate = RecheckGate(interval_seconds=0.0)
    for _ in range(3):
        with gate.due() as due:
            assert due


def test_of_many_concurrent_callers_exactly_one_looks() -> None:
    gate = RecheckGate(interval_seconds=60.0)
    looked: list[bool] = []
    start = threading.Barrier(8)

    def caller() -> None:
        start.wait()
        with gate.due() as due:
            if due:
                time.sleep(0.05)  # a slow reload: the others arrive while it runs
            looked.append(due)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(looked) == [False] * 7 + [True]


class Unusable(Exception):
    pass


class Counting:
    """A reader that counts its reads and refuses files starting with ``!`` (and absent ones)."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self, path: Path) -> str:
        self.reads += 1
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise Unusable("absent") from exc
        if text.startswith("!"):
            raise Unusable("broken")
        return text


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    # Same size, same second: the stamp still differs (mtime in ns, and a tick forward to be sure).
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_a_file_is_read_again_only_when_its_stamp_changes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    read = Counting()
    watched = WatchedFile(path, read, unusable=Unusable, what="test file", interval_seconds=0.0)
    assert watched.current() == "one"
    for _ in range(5):
        assert watched.current() == "one"
    assert read.reads == 1
    _rewrite(path, "two")
    assert watched.current() == "two"
    assert read.reads == 2


def test_a_broken_change_keeps_the_last_good_value_and_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("good")
    read = Counting()
    watched = WatchedFile(path, read, unusable=Unusable, what="test file", interval_seconds=0.0)
    watched.load()
    for broken in ("!half written", None):  # a broken edit, then the file deleted
        if broken is None:
            path.unlink()
        else:
            _rewrite(path, broken)
        reads = read.reads
        for _ in range(5):
            assert watched.current() == "good"
        assert read.reads == reads + 1  # not read again (nor logged again) until it changes
    path.write_text("fixed")
    assert watched.current() == "fixed"
    _rewrite(path, "!again")
    with pytest.raises(Unusable):  # an explicit load says why
        watched.load()
    assert watched.value == "fixed"


def test_a_file_replaced_by_rename_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    watched = WatchedFile(path, Counting(), unusable=Unusable, what="test file", interval_seconds=0.0)
    watched.load()
    tmp = tmp_path / "f.tmp"
    tmp.write_text("new")
    os.replace(tmp, path)  # how the CLI writes: a new inode
    assert watched.current() == "new"


def test_the_keyring_keeps_its_keys_when_the_file_goes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert create_keyset(path)
    ring = KeyRing(path, interval_seconds=0.0)
    with pytest.raises(KeysetError):
        KeyRing(tmp_path / "absent.json").load()
    ring.load()
    kid = ring.signing_key().kid
    path.unlink()
    assert ring.signing_key().kid == kid
    assert ring.count == 1
    assert create_keyset(path)  # a new keyset appears: it is used
    assert ring.signing_key().kid != kid


@pytest.mark.parametrize("required", [True, False])
def test_a_deleted_users_file_means_no_users_unless_it_is_required(tmp_path: Path, required: bool) -> None:
    path = tmp_path / "users.yaml"
    record: Any = UserRecord(password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
    write_document(path, PrincipalsFile(users={"ann": record}))
    store = PrincipalStore(path, interval_seconds=0.0, require_file=required)
    store.load()
    assert store.user("ann") is not None
    path.unlink()
    assert (store.user("ann") is not None) is required
    assert store.loaded
