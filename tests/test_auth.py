"""Who may do what (agents.access), with mutual TLS over real gRPC on 127.0.0.1, in-process (no Ray).

Domain controllers, a broker and an auditor each hold a certificate of one federation CA; the
clients are plain generated stubs on channels holding a tenant's, another tenant's, an
operator's or a domain's certificate -- or none, or one of a foreign CA.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import grpc
import pytest
from test_broker import code_of
from trefed.v1 import reservation_pb2, services_pb2, services_pb2_grpc, telemetry_pb2

import agents.access
from agents.access import AUDITOR, BROKER, POLICY
from agents.auditor.client import GrpcAuditorClient
from agents.auditor.servicer import AuditorAgent
from agents.broker.logic import TrustEntry
from agents.broker.servicer import BrokerAgent
from agents.domain.servicer import DomainControllerAgent
from agents.errors import PermissionDenied, Unauthenticated
from agents.server import open_channel
from federation.config import FederationConfig
from federation.tre.ca import CertificateAuthority, Credentials, PeerIdentity, Role
from federation.tre.signing import SigningKey, sign


@dataclass
class SecureFed:
    config: FederationConfig
    ca: CertificateAuthority
    domains: dict[str, DomainControllerAgent]
    domain_addresses: dict[str, str]
    broker: BrokerAgent
    broker_address: str
    auditor: AuditorAgent
    auditor_address: str
    keys: dict[str, SigningKey]

    def creds(self, role: str, name: str) -> Credentials:
        return self.ca.issue(role, name)

    def broker_stub(self, creds: Credentials | None, stack: contextlib.AsyncExitStack) -> services_pb2_grpc.BrokerStub:
        ch = open_channel(self.broker_address, creds, BROKER)
        stack.push_async_callback(ch.close)
        return services_pb2_grpc.BrokerStub(ch)

    def domain_stub(self, domain_id: str, creds: Credentials | None, stack: contextlib.AsyncExitStack
                    ) -> services_pb2_grpc.DomainControllerStub:
        ch = open_channel(self.domain_addresses[domain_id], creds, PeerIdentity(Role.DOMAIN, domain_id))
        stack.push_async_callback(ch.close)
        return services_pb2_grpc.DomainControllerStub(ch)


@contextlib.asynccontextmanager
async def secure_federation(config: FederationConfig, tmp_path):
    ca = CertificateAuthority.create()
    domains, keys, trust, addresses = {}, {}, [], {}
    for d in config.domains:
        key = SigningKey.generate(d.id)
        a = DomainControllerAgent(d.envelope_body(key.key_id).SerializeToString(), key.private_pem(),
                                  str(tmp_path / f"{d.id}.db"), sweep_interval_s=0.05,
                                  credentials=ca.issue("domain", d.id))
        await a.start()
        domains[d.id], keys[d.id] = a, key
        trust.append(TrustEntry(key.key_id, d.id, key.public_key_bytes()))
        addresses[d.id] = await a.address()
    broker = BrokerAgent(config, addresses, trust, credentials=ca.issue("broker", "broker"))
    await broker.start()
    auditor_key = SigningKey.generate("auditor")
    auditor = AuditorAgent(auditor_key.private_pem(), [(e.key_id, e.domain_id, e.public_key) for e in trust],
                           await broker.address(), credentials=ca.issue("auditor", "auditor"))
    await auditor.start()
    try:
        yield SecureFed(config, ca, domains, addresses, broker, await broker.address(), auditor,
                        await auditor.address(), keys)
    finally:
        await auditor.stop(0)
        await broker.stop(0)
        for a in domains.values():
            await a.stop(0)


def _prepare(rid: str = "r-evil", hold_s: float = 3600.0) -> reservation_pb2.PrepareRequest:
    return reservation_pb2.PrepareRequest(
        request_id=f"{rid}:p", hold_timeout_s=hold_s,
        reservation=reservation_pb2.ReservationRequest(
            reservation_id=rid, tenant_id="made-up", tre_id="edge/gpu", rate_bps=2e7, burst_bits=2e5,
            delay_budget_s=0.01, epsilon=1e-3))


async def _first_answer(call):  # noqa: ANN001, ANN202 - a stream call's first answer (or its error)
    async for answer in call:
        return answer
    return None


def test_public_names_and_the_table_covers_every_rpc():
    assert all(hasattr(agents.access, n) for n in agents.access.__all__)
    rpcs = {f"{s.name}.{m.name}" for s in services_pb2.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert set(POLICY) == rpcs


def test_errors_pickle_with_their_codes():
    import pickle

    for cls, code in ((Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
                      (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED)):
        e = pickle.loads(pickle.dumps(cls("who are you")))
        assert type(e) is cls and e.code is code and str(e) == "who are you"


async def test_only_the_broker_reserves_at_a_domain(tmp_path, fast_config):
    async with secure_federation(fast_config(), tmp_path) as fed, contextlib.AsyncExitStack() as stack:
        for role, name in (("tenant", "t1"), ("operator", "ops"), ("auditor", "auditor"), ("domain", "access")):
            stub = fed.domain_stub("edge", fed.creds(role, name), stack)
            calls = {
                "Prepare": stub.Prepare(_prepare(), timeout=5),
                "Commit": stub.Commit(reservation_pb2.CommitRequest(request_id="c", reservation_id="r-evil"), timeout=5),
                "Abort": stub.Abort(reservation_pb2.AbortRequest(request_id="a", reservation_id="r-evil"), timeout=5),
                "Release": stub.Release(reservation_pb2.ReleaseRequest(request_id="l", reservation_id="r-evil"),
                                        timeout=5),
                "Batch": stub.Batch(services_pb2.BatchRequest(items=[services_pb2.BatchItem(prepare=_prepare())]),
                                    timeout=5),
                "BatchStream": _first_answer(stub.BatchStream(
                    iter([services_pb2.BatchRequest(items=[services_pb2.BatchItem(prepare=_prepare())])]), timeout=5)),
            }
            for method, call in calls.items():
                code, details = await code_of(call)
                assert code == grpc.StatusCode.PERMISSION_DENIED, (role, method, code, details)
                assert f"DomainController.{method} needs the role broker" in details
                assert f"trefed://{role}/{name}" in details
            # what anyone may do
            assert (await stub.GetEnvelope(services_pb2.GetEnvelopeRequest(), timeout=5)).body
            status = await stub.GetStatus(services_pb2.GetStatusRequest(), timeout=5)
            assert status.domain_id == "edge" and status.prepared_bps == 0
        # nothing was held by any of these calls
        assert fed.domains["edge"].service.status(services_pb2.GetStatusRequest()).prepared_bps == 0
        # the broker's own certificate does reserve
        stub = fed.domain_stub("edge", fed.creds("broker", "broker"), stack)
        assert (await stub.Prepare(_prepare("r-ok", hold_s=1.0), timeout=5)).state == reservation_pb2.PREPARED
        await stub.Abort(reservation_pb2.AbortRequest(request_id="r-ok:a", reservation_id="r-ok"), timeout=5)


async def test_reservation_details_only_for_broker_auditor_operator(tmp_path, fast_config):
    async with secure_federation(fast_config(), tmp_path) as fed, contextlib.AsyncExitStack() as stack:
        request = services_pb2.GetStatusRequest(include_reservations=True)
        for role, name in (("broker", "broker"), ("auditor", "auditor"), ("operator", "ops")):
            await fed.domain_stub("edge", fed.creds(role, name), stack).GetStatus(request, timeout=5)
        for role, name in (("tenant", "t1"), ("domain", "access")):
            code, details = await code_of(fed.domain_stub("edge", fed.creds(role, name), stack).GetStatus(
                request, timeout=5))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "include_reservations" in details, details


async def test_no_certificate_or_a_foreign_ca_does_not_connect(tmp_path, fast_config):
    async with secure_federation(fast_config(), tmp_path) as fed, contextlib.AsyncExitStack() as stack:
        insecure = fed.domain_stub("edge", None, stack)
        foreign = fed.domain_stub("edge", CertificateAuthority.create().issue("broker", "broker"), stack)
        for stub in (insecure, foreign):
            code, _ = await code_of(stub.Prepare(_prepare(), timeout=3))
            assert code == grpc.StatusCode.UNAVAILABLE
        assert fed.domains["edge"].service.status(services_pb2.GetStatusRequest()).prepared_bps == 0
        # a client that reaches the wrong server (a domain posing as another) fails the handshake
        ch = open_channel(fed.domain_addresses["access"], fed.creds("broker", "broker"),
                          PeerIdentity(Role.DOMAIN, "edge"))
        stack.push_async_callback(ch.close)
        code, _ = await code_of(services_pb2_grpc.DomainControllerStub(ch).GetStatus(
            services_pb2.GetStatusRequest(), timeout=3))
        assert code == grpc.StatusCode.UNAVAILABLE


async def test_tenant_flow_and_another_tenant_cannot_read_or_release(tmp_path, fast_config):
    config = fast_config()
    async with secure_federation(config, tmp_path) as fed, contextlib.AsyncExitStack() as stack:
        t1 = fed.broker_stub(fed.creds("tenant", "t1"), stack)
        t2 = fed.broker_stub(fed.creds("tenant", "t2"), stack)
        intent = config.tenants[0].intent.to_proto("")  # no tenant id: the certificate says who
        offers = (await t1.ResolveIntent(intent, timeout=60)).offers
        assert offers
        contract = await t1.RequestService(
            services_pb2.ServiceRequest(request_id="t1:1", intent=intent, offer_id=offers[0].offer_id), timeout=60)
        assert contract.tenant_id == "t1" and len(contract.grants) == len(contract.offer.path)
        # a tenant cannot ask in another tenant's name
        spoofed = config.tenants[0].intent.to_proto("t1")
        code, details = await code_of(t2.RequestService(
            services_pb2.ServiceRequest(request_id="t2:1", intent=spoofed), timeout=60))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "trefed://tenant/t2" in details, details
        code, details = await code_of(t2.ResolveIntent(spoofed, timeout=60))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        # nor read or release another tenant's contract
        cid = contract.contract_id
        for call in (t2.GetContract(services_pb2.GetContractRequest(contract_id=cid), timeout=5),
                     t2.ReleaseService(services_pb2.ReleaseServiceRequest(request_id="x", contract_id=cid),
                                       timeout=5)):
            code, details = await code_of(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED and "another tenant" in details, details
        assert not (await t1.GetContract(services_pb2.GetContractRequest(contract_id=cid), timeout=5)).released
        # the auditor and an operator read it; a domain may not
        auditor = fed.broker_stub(fed.creds("auditor", "auditor"), stack)
        assert (await auditor.GetContract(services_pb2.GetContractRequest(contract_id=cid), timeout=5)).tenant_id == "t1"
        code, _ = await code_of(fed.broker_stub(fed.creds("domain", "edge"), stack).GetContract(
            services_pb2.GetContractRequest(contract_id=cid), timeout=5))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        # nor get the auditor's report on it; its owner may
        reports = {}
        for name in ("t1", "t2"):
            ch = open_channel(fed.auditor_address, fed.creds("tenant", name), AUDITOR)
            stack.push_async_callback(ch.close)
            reports[name] = services_pb2_grpc.AuditorStub(ch)
        code, details = await code_of(reports["t2"].GetReport(services_pb2.ReportRequest(contract_id=cid), timeout=10))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "another tenant" in details, details
        code, details = await code_of(reports["t1"].GetReport(services_pb2.ReportRequest(contract_id=cid), timeout=10))
        assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), details
        # the owner releases it
        released = await t1.ReleaseService(services_pb2.ReleaseServiceRequest(request_id="t1:rel", contract_id=cid),
                                           timeout=30)
        assert released.released
        for d in contract.offer.path:
            assert fed.domains[d].service.status(services_pb2.GetStatusRequest()).committed_bps == 0


async def test_telemetry_only_from_its_own_domain(tmp_path, fast_config):
    async with secure_federation(fast_config(), tmp_path) as fed, contextlib.AsyncExitStack() as stack:
        body = telemetry_pb2.TelemetryBatchBody(domain_id="edge")
        batch = sign(body, fed.keys["edge"], telemetry_pb2.SignedTelemetryBatch)

        def auditor(role: str, name: str) -> services_pb2_grpc.AuditorStub:
            ch = open_channel(fed.auditor_address, fed.creds(role, name), AUDITOR)
            stack.push_async_callback(ch.close)
            return services_pb2_grpc.AuditorStub(ch)

        for role, name in (("domain", "access"), ("tenant", "edge"), ("broker", "broker")):
            code, details = await code_of(auditor(role, name).SubmitTelemetry(batch, timeout=5))
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, name, code, details)
        # from edge itself the call reaches the ledger (which judges the batch on its merits)
        code, details = await code_of(auditor("domain", "edge").SubmitTelemetry(batch, timeout=5))
        assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), details
        # the same through a domain's client of the auditor (what a domain controller uses)
        own = GrpcAuditorClient(fed.auditor_address, credentials=fed.creds("domain", "edge"))
        other = GrpcAuditorClient(fed.auditor_address, credentials=fed.creds("domain", "access"))
        try:
            answer = await own.submit_telemetry(batch)
            assert isinstance(answer, services_pb2.SubmitTelemetryResponse)
            with pytest.raises(PermissionDenied, match="a batch of domain 'edge' from trefed://domain/access"):
                await other.submit_telemetry(batch)
        finally:
            await own.close()
            await other.close()


async def test_published_keys_verify_a_grant(tmp_path, fast_config):
    """The keys from ListDomainKeys verify a real grant with cryptography alone; the key id is 64 bits."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    config = fast_config()
    async with secure_federation(config, tmp_path) as fed, contextlib.AsyncExitStack() as stack:
        t1 = fed.broker_stub(fed.creds("tenant", "t1"), stack)
        keys = (await t1.ListDomainKeys(services_pb2.ListDomainKeysRequest(), timeout=5)).keys
        assert [k.domain_id for k in keys] == sorted(d.id for d in config.domains)
        edge_only = await t1.ListDomainKeys(services_pb2.ListDomainKeysRequest(domain_id="edge"), timeout=5)
        assert [k.domain_id for k in edge_only.keys] == ["edge"]
        intent = config.tenants[0].intent.to_proto("")
        contract = await t1.RequestService(services_pb2.ServiceRequest(request_id="k:1", intent=intent), timeout=60)
        by_id = {k.key_id: k for k in keys}
        for grant in contract.grants:
            key = by_id[grant.signature.key_id]
            fingerprint = key.key_id.rsplit("-", 1)[1]
            assert len(fingerprint) == 16 and hashlib.sha256(key.public_key).hexdigest().startswith(fingerprint)
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(grant.signature.signature, grant.body)
            assert reservation_pb2.GrantBody.FromString(grant.body).tenant_id == "t1"
        await t1.ReleaseService(services_pb2.ReleaseServiceRequest(request_id="k:rel",
                                                                   contract_id=contract.contract_id), timeout=30)


