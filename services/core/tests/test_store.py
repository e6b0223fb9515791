"""The model store: references, aliases, events, rollback, and what an old store reads as."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import string
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelberth_core import contract
from modelberth_core.store import (
    CHALLENGER,
    CHAMPION,
    LATEST,
    AliasConflict,
    AliasEvent,
    AliasNotFound,
    FilesystemStore,
    InvalidReference,
    ModelNotFound,
    NothingToRollBack,
    Reference,
    Resolved,
    StoreError,
    UnsupportedStore,
    VersionNotFound,
    champion_lineage,
    default_actor,
    default_location,
    open_store,
)
from modelberth_core.store import filesystem as fs

DIGEST = "sha256:" + "ab" * 32
Publish = Callable[..., Resolved]


# --- references -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("iris", Reference("iris", alias="champion"), "iris@champion"),
        ("iris@challenger", Reference("iris", alias="challenger"), "iris@challenger"),
        ("bank-marketing@canary-2", Reference("bank-marketing", alias="canary-2"), "bank-marketing@canary-2"),
        ("iris:20261122T144500Z", Reference("iris", version="20261122T144500Z"), "iris:20261122T144500Z"),
        ("iris:20261122T144500Z-3", Reference("iris", version="20261122T144500Z-3"), None),
        (f"iris@{DIGEST}", Reference("iris", digest=DIGEST), f"iris@{DIGEST}"),
        ("  iris@latest\n", Reference("iris", alias="latest"), "iris@latest"),
        ("a" * 63 + "@" + "b" * 63, Reference("a" * 63, alias="b" * 63), "a" * 63 + "@" + "b" * 63),
    ],
)
def test_reference_forms_parse_and_print_canonically(
    text: str, expected: Reference, canonical: str | None
) -> None:
    ref = Reference.parse(text)
    assert ref == expected
    assert str(ref) == (canonical or text)
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Iris", "invalid model name"),
        ("iris@", "invalid alias"),
        ("iris:", "invalid version"),
        ("iris@Champion", "invalid alias"),
        ("iris@1st", "invalid alias"),
        ("iris@a_b", "invalid alias"),
        ("iris@" + "a" * 64, "invalid alias"),
        ("iris@20261122T144500Z", "NAME:VERSION"),
        ("iris:latest", "invalid version"),
        ("iris@sha256:abc", "invalid digest"),
        ("iris@sha256:" + "AB" * 32, "invalid digest"),
        ("iris@x@y", "invalid alias"),
        ("@champion", "invalid model name"),
        (":20261122T144500Z", "invalid model name"),
        ("ir is", "invalid model name"),
        ("iris/../x", "invalid model name"),
    ],
)
def test_malformed_references_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InvalidReference, match="NAME@ALIAS") as info:
        Reference.parse(text)
    assert why in str(info.value)


def test_every_prefix_and_mutation_of_a_reference_parses_or_is_refused_cleanly() -> None:
    """No input makes the parser raise anything but InvalidReference, and what parses prints back the same."""
    samples = ["iris@challenger", "iris:20261122T144500Z-2", f"iris@{DIGEST}"]
    alphabet = string.ascii_letters + string.digits + "@:-_./ \x00é\n"
    texts = {s[:i] for s in samples for i in range(len(s) + 1)}
    texts |= {s[:i] + c + s[i + 1 :] for s in samples for i in range(len(s)) for c in alphabet[::7]}
    for text in texts:
        try:
            ref = Reference.parse(text)
        except InvalidReference:
            continue
        assert Reference.parse(str(ref)) == ref


def test_long_input_is_not_repeated_whole_in_the_error() -> None:
    with pytest.raises(InvalidReference) as info:
        Reference.parse("X" * 10_000)
    assert len(str(info.value)) < 400


# --- opening a store ------------------------------------------------------------------------------------


def test_locations_pick_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(tmp_path), FilesystemStore)
    store = open_store(f"file://{tmp_path}")
    assert isinstance(store, FilesystemStore)
    assert store.location == str(tmp_path)
    registry = open_store("oci://127.0.0.1:5000/acme/models", cache_dir=tmp_path / "cache")
    assert registry.location == "oci://127.0.0.1:5000/acme/models"
    assert type(registry).__name__ == "RegistryStore"  # opening asks the registry nothing yet
    with pytest.raises(UnsupportedStore, match="unknown store scheme 's3'"):
        open_store("s3://bucket/models")
    with pytest.raises(UnsupportedStore, match="empty"):
        open_store(" ")
    monkeypatch.delenv("MODELBERTH_STORE", raising=False)
    assert default_location() == "artifacts/models"
    monkeypatch.setenv("MODELBERTH_STORE", "/srv/models")
    assert default_location() == "/srv/models"
    assert default_location("elsewhere") == "elsewhere"


# --- publishing and aliases -----------------------------------------------------------------------------


def test_publish_moves_latest_but_never_what_is_served(tmp_path: Path, publish_version: Publish) -> None:
    store = FilesystemStore(tmp_path)
    first = publish_version(store)
    second = publish_version(store, score=0.8)
    assert store.aliases("iris") == {LATEST: second.version}  # champion is the gate's to move
    assert [v.version for v in store.versions("iris")] == [first.version, second.version]
    assert [v.score for v in store.versions("iris")] == [0.9, 0.8]
    events = store.history("iris")
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in events] == [
        (LATEST, None, first.version, "publish"),
        (LATEST, first.version, second.version, "publish"),
    ]
    with pytest.raises(AliasNotFound, match="iris has no alias 'champion' \\(aliases: latest\\)"):
        store.resolve("iris")
    assert events[0].actor == default_actor()
    assert events[0].at.tzinfo is not None
    assert store.fetch("iris", first.version) == tmp_path / "iris" / first.version


def test_a_refused_first_version_leaves_the_model_without_champion(
    tmp_path: Path, publish_version: Publish
) -> None:
    store = FilesystemStore(tmp_path)
    only = publish_version(store)
    store.move_alias("iris", CHALLENGER, only.version, reason="gate", detail="leak warning")
    assert store.aliases("iris") == {CHALLENGER: only.version, LATEST: only.version}
    with pytest.raises(AliasNotFound, match="iris has no alias 'champion' \\(aliases: challenger, latest\\)"):
        store.resolve("iris")


def _legacy_store(root: Path, publish: Publish) -> tuple[FilesystemStore, str]:
    """A store as the code before aliases wrote it: version directories and a latest pointer, no history."""
    version = publish(FilesystemStore(root)).version
    (root / "iris" / fs.HISTORY_FILE).unlink()
    (root / "iris" / fs.LOCK_FILE).unlink()
    return FilesystemStore(root), version


def test_an_old_store_reads_latest_as_champion_with_one_note(
    tmp_path: Path, publish_version: Publish, caplog: pytest.LogCaptureFixture
) -> None:
    store, old = _legacy_store(tmp_path, publish_version)
    assert sorted(p.name for p in (tmp_path / "iris").iterdir()) == [old, LATEST]
    with caplog.at_level(logging.INFO, logger="modelberth.store"):
        assert store.resolve("iris").version == old
        assert store.resolve("iris@champion").version == old
    notes = [r for r in caplog.records if "store written before aliases" in r.getMessage()]
    assert len(notes) == 1
    assert store.history("iris") == []
    with pytest.raises(NothingToRollBack):
        store.rollback("iris")


def test_publishing_into_an_old_store_keeps_serving_its_version(
    tmp_path: Path, publish_version: Publish
) -> None:
    store, old = _legacy_store(tmp_path, publish_version)
    new = publish_version(store)
    assert store.aliases("iris") == {CHAMPION: old, LATEST: new.version}
    events = store.history("iris")
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in events] == [
        (CHAMPION, None, old, "promote"),
        (LATEST, old, new.version, "publish"),
    ]


def test_versions_are_immutable(tmp_path: Path, publish_version: Publish) -> None:
    store = FilesystemStore(tmp_path)
    first = publish_version(store)
    card = store.card("iris", first.version)
    before = (tmp_path / "iris" / fs.HISTORY_FILE).read_bytes()
    with store.staging("iris") as staged:
        (staged / contract.MODEL_FILE).write_bytes(b"other")
        other = card.model_copy(update={"model_sha256": contract.sha256_file(staged / contract.MODEL_FILE)})
        with pytest.raises(StoreError, match="versions are immutable"):
            store.publish(staged, other)
    assert (tmp_path / "iris" / fs.HISTORY_FILE).read_bytes() == before
    assert store.fetch("iris", first.version).joinpath(contract.MODEL_FILE).read_bytes() != b"other"
    assert [p.name for p in (tmp_path / "iris").iterdir() if p.name.startswith(".staging")] == []


def test_pointers_and_history_are_readable_by_the_serving_user(
    tmp_path: Path, publish_version: Publish
) -> None:
    store = FilesystemStore(tmp_path)
    version = publish_version(store).version
    store.move_alias("iris", CHAMPION, version, reason="promote")
    for name in (LATEST, CHAMPION, fs.HISTORY_FILE):
        assert stat.S_IMODE((tmp_path / "iris" / name).stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "iris" / version).stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "nope"}, ModelNotFound, "model 'nope' not found in .* \\(models: iris\\)"),
        ({"name": "Nope"}, InvalidReference, "invalid model name"),
        ({"version": "20990101T000000Z"}, VersionNotFound, "iris has no version '20990101T000000Z'"),
        ({"version": "../x"}, InvalidReference, "invalid version"),
        ({"alias": "Bad_Alias"}, InvalidReference, "invalid alias"),
        ({"alias": LATEST}, InvalidReference, "latest is moved only by publishing"),
        ({"reason": "publish"}, InvalidReference, "reason 'publish' moves only latest"),
        ({"expected": "20990101T000000Z"}, AliasConflict, "moved meanwhile"),
        ({"expected": None}, AliasConflict, "iris@champion names .* now, not nothing"),
    ],
)
def test_refused_moves_change_nothing(
    tmp_path: Path, publish_version: Publish, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    store = FilesystemStore(tmp_path)
    first = publish_version(store).version
    store.move_alias("iris", CHAMPION, first, reason="gate")
    second = publish_version(store).version
    before = {p.name: p.read_bytes() for p in (tmp_path / "iris").iterdir() if p.is_file()}
    call: dict[str, Any] = {"name": "iris", "alias": CHAMPION, "version": second, "reason": "promote"}
    call.update(kwargs)
    with pytest.raises(error, match=message):
        store.move_alias(
            call.pop("name"), call.pop("alias"), call.pop("version"), reason=call.pop("reason"), **call
        )
    after = {p.name: p.read_bytes() for p in (tmp_path / "iris").iterdir() if p.is_file()}
    assert after == before


def test_a_conditional_move_happens_when_the_alias_is_as_expected(
    tmp_path: Path, publish_version: Publish
) -> None:
    store = FilesystemStore(tmp_path)
    first = publish_version(store).version
    store.move_alias("iris", CHALLENGER, first, reason="gate", expected=None)
    second = publish_version(store).version
    event = store.move_alias("iris", CHALLENGER, second, reason="gate", expected=first, actor="ci@example")
    assert (event.from_version, event.to_version, event.actor) == (first, second, "ci@example")


def test_resolve_names_what_is_missing(tmp_path: Path, publish_version: Publish) -> None:
    store = FilesystemStore(tmp_path)
    version = publish_version(store).version
    assert store.resolve(f"iris:{version}") == Resolved("iris", version)
    assert store.resolve(Reference("iris", alias=LATEST)) == Resolved("iris", version)
    with pytest.raises(VersionNotFound, match=f"1 versions, newest: {version}"):
        store.resolve("iris:20990101T000000Z")
    with pytest.raises(AliasNotFound, match="iris has no alias 'canary' \\(aliases: latest\\)"):
        store.resolve("iris@canary")
    with pytest.raises(InvalidReference, match="digest references need a registry store"):
        store.resolve(f"iris@{DIGEST}")
    with pytest.raises(ModelNotFound, match="models: iris"):
        store.resolve("wine")
    (tmp_path / "iris" / "canary").write_text("garbage\n")
    with pytest.raises(StoreError, match="holds no version id"):
        store.resolve("iris@canary")


def test_version_one_cards_read_with_selected(tmp_path: Path, publish_version: Publish) -> None:
    store = FilesystemStore(tmp_path)
    version = publish_version(store).version
    card_path = tmp_path / "iris" / version / contract.CARD_FILE
    golden = json.loads((Path(__file__).parent / "golden" / "model-v1.json").read_text())
    raw = json.loads(card_path.read_text())
    raw["schema_version"] = 1
    raw["champion"] = raw.pop("selected")
    card_path.write_text(json.dumps(raw))
    card = store.card("iris", version)
    assert card.schema_version == 1
    assert card.selected.candidate == golden["champion"]["candidate"]
    assert "champion" not in card.model_dump()


# --- history on a bad day -------------------------------------------------------------------------------


def test_an_unfinished_or_damaged_history_line_is_skipped(tmp_path: Path, publish_version: Publish) -> None:
    store = FilesystemStore(tmp_path)
    publish_version(store)
    publish_version(store)
    path = tmp_path / "iris" / fs.HISTORY_FILE
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(lines[0] + b"\n{not json\n\xff\xfe\n" + lines[1] + b"\n" + lines[1][:20])
    assert [e.to_version for e in store.history("iris")] == [
        json.loads(lines[0])["to_version"],
        json.loads(lines[1])["to_version"],
    ]


def test_a_full_disk_records_nothing_and_moves_nothing(
    tmp_path: Path, publish_version: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStore(tmp_path)
    first = publish_version(store).version
    store.move_alias("iris", CHAMPION, first, reason="gate")
    second = publish_version(store).version
    base = tmp_path / "iris"
    before = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()}
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        if len(data) > 60:  # the history line, not the short pointer
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(fs.os, "write", half_then_full)
    with pytest.raises(StoreError, match=r"the disk is full.*nothing was moved"):
        store.move_alias("iris", CHAMPION, second, reason="promote")
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()}
    assert after == before
    assert store.move_alias("iris", CHAMPION, second, reason="promote").from_version == first


# --- rollback -------------------------------------------------------------------------------------------


def test_rollback_walks_back_through_the_champions(tmp_path: Path, publish_version: Publish) -> None:
    store = FilesystemStore(tmp_path)
    a = publish_version(store).version
    store.move_alias("iris", CHAMPION, a, reason="gate")
    b = publish_version(store).version
    store.move_alias("iris", CHALLENGER, b, reason="gate")
    store.move_alias("iris", CHAMPION, b, reason="promote")
    c = publish_version(store).version
    store.move_alias("iris", CHAMPION, c, reason="gate")
    assert store.lineage("iris") == [a, b, c]

    first = store.rollback("iris", actor="alice")
    assert (first.from_version, first.to_version, first.reason, first.actor) == (c, b, "rollback", "alice")
    assert store.rollback("iris").to_version == a
    before = (tmp_path / "iris" / fs.HISTORY_FILE).read_bytes()
    with pytest.raises(NothingToRollBack, match=f"iris@champion \\({a}\\) has no earlier champion"):
        store.rollback("iris")
    assert (tmp_path / "iris" / fs.HISTORY_FILE).read_bytes() == before
    assert store.champion("iris") == a
    store.move_alias("iris", CHAMPION, c, reason="promote")
    assert store.rollback("iris").to_version == a  # c replaced a this time


def test_promoting_the_challenger_removes_the_challenger_alias(
    tmp_path: Path, publish_version: Publish
) -> None:
    store = FilesystemStore(tmp_path)
    a = publish_version(store).version
    store.move_alias("iris", CHAMPION, a, reason="gate")
    b = publish_version(store).version
    store.move_alias("iris", CHALLENGER, b, reason="gate")
    store.move_alias("iris", CHAMPION, b, reason="promote", actor="ada")
    assert store.aliases("iris") == {CHAMPION: b, LATEST: b}
    with pytest.raises(AliasNotFound, match="no alias 'challenger'"):
        store.resolve("iris@challenger")
    moved, cleared = store.history("iris")[-2:]
    assert (moved.alias, moved.to_version) == (CHAMPION, b)
    assert (cleared.alias, cleared.from_version, cleared.to_version) == (CHALLENGER, b, None)
    assert (cleared.reason, cleared.actor) == ("promote", "ada")
    # A fresh reader (another process) sees the same; the lineage ignores the removal.
    assert FilesystemStore(tmp_path).aliases("iris") == {CHAMPION: b, LATEST: b}
    assert store.lineage("iris") == [a, b]
    # Promoting another version keeps a challenger that differs from the new champion.
    c = publish_version(store).version
    store.move_alias("iris", CHALLENGER, c, reason="gate")
    store.rollback("iris")
    assert store.aliases("iris") == {CHALLENGER: c, CHAMPION: a, LATEST: c}
    # A challenger can be set again after its removal.
    store.move_alias("iris", CHALLENGER, b, reason="gate", expected=c)
    assert store.resolve("iris@challenger").version == b


def _event(alias: str, to: str, reason: str, frm: str | None = None) -> AliasEvent:
    return AliasEvent(
        model="iris",
        alias=alias,
        from_version=frm,
        to_version=to,
        actor="t",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        reason=reason,  # type: ignore[arg-type]
    )


V = [f"2026010{i}T000000Z" for i in range(1, 8)]


@pytest.mark.parametrize(
    ("events", "current", "stack"),
    [
        ([], None, []),
        ([], V[0], [V[0]]),
        ([_event(LATEST, V[0], "publish"), _event(CHALLENGER, V[1], "gate")], None, []),
        ([_event(CHAMPION, V[0], "gate"), _event(CHAMPION, V[1], "promote")], V[1], [V[0], V[1]]),
        # re-promoting the serving version pushes nothing
        ([_event(CHAMPION, V[0], "gate"), _event(CHAMPION, V[0], "promote")], V[0], [V[0]]),
        # a rollback pops back to the version it moved to
        (
            [
                _event(CHAMPION, V[0], "gate"),
                _event(CHAMPION, V[1], "gate"),
                _event(CHAMPION, V[2], "promote"),
                _event(CHAMPION, V[1], "rollback"),
            ],
            V[1],
            [V[0], V[1]],
        ),
        # a rollback to a version the stack never held (history older than the store) restarts it
        ([_event(CHAMPION, V[2], "gate"), _event(CHAMPION, V[5], "rollback")], V[5], [V[5]]),
        # the pointer names a version the history missed: it ends the stack
        ([_event(CHAMPION, V[0], "gate")], V[3], [V[0], V[3]]),
    ],
)
def test_champion_lineage_replays_the_history_as_a_stack(
    events: list[AliasEvent], current: str | None, stack: list[str]
) -> None:
    assert champion_lineage(events, current) == stack


def test_a_damaged_pointer_is_reported_and_repaired_by_moving_it(
    tmp_path: Path, publish_version: Publish
) -> None:
    store = FilesystemStore(tmp_path)
    version = publish_version(store).version
    (tmp_path / "iris" / CHAMPION).write_bytes(b"\x00\xff garbage")
    (tmp_path / "iris" / LATEST).write_text("garbage\n")
    with pytest.raises(StoreError, match="champion"):
        store.resolve("iris")
    assert store.aliases("iris") == {LATEST: version}  # the rest still lists; latest falls back
    event = store.move_alias("iris", CHAMPION, version, reason="promote")
    assert event.from_version is None
    assert store.resolve("iris").version == version


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "../etc", "alias": "champion"},
        {"name": "iris", "alias": "../../etc/passwd"},
        {"name": "iris", "version": "../x"},
        {"name": "iris", "digest": "sha256:zz"},
        {"name": "iris"},
        {"name": "iris", "alias": "champion", "version": "20260101T000000Z"},
    ],
)
def test_a_reference_is_valid_however_it_is_made(kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidReference):
        Reference(**kwargs)


def test_an_actor_too_long_to_record_is_refused_cleanly(tmp_path: Path, publish_version: Publish) -> None:
    store = FilesystemStore(tmp_path)
    version = publish_version(store).version
    with pytest.raises(InvalidReference, match="cannot record the move: actor"):
        store.move_alias("iris", CHAMPION, version, reason="promote", actor="x" * 300)
    assert store.aliases("iris") == {LATEST: version}


def test_a_read_only_store_is_read_and_refuses_writes_cleanly(
    tmp_path: Path, publish_version: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inference mounts the store read-only: reading works; a write says why it cannot (EROFS injected:
    the tests run as root, whom file modes do not stop)."""
    store = FilesystemStore(tmp_path / "models")
    version = publish_version(store).version
    store.move_alias("iris", CHAMPION, version, reason="gate")
    before = _files(tmp_path)
    real_open, real_mkdtemp = os.open, fs.tempfile.mkdtemp

    def read_only_open(path: Any, flags: int, *args: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    def read_only_mkdtemp(*args: Any, **kwargs: Any) -> str:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fs.os, "open", read_only_open)
    monkeypatch.setattr(fs.tempfile, "mkdtemp", read_only_mkdtemp)
    assert store.resolve("iris").version == version
    assert store.history("iris")[-1].to_version == version
    with pytest.raises(StoreError, match=r"Read-only file system\); is the store mounted read-only"):
        store.move_alias("iris", CHALLENGER, version, reason="gate")
    with pytest.raises(StoreError, match="read-only"), store.staging("iris"):
        pass
    monkeypatch.setattr(fs.tempfile, "mkdtemp", real_mkdtemp)
    assert _files(tmp_path) == before


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
