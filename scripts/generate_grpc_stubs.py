"""Compile the OIP gRPC definition into the Python modules inference imports (``make grpc-stubs``).

The modules are committed, so the image needs no compiler; ``test_grpc_stubs.py`` runs this into a temporary
directory and fails when the committed files differ (an edited .proto, or a grpcio-tools upgrade that
generates different code). Only messages are generated (``*_pb2.py`` and its ``.pyi``): the server builds its
method handlers from the service descriptor, so there is no untyped ``*_pb2_grpc.py`` to keep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = ROOT / "services" / "inference" / "src"
PROTO = Path("modelberth_inference/oip/grpc_predict_v2.proto")
"""Relative to the source root, so the descriptor's file name does not depend on where this runs."""


def generate(out: Path) -> list[Path]:
    """Write the message module and its type stub under ``out`` (mirroring the package path)."""
    (out / PROTO.parent).mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        ["grpc_tools.protoc", f"-I{SOURCE_ROOT}", f"--python_out={out}", f"--pyi_out={out}", str(PROTO)]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    stem = out / PROTO.parent / PROTO.stem
    return [stem.with_name(stem.name + "_pb2.py"), stem.with_name(stem.name + "_pb2.pyi")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=SOURCE_ROOT, help="output root (default: the source tree)"
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
