"""Model metadata: ``GET /v1/models``, ``GET /v1/models/{name}`` (the card), its versions, the report, and
reload."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from modelberth_core import contract
from modelberth_core.contract import ContractError
from modelberth_core.errors import ServiceError
from modelberth_core.store import ModelNotFound, StoreError
from modelberth_inference.openapi import BEARER, errors
from modelberth_inference.rest import AdminPrincipal, PlaneDep, ReadPrincipal, json_response

router = APIRouter(prefix="/v1/models", tags=["models"])
log = logging.getLogger("modelberth.inference.models")


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
    if name not in registry.models and name not in registry.configured():
        raise ServiceError(404, f"model {name!r} not found")
    try:
        listing = await registry.listing(name)
    except ModelNotFound:
        raise ServiceError(404, f"model {name!r} not found") from None
    except (StoreError, ContractError, OSError) as exc:  # a damaged store: the log has details (and paths)
        log.error("cannot list the versions", extra={"model": name, "error": str(exc)})
        raise ServiceError(503, f"the versions of model {name!r} cannot be read now") from None
    return json_response(listing)


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
