"""Token verification shared by every service: forged tokens are refused, JWKS keys are cached sanely."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from modelberth_core.security import (
    JwksKeySource,
    Principal,
    StaticKeySource,
    TokenError,
    TokenVerifier,
    bearer_token,
    www_authenticate,
)

ISSUER, AUDIENCE = "http://127.0.0.1:8001", "modelberth"


def new_key() -> ECKey:
    key = ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"}, private=True)
    key.ensure_kid()
    return key


def public(*keys: ECKey) -> KeySet:
    return KeySet.import_key_set({"keys": [k.as_dict(private=False) for k in keys]})  # type: ignore[list-item]


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "jti": "t1",
        "scope": "predict models:read",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: ECKey, body: dict[str, Any] | None = None, **header: Any) -> str:
    head = {"alg": "ES256", "kid": key.kid, "typ": "at+jwt", **header}
    head = {k: v for k, v in head.items() if v is not None}
    return jwt.encode(
        head, body if body is not None else claims(), key, algorithms=["ES256"], default_type=None
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}.{b64(signature)}"


def verify(verifier: TokenVerifier, token: str) -> Principal:
    return asyncio.run(verifier.verify(token))


@pytest.fixture
def key() -> ECKey:
    return new_key()


@pytest.fixture
def verifier(key: ECKey) -> TokenVerifier:
    return TokenVerifier(StaticKeySource(public(key)), issuer=ISSUER, audience=AUDIENCE)


def test_valid_token(key: ECKey, verifier: TokenVerifier) -> None:
    principal = verify(verifier, sign(key))
    assert principal.subject == "alice"
    assert principal.scopes == {"predict", "models:read"}
    assert principal.token_id == "t1"
    assert principal.has_scope("predict")
    assert not principal.has_scope("models:admin")


def _hs256_with_public_key(key: ECKey) -> str:
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    header = {"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    pem = key.as_pem(private=False)
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _wrong_signature(key: ECKey) -> str:
    impostor = new_key()
    return sign(impostor, kid=key.kid)  # claims to be the real key


def _nested_header() -> str:
    return b64(b"[" * 3000 + b"]" * 3000) + "." + b64(b"{}") + "." + b64(b"x")


FORGED: dict[str, Any] = {
    "alg none": lambda k: unsigned({"alg": "none", "kid": k.kid, "typ": "at+jwt"}, claims()),
    "alg None spelled differently": lambda k: unsigned(
        {"alg": "nOnE", "kid": k.kid, "typ": "at+jwt"}, claims()
    ),
    "HS256 signed with the public key": _hs256_with_public_key,
    "RS256 (not in the allow-list)": lambda k: unsigned(
        {"alg": "RS256", "kid": k.kid, "typ": "at+jwt"}, claims()
    ),
    "wrong signature (other key, same kid)": _wrong_signature,
    "signature of another token": lambda k: ".".join(
        sign(k).split(".")[:2] + sign(k, claims(sub="bob")).split(".")[2:]
    ),
    "wrong iss": lambda k: sign(k, claims(iss="https://evil.example")),
    "missing iss": lambda k: sign(k, claims(iss=None)),
    "wrong aud": lambda k: sign(k, claims(aud="other-api")),
    "missing aud": lambda k: sign(k, claims(aud=None)),
    "expired": lambda k: sign(k, claims(exp=int(time.time()) - 120)),
    "not yet valid": lambda k: sign(k, claims(nbf=int(time.time()) + 600)),
    "issued in the future": lambda k: sign(k, claims(iat=int(time.time()) + 600)),
    "missing exp": lambda k: sign(k, claims(exp=None)),
    "exp not a number": lambda k: sign(k, claims(exp="tomorrow")),
    "missing sub": lambda k: sign(k, claims(sub=None)),
    "scope not a string": lambda k: sign(k, claims(scope=["models:admin"])),
    "unknown kid": lambda _: sign(new_key()),
    "missing kid": lambda k: sign(k, kid=None),
    "typ JWT instead of at+jwt": lambda k: sign(k, typ="JWT"),
    "missing typ": lambda k: sign(k, typ=None),
    "truncated": lambda k: sign(k)[:-10],
    "two segments": lambda k: ".".join(sign(k).split(".")[:2]),
    "garbage": lambda _: "not-a-token",
    "garbage with dots": lambda _: "a.b.c",
    "empty": lambda _: "",
    "non-ascii": lambda _: "é.é.é",
    "deeply nested header": lambda _: _nested_header(),
    "oversized": lambda k: sign(k, claims(pad="x" * 9000)),
    "payload is a list": lambda k: (
        jwt.encode(
            {"alg": "ES256", "kid": k.kid, "typ": "at+jwt"}, {}, k, algorithms=["ES256"], default_type=None
        ).split(".")[0]
        + "."
        + b64(b"[1,2]")
        + ".AAAA"
    ),
}


@pytest.mark.parametrize("name", list(FORGED))
def test_forged_token_rejected(name: str, key: ECKey, verifier: TokenVerifier) -> None:
    forged = FORGED[name](key)
    with pytest.raises(TokenError) as caught:
        verify(verifier, forged)
    assert caught.value.description  # a reason for the 401, never the token


def test_token_signed_by_removed_key_is_rejected(key: ECKey) -> None:
    old, new = key, new_key()
    source = StaticKeySource(public(old, new))
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    token = sign(old)
    assert verify(verifier, token).subject == "alice"  # verified (and cached)
    source.keys = public(new)  # the old key is removed from the keyset
    with pytest.raises(TokenError, match="unknown key"):
        verify(verifier, token)
    assert verify(verifier, sign(new)).subject == "alice"


def test_cache_does_not_outlive_expiry(key: ECKey, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(StaticKeySource(public(key)), issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0)
    now = int(time.time())
    token = sign(key, claims(exp=now + 2))
    assert verify(verifier, token).subject == "alice"
    assert len(verifier._cache) == 1
    monkeypatch.setattr(time, "time", lambda: now + 10.0)  # later, for the cache and for joserfc
    with pytest.raises(TokenError, match=r"expired|exp"):
        verify(verifier, token)


def test_cache_is_bounded(key: ECKey) -> None:
    verifier = TokenVerifier(StaticKeySource(public(key)), issuer=ISSUER, audience=AUDIENCE, cache_size=3)
    for i in range(10):
        verify(verifier, sign(key, claims(jti=f"t{i}")))
    assert len(verifier._cache) <= 3


@pytest.mark.parametrize("algorithms", [[], ["none"], ["HS256"], ["ES256", "HS512"], ["foo"]])
def test_allow_list_must_be_asymmetric(algorithms: list[str], key: ECKey) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        TokenVerifier(StaticKeySource(public(key)), issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms)


def test_other_asymmetric_algorithm_when_allowed() -> None:
    rsa = RSAKey.generate_key(2048, {"alg": "RS256"}, private=True)
    rsa.ensure_kid()
    keys = KeySet.import_key_set({"keys": [rsa.as_dict(private=False)]})  # type: ignore[list-item]
    verifier = TokenVerifier(StaticKeySource(keys), issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])
    token = jwt.encode({"alg": "RS256", "kid": rsa.kid, "typ": "at+jwt"}, claims(), rsa, algorithms=["RS256"])
    assert verify(verifier, token).subject == "alice"


def test_aud_list_and_typ_media_type(key: ECKey, verifier: TokenVerifier) -> None:
    token = sign(key, claims(aud=["other", AUDIENCE]), typ="application/at+jwt")
    assert verify(verifier, token).subject == "alice"


# -- bearer header and challenge ----------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "Token abc"])
def test_bearer_token_rejects(header: str | None) -> None:
    with pytest.raises(TokenError):
        bearer_token(header)


def test_bearer_token_and_challenge() -> None:
    assert bearer_token("bearer  abc.def.ghi ") == "abc.def.ghi"
    value = www_authenticate("insufficient_scope", 'needs "predict"', scope="predict")
    assert (
        value == 'Bearer error="insufficient_scope", error_description="needs \'predict\'", scope="predict"'
    )


# -- JWKS key source ----------------------------------------------------------------------------------


class FakeAuth:
    """An in-memory JWKS endpoint that counts requests and can go down."""

    def __init__(self, *keys: ECKey) -> None:
        self.keys = list(keys)
        self.calls = 0
        self.down = False
        self.body: Any = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.down:
            return httpx.Response(503, json={"detail": "down"})
        if self.body is not None:
            return httpx.Response(200, json=self.body)
        return httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in self.keys]})


def jwks_verifier(auth: FakeAuth, **kwargs: Any) -> tuple[JwksKeySource, TokenVerifier]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(auth.handler))
    source = JwksKeySource("http://auth/.well-known/jwks.json", client=client, **kwargs)
    return source, TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE, cache_size=1)


def test_jwks_fetched_once_and_cached(key: ECKey) -> None:
    auth = FakeAuth(key)
    source, verifier = jwks_verifier(auth)

    async def run() -> None:
        for i in range(5):
            await verifier.verify(sign(key, claims(jti=f"t{i}")))

    asyncio.run(run())
    assert auth.calls == 1
    assert source.loaded


def test_unknown_kid_refetches_at_most_once_per_interval(key: ECKey) -> None:
    auth = FakeAuth(key)
    _, verifier = jwks_verifier(auth, min_refresh_seconds=30)
    rotated = new_key()

    async def run() -> None:
        await verifier.verify(sign(key))
        auth.keys.append(rotated)  # auth rotates: the new kid is found by one refetch
        await verifier.verify(sign(rotated))
        assert auth.calls == 2
        for _ in range(20):  # a flood of forged kids does not reach auth
            with pytest.raises(TokenError, match="unknown key"):
                await verifier.verify(sign(new_key()))
        assert auth.calls == 2

    asyncio.run(run())


def test_cached_keys_survive_auth_outage(key: ECKey) -> None:
    auth = FakeAuth(key)
    _, verifier = jwks_verifier(auth, min_refresh_seconds=0, max_age_seconds=0)

    async def run() -> None:
        await verifier.verify(sign(key))
        auth.down = True
        assert (await verifier.verify(sign(key, claims(jti="later")))).subject == "alice"
        with pytest.raises(TokenError, match="unknown key"):
            await verifier.verify(sign(new_key()))

    asyncio.run(run())
    assert auth.calls >= 2


def test_auth_down_at_start_fails_fast_and_recovers(key: ECKey) -> None:
    auth = FakeAuth(key)
    auth.down = True
    source, verifier = jwks_verifier(auth)

    async def run() -> None:
        for _ in range(10):
            with pytest.raises(TokenError, match="not available"):
                await verifier.verify(sign(key))
        assert auth.calls == 1  # retried at most once a second, not once per request
        auth.down = False
        source._last_attempt -= 2
        assert (await verifier.verify(sign(key))).subject == "alice"

    asyncio.run(run())


@pytest.mark.parametrize(
    "body",
    [
        {"nokeys": []},
        {"keys": []},
        {"keys": "x"},
        [1, 2],
        "text",
        {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
    ],
)
def test_unusable_jwks_is_a_token_error(body: Any, key: ECKey) -> None:
    auth = FakeAuth(key)
    auth.body = body
    _, verifier = jwks_verifier(auth)
    with pytest.raises(TokenError, match="not available"):
        verify(verifier, sign(key))


def test_stale_keys_are_refreshed_so_removed_keys_stop_verifying(key: ECKey) -> None:
    auth = FakeAuth(key)
    _, verifier = jwks_verifier(auth, min_refresh_seconds=0, max_age_seconds=0)
    replacement = new_key()
    token = sign(key)

    async def run() -> None:
        await verifier.verify(token)
        auth.keys = [replacement]  # key removed at auth
        with pytest.raises(TokenError, match="unknown key"):
            await verifier.verify(token)
        assert (await verifier.verify(sign(replacement))).subject == "alice"

    asyncio.run(run())


# -- ambiguous credentials (RFC 6750 §3.1: more than one way of sending a token is invalid_request) ---------

DUPLICATES = {
    "same value twice": ["Bearer a.b.c", "Bearer a.b.c"],
    "valid then garbage": ["Bearer a.b.c", "garbage"],
    "garbage then valid": ["garbage", "Bearer a.b.c"],
    "basic and bearer": ["Basic dXNlcjpwYXNz", "Bearer a.b.c"],
    "bearer and basic": ["Bearer a.b.c", "Basic dXNlcjpwYXNz"],
    "valid then empty": ["Bearer a.b.c", ""],
    "three": ["Bearer a.b.c", "Bearer a.b.c", "Bearer x.y.z"],
    "merged by a proxy": ["Bearer a.b.c, Bearer x.y.z"],
    "merged with basic": ["Bearer a.b.c,Basic dXNlcjpwYXNz"],
}


@pytest.mark.parametrize("values", list(DUPLICATES.values()), ids=list(DUPLICATES))
def test_more_than_one_credential_is_an_invalid_request(values: list[str]) -> None:
    with pytest.raises(TokenError) as caught:
        bearer_token(values)
    assert (caught.value.error, caught.value.status_code) == ("invalid_request", 400)
    assert caught.value.description == "more than one credential in the Authorization header(s)"


@pytest.mark.parametrize("values", [[], [""], ["Bearer"], ["Basic abc"], ["Token abc"]])
def test_one_missing_or_wrong_credential_is_still_invalid_token(values: list[str]) -> None:
    with pytest.raises(TokenError) as caught:
        bearer_token(values)
    assert (caught.value.error, caught.value.status_code) == ("invalid_token", 401)


def test_bearer_token_takes_the_header_list_or_one_value() -> None:
    assert bearer_token(["Bearer a.b.c"]) == "a.b.c"
    assert bearer_token("Bearer a.b.c") == "a.b.c"
