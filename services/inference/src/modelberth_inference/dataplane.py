"""The data plane: what every transport (V1 REST, V2 REST, V2 gRPC) calls, in one place.

One request walks top-down: authorise (the token's scope) → resolve the model and its version or alias
→ admit it to the model's bounded queue (429 when full) → validate against the card (:mod:`.validation`
for V1 records, :mod:`.tensors` for V2 tensors) → micro-batch and predict (:mod:`.batching`,
:mod:`.served`, :mod:`.model`) → record it (per-model metrics, the prediction log; shadowing rides on the
batch in :mod:`.served`). Transports only decode their wire format into an :class:`~.types.InferRequest`
and encode the :class:`~.types.InferResponse`; errors are :mod:`.errors` classes each transport maps once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from modelberth_core.logging import request_id_var
from modelberth_core.security import JwksKeySource, Principal, TokenError, TokenVerifier, bearer_token
from modelberth_core.security import www_authenticate as _www_authenticate
from modelberth_inference import __version__
from modelberth_inference.batching import PredictionFailed
from modelberth_inference.errors import (
    BadRequest,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from modelberth_inference.metrics import InferenceMetrics
from modelberth_inference.model import Prediction
from modelberth_inference.prediction_log import PredictionLog
from modelberth_inference.registry import ModelRegistry, Served
from modelberth_inference.settings import Settings
from modelberth_inference.tensors import tensor_columns
from modelberth_inference.types import (
    OUTPUTS,
    InferRequest,
    InferResponse,
    ModelMetadata,
    Records,
    RepositoryEntry,
    TensorMetadata,
)
from modelberth_inference.validation import (
    MAX_ERRORS,
    Columns,
    InputError,
    Issue,
    invalid_input,
    record_columns,
    shown_name,
)

SERVER_NAME = "modelberth-inference"
EXTENSIONS = ("model_repository",)
"""The V2 protocol extensions served (the repository API: index, load, unload)."""
NON_FINITE_OUTPUT = (
    "the model's output for this row is not a finite number (its inputs are outside what it can compute)"
)


def check_outputs(outputs: Sequence[str], served: Served) -> None:
    """400 for an output the model does not have (every transport asks for outputs by name)."""
    for name in outputs:
        if name not in OUTPUTS:
            shown = shown_name(name)
            which = f" {shown!r}" if shown is not None else " (name not shown: too long or not printable)"
            raise BadRequest(f"unknown output{which}; this model has predict and predict_proba")
        if name == "predict_proba" and not served.model.has_proba:
            raise BadRequest(f"model {served.model.name} has no predict_proba output")


class Deadline:
    """``async with plane.deadline():`` the request's time budget; then a 504."""

    __slots__ = ("_seconds", "_timeout")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._timeout = asyncio.timeout(seconds)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            raise DeadlineExceeded(f"request timed out after {self._seconds:g} s") from None


