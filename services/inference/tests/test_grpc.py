"""The OIP V2 gRPC service of a real inference process, driven by tritonclient.grpc (a client nobody here
wrote) and, for what no polite client sends, by raw bytes on a gRPC channel.

This process never imports the server's own message modules: they and tritonclient's both define the
proto package ``inference``, which one process can register once. Requests built with tritonclient's
messages are the same bytes on the wire (``test_grpc_stubs.py`` proves the definitions agree).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
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
    mixed_artifact: Callable[..., Path],
) -> Iterator[Grpc]:
    """One inference process (gRPC on) over a tiny iris model, verifying the test signer's tokens."""
    model_dir = tmp_path_factory.mktemp("grpc") / "models"
    artifact_factory(model_dir)
    artifact_factory(model_dir, name="spare")  # the repository test unloads this one
    mixed_artifact(model_dir, "homes", "classification")  # numeric and categorical (BYTES) features
    mixed_artifact(model_dir, "prices", "regression")  # no predict_proba
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


def _feature_input(name: str, values: list[Any], datatype: str = "FP64") -> tgrpc.InferInput:
    tensor = tgrpc.InferInput(name, [len(values)], datatype)
    dtype = object if datatype == "BYTES" else np.float64
    tensor.set_data_from_numpy(np.asarray(values, dtype=dtype))
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


def test_grpc_calls_are_counted_in_the_request_metrics(g: Grpc, signer: Any) -> None:
    """Each RPC is one request in ``modelberth_inference_requests_total``, under the gRPC method as route;
    inferences are also in the per-model latency with ``protocol="grpc"``."""

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
    # The data plane's per-model latency carries the transport as its protocol label.
    g.client.infer("iris", [_feature_input(f, [5.0]) for f in FEATURES], headers=_bearer(signer.token()))
    per_model = 'modelberth_inference_model_request_duration_seconds_count{model="iris",protocol="grpc"'
    assert per_model in httpx.get(g.url + "/metrics").text


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


ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.2, "sepal_width": 2.9, "petal_length": 4.3, "petal_width": 1.3},
    {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3},
]
FEATURES = list(ROWS[0])


def _rest(g: Grpc, token: str, body: dict[str, Any], model: str = "iris") -> httpx.Response:
    return httpx.post(f"{g.url}/v2/models/{model}/infer", json=body, headers=_bearer(token), timeout=10)


def _outputs(*names: str) -> list[tgrpc.InferRequestedOutput]:
    return [tgrpc.InferRequestedOutput(name) for name in names]


def test_infer_per_feature_and_one_matrix_agree_with_rest(g: Grpc, signer: Any) -> None:
    """tritonclient's per-feature inputs, its ``[n, F]`` tensor (``input-0``, the MLServer/Seldon example) in
    FP64 and FP32, and typed contents sent raw all give REST's V2 answer for the same rows."""
    token = signer.token()
    rest = _rest(
        g,
        token,
        {
            "inputs": [
                {"name": f, "shape": [3], "datatype": "FP64", "data": [r[f] for r in ROWS]} for f in FEATURES
            ],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        },
    ).json()
    labels = [label.encode() for label in rest["outputs"][0]["data"]]
    proba = np.asarray(rest["outputs"][1]["data"]).reshape(3, -1)

    per_feature = [_feature_input(f, [r[f] for r in ROWS]) for f in FEATURES]
    answer = g.client.infer(
        "iris",
        per_feature,
        outputs=_outputs("predict", "predict_proba"),
        request_id="r-1",
        headers=_bearer(token),
    )
    assert answer.as_numpy("predict").tolist() == labels
    np.testing.assert_allclose(answer.as_numpy("predict_proba"), proba)
    response = answer.get_response()
    assert (response.model_name, response.model_version, response.id) == (
        "iris",
        rest["model_version"],
        "r-1",
    )

    matrix = np.asarray([[r[f] for f in FEATURES] for r in ROWS])
    for dtype, datatype in ((np.float64, "FP64"), (np.float32, "FP32")):
        tensor = tgrpc.InferInput("input-0", [3, 4], datatype)
        tensor.set_data_from_numpy(matrix.astype(dtype))
        assert g.client.infer("iris", [tensor], headers=_bearer(token)).as_numpy("predict").tolist() == labels

    # The same request with typed contents (fp64_contents) instead of raw_input_contents.
    request = spb.ModelInferRequest(model_name="iris")
    typed = request.inputs.add(name="input-0", datatype="FP64", shape=[3, 4])
    typed.contents.fp64_contents.extend(matrix.ravel().tolist())
    raw = g.raw("ModelInfer", request.SerializeToString(), [("authorization", f"Bearer {token}")])
    typed_answer = spb.ModelInferResponse.FromString(raw)
    assert typed_answer.outputs[0].name == "predict"
    assert typed_answer.raw_output_contents[0] == b"".join(len(x).to_bytes(4, "little") + x for x in labels)


