"""Compliance and attribution on data-plane runs with a known answer (M/M/1 tandems, see
federation.audit.scenario): an impaired domain is VIOLATING and carries the share; clean domains
are COMPLIANT or INCONCLUSIVE, never VIOLATING."""

from __future__ import annotations

import math

import pytest
from trefed.v1 import telemetry_pb2

from federation.audit.analysis import ContractTerms, DomainTerms, analyse
from federation.audit.ledger import AuditLedger
from federation.audit.scenario import audited_run, mm1_exceedance
from federation.errors import InputError
from federation.tre.signing import SigningKey

RATE = 0.5
D_I = math.log(400.0) / (1.0 - RATE)  # the scenarios' default d_i: true exceedance eps_i / 4 = 0.0025


def audit(**kw) -> telemetry_pb2.AccountabilityReportBody:
    run = audited_run(**kw)
    key = SigningKey.generate("auditor")
    led = AuditLedger(run.trust, key, auditor_id="auditor", clock=lambda: 1.8e9)
    led.add_contract(run.contract)
    assert all(r.accepted for r in led.submit_all(run.all_batches()))
    return telemetry_pb2.AccountabilityReportBody.FromString(led.report(run.contract.contract_id).body)


def verdict(d) -> str:
    return telemetry_pb2.Verdict.Name(d.verdict)


def test_the_scenario_truth():
    assert mm1_exceedance(D_I, RATE) == pytest.approx(0.0025)
    assert mm1_exceedance(D_I, RATE, extra_s=25.0) == 1.0
    assert mm1_exceedance(D_I, RATE, extra_s=5.0) == pytest.approx(math.exp(-0.5 * (D_I - 5.0)))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_clean_domains_are_never_violating(seed):
    body = audit(seed=seed, packets=10_000)
    for d in body.domains:
        assert verdict(d) in ("COMPLIANT", "INCONCLUSIVE")
        assert d.exceedance_ci_low <= 0.01
        assert d.method.startswith("batch-means") and 0 < d.effective_samples <= d.packets
    assert telemetry_pb2.Verdict.Name(body.end_to_end_verdict) != "VIOLATING"
    assert not body.finding_details


def test_clean_domains_are_compliant_with_enough_data():
    body = audit(seed=1, packets=20_000)  # a fixed seed: at this size a clean domain is usually COMPLIANT
    assert [verdict(d) for d in body.domains] == ["COMPLIANT"] * 3
    for d in body.domains:  # the interval covers the truth 0.0025
        assert d.exceedance_ci_low <= 0.0025 <= d.exceedance_ci_high


@pytest.mark.parametrize("impaired", [0, 1, 2])
def test_an_extra_delay_makes_that_domain_violating_and_it_carries_the_share(impaired):
    body = audit(seed=11, packets=10_000, extra_delay=(impaired, 25.0))
    names = [d.domain_id for d in body.domains]
    for i, d in enumerate(body.domains):
        if i == impaired:
            assert verdict(d) == "VIOLATING" and d.exceedance_rate == 1.0
            assert d.tail_risk_share > 0.9
        else:
            assert verdict(d) in ("COMPLIANT", "INCONCLUSIVE")
            assert d.tail_risk_share < 0.05
    assert telemetry_pb2.Verdict.Name(body.end_to_end_verdict) == "VIOLATING"
    # every violating packet exceeded some d_i here (sum d_i = d, no link delay): shares add up to 1
    assert sum(d.tail_risk_share for d in body.domains) + body.unattributed_share == pytest.approx(1.0)
    assert body.unattributed_share == 0.0
    total = {b.name: b for b in body.budgets}["total"]
    assert sum(d.violations_attributed for d in body.domains) == pytest.approx(total.events)
    assert names[impaired] in {d.domain_id for d in body.domains if verdict(d) == "VIOLATING"}


def test_a_lossy_domain_violates_and_carries_the_loss():
    body = audit(seed=3, packets=10_000, loss=(2, 0.05))
    d = {x.domain_id: x for x in body.domains}
    assert verdict(d["cloud"]) == "VIOLATING" and d["cloud"].tail_risk_share > 0.9
    budgets = {b.name: b for b in body.budgets}
    assert budgets["loss"].events > 300 and telemetry_pb2.Verdict.Name(budgets["loss"].verdict) == "VIOLATING"
    assert verdict(d["access"]) != "VIOLATING" and verdict(d["transport"]) != "VIOLATING"


