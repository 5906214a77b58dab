"""The AuditLedger: every finding detected and named, bad batches answered (never raised), reports
signed and verifiable offline."""

from __future__ import annotations

import json

import pytest
from trefed.v1 import services_pb2, telemetry_pb2

from federation.audit.chain import FindingKind
from federation.audit.ledger import AuditLedger
from federation.audit.report import (
    report_from_document,
    report_to_json,
    report_to_markdown,
    verify_report,
    violation_found,
)
from federation.audit.scenario import audited_run, signed_contract
from federation.errors import InputError, NotFoundError, VerificationError
from federation.tre.signing import Reason, SigningKey, sign
from federation.tre.trust import TrustStore

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def run():
    # 4 batches per domain of 1000 packets each.
    return audited_run(packets=4000, batch_packets=1000, seed=5)


@pytest.fixture
def auditor():
    return SigningKey.generate("auditor")


def ledger_for(run, auditor) -> AuditLedger:
    trust = TrustStore()
    for k in run.keys:
        trust.add_key(k)
    led = AuditLedger(trust, auditor, auditor_id="auditor", clock=lambda: NOW)
    led.add_contract(run.contract)
    return led


def kinds(led: AuditLedger, domain: str) -> list[str]:
    return [f.kind for f in led.findings(domain)]


def report_body(led: AuditLedger) -> telemetry_pb2.AccountabilityReportBody:
    return telemetry_pb2.AccountabilityReportBody.FromString(led.report("ct-1").body)


def verdicts(body) -> dict[str, str]:
    return {d.domain_id: telemetry_pb2.Verdict.Name(d.verdict) for d in body.domains}


def test_a_clean_run_has_no_findings_and_a_signed_report(run, auditor):
    led = ledger_for(run, auditor)
    responses = led.submit_all(run.all_batches())
    assert all(r.accepted and not r.reason for r in responses)
    assert responses[3].packets_total == 4000
    signed = led.report("ct-1")
    trust = TrustStore()
    trust.add(auditor.key_id, "auditor", auditor.public_pem())  # the offline verifier holds the public key only
    body = verify_report(signed, trust)
    assert body.auditor_id == "auditor" and body.key_id == auditor.key_id and body.contract_id == "ct-1"
    assert body.report_id == "ct-1/1" and body.issued_at.seconds == int(NOW)
    assert not body.findings and not body.finding_details
    assert body.packets == 4000 and [d.packets for d in body.domains] == [4000] * 3
    assert "VIOLATING" not in verdicts(body).values()
    assert not violation_found(body)
    assert led.report("ct-1").body != signed.body  # the next report has the next id


def test_reports_verify_from_bytes_and_from_their_json(run, auditor):
    led = ledger_for(run, auditor)
    led.submit_all(run.all_batches())
    signed = led.report("ct-1")
    trust = TrustStore()
    trust.add_key(auditor)
    assert verify_report(signed.SerializeToString(), trust).contract_id == "ct-1"
    doc = json.loads(report_to_json(signed))
    assert doc["report"]["contract_id"] == "ct-1"
    assert verify_report(report_from_document(doc), trust).report_id == "ct-1/1"
    md = report_to_markdown(verify_report(signed, trust))
    assert "# Accountability report ct-1/1" in md and "| transport |" in md
    tampered = telemetry_pb2.SignedAccountabilityReport()
    tampered.CopyFrom(signed)
    tampered.body = signed.body.replace(b"ct-1", b"ct-2")
    with pytest.raises(VerificationError) as err:
        verify_report(tampered, trust)
    assert err.value.reason == Reason.BAD_SIGNATURE
    with pytest.raises(VerificationError):
        verify_report(b"\xff\xff", trust)


def test_a_gap_is_found_and_blocks_compliance(run, auditor):
    led = ledger_for(run, auditor)
    chain = run.batches["transport"]
    for b in run.all_batches():
        if b is not chain[1]:
            assert led.submit(b).accepted
    assert kinds(led, "transport") == [FindingKind.GAP]
    body = report_body(led)
    assert verdicts(body)["transport"] != "COMPLIANT"
    assert any(f.kind == "gap" and f.domain_id == "transport" and f.batch_sequence == 2 for f in body.finding_details)
    assert telemetry_pb2.Verdict.Name(body.end_to_end_verdict) != "COMPLIANT"


