"""The chart's wiring, run for real on 127.0.0.1: the keyset and bootstrap Secret Helm generates, the auth
init container's script, the env of the auth and inference containers and the `helm test` script.

What a cluster adds (DNS names, volumes) is replaced by local paths and ports; everything else is the
rendered text itself, so a wrong env name, a keyset auth cannot load or a test script that does not match
the services' API fails here rather than in the kind e2e run.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import chart

pytestmark = pytest.mark.integration

PUBLIC_URL = "http://modelberth.local"


def _container_env(
    container: dict[str, Any], paths: dict[str, Path], drop: tuple[str, ...]
) -> dict[str, str]:
    env = {e["name"]: chart.localise(e["value"], paths) for e in container["env"]}
    return {k: v for k, v in env.items() if not k.endswith(drop)}


def test_generated_secrets_init_script_env_and_helm_test_work_together(
    tmp_path: Path, start_service: Callable[..., Any], tiny_model_dir: Path
) -> None:
    # A users file with one API client, made with auth's CLI as the chart README says, is the users Secret;
    # the init container adds the bootstrap user to it.
    objects = chart.by_kind(
        {"auth": {"users": {"existingSecret": "users"}}, "tests": {"clientSecret": "client"}}
    )
    paths = {
        "/etc/modelberth/keyset": tmp_path / "keyset",
        "/etc/modelberth/bootstrap": tmp_path / "bootstrap",
        "/etc/modelberth/users": tmp_path / "users",
        "/etc/modelberth/ui-client": tmp_path / "ui-client",
        "/var/lib/modelberth": tmp_path / "state",
    }
    for local in paths.values():
        local.mkdir()
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    made = subprocess.run(
        [str(Path(sys.executable).parent / "modelberth"), "clients", "add", "smoke", "--scope", "predict",
         "--scope", "models:read", "--json", "--file", str(paths["/etc/modelberth/users"] / "users.yaml")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    client = json.loads(made.stdout)
    (client_dir / "client_id").write_text(client["client_id"])
    (client_dir / "client_secret").write_text(client["client_secret"])
    # The Secrets as the kubelet would mount them.
    keyset = chart.named(objects["Secret"], "-auth-keyset")["data"]["keys.json"]
    (paths["/etc/modelberth/keyset"] / "keys.json").write_bytes(base64.b64decode(keyset))
    bootstrap = chart.named(objects["Secret"], "-bootstrap")["data"]
    for key in ("username", "password"):
        (paths["/etc/modelberth/bootstrap"] / key).write_bytes(base64.b64decode(bootstrap[key]))
    ui_secret = base64.b64decode(bootstrap["ui-client-secret"]).decode()
    (paths["/etc/modelberth/ui-client"] / "client-secret").write_text(ui_secret)  # items: key -> path

    auth_pod = chart.named(objects["Deployment"], "-auth")["spec"]["template"]["spec"]
    (init,) = auth_pod["initContainers"]
    bin_dir = str(Path(sys.executable).parent)
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GRADIO_ANALYTICS_ENABLED": "False"}
    init_env = {**base, **_container_env(init, paths, drop=("_HOST", "_PORT"))}
    script = chart.localise(init["args"][0], paths)
    done = subprocess.run(
        [*init["command"], script], env=init_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    password = (paths["/etc/modelberth/bootstrap"] / "password").read_text()
    assert password not in done.stdout + done.stderr
    assert ui_secret not in done.stdout + done.stderr
    # The pod may run the script again with the same state dir (a restart): the same users file results.
    again = subprocess.run(
        [*init["command"], script], env=init_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr

    auth_env = _container_env(auth_pod["containers"][0], paths, drop=("_HOST", "_PORT"))
    assert auth_env["AUTH_ISSUER"] == PUBLIC_URL
    auth = start_service("auth", env=auth_env, timeout=180)

    # The UI's env (its own client, secret from the bootstrap Secret) is what auth accepts from a forwarder:
    # the browser's address it names is the one failed logins count against.
    ui_pod = chart.named(objects["Deployment"], "-ui")["spec"]["template"]["spec"]
    ui_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in ui_pod["containers"][0]["env"]}
    assert ui_env["UI_CLIENT_SECRET"]["secretKeyRef"]["key"] == "ui-client-secret"
    username = (paths["/etc/modelberth/bootstrap"] / "username").read_text()

    def via_ui(address: str, secret: str, client_secret: str = ui_secret) -> int:
        return httpx.post(
            auth.url + "/auth/login",
            json={"username": username, "password": secret},
            auth=(ui_env["UI_CLIENT_ID"], client_secret),
            headers={"X-Modelberth-User-Address": address},
            timeout=10,
        ).status_code

    assert [via_ui("203.0.113.8", "wrong password") for _ in range(5)] == [401] * 5
    assert via_ui("203.0.113.8", password) == 429  # that browser waits
    assert via_ui("198.51.100.8", password) == 200  # another browser through the same UI does not
    assert via_ui("198.51.100.8", password, "not-the-secret") == 401

    inference_pod = chart.named(objects["Deployment"], "-inference")["spec"]["template"]["spec"]
    inference_env = _container_env(inference_pod["containers"][0], paths, drop=("_HOST", "_PORT"))
    inference_env["INFERENCE_MODEL_DIR"] = str(tiny_model_dir)  # the init container's copy, locally
    inference_env["INFERENCE_AUTH_JWKS_URL"] = auth.url + "/.well-known/jwks.json"
    inference = start_service("inference", env=inference_env, timeout=180)

    config = objects["ConfigMap"]
    script_text = chart.named(config, "-test")["data"]["smoke.py"]
    (tmp_path / "smoke.py").write_text(script_text, encoding="utf-8")
    for how, client_env in (("client_credentials", str(client_dir)), ("/auth/login", str(tmp_path / "none"))):
        smoke = subprocess.run(
            [sys.executable, str(tmp_path / "smoke.py")],
            env={
                **os.environ,
                "AUTH_URL": auth.url,
                "INFERENCE_URL": inference.url,
                "BOOTSTRAP_DIR": str(paths["/etc/modelberth/bootstrap"]),
                "CLIENT_DIR": client_env,
            },
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        output = smoke.stdout + smoke.stderr
        assert smoke.returncode == 0, output + auth.logs()[-2000:] + inference.logs()[-2000:]
        assert how in smoke.stdout
        assert smoke.stdout.strip().endswith("PASS")
        assert password not in output
        assert client["client_secret"] not in output
    # The issuer is the public URL, not the address the token was fetched from.
    discovery = json.loads(
        subprocess.check_output([sys.executable, "-c", _GET, auth.url + "/.well-known/openid-configuration"])
    )
    assert discovery["issuer"] == PUBLIC_URL


_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
