"""The record of which browser uploaded which file: exact paths, its own ids only, bounded, forgetting."""

from __future__ import annotations

from modelberth_ui.uploads import UploadRegistry


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_browser_owns_exactly_the_paths_it_uploaded() -> None:
    registry = UploadRegistry(3600)
    alice, bob = registry.new_browser(), registry.new_browser()
    assert alice != bob
    assert len(alice) >= 43  # 256 bits, URL-safe base64
    registry.record(alice, ["/tmp/gradio/abc/flowers.csv"])
    assert registry.owns(alice, "/tmp/gradio/abc/flowers.csv")
    for other in ("/tmp/gradio/abc/../abc/flowers.csv", "/tmp/gradio/abc/flowers.csv/", "flowers.csv"):
        assert not registry.owns(alice, other)
    assert not registry.owns(bob, "/tmp/gradio/abc/flowers.csv")
    assert not registry.owns(None, "/tmp/gradio/abc/flowers.csv")


def test_ids_it_did_not_issue_are_unknown_and_record_nothing() -> None:
    registry = UploadRegistry(3600)
    for forged in (None, "", "forged", "x" * 43):
        assert not registry.knows(forged)
    registry.record("forged", ["/tmp/gradio/abc/flowers.csv"])
    assert not registry.owns("forged", "/tmp/gradio/abc/flowers.csv")


def test_uploads_and_idle_browsers_are_forgotten_after_the_max_age() -> None:
    clock = Clock()
    registry = UploadRegistry(60, clock=clock)
    browser = registry.new_browser()
    registry.record(browser, ["/tmp/a.csv"])
    clock.now += 60
    assert registry.owns(browser, "/tmp/a.csv")
    clock.now += 1
    assert not registry.owns(browser, "/tmp/a.csv")  # gradio deletes the file at that age too
    assert not registry.knows(browser)


def test_the_record_is_bounded() -> None:
    registry = UploadRegistry(3600, max_browsers=3, max_files_per_browser=2)
    first = registry.new_browser()
    registry.record(first, ["/tmp/1.csv", "/tmp/2.csv", "/tmp/3.csv"])
    assert [registry.owns(first, f"/tmp/{i}.csv") for i in (1, 2, 3)] == [False, True, True]
    later = [registry.new_browser() for _ in range(3)]
    assert not registry.knows(first)  # the least recently active id went first
    assert all(registry.knows(b) for b in later)
