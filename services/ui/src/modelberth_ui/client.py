"""A typed HTTP client for the auth and inference services: the only way the UI reaches a model.

Every call has an explicit timeout. Errors come back as the typed exceptions below, so handlers can tell a
wrong password from an expired token, a bad row or a service that is down, and word each for a person.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self
from urllib.parse import quote_plus

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from modelberth_core.contract import NAME_PATTERN, VERSION_PATTERN, ModelCard
from modelberth_core.store import ALIAS_PATTERN
from modelberth_ui.settings import Settings

USER_AGENT = "modelberth-ui"
USER_ADDRESS_HEADER = "X-Modelberth-User-Address"
"""The browser's address, sent to ``/auth/login``; auth believes it only with the UI's client credentials."""


class ApiError(Exception):
    """An auth or inference call did not give the answer asked for."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail


class ServiceUnavailableError(ApiError):
    """The service could not be reached, timed out or failed (5xx)."""


class InvalidCredentialsError(ApiError):
    """Login refused: wrong username or password (401/400 from ``/auth/login``)."""


class ClientRejectedError(ApiError):
    """Auth refused the UI's own client credentials (``invalid_client``): the UI is misconfigured."""


class RateLimitedError(ApiError):
    """Too many attempts (429); ``retry_after`` is the wait the service asked for, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None, status_code: int = 429) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class SessionExpiredError(ApiError):
    """The access token was refused (401): expired, revoked or signed by a key that was rotated away."""


class ForbiddenError(ApiError):
    """The token lacks the scope this call needs (403)."""


class NotFoundError(ApiError):
    """No such model, version or example (404)."""


class PayloadTooLargeError(ApiError):
    """The request body or the number of instances is above the service's limit (413)."""


class InvalidInputError(ApiError):
    """The service rejected the input (400/422); ``problems`` say which row and field, when it said so."""

    def __init__(self, message: str, *, status_code: int, detail: Any) -> None:
        super().__init__(message, status_code=status_code, detail=detail)
        self.problems = parse_problems(detail)


class UnexpectedResponseError(ApiError):
    """The service answered with something this client does not understand."""


class InputProblem(BaseModel):
    """One validation failure: the instance (0-based, within the request) and field it names, if any."""

    model_config = ConfigDict(frozen=True)

    row: int | None
    field: str | None
    message: str


class TokenGrant(BaseModel):
    """The token response of ``/auth/login`` (RFC 6749 §5.1, plus a refresh token)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int | None = None
    scope: str = ""
    refresh_token: str | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        """The granted scopes, split."""
        return tuple(self.scope.split())


class ModelSummary(BaseModel):
    """One model the inference service serves, as listed by ``GET /v1/models``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    version: str | None = None
    task: str | None = None


class PredictResponse(BaseModel):
    """The answer of a predict call: one prediction (and probability map) per instance."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    version: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    warnings: list[Any] = []
    index: int | None = None
    """Set by the example endpoint: which held-out row was predicted."""
    instance: dict[str, Any] | None = None
    """Set by the example endpoint: the held-out row itself."""


class VersionInfo(BaseModel):
    """One published version of a model, as listed by ``GET /v1/models/{name}/versions``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str = Field(pattern=VERSION_PATTERN)
    created_at: datetime | None = None
    metric: str | None = Field(default=None, max_length=200)
    """The primary metric's name."""
    score: float | None = None
    """The primary metric on the version's held-out test set."""
    greater_is_better: bool | None = None
    digest: str | None = Field(default=None, max_length=200)
    """The image digest in a registry store; None in a directory store."""


