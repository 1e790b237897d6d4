#!/usr/bin/env python3
"""Regenerate the gRPC stubs of the tensorcast package from proto/.

proto/tensorcast/v1/*.proto is the one source of truth; the generated
``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` files are committed inside
the package (``tensorcast/v1/``) so that ``pip install`` needs no compiler.
tests/python/test_stubs.py regenerates them into a temporary folder and fails
when they differ from the committed ones, so run this after editing a proto::

    .venv/bin/python client/python/generate_stubs.py

It needs grpcio-tools at the version pinned in scripts/requirements-dev.txt
(the generated code records that version).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROTO_ROOT = REPO / "proto"
PROTOS = ["tensorcast/v1/tensor_service.proto"]
# Files that protoc writes for each proto, relative to the output root.
GENERATED_SUFFIXES = ["_pb2.py", "_pb2.pyi", "_pb2_grpc.py"]


def generated_files() -> list[str]:
    """Paths (relative to the output root) of every generated file."""
    return [p[: -len(".proto")] + s for p in PROTOS for s in GENERATED_SUFFIXES]


def generate(out_dir: pathlib.Path) -> None:
    """Run protoc (from grpcio-tools) over every proto into ``out_dir``."""
    import grpc_tools
    from grpc_tools import protoc  # imported here: a dev-only dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTOS,
    ]
    # Proto names are given relative to -I, so the generated files name them
    # relatively ("source: tensorcast/v1/...") wherever the repo lives.
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=HERE,
        help="output root (default: client/python, next to the package)",
    )
    args = parser.parse_args(argv)
    generate(args.out)
    for rel in generated_files():
        print(args.out / rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
