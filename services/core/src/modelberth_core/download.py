"""A data file from an HTTPS URL, checked against an optional sha256: ``modelberth train --data-url`` and
``modelberth score --input URL``.

What a Job in a cluster reads when the data is not on a volume: an object store's (presigned) URL,
a release asset, an internal web server. HTTPS with the system's CAs; plain HTTP only for the hosts the
registry policy allows (loopback, ``MODELBERTH_REGISTRY_PLAIN_HTTP``). The URL's query string may be a
signature: it is never printed or recorded, only ``scheme://host/path`` is.
"""

from __future__ import annotations

import hashlib
import ssl
import tempfile
from pathlib import Path

import httpx

from modelberth_core.store.distribution import PLAIN_HTTP_ENV, plain_http_allowed


class DownloadError(Exception):
    """The URL is refused or the download failed; the message names the URL without its query."""


MAX_BYTES = 4 << 30
"""Largest download accepted, in bytes."""
TIMEOUT_SECONDS = 60.0


def shown(url: str) -> str:
    """``scheme://host/path``: what may be printed and recorded (no credentials, no query)."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}{parsed.path}"


def check_url(url: str, flag: str = "--data-url") -> httpx.URL:
    """The URL, if it is one that may be fetched; raise :class:`DownloadError` otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise DownloadError(f"{flag}: not a URL") from None
    if parsed.userinfo:
        raise DownloadError(f"{flag}: credentials in the URL are refused; use a presigned URL or a volume")
    if not parsed.host:
        raise DownloadError(f"{flag} {shown(url)}: no host")
    netloc = parsed.netloc.decode()
    if parsed.scheme == "http" and not plain_http_allowed(netloc):
        raise DownloadError(
            f"{flag} {shown(url)}: plain HTTP is refused (HTTPS, or list the host in {PLAIN_HTTP_ENV})"
        )
    if parsed.scheme not in ("https", "http"):
        raise DownloadError(f"{flag} {shown(url)}: only https:// URLs are fetched")
    return parsed


def download(
    url: str,
    dest_dir: Path,
    *,
    sha256: str | None = None,
    max_bytes: int = MAX_BYTES,
    flag: str = "--data-url",
) -> Path:
    """Fetch ``url`` into a new file under ``dest_dir``; check its size and (if given) its sha256."""
    parsed = check_url(url, flag)
    name = Path(parsed.path).name or "data.csv"  # the suffix tells the reader the format
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=dest_dir, prefix="data-")) / name
    digest = hashlib.sha256()
    size = 0
    try:
        with httpx.stream(
            "GET",
            parsed,
            timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=10.0),
            follow_redirects=True,
            verify=ssl.create_default_context(),
        ) as response:
            if response.status_code != 200:
                raise DownloadError(f"{flag} {shown(url)}: HTTP {response.status_code}")
            with out.open("wb") as sink:
                for chunk in response.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"{flag} {shown(url)}: larger than {max_bytes} bytes")
                    digest.update(chunk)
                    sink.write(chunk)
    except httpx.HTTPError as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DownloadError(f"{flag} {shown(url)}: cannot download ({reason})") from None
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise DownloadError(
            f"{flag} {shown(url)}: sha256 {digest.hexdigest()} does not match --data-sha256 {sha256.lower()}"
        )
    return out
