"""The Helm chart rendered with Helm's own engine (helm-python-sdk bundles Helm v4), offline, for every test
that reads it: the chart checks, the wiring run on 127.0.0.1, the image smoke tests, the kind values.

Also the two moves the wiring tests make: pick an object by its name's suffix, and swap a pod's paths for
local ones (what a cluster adds, DNS names and volumes, is replaced; everything else is the rendered text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "modelberth"
RELEASE = "rel"
NAMESPACE = "ml"

Manifest = dict[str, Any]


def render(
    values: dict[str, Any] | None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """``{template path: rendered text}`` as ``helm install`` renders it (``lookup`` finds nothing), after
    checking ``values`` against the chart's schema as Helm does."""
    import helm_python

    chart = helm_python.Chart.load(CHART)
    chart.validate_schema(values)
    rendered: dict[str, str] = chart.render(values, name=release, namespace=namespace, is_install=True)
    return rendered


def documents(rendered: dict[str, str]) -> list[Manifest]:
    """Every Kubernetes object of a render, in template order (NOTES.txt and empty documents left out)."""
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(values: dict[str, Any] | None, **names: str) -> dict[str, list[Manifest]]:
    """The objects of a render grouped by ``kind``."""
    grouped: dict[str, list[Manifest]] = {}
    for doc in documents(render(values, **names)):
        grouped.setdefault(doc["kind"], []).append(doc)
    return grouped


def named(docs: list[Manifest], suffix: str) -> Manifest:
    """The one object whose name ends with ``suffix`` (``-auth``: the release's auth Deployment)."""
    (doc,) = [d for d in docs if d["metadata"]["name"].endswith(suffix)]
    return doc


def localise(value: str, paths: dict[str, Path]) -> str:
    """``value`` with each pod path (a mount point) replaced by its local stand-in."""
    for pod_path, local in paths.items():
        value = value.replace(pod_path, str(local))
    return value