def test_a_reorder_is_found_and_the_batches_are_linked(run, auditor):
    led = ledger_for(run, auditor)
    chain = run.batches["access"]
    r = [led.submit(chain[0]), led.submit(chain[2]), led.submit(chain[1]), led.submit(chain[3])]
    assert all(x.accepted for x in r)
    assert r[1].reason.startswith("held")
    assert r[3].packets_total == 4000
    found = led.findings("access")
    assert [f.kind for f in found] == [FindingKind.REORDER] and found[0].batch_sequence == 2
    for k in ("transport", "cloud"):
        led.submit_all(run.batches[k])
    body = report_body(led)
    assert [f.kind for f in body.finding_details] == ["reorder"] and not violation_found(body)  # nothing lost
    in_order = ledger_for(run, auditor)
    in_order.submit_all(run.all_batches())
    assert verdicts(body) == verdicts(report_body(in_order))  # a reorder blocks no verdict


def test_a_replay_is_rejected(run, auditor):
    led = ledger_for(run, auditor)
    chain = run.batches["access"]
    led.submit(chain[0])
    led.submit(chain[1])
    again = led.submit(chain[0])
    assert not again.accepted and again.reason.startswith("replay[access]")
    assert again.packets_total == 2000
    assert kinds(led, "access") == [FindingKind.REPLAY]


def test_a_tampered_batch_is_rejected_and_named(run, auditor):
    led = ledger_for(run, auditor)
    bad = telemetry_pb2.SignedTelemetryBatch()
    bad.CopyFrom(run.batches["cloud"][0])
    body = telemetry_pb2.TelemetryBatchBody.FromString(bad.body)
    body.packets.egress_s[0] -= 1.0
    bad.body = body.SerializeToString(deterministic=True)
    r = led.submit(bad)
    assert not r.accepted and r.reason.startswith("tampered[cloud]")
    assert kinds(led, "cloud") == [FindingKind.TAMPERED]


def test_a_batch_signed_by_another_domains_key_is_rejected(run, auditor):
    led = ledger_for(run, auditor)
    forged = sign(telemetry_pb2.TelemetryBatchBody.FromString(run.batches["cloud"][0].body), run.keys[1],
                  telemetry_pb2.SignedTelemetryBatch)  # transport signs a batch claiming to be cloud
    r = led.submit(forged)
    assert not r.accepted and r.reason.startswith("wrong-key[cloud]") and "transport" in r.reason
    stranger = sign(telemetry_pb2.TelemetryBatchBody.FromString(run.batches["cloud"][0].body),
                    SigningKey.generate("cloud"), telemetry_pb2.SignedTelemetryBatch)
    r2 = led.submit(stranger)
    assert not r2.accepted and "unknown-key" in r2.reason
    assert kinds(led, "cloud") == [FindingKind.WRONG_KEY, FindingKind.WRONG_KEY]


def test_garbage_is_answered_not_raised(run, auditor):
    led = ledger_for(run, auditor)
    r = led.submit(telemetry_pb2.SignedTelemetryBatch(body=b"\xff\x00"))
    assert not r.accepted and "malformed" in r.reason
    r = led.submit(services_pb2.SubmitTelemetryResponse())  # not even a batch
    assert not r.accepted and "malformed" in r.reason


