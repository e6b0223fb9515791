"""Request and response models of the auth service."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from modelberth_auth.principals import MAX_PASSWORD_CHARS

Username = Annotated[str, StringConstraints(min_length=1, max_length=64, strict=True)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_CHARS, strict=True)]


class LoginRequest(BaseModel):
    """``POST /auth/login``: a person's username and password."""

    model_config = ConfigDict(extra="forbid", strict=True)

    username: Username
    password: Password


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 token response."""

    access_token: str
    token_type: str = Field(default="Bearer", examples=["Bearer"])
    expires_in: int = Field(description="Seconds until the access token expires.")
    scope: str = Field(description="Space-separated scopes granted.")
    refresh_token: str | None = Field(default=None, description="Only from /auth/login and refresh_token.")


class OAuthErrorResponse(BaseModel):
    """RFC 6749 §5.2 error response."""

    error: str
    error_description: str


class ErrorResponse(BaseModel):
    """Every other error: ``{"detail": ...}``."""

    detail: Any


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2; only ``active`` when the token is not active."""

    model_config = ConfigDict(extra="allow")

    active: bool


LOGIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "two Authorization or X-Modelberth-User-Address headers, or a forwarder's "
        "X-Modelberth-User-Address missing or not an IP address",
    },
    401: {
        "model": ErrorResponse,
        "description": "wrong username or password, or forwarder credentials",
    },
    403: {"model": ErrorResponse, "description": "the client is not a trusted forwarder"},
    429: {"model": ErrorResponse, "description": "too many failed logins (see Retry-After)"},
}
"""Error answers of ``POST /auth/login`` (422 for a malformed body comes from FastAPI)."""

TOKEN_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials", "refresh_token"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string", "format": "password"},
                        "scope": {"type": "string", "example": "predict models:read"},
                        "refresh_token": {"type": "string"},
                    },
                }
            }
        },
    }
}
"""OpenAPI description of the form the token endpoint parses itself (to answer RFC-shaped errors)."""

TOKEN_PARAM_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {
                        "token": {"type": "string"},
                        "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string", "format": "password"},
                    },
                }
            }
        },
    }
}
"""OpenAPI description of the introspection and revocation forms."""
