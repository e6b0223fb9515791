"""The one Ingress sends every public path to the service that serves it.

Checked against the shared path list (the brief's conventions) and, for each service whose package is
installed, against the route table of its real FastAPI app (``create_app()``; no server is started).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

Manifest = dict[str, Any]

# Served by every service, reachable through the ingress only on the ui (the "/" backend); in-cluster callers
# (probes, Prometheus) use the Service directly.
PER_SERVICE = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}

PUBLIC_PATHS = {
    "/oauth/token": "auth",
    "/oauth/introspect": "auth",
    "/oauth/revoke": "auth",
    "/auth/login": "auth",
    "/.well-known/jwks.json": "auth",
    "/.well-known/openid-configuration": "auth",
    "/v1/models": "inference",
    "/v1/models/iris": "inference",
    "/v1/models/iris/predict": "inference",
    "/v1/models/iris/examples/0": "inference",
    "/v1/models/iris/examples/0/predict": "inference",
    "/v1/models/iris/reload": "inference",
    "/v1/models/iris/report": "inference",
    "/v2/models/iris/infer": "inference",
    "/v2/health/ready": "inference",
    "/": "ui",
    "/gradio_api/info": "ui",
    "/authorize-nothing": "ui",  # Prefix matches whole path segments: /auth must not catch /authorize...
    "/v1beta": "ui",
}


def _routes(ingress: Manifest) -> list[tuple[str, str]]:
    (rule,) = ingress["spec"]["rules"]
    out = []
    for path in rule["http"]["paths"]:
        assert path["pathType"] == "Prefix"
        assert path["backend"]["service"]["port"] == {"name": "http"}
        service = path["backend"]["service"]["name"]
        out.append((path["path"], service.removeprefix("rel-modelberth-")))
    return out


def backend(routes: list[tuple[str, str]], url_path: str) -> str:
    """The component an ingress sends ``url_path`` to: Kubernetes' Prefix match is per path element,
    and the longest matching prefix wins."""
    parts = [p for p in url_path.split("/") if p]
    best, best_len = "", -1
    for prefix, component in routes:
        pre = [p for p in prefix.split("/") if p]
        if parts[: len(pre)] == pre and len(pre) > best_len:
            best, best_len = component, len(pre)
    return best


@pytest.fixture
def routes(named_set: Callable[[str], list[Manifest]]) -> list[tuple[str, str]]:
    (ingress,) = [d for d in named_set("default") if d["kind"] == "Ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"][0]["host"] == "modelberth.local"
    return _routes(ingress)


def test_ingress_has_exactly_the_shared_prefixes(routes: list[tuple[str, str]]) -> None:
    assert sorted(routes) == sorted(
        [
            ("/oauth", "auth"),
            ("/auth", "auth"),
            ("/.well-known", "auth"),
            ("/v1", "inference"),
            ("/v2", "inference"),
            ("/", "ui"),
        ]
    )


@pytest.mark.parametrize(("path", "component"), sorted(PUBLIC_PATHS.items()))
def test_public_paths_reach_their_service(routes: list[tuple[str, str]], path: str, component: str) -> None:
    assert backend(routes, path) == component


_ROUTE_TABLE = """
import importlib, json, sys
out = {}
for component in sys.argv[1:]:
    try:
        factory = importlib.import_module(f"modelberth_{component}.app").create_app
    except ModuleNotFoundError:
        out[component] = None
        continue
    app = factory()
    paths = set(app.openapi()["paths"])
    paths |= {r.path for r in app.routes if isinstance(getattr(r, "path", None), str)}
    out[component] = sorted(paths)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def app_paths() -> dict[str, list[str] | None]:
    """Route templates of each real app, or None while that package is not installed.

    Built in one child process: the imports (sklearn, gradio) are slow, and gradio leaves event loops
    behind that the strict warning settings would turn into failures of whichever test runs next.
    """
    done = subprocess.run(
        [sys.executable, "-c", _ROUTE_TABLE, "auth", "inference", "ui"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tables: dict[str, list[str] | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        name: None if paths is None else [p.replace("{", "").replace("}", "") or "/" for p in paths]
        for name, paths in tables.items()
    }


@pytest.mark.parametrize("component", ["auth", "inference", "ui"])
def test_every_route_of_the_real_apps_is_routed_to_its_service(
    routes: list[tuple[str, str]], app_paths: dict[str, list[str] | None], component: str
) -> None:
    paths = app_paths[component]
    if paths is None:
        # The service package is written in parallel; the brief's path list above still covers it.
        assert component in set(PUBLIC_PATHS.values())
        return
    assert paths, f"{component} has no routes"
    misrouted = [p for p in paths if p not in PER_SERVICE and backend(routes, p) != component]
    assert misrouted == [], f"{component} routes the ingress sends elsewhere: {misrouted}"
