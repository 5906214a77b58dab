"""The broker's admission policies (``broker.admission``: snc, dnc, peak-rate, none): what each
plans for one tenant (pure, no Ray), the ordering in tenants admitted and compliance on the whole
loop at a small scale (``admission-vs-dnc``), and bad input."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import yaml

from agents.broker.plan import Infeasible, mean_rate_of, peak_rate_of, plan_offer, token_bucket_of
from agents.cli.main import main as trefed
from federation.calculus.dnc import RateLatency, per_domain_delays, worst_case_delay
from federation.config import FederationConfig, IntentConfig, parse_config
from federation.errors import InputError
from federation.experiment.results import summary_lines

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "admission-vs-dnc.yaml"


def _data() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def _offer(cfg: FederationConfig, policy: str, traffic: dict | None = None, **intent: float):
    t = cfg.tenants[0]
    data = t.intent.model_dump()
    if traffic is not None:
        data["traffic"] = traffic
    data.update(intent)
    it = IntentConfig.model_validate(data)
    model = cfg.models[0]
    path = cfg.paths(t.access, model.compute_domain)[0]
    bodies = [cfg.domain(d).envelope_body("k") for d in path]
    prices = [cfg.domain(d).price_per_mbps_hour for d in path]
    return plan_offer(model, path, bodies, it, prices, policy), model, path


@pytest.fixture(scope="module")
def cfg() -> FederationConfig:
    return parse_config(_data())


def test_every_policy_plans_through_the_same_offer_and_records_itself(cfg):
    offers = {p: _offer(cfg, p)[0] for p in ("snc", "dnc", "peak-rate", "none")}
    assert {p: o.admission for p, o in offers.items()} == {p: p for p in offers}
    assert len({o.offer_id for o in offers.values()}) == 4
    rate = {p: o.budgets[-1].rate_bps for p, o in offers.items()}
    # bursty MMOO (8 sources of 2 Mb/s, duty 0.2): the mean 3.2 Mb/s < snc < the peak 16 Mb/s
    assert rate["none"] == pytest.approx(3.2e6)
    assert 3.2e6 < rate["snc"] < rate["dnc"] == rate["peak-rate"] == pytest.approx(16e6)
    for p, o in offers.items():
        assert o.bound.delay_s <= 0.040 and all(b.epsilon > 0 and b.delay_s > 0 for b in o.budgets), p
        if p != "snc":
            assert o.bound.method == p
    assert offers["dnc"].bound.epsilon_delay == 0.0
    assert offers["none"].bound.delay_s == 0.040  # the intent as asked, proven by nothing


def test_dnc_is_the_worst_case_of_the_token_bucket_it_derives(cfg):
    offer, model, path = _offer(cfg, "dnc")
    sigma, rho = token_bucket_of(cfg.tenants[0].intent.traffic, request_size_bits=model.request_size_bits)
    assert (sigma, rho) == (8 * 1e4, 16e6)  # one request per packetized source; every source on
    lat = [0.002, 0.001 + 0.002]  # access latency + propagation; edge latency + the model's mean
    hops = [RateLatency(b.rate_bps, t) for b, t in zip(offer.budgets, lat)]
    L = model.request_size_bits
    assert offer.bound.delay_s == pytest.approx(worst_case_delay(sigma, rho, hops, L))
    assert [b.delay_s for b in offer.budgets] == pytest.approx(per_domain_delays(sigma, rho, hops, L))
    eps_delay = cfg.tenants[0].intent.epsilon - offer.bound.loss_probability - offer.bound.error_probability
    assert [b.epsilon for b in offer.budgets] == pytest.approx([eps_delay / 2] * 2)  # eps_delay / H


def test_a_token_bucket_gets_the_same_rates_from_dnc_as_from_snc(cfg):
    """Through rate-latency domains the stochastic calculus of a token bucket is deterministic: both
    calculi pay the burst once and count the same packetizer, so they agree."""
    tb = {"kind": "token-bucket", "sigma_bits": 2e5, "rho_bps": 4e6}
    snc, _, _ = _offer(cfg, "snc", tb)
    dnc, _, _ = _offer(cfg, "dnc", tb)
    assert [b.rate_bps for b in dnc.budgets] == pytest.approx([b.rate_bps for b in snc.budgets], rel=1e-9)
    assert dnc.bound.delay_s == pytest.approx(snc.bound.delay_s, rel=1e-9)
    peak, _, _ = _offer(cfg, "peak-rate", tb)
    slack = 0.040 - 0.005
    assert peak_rate_of(cfg.tenants[0].intent.traffic.model_copy(), slack_s=slack) == 16e6
    assert peak.budgets[0].rate_bps == pytest.approx(4e6 + 2e5 / slack)  # drains sigma within the slack
    assert peak.budgets[0].rate_bps > dnc.budgets[0].rate_bps


def test_traffic_without_a_deterministic_envelope_is_refused_by_dnc_and_peak_rate(cfg):
    poisson = {"kind": "poisson", "rate_pps": 300.0, "mean_size_bits": 1e4}
    for p in ("dnc", "peak-rate"):
        with pytest.raises(Infeasible, match=f"{p}: poisson traffic has no"):
            _offer(cfg, p, poisson)
    assert _offer(cfg, "none", poisson)[0].budgets[0].rate_bps == pytest.approx(3e6)
    assert mean_rate_of(IntentConfig.model_validate({**cfg.tenants[0].intent.model_dump(),
                                                     "traffic": poisson}).traffic) == 3e6
    with pytest.raises(Infeasible, match="dnc: domain 'access': needs 1.6e\\+07 bps > guardrail max_tenant_rate_bps"):
        data = _data()
        data["domains"][0]["guardrails"]["max_tenant_rate_bps"] = 10e6
        _offer(parse_config(data), "dnc")
    with pytest.raises(Infeasible, match="dnc: deadline 0.004 s is not above the path's latencies"):
        _offer(cfg, "dnc", deadline_s=0.004)
    with pytest.raises(InputError, match="broker.admission"):
        _offer(cfg, "fast")


def test_a_bad_policy_name_exits_2_naming_broker_admission(tmp_path, capsys):
    data = _data()
    data["broker"]["admission"] = "worst-case"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert trefed(["run", str(path), "--admissions-only"]) == 2
    err = capsys.readouterr().err
    assert "broker.admission" in err and "'snc', 'dnc', 'peak-rate' or 'none'" in err and "Traceback" not in err
    data = _data()
    data["experiment"]["policies"] = ["snc", "peak-rate"]
    path.write_text(yaml.safe_dump(data))
    assert trefed(["run", str(path)]) == 2
    assert "experiment.policies" in capsys.readouterr().err


def _small() -> dict:
    """The experiment at a small scale: the bottleneck reserves 32 Mb/s (snc: 5 tenants of 6.1 Mb/s,
    dnc: 2 of 16 Mb/s), 7 tenants offered, the config's 900 s of traffic (what it takes to *show* p99.9 met)."""
    data = copy.deepcopy(_data())
    data["domains"][1]["guardrails"]["reservable_capacity_bps"] = 32e6
    data["domains"][1]["guardrails"]["max_tenant_rate_bps"] = 32e6
    data["experiment"]["offered"] = 7
    return data