def test_bytes_features_and_metadata_match_rest(g: Grpc, signer: Any) -> None:
    """A model with a categorical feature takes it as BYTES (length-prefixed raw, as tritonclient sends);
    ModelMetadata, ModelReady and ServerMetadata say what REST says."""
    token = signer.token()
    rows = {"age": [40.0, 70.0], "income": [50_000.0, 30_000.0], "city": ["paris", "nice"]}
    inputs = [_feature_input(name, values) for name, values in rows.items() if name != "city"]
    inputs.append(_feature_input("city", [c.encode() for c in rows["city"]], "BYTES"))
    answer = g.client.infer("homes", inputs, headers=_bearer(token))
    rest = _rest(
        g,
        token,
        {
            "inputs": [
                {"name": n, "shape": [2], "datatype": "BYTES" if n == "city" else "FP64", "data": v}
                for n, v in rows.items()
            ]
        },
        model="homes",
    ).json()
    assert answer.as_numpy("predict").tolist() == [label.encode() for label in rest["outputs"][0]["data"]]

    meta = g.client.get_model_metadata("homes", headers=_bearer(token), as_json=True)
    rest_meta = httpx.get(g.url + "/v2/models/homes", headers=_bearer(token)).json()
    for tensors in ("inputs", "outputs"):  # the JSON form of int64 shapes is text
        for tensor in meta[tensors]:
            tensor["shape"] = [int(d) for d in tensor["shape"]]
    assert meta == rest_meta
    assert g.client.is_model_ready("homes", headers=_bearer(signer.token("models:read")))
    assert (
        g.client.get_server_metadata(as_json=True)["extensions"]
        == httpx.get(g.url + "/v2").json()["extensions"]
    )


def _infer_request(**tensor: Any) -> spb.ModelInferRequest:
    request = spb.ModelInferRequest(model_name=tensor.pop("model", "iris"))
    for output in tensor.pop("outputs", ()):
        request.outputs.add(name=output)
    request.id = tensor.pop("id", "")
    for name in FEATURES:
        request.inputs.add(name=name, datatype="FP64", shape=[1]).contents.fp64_contents.append(5.0)
    if tensor:
        first = request.inputs[0]
        first.ClearField("contents")
        first.datatype = tensor.get("datatype", "FP64")
        first.ClearField("shape")
        first.shape.extend(tensor.get("shape", [1]))
        for field, values in tensor.get("contents", {}).items():
            getattr(first.contents, field).extend(values)
    return request


def _homes_request(model: str, outputs: list[str]) -> spb.ModelInferRequest:
    """One row for the mixed models (age, income, city), asking for ``outputs``."""
    request = spb.ModelInferRequest(model_name=model)
    for output in outputs:
        request.outputs.add(name=output)
    request.inputs.add(name="age", datatype="FP64", shape=[1]).contents.fp64_contents.append(40.0)
    request.inputs.add(name="income", datatype="FP64", shape=[1]).contents.fp64_contents.append(5e4)
    request.inputs.add(name="city", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"paris")
    return request


def _rest_body(request: spb.ModelInferRequest) -> dict[str, Any]:
    """The JSON twin of a gRPC request built by :func:`_infer_request` (typed contents only)."""
    inputs = []
    for t in request.inputs:
        data: list[Any] = []
        for field in ("fp64_contents", "fp32_contents", "int64_contents", "bytes_contents", "bool_contents"):
            values = list(getattr(t.contents, field))
            data += [v.decode() for v in values] if field == "bytes_contents" else values
        inputs.append({"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": data})
    body: dict[str, Any] = {"inputs": inputs}
    if request.outputs:
        body["outputs"] = [{"name": o.name} for o in request.outputs]
    if request.id:
        body["id"] = request.id
    return body


