"""The auditor inside a running federation, over gRPC between real Ray actors on loopback (issue 9,
"Done when", third bullet): a tenant is admitted, the data plane carries its traffic through its
path at the reserved rates, each domain signs its telemetry as a hash chain with its own key, the
batches go to the auditor over gRPC, and the auditor's signed report verifies offline with the
keys directory alone. Then a tampered batch and a batch signed with another domain's key are
refused, each with its finding, and a domain that lies (shifts its own egress times earlier) is
found and named in the report.

One federation (its own config name, so its actors never clash with the session's
``fast_federation``) on the session's Ray serves every test of this module. The honest segment
(and its report) is a module fixture; the lying segment continues each domain's chain after it,
so the tests pass in any order.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import FAST_CONFIG
from trefed.v1 import services_pb2, services_pb2_grpc, telemetry_pb2

from agents.access import AUDITOR, BROKER
from agents.server import open_channel
from federation.audit.batches import body_sha256, build_batches
from federation.audit.scenario import shift_egress
from federation.config import FederationConfig, parse_config
from federation.dataplane.engine import Simulation
from federation.dataplane.path import Domain, Source
from federation.dataplane.traffic import PacketSizes, Poisson
from federation.errors import VerificationError
from federation.tre.signing import Reason, sign
from federation.tre.trust import TrustStore

TENANT = "t1"
#: Each domain lies by this much in the lying segment (s): its egress times reported earlier.
LIE_S = 0.002
#: Packets of the tenant per data-plane segment, and the tenant's packet rate (packets/s, half
#: its contracted rho of 1e7 bits/s at 1e3-bit packets).
PACKETS, RATE_PPS, SIZE_BITS = 20_000, 5_000.0, 1e3


@pytest.fixture(scope="module")
def fed(ray_runtime, tmp_path_factory):
    from agents.runner import Federation

    data = copy.deepcopy(FAST_CONFIG)
    data["name"] = "audited"
    data["tenants"] = data["tenants"][:1]
    data["keys_dir"] = str(tmp_path_factory.mktemp("keys"))
    federation = Federation(parse_config(data), runtime=ray_runtime, state_dir=tmp_path_factory.mktemp("st"))
    federation.start()
    try:
        yield federation
    finally:
        federation.stop()


@pytest.fixture(scope="module")
def contract(fed) -> services_pb2.ServiceContract:
    [outcome] = fed.run_tenants([TENANT])
    assert outcome.admitted, outcome
    with open_channel(fed.broker_address, fed.credentials("operator", "tests"), BROKER, sync=True) as ch:
        return services_pb2_grpc.BrokerStub(ch).GetContract(
            services_pb2.GetContractRequest(contract_id=outcome.contract_id), timeout=10)


class _Auditor:
    """The auditor as its callers reach it over mTLS: a batch over the channel of the domain it names
    (a domain submits its own telemetry only), reports as an operator."""

    def __init__(self, fed) -> None:
        self.fed = fed
        self.channels: dict[tuple[str, str], grpc.Channel] = {}

    def _stub(self, role: str, name: str) -> services_pb2_grpc.AuditorStub:
        if (role, name) not in self.channels:
            self.channels[role, name] = open_channel(self.fed.auditor_address, self.fed.credentials(role, name),
                                                     AUDITOR, sync=True)
        return services_pb2_grpc.AuditorStub(self.channels[role, name])

    def SubmitTelemetry(self, batch: telemetry_pb2.SignedTelemetryBatch, timeout: float):
        domain_id = telemetry_pb2.TelemetryBatchBody.FromString(batch.body).domain_id
        return self._stub("domain", domain_id).SubmitTelemetry(batch, timeout=timeout)

    def GetReport(self, request: services_pb2.ReportRequest, timeout: float):
        return self._stub("operator", "tests").GetReport(request, timeout=timeout)


@pytest.fixture(scope="module")
def auditor(fed):
    client = _Auditor(fed)
    try:
        yield client
    finally:
        for ch in client.channels.values():
            ch.close()


def path_of(config: FederationConfig, contract: services_pb2.ServiceContract) -> list[Domain]:
    """The tenant's path in the data plane: each domain a server at the contract's reserved rate
    followed by the domain's latency and propagation, with its loss probability."""
    out = []
    for b in contract.offer.budgets:
        m = config.domain(b.domain_id).model
        out.append(Domain(rate=b.rate_bps, latency=m.latency_s, prop=m.propagation_delay_s,
                          loss=m.loss_probability, name=b.domain_id))
    return out


