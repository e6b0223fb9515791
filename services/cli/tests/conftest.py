"""The CLI's fixtures: model versions built from the golden card (testkit.store), without scikit-learn."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelberth_core.store import Resolved
from testkit.store import VersionPublisher


@pytest.fixture
def publish_version() -> Callable[..., Resolved]:
    """``publish_version(store, name="iris", score=0.9)`` publishes a small version (latest only)."""
    return VersionPublisher()