class DataPlane:
    """Authorise, resolve, admit, validate, predict and record: the one implementation behind every route."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: InferenceMetrics,
        verifier: TokenVerifier,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.verifier = verifier
        self.prediction_log = prediction_log
        self._queued: dict[str, int] = {}
        """Model -> requests admitted and not answered yet (validating, waiting for a batch, predicting)."""

    # --- authorise ------------------------------------------------------------------------------------

    async def authenticate(self, authorization: str | Sequence[str] | None) -> Principal:
        """The principal of the bearer token in ``authorization`` (every value of the header or metadata
        entry; two are refused): 401 invalid, 400 ambiguous, 503 while the signing keys are not loaded."""
        try:
            return await self.verifier.verify(bearer_token(authorization))
        except TokenError as exc:
            keys = self.verifier.keys
            if exc.status_code == 401 and isinstance(keys, JwksKeySource) and not keys.loaded:
                raise Unavailable("token signing keys are not available yet", {"Retry-After": "5"}) from None
            headers = {"WWW-Authenticate": _www_authenticate(exc.error, exc.description)}
            if exc.status_code == 400:
                raise BadRequest(exc.description, headers) from None
            raise Unauthenticated(exc.description, headers) from None

    @staticmethod
    def authorise(principal: Principal, scope: str) -> None:
        """403 unless the token grants ``scope`` (``predict``, ``models:read``, ``models:admin``)."""
        if not principal.has_scope(scope):
            raise PermissionDenied(
                f"insufficient_scope: this call needs the {scope} scope",
                {"WWW-Authenticate": _www_authenticate("insufficient_scope", scope=scope)},
            )

    def deadline(self) -> Deadline:
        """The request's time budget (``request_timeout_seconds``) as an async context manager."""
        return Deadline(self.settings.request_timeout_seconds)

    # --- resolve --------------------------------------------------------------------------------------

    def served(self, name: str) -> Served:
        """The version ``name`` serves: 404 unknown or unloaded (as MLServer answers an unloaded model), 503
        configured but not loaded yet."""
        registry = self.registry
        served = registry.get(name)
        if served is not None:
            return served
        if name in registry.unloaded:
            raise ModelNotFound(
                f"model {name!r} is unloaded (POST /v2/repository/models/{name}/load serves it again)"
            )
        if name in registry.configured():
            raise Unavailable(f"model {name!r} is not loaded yet", {"Retry-After": "5"})
        raise ModelNotFound(f"model {name!r} not found")

    async def resolve(self, name: str, version: str | None) -> Served:
        """The served version (``version`` None) or the version that ``version`` (an id or an alias) names,
        loaded on demand: 404 unknown, 409 not loadable, 503 no room. Call it within a deadline."""
        served = self.served(name)
        if version is None:
            return served
        return await self.registry.version(served, version)

    # --- infer ----------------------------------------------------------------------------------------

    async def infer(self, request: InferRequest, principal: Principal) -> InferResponse:
        """Answer one request; call it within :meth:`deadline` (the transport reads its body inside it)."""
        self.authorise(principal, "predict")
        served = await self.resolve(request.model, request.version)
        check_outputs(request.outputs, served)
        name = served.model.name
        queued = self._queued.get(name, 0)
        if queued >= self.settings.max_queued:
            self.metrics.rejected.labels(name, "queue_full").inc()
            raise Overloaded(
                f"model {name!r} has {queued} requests in progress, its limit (INFERENCE_MAX_QUEUED);"
                " retry after Retry-After seconds"
            )
        self._queued[name] = queued + 1
        try:
            columns = self.validate(served, request)
            result = await self.predict(served, columns)
        finally:
            self._queued[name] -= 1
        self._record(request, served, principal, columns, result)
        return InferResponse(
            served.model, result.predictions, result.proba, columns.warnings, request.id, request.outputs
        )

    def validate(self, served: Served, request: InferRequest) -> Columns:
        """The request's columns checked against the card (422 naming each bad value)."""
        validator = served.model.validator
        inputs = request.inputs
        if isinstance(inputs, Records):
            return record_columns(validator, inputs, self.settings.max_instances)
        return tensor_columns(validator, inputs, request.parameters, self.settings.max_instances)

    async def predict(self, served: Served, columns: Columns) -> Prediction:
        """Queue validated rows on the version's micro-batcher. A pipeline failure is a 422, as are rows whose
        output is not a finite number (named)."""
        for (feature, kind), count in columns.warning_counts.items():
            self.metrics.input_warnings.labels(served.model.name, feature, kind).inc(count)
        try:
            result = await served.batcher.submit(columns)
        except PredictionFailed:
            raise InvalidInput("the model could not predict these rows") from None
        if result.invalid_rows is not None:
            rows = result.invalid_rows.tolist()
            issues = [Issue(row, None, NON_FINITE_OUTPUT, "non_finite_output") for row in rows[:MAX_ERRORS]]
            raise invalid_input(InputError(issues, len(rows)))
        return result

    def _record(
        self,
        request: InferRequest,
        served: Served,
        principal: Principal,
        columns: Columns,
        result: Prediction,
    ) -> None:
        """Per-model latency and count, and the prediction log (queued: written by its own thread)."""
        model = served.model
        seconds = time.perf_counter() - request.started
        self.metrics.request_duration.labels(model.name, model.version, request.protocol).observe(seconds)
        plog = self.prediction_log
        if plog is not None:
            client_id = principal.claims.get("client_id")
            plog.submit(
                request_id=request_id_var.get(),
                model=model.name,
                version=model.version,
                sub=principal.subject,
                client_id=client_id if type(client_id) is str else None,
                columns=columns,
                outputs=result.predictions,
                latency_seconds=seconds,
            )

    # --- metadata and health --------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        """V2 server metadata: name, version, extensions."""
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): every model that should serve is loaded, and the token keys are fetched."""
        if not self.registry.ready:
            return False, self.registry.not_ready_reason()
        keys = self.verifier.keys
        if isinstance(keys, JwksKeySource) and not keys.loaded:
            return False, "token signing keys (JWKS) not fetched yet"
        return True, "ready"

    async def metadata(self, name: str, version: str | None, principal: Principal) -> ModelMetadata:
        """V2 model metadata of the served version or of ``version`` (loaded on demand)."""
        self.authorise(principal, "models:read")
        async with self.deadline():
            model = (await self.resolve(name, version)).model
        card = model.card
        inputs = tuple(
            TensorMetadata(f.name, "FP64" if f.type == "numeric" else "BYTES", (-1,)) for f in card.features
        )
        outputs = [TensorMetadata("predict", "FP64" if card.task == "regression" else "BYTES", (-1,))]
        if model.has_proba:
            outputs.append(TensorMetadata("predict_proba", "FP64", (-1, len(model.classes))))
        return ModelMetadata(model.name, (model.version,), "sklearn", inputs, tuple(outputs))

    async def model_ready(self, name: str, version: str | None, principal: Principal) -> str:
        """The version that answers ``name`` (and ``version``) now; raises when none can."""
        self.authorise(principal, "models:read")
        async with self.deadline():
            return (await self.resolve(name, version)).model.version

    # --- the model repository extension -----------------------------------------------------------------

    async def repository_index(
        self, principal: Principal, *, ready_only: bool = False
    ) -> list[RepositoryEntry]:
        """Every model in the store (and each version held in memory), READY or UNAVAILABLE with why."""
        self.authorise(principal, "models:read")
        entries = await self.registry.index()
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def load(self, name: str, principal: Principal) -> str:
        """Serve ``name`` again (its reference's version, e.g. the champion); the version now served."""
        self.authorise(principal, "models:admin")
        return await self.registry.load_model(name)

    async def unload(self, name: str, principal: Principal) -> None:
        """Free every version of ``name`` from memory; it stays unloaded until :meth:`load`."""
        self.authorise(principal, "models:admin")
        await self.registry.unload_model(name)
