"""The gRPC listener of the inference process: ``inference.GRPCInferenceService`` and ``grpc.health.v1``.

It runs on the app's event loop (``grpc.aio``), next to uvicorn, on its own port (``INFERENCE_GRPC_PORT``,
8012 by default; 0 turns it off), and lives as long as the app's lifespan: started before the first HTTP
request is served, stopped after the last one. Stopping refuses new RPCs at once (clients get GOAWAY and go
elsewhere), reports NOT_SERVING to health checks, and lets RPCs in flight finish (for up to
:data:`STOP_GRACE_SECONDS`, or the request timeout, the longest one may legitimately run, if shorter).

Limits are explicit, so a malformed or huge message is one clean gRPC error, never a crash: a received
message is at most ``max_body_bytes`` (the same bound as an HTTP body; larger gets RESOURCE_EXHAUSTED
before it is read), metadata at most :data:`MAX_METADATA_BYTES`. ``SO_REUSEPORT`` is off: a second server
on the same port is an error, not a silent split of the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from modelberth_core.metrics import HttpMetrics
from modelberth_inference.dataplane import DataPlane
from modelberth_inference.transports import v2_grpc

log = logging.getLogger("modelberth.inference.grpc")

MAX_SEND_BYTES = 64 << 20
"""Largest answer sent: 1000 rows of class probabilities are well under a megabyte."""
MAX_METADATA_BYTES = 16 << 10
"""Largest metadata (headers) accepted: a bearer token is about 1 KB."""
STOP_GRACE_SECONDS = 10.0
"""Longest wait for RPCs in flight when stopping (the request timeout if shorter). It starts once uvicorn has
finished its own shutdown, so the pod's grace period covers both (the chart adds 10 s with gRPC on)."""
HEALTH_POLL_SECONDS = 0.5
"""How often the health service re-reads readiness (models loaded, signing keys fetched)."""
SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING


class GrpcServer:
    """The gRPC server of one app: :meth:`start` in the lifespan's startup, :meth:`stop` in its shutdown."""

    def __init__(self, plane: DataPlane, metrics: HttpMetrics) -> None:
        self.settings = plane.settings
        self.plane = plane
        self.metrics = metrics
        self.port = 0
        """The bound port (the configured one, or the one the OS chose for 0)."""
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._health_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on ``settings.host:grpc_port`` (the server is made here, on the running event loop); a port
        that is taken fails the start, as it does for HTTP."""
        settings = self.settings
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", MAX_SEND_BYTES),
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers((v2_grpc.handler(self.plane, self.metrics),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        address = f"{settings.host}:{settings.grpc_port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(f"gRPC: cannot listen on {address} (INFERENCE_GRPC_PORT): {exc}") from None
        await server.start()
        self._server = server
        await self._set_health(NOT_SERVING)
        self._health_task = asyncio.create_task(self._follow_readiness())
        log.info("grpc listening", extra={"address": f"{settings.host}:{self.port}"})

    async def stop(self) -> None:
        """Refuse new RPCs, answer NOT_SERVING, let RPCs in flight finish (up to the request timeout). Does
        nothing when :meth:`start` did not get as far as listening."""
        if self._server is None:
            return
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self._health.enter_graceful_shutdown()
        await self._server.stop(min(self.settings.request_timeout_seconds, STOP_GRACE_SECONDS))

    async def _set_health(self, status: int) -> None:
        for service in ("", v2_grpc.SERVICE):
            await self._health.set(service, status)

    async def _follow_readiness(self) -> None:
        """Mirror ``/readyz`` in the health service (what a Kubernetes ``grpc`` probe asks)."""
        current = NOT_SERVING
        while True:
            ready, _ = self.plane.readiness()
            status = SERVING if ready else NOT_SERVING
            if status != current:
                await self._set_health(status)
                current = status
            await asyncio.sleep(HEALTH_POLL_SECONDS)
