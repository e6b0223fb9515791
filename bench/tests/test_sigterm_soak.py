"""SIGTERM under load, for real: ``modelberth serve auth|inference`` answers every request a client finished
writing before the signal. A short version of ``make soak`` (``bench/sigterm_soak.py``, which it reuses): two
runs per service, 20 keep-alive clients; the 20-run, 50-client soak stays in bench/."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import sigterm_soak as soak

pytestmark = pytest.mark.integration

CLIENTS = 20
LOAD_SECONDS = (0.6, 1.1)


def _credentials(*scopes: str) -> dict[str, str]:
    argv = [sys.executable, "-m", "modelberth_cli", "clients", "add", "soak", "--json"]
    for scope in scopes:
        argv += ["--scope", scope]
    creds: dict[str, str] = json.loads(subprocess.run(argv, capture_output=True, check=True).stdout)
    return creds


def _sigterm_under_load(service: Any, target: Any, load_seconds: float) -> Any:
    result, _ = asyncio.run(soak.soak_once(target, service.process.pid, CLIENTS, load_seconds, service.name))
    exit_code = service.process.wait(30)
    assert exit_code in (0, -15), service.logs()[-3000:]  # uvicorn re-raises SIGTERM once it has stopped
    return result


def _assert_nothing_lost(result: Any) -> None:
    counts = result.counts
    assert counts["lost"] == 0, f"written before SIGTERM, never answered: {result.lost}"
    # Stronger, and what makes this short run fail on uvicorn's own shutdown (inference: requests reset in 17
    # of 20 soak runs): clients that send back to back are told Connection: close, then refused; none of
    # their requests is reset, even one sent after SIGTERM.
    assert counts["closed_after_sigterm"] == 0, result.closed_after_sigterm
    assert result.in_flight_at_sigterm > 0  # SIGTERM did land under load
    assert counts["answered"] >= result.in_flight_at_sigterm
    assert set(result.statuses) == {"200"}


def test_sigterm_under_load_loses_no_request(start_service: Callable[..., Any], tiny_model_dir: Path) -> None:
    predictor = _credentials("predict")
    auth = start_service("auth", timeout=180.0)
    form = {"grant_type": "client_credentials", **predictor}
    token = httpx.post(auth.url + "/oauth/token", data=form, timeout=30).json()["access_token"]
    env = {
        "INFERENCE_MODEL_DIR": str(tiny_model_dir),
        "INFERENCE_AUTH_JWKS_URL": auth.url + "/.well-known/jwks.json",
    }
    for load_seconds in LOAD_SECONDS:
        inference = start_service("inference", env=env, timeout=180.0)
        port = int(inference.url.rsplit(":", 1)[1])
        _assert_nothing_lost(_sigterm_under_load(inference, soak.inference_target(port, token), load_seconds))
    for load_seconds in LOAD_SECONDS:
        if auth.process.poll() is not None:
            auth = start_service("auth", timeout=180.0)
        port = int(auth.url.rsplit(":", 1)[1])
        _assert_nothing_lost(_sigterm_under_load(auth, soak.auth_target(port, predictor), load_seconds))
