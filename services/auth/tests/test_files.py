"""The once-per-interval re-check gate behind live reloads of the keyset and users files."""

from __future__ import annotations

import threading
import time

from modelberth_auth.files import RecheckGate


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