@dataclass
class Chain:
    """A domain's telemetry chain so far: the next sequence and the hash of the last body sent."""

    next_sequence: int = 1
    previous_sha256: bytes = b""


def segment(fed, contract, chains: dict[str, Chain], *, seed: int, start_s: float, first_seq: int,
            liar: str | None = None) -> tuple[dict[str, list[telemetry_pb2.SignedTelemetryBatch]], float]:
    """Carry PACKETS packets of the tenant through its path, times shifted by ``start_s`` and packet
    numbers by ``first_seq`` (so the run goes on where the previous segment ended), and sign each
    domain's log as the next batches of its chain with its own key; ``liar`` reports its egress
    LIE_S earlier than it was. Returns the batches per domain and the segment's end (s)."""
    domains = path_of(fed.config, contract)
    sim = Simulation(domains, [Source(0, Poisson(RATE_PPS, PacketSizes("fixed", SIZE_BITS)))], seed=seed,
                     packets=PACKETS)
    logs = sim.run().domains
    assert logs is not None
    end = start_s + math.ceil(max(float(np.nanmax(log.egress)) for log in logs)) + 1.0
    out = {}
    for domain_id, log in zip(contract.offer.path, logs):
        log = replace(log, seq=log.seq + first_seq, ingress=log.ingress + start_s, egress=log.egress + start_s)
        if domain_id == liar:
            log = shift_egress(log, LIE_S)
        chain = chains.setdefault(domain_id, Chain())
        batches = build_batches(log, domain_id, fed.keys[domain_id], tenant_ids={0: TENANT}, batch_packets=5_000,
                                start_sequence=chain.next_sequence, previous_sha256=chain.previous_sha256,
                                window_start_s=start_s, window_end_s=end)
        chain.next_sequence += len(batches)
        chain.previous_sha256 = body_sha256(batches[-1].body)
        out[domain_id] = batches
    return out, end


def submit_all(auditor, batches: dict[str, list[telemetry_pb2.SignedTelemetryBatch]]) -> None:
    for domain_id, chain in batches.items():
        for b in chain:
            r = auditor.SubmitTelemetry(b, timeout=30)
            assert r.accepted, (domain_id, r.reason)


def verified_report(fed, auditor, contract) -> telemetry_pb2.AccountabilityReportBody:
    """GetReport over gRPC, verified offline: with nothing but the keys directory."""
    signed = auditor.GetReport(services_pb2.ReportRequest(contract_id=contract.contract_id), timeout=60)
    trust = TrustStore.from_dir(Path(fed.config.keys_dir))
    body = trust.verify(signed, telemetry_pb2.AccountabilityReportBody, domain_of=lambda b: b.auditor_id)
    assert body.auditor_id == "auditor" and body.key_id == fed.auditor_key.key_id
    forged = telemetry_pb2.SignedAccountabilityReport()
    forged.CopyFrom(signed)
    forged.body = signed.body[:-1] + bytes([signed.body[-1] ^ 1])
    with pytest.raises(VerificationError) as err:
        trust.verify(forged, telemetry_pb2.AccountabilityReportBody, domain_of=lambda b: b.auditor_id)
    assert err.value.reason == Reason.BAD_SIGNATURE
    return body


@dataclass
class Honest:
    """The first segment: every domain honest; its batches, end (s) and the report over it."""

    chains: dict[str, Chain]
    batches: dict[str, list[telemetry_pb2.SignedTelemetryBatch]]
    end_s: float
    report: telemetry_pb2.AccountabilityReportBody
    stats: dict


@pytest.fixture(scope="module")
def honest(fed, contract, auditor) -> Honest:
    chains: dict[str, Chain] = {}
    batches, end = segment(fed, contract, chains, seed=1, start_s=0.0, first_seq=0)
    submit_all(auditor, batches)
    report = verified_report(fed, auditor, contract)
    return Honest(chains, batches, end, report, fed.auditor_stats())


