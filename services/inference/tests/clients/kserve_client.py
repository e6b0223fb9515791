"""KServe's own OIP clients against a running inference process; prints one JSON report on stdout.

Runs in kserve's environment, not the workspace's (``kserve`` pins pandas, psutil and python-dateutil below
the lock): ``uv run --no-project --with kserve==X python kserve_client.py REST_URL GRPC_TARGET MODEL``,
with the bearer token in the ``KSERVE_CLIENT_TOKEN`` environment variable and the rows (JSON, ``[[...]]``)
on stdin. ``test_kserve_client.py`` runs it and asserts on the report.

KServe's clients have no model-metadata call: metadata is read with the transport kserve itself uses
(httpx, and the generated ``GRPCInferenceServiceStub`` kserve ships) and parsed with kserve's own
response types, so a field kserve requires and the server lacks fails here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse

UNKNOWN = "no-such-model"
OUTPUTS = ("predict", "predict_proba")


def _request(
    model: str, rows: np.ndarray, *, binary: bool, outputs: tuple[str, ...] = OUTPUTS
) -> InferRequest:
    """One ``[N, F]`` FP64 tensor, the single-tensor request KServe's and MLServer's examples send."""
    tensor = InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    requested = [RequestedOutput(name) for name in outputs] or None
    return InferRequest(model_name=model, infer_inputs=[tensor], request_outputs=requested)


def _outputs(response: Any) -> dict[str, Any]:
    return {
        out.name: [v.decode() if isinstance(v, bytes) else v for v in out.as_numpy().tolist()]
        for out in response.outputs
    }


async def _rest(url: str, model: str, rows: np.ndarray, token: str) -> dict[str, Any]:
    bearer = {"Authorization": f"Bearer {token}"}
    report: dict[str, Any] = {}
    async with InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30)) as client:
        report["live"] = await client.is_server_live(url, headers=bearer)
        report["server_ready"] = await client.is_server_ready(url, headers=bearer)
        report["model_ready"] = await client.is_model_ready(url, model, headers=bearer)
        report["unknown_model_ready"] = await client.is_model_ready(url, UNKNOWN, headers=bearer)
        async with httpx.AsyncClient(timeout=30) as plain:
            answer = await plain.get(f"{url}/v2/models/{model}", headers=bearer)
            answer.raise_for_status()
        report["metadata"] = ModelMetadataResponse.model_validate(answer.json()).model_dump()
        response = await client.infer(url, _request(model, rows, binary=False), model, headers=dict(bearer))
        report["infer"] = _outputs(response)
        binary = _request(model, rows, binary=True)  # kserve's default: the binary tensor data extension
        report["infer_binary"] = _outputs(await client.infer(url, binary, model, headers=dict(bearer)))
        unrequested = await client.infer(
            url, _request(model, rows, binary=False, outputs=()), model, headers=dict(bearer)
        )
        report["infer_default_outputs"] = _outputs(unrequested)
        report["errors"] = {
            "unknown_model": await _rest_error(
                client.infer(url, _request(UNKNOWN, rows, binary=False), UNKNOWN, headers=dict(bearer))
            ),
            "no_token": await _rest_error(client.infer(url, _request(model, rows, binary=False), model)),
        }
    return report


async def _rest_error(call: Any) -> dict[str, Any]:
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return {
            "status": exc.response.status_code,
            "content_type": exc.response.headers.get("content-type"),
            "message": str(exc),
        }
    return {"status": 200}


async def _grpc(target: str, model: str, rows: np.ndarray, token: str) -> dict[str, Any]:
    bearer = (("authorization", f"Bearer {token}"),)
    report: dict[str, Any] = {}
    async with InferenceGRPCClient(target, timeout=30, retries=0) as client:
        report["live"] = await client.is_server_live(headers=bearer)
        report["server_ready"] = await client.is_server_ready(headers=bearer)
        report["model_ready"] = await client.is_model_ready(model, headers=bearer)
        report["unknown_model_ready"] = await _grpc_error(client.is_model_ready(UNKNOWN, headers=bearer))
        async with grpc.aio.insecure_channel(target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), metadata=bearer, timeout=30)
        report["metadata"] = {
            "name": meta.name,
            "platform": meta.platform,
            "versions": list(meta.versions),
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs],
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.outputs
            ],
        }
        report["infer"] = _outputs(await client.infer(_request(model, rows, binary=True), headers=bearer))
        report["infer_json_contents"] = _outputs(
            await client.infer(_request(model, rows, binary=False), headers=bearer)
        )
        unrequested = await client.infer(_request(model, rows, binary=True, outputs=()), headers=bearer)
        report["infer_default_outputs"] = _outputs(unrequested)
        report["errors"] = {
            "unknown_model": await _grpc_error(
                client.infer(_request(UNKNOWN, rows, binary=True), headers=bearer)
            ),
            "no_token": await _grpc_error(client.infer(_request(model, rows, binary=True))),
        }
    return report


async def _grpc_error(call: Any) -> dict[str, Any]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return {"code": exc.code().name, "message": exc.details()}
    return {"code": "OK"}


async def main() -> None:
    url, target, model = sys.argv[1:4]
    token = os.environ["KSERVE_CLIENT_TOKEN"]
    rows = np.asarray(json.load(sys.stdin), dtype=np.float64)
    report = {"rest": await _rest(url, model, rows, token), "grpc": await _grpc(target, model, rows, token)}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