def test_equivocation_and_a_broken_chain_are_rejected(run, auditor):
    led = ledger_for(run, auditor)
    key = run.keys[0]
    chain = run.batches["access"]
    led.submit(chain[0])
    other = telemetry_pb2.TelemetryBatchBody.FromString(chain[0].body)
    other.window_end_s += 1.0
    r = led.submit(sign(other, key, telemetry_pb2.SignedTelemetryBatch))
    assert not r.accepted and r.reason.startswith("equivocation[access]")
    unlinked = telemetry_pb2.TelemetryBatchBody.FromString(chain[1].body)
    unlinked.previous_batch_sha256 = b"\x00" * 32
    r = led.submit(sign(unlinked, key, telemetry_pb2.SignedTelemetryBatch))
    assert not r.accepted and r.reason.startswith("broken-chain[access]")
    assert led.submit(chain[1]).accepted
    body = report_body(led)
    assert violation_found(body)  # the domain signed two stories


def test_missing_telemetry_is_never_compliant(run, auditor):
    led = ledger_for(run, auditor)
    for k in ("access", "cloud"):
        led.submit_all(run.batches[k])
    body = report_body(led)
    assert verdicts(body)["transport"] == "INCONCLUSIVE"
    assert [(f.kind, f.domain_id) for f in body.finding_details] == [("missing-telemetry", "transport")]
    assert violation_found(body)  # never compliant by silence
    empty = ledger_for(run, auditor)
    nothing = report_body(empty)
    assert set(verdicts(nothing).values()) == {"INCONCLUSIVE"}
    assert telemetry_pb2.Verdict.Name(nothing.end_to_end_verdict) == "INCONCLUSIVE"
    assert nothing.packets == 0 and len(nothing.finding_details) == 3


def test_a_lying_domain_is_named_by_its_neighbour():
    run = audited_run(packets=4000, batch_packets=1000, seed=5, liar=(1, 2.0))
    led = ledger_for(run, SigningKey.generate("auditor"))
    assert all(r.accepted for r in led.submit_all(run.all_batches()))
    body = report_body(led)
    (f,) = body.finding_details
    assert f.kind == "inconsistent" and f.domain_id == "transport" and f.packets > 3000
    assert "transport under-reports its delay" in f.detail
    assert verdicts(body)["transport"] != "COMPLIANT"
    assert violation_found(body)


def test_packets_that_vanish_between_domains_are_found():
    run = audited_run(packets=4000, batch_packets=1000, seed=5)
    led = ledger_for(run, SigningKey.generate("auditor"))
    led.submit_all(run.batches["access"] + run.batches["cloud"])
    log = run.telemetry.domains[1]
    from federation.audit.batches import build_batches
    from federation.dataplane.telemetry import DomainLog

    keep = log.seq % 100 != 7  # transport drops 40 packets from its reports
    hidden = DomainLog(1, *(getattr(log, f)[keep] for f in ("flow", "seq", "tenant", "ingress", "egress", "lost",
                                                           "error")))
    led.submit_all(build_batches(hidden, "transport", run.keys[1], tenant_ids={0: "tenant-a"}, batch_packets=1000,
                                 window_end_s=float(log.ingress.max()) + 1.0))
    body = report_body(led)
    missing = [f for f in body.finding_details if f.kind == "missing-packets"]
    assert [(f.domain_id, f.packets) for f in missing] == [("transport", 40)]
    assert violation_found(body)


def test_unknown_contracts_and_bad_levels(run, auditor):
    led = ledger_for(run, auditor)
    with pytest.raises(NotFoundError, match="ct-x"):
        led.report("ct-x")
    assert issubclass(NotFoundError, LookupError)
    with pytest.raises(InputError, match="confidence"):
        led.report("ct-1", confidence=1.5)


def test_contracts_are_verified(run, auditor):
    led = ledger_for(run, auditor)
    forged = signed_contract("ct-2", "tenant-a", [run.keys[0], SigningKey.generate("transport"), run.keys[2]],
                             [(10.0, 0.01)] * 3)
    with pytest.raises(VerificationError) as err:
        led.add_contract(forged)
    assert err.value.reason == Reason.UNKNOWN_KEY and "grants[1]" in str(err.value)
    swapped = services_pb2.ServiceContract()
    swapped.CopyFrom(run.contract)
    swapped.offer.path[0] = "cloud"
    with pytest.raises(InputError, match="offer.path"):
        led.add_contract(swapped)
    other = services_pb2.ServiceContract()
    other.CopyFrom(run.contract)
    other.tenant_id = "tenant-b"
    with pytest.raises(InputError, match="tenant_id"):
        led.add_contract(other)
    moved = services_pb2.ServiceContract()
    moved.CopyFrom(run.contract)
    moved.offer.budgets[2].delay_s += 1.0
    with pytest.raises(InputError, match=r"offer.budgets\[2\].delay_s"):
        led.add_contract(moved)
    assert led.contract_ids() == ["ct-1"]