class ShadowStats(BaseModel):
    """What shadow traffic has done so far for a champion/challenger pair (absent when not exposed)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool | None = None
    status: str | None = Field(default=None, max_length=200)
    """``active``, ``incompatible`` or ``off``."""
    reason: str | None = Field(default=None, max_length=2000)
    champion: str | None = Field(default=None, pattern=VERSION_PATTERN)
    challenger: str | None = Field(default=None, pattern=VERSION_PATTERN)
    compared_rows: int | None = Field(default=None, ge=0)
    agreeing_rows: int | None = Field(default=None, ge=0)
    agreement: float | None = Field(default=None, ge=0.0, le=1.0)


class ModelVersions(BaseModel):
    """Every version of a model and the aliases pointing at them (``GET /v1/models/{name}/versions``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, validation_alias=AliasChoices("name", "model"))
    aliases: dict[str, str] = {}
    """Alias -> version (``champion``, ``challenger``, ``latest`` and any a user named)."""
    versions: list[VersionInfo]
    shadow: ShadowStats | None = None

    @field_validator("aliases")
    @classmethod
    def _store_names(cls, aliases: dict[str, str]) -> dict[str, str]:
        # Shown on the page: an alias or version the store could not hold is a broken answer, not text.
        for alias, version in aliases.items():
            if not re.match(ALIAS_PATTERN, alias) or not re.match(VERSION_PATTERN, version):
                raise ValueError("not an alias pointing at a version id")
        return aliases

    def aliases_of(self, version: str) -> list[str]:
        """The aliases pointing at ``version``, champion and challenger first, then by name."""
        order = {"champion": 0, "challenger": 1, "latest": 2}
        names = [a for a, v in self.aliases.items() if v == version]
        return sorted(names, key=lambda a: (order.get(a, 3), a))


class AliasMove(BaseModel):
    """One alias move of a model's history (``GET /v1/models/{name}/history``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    alias: str = Field(pattern=ALIAS_PATTERN)
    from_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    to_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    """None: the move removed the alias (promoting the challenger removes ``challenger``)."""
    at: datetime
    actor: str = Field(max_length=256)
    """The OS user or token subject that moved it."""
    reason: str = Field(max_length=64)
    """``publish``, ``gate``, ``promote`` or ``rollback``."""
    detail: str | None = Field(default=None, max_length=2000)


class ModelHistory(BaseModel):
    """The newest alias moves of a model, newest first, and how many the store holds."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, validation_alias=AliasChoices("name", "model"))
    total: int = Field(ge=0)
    events: list[AliasMove]


class ExampleRow(BaseModel):
    """A held-out example: its index and feature values."""

    model_config = ConfigDict(frozen=True)

    index: int
    instance: dict[str, Any]


def parse_problems(detail: Any) -> list[InputProblem]:
    """Turn a ``{"detail": [...]}`` validation body into problems naming instance and field when it can.

    FastAPI-style locations look like ``["body", "instances", 3, "petal_length"]``: the integer after
    ``instances`` is the instance, the first string after it the field.
    """
    if isinstance(detail, str):
        return [InputProblem(row=None, field=None, message=detail)]
    if isinstance(detail, dict):
        detail = [detail]
    if not isinstance(detail, list):
        return []
    return [_problem(item) for item in detail]


def _problem(item: Any) -> InputProblem:
    """One entry of a validation body: its row and field from the named keys, else from its location."""
    if not isinstance(item, dict):
        return InputProblem(row=None, field=None, message=str(item))
    loc = item.get("loc") or []
    loc = list(loc) if isinstance(loc, list | tuple) else [loc]
    row = next((item[k] for k in ("instance", "row") if isinstance(item.get(k), int)), None)
    field = next((item[k] for k in ("field", "feature") if isinstance(item.get(k), str)), None)
    start = loc.index("instances") + 1 if "instances" in loc else 0
    for part in loc[start:]:
        if isinstance(part, int) and not isinstance(part, bool) and row is None:
            row = part
        elif isinstance(part, str) and part not in ("body", "instances") and field is None:
            field = part
    message = str(item.get("msg") or item.get("message") or item.get("detail") or "invalid value")
    return InputProblem(row=row, field=field, message=message)


