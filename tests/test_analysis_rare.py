"""The auditor judges rare and absent exceedances: a long compliant run of an M/M/1 tandem is COMPLIANT.

Before ``tail_probability_of``, a domain's verdict came from its exceedance indicator alone; with
no exceedance each of at most 1024 batches counted as one sample, so no run however long could be
shown to meet eps_i = 1e-3 (upper 95 % limit >= 3.6e-3 in theory, about 0.02 at 5e4 packets).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from trefed.v1 import telemetry_pb2

from federation.audit.ledger import AuditLedger
from federation.audit.scenario import audited_run, mm1_exceedance
from federation.stats import Judgement, judge, tail_probability
from federation.tre.signing import SigningKey

RATE = 0.5
EPS = 1e-3


def report(run) -> telemetry_pb2.AccountabilityReportBody:
    led = AuditLedger(run.trust, SigningKey.generate("auditor"), auditor_id="auditor", clock=lambda: 1.8e9)
    led.add_contract(run.contract)
    assert all(r.accepted for r in led.submit_all(run.all_batches()))
    return telemetry_pb2.AccountabilityReportBody.FromString(led.report(run.contract.contract_id).body)


def verdict(v) -> str:
    return telemetry_pb2.Verdict.Name(v)


def domain_delays(run, i: int) -> np.ndarray:
    log = run.telemetry.domains[i]
    return np.where(log.lost, math.inf, log.egress - log.ingress)[np.argsort(log.ingress, kind="stable")]


def test_no_exceedance_in_a_long_run_is_compliant():
    d_i = math.log(1e7) / (1 - RATE)  # true exceedance 1e-7 per domain: none among 1e5 packets
    # 0.01 exceedances expected per domain, and 1e5 packets give every domain enough effective
    # samples for a COMPLIANT verdict: seeds 0-11 all pass (checked), so this one is no lucky path
    run = audited_run(packets=100_000, budgets=[(d_i, EPS)] * 3, seed=3, batch_packets=10_000)
    body = report(run)
    for i, d in enumerate(body.domains):
        assert d.exceedances == 0
        assert judge(tail_probability(domain_delays(run, i) > d_i), EPS) is Judgement.INCONCLUSIVE  # before
        assert verdict(d.verdict) == "COMPLIANT"  # its one-sided 95 % upper limit is below EPS
        assert d.method == "batch-means clopper-pearson, clusters of lower levels"
        assert 0 < d.effective_samples < d.packets
    assert verdict(body.end_to_end_verdict) == "COMPLIANT"
    total = {b.name: b for b in body.budgets}["total"]
    assert total.events == 0 and verdict(total.verdict) == "COMPLIANT"
    assert total.method == "batch-means clopper-pearson, clusters of lower levels"


def test_a_long_run_at_a_quarter_of_the_budget_is_compliant():
    d_i = math.log(4.0 / EPS) / (1 - RATE)
    assert mm1_exceedance(d_i, RATE) == pytest.approx(EPS / 4)
    body = report(audited_run(packets=200_000, budgets=[(d_i, EPS)] * 3, seed=1, batch_packets=10_000))
    assert [verdict(d.verdict) for d in body.domains] == ["COMPLIANT"] * 3
    for d in body.domains:  # the interval covers the truth
        assert 0 < d.exceedances and d.exceedance_ci_low <= EPS / 4 <= d.exceedance_ci_high < EPS


def test_a_domain_at_twice_its_budget_is_still_violating():
    d_i = math.log(4.0 / EPS) / (1 - RATE)
    extra = math.log(8.0) / (1 - RATE)  # P(D_2 > d_i) = 8 eps / 4 = 2 eps
    assert mm1_exceedance(d_i, RATE, extra_s=extra) == pytest.approx(2 * EPS)
    body = report(audited_run(packets=200_000, budgets=[(d_i, EPS)] * 3, seed=2, extra_delay=(1, extra),
                              batch_packets=10_000))
    assert [verdict(d.verdict) for d in body.domains] == ["COMPLIANT", "VIOLATING", "COMPLIANT"]