def test_the_auditor_key_must_be_the_auditors(run):
    with pytest.raises(InputError, match="auditor_id"):
        AuditLedger(TrustStore(), SigningKey.generate("access"), auditor_id="auditor")


def test_the_tenants_receipts_witness_the_last_domain():
    honest = audited_run(packets=4000, batch_packets=1000, seed=5, receipts=True)
    led = ledger_for(honest, SigningKey.generate("auditor"))
    led.trust.add_key(honest.tenant_key)
    assert all(r.accepted for r in led.submit_all(honest.all_batches()))
    assert not report_body(led).finding_details
    lying = audited_run(packets=4000, batch_packets=1000, seed=5, receipts=True, liar=(2, 0.5))
    led = ledger_for(lying, SigningKey.generate("auditor"))
    led.trust.add_key(lying.tenant_key)
    led.submit_all(lying.all_batches())
    body = report_body(led)
    assert [(f.kind, f.domain_id) for f in body.finding_details] == [("inconsistent", "cloud")]
    assert "tenant-a" in body.finding_details[0].detail
    # without the receipts the last domain's egress has no witness
    led = ledger_for(lying, SigningKey.generate("auditor"))
    led.submit_all([b for k in lying.keys for b in lying.batches[k.domain_id]])
    assert not report_body(led).finding_details


def test_a_huge_sequence_jump_is_one_gap_found_at_once(run, auditor):
    """A batch numbered 10^15 must not make the report walk every missing number."""
    led = ledger_for(run, auditor)
    chain = run.batches["access"]
    led.submit(chain[0])
    far = telemetry_pb2.TelemetryBatchBody.FromString(chain[1].body)
    far.batch_sequence = 10**15
    assert led.submit(sign(far, run.keys[0], telemetry_pb2.SignedTelemetryBatch)).accepted
    (gap,) = led.findings("access")
    assert gap.kind == FindingKind.GAP and gap.batch_sequence == 2
    assert f"batches 2-{10**15 - 1} never arrived" in gap.detail


def test_findings_are_bounded_per_kind_and_the_rest_counted(run, auditor):
    # 10 000 bad batches kept in full made every report 3.35 MB (benchmarks/bench_soak.py --reports)
    led = ledger_for(run, auditor)
    led.submit_all(run.all_batches())
    before = report_body(led)
    good = run.batches["cloud"][0]
    for i in range(300):  # tampered: one bit of the signature flipped
        bad = telemetry_pb2.SignedTelemetryBatch()
        bad.CopyFrom(good)
        sig = bytearray(bad.signature.signature)
        sig[i % 64] ^= 1 << (i % 8)
        bad.signature.signature = bytes(sig)
        assert not led.submit(bad).accepted
    for _ in range(50):
        assert not led.submit(run.batches["access"][0]).accepted  # replays (harmless, still counted)
    cloud = led.findings("cloud")
    assert [f.kind for f in cloud] == [FindingKind.TAMPERED] * 21
    assert cloud[-1].detail == "280 more tampered findings not listed (the first 20 are)"
    access = led.findings("access")
    assert [f.kind for f in access] == [FindingKind.REPLAY] * 21 and access[-1].detail.startswith("30 more replay")
    body = report_body(led)
    assert verdicts(body)["cloud"] != "COMPLIANT" and verdicts(body)["access"] == verdicts(before)["access"]
    assert len(body.findings) == len(before.findings) + 42
    assert sum("280 more tampered findings" in f for f in body.findings) == 1
    assert body.ByteSize() < before.ByteSize() + 42 * 400
