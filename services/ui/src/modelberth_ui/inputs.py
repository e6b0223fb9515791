"""Turn what a person typed (a form field or a CSV cell) into the JSON value the service expects."""

from __future__ import annotations

import math
from typing import Any

from modelberth_core.contract import FeatureSpec

MISSING_TOKENS = frozenset({"na", "n/a", "nan", "null", "none"})
"""CSV cells that mean "no value" in a numeric column (compared lowercased)."""


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not one (booleans are not numbers here)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def convert_value(feature: FeatureSpec, raw: Any) -> tuple[Any, str | None]:
    """``raw`` as the JSON value for ``feature``, or None and the reason it cannot be sent.

    An empty value is null: fine for an optional feature, a problem for a required one. Categories and
    text are sent as strings (the card's categories are strings); the service warns about unseen ones.
    """
    text = raw.strip() if isinstance(raw, str) else raw
    missing = text is None or text == "" or (isinstance(text, float) and math.isnan(text))
    if feature.type == "numeric" and isinstance(text, str) and text.lower() in MISSING_TOKENS:
        missing = True
    if missing:
        return None, ("a value is required" if feature.required else None)
    if feature.type == "numeric":
        number = as_float(text)
        if number is None:
            return None, f"{_shorten(raw)!r} is not a finite number"
        return number, None
    if feature.type == "categorical" and isinstance(text, float) and text.is_integer():
        text = int(text)  # a category typed as 3.0 in a number-ish column is still category "3"
    return (str(text) if feature.type == "categorical" else str(raw)), None


def _shorten(raw: Any, limit: int = 40) -> str:
    text = str(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"