def test_honest_telemetry_in_a_signed_report_out(fed, contract, honest):
    body = honest.report
    assert body.contract_id == contract.contract_id and body.tenant_id == TENANT
    assert body.packets >= PACKETS - 10  # every packet the tenant sent (a few may be lost)
    assert [d.domain_id for d in body.domains] == list(contract.offer.path)
    # Honest domains well inside their budgets: none is found violating, none is named in a finding.
    # (COMPLIANT needs the interval below eps_i; with no exceedance at all the batch-means estimator
    # counts each batch as one sample, at most 1024, which cannot show eps_i ~ 2e-3: INCONCLUSIVE.)
    for d, budget in zip(body.domains, contract.offer.budgets):
        assert d.verdict in (telemetry_pb2.COMPLIANT, telemetry_pb2.INCONCLUSIVE), d
        assert d.exceedance_rate <= d.epsilon and d.exceedance_ci_low <= d.exceedance_rate <= d.exceedance_ci_high
        assert math.isclose(d.delay_budget_s, budget.delay_s) and d.packets >= PACKETS - 10
        assert not d.findings, d.findings
    assert not body.finding_details, body.findings
    assert body.end_to_end_verdict != telemetry_pb2.VIOLATING
    assert body.end_to_end_violation_rate <= body.end_to_end_epsilon
    assert honest.stats["batches_accepted"] == sum(len(c) for c in honest.batches.values())
    assert honest.stats["contracts"] == 1 and honest.stats["reports_signed"] == 1


def test_a_tampered_batch_and_a_batch_under_another_domains_key_are_refused(fed, auditor, honest):
    genuine = honest.batches["access"][0]
    body = telemetry_pb2.TelemetryBatchBody.FromString(genuine.body)
    body.packets.egress_s[0] -= 0.001  # in transit, a packet made to look faster
    tampered = telemetry_pb2.SignedTelemetryBatch()
    tampered.CopyFrom(genuine)
    tampered.body = body.SerializeToString(deterministic=True)
    r = auditor.SubmitTelemetry(tampered, timeout=30)
    assert not r.accepted and re.search(r"\btampered\b", r.reason), r.reason

    impostor = sign(telemetry_pb2.TelemetryBatchBody.FromString(genuine.body), fed.keys["transport"],
                    telemetry_pb2.SignedTelemetryBatch)  # claims access, signed by transport
    r = auditor.SubmitTelemetry(impostor, timeout=30)
    assert not r.accepted and re.search(r"\bwrong-key\b", r.reason), r.reason


def test_a_lying_domain_is_found_and_named(fed, contract, auditor, honest):
    batches, _ = segment(fed, contract, honest.chains, seed=2, start_s=honest.end_s, first_seq=PACKETS,
                         liar="transport")
    submit_all(auditor, batches)  # every batch is genuinely signed: the lie is in the numbers
    body = verified_report(fed, auditor, contract)
    inconsistent = [f for f in body.finding_details if f.kind == "inconsistent"]
    assert inconsistent, body.findings
    assert {f.domain_id for f in inconsistent} == {"transport"}, "\n".join(body.findings)
    assert sum(f.packets for f in inconsistent) >= PACKETS * 0.99  # the lie touched every packet it forwarded
    transport = {d.domain_id: d for d in body.domains}["transport"]
    assert transport.verdict != telemetry_pb2.COMPLIANT and transport.findings
    assert any("transport" in s and "inconsistent" in s for s in body.findings)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_trefed_serve_prints_the_auditors_address_after_the_brokers(tmp_path):
    """``trefed serve`` (its own local Ray, in a subprocess) announces the auditor beside the broker."""
    from serving import trefed_serve

    with trefed_serve("configs/quickstart.yaml", tmp_path / "state") as served:
        pass
    assert served.returncode == 0, "".join(served.lines)
    text = "".join(served.lines)
    broker = re.search(r"^broker listening on 127\.0\.0\.1:(\d+)$", text, re.M)
    found = re.search(r"^auditor listening on 127\.0\.0\.1:(\d+)$", text, re.M)
    assert broker and found and found.start() > broker.start(), text
    assert found.group(1) != broker.group(1)
    assert re.search(r"\] auditor started on 127\.0\.0\.1:" + found.group(1), text), text
