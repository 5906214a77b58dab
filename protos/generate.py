"""Regenerate the Python code of the trefed.v1 protocol: ``python protos/generate.py``.

The only way the ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` files beside the ``.proto`` files
are made; nobody edits them by hand. ``tests/test_protos_fresh.py`` fails when they are stale.
``-I protos`` makes the generated imports carry the package path (``from trefed.v1 import ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE / "trefed" / "v1"


def generate(out_dir: Path = HERE) -> list[Path]:
    """Run protoc (grpcio-tools) on every .proto into ``out_dir``; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{HERE}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(HERE)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "trefed" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
