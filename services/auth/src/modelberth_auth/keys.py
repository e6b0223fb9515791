"""The signing keyset: a JWKS file holding private EC keys. The last key signs, every key verifies.

Rotation without downtime: ``modelberth keys generate --add`` appends a new key (which then signs new
tokens); tokens signed by the old key keep verifying until ``modelberth keys remove KID`` drops it, after
at least one access-token lifetime.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from modelberth_auth.files import WatchedFile, atomic_write, create_exclusive
from modelberth_core.security import TokenError

log = logging.getLogger("modelberth.auth.keys")

ALGORITHM = "ES256"
"""The signing algorithm; the verifiers' allow-list names exactly this one."""
CURVE = "P-256"


class KeysetError(Exception):
    """The keyset file is missing, unreadable or holds no usable private key."""


def new_key() -> ECKey:
    """A fresh P-256 private key with ``kid`` (its RFC 7638 thumbprint, in hex), ``alg`` and ``use`` set.

    Hex rather than base64url: a base64url thumbprint may start with ``-``, which a command line such as
    ``modelberth keys remove KID`` would read as an option.
    """
    key = ECKey.generate_key(CURVE, {"alg": ALGORITHM, "use": "sig"}, private=True)
    thumbprint = base64.urlsafe_b64decode(key.thumbprint() + "=")
    return ECKey.import_key(key.as_dict(private=True, kid=thumbprint.hex()))


def parse_keyset(data: bytes) -> KeySet:
    """A keyset from JWKS bytes; every key must be a private P-256 key with a unique kid."""
    try:
        document = json.loads(data)
        entries = document["keys"]
        if not isinstance(entries, list) or not entries:
            raise KeysetError("the keyset holds no keys")
        for entry in entries:  # checked before import: never even parse a symmetric or public-only key
            if (
                not isinstance(entry, dict)
                or entry.get("kty") != "EC"
                or entry.get("crv") != CURVE
                or "d" not in entry
            ):
                raise KeysetError(f"every key must be a private {CURVE} EC key")
        keys = KeySet.import_key_set(document)
    except (ValueError, KeyError, TypeError, JoseError) as exc:
        raise KeysetError(f"keyset is not a JWKS: {type(exc).__name__}") from exc
    kids = [key.kid for key in keys.keys]
    if len(set(kids)) != len(kids):
        raise KeysetError("duplicate kid in keyset")
    for key in keys.keys:
        if not isinstance(key, ECKey) or key.get("crv") != CURVE or not key.is_private:
            raise KeysetError(f"key {key.kid} is not a private {CURVE} key")
    return keys


def serialize(keys: KeySet) -> bytes:
    """JWKS bytes with private keys (for the keyset file only)."""
    return json.dumps(keys.as_dict(private=True), indent=2).encode() + b"\n"


def read_keyset(path: Path) -> KeySet:
    """Read and validate the keyset file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeysetError(f"cannot read keyset {path}: {exc.strerror}") from exc
    return parse_keyset(data)


def write_keyset(path: Path, keys: KeySet) -> None:
    """Atomically (re)write the keyset file with mode 0600."""
    atomic_write(path, serialize(keys))


def create_keyset(path: Path) -> bool:
    """Create a keyset with one key at ``path`` unless a file is already there; True if created."""
    return create_exclusive(path, serialize(KeySet([new_key()])))


def public_jwks(keys: KeySet) -> dict[str, Any]:
    """The public half of every key, for ``/.well-known/jwks.json``."""
    return {"keys": [key.as_dict(private=False) for key in keys.keys]}


@dataclass(frozen=True, slots=True)
class _Keys:
    private: KeySet
    public: KeySet


def _read_keys(path: Path) -> _Keys:
    keys = read_keyset(path)
    public = KeySet.import_key_set(public_jwks(keys))  # type: ignore[arg-type]
    log.info("keyset loaded", extra={"keys": len(keys.keys), "signing_kid": keys.keys[-1].kid})
    return _Keys(keys, public)


class KeyRing:
    """The service's view of the keyset file, reloaded when the file changes (checked at most once per
    ``interval_seconds``). A broken or missing new file is logged and ignored: the last good keys stay."""

    def __init__(self, path: Path, interval_seconds: float = 1.0) -> None:
        self.path = path
        self._file = WatchedFile(
            path, _read_keys, unusable=KeysetError, what="keyset file", interval_seconds=interval_seconds
        )

    @property
    def loaded(self) -> bool:
        """True once a valid keyset was read."""
        return self._file.value is not None

    @property
    def count(self) -> int:
        """Keys in the loaded keyset (0 before the first load)."""
        keys = self._file.value
        return len(keys.private.keys) if keys is not None else 0

    def load(self) -> None:
        """Read the file now; raise :class:`KeysetError` if it is unusable."""
        self._file.load()

    def _keys(self) -> _Keys:
        keys = self._file.current()
        if keys is None:
            raise KeysetError("no keyset loaded")
        return keys

    def signing_key(self) -> ECKey:
        """The newest (last) key."""
        key = self._keys().private.keys[-1]
        assert isinstance(key, ECKey)
        return key

    def public_keys(self) -> KeySet:
        """Every key's public half (what verifiers get)."""
        return self._keys().public


class KeyRingSource:
    """Core's ``KeySource`` over the key ring, so auth verifies (introspection) exactly like the others."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def key_set(self) -> KeySet:
        """The public keys loaded now."""
        try:
            return self.ring.public_keys()
        except KeysetError as exc:
            raise TokenError("signing keys are not available yet") from exc

    async def refresh(self) -> bool:
        """The ring reloads by itself when the file changes."""
        return False
