"""The committed gRPC message modules are what grpcio-tools makes of the committed .proto, and that .proto
is the Open Inference Protocol every OIP client speaks (checked against tritonclient's own definition).

Neither check imports the server's generated module (see test_grpc.py for why): one compares files, the
other reads the .proto compiled into a FileDescriptorSet, outside protobuf's default pool.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from tritonclient.grpc import service_pb2 as triton

ROOT = Path(__file__).resolve().parents[3]
SOURCE_ROOT = ROOT / "services" / "inference" / "src"
PROTO = "modelberth_inference/oip/grpc_predict_v2.proto"


def test_committed_stubs_are_what_the_proto_generates(tmp_path: Path) -> None:
    """Editing the .proto (or upgrading grpcio-tools) without regenerating fails here: run
    ``uv run python scripts/generate_grpc_stubs.py`` and commit the result."""
    script = ROOT / "scripts" / "generate_grpc_stubs.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True)
    generated = sorted(tmp_path.rglob("*_pb2.py*"))
    assert [p.name for p in generated] == ["grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi"]
    for path in generated:
        committed = SOURCE_ROOT / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"{committed.name} is stale"


def _our_file(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "oip.pb"
    assert protoc.main(["protoc", f"-I{SOURCE_ROOT}", f"--descriptor_set_out={out}", PROTO]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert len(files) == 1
    return files[0]


def _fields(message: descriptor_pb2.DescriptorProto, prefix: str) -> dict[str, tuple[object, ...]]:
    """Every field of ``message`` and its nested messages: full name -> what goes on the wire."""
    out: dict[str, tuple[object, ...]] = {}
    name = f"{prefix}.{message.name}"
    for field in message.field:
        out[f"{name}.{field.name}"] = (
            field.number,
            field.type,
            field.label,
            field.type_name,
            field.oneof_index,
        )
    for nested in message.nested_type:
        out.update(_fields(nested, name))
    return out


def test_the_proto_is_the_open_inference_protocol(tmp_path: Path) -> None:
    """Package, service, methods and every field (number, type, label, message type) of our definition
    are in tritonclient's definition of the same protocol (Triton's is a superset: more RPCs and fields):
    the OIP's six RPCs and the model repository extension's three."""
    ours = _our_file(tmp_path)
    theirs = descriptor_pb2.FileDescriptorProto.FromString(triton.DESCRIPTOR.serialized_pb)
    assert ours.package == theirs.package == "inference"
    their_fields: dict[str, tuple[object, ...]] = {}
    for message in theirs.message_type:
        their_fields.update(_fields(message, ".inference"))
    our_fields: dict[str, tuple[object, ...]] = {}
    for message in ours.message_type:
        our_fields.update(_fields(message, ".inference"))
    assert len(our_fields) > 50
    for name, wire in our_fields.items():
        assert their_fields.get(name) == wire, name
    (service,) = ours.service
    (their_service,) = (s for s in theirs.service if s.name == service.name)
    assert service.name == "GRPCInferenceService"
    their_methods = {m.name: (m.input_type, m.output_type) for m in their_service.method}
    methods = {m.name: (m.input_type, m.output_type) for m in service.method}
    oip = {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"}
    repository = {"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"}
    assert set(methods) == oip | repository
    for name, types in methods.items():
        assert their_methods[name] == types, name
