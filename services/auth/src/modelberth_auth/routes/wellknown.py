"""Discovery: ``/.well-known/jwks.json`` (public keys) and the authorization server metadata."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from modelberth_auth.deps import AuthorityDep, SettingsDep
from modelberth_auth.keys import ALGORITHM
from modelberth_auth.schemas import ErrorResponse, error_responses
from modelberth_core.security import SCOPES

router = APIRouter(prefix="/.well-known", tags=["discovery"])

JWKS_MAX_AGE_SECONDS = 60
"""Caches may keep the JWKS this long; verifiers refetch on an unknown kid anyway."""


@router.get("/jwks.json", responses=error_responses(ErrorResponse, {503: "signing keys not loaded yet"}))
def jwks(authority: AuthorityDep) -> JSONResponse:
    """The public keys that verify access tokens (never a private parameter)."""
    keys = authority.public_keys()  # KeysetError -> 503 (errors.py)
    return JSONResponse(
        {"keys": [key.as_dict(private=False) for key in keys.keys]},
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"},
    )


def metadata(settings: SettingsDep) -> dict[str, Any]:
    """RFC 8414 authorization server metadata (also served as the OpenID discovery document)."""
    base = settings.issuer.rstrip("/")
    auth_methods = ["client_secret_basic", "client_secret_post"]
    return {
        "issuer": settings.issuer,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": [],
        "scopes_supported": list(SCOPES),
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": ["none", *auth_methods],
        "access_token_signing_alg_values_supported": [ALGORITHM],
        "login_endpoint": f"{base}/auth/login",
    }


@router.get("/openid-configuration")
def openid_configuration(settings: SettingsDep) -> dict[str, Any]:
    """Discovery document: issuer, endpoints, grant types and scopes."""
    return metadata(settings)


@router.get("/oauth-authorization-server")
def oauth_authorization_server(settings: SettingsDep) -> dict[str, Any]:
    """The same metadata at its RFC 8414 location."""
    return metadata(settings)
