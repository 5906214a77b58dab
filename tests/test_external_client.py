"""A client built only from ``protos/`` talks to ``trefed serve``: resolve -> request -> release.

The client's Python code is generated from ``protos/trefed/v1/*.proto`` with grpc_tools.protoc into
a temporary directory and runs in a subprocess started with ``-I -S`` whose ``sys.path`` is only
that directory, the standard library and site-packages (no ``.pth`` processing, so not even the
editable install of this repository is visible); it asserts that nothing of ``agents`` or
``federation`` was imported. ``trefed serve`` runs as its own subprocess (its own local Ray).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import grpc_tools
import pytest
import yaml
from conftest import FAST_CONFIG
from grpc_tools import protoc
from serving import trefed_serve

REPO = Path(__file__).resolve().parents[1]

CLIENT = textwrap.dedent(
    """
    import json, sys
    sys.path[:] = [GEN, *STDLIB, *SITES]
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from trefed.v1 import services_pb2, services_pb2_grpc

    assert services_pb2.__file__.startswith(GEN), services_pb2.__file__
    channel = grpc.insecure_channel(ADDRESS)
    grpc.channel_ready_future(channel).result(timeout=20)
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="trefed.v1.Broker"), timeout=10)
    broker = services_pb2_grpc.BrokerStub(channel)
    models = broker.ListModels(services_pb2.ListModelsRequest(task="classify"), timeout=10)
    intent = services_pb2.Intent(
        tenant_id="outsider", task="classify", max_error_probability=0.005, deadline_s=0.0175, epsilon=0.01,
        traffic=services_pb2.TrafficEnvelope(
            token_bucket=services_pb2.TokenBucketTraffic(sigma_bits=2e5, rho_bps=1e7)))
    offers = broker.ResolveIntent(intent, timeout=60).offers
    contract = broker.RequestService(
        services_pb2.ServiceRequest(request_id="outsider-1", intent=intent, offer_id=offers[0].offer_id), timeout=60)
    released = broker.ReleaseService(
        services_pb2.ReleaseServiceRequest(request_id="outsider-rel", contract_id=contract.contract_id), timeout=30)
    again = broker.GetContract(services_pb2.GetContractRequest(contract_id=contract.contract_id), timeout=10)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("agents", "federation"))
    print(json.dumps({
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
        "models": sorted(m.model_id for m in models.models),
        "offers": len(offers),
        "model": contract.offer.model_id,
        "path": list(contract.offer.path),
        "grants": len(contract.grants),
        "delay_s": contract.offer.bound.delay_s,
        "released": released.released and again.released,
        "leaked": leaked,
    }))
    """
)


def _site_dirs() -> list[str]:
    """Where grpc and cryptography are installed (a layered venv may hold them outside its own site-packages)."""
    import cryptography
    import grpc

    return sorted({sysconfig.get_paths()["purelib"], *(str(Path(m.__file__).parents[1]) for m in (grpc, cryptography))})


def _generate(out: Path) -> None:
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted((REPO / "protos" / "trefed" / "v1").glob("*.proto"))
    args = ["protoc", f"-I{REPO / 'protos'}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}",
            *(str(p.relative_to(REPO / "protos")) for p in protos)]
    assert protoc.main(args) == 0
    for pkg in (out / "trefed", out / "trefed" / "v1"):
        (pkg / "__init__.py").touch()


@pytest.mark.timeout(180)
def test_client_from_protos_only_against_trefed_serve(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    _generate(gen)
    assert not (gen / "agents").exists() and not (gen / "federation").exists()
    config = tmp_path / "fed.yaml"
    config.write_text(yaml.safe_dump(FAST_CONFIG))

    with trefed_serve(config, tmp_path / "st", startup_s=120, args=("--insecure",)) as served:
        script = tmp_path / "client.py"
        stdlib = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"],
                  str(Path(sysconfig.get_paths()["stdlib"]) / "lib-dynload")]
        script.write_text(
            f"GEN = {str(gen)!r}\nSTDLIB = {stdlib!r}\nSITES = {_site_dirs()!r}\n"
            f"ADDRESS = {served.address!r}\n" + CLIENT
        )
        done = subprocess.run([sys.executable, "-I", "-S", str(script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["health"] == "SERVING"
        assert result["models"] == ["large", "small"]
        assert result["offers"] == 2 and result["model"] == "small"
        assert result["path"] == ["access", "transport", "edge"] and result["grants"] == 3
        assert 0 < result["delay_s"] <= 0.0175
        assert result["released"] is True
        assert result["leaked"] == []
    # SIGTERM (what a supervisor sends; Ctrl-C takes the same path) shuts it down cleanly.
    assert served.returncode == 0, "".join(served.lines)
    assert any("shutting down" in line for line in served.lines)
