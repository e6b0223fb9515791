"""Small model versions for store tests, built from the golden card: fast, and without scikit-learn.

``VersionPublisher()(store, name="iris", score=0.9)`` publishes a version whose ``model.joblib`` is a few
bytes and whose card is the golden v1 card renamed; each call is one second after the previous one, so the
version ids sort in the order they were published.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelberth_core import contract
from modelberth_core.store import ModelStore, Resolved

GOLDEN_V1 = Path(__file__).resolve().parents[1] / "services" / "core" / "tests" / "golden" / "model-v1.json"
"""A card exactly as the trainer wrote it before the store (schema version 1, ``champion`` = selected)."""


def card_payload(name: str, version: str, model_bytes: bytes, score: float) -> dict[str, Any]:
    """The golden card as ``name``/``version`` of ``model_bytes``, with a test ``f1_macro`` of ``score``."""
    raw: dict[str, Any] = json.loads(GOLDEN_V1.read_text(encoding="utf-8"))
    raw["schema_version"] = contract.SCHEMA_VERSION
    raw["selected"] = raw.pop("champion")
    raw.update(name=name, version=version, model_sha256=hashlib.sha256(model_bytes).hexdigest())
    raw["metrics"]["test"]["f1_macro"] = score
    return raw


class VersionPublisher:
    """Publishes small versions with a clock of its own (one second apart, from 2026-01-01 UTC)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self, store: ModelStore, name: str = "iris", score: float = 0.9) -> Resolved:
        self.now += timedelta(seconds=1)
        version = store.new_version(name, self.now)
        with store.staging(name) as staged:
            body = f"{name} {version}".encode()
            (staged / contract.MODEL_FILE).write_bytes(body)
            card = contract.ModelCard.model_validate(card_payload(name, version, body, score))
            return store.publish(staged, card)
