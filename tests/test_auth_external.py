"""Who may do what, seen by a client built only from ``protos/`` against ``trefed serve`` (mutual TLS).

The server runs as its own subprocess (its own local Ray) with a ``keys_dir``; certificates are
issued with ``trefed keys issue``. The client's code is generated from ``protos/`` alone and runs
in a subprocess that sees neither ``agents`` nor ``federation`` (as in test_external_client.py):
with no certificate it does not get in; with a tenant's certificate it is refused every
reservation call at a domain, runs the tenant flow at the broker, and verifies the grants with the
keys from ``ListDomainKeys`` and ``cryptography`` alone; with another tenant's certificate it
can neither read nor release the contract.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import FAST_CONFIG
from serving import trefed_serve
from test_external_client import _generate, _site_dirs

CLIENT = textwrap.dedent(
    """
    import hashlib, json, sys
    sys.path[:] = [GEN, *STDLIB, *SITES]
    import grpc
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from trefed.v1 import reservation_pb2, services_pb2, services_pb2_grpc

    def creds(stem):
        read = lambda p: open(p, "rb").read()
        return grpc.ssl_channel_credentials(read(KEYS + "/ca.crt"), read(f"{KEYS}/{stem}.key"),
                                            read(f"{KEYS}/{stem}.crt"))

    def channel(address, stem, peer):
        if stem is None:
            return grpc.insecure_channel(address)
        return grpc.secure_channel(address, creds(stem), options=[("grpc.ssl_target_name_override", peer)])

    def code(call, *args):
        try:
            call(*args, timeout=10)
        except grpc.RpcError as exc:
            return exc.code().name
        return "OK"

    out = {}
    edge = services_pb2_grpc.DomainControllerStub(channel(DOMAINS["edge"], "tenant-alice", "edge.domain.trefed"))
    resv = reservation_pb2.ReservationRequest(reservation_id="evil", tenant_id="made-up", tre_id="edge/gpu",
                                              rate_bps=2e7, burst_bits=2e5, delay_budget_s=0.01, epsilon=1e-3)
    prepare = reservation_pb2.PrepareRequest(request_id="evil:p", reservation=resv, hold_timeout_s=3600)
    out["domain"] = {
        "Prepare": code(edge.Prepare, prepare),
        "Commit": code(edge.Commit, reservation_pb2.CommitRequest(request_id="c", reservation_id="evil")),
        "Batch": code(edge.Batch, services_pb2.BatchRequest(items=[services_pb2.BatchItem(prepare=prepare)])),
        "Release": code(edge.Release, reservation_pb2.ReleaseRequest(request_id="r", reservation_id="evil")),
        "Abort": code(edge.Abort, reservation_pb2.AbortRequest(request_id="a", reservation_id="evil")),
        "GetStatus(include_reservations)": code(edge.GetStatus, services_pb2.GetStatusRequest(
            include_reservations=True)),
    }
    out["edge_prepared_bps"] = edge.GetStatus(services_pb2.GetStatusRequest(), timeout=10).prepared_bps
    nocert = services_pb2_grpc.DomainControllerStub(channel(DOMAINS["edge"], None, None))
    out["no_certificate"] = code(nocert.Prepare, prepare)
    out["no_certificate_broker"] = code(services_pb2_grpc.BrokerStub(channel(BROKER, None, None)).ListModels,
                                        services_pb2.ListModelsRequest())

    alice = services_pb2_grpc.BrokerStub(channel(BROKER, "tenant-alice", "broker.broker.trefed"))
    bob = services_pb2_grpc.BrokerStub(channel(BROKER, "tenant-bob", "broker.broker.trefed"))
    intent = services_pb2.Intent(
        task="classify", max_error_probability=0.005, deadline_s=0.0175, epsilon=0.01,
        traffic=services_pb2.TrafficEnvelope(token_bucket=services_pb2.TokenBucketTraffic(sigma_bits=2e5,
                                                                                          rho_bps=1e7)))
    contract = alice.RequestService(services_pb2.ServiceRequest(request_id="alice-1", intent=intent), timeout=60)
    out["tenant_id"] = contract.tenant_id
    keys = {k.key_id: k for k in alice.ListDomainKeys(services_pb2.ListDomainKeysRequest(), timeout=10).keys}
    verified = 0
    for grant in contract.grants:
        key = keys[grant.signature.key_id]
        assert hashlib.sha256(key.public_key).hexdigest()[:16] == key.key_id.rsplit("-", 1)[1]
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(grant.signature.signature, grant.body)
        body = reservation_pb2.GrantBody.FromString(grant.body)
        assert body.tenant_id == "alice" and body.domain_id == key.domain_id
        verified += 1
    out["grants_verified"] = verified
    cid = contract.contract_id
    out["bob_get"] = code(bob.GetContract, services_pb2.GetContractRequest(contract_id=cid))
    out["bob_release"] = code(bob.ReleaseService, services_pb2.ReleaseServiceRequest(request_id="b", contract_id=cid))
    spoof = services_pb2.Intent(); spoof.CopyFrom(intent); spoof.tenant_id = "alice"
    out["bob_as_alice"] = code(bob.RequestService, services_pb2.ServiceRequest(request_id="bob-1", intent=spoof))
    out["alice_released"] = alice.ReleaseService(
        services_pb2.ReleaseServiceRequest(request_id="alice-rel", contract_id=cid), timeout=30).released
    out["leaked"] = sorted(m for m in sys.modules if m.split(".")[0] in ("agents", "federation"))
    print(json.dumps(out))
    """
)


def _trefed(*args: str) -> None:
    done = subprocess.run([str(Path(sys.executable).with_name("trefed")), *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(240)
def test_protos_only_client_against_secure_trefed_serve(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    _generate(gen)
    keys = tmp_path / "keys"
    data = copy.deepcopy(FAST_CONFIG)
    data["keys_dir"] = str(keys)
    config = tmp_path / "fed.yaml"
    config.write_text(yaml.safe_dump(data))
    _trefed("keys", "ca", "--out", str(keys))
    clients = tmp_path / "clients"
    for tenant in ("alice", "bob"):
        _trefed("keys", "issue", "--ca", str(keys), "--role", "tenant", "--id", tenant, "--out", str(clients))

    with trefed_serve(config, tmp_path / "st", startup_s=150) as served:
        assert any("security: mutual TLS" in line for line in served.lines), served.lines
        script = tmp_path / "client.py"
        stdlib = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"],
                  str(Path(sysconfig.get_paths()["stdlib"]) / "lib-dynload")]
        script.write_text(
            f"GEN = {str(gen)!r}\nSTDLIB = {stdlib!r}\nSITES = {_site_dirs()!r}\n"
            f"BROKER = {served.address!r}\nDOMAINS = {served.domains!r}\nKEYS = {str(clients)!r}\n" + CLIENT
        )
        done = subprocess.run([sys.executable, "-I", "-S", str(script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=150)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["domain"] == {m: "PERMISSION_DENIED" for m in out["domain"]} and len(out["domain"]) == 6
    assert out["edge_prepared_bps"] == 0
    assert out["no_certificate"] == "UNAVAILABLE" and out["no_certificate_broker"] == "UNAVAILABLE"
    assert out["tenant_id"] == "alice" and out["grants_verified"] == 3
    assert out["bob_get"] == out["bob_release"] == out["bob_as_alice"] == "PERMISSION_DENIED"
    assert out["alice_released"] is True
    assert out["leaked"] == []
    assert served.returncode == 0, "".join(served.lines)
