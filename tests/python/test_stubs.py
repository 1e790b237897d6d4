"""The committed gRPC stubs are what proto/ generates: regenerate them into
a temporary folder and compare (run client/python/generate_stubs.py after
changing a proto)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO / "client" / "python"


def test_committed_stubs_match_proto(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (scripts/requirements-dev.txt) "
                        "is needed to regenerate the stubs")
    script = PACKAGE_ROOT / "generate_stubs.py"
    out = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc generated nothing"
    stale = [str(rel) for rel in generated
             if (PACKAGE_ROOT / rel).read_bytes() != (tmp_path / rel).read_bytes()]
    assert not stale, (f"{stale} differ from what proto/ generates: run "
                       "`.venv/bin/python client/python/generate_stubs.py` and commit the "
                       "result (with the grpcio-tools pinned in scripts/requirements-dev.txt)")
    committed = sorted(p.relative_to(PACKAGE_ROOT) for p in
                       (PACKAGE_ROOT / "tensorcast" / "v1").glob("*_pb2*.py*"))
    assert committed == generated, "a generated file is missing or left over"


def test_installed_package_is_typed_and_carries_stubs() -> None:
    import tensorcast
    root = pathlib.Path(tensorcast.__file__).parent
    assert (root / "py.typed").exists()
    for name in ("tensor_service_pb2.py", "tensor_service_pb2.pyi",
                 "tensor_service_pb2_grpc.py"):
        assert (root / "v1" / name).exists(), name
