"""A small client of the OCI distribution API (what every registry speaks), over httpx.

Covers what the registry store needs: manifests by tag or digest (GET, HEAD, PUT), blobs (HEAD, monolithic
upload, streamed download with the digest checked), tag and repository listing with ``Link`` pagination,
and authentication as Docker does it: a ``401`` names ``Basic`` or ``Bearer`` (the token flow: ask the
``realm`` for a token for ``service`` and ``scope``, with the Docker config's credentials if it has any),
the answer is cached per scope until it expires.

TLS uses the system's CAs (OpenSSL's default paths; ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set). Plain
HTTP is used only for ``localhost``, ``127.0.0.1``, ``::1`` and the ``host:port`` entries of
``MODELBERTH_REGISTRY_PLAIN_HTTP`` (a kind registry at ``kind-registry:5000``), and a token realm must be
HTTPS unless its host is allowed plain HTTP too, so credentials never cross the network in clear text.

Every failure is a :class:`~modelberth_core.store.base.StoreError` with one line a person can act on.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import ssl
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import httpx

from modelberth_core.store import credentials as docker_credentials
from modelberth_core.store.base import StoreError
from modelberth_core.store.image import DOCKER_MANIFEST, OCI_MANIFEST, Blob, sha256_digest

log = logging.getLogger("modelberth.store.registry")

PLAIN_HTTP_ENV = "MODELBERTH_REGISTRY_PLAIN_HTTP"
"""Comma-separated ``host:port`` (or ``host``) entries reached over plain HTTP (loopback always is)."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"
MAX_MANIFEST_BYTES = 4 << 20
"""Largest manifest read (the OCI spec's recommended limit)."""
MAX_LISTING_BYTES = 16 << 20
RETRIES = 2
RETRY_STATUSES = frozenset({500, 502, 503, 504, 429})
RETRY_PAUSE_SECONDS = 0.2
_CHUNK = 1 << 20
_PAGE = 1000
_AUTH_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_LINK = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")


class RegistryUnavailable(StoreError):
    """The registry cannot be reached, timed out or answered with a server error."""


class AccessDenied(StoreError):
    """The registry (or its token service) refused the credentials, or they are missing."""


class DigestMismatch(StoreError):
    """Content the registry served does not hash to the digest it was asked for."""


