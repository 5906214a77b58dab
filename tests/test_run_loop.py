"""``trefed run``, the whole loop: admissions over time, traffic through the reservations, signed
telemetry from each domain's own agent, the auditor's reports, the outputs.

The Ray tests share the session's Ray (``ray_runtime``); each run is a real federation (domain
controllers, broker, auditor, tenants as actors over gRPC on loopback).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.cli.main import main as trefed
from federation.config import parse_config
from federation.errors import ConfigError
from federation.experiment.plane import ActiveTenant, simulate_run

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _quickstart(**run: object) -> dict:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["run"] = {**data["run"], **run}
    return data


# ------------------------------------------------------------------ the config's run section


@pytest.mark.parametrize("run, field", [
    ({"impairments": [{"domain": "nowhere", "kind": "delay", "start_s": 1, "end_s": 2, "value": 0.01}]},
     "run.impairments[0].domain: unknown domain 'nowhere'"),
    ({"impairments": [{"domain": "edge", "kind": "delay", "start_s": 3, "end_s": 2, "value": 0.01}]},
     "run.impairments[0].end_s(=2) must be > start_s(=3)"),
    ({"impairments": [{"domain": "edge", "kind": "degrade", "start_s": 1, "end_s": 2, "value": 2.0}]},
     "run.impairments[0].value(=2) must be a capacity factor in (0, 1]"),
    ({"impairments": [{"domain": "edge", "kind": "spikes", "start_s": 400, "end_s": 500, "value": 0.01}]},
     "run.impairments[0].start_s(=400) must be < run.duration_s(=300)"),
    ({"events": [{"kind": "crash", "domain": "edge", "at_s": 301}]},
     "run.events[0].at_s(=301) must be < run.duration_s(=300)"),
    ({"events": [{"kind": "explode", "domain": "edge", "at_s": 1}]}, "run.events[0]"),
    ({"events": [{"kind": "revoke", "domain": "nowhere", "at_s": 1}]}, "run.events[0].domain: unknown domain"),
    ({"events": [{"kind": "republish", "domain": "edge", "at_s": 1, "reservable_capacity_bps": 0}]},
     "run.events[0].republish.reservable_capacity_bps"),
    ({"events": [{"kind": "republish", "domain": "edge", "at_s": 1, "reservable_capacity_bps": 30e6}]},
     "run.events[0]: the republished envelope of 'edge': guardrails.max_tenant_rate_bps"),
    ({"liars": [{"domain": "edge", "under_report_s": 0.1}, {"domain": "edge", "under_report_s": 0.2}]},
     "run.liars[1].domain: domain 'edge' is listed twice"),
    ({"scheduler": "lottery"}, "run.scheduler"),
    ({"duration_s": -1}, "run.duration_s: must be > 0"),
])
def test_the_run_section_is_validated_naming_the_field(run, field):
    with pytest.raises(ConfigError) as err:
        parse_config(_quickstart(**run))
    assert field in str(err.value)


def test_replicas_expand_into_tenants_arriving_in_turn():
    data = _quickstart()
    data["tenants"] = [{**data["tenants"][0], "replicas": 3, "replica_interval_s": 5.0, "start_s": 1.0}]
    cfg = parse_config(data)
    assert [(t.id, t.start_s) for t in cfg.tenants] == [("factory-vision-1", 1.0), ("factory-vision-2", 6.0),
                                                       ("factory-vision-3", 11.0)]
    data["tenants"][0]["replicas"] = 0
    with pytest.raises(ConfigError, match=r"tenants\[0\]\.replicas\(=0\) must be a whole number"):
        parse_config(data)


# ------------------------------------------------------------------ the data plane of a run


def test_the_data_plane_sends_only_in_each_tenants_window_and_adds_the_models_latency():
    cfg = parse_config(_quickstart(duration_s=60.0, impairments=[]))
    model = cfg.model("resnet50-int8")
    path = ("access", "transport", "edge")
    a = ActiveTenant("factory-vision", 0, path, model.id, (60e6, 60e6, 80e6), 10.0, 30.0)
    b = ActiveTenant("retail-cams", 1, path, model.id, (30e6, 30e6, 40e6), 0.0, 60.0)
    run = simulate_run(cfg, [a, b])
    first = run.logs["access"]
    ta = first.ingress[first.tenant == 0]
    assert len(ta) > 1000 and ta.min() >= 10.0 and ta.max() < 30.0
    assert run.logs["access"].ingress.tolist() == sorted(run.logs["access"].ingress.tolist())
    edge = run.logs["edge"]
    soj = edge.sojourn[(edge.tenant == 1) & ~edge.lost]
    # at least the domain's latency, the model's mean inference latency and one exponential service
    assert soj.min() >= cfg.domain("edge").model.latency_s + model.latency.mean_s
    # the packet ids (flow = tenant index) are unique per domain, as the auditor matches them
    ids = edge.flow.astype(np.int64) * 2**40 + edge.seq
    assert len(np.unique(ids)) == len(ids)
    again = simulate_run(cfg, [a, b], chunk_packets=4096)  # results do not depend on the chunking
    assert again.logs["edge"].equals(run.logs["edge"])


# ------------------------------------------------------------------ the whole loop on Ray


def _run(tmp_path: Path, data: dict, capsys: pytest.CaptureFixture, name: str = "cfg") -> tuple[int, dict]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    code = trefed(["run", str(path), "--out", str(tmp_path / name), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_quickstart_blames_the_impaired_domain_and_reaudits_offline(ray_runtime, tmp_path, capsys):
    code, doc = _run(tmp_path, _quickstart(), capsys, "qs")
    assert doc["schema"] == "trefed.run/1"
    assert code == 1 == doc["verdict"]["exit_code"] and doc["verdict"]["violation_found"]
    assert doc["verdict"]["blamed"] == ["transport"]
    admitted = [t for t in doc["tenants"] if t["admitted"]]
    assert len(admitted) == 3 and not any(t["admitted"] for t in doc["tenants"][3:])
    for t in admitted:
        verdicts = {b["domain_id"]: b["verdict"] for b in t["budgets"]}
        assert verdicts["transport"] == "VIOLATING", t
        assert verdicts["access"] != "VIOLATING" and verdicts["edge"] != "VIOLATING", t
        assert t["violation"]["source"] == "auditor" and t["violation"]["packets"] > 10_000
    out = tmp_path / "qs"
    for f in ("report.md", "report.json", "ccdf.png", "domains.png", "timeline.png", "contracts.json"):
        assert (out / f).stat().st_size > 0, f
    assert len(list((out / "accountability").glob("*.json"))) == 3
    assert {p.stem for p in (out / "keys").glob("*.pub")} == {"access", "transport", "edge", "auditor"}
    # every domain reported, every batch was accepted
    assert all(d["accepted"] == d["batches"] > 0 and d["packets"] > 0 for d in doc["domains"])
    # the files re-audit offline to the same blame
    assert trefed(["audit", str(out / "telemetry"), "--contracts", str(out / "contracts.json"), "--trust",
                   str(out / "keys"), "--out", str(tmp_path / "again")]) == 1
    again = capsys.readouterr().out
    assert "transport" in again
    from federation.experiment.report import summary_lines

    assert all(len(line) <= 80 for line in summary_lines(doc))


def test_poisson_tenants_blame_the_impaired_domain_only(ray_runtime, tmp_path, capsys):
    """Poisson requests of their own size (10-12 kbit) to models of 100 kbit requests: the compute
    domain is planned on the model's work per request, every domain's budget is backed by its own
    bound, so the honest ones are not blamed and the impaired transport is."""
    data = _quickstart()
    sizes = [(800.0, 10.0e3), (600.0, 12.0e3)]
    data["tenants"] = [
        {**t, "intent": {**t["intent"], "traffic": {"kind": "poisson", "rate_pps": r, "mean_size_bits": b}}}
        for t, (r, b) in zip(data["tenants"][1:3], sizes)
    ]
    code, doc = _run(tmp_path, data, capsys, "poisson")
    assert all(t["admitted"] and t["served"] for t in doc["tenants"])
    assert code == 1 and doc["verdict"]["blamed"] == ["transport"]
    for t in doc["tenants"]:
        verdicts = {b["domain_id"]: b["verdict"] for b in t["budgets"]}
        assert verdicts["transport"] == "VIOLATING"
        assert verdicts["access"] != "VIOLATING" and verdicts["edge"] != "VIOLATING", verdicts
        assert sum(b["delay_s"] for b in t["budgets"]) <= t["deadline_s"] * (1 + 1e-9)
        assert len({round(b["epsilon"], 12) for b in t["budgets"]}) == 1  # backed_split's equal shares
        assert all(b["backed"] and b["alone_epsilon"] <= b["epsilon"] for b in t["budgets"])


def test_a_lying_domain_is_caught_by_its_neighbours_telemetry(ray_runtime, tmp_path, capsys):
    data = _quickstart(duration_s=120.0, impairments=[], liars=[{"domain": "transport", "under_report_s": 0.004}])
    data["tenants"] = data["tenants"][:1]
    code, doc = _run(tmp_path, data, capsys, "liar")
    assert code == 1
    assert "transport" in doc["verdict"]["blamed"]
    findings = " ".join(doc["tenants"][0]["findings"])
    assert "inconsistent" in findings and "transport" in findings
    assert next(d for d in doc["domains"] if d["domain_id"] == "transport")["under_report_s"] == 0.004


def test_tenants_arrive_and_leave_and_a_crashed_domain_refuses_then_recovers(ray_runtime, tmp_path, capsys):
    data = _quickstart(duration_s=60.0, impairments=[],
                       events=[{"kind": "crash", "domain": "edge", "at_s": 10.0, "down_s": 10.0}])
    first, second = data["tenants"][0], data["tenants"][1]
    data["tenants"] = [
        {**first, "id": "early", "start_s": 0.0, "hold_s": 30.0},
        {**second, "id": "during-crash", "start_s": 15.0},
        {**second, "id": "after-restart", "start_s": 25.0},
    ]
    code, doc = _run(tmp_path, data, capsys, "events")
    by = {t["tenant_id"]: t for t in doc["tenants"]}
    assert by["early"]["admitted"] and by["after-restart"]["admitted"]
    assert not by["during-crash"]["admitted"] and not by["during-crash"]["served"]
    assert by["early"]["end_s"] == 30.0 and by["after-restart"]["start_s"] == 25.0
    sentences = [s for _, s in doc["events"]]
    assert "domain edge controller crashed" in sentences and "domain edge controller restarted" in sentences
    assert any(s.startswith("tenant early left (released") for s in sentences)
    assert code == (1 if doc["verdict"]["violation_found"] else 0)


def test_a_revoked_envelope_refuses_new_tenants_and_a_republished_one_admits_on_its_guardrails(
        ray_runtime, tmp_path, capsys):
    """Revoked: the broker cannot fetch the edge's envelope (nor the edge reserve), so a request
    through it is refused while the tenant admitted before keeps its grant and its traffic;
    republished with a smaller reservable capacity: admitted again, on the new guardrail."""
    data = _quickstart(duration_s=60.0, impairments=[], events=[
        {"kind": "revoke", "domain": "edge", "at_s": 10.0},
        {"kind": "republish", "domain": "edge", "at_s": 20.0, "reservable_capacity_bps": 160.0e6},
    ])
    first, second = data["tenants"][0], data["tenants"][1]
    data["tenants"] = [  # at the edge: ~104 Mb/s for the first tenant's kind, ~44 Mb/s for the second's
        {**first, "id": "before"},
        {**second, "id": "while-revoked", "start_s": 15.0},
        {**second, "id": "after-republish", "start_s": 25.0},
        {**second, "id": "over-new-capacity", "start_s": 26.0},  # fits 250 Mb/s, not 160
    ]
    code, doc = _run(tmp_path, data, capsys, "envelope-events")
    by = {t["tenant_id"]: t for t in doc["tenants"]}
    assert by["before"]["admitted"] and by["before"]["served"] and by["before"]["end_s"] == 60.0
    assert not by["while-revoked"]["admitted"] and not by["while-revoked"]["served"]
    assert "domain 'edge' has revoked its envelope 'edge/gpu'" in by["while-revoked"]["reason"]
    assert by["after-republish"]["admitted"]
    assert not by["over-new-capacity"]["admitted"]
    assert "reservable capacity 1.6e+08 bps exceeded" in by["over-new-capacity"]["reason"]
    sentences = [s for _, s in doc["events"]]
    assert "domain edge revoked its envelope" in sentences
    assert "domain edge republished its envelope (sequence 2: reservable_capacity_bps 1.6e+08)" in sentences
    assert code == (1 if doc["verdict"]["violation_found"] else 0)


def test_the_readmes_run_and_offline_reaudit_do_what_it_says(ray_runtime, tmp_path, monkeypatch, capsys):
    """The README's ``trefed run ... --out runs/quickstart`` and the ``trefed audit runs/...`` after it."""
    import shlex

    from test_readme import readme_commands_and_codes

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quickstart.yaml").write_text(QUICKSTART.read_text())
    commands = [(c, e) for c, e in readme_commands_and_codes() if " runs/" in c]
    assert [c.split()[1] for c, _ in commands] == ["run", "audit"]
    for command, expected in commands:
        code = trefed(shlex.split(command)[1:])
        capsys.readouterr()
        assert code == expected, f"README example exited {code}, the README says {expected}: {command}"
    assert (tmp_path / "runs" / "quickstart" / "report.md").exists()


