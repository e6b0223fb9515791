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


RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
}
CHALLENGE = {"WWW-Authenticate": {"description": "the HTTP Basic challenge", "schema": {"type": "string"}}}


def error_responses(model: type[BaseModel], descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, each with the headers that status carries."""
    headers = {401: CHALLENGE, 429: RETRY_AFTER, 503: RETRY_AFTER}
    responses: dict[int | str, dict[str, Any]] = {}
    for status, text in descriptions.items():
        responses[status] = {"model": model, "description": text}
        if status in headers:
            responses[status]["headers"] = headers[status]
    return responses


LOGIN_ERRORS = error_responses(
    ErrorResponse,
    {
        400: "two Authorization or X-Modelberth-User-Address headers, or a forwarder's "
        "X-Modelberth-User-Address missing or not an IP address",
        401: "wrong username or password, or wrong forwarder credentials",
        403: "the client is not a trusted forwarder",
        413: "request body too large",
        429: "too many failed logins from this address (see Retry-After)",
        503: "signing keys not loaded yet, or the shared session store unavailable (see Retry-After)",
    },
)
"""Error answers of ``POST /auth/login`` (422 for a malformed body comes from FastAPI)."""
LOGIN_ERRORS[401].pop("headers")  # a wrong password has no challenge; wrong forwarder credentials do

OAUTH_ERRORS = error_responses(
    OAuthErrorResponse,
    {
        400: "RFC 6749 §5.2 error",
        401: "invalid_client: client authentication failed or is missing",
        413: "request body too large",
        429: "too many failed authentications from this address (see Retry-After)",
        503: "temporarily_unavailable: the shared session store is unavailable (see Retry-After)",
    },
)
"""Error answers of every ``/oauth/*`` endpoint (RFC 6749 §5.2 shape)."""
TOKEN_ERRORS = {
    **OAUTH_ERRORS,
    **error_responses(
        OAuthErrorResponse,
        {
            503: "temporarily_unavailable: signing keys not loaded yet, or the shared session store "
            "unavailable"
        },
    ),
}

MAX_FIELDS = 16
"""Form fields per request; more are refused unread."""
MAX_VALUE_CHARS = 8192
"""No form parameter (token, secret, scope) is longer than this; longer ones are refused unread."""
MAX_NAME_CHARS = 64
"""No form parameter name is longer than this."""
SCOPE_PATTERN = r"^$|^(predict|models:read|models:admin)( (predict|models:read|models:admin))*$"
"""RFC 6749 §3.3 scope: known scope names separated by one space (empty is the same as absent, §3.2)."""

_VALUE: dict[str, Any] = {"type": "string", "maxLength": MAX_VALUE_CHARS}
_ABSENT: dict[str, Any] = {"type": "string", "maxLength": 0, "description": "must be absent (or empty)"}


def _present(name: str) -> dict[str, Any]:
    """A form sends ``name`` with a value (an empty value is the same as none)."""
    return {"required": [name], "properties": {name: {"minLength": 1}}}


def _form(required: list[str], properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An ``application/x-www-form-urlencoded`` body as our parser reads it: each name at most once,
    unknown names ignored (RFC 6749 §3.1), empty values the same as absent (§3.2); client_id and
    client_secret, where the form has them, together or not at all."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": _VALUE,
        "propertyNames": {"maxLength": MAX_NAME_CHARS},
        "maxProperties": MAX_FIELDS,
    }
    if "client_secret" in properties:
        schema["allOf"] = [
            {"if": _present("client_secret"), "then": _present("client_id")},
            {"if": _present("client_id"), "then": _present("client_secret")},
        ]
    if description:
        schema["description"] = description
    return schema


def _form_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


_CLIENT_POST = {
    "client_id": {**_VALUE, "description": "client_secret_post: the client id (or HTTP Basic, never both)"},
    "client_secret": {**_VALUE, "format": "password", "description": "client_secret_post: the secret"},
}
_SCOPE = {"type": "string", "pattern": SCOPE_PATTERN, "example": "predict models:read"}
_REQUIRED_VALUE = {**_VALUE, "minLength": 1}

TOKEN_FORM: dict[str, Any] = _form_body(
    {
        "oneOf": [
            _form(
                ["grant_type"],
                {
                    "grant_type": {"type": "string", "const": "client_credentials"},
                    "scope": _SCOPE,
                    **_CLIENT_POST,
                },
                "RFC 6749 §4.4: the client authenticates with HTTP Basic or client_id + client_secret.",
            ),
            _form(
                ["grant_type", "refresh_token"],
                {
                    "grant_type": {"type": "string", "const": "refresh_token"},
                    "refresh_token": _REQUIRED_VALUE,
                    "scope": _SCOPE,
                    "client_id": _ABSENT,
                    "client_secret": _ABSENT,
                },
                "RFC 6749 §6: refresh tokens belong to the first-party public client; no client credentials.",
            ),
        ]
    }
)
"""OpenAPI description of the form the token endpoint parses itself (to answer RFC-shaped errors)."""

TOKEN_PARAM_FORM: dict[str, Any] = _form_body(
    _form(
        ["token"],
        {
            "token": _REQUIRED_VALUE,
            "token_type_hint": {
                **_VALUE,
                "examples": ["refresh_token", "access_token"],
                "description": "a hint (RFC 7009 §2.1): every kind of token is looked up whatever it says",
            },
        },
        "A client may authenticate with client_id and client_secret in this form instead of HTTP Basic "
        "(client_secret_post), never with both.",
    )
)
"""OpenAPI description of the introspection and revocation forms."""


SECURITY_SCHEMES: dict[str, Any] = {
    "clientBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "A client's id and secret (RFC 6749 §2.3.1); or client_id and client_secret in the "
        "form (client_secret_post), never both.",
    },
    "forwarderBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "The UI's own client (marked forwards_user_address): with it, "
        "X-Modelberth-User-Address names the person's address that failed logins count against.",
    },
    "accessToken": {
        "type": "oauth2",
        "description": "The ES256 access tokens this server issues; the other services accept them as "
        "`Authorization: Bearer`. People get theirs from POST /auth/login.",
        "flows": {
            "clientCredentials": {
                "tokenUrl": "/oauth/token",
                "refreshUrl": "/oauth/token",
                "scopes": {
                    "predict": "make predictions",
                    "models:read": "list models, read their cards and examples",
                    "models:admin": "reload models",
                },
            }
        },
    },
}
"""``components.securitySchemes`` of the OpenAPI document (``app.py`` adds them)."""

OPTIONAL_CLIENT: dict[str, Any] = {"security": [{}, {"clientBasic": []}]}
REQUIRED_CLIENT: dict[str, Any] = {"security": [{"clientBasic": []}]}
FORWARDER: dict[str, Any] = {
    "security": [{}, {"forwarderBasic": []}],
    "parameters": [
        {
            "name": "X-Modelberth-User-Address",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "The person's IP address, believed only with forwarderBasic credentials (then "
            "required, one IP address); ignored without them.",
        }
    ],
}