def host_of(registry: str) -> str:
    """The host part of ``host[:port]`` (IPv6 literals in brackets), lowercase."""
    registry = registry.lower()
    if registry.startswith("["):
        return registry[1 : registry.find("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def plain_http_allowed(registry: str) -> bool:
    """True for loopback hosts and the entries of ``$MODELBERTH_REGISTRY_PLAIN_HTTP``."""
    host = host_of(registry)
    if host in LOOPBACK_HOSTS:
        return True
    listed = {item.strip().lower() for item in os.environ.get(PLAIN_HTTP_ENV, "").split(",") if item.strip()}
    return registry.lower() in listed or host in listed


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest as served: its exact bytes (what the digest covers), the digest and the media type."""

    body: bytes
    digest: str
    media_type: str


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its TLS certificate is not trusted by the system CAs (SSL_CERT_FILE names a bundle to add)"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"it does not speak TLS; plain HTTP needs the host in {PLAIN_HTTP_ENV}"
    return text.splitlines()[0][:200]


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _AUTH_PARAM.finditer(rest)
    }
    return scheme.lower(), params


class RegistryClient:
    """One registry (``host[:port]``); thread-safe enough for one store (httpx's pool is)."""

    def __init__(self, registry: str, *, timeout_seconds: float = 30.0) -> None:
        self.registry = registry
        self.plain_http = plain_http_allowed(registry)
        self.base = f"{'http' if self.plain_http else 'https'}://{registry}"
        self.timeout_seconds = timeout_seconds
        # The system's trust store (not certifi's): what a cluster's CA bundle or SSL_CERT_FILE adds counts.
        self._http = httpx.Client(
            verify=ssl.create_default_context(),
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            follow_redirects=False,
            headers={"User-Agent": "modelberth"},
        )
        # Stores are opened and dropped freely: close the pool when this client goes, not at exit.
        weakref.finalize(self, self._http.close)
        self._credentials: docker_credentials.Credentials | None = None
        self._credentials_read = False
        self._basic = False
        self._tokens: dict[str, tuple[str, float]] = {}

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- authentication -------------------------------------------------------------------------------

    def _creds(self) -> docker_credentials.Credentials | None:
        if not self._credentials_read:
            try:
                self._credentials = docker_credentials.lookup(self.registry)
            except docker_credentials.CredentialsError as exc:
                raise AccessDenied(str(exc)) from None
            self._credentials_read = True
        return self._credentials

    def _no_credentials(self) -> AccessDenied:
        return AccessDenied(
            f"registry {self.registry} asks for credentials and {docker_credentials.config_path()} has none"
            f" for it (docker login {self.registry}, or point DOCKER_CONFIG at a config.json that has)"
        )

    def _rejected(self, by: str | None = None) -> AccessDenied:
        creds = self._creds()
        if creds is None:
            return self._no_credentials()
        where = f"the token service at {by}" if by else f"registry {self.registry}"
        return AccessDenied(
            f"{where} rejected the credentials of {creds.username!r} for {self.registry}"
            f" (from {creds.source}); check the user name and password or token"
        )

    def _authorization(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return f"Bearer {token[0]}"
        if self._basic:
            creds = self._creds()
            if creds is not None:
                return _basic(creds)
        return None

    def _authenticate(self, header: str, scope: str) -> None:
        scheme, params = _challenge(header)
        if scheme == "basic":
            if self._creds() is None:
                raise self._no_credentials()
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise AccessDenied(f"registry {self.registry} asks for an authentication scheme modelberth lacks")
        realm = httpx.URL(params["realm"])
        realm_host = realm.netloc.decode()
        if realm.scheme != "https" and not (realm.scheme == "http" and plain_http_allowed(realm_host)):
            raise AccessDenied(
                f"registry {self.registry} sends for tokens to {realm.scheme}://{realm_host}, not HTTPS;"
                f" refusing to send credentials in clear text (list it in {PLAIN_HTTP_ENV} if it is yours)"
            )
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        creds = self._creds()
        auth = httpx.BasicAuth(creds.username, creds.password) if creds is not None else None
        try:
            response = self._http.get(realm, params=query, auth=auth)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                f"cannot reach the token service of {self.registry} at {realm_host}: {_reason(exc)}"
            ) from None
        if response.status_code in (401, 403):
            raise self._rejected(by=realm_host)
        if response.status_code != 200:
            raise RegistryUnavailable(
                f"the token service of {self.registry} at {realm_host} answered HTTP {response.status_code}"
            )
        try:
            answer = response.json()
            token = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryUnavailable(f"the token service of {self.registry} at {realm_host} sent no token")
        # Renew a little early: a token expiring between our check and the registry's is a needless 401.
        self._tokens[scope] = (token, time.monotonic() + max(1.0, lifetime - 5))

    # --- requests -------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        content: Callable[[], bytes | Iterator[bytes]] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        idempotent: bool = False,
    ) -> httpx.Response:
        """Send one request, authenticating on a 401 challenge (once); transport errors are one line.

        Idempotent requests (reads, and ``idempotent=True`` writes such as a manifest PUT) are retried
        twice after a server error: registries answer 500 now and then, e.g. when a tag is read while
        another client writes it.
        """
        retries = RETRIES if idempotent or method in ("GET", "HEAD") else 0
        for attempt in range(retries + 1):
            response = self._send(method, url, scope, headers, content, stream, follow_redirects)
            if response.status_code not in RETRY_STATUSES or attempt == retries:
                return response
            response.close()
            time.sleep(RETRY_PAUSE_SECONDS * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        scope: str,
        headers: dict[str, str] | None,
        content: Callable[[], bytes | Iterator[bytes]] | None,
        stream: bool,
        follow_redirects: bool,
    ) -> httpx.Response:
        target = url if isinstance(url, httpx.URL) else httpx.URL(self.base + url)
        for attempt in range(2):
            sent = dict(headers or {})
            authorization = self._authorization(scope)
            if authorization is not None:
                sent["Authorization"] = authorization
            try:
                request = self._http.build_request(
                    method, target, headers=sent, content=content() if content is not None else None
                )
                response = self._http.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.TimeoutException:
                raise RegistryUnavailable(
                    f"registry {self.registry} did not answer within {self.timeout_seconds:g} s"
                    f" ({method} {target.path})"
                ) from None
            except httpx.TransportError as exc:
                raise RegistryUnavailable(f"cannot reach registry {self.registry}: {_reason(exc)}") from None
            if response.status_code != 401:
                return response
            challenge = response.headers.get("www-authenticate", "")
            response.close()
            if attempt == 1 or not challenge:
                break
            self._tokens.pop(scope, None)
            self._authenticate(challenge, scope)
        raise self._rejected()

    def _fail(self, response: httpx.Response, what: str) -> StoreError:
        """The registry's own error code and message, in one line."""
        detail = ""
        try:
            if not response.is_stream_consumed:
                response.read()
            errors = response.json().get("errors") or []
            if errors and isinstance(errors[0], dict):
                detail = f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
        except (ValueError, AttributeError, httpx.HTTPError):
            pass
        status = response.status_code
        text = f"registry {self.registry} refused to {what} (HTTP {status}{detail[:300]})"
        if status == 403:
            return AccessDenied(text + "; do the credentials allow it?")
        if status >= 500 or status == 429:
            return RegistryUnavailable(text)
        return StoreError(text)

    # --- manifests ------------------------------------------------------------------------------------

    def manifest(self, repo: str, reference: str) -> Manifest | None:
        """The manifest ``repo:reference`` (a tag or digest), or None when there is none."""
        response = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            _pull(repo),
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
        )
        try:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise self._fail(response, f"send {repo}:{reference}")
            body = _read_limited(response, MAX_MANIFEST_BYTES, f"the manifest of {repo}:{reference}")
        finally:
            response.close()
        digest = sha256_digest(body)
        claimed = response.headers.get("docker-content-digest")
        if (reference.startswith("sha256:") and digest != reference) or (claimed and claimed != digest):
            raise DigestMismatch(
                f"registry {self.registry} sent a manifest for {repo}@{reference} whose sha256 is {digest};"
                " refusing it (a corrupt or tampered registry)"
            )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Manifest(body, digest, media_type)

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest ``repo:reference`` names now (one HEAD), or None when the tag does not exist."""
        response = self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", _pull(repo), headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"look up {repo}:{reference}")
        digest = str(response.headers.get("docker-content-digest", ""))
        if re.match(r"^sha256:[0-9a-f]{64}$", digest):
            return digest
        found = self.manifest(repo, reference)  # a registry that does not say: read it
        return None if found is None else found.digest

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        """Store ``body`` as ``repo:reference``; its digest."""
        response = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            _push(repo),
            headers={"Content-Type": media_type},
            content=lambda: body,
            idempotent=True,
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, f"store the manifest {repo}:{reference}")
        digest = sha256_digest(body)
        claimed = response.headers.get("docker-content-digest")
        if claimed and claimed != digest:
            raise DigestMismatch(
                f"registry {self.registry} stored {repo}:{reference} as {claimed}, not {digest}"
            )
        return digest

    # --- blobs ----------------------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        """True when the repository holds the blob."""
        response = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", _pull(repo), follow_redirects=True)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise self._fail(response, f"look up blob {digest[:19]}… of {repo}")
        return True

    def push_blob(self, repo: str, blob: Blob) -> None:
        """Upload one blob (a POST, then one PUT with the content); the registry checks the digest."""
        scope = _push(repo)
        started = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, headers={"Content-Length": "0"})
        if started.status_code == 201:  # stored already (a cross-mount)
            return
        location = started.headers.get("location")
        if started.status_code != 202 or not location:
            raise self._fail(started, f"start the upload of a blob to {repo}")
        target = httpx.URL(self.base).join(location).copy_merge_params({"digest": blob.digest})

        def body() -> bytes | Iterator[bytes]:
            if blob.data is not None:
                return blob.data
            assert blob.path is not None
            return _chunks(blob.path)

        done = self.request(
            "PUT",
            target,
            scope,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
            content=body,
        )
        if done.status_code != 201:
            raise self._fail(done, f"store blob {blob.digest[:19]}… in {repo}")

    def pull_blob(self, repo: str, digest: str, size: int, sink: BinaryIO) -> None:
        """Stream blob ``digest`` (``size`` bytes) into ``sink``; raise :class:`DigestMismatch` unless it
        hashes to ``digest``. Redirects (to a CDN) are followed without the registry's credentials."""
        response = self.request(
            "GET", f"/v2/{repo}/blobs/{digest}", _pull(repo), stream=True, follow_redirects=True
        )
        try:
            if response.status_code == 404:
                raise StoreError(f"registry {self.registry} has no blob {digest} in {repo} (deleted?)")
            if response.status_code != 200:
                raise self._fail(response, f"send blob {digest[:19]}… of {repo}")
            sha = hashlib.sha256()
            received = 0
            try:
                for chunk in response.iter_bytes(_CHUNK):
                    received += len(chunk)
                    if received > size:
                        break
                    sha.update(chunk)
                    sink.write(chunk)
            except httpx.TransportError as exc:
                raise RegistryUnavailable(
                    f"registry {self.registry} broke off sending blob {digest[:19]}… ({_reason(exc)})"
                ) from None
        finally:
            response.close()
        actual = "sha256:" + sha.hexdigest()
        if received != size or actual != digest:
            raise DigestMismatch(
                f"registry {self.registry} sent {received if received <= size else 'more than ' + str(size)}"
                f" bytes for blob {digest} of {repo} ({size} expected), hashing to {actual[:19]}…;"
                " refusing it (a corrupt or tampered registry)"
            )

    # --- listings -------------------------------------------------------------------------------------

    def _pages(
        self, path: str, scope: str, key: str, what: str, *, missing: str | None = None
    ) -> Iterator[list[str]]:
        url: httpx.URL | None = httpx.URL(self.base + path, params={"n": _PAGE})
        seen = 0
        while url is not None:
            response = self.request("GET", url, scope)
            if response.status_code == 404:
                if missing is not None:
                    raise StoreError(missing)
                return
            if response.status_code != 200:
                raise self._fail(response, what)
            if len(response.content) > MAX_LISTING_BYTES:
                raise StoreError(
                    f"registry {self.registry} sent more than {MAX_LISTING_BYTES} bytes to {what}"
                )
            try:
                items = response.json().get(key) or []
            except (ValueError, AttributeError):
                raise StoreError(
                    f"registry {self.registry} answered {what} with something else than JSON"
                ) from None
            if not isinstance(items, list):
                raise StoreError(f"registry {self.registry} answered {what} with no list of {key}")
            yield [str(item) for item in items]
            seen += 1
            link = _LINK.search(response.headers.get("link", ""))
            url = httpx.URL(self.base).join(link.group(1)) if link and seen < 10_000 else None

    def tags(self, repo: str) -> list[str]:
        """Every tag of ``repo`` (none when the repository does not exist)."""
        return [
            tag
            for page in self._pages(f"/v2/{repo}/tags/list", _pull(repo), "tags", f"list the tags of {repo}")
            for tag in page
        ]

    def catalog(self) -> list[str]:
        """Every repository the registry lists (``/v2/_catalog``)."""
        unsupported = (
            f"registry {self.registry} does not list its repositories (/v2/_catalog, an optional API):"
            " name the models instead (INFERENCE_MODELS, the chart's inference.models)"
        )
        pages = self._pages(
            "/v2/_catalog", "registry:catalog:*", "repositories", "list its repositories", missing=unsupported
        )
        return [repo for page in pages for repo in page]


def _basic(creds: docker_credentials.Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _chunks(path: os.PathLike[str]) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _read_limited(response: httpx.Response, limit: int, what: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_bytes(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise StoreError(f"{what} is larger than {limit} bytes; refusing it")
            parts.append(chunk)
    except httpx.TransportError as exc:
        raise RegistryUnavailable(f"the registry broke off sending {what} ({_reason(exc)})") from None
    return b"".join(parts)
