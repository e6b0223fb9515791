"""Only files a browser uploaded can be opened by the UI (issue 13, point 1), against real processes.

The batch handler takes an uploaded file's server path from the client. A client that sends another path
instead used to get that file's cells back in the predictions table (the Gradio app is mounted, so Gradio's
own upload check was off), and even without logging in the file was copied into Gradio's cache. Here real
auth, inference and UI processes run; a secret CSV is planted outside the upload folder and the batch event
is posted the way the page posts it, with every way of naming a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelberth_ui.uploads import BROWSER_COOKIE

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
MARKER = "SECRET-4b1d9e"
"""In the planted files' cells: it must never come back, nor appear in Gradio's cache."""
HEADER = "sepal_length,sepal_width,petal_length,petal_width\n"


def _file(path: str) -> dict[str, Any]:
    """A file reference as the page sends it for an uploaded file."""
    return {"path": path, "orig_name": "flowers.csv", "meta": {"_type": "gradio.FileData"}}


@pytest.fixture
def ui_stack(start_service: Callable[..., Any], tiny_model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """Real auth, inference and UI processes; alice can log in; Gradio's folder is known."""
    subprocess.run(
        [sys.executable, "-m", "modelberth_cli", "users", "add", "alice", "--password-stdin"],
        input=PASSWORD.encode(),
        check=True,
        env=os.environ.copy(),
        capture_output=True,
    )
    auth = start_service("auth", timeout=180.0)
    inference = start_service(
        "inference",
        env={
            "INFERENCE_MODEL_DIR": str(tiny_model_dir),
            "INFERENCE_AUTH_JWKS_URL": f"{auth.url}/.well-known/jwks.json",
        },
        timeout=180.0,
    )
    gradio_dir = tmp_path / "gradio"
    ui = start_service(
        "ui",
        env={
            "UI_AUTH_URL": auth.url,
            "UI_INFERENCE_URL": inference.url,
            "UI_TEMP_DIR": str(tmp_path / "ui"),
            "GRADIO_TEMP_DIR": str(gradio_dir),
        },
        timeout=240.0,  # cold `import gradio` is slow on a busy 2-core machine
    )
    return {"auth": auth, "ui": ui, "gradio_dir": gradio_dir, "cwd": tmp_path}


def _logged_in(gradio_http: Any, http: httpx.Client, session: str) -> Any:
    page = gradio_http(http)
    done = page.run(session, "on_login", [None, "alice", PASSWORD])
    assert done["success"] is True
    # The line under the model chooser names the chosen model's version: the app is shown.
    assert any(isinstance(value, str) and "version `" in value for value in done["output"]["data"])
    return page


def test_only_files_this_browser_uploaded_can_be_opened(
    ui_stack: dict[str, Any], gradio_http: Any, tmp_path: Path
) -> None:
    # One test, two parts: starting auth, inference and the UI is most of its time.
    _a_file_the_browser_did_not_upload_is_never_opened_nor_copied(ui_stack, gradio_http, tmp_path)
    _an_uploaded_file_works_for_its_browser_only(ui_stack, gradio_http)


def _a_file_the_browser_did_not_upload_is_never_opened_nor_copied(
    ui_stack: dict[str, Any], gradio_http: Any, tmp_path: Path
) -> None:
    gradio_dir: Path = ui_stack["gradio_dir"]
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text(HEADER + f"{MARKER},3.0,1.4,0.2\n", encoding="utf-8")
    # Inside Gradio's own folder, but never uploaded: Gradio's check alone would let this one through.
    planted = gradio_dir / ("0" * 64) / "planted.csv"
    planted.parent.mkdir(parents=True)
    planted.write_text(HEADER + f"{MARKER}-inside,3.0,1.4,0.2\n", encoding="utf-8")
    names = [
        str(secret),
        os.path.relpath(secret, ui_stack["cwd"]),  # relative to the UI's working directory
        f"{gradio_dir}/../outside/secret.csv",
        f"{gradio_dir}/./{'0' * 64}/../../outside/secret.csv",
        str(planted),
        f"{ui_stack['auth'].url}/.well-known/jwks.json",  # a URL: Gradio would fetch it
    ]
    with httpx.Client(base_url=ui_stack["ui"].url, timeout=30.0) as browser:
        page = _logged_in(gradio_http, browser, "s1")
        batch = page.fn_index("on_batch")
        attempts: list[tuple[str, list[Any], dict[str, Any]]] = []
        for name in names:
            attempts += [
                ("s1", [None, None, _file(name)], {}),  # logged in
                ("s2", [None, None, _file(name)], {}),  # a session that never logged in
                ("s1", [None, None, {"path": name}], {}),  # no Gradio tag
                ("s1", [None, None, [_file(name)]], {}),  # inside a list
                ("s1", [None, None, None], {"event_data": _file(name)}),  # in the event data
            ]
        for session, data, extra in attempts:
            response = page.join(session, batch, data, **extra)
            seen = response.text
            if response.status_code == 200:  # before the fix: read what the handler answered
                seen += json.dumps(page.messages(session))
            assert MARKER not in seen, (data, extra)
            assert response.status_code == 403, (data, extra, response.text)
            assert response.json() == {
                "detail": "a file in this event was not uploaded from this browser: upload it again"
            }
    copies = [
        path
        for path in gradio_dir.rglob("*")
        if path.is_file() and path != planted and MARKER.encode() in path.read_bytes()
    ]
    assert copies == [], "the secret was copied into Gradio's cache"


def _an_uploaded_file_works_for_its_browser_only(ui_stack: dict[str, Any], gradio_http: Any) -> None:
    url = ui_stack["ui"].url
    flowers = (HEADER + "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n").encode()
    with (
        httpx.Client(base_url=url, timeout=30.0) as browser,
        httpx.Client(base_url=url, timeout=30.0) as other,
    ):
        page = _logged_in(gradio_http, browser, "s1")
        uploaded = browser.post("/gradio_api/upload", files={"files": ("flowers.csv", flowers, "text/csv")})
        assert uploaded.status_code == 200
        [path] = uploaded.json()
        cookie = uploaded.headers["set-cookie"]
        assert cookie.startswith(f"{BROWSER_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        done = page.run("s1", "on_batch", [None, None, _file(path)])
        assert "Predicted 2 of 2 rows." in json.dumps(done)

        # Another browser, logged in as well, cannot use that path: not without a cookie, nor with its own.
        stranger = _logged_in(gradio_http, other, "s3")
        batch = stranger.fn_index("on_batch")
        assert stranger.join("s3", batch, [None, None, _file(path)]).status_code == 403
        own = other.post(
            "/gradio_api/upload", files={"files": ("mine.csv", flowers + b"5,3,1,0\n", "text/csv")}
        )
        assert own.status_code == 200
        assert own.json() != [path]
        assert stranger.join("s3", batch, [None, None, _file(path)]).status_code == 403
        # A forged cookie is no browser: the gate issues a new one on upload, and it owns nothing yet.
        other.cookies.clear()
        other.cookies.set(BROWSER_COOKIE, "forged-" + "x" * 40)
        assert stranger.join("s3", batch, [None, None, _file(path)]).status_code == 403
