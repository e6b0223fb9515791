"""What the load test sends, and the pass/fail gate: plain functions with no Locust import, so they
are unit-tested in-process (importing locust monkey-patches the standard library with gevent)."""

from __future__ import annotations

import json
import os
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Feature:
    """The parts of a model card's feature spec that valid random rows need."""

    name: str
    type: str
    required: bool = True
    categories: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    example: Any = None

    @classmethod
    def from_card(cls, spec: Mapping[str, Any]) -> Feature:
        """Build from one entry of the card's ``features`` list."""
        return cls(
            name=str(spec["name"]),
            type=str(spec.get("type", "numeric")),
            required=bool(spec.get("required", True)),
            categories=tuple(str(c) for c in spec.get("categories") or ()),
            min=_float_or_none(spec.get("min")),
            max=_float_or_none(spec.get("max")),
            max_length=spec.get("max_length"),
            example=spec.get("example"),
        )


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def features_from_metadata(metadata: Mapping[str, Any]) -> list[Feature]:
    """The feature list of ``GET /v1/models/{name}`` (the card, at the top level or under ``card``)."""
    source: Any = metadata
    if "features" not in source and isinstance(metadata.get("card"), Mapping):
        source = metadata["card"]
    specs = source.get("features")
    if not isinstance(specs, list) or not specs:
        raise ValueError("model metadata has no 'features' list")
    return [Feature.from_card(spec) for spec in specs]


def example_count(answer: Mapping[str, Any]) -> int:
    """How many held-out example rows the model serves, from ``GET /v1/models/{name}/examples/0``
    (its ``count``); at least 1, since every artifact has some."""
    for key in ("count", "examples", "n_examples"):
        value = answer.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, list) and value:
            return len(value)
    return 1


def model_names(listing: Any) -> list[str]:
    """Model names from ``GET /v1/models`` (a list, or ``{"models": [...]}``, of names or objects)."""
    items = listing.get("models", listing.get("data", [])) if isinstance(listing, Mapping) else listing
    names: list[str] = []
    for item in items or []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            names.append(item["name"])
    return names


def random_value(feature: Feature, rng: random.Random) -> Any:
    """A value the model saw in training: inside [min, max], one of the categories, a short text."""
    if feature.type == "numeric":
        low = feature.min if feature.min is not None else _float_or_none(feature.example) or 0.0
        high = feature.max if feature.max is not None else low + 1.0
        return round(rng.uniform(low, high), 4)
    if feature.type == "categorical":
        if feature.categories:
            return rng.choice(feature.categories)
        return str(feature.example) if feature.example is not None else "a"
    length = max(1, min(feature.max_length or 20, 40))
    return (
        "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(rng.randint(1, length))).strip()
        or "a"
    )


def random_row(features: Sequence[Feature], rng: random.Random) -> Row:
    """One valid input row drawn from the card's ranges and categories."""
    return {f.name: random_value(f, rng) for f in features}


def invalid_payloads(features: Sequence[Feature]) -> list[tuple[str, str]]:
    """``(label, raw JSON body)`` pairs every honest server must answer with 422."""
    valid = {
        f.name: f.example if f.example is not None else random_value(f, random.Random(0)) for f in features
    }
    first_required = next((f for f in features if f.required), features[0])
    first_numeric = next((f for f in features if f.type == "numeric"), None)
    missing = {k: v for k, v in valid.items() if k != first_required.name}
    payloads = [
        ("missing feature", json.dumps({"instances": [missing]})),
        ("unknown feature", json.dumps({"instances": [{**valid, "no_such_feature_xyz": 1}]})),
        ("instances not a list", json.dumps({"instances": "rows"})),
    ]
    if first_numeric is not None:
        payloads.append(
            ("text for a number", json.dumps({"instances": [{**valid, first_numeric.name: "abc"}]}))
        )
        payloads.append(
            ("boolean for a number", json.dumps({"instances": [{**valid, first_numeric.name: True}]}))
        )
    return payloads


def read_client_file(path: Path) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from the JSON file ``modelberth up`` writes, if it is there."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    client_id, secret = data.get("client_id"), data.get("client_secret")
    if isinstance(client_id, str) and isinstance(secret, str):
        return client_id, secret
    return None


def default_client_file() -> Path:
    """``$MODELBERTH_STATE_DIR/loadtest-client.json`` (default state dir ``.modelberth``)."""
    return Path(os.environ.get("MODELBERTH_STATE_DIR") or ".modelberth") / "loadtest-client.json"


def gate(
    num_requests: int, num_failures: int, p95_ms: float, max_fail_ratio: float, p95_bound_ms: float
) -> list[str]:
    """Why the run fails, or an empty list when it passes."""
    if num_requests == 0:
        return ["no requests were made"]
    reasons = []
    ratio = num_failures / num_requests
    if ratio > max_fail_ratio:
        reasons.append(f"failure ratio {ratio:.2%} > {max_fail_ratio:.2%} ({num_failures}/{num_requests})")
    if p95_ms > p95_bound_ms:
        reasons.append(f"p95 {p95_ms:.0f} ms > {p95_bound_ms:g} ms")
    return reasons