def _error_message(response: httpx.Response) -> tuple[str, Any]:
    """The human part of an error body: ``detail`` (ours), ``error_description``/``error`` (OAuth)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:200] or f"HTTP {response.status_code}"), None
    if isinstance(body, dict):
        if "detail" in body:
            detail = body["detail"]
            if isinstance(detail, str):
                return detail, detail
            problems = parse_problems(detail)
            return ("; ".join(p.message for p in problems) or f"HTTP {response.status_code}"), detail
        if "error" in body:
            text = str(body.get("error_description") or body["error"])
            return text, body
    return f"HTTP {response.status_code}", body


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for lockouts, and a person only needs "later"


def _model_path(name: str, *rest: str) -> str:
    # Names come from a dropdown a person (or a crafted request) controls: never let one escape the path.
    if not re.match(NAME_PATTERN, name):
        raise NotFoundError(f"no model named {name!r}", status_code=404)
    return "/".join(["/v1/models", name, *rest])


def _card_of(body: Any, what: str) -> ModelCard:
    if isinstance(body, dict) and isinstance(body.get("card"), dict):
        body = body["card"]
    if not isinstance(body, dict):
        raise UnexpectedResponseError("the model card has an unexpected shape")
    # Tolerate extra top-level fields the service may add (status, loaded_at...); the card is strict.
    known = {k: v for k, v in body.items() if k in ModelCard.model_fields}
    try:
        return ModelCard.model_validate(known)
    except ValidationError as exc:
        raise UnexpectedResponseError(f"the card of {what} is not a valid model card") from exc


def basic_credentials(client_id: str, client_secret: str) -> str:
    """``Basic base64(id:secret)``, each form-urlencoded first (RFC 6749 §2.3.1)."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


@dataclass(frozen=True)
class Timeouts:
    """Seconds the client waits: to connect, for most calls, for a prediction, for a readiness probe."""

    connect: float = 3.0
    request: float = 10.0
    predict: float = 30.0
    readiness: float = 2.0


