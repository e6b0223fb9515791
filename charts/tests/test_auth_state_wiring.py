"""The chart's auth-on-Redis wiring (issue 18), run for real on 127.0.0.1: two auth processes started with the
rendered container env and mounts (the store's password as the mounted Secret file) against a real
redis-server share one session, and the rendered readiness probe keeps them ready through a store outage
that ``/readyz`` itself reports.

What a cluster adds (DNS names, volumes) is replaced by local paths and ports, as in
``test_wiring_integration.py``; everything else is the rendered text itself.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import chart
from testkit.redis_server import RedisServer

pytestmark = pytest.mark.integration


def test_two_replicas_from_the_rendered_env_share_one_store_and_stay_ready_through_an_outage(
    tmp_path: Path, start_service: Callable[..., Any], redis_server: RedisServer
) -> None:
    values = {
        "auth": {
            "replicaCount": 2,
            "state": {"url": f"redis://127.0.0.1:{redis_server.port}/0", "existingSecret": "store"},
        },
        "networkPolicy": {"stateStore": {"cidrs": ["127.0.0.1/32"]}},
    }
    objects = chart.by_kind(values)
    auth_pod = chart.named(objects["Deployment"], "-auth")["spec"]["template"]["spec"]
    (init,) = auth_pod["initContainers"]
    (container,) = auth_pod["containers"]
    secrets_dir = tmp_path / "secrets"
    mounted = {
        "/etc/modelberth/keyset": secrets_dir / "keyset",
        "/etc/modelberth/bootstrap": secrets_dir / "bootstrap",
        "/etc/modelberth/ui-client": secrets_dir / "ui-client",
        "/etc/modelberth/state-password": secrets_dir / "state-password",
    }
    for local in mounted.values():
        local.mkdir(parents=True)
    keyset = chart.named(objects["Secret"], "-auth-keyset")["data"]["keys.json"]
    (mounted["/etc/modelberth/keyset"] / "keys.json").write_bytes(base64.b64decode(keyset))
    bootstrap = chart.named(objects["Secret"], "-bootstrap")["data"]
    for key in ("username", "password"):
        (mounted["/etc/modelberth/bootstrap"] / key).write_bytes(base64.b64decode(bootstrap[key]))
    ui_secret = base64.b64decode(bootstrap["ui-client-secret"])
    (mounted["/etc/modelberth/ui-client"] / "client-secret").write_bytes(ui_secret)
    # The Secret named by auth.state.existingSecret, key auth.state.passwordKey, as the kubelet mounts it.
    (password_volume,) = [v for v in auth_pod["volumes"] if v["name"] == "state-password"]
    (item,) = password_volume["secret"]["items"]
    (mounted["/etc/modelberth/state-password"] / item["path"]).write_text(redis_server.password)

    replicas = []
    bin_dir = str(Path(sys.executable).parent)
    for name in ("a", "b"):  # each pod has its own state dir; its init container builds its users file there
        paths = {**mounted, "/var/lib/modelberth": tmp_path / f"state-{name}"}
        paths["/var/lib/modelberth"].mkdir()
        env = {e["name"]: chart.localise(e["value"], paths) for e in init["env"]}
        env = {k: v for k, v in env.items() if not k.endswith(("_HOST", "_PORT"))}
        done = subprocess.run(
            [*init["command"], chart.localise(init["args"][0], paths)],
            env={**env, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        auth_env = {e["name"]: chart.localise(e["value"], paths) for e in container["env"]}
        auth_env = {k: v for k, v in auth_env.items() if not k.endswith(("_HOST", "_PORT"))}
        assert "AUTH_STATE_PASSWORD" not in auth_env
        replicas.append(start_service("auth", env=auth_env, timeout=180))
    a, b = replicas

    username = (mounted["/etc/modelberth/bootstrap"] / "username").read_text()
    password = (mounted["/etc/modelberth/bootstrap"] / "password").read_text()
    session = httpx.post(a.url + "/auth/login", json={"username": username, "password": password}, timeout=10)
    assert session.status_code == 200, session.text
    moved = httpx.post(
        b.url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": session.json()["refresh_token"]},
        timeout=10,
    )
    assert moved.status_code == 200, moved.text  # issued by one pod, redeemed on the other

    probe = container["readinessProbe"]["httpGet"]["path"]
    redis_server.kill()
    for replica in (a, b):
        assert httpx.get(replica.url + "/readyz", timeout=10).status_code == 503  # says the store is down
        assert httpx.get(replica.url + probe, timeout=10).status_code == 200  # but stays in the Service
        assert httpx.get(replica.url + "/.well-known/jwks.json", timeout=10).status_code == 200
        login = httpx.post(
            replica.url + "/auth/login", json={"username": username, "password": password}, timeout=10
        )
        assert login.status_code == 503
        assert int(login.headers["retry-after"]) >= 1
    for replica in (a, b):
        assert replica.process.poll() is None  # no crash loop either
        assert redis_server.password not in replica.logs()