def test_a_liar_is_judged_on_its_neighbours_witness():
    honest = audit(seed=11, packets=10_000, extra_delay=(1, 25.0))
    lying = audit(seed=11, packets=10_000, extra_delay=(1, 25.0), liar=(1, 25.0))
    assert [f.kind for f in lying.finding_details] == ["inconsistent"]
    assert lying.finding_details[0].domain_id == "transport"
    t = {d.domain_id: d for d in lying.domains}["transport"]
    assert verdict(t) == "VIOLATING"  # re-measured with cloud's ingress times: the lie hides nothing
    assert t.exceedances == {d.domain_id: d for d in honest.domains}["transport"].exceedances
    assert t.tail_risk_share > 0.9


def test_analyse_checks_its_inputs():
    terms = ContractTerms("c", "t", (DomainTerms("a", 1.0, 0.1),), 1.0, 0.1, 0.0, 0.0, 0.1)
    with pytest.raises(InputError, match="observed"):
        analyse(terms, [])
    with pytest.raises(InputError, match="link_delay_s"):
        analyse(terms, [None], link_delay_s=[1.0])


def test_the_attribution_benchmark_in_small(tmp_path):
    """benchmarks/bench_attribution.py at a fixed seed, 8 + 4 trials: every impaired domain with a true
    rate >= 2 eps_i is VIOLATING, no domain with a true rate <= eps_i is, every liar is caught."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_attribution.py"
    spec = importlib.util.spec_from_file_location("bench_attribution", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "attribution.json"
    code = bench.main(["--trials", "8", "--lying", "4", "--packets", "20000", "--truth-factor", "5",
                       "--out", str(out)])
    import json

    s = json.loads(out.read_text())["summary"]
    assert s["recall"]["n"] >= 2 and s["recall"]["violating"] == 1.0
    assert s["false_blame"]["n"] >= 20 and s["false_blame"]["violating"] == 0.0
    assert s["lying"]["caught"] == 1.0 and s["lying"]["false_accusations"] == 0
    assert code == 0


def test_two_tenants_on_one_path_are_audited_apart():
    from federation.audit.batches import batches_from_telemetry
    from federation.audit.scenario import signed_contract
    from federation.dataplane.engine import simulate
    from federation.dataplane.path import Domain, ServiceTimes, Source
    from federation.dataplane.traffic import Poisson
    from federation.tre.trust import TrustStore

    keys = [SigningKey.generate(d) for d in ("access", "cloud")]
    doms = [Domain(rate=1.0, service=ServiceTimes("exp", 1.0)) for _ in keys]
    tel = simulate(doms, [Source(0, Poisson(0.2)), Source(1, Poisson(0.3))], seed=4, packets=4000)
    trust = TrustStore()
    for k in keys:
        trust.add_key(k)
    led = AuditLedger(trust, SigningKey.generate("auditor"), auditor_id="auditor", clock=lambda: 1.8e9)
    led.add_contract(signed_contract("ct-a", "tenant-a", keys, [(20.0, 0.01)] * 2))
    led.add_contract(signed_contract("ct-b", "tenant-b", keys, [(1.0, 0.01)] * 2))  # d_i far too short
    for chain in batches_from_telemetry(tel, keys, tenant_ids={0: "tenant-a", 1: "tenant-b"},
                                        batch_packets=1500).values():
        assert all(r.accepted for r in led.submit_all(chain))
    a = telemetry_pb2.AccountabilityReportBody.FromString(led.report("ct-a").body)
    b = telemetry_pb2.AccountabilityReportBody.FromString(led.report("ct-b").body)
    assert a.packets == 4000 and b.packets == int((tel.delivered.tenant == 1).sum())
    assert [verdict(d) for d in b.domains] == ["VIOLATING", "VIOLATING"]
    assert "VIOLATING" not in [verdict(d) for d in a.domains]
    assert not a.finding_details and not b.finding_details