BAD_REQUESTS = {
    "unknown model": (_infer_request(model="nope"), grpc.StatusCode.NOT_FOUND, 404),
    "shape says 3, data has 1": (
        _infer_request(shape=[3], contents={"fp64_contents": [5.0]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
    ),
    "BYTES for a numeric feature": (
        _infer_request(datatype="BYTES", contents={"bytes_contents": [b"5.0"]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
    ),
    "a value out of the card's range": (
        _infer_request(contents={"fp64_contents": [1e300]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        422,
    ),
    "unknown output": (_infer_request(outputs=["logits"]), grpc.StatusCode.INVALID_ARGUMENT, 400),
    "a 257-character id": (_infer_request(id="i" * 257), grpc.StatusCode.INVALID_ARGUMENT, 400),
    "predict_proba of a regression": (
        _homes_request("prices", outputs=["predict_proba"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_rests_message_as_a_grpc_code(g: Grpc, signer: Any, case: str) -> None:
    """The same bad request over REST and gRPC: REST's status as its gRPC code, and the same message."""
    request, code, status = BAD_REQUESTS[case]
    token = signer.token()
    got, message = _status(
        lambda: g.raw("ModelInfer", request.SerializeToString(), [("authorization", f"Bearer {token}")])
    )
    rest = _rest(g, token, _rest_body(request), model=request.model_name)
    assert (got, rest.status_code) == (code, status)
    assert message == rest.json()["error"]


def test_tensors_only_grpc_can_send_wrong_are_refused(g: Grpc, signer: Any) -> None:
    """What has no JSON twin: raw bytes that are not whole elements, a BYTES element running past its
    buffer, typed and raw contents together, values in another datatype's field, a negative dimension,
    and more rows than INFERENCE_MAX_INSTANCES. Each is INVALID_ARGUMENT naming the input."""
    auth = [("authorization", f"Bearer {signer.token()}")]

    def refused(request: spb.ModelInferRequest) -> str:
        code, message = _status(lambda: g.raw("ModelInfer", request.SerializeToString(), auth))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, message
        return message

    raw = spb.ModelInferRequest(model_name="iris", raw_input_contents=[b"\0" * 7])
    raw.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    assert (
        refused(raw) == "input 'input-0': raw contents of 7 bytes are not whole FP64 elements (8 bytes each)"
    )
    strings = spb.ModelInferRequest(model_name="homes", raw_input_contents=[b"\x09\0\0\0par"])
    strings.inputs.add(name="city", datatype="BYTES", shape=[1])
    assert refused(strings) == "input 'city': a BYTES element's length runs past the raw contents"
    both = spb.ModelInferRequest(model_name="iris", raw_input_contents=[b"\0" * 32])
    both.inputs.add(name="input-0", datatype="FP64", shape=[1, 4]).contents.fp64_contents.extend([1.0] * 4)
    assert refused(both) == "input 'input-0': contents and raw_input_contents are both set"
    assert refused(_infer_request(contents={"int64_contents": [5]})) == (
        "input 'sepal_length': a FP64 tensor carries its values in fp64_contents"
    )
    assert refused(_infer_request(shape=[-1], contents={"fp64_contents": [5.0]})) == (
        "input 'sepal_length': shape dimensions must not be negative"
    )
    rows = 1001  # INFERENCE_MAX_INSTANCES is 1000
    huge = spb.ModelInferRequest(model_name="iris", raw_input_contents=[np.ones(rows * 4).tobytes()])
    huge.inputs.add(name="input-0", datatype="FP64", shape=[rows, 4])
    assert refused(huge) == "too many rows: 1001 in one request, at most 1000"


def test_repository_rpcs(g: Grpc, signer: Any) -> None:
    """tritonclient's repository calls: the index, and unload/load with models:admin (a reader is refused);
    an unloaded model answers NOT_FOUND until it is loaded again."""
    admin, reader = _bearer(signer.token()), _bearer(signer.token("predict models:read"))
    index = g.client.get_model_repository_index(headers=reader, as_json=True)["models"]
    assert {(m["name"], m.get("state")) for m in index} >= {("iris", "READY"), ("spare", "READY")}
    code, message = _status(lambda: g.client.unload_model("spare", headers=reader))
    assert (code, message) == (
        "StatusCode.PERMISSION_DENIED",
        "insufficient_scope: this call needs the models:admin scope",
    )
    g.client.unload_model("spare", headers=admin)
    spare = [_feature_input(f, [5.0]) for f in FEATURES]
    code, _ = _status(lambda: g.client.infer("spare", spare, headers=admin))
    assert code == "StatusCode.NOT_FOUND"
    g.client.load_model("spare", headers=admin)
    assert g.client.infer("spare", spare, headers=admin).as_numpy("predict").shape == (1,)


def test_backpressure_is_resource_exhausted_with_retry_after(
    start_service: Callable[..., Any], tiny_model_dir: Path, jwks_url: str, signer: Any
) -> None:
    """A model whose queue is full (INFERENCE_MAX_QUEUED) answers RESOURCE_EXHAUSTED with a retry-after
    trailer, never an error of another kind, and the calls it admits are answered."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = start_service(
        "inference",
        env={
            "INFERENCE_MODEL_DIR": str(tiny_model_dir),
            "INFERENCE_AUTH_JWKS_URL": jwks_url,
            "INFERENCE_GRPC_PORT": str(port),
            "INFERENCE_MAX_QUEUED": "1",
            "INFERENCE_BATCH_MAX_WAIT_SECONDS": "0.02",
        },
    )
    # 1000 rows a call: validating and predicting them keeps the event loop busy long enough for the calls
    # in flight (several connections) to be read while one holds the model's only queue slot.
    rows = np.tile(np.asarray([[5.1, 3.5, 1.4, 0.2]]), (1000, 1))
    request = spb.ModelInferRequest(model_name="iris", raw_input_contents=[rows.tobytes()])
    request.inputs.add(name="input-0", datatype="FP64", shape=[1000, 4])
    body = request.SerializeToString()
    metadata = (("authorization", f"Bearer {signer.token()}"),)
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])]
    channels += [grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])]
    outcomes: list[Any] = []
    retry_after: set[str] = set()
    with channels[0], channels[1]:
        calls = [channel.unary_unary(SERVICE + "ModelInfer") for channel in channels]
        # The event loop reads calls one after another, so whether two overlap is up to timing: bursts
        # until one is refused (a second or two), then no outcome may be anything but OK or refused.
        deadline = time.monotonic() + 60
        while grpc.StatusCode.RESOURCE_EXHAUSTED not in outcomes and time.monotonic() < deadline:
            futures = [calls[i % 2].future(body, metadata=metadata, timeout=20) for i in range(40)]
            for future in futures:
                try:
                    future.result()
                    outcomes.append("ok")
                except grpc.RpcError as exc:
                    outcomes.append(exc.code())
                    retry_after.add(dict(exc.trailing_metadata() or ())["retry-after"])
    assert set(outcomes) == {"ok", grpc.StatusCode.RESOURCE_EXHAUSTED}, set(outcomes)
    assert retry_after == {"1"}
    assert "rejected_requests_total" in httpx.get(service.url + "/metrics").text


def test_sigterm_stops_grpc_gracefully(
    start_service: Callable[..., Any], tiny_model_dir: Path, jwks_url: str, signer: Any
) -> None:
    """SIGTERM under gRPC load: calls keep being answered while HTTP drains, then new ones are refused
    (UNAVAILABLE: a client retries elsewhere), every call the server started is answered, and the shutdown
    completes."""
    import signal
    import threading

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = start_service(
        "inference",
        env={
            "INFERENCE_MODEL_DIR": str(tiny_model_dir),
            "INFERENCE_AUTH_JWKS_URL": jwks_url,
            "INFERENCE_GRPC_PORT": str(port),
        },
    )
    body = _infer_request().SerializeToString()
    metadata = (("authorization", f"Bearer {signer.token()}"),)
    outcomes: list[Any] = []
    stop = threading.Event()

    def load() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(SERVICE + "ModelInfer")
            while not stop.is_set():
                try:
                    call(body, metadata=metadata, timeout=10)
                    outcomes.append("ok")
                except grpc.RpcError as exc:
                    outcomes.append(exc.code())
                    time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    before = len(outcomes)
    service.process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once its graceful shutdown (the lifespan's, gRPC's stop) has completed.
    assert service.process.wait(30) == -signal.SIGTERM
    stop.set()
    for thread in threads:
        thread.join(15)
    assert before > 0
    # Calls the server had not picked up yet when it stopped come back CANCELLED rather than UNAVAILABLE
    # (gRPC core: https://github.com/grpc/grpc/issues/41785); they never ran, so a retry is safe.
    assert set(outcomes) <= {"ok", grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, set(outcomes)
    # Every call the server started was answered OK and reached its client: none was cut off.
    answered = [
        line["status"]
        for line in map(json.loads, filter(None, service.logs().splitlines()))
        if line.get("route") == SERVICE + "ModelInfer"
    ]
    assert set(answered) == {200}
    assert len(answered) == outcomes.count("ok")
    assert "Application shutdown complete" in service.logs()
    assert "Traceback" not in service.logs()
