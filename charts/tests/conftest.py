"""Fixtures for the chart tests: real Helm (the helm-python-sdk wheel bundles Helm v4), rendered once per
values set and shared by every test module here.

Value sets: the chart defaults, each ``ci/*-values.yaml`` (one optional feature each) and the production-like
``examples/values-production.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit import chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelberth"
KUBE_VERSION = "1.33.0"
RELEASE = "rel"
NAMESPACE = "ml"

VALUE_SETS: dict[str, Path | None] = {
    "default": None,
    **{p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))},
    "production": CHART / "examples" / "values-production.yaml",
}

Manifest = dict[str, Any]


def load_values(name: str) -> dict[str, Any] | None:
    """The override values of one named set (None for the chart defaults)."""
    path = VALUE_SETS[name]
    return None if path is None else yaml.safe_load(path.read_text(encoding="utf-8"))


def render_chart(values: dict[str, Any] | None) -> dict[str, str]:
    """``{template path: rendered text}`` as ``helm install`` would render it (offline: lookup is empty)."""
    return chart.render(values, release=RELEASE, namespace=NAMESPACE)


def documents(rendered: dict[str, str]) -> list[Manifest]:
    """Every Kubernetes object in a render (NOTES.txt excluded), each tagged with its template path."""
    docs: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                docs.append({**doc, "_template": path})
    return docs


_CACHE: dict[str, tuple[dict[str, str], list[Manifest]]] = {}


def rendered_set(name: str) -> tuple[dict[str, str], list[Manifest]]:
    """Render a named value set once per test session."""
    if name not in _CACHE:
        rendered = render_chart(load_values(name))
        _CACHE[name] = (rendered, documents(rendered))
    return _CACHE[name]


@pytest.fixture(params=list(VALUE_SETS), ids=list(VALUE_SETS))
def value_set(request: pytest.FixtureRequest) -> str:
    """Each value set's name in turn."""
    return str(request.param)


@pytest.fixture
def manifests(value_set: str) -> list[Manifest]:
    """The rendered objects of the current value set."""
    return rendered_set(value_set)[1]


@pytest.fixture
def render() -> Callable[[dict[str, Any] | None], list[Manifest]]:
    """``render(values)`` -> rendered objects, for tests of one specific override."""

    def _render(values: dict[str, Any] | None) -> list[Manifest]:
        return documents(render_chart(values))

    return _render


def pod_specs(manifests: list[Manifest]) -> list[tuple[Manifest, Manifest]]:
    """(owner object, pod spec) for every workload: Deployments, Jobs, CronJobs and bare Pods."""
    out = []
    for doc in manifests:
        kind = doc["kind"]
        if kind in ("Deployment", "Job"):
            out.append((doc, doc["spec"]["template"]))
        elif kind == "CronJob":
            out.append((doc, doc["spec"]["jobTemplate"]["spec"]["template"]))
        elif kind == "Pod":
            out.append((doc, doc))
    return out


@pytest.fixture
def workloads() -> Callable[[list[Manifest]], list[tuple[Manifest, Manifest]]]:
    """``workloads(manifests)`` -> (owner, pod template) pairs."""
    return pod_specs


@pytest.fixture
def rendered_text(value_set: str) -> dict[str, str]:
    """The raw rendered templates (NOTES.txt included) of the current value set."""
    return rendered_set(value_set)[0]


@pytest.fixture
def named_set() -> Callable[[str], list[Manifest]]:
    """``named_set("monitoring")`` -> the rendered objects of that value set."""
    return lambda name: rendered_set(name)[1]


@pytest.fixture
def value_set_names() -> list[str]:
    """Every value set's name: default, each ci/ file, production."""
    return list(VALUE_SETS)
