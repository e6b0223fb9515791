"""Parallel processes moving aliases of one model: no event lost, no pointer ever torn."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from modelberth_core.store import CHALLENGER, CHAMPION, FilesystemStore, Resolved

WRITERS = 8
MOVES = 25

WRITER = textwrap.dedent(
    """
    import random, sys
    from modelberth_core.store import FilesystemStore
    root, worker, versions = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    store = FilesystemStore(root)
    rng = random.Random(worker)
    for move in range(int(sys.argv[4])):
        alias = ("champion", "challenger", "canary")[move % 3]
        store.move_alias("iris", alias, rng.choice(versions), reason="promote",
                         actor=f"w{worker}", detail=f"{worker}-{move}")
    """
)

READER = textwrap.dedent(
    """
    import pathlib, re, sys
    from modelberth_core.store import FilesystemStore
    root, versions = pathlib.Path(sys.argv[1]), set(sys.argv[2].split(","))
    store = FilesystemStore(root)
    bad, reads = [], 0
    while not (root / "stop").exists():
        for alias in ("champion", "challenger", "canary"):
            try:
                text = (root / "iris" / alias).read_text()
            except FileNotFoundError:
                continue
            reads += 1
            if text.strip() not in versions or not text.endswith("\\n"):
                bad.append(repr(text))
        if store.resolve("iris").version not in versions:
            bad.append("resolve")
        store.history("iris")  # never raises on a line being appended
    print(reads, len(bad), bad[:5])
    sys.exit(1 if bad else 0)
    """
)


@pytest.mark.integration
def test_parallel_alias_moves_keep_every_event_and_whole_pointers(
    tmp_path: Path, publish_version: Callable[..., Resolved]
) -> None:
    store = FilesystemStore(tmp_path)
    versions = [publish_version(store).version for _ in range(4)]
    store.move_alias("iris", CHAMPION, versions[0], reason="gate")
    setup_events = len(store.history("iris"))
    joined = ",".join(versions)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path), joined], stdout=subprocess.PIPE, text=True
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(i), joined, str(MOVES)])
        for i in range(WRITERS)
    ]
    codes = [w.wait(timeout=120) for w in writers]
    (tmp_path / "stop").touch()
    out, _ = reader.communicate(timeout=60)
    assert codes == [0] * WRITERS
    assert reader.returncode == 0, out
    assert int(out.split()[0]) > 0, "the reader never saw a pointer"

    events = store.history("iris")[setup_events:]
    # A champion moved onto the challenger's version also removed the challenger (one more event).
    moves = [e for e in events if e.to_version is not None]
    removals = [e for e in events if e.to_version is None]
    assert len(moves) == WRITERS * MOVES
    assert {e.detail for e in moves} == {f"{w}-{m}" for w in range(WRITERS) for m in range(MOVES)}
    assert {e.alias for e in removals} <= {CHALLENGER}
    for removal in removals:  # recorded right after the champion move that caused it
        before = events[events.index(removal) - 1]
        assert (before.alias, before.to_version) == (CHAMPION, removal.from_version)
    for alias in (CHAMPION, CHALLENGER, "canary"):
        chain = [e for e in events if e.alias == alias]
        # each move saw the previous one: from_version is what the last recorded move set
        for before, after in itertools.pairwise(chain):
            assert after.from_version == before.to_version
        assert store.aliases("iris").get(alias) == chain[-1].to_version
    leftovers = [p.name for p in (tmp_path / "iris").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
