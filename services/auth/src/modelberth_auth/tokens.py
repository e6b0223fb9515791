"""Minting access tokens: ES256 JWTs in the RFC 9068 shape (refresh tokens live in ``refresh.py``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

from modelberth_auth.keys import ALGORITHM
from modelberth_core.security import ACCESS_TOKEN_TYPE


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A signed access token and the facts a response needs."""

    value: str
    token_id: str
    expires_in: int
    scope: str


def mint_access_token(
    key: ECKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    scopes: Sequence[str],
    ttl_seconds: int,
    client_id: str | None = None,
    now: int | None = None,
) -> AccessToken:
    """Sign an access token: header alg, kid, ``typ: at+jwt``; claims iss sub aud exp iat nbf jti scope."""
    issued = int(time.time()) if now is None else now
    token_id = secrets.token_urlsafe(16)
    scope = " ".join(scopes)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued + ttl_seconds,
        "iat": issued,
        "nbf": issued,
        "jti": token_id,
        "scope": scope,
    }
    if client_id is not None:
        claims["client_id"] = client_id
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
    value = jwt.encode(header, claims, key, algorithms=[ALGORITHM])
    return AccessToken(value=value, token_id=token_id, expires_in=ttl_seconds, scope=scope)