def test_credentials_must_be_the_agents_own(tmp_path, fast_config):
    from federation.errors import ConfigError

    ca = CertificateAuthority.create()
    d = fast_config().domains[0]
    key = SigningKey.generate(d.id)
    with pytest.raises(ConfigError, match="credentials are those of trefed://domain/other"):
        DomainControllerAgent(d.envelope_body(key.key_id).SerializeToString(), key.private_pem(),
                              str(tmp_path / "x.db"), credentials=ca.issue("domain", "other"))
    with pytest.raises(ConfigError, match="trefed://tenant/t1"):
        BrokerAgent(fast_config(), {}, [], credentials=ca.issue("tenant", "t1"))


async def test_insecure_only_on_loopback(tmp_path, fast_config):
    from federation.errors import InputError

    d = fast_config().domains[0]
    key = SigningKey.generate(d.id)
    agent = DomainControllerAgent(d.envelope_body(key.key_id).SerializeToString(), key.private_pem(),
                                  str(tmp_path / "x.db"), host="0.0.0.0")
    with pytest.raises(InputError, match="needs mTLS credentials"):
        await agent.start()
    await agent.stop(0)


def test_identity_uris():
    from federation.errors import InputError

    assert PeerIdentity.from_uri("trefed://domain/edge") == PeerIdentity(Role.DOMAIN, "edge")
    assert PeerIdentity(Role.TENANT, "T_1").tls_name == "x-545f31.tenant.trefed"
    for bad in ("https://domain/edge", "trefed://domain/edge/x", "trefed://king/edge", "trefed://domain/"):
        with pytest.raises(InputError, match="identity|role|id"):
            PeerIdentity.from_uri(bad)
