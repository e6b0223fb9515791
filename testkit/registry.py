"""A real OCI registry for tests and benchmarks: Debian's ``docker-registry`` (the CNCF distribution registry
2.8), started on a free port with filesystem storage in a temporary directory.

``start_registry(workdir)`` gives an open registry; ``htpasswd={user: password}`` protects it with basic
auth (bcrypt lines, the only kind it reads); ``token=TokenService(...)`` with the distribution token flow
against a small token endpoint started here (it signs ES256 tokens with a certificate generated here, which
the registry trusts through ``rootcertbundle``); ``tls=True`` serves HTTPS with a certificate from a CA
generated here (point ``SSL_CERT_FILE`` at :attr:`Registry.ca_file`). Every process started is stopped by
its PID (:meth:`Registry.stop`), never by name.

Install: ``apt-get install -y docker-registry`` (``make install-system``).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from testkit.services import free_port

BINARY = "docker-registry"


def available() -> bool:
    """True when the registry binary is installed."""
    return shutil.which(BINARY) is not None


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (the registry reads no other kind)."""
    import bcrypt

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"


def docker_config(directory: Path, registry: str, user: str, password: str) -> Path:
    """Write ``directory/config.json`` as ``docker login`` would (0600); return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry: {"auth": auth}}}), encoding="utf-8")
    path.chmod(0o600)
    return directory


# --- certificates ----------------------------------------------------------------------------------------


def _certificate(
    common_name: str, *, ip: str | None = None, issuer: tuple[Any, Any] | None = None, ca: bool = False
) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(signer_key, hashes.SHA256()), key


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


# --- the token service -----------------------------------------------------------------------------------


@dataclass
class TokenService:
    """The distribution token flow's other half: ``GET /token?service=&scope=`` with basic auth answers a
    signed JWT granting the scopes asked for, to ``users`` only (anyone else gets 401)."""

    users: dict[str, str]
    service: str = "modelberth-test-registry"
    issuer: str = "modelberth-test-token-issuer"
    lifetime_seconds: int = 300
    url: str = ""
    cert_file: Path | None = None
    issued: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _key: Any = None
    _x5c: str = ""

    def start(self, workdir: Path) -> TokenService:
        """Generate the signing certificate, serve on a free port in a thread."""
        from cryptography.hazmat.primitives import serialization

        cert, self._key = _certificate("modelberth test token signer")
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.cert_file = workdir / "token-signer.pem"
        self.cert_file.write_bytes(_pem(cert))
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # quiet: the tests assert outcomes, not logs
                return

            def do_GET(self) -> None:
                status, body = service._answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        from joserfc import jwk, jwt

        user = None
        if authorization.startswith("Basic "):
            try:
                name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return 400, {"error": "bad basic auth"}
            if name in self.users and secrets.compare_digest(self.users[name], password):
                user = name
        if user is None:
            return 401, {"error": "unauthorized"}
        query = parse_qs(urlparse(path).query)
        access = []
        for scope in " ".join(query.get("scope", [])).split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": query.get("service", [self.service])[0],
            "exp": now + self.lifetime_seconds,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        self.issued.append(claims)
        key = jwk.import_key(_key_pem(self._key), "EC")
        token = jwt.encode(
            {"alg": "ES256", "typ": "JWT", "x5c": [self._x5c]}, claims, key, algorithms=["ES256"]
        )
        return 200, {"token": token, "expires_in": self.lifetime_seconds}


# --- the registry ----------------------------------------------------------------------------------------


@dataclass
class Registry:
    """One running ``docker-registry serve``: its address, storage and process."""

    host: str
    port: int
    root: Path
    config_file: Path
    log_file: Path
    scheme: str = "http"
    ca_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port``, as in ``oci://`` locations and Docker configs."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL of the distribution API."""
        return f"{self.scheme}://{self.address}"

    def location(self, namespace: str = "mb") -> str:
        """An ``oci://`` store location in this registry."""
        return f"oci://{self.address}/{namespace}"

    def logs(self) -> str:
        """What the registry wrote so far."""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def start(self, timeout: float = 20.0) -> Registry:
        """Start (or restart, same port and storage) and wait until ``/v2/`` answers."""
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [BINARY, "serve", str(self.config_file)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        verify = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        try:
            self._wait(deadline, verify)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, deadline: float, verify: ssl.SSLContext) -> None:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited {self.process.returncode}:\n{self.logs()[-3000:]}"
                )
            try:
                response = httpx.get(self.url + "/v2/", timeout=1.0, verify=verify)
                if response.status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"docker-registry on {self.address} not ready in time:\n{self.logs()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; by PID."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL at once (a registry that dies mid-request)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    # --- the storage, for tests that damage it the way a bad disk or a retention policy would ------------

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def tag_dir(self, repo: str, tag: str) -> Path:
        """Where the filesystem driver keeps one tag (remove it and the tag is gone)."""
        return self.root / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag

    def tags(self, repo: str, **kwargs: Any) -> list[str]:
        """``GET /v2/<repo>/tags/list`` with plain httpx (as a user's curl would)."""
        response = httpx.get(f"{self.url}/v2/{repo}/tags/list", timeout=5.0, **kwargs)
        response.raise_for_status()
        return list(response.json().get("tags") or [])


def start_registry(
    workdir: Path,
    *,
    htpasswd: dict[str, str] | None = None,
    token: TokenService | None = None,
    tls: bool = False,
    host: str = "127.0.0.1",
) -> Registry:
    """A started registry under ``workdir`` (storage, config, log); see the module docstring."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    root = workdir / "storage"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"{host}:{port}", "secret": secrets.token_hex(16)},
    }
    ca_file = None
    if tls:
        ca, ca_key = _certificate("modelberth test CA", ca=True)
        cert, key = _certificate(host, ip=host, issuer=(ca, ca_key))
        (workdir / "tls.crt").write_bytes(_pem(cert))
        (workdir / "tls.key").write_bytes(_key_pem(key))
        ca_file = workdir / "ca.pem"
        ca_file.write_bytes(_pem(ca))
        config["http"]["tls"] = {"certificate": str(workdir / "tls.crt"), "key": str(workdir / "tls.key")}
    if htpasswd is not None:
        lines = "".join(htpasswd_line(user, password) + "\n" for user, password in htpasswd.items())
        (workdir / "htpasswd").write_text(lines, encoding="utf-8")
        config["auth"] = {"htpasswd": {"realm": "modelberth-test", "path": str(workdir / "htpasswd")}}
    elif token is not None:
        assert token.cert_file is not None, "start the TokenService first"
        config["auth"] = {
            "token": {
                "realm": token.url,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.cert_file),
            }
        }
    config_file = workdir / "config.yml"
    config_file.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    registry = Registry(
        host, port, root, config_file, workdir / "registry.log", "https" if tls else "http", ca_file
    )
    return registry.start()


def registry_fixture(workdir: Path, **kwargs: Any) -> Iterator[Registry]:
    """Body of a pytest fixture: a started registry, stopped (by PID) afterwards."""
    registry = start_registry(workdir, **kwargs)
    try:
        yield registry
    finally:
        registry.stop()