class ModelberthClient:
    """Sync client for auth (``/auth/login``, ``/oauth/revoke``) and inference (``/v1/models...``).

    Thread-safe (Gradio runs handlers in a thread pool); one instance per app, closed on shutdown. With a
    ``client_secret`` the UI is a confidential client: logins carry its credentials and the browser's
    address, so auth throttles failed logins per person and address rather than per UI.
    """

    def __init__(
        self,
        auth_url: str,
        inference_url: str,
        *,
        timeouts: Timeouts | None = None,
        client_id: str = "modelberth-ui",
        client_secret: SecretStr | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Kept as a SecretStr until the header is built for a request, so no repr or log shows it.
        self._client_id = client_id
        self._client_secret = client_secret
        headers = {"user-agent": USER_AGENT, "accept": "application/json"}
        limits = timeouts or Timeouts()
        connect_timeout = limits.connect
        timeout = httpx.Timeout(limits.request, connect=connect_timeout)
        self._auth = httpx.Client(
            base_url=auth_url.rstrip("/"), timeout=timeout, headers=headers, transport=transport
        )
        self._inference = httpx.Client(
            base_url=inference_url.rstrip("/"), timeout=timeout, headers=headers, transport=transport
        )
        self._predict_timeout = httpx.Timeout(limits.predict, connect=connect_timeout)
        self._readiness_timeout = httpx.Timeout(limits.readiness, connect=min(connect_timeout, 2.0))

    @classmethod
    def from_settings(cls, settings: Settings, transport: httpx.BaseTransport | None = None) -> Self:
        """A client aimed at the URLs and timeouts in ``settings``."""
        return cls(
            settings.auth_url,
            settings.inference_url,
            timeouts=Timeouts(
                connect=settings.connect_timeout_seconds,
                request=settings.request_timeout_seconds,
                predict=settings.predict_timeout_seconds,
                readiness=settings.readiness_timeout_seconds,
            ),
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            transport=transport,
        )

    @property
    def confidential(self) -> bool:
        """True when the UI authenticates itself to auth (a client secret is configured)."""
        return self._client_secret is not None

    def close(self) -> None:
        """Close both connection pools."""
        self._auth.close()
        self._inference.close()

    # --- transport --------------------------------------------------------------------------------

    def _send(
        self, http: httpx.Client, service: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            return http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServiceUnavailableError(f"the {service} service did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"the {service} service is not reachable") from exc

    def _checked(self, response: httpx.Response, service: str) -> httpx.Response:
        status = response.status_code
        if status < 400:
            return response
        message, detail = _error_message(response)
        if status == 401:
            raise SessionExpiredError(message, status_code=status, detail=detail)
        if status == 403:
            raise ForbiddenError(message, status_code=status, detail=detail)
        if status == 404:
            raise NotFoundError(message, status_code=status, detail=detail)
        if status == 413:
            raise PayloadTooLargeError(message, status_code=status, detail=detail)
        if status == 429:
            raise RateLimitedError(message, retry_after=_retry_after(response))
        if status in (400, 422):
            raise InvalidInputError(message, status_code=status, detail=detail)
        if status >= 500:
            raise ServiceUnavailableError(
                f"the {service} service failed ({status}): {message}", status_code=status, detail=detail
            )
        raise UnexpectedResponseError(message, status_code=status, detail=detail)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise UnexpectedResponseError(
                f"expected JSON from {response.request.url.path}", status_code=response.status_code
            ) from exc

    def _get_inference(self, token: str, path: str, accept: str = "application/json") -> httpx.Response:
        headers = {**_bearer(token), "accept": accept}
        response = self._send(self._inference, "inference", "GET", path, headers=headers)
        return self._checked(response, "inference")

    # --- auth -------------------------------------------------------------------------------------

    def login(self, username: str, password: str, user_address: str | None = None) -> TokenGrant:
        """Exchange a username and password for tokens; raise InvalidCredentialsError when refused.

        ``user_address`` is the browser's address; it is sent only with the UI's client credentials, the
        one case where auth believes it.
        """
        headers: dict[str, str] = {}
        if self._client_secret is not None:
            headers["authorization"] = basic_credentials(
                self._client_id, self._client_secret.get_secret_value()
            )
            if user_address:
                headers[USER_ADDRESS_HEADER] = user_address
        response = self._send(
            self._auth,
            "auth",
            "POST",
            "/auth/login",
            json={"username": username, "password": password},
            headers=headers,
        )
        if response.status_code in (400, 401, 403, 422):
            message, detail = _error_message(response)
            if isinstance(detail, dict) and detail.get("error") == "invalid_client":
                raise ClientRejectedError(
                    "auth refused the UI's client credentials", status_code=response.status_code
                )
            raise InvalidCredentialsError(message, status_code=response.status_code, detail=detail)
        self._checked(response, "auth")
        try:
            return TokenGrant.model_validate(self._json(response))
        except ValidationError as exc:
            raise UnexpectedResponseError("the auth service sent no access token") from exc

    def revoke(self, token: str, token_type_hint: str = "refresh_token") -> None:  # noqa: S107
        """Revoke a token (RFC 7009); the service answers 200 even for unknown tokens."""
        response = self._send(
            self._auth,
            "auth",
            "POST",
            "/oauth/revoke",
            data={"token": token, "token_type_hint": token_type_hint},
        )
        self._checked(response, "auth")

    # --- inference --------------------------------------------------------------------------------

    def list_models(self, token: str) -> list[ModelSummary]:
        """The models inference serves, each with the version it serves now."""
        body = self._json(self._get_inference(token, "/v1/models"))
        items = body
        if isinstance(body, dict):
            items = body.get("models", body.get("data"))
        if not isinstance(items, list):
            raise UnexpectedResponseError("the model list has an unexpected shape")
        summaries: list[ModelSummary] = []
        for item in items:
            if isinstance(item, str):
                summaries.append(ModelSummary(name=item))
                continue
            if isinstance(item, dict) and "name" not in item and "id" in item:
                item = {**item, "name": item["id"]}
            try:
                summaries.append(ModelSummary.model_validate(item))
            except ValidationError as exc:
                raise UnexpectedResponseError("the model list has an unexpected shape") from exc
        return summaries

    def get_card(self, token: str, name: str) -> ModelCard:
        """The model card (``model.json``) of the version inference serves for ``name``."""
        return _card_of(self._json(self._get_inference(token, _model_path(name))), name)

    def list_versions(self, token: str, name: str) -> ModelVersions:
        """Every version of ``name`` with its primary test score, and the aliases (scope ``models:read``).

        A NotFoundError when the model is unknown or the inference does not list versions at all.
        """
        body = self._json(self._get_inference(token, _model_path(name, "versions")))
        try:
            return ModelVersions.model_validate(body)
        except ValidationError as exc:
            raise UnexpectedResponseError(f"the versions of {name} have an unexpected shape") from exc

    def get_history(self, token: str, name: str, limit: int = 50) -> ModelHistory:
        """The ``limit`` newest alias moves of ``name``, newest first (scope ``models:read``).

        A NotFoundError when the model is unknown or the inference serves no history.
        """
        path = _model_path(name, "history") + f"?limit={max(1, min(int(limit), 500))}"
        body = self._json(self._get_inference(token, path))
        try:
            return ModelHistory.model_validate(body)
        except ValidationError as exc:
            raise UnexpectedResponseError(f"the history of {name} has an unexpected shape") from exc

    def get_version_card(self, token: str, name: str, version: str) -> ModelCard:
        """The card of one version of ``name``, by id or alias (``challenger``), served or not; reading it
        loads nothing in the inference. A NotFoundError when there is no such model or version."""
        if not re.match(VERSION_PATTERN, version) and not re.match(ALIAS_PATTERN, version):
            raise NotFoundError(f"no version or alias named {version!r}", status_code=404)
        body = self._json(self._get_inference(token, _model_path(name, "versions", version, "card")))
        return _card_of(body, f"{name} {version}")

    def predict(self, token: str, name: str, instances: list[dict[str, Any]]) -> PredictResponse:
        """Predict ``instances`` (feature name -> value) with the served version of ``name``."""
        response = self._send(
            self._inference,
            "inference",
            "POST",
            _model_path(name, "predict"),
            json={"instances": instances},
            headers=_bearer(token),
            timeout=self._predict_timeout,
        )
        result = self._prediction(self._checked(response, "inference"))
        if len(result.predictions) != len(instances):
            raise UnexpectedResponseError(
                f"asked for {len(instances)} predictions, got {len(result.predictions)}"
            )
        return result

    def get_example(self, token: str, name: str, index: int) -> ExampleRow:
        """Held-out example ``index`` (0-based row of ``examples.csv``)."""
        body = self._json(self._get_inference(token, _model_path(name, "examples", str(int(index)))))
        if isinstance(body, dict):
            for key in ("instance", "features", "row", "values"):
                if isinstance(body.get(key), dict):
                    return ExampleRow(index=index, instance=body[key])
            return ExampleRow(index=index, instance={k: v for k, v in body.items() if k != "index"})
        raise UnexpectedResponseError("the example has an unexpected shape")

    def predict_example(self, token: str, name: str, index: int) -> PredictResponse:
        """Predict held-out example ``index`` on the service side."""
        response = self._send(
            self._inference,
            "inference",
            "POST",
            _model_path(name, "examples", str(int(index)), "predict"),
            headers=_bearer(token),
            timeout=self._predict_timeout,
        )
        return self._prediction(self._checked(response, "inference"))

    def get_report(self, token: str, name: str) -> str:
        """The HTML training report of the served version (plots embedded as data URIs)."""
        response = self._get_inference(token, _model_path(name, "report"), accept="text/html")
        return response.text

    def _prediction(self, response: httpx.Response) -> PredictResponse:
        try:
            return PredictResponse.model_validate(self._json(response))
        except ValidationError as exc:
            raise UnexpectedResponseError("the prediction has an unexpected shape") from exc

    # --- probes -----------------------------------------------------------------------------------

    def readiness(self) -> dict[str, str]:
        """``{"auth": "ready" | reason, "inference": ...}`` from each service's ``/readyz``."""
        status: dict[str, str] = {}
        for service, http in (("auth", self._auth), ("inference", self._inference)):
            try:
                response = http.get("/readyz", timeout=self._readiness_timeout)
            except httpx.HTTPError as exc:
                status[service] = f"unreachable ({type(exc).__name__})"
                continue
            status[service] = "ready" if response.status_code == 200 else f"HTTP {response.status_code}"
        return status


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
