"""A route class for the hot endpoints: FastAPI documents them, but requests skip dependency solving.

FastAPI's per-request parameter machinery costs more than a micro-batched iris prediction. The predict
endpoints read their own body (bounded, parsed with orjson, validated by the model's compiled validator), so
the only thing they need from FastAPI is the path parameters: ``get_route_handler`` (FastAPI's documented
extension point for custom routes) passes those straight through.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class LeanRoute(APIRoute):
    """Calls ``endpoint(request, **path_params)`` directly; the signature is only used for /docs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler Starlette calls with the request."""
        endpoint: Callable[..., Coroutine[Any, Any, Response]] = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handler