def test_snc_admits_more_than_dnc_and_peak_rate_and_none_at_its_count_is_late(ray_runtime, tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(_small()))
    code = trefed(["run", str(path), "--out", str(tmp_path / "out"), "--json"])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err[-2000:]
    doc = json.loads(captured.out)
    assert all(len(line) <= 80 for line in summary_lines(doc))
    m = {a["name"]: a["metrics"] for a in doc["arms"]}
    assert list(m) == ["snc", "dnc", "peak-rate", "none"]
    assert m["snc"]["admitted"] >= m["dnc"]["admitted"] >= m["peak-rate"]["admitted"] >= 1
    assert (m["snc"]["admitted"], m["dnc"]["admitted"]) == (5, 2)
    assert m["snc"]["admitted"] < m["snc"]["offered"] == 7  # tenants arrive until the policy refuses
    assert m["snc"]["compliance"] == 1.0 and m["snc"]["shown_violating"] == 0
    assert m["snc"]["shown_compliant"] == 5 and m["snc"]["worst_ci_high"] <= 1e-3
    assert m["none"]["offered"] == m["none"]["admitted"] == m["snc"]["admitted"]
    assert m["none"]["shown_violating"] == m["none"]["admitted"] and m["none"]["compliance"] == 0.0
    assert m["snc"]["reserved_bps"]["edge"] <= 32e6 < m["snc"]["reserved_bps"]["edge"] + m["snc"]["rate_bps"]["edge"]
    assert m["snc"]["reserved_bps"]["edge"] == pytest.approx(5 * m["snc"]["rate_bps"]["edge"])
    assert code == 0 and doc["claim"]["holds"], doc["claim"]
    out = tmp_path / "out"
    assert (out / "admission-vs-dnc.png").stat().st_size > 0
    run = json.loads((out / "arms" / "dnc" / "report.json").read_text())
    assert run["admission"] == "dnc" and {t["admission"] for t in run["tenants"] if t["admitted"]} == {"dnc"}
    assert f"snc admits {5 / 2:.2f}x the tenants of dnc" in doc["reading"]
    assert not math.isnan(m["snc"]["worst_ci_high"])
