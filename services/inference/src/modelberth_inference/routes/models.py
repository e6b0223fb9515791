"""Model metadata: ``GET /v1/models``, ``GET /v1/models/{name}`` (the card), its versions, any version's
card, the history of its alias moves, the report, and reload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from modelberth_core import contract
from modelberth_core.contract import VERSION_PATTERN, ContractError, ModelCard
from modelberth_core.errors import ServiceError
from modelberth_core.store import ALIAS_PATTERN, AliasEvent, ModelNotFound, StoreError
from modelberth_inference.openapi import BEARER, errors
from modelberth_inference.rest import AdminPrincipal, PlaneDep, ReadPrincipal, RegistryDep, json_response

router = APIRouter(prefix="/v1/models", tags=["models"])
log = logging.getLogger("modelberth.inference.models")

HISTORY_LIMIT = 50
"""Events ``GET /v1/models/{name}/history`` answers when the request gives no ``limit``."""
HISTORY_MAX = 500
"""The most events one history request answers (a model moved by a nightly job grows without bound)."""
VERSION_OR_ALIAS = f"^(?:{VERSION_PATTERN[1:-1]}|{ALIAS_PATTERN[1:-1]})$"


class History(BaseModel):
    """The answer of ``GET /v1/models/{name}/history``."""

    model: str
    total: int = Field(ge=0, description="Events the store holds for the model.")
    events: list[AliasEvent] = Field(
        description="The newest events first, at most `limit`. `to_version` null: the alias was removed."
    )


def _known(registry: RegistryDep, name: str) -> None:
    if name not in registry.models and name not in registry.configured():
        raise ServiceError(404, f"model {name!r} not found")


def _unreadable(name: str, what: str, exc: Exception) -> ServiceError:
    """503 for a damaged or unreachable store: the log has details (and paths), the answer does not."""
    log.error(f"cannot read the {what}", extra={"model": name, "error": str(exc)})
    return ServiceError(503, f"the {what} of model {name!r} cannot be read now")


@router.get("", responses=errors(401, 403, 503), openapi_extra=BEARER)
async def list_models(dataplane: PlaneDep, _: ReadPrincipal) -> Response:
    """Every served model: name, version, task, classes, features, test metrics, selected candidate."""
    return json_response({"models": dataplane.registry.summary()})


@router.get("/{name}", responses=errors(401, 403, 404, 422, 503), openapi_extra=BEARER)
async def get_model(name: str, dataplane: PlaneDep, _: ReadPrincipal) -> Response:
    """The served version's model card (``model.json``): features, metrics, selection, leaderboard..."""
    served = dataplane.served(name)
    return json_response(served.model.card.model_dump(mode="json"))


@router.get("/{name}/versions", responses=errors(401, 403, 404, 422, 503), openapi_extra=BEARER)
async def list_versions(name: str, dataplane: PlaneDep, _: ReadPrincipal) -> Response:
    """Every version of the model (oldest first) with its primary test score and aliases, which versions are
    in memory, and the shadow traffic (challenger, agreement so far)."""
    registry = dataplane.registry
    _known(registry, name)
    try:
        listing = await registry.listing(name)
    except ModelNotFound:
        raise ServiceError(404, f"model {name!r} not found") from None
    except (StoreError, ContractError, OSError) as exc:
        raise _unreadable(name, "versions", exc) from None
    return json_response(listing)


@router.get(
    "/{name}/versions/{version}/card",
    responses={200: {"model": ModelCard}, **errors(401, 403, 404, 422, 503)},
    openapi_extra=BEARER,
)
async def get_version_card(
    name: str,
    version: Annotated[str, Path(pattern=VERSION_OR_ALIAS, description="A version id or an alias.")],
    registry: RegistryDep,
    _: ReadPrincipal,
) -> Response:
    """The model card of one version, named by its id or an alias (``challenger``), read from the store:
    the version is not loaded."""
    _known(registry, name)
    try:
        card = await registry.card_of(name, version)
    except ModelNotFound:
        raise ServiceError(404, f"model {name!r} not found") from None
    except (StoreError, ContractError, OSError) as exc:
        raise _unreadable(name, "card", exc) from None
    return json_response(card.model_dump(mode="json"))


@router.get(
    "/{name}/history",
    responses={200: {"model": History}, **errors(401, 403, 404, 422, 503)},
    openapi_extra=BEARER,
)
async def get_history(
    name: str,
    registry: RegistryDep,
    _: ReadPrincipal,
    limit: Annotated[int, Query(ge=1, le=HISTORY_MAX, description="How many events, newest first.")] = (
        HISTORY_LIMIT
    ),
) -> Response:
    """Every alias move of the model (champion, challenger, latest...), newest first: which alias, from and
    to which version, when, who (OS user or token subject) and why (publish, gate, promote, rollback)."""
    _known(registry, name)
    try:
        page = await registry.history(name, limit)
    except ModelNotFound:
        raise ServiceError(404, f"model {name!r} not found") from None
    except (StoreError, ContractError, OSError) as exc:
        raise _unreadable(name, "history", exc) from None
    return json_response(page)


@router.get(
    "/{name}/report",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        **errors(401, 403, 404, 422, 503),
    },
    openapi_extra=BEARER,
)
async def get_report(name: str, dataplane: PlaneDep, _: ReadPrincipal) -> Response:
    """The served version's HTML training report."""
    served = dataplane.served(name)
    path = served.model.path / contract.REPORT_FILE
    if not path.is_file():
        raise ServiceError(404, f"model {name!r} version {served.model.version} has no report")
    return FileResponse(path, media_type="text/html; charset=utf-8")


@router.post("/{name}/reload", responses=errors(401, 403, 404, 409, 422, 503), openapi_extra=BEARER)
async def reload_model(name: str, dataplane: PlaneDep, _: AdminPrincipal) -> Response:
    """Load the version the model's reference (its champion by default) names now; a failed load keeps the
    old version serving. A model unloaded through the repository API is served again."""
    registry = dataplane.registry
    if name not in registry.configured():
        # Published since the last poll? An admin's reload should not wait for the next one.
        with contextlib.suppress(StoreError):  # the store is down: /readyz says why
            await asyncio.to_thread(registry.scan)
        if name not in registry.configured():
            raise ServiceError(404, f"model {name!r} not found")
    registry.unloaded.discard(name)
    outcome = await registry.load(name, retry_failed=True)
    if outcome.status == "missing":
        why = registry.unresolved.get(name, "no complete version")
        raise ServiceError(404, f"model {name!r} has nothing to serve: {why}")
    if outcome.status == "failed":
        serving = f"still serving {outcome.previous}" if outcome.previous else "nothing is serving"
        raise ServiceError(409, f"reload of {name} {outcome.version} failed ({serving}): {outcome.error}")
    return json_response(
        {
            "model": name,
            "status": outcome.status,
            "version": outcome.version,
            "previous_version": outcome.previous,
        }
    )
