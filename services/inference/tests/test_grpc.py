"""The OIP V2 gRPC service of a real inference process, driven by tritonclient.grpc (a client nobody here
wrote) and, for what no polite client sends, by raw bytes on a gRPC channel.

This process never imports the server's own message modules: they and tritonclient's both define the
proto package ``inference``, which one process can register once. Requests built with tritonclient's
messages are the same bytes on the wire (``test_grpc_stubs.py`` proves the definitions agree).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import tritonclient.grpc as tgrpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as spb
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration

SERVICE = "/inference.GRPCInferenceService/"
MAX_BODY_BYTES = 64 * 1024
"""The process's INFERENCE_MAX_BODY_BYTES: the largest gRPC message it reads."""


@dataclass
class Grpc:
    """One inference process with its gRPC listener on."""

    url: str
    """Its HTTP base URL."""
    target: str
    """``127.0.0.1:PORT`` of the gRPC listener."""
    client: tgrpc.InferenceServerClient
    channel: grpc.Channel
    """A plain channel, for raw requests."""
    service: Any

    def raw(self, method: str, body: bytes, metadata: list[tuple[str, str]] | None = None) -> bytes:
        """Call ``method`` with ``body`` as is (no serialisation), returning the raw answer."""
        call = self.channel.unary_unary(SERVICE + method)
        answer: bytes = call(body, metadata=metadata, timeout=10)
        return answer


def _open(service: Any, port: int) -> Grpc:
    target = f"127.0.0.1:{port}"
    return Grpc(
        service.url, target, tgrpc.InferenceServerClient(target), grpc.insecure_channel(target), service
    )