def test_a_bad_run_section_exits_2_naming_the_field_before_ray_starts(tmp_path, capsys):
    data = _quickstart(impairments=[{"domain": "transport", "kind": "loss", "start_s": 0, "end_s": 10,
                                     "value": 1.5}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert trefed(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "run.impairments[0].value(=1.5) must be a probability in [0, 1]" in err
    assert "Traceback" not in err and "starting Ray" not in err
    assert not (tmp_path / "out").exists()


def test_domain_bounds_are_valid_and_not_vacuous_on_an_mm1_domain():
    """One rate-latency domain serving Poisson requests of exponential sizes is an M/M/1 queue plus
    its latency: P(D > d) = exp(-(mu - lambda)(d - T)) (Kleinrock 1975, eq. 3.26). The calculus'
    per-domain bound must be above it at every d, and below eps for a large enough d."""
    import math

    from federation.calculus.arrivals import PoissonArrival
    from federation.calculus.compose import DomainSlice
    from federation.experiment.backing import domain_bounds

    lam, size, rate, latency = 50.0, 1e5, 1e7, 0.002  # mu = 100 requests/s
    path = [DomainSlice("d", rate, latency=latency)]
    traffic = PoissonArrival(rate=lam, mean_size=size, size="exp")
    mu = rate / size
    for d in (0.01, 0.05, 0.1, 0.2):
        (bound,) = domain_bounds(path, traffic, [d])
        truth = math.exp(-(mu - lam) * (d - latency))
        assert truth <= bound <= 1.0, (d, truth, bound)
    (far,) = domain_bounds(path, traffic, [0.5])  # the single-hop MGF bound: loose (5.7e-7 vs 1.5e-11), finite
    assert far < 1e-3


def test_domain_bounds_of_a_deterministic_path_underflow_to_zero_not_a_traceback():
    """A token bucket through rate-latency domains only: theta is unbounded and the bound at a delay
    beyond the worst case goes to 0 (it used to raise a math domain error on log(0))."""
    from federation.calculus.arrivals import TokenBucket
    from federation.calculus.compose import DomainSlice
    from federation.experiment.backing import domain_bounds

    path = [DomainSlice("a", 1e8, latency=0.001), DomainSlice("b", 1e8, latency=0.001)]
    bounds = domain_bounds(path, TokenBucket(1e5, 1e7, packet_size=1e4), [0.05, 0.05])
    assert all(0.0 <= b < 1e-12 for b in bounds), bounds


def test_a_tenants_outcomes_are_every_packet_it_sent_in_order_lost_and_wrong_ones_as_inf():
    cfg = parse_config(_quickstart(duration_s=60.0, impairments=[
        {"domain": "access", "kind": "loss", "start_s": 10.0, "end_s": 20.0, "value": 0.05}]))
    model = cfg.model("resnet50-int8")  # error probability 0.004: some answers are wrong
    path = ("access", "transport", "edge")
    run = simulate_run(cfg, [ActiveTenant("factory-vision", 0, path, model.id, (60e6, 60e6, 80e6), 0.0, 60.0)])
    late_or_lost = run.tenant_outcomes(0, "access", errors=False)
    assert len(late_or_lost) == run.generated[0]
    assert int(np.isinf(late_or_lost).sum()) == run.lost[0] > 0
    with_errors = run.tenant_outcomes(0, "access")
    wrong = int(run.delivered.error[run.delivered.tenant == 0].sum())
    assert wrong > 0 and int(np.isinf(with_errors).sum()) == run.lost[0] + wrong
    finite = late_or_lost[np.isfinite(late_or_lost)]
    assert np.array_equal(finite, run.tenant_delays(0))  # the delivered delays, in order of arrival


def test_domain_bounds_never_go_below_a_greedy_token_buckets_certain_delay():
    """A token bucket's greedy source keeps the first domain busy for sigma/R: below latency +
    sigma/R no valid bound is under 1. (At a large theta the per-domain tails' prefactor left the
    float range; capping it gave 0 there, i.e. a false "backed".)"""
    from federation.calculus.arrivals import TokenBucket
    from federation.calculus.compose import DomainSlice
    from federation.experiment.backing import domain_bounds

    path = [DomainSlice("a", 1e8, latency=0.001), DomainSlice("b", 2e8, latency=0.001)]
    worst_first = 0.001 + 1e5 / 1e8
    bounds = domain_bounds(path, TokenBucket(1e5, 1e7), [0.9 * worst_first, 0.05])
    assert bounds[0] == 1.0, bounds
    assert bounds[1] < 1e-12, bounds
