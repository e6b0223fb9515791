"""Input warnings from the inference service (out of training range, unseen category...), per row and field.

The service returns ``warnings`` beside the predictions. This module accepts the shapes a service may
reasonably use (one list per instance, or a flat list whose items name their instance, as text or
objects) and turns them into :class:`Notice` objects the page can put next to the field they concern.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Notice:
    """One warning about one input: the feature it concerns (None when it names none) and the text."""

    feature: str | None
    message: str


_ROW_KEYS = ("instance", "row", "index", "instance_index")
_FEATURE_KEYS = ("feature", "field", "column", "name")
_MESSAGE_KEYS = ("message", "msg", "detail", "text")


def notices_by_row(raw: Any, n_rows: int, feature_names: Sequence[str]) -> list[list[Notice]]:
    """``raw`` warnings as one list of notices per predicted row (``n_rows`` lists)."""
    rows: list[list[Notice]] = [[] for _ in range(n_rows)]
    if not isinstance(raw, list) or n_rows == 0:
        return rows
    per_instance = len(raw) == n_rows and all(isinstance(item, list) or item is None for item in raw)
    if per_instance:
        for row, items in zip(rows, raw, strict=True):
            row.extend(_notice(item, feature_names)[1] for item in items or [])
        return rows
    for item in raw:
        named, notice = _notice(item, feature_names)
        target = named if named is not None else (0 if n_rows == 1 else None)
        if target is not None and 0 <= target < n_rows:
            rows[target].append(notice)
    return rows


def _notice(item: Any, feature_names: Sequence[str]) -> tuple[int | None, Notice]:
    if isinstance(item, dict):
        position = next((item[k] for k in _ROW_KEYS if isinstance(item.get(k), int)), None)
        feature = next((item[k] for k in _FEATURE_KEYS if isinstance(item.get(k), str)), None)
        message = next((str(item[k]) for k in _MESSAGE_KEYS if item.get(k)), None)
        if message is None:
            kind = str(item.get("kind") or item.get("type") or "warning").replace("_", " ")
            value = item.get("value")
            message = f"{kind} (value {value})" if value is not None else kind
        elif feature is not None and message.startswith(f"{feature}:"):
            message = message[len(feature) + 1 :].strip()
        return position, Notice(feature, message)
    text = str(item)
    return None, Notice(_mentioned_feature(text, feature_names), text)


def _mentioned_feature(text: str, feature_names: Sequence[str]) -> str | None:
    # Longest names first, so "petal_length" is not mistaken for a feature called "petal".
    for name in sorted(feature_names, key=len, reverse=True):
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text):
            return name
    return None