@pytest.fixture(scope="module")
def g(
    start_module_service: Callable[..., Any],
    jwks_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    artifact_factory: Callable[..., Path],
) -> Iterator[Grpc]:
    """One inference process (gRPC on) over a tiny iris model, verifying the test signer's tokens."""
    model_dir = tmp_path_factory.mktemp("grpc") / "models"
    artifact_factory(model_dir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = start_module_service(
        "inference",
        env={
            "INFERENCE_MODEL_DIR": str(model_dir),
            "INFERENCE_AUTH_JWKS_URL": jwks_url,
            "INFERENCE_GRPC_PORT": str(port),
            "INFERENCE_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "INFERENCE_POLL_SECONDS": "0",
        },
    )
    handle = _open(service, port)
    yield handle
    handle.client.close()
    handle.channel.close()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _status(call: Callable[[], Any]) -> tuple[grpc.StatusCode | str, str]:
    """The gRPC status code and message an RPC failed with (tritonclient or a raw channel)."""
    try:
        call()
    except InferenceServerException as exc:
        return str(exc.status()), str(exc.message())
    except grpc.RpcError as exc:
        return exc.code(), str(exc.details())
    raise AssertionError("the call succeeded")


def test_server_rpcs_and_health_without_a_token(g: Grpc) -> None:
    """Live, ready and server metadata answer without a token (as their REST twins); the standard health
    service, which Kubernetes' grpc probe asks, says SERVING once the model is loaded."""
    assert g.client.is_server_live()
    assert g.client.is_server_ready()
    meta = g.client.get_server_metadata(as_json=True)
    assert meta["name"] == httpx.get(g.url + "/v2").json()["name"]
    health = health_pb2_grpc.HealthStub(g.channel)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:  # the health service follows readiness every 0.5 s
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        if status == health_pb2.HealthCheckResponse.SERVING:
            break
        time.sleep(0.1)
    assert status == health_pb2.HealthCheckResponse.SERVING
    named = health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=5)
    assert named.status == health_pb2.HealthCheckResponse.SERVING
    code, _ = _status(lambda: health.Check(health_pb2.HealthCheckRequest(service="other"), timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND


def test_tokens_like_an_attacker(g: Grpc, signer: Any) -> None:
    """Every RPC that needs a token refuses a missing, malformed, forged, expired, wrong-audience or
    duplicated one, with REST's messages; a valid token without the scope gets PERMISSION_DENIED."""
    from joserfc.jwk import ECKey

    now = int(time.time())
    invalid = {
        "missing": {},
        "not bearer": {"authorization": "Basic dXNlcjpwYXNz"},
        "empty bearer": {"authorization": "Bearer "},
        "garbage": _bearer("not.a.jwt"),
        "forged": _bearer(signer.token(key=ECKey.generate_key("P-256", parameters={"kid": signer.key.kid}))),
        "expired": _bearer(signer.token(exp=now - 3600, iat=now - 7200, nbf=now - 7200)),
        "wrong audience": _bearer(signer.token(aud="someone-else")),
        "wrong issuer": _bearer(signer.token(iss="http://evil.example")),
    }
    calls: dict[str, Callable[[dict[str, str]], Any]] = {
        "ModelReady": lambda h: g.client.is_model_ready("iris", headers=h),
        "ModelMetadata": lambda h: g.client.get_model_metadata("iris", headers=h),
        "ModelInfer": lambda h: g.client.infer("iris", [_feature_input("sepal_length", [5.1])], headers=h),
    }
    for rpc, call in calls.items():
        for case, headers in invalid.items():
            code, message = _status(lambda call=call, headers=headers: call(headers))
            assert code == "StatusCode.UNAUTHENTICATED", (rpc, case, code, message)
            assert "eyJ" not in message, (rpc, case)  # never the token back
    reader = _bearer(signer.token("models:read"))
    code, message = _status(lambda: calls["ModelInfer"](reader))
    assert code == "StatusCode.PERMISSION_DENIED"
    assert message == "insufficient_scope: this call needs the predict scope"
    # Two authorization values (a client and a proxy disagreeing) are ambiguous: refused whatever they hold,
    # as REST refuses two Authorization headers. tritonclient's headers are a dict, so this one is raw.
    good = f"Bearer {signer.token()}"
    body = spb.ModelMetadataRequest(name="iris").SerializeToString()
    code, message = _status(
        lambda: g.raw("ModelMetadata", body, [("authorization", good), ("authorization", good)])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    rest = httpx.get(g.url + "/v2/models/iris", headers=[("Authorization", good), ("Authorization", good)])
    assert rest.status_code == 400
    assert message == rest.json()["error"]


def _feature_input(name: str, values: list[float]) -> tgrpc.InferInput:
    tensor = tgrpc.InferInput(name, [len(values)], "FP64")
    import numpy as np

    tensor.set_data_from_numpy(np.asarray(values, dtype=np.float64))
    return tensor


def test_malformed_and_huge_messages(g: Grpc, signer: Any) -> None:
    """Bytes that are not the RPC's message, every truncation of a valid request, and a message over the
    size limit each get one clean status (INVALID_ARGUMENT / RESOURCE_EXHAUSTED); the server keeps serving."""
    auth = [("authorization", f"Bearer {signer.token()}")]
    request = spb.ModelInferRequest(model_name="iris", id="x" * 10)
    tensor = request.inputs.add(name="sepal_length", datatype="FP64", shape=[2])
    tensor.contents.fp64_contents.extend([5.1, 6.2])
    valid = request.SerializeToString()
    codes = set()
    for cut in range(1, len(valid)):
        try:
            g.raw("ModelInfer", valid[:cut], auth)
        except grpc.RpcError as exc:
            codes.add(exc.code())
    assert codes <= {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
    }
    for junk in (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 11):
        code, message = _status(lambda junk=junk: g.raw("ModelInfer", junk, auth))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, junk
        assert message == "the request is not a valid inference.ModelInferRequest message"
    huge = spb.ModelInferRequest(model_name="iris", raw_input_contents=[b"\0" * (MAX_BODY_BYTES + 1)])
    code, _ = _status(lambda: g.raw("ModelInfer", huge.SerializeToString(), auth))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, _ = _status(lambda: g.raw("NoSuchMethod", b"", auth))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert g.client.is_server_live()


def test_grpc_calls_are_counted_in_the_request_metrics(g: Grpc) -> None:
    """Each RPC is one request in ``modelberth_inference_requests_total``, under the gRPC method as route."""

    def count(route: str, status: str) -> float:
        text = httpx.get(g.url + "/metrics").text
        key = f'modelberth_inference_requests_total{{method="POST",route="{route}",status="{status}"}}'
        for line in text.splitlines():
            if line.startswith(key):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    live, meta = SERVICE + "ServerLive", SERVICE + "ModelMetadata"
    live_before, meta_before = count(live, "2xx"), count(meta, "4xx")
    for _ in range(3):
        g.client.is_server_live()
    _status(lambda: g.client.get_model_metadata("iris"))  # no token
    assert count(live, "2xx") == live_before + 3
    assert count(meta, "4xx") == meta_before + 1


def test_a_taken_grpc_port_fails_the_start(
    start_service: Callable[..., Any], tiny_model_dir: Path, jwks_url: str
) -> None:
    """A second server on the gRPC port is refused (no SO_REUSEPORT split of the traffic): the process
    exits at startup naming the variable, instead of serving HTTP without its gRPC half."""
    with socket.socket() as holder:
        # gRPC sets SO_REUSEPORT by default: a holder that allows it too would silently share the port.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RuntimeError, match="process exited") as failed:
            start_service(
                "inference",
                env={
                    "INFERENCE_MODEL_DIR": str(tiny_model_dir),
                    "INFERENCE_AUTH_JWKS_URL": jwks_url,
                    "INFERENCE_GRPC_PORT": str(port),
                },
                timeout=30.0,
            )
    assert f"cannot listen on 127.0.0.1:{port} (INFERENCE_GRPC_PORT)" in str(failed.value)
