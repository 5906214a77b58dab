"""The committed generated code of trefed.v1 is exactly what ``python protos/generate.py`` makes.

If this fails, run ``python protos/generate.py`` and commit the result (never edit *_pb2*.py by hand).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
V1 = PROTOS / "trefed" / "v1"


def _load_generator():
    spec = importlib.util.spec_from_file_location("trefed_protos_generate", PROTOS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> dict[str, bytes]:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the generator) is part of the test extra")
    out = tmp_path_factory.mktemp("protos")
    files = _load_generator().generate(out)
    return {p.name: p.read_bytes() for p in files}


def test_every_proto_is_generated(regenerated):
    protos = sorted(p.stem for p in V1.glob("*.proto"))
    assert protos == ["envelope", "reservation", "services", "telemetry"]
    for stem in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"{stem}{suffix}" in regenerated


def test_committed_generated_code_is_fresh(regenerated):
    committed = {p.name: p.read_bytes() for p in V1.glob("*_pb2*.py*")}
    assert sorted(committed) == sorted(regenerated), "generated file set differs: run python protos/generate.py"
    stale = [name for name, data in regenerated.items() if committed[name] != data]
    assert not stale, f"stale generated code {stale}: run python protos/generate.py"


def test_generated_modules_import_under_the_package_path():
    from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2, services_pb2_grpc, telemetry_pb2

    assert envelope_pb2.DESCRIPTOR.package == "trefed.v1"
    assert reservation_pb2.DESCRIPTOR.dependencies[-1].name == "trefed/v1/envelope.proto"
    assert telemetry_pb2.DESCRIPTOR.name == "trefed/v1/telemetry.proto"
    assert {s for s in services_pb2.DESCRIPTOR.services_by_name} >= {"DomainController", "Broker", "Auditor"}
    assert hasattr(services_pb2_grpc, "DomainControllerStub")


def test_proto_comments_cite_sections_that_exist():
    """Every design section a .proto comment cites is a section of docs/design.md (in the repository)."""
    import re

    design = ROOT / "docs" / "design.md"
    assert design.exists(), "docs/design.md is missing"
    sections = set(re.findall(r"^## (\d+)\. ", design.read_text(), flags=re.M))
    cited = []
    for proto in sorted(V1.glob("*.proto")):
        text = " ".join(line.strip().lstrip("/").strip() for line in proto.read_text().splitlines()
                        if line.strip().startswith("//") or "//" in line)
        assert "DESIGN.md" not in text, f"{proto.name} cites DESIGN.md, which is not in the repository"
        for m in re.finditer(r"docs/design\.md,? sections? (\d+)(?: and (\d+))?", text):
            cited += [(proto.name, n) for n in m.groups() if n]
    assert {name for name, _ in cited} == {"envelope.proto", "reservation.proto", "services.proto",
                                           "telemetry.proto"}
    missing = [(name, n) for name, n in cited if n not in sections]
    assert not missing, f"cited sections not in docs/design.md: {missing}"
