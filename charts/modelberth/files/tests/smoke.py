"""helm test: every service ready, a token from auth, one prediction through inference.

Standard library only, so it runs in any modelberth image. Exit code 0 = pass. Prints no secret.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

AUTH = os.environ["AUTH_URL"]
INFERENCE = os.environ["INFERENCE_URL"]
UI = os.environ.get("UI_URL", "")
BOOTSTRAP = os.environ.get("BOOTSTRAP_DIR", "/etc/modelberth/bootstrap")
CLIENT = os.environ.get("CLIENT_DIR", "/etc/modelberth/client")
TIMEOUT = 10.0


def call(method, url, body=None, token=None, form=False):
    """(status, parsed JSON or text) of one request; HTTP errors are answers, not exceptions."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        if form:
            data = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in body.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (checked above)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (checked above)
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def wait_ready(name, base, seconds=120):
    deadline = time.monotonic() + seconds
    status = None
    while time.monotonic() < deadline:
        try:
            status, _ = call("GET", base + "/readyz")
        except OSError as exc:
            status = type(exc).__name__
        if status == 200:
            print(f"ok   {name} /readyz 200")
            return
        time.sleep(2)
    sys.exit(f"FAIL {name} not ready after {seconds}s (last: {status})")


def model_names(listing):
    items = listing.get("models", listing.get("data", [])) if isinstance(listing, dict) else listing
    return [item["name"] if isinstance(item, dict) else str(item) for item in items]


def read(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def get_token():
    """client_credentials when a client Secret is mounted (tests.clientSecret), else the bootstrap login."""
    if os.path.exists(os.path.join(CLIENT, "client_id")):
        form = {
            "grant_type": "client_credentials",
            "client_id": read(CLIENT, "client_id"),
            "client_secret": read(CLIENT, "client_secret"),
        }
        status, body = call("POST", AUTH + "/oauth/token", form, form=True)
        how = "POST /oauth/token (client_credentials)"
    else:
        credentials = {"username": read(BOOTSTRAP, "username"), "password": read(BOOTSTRAP, "password")}
        status, body = call("POST", AUTH + "/auth/login", credentials)
        how = "POST /auth/login"
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        sys.exit(f"FAIL {how}: HTTP {status}")
    print(f"ok   token from {how}")
    return body["access_token"]


def main():
    wait_ready("auth", AUTH)
    wait_ready("inference", INFERENCE)
    if UI:
        wait_ready("ui", UI)
    token = get_token()

    status, listing = call("GET", INFERENCE + "/v1/models", token=token)
    names = model_names(listing) if status == 200 else []
    if not names:
        sys.exit(f"FAIL GET /v1/models: HTTP {status}, no model served")
    name = os.environ.get("MODEL_NAME") or names[0]
    print(f"ok   models served: {', '.join(names)}")

    status, _ = call("POST", f"{INFERENCE}/v1/models/{name}/examples/0/predict", {})
    if status != 401:
        sys.exit(f"FAIL predict without a token answered {status}, expected 401")
    print("ok   predict without a token -> 401")

    status, body = call("POST", f"{INFERENCE}/v1/models/{name}/examples/0/predict", {}, token=token)
    if status != 200 or len(body.get("predictions", [])) != 1:
        sys.exit(f"FAIL predict on example 0 of {name}: HTTP {status} {str(body)[:300]}")
    print(f"ok   {name} {body.get('version')}: example 0 -> {body['predictions'][0]}")
    print("PASS")


if __name__ == "__main__":
    main()
