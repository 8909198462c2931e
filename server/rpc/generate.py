"""Regenerate ``server/rpc/hexpsi`` from ``proto/``: ``python -m hexpsi.server.rpc.generate``.

The generated modules are committed so that a plain ``pip install`` needs no
code generator; ``tests/server/rpc/test_generate.py`` regenerates them into a
temporary directory and fails if the committed copies are stale. protoc's
``-I<virtual>=<dir>`` mapping makes the schema path ``server/rpc/hexpsi/v1/``
match the Python package, so the generated imports are absolute and correct.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
PACKAGE_PATH = "hexpsi/server/rpc"


def schema_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Write the generated modules under ``out_root/server/rpc``; returns their paths."""
    protoc = importlib.import_module("grpc_tools.protoc")
    resources = importlib.import_module("importlib.resources")
    include = str(resources.files("grpc_tools") / "_proto")
    virtual = [
        f"{PACKAGE_PATH}/{path.relative_to(PROTO_DIR).as_posix()}" for path in schema_files()
    ]
    scripts = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"-I{PACKAGE_PATH}={PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *virtual,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_root / PACKAGE_PATH).rglob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT), file=sys.stderr)
