"""A tenant whose traffic is a trace: the config fits it at load (errors name the field and the file),
the intent carries the fitted envelope on the wire, the broker plans with it, the data plane
replays the trace's own packets through ``trefed run``, and ``trefed trace generate/fit``."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import yaml
from conftest import FAST_CONFIG
from trefed.v1 import services_pb2

from agents.broker.plan import arrival_of, burst_of, check_physical
from agents.cli import main as trefed
from federation.calculus.arrivals import TabulatedArrival
from federation.config import TraceConfig, intent_from_proto, load_config, traffic_from_proto
from federation.errors import ConfigError, InputError
from federation.trace import fit_mgf_envelope, fit_token_bucket, read_trace, synthetic_trace, write_trace

START_S, OFFSET_S = 1.0, 3.0


def _tenant(path: str, **traffic) -> dict:
    return {"id": "tr", "access": "access", "start_s": START_S,
            "intent": {"task": "classify", "max_error_probability": 0.005, "deadline_s": 0.05, "epsilon": 0.01,
                       "traffic": {"kind": "trace", "path": path, **traffic}}}


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory):
    """A 30 s synthetic trace (4 Mb/s peak, 1000-bit packets) as data/tenant.parquet and a config
    beside data/ whose tenant 'tr' replays it from 3 s, looped, token bucket at 4.1 Mb/s."""
    d = tmp_path_factory.mktemp("trace")
    (d / "data").mkdir()
    tr = synthetic_trace(30.0, peak_bps=4e6, mean_on_s=0.2, mean_off_s=0.6, packet_bits=1000.0, seed=3)
    write_trace(tr, d / "data" / "tenant.parquet")
    data = copy.deepcopy(FAST_CONFIG)
    data["tenants"] = [_tenant("data/tenant.parquet", offset_s=OFFSET_S, loop=True, rho_bps=4.1e6)]
    data["run"] = {"duration_s": 12.0}
    (d / "cfg.yaml").write_text(yaml.safe_dump(data))
    return d


def test_the_config_fits_the_trace_relative_to_its_own_directory(trace_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the path is the config's, not the working directory's
    cfg = load_config(trace_dir / "cfg.yaml")
    t = cfg.tenants[0].intent.traffic
    assert isinstance(t, TraceConfig) and t.path == trace_dir / "data" / "tenant.parquet"
    tr = read_trace(t.path)
    assert t.rho_bps == 4.1e6 and t.sigma_bits == fit_token_bucket(tr, 4.1e6)
    assert t.mean_rate_bps == tr.mean_rate_bps and t.max_size_bits == 1000.0
    assert 4e6 <= t.peak_bps <= 4e6 * (1 + 1e-8)
    env = fit_mgf_envelope(tr)
    assert t.theta == env.theta and t.kappa == env.kappa_values and t.beta == env.beta_values
    arrival = arrival_of(t, request_size_bits=1e3)
    assert isinstance(arrival, TabulatedArrival) and arrival.kappa_values == t.kappa
    assert burst_of(t) == t.sigma_bits


@pytest.mark.parametrize("traffic, body, match", [
    ({}, "time_s,size_bits\n0,8\n1,-8\n",
     r"tenants\[0\]\.intent\.traffic\.path: .*bad\.csv: row 2, column size_bits: -8\.0 must be > 0"),
    ({}, None, r"tenants\[0\]\.intent\.traffic\.path: .*bad\.csv: no such trace file"),
    ({"rho_bps": 1.0}, "time_s,size_bits\n0,8\n1,8\n",
     r"tenants\[0\]\.intent\.traffic\.rho_bps: rho_bps\(=1\) is below the trace's mean rate"),
    ({"offset_s": -1}, "time_s,size_bits\n0,8\n", r"tenants\[0\]\.intent\.traffic\.offset_s: must be >= 0"),
    ({"kappa": [1.0]}, "time_s,size_bits\n0,8\n", r"tenants\[0\]\.intent\.traffic\.kappa: is fitted from the trace"),
])
def test_a_bad_trace_tenant_is_refused_at_load_naming_the_field_and_the_file(tmp_path, traffic, body, match):
    if body is not None:
        (tmp_path / "bad.csv").write_text(body)
    data = copy.deepcopy(FAST_CONFIG)
    data["tenants"] = [_tenant("bad.csv", **traffic)]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / "cfg.yaml")
    assert trefed(["run", str(tmp_path / "cfg.yaml"), "--admissions-only"]) == 2  # exit 2, no traceback


def test_the_intent_carries_the_fitted_envelope_and_the_wire_is_validated(trace_dir):
    intent = load_config(trace_dir / "cfg.yaml").tenants[0].intent
    msg = services_pb2.Intent.FromString(intent.to_proto("tr").SerializeToString())
    assert msg.traffic.WhichOneof("model") == "trace"
    back = intent_from_proto(msg)
    t, b = intent.traffic, back.traffic
    assert isinstance(b, TraceConfig) and b.path is None  # the file stays with the tenant
    assert b.wire() == t.wire() and b.arrival() == t.arrival()
    check_physical(back)
    bad = [("theta", lambda w: w.theta.reverse(), r"intent\.traffic\.trace\.theta: theta must be strictly increasing"),
           ("kappa", lambda w: w.kappa.pop(), r"intent\.traffic\.trace\.theta: theta, kappa and beta must have one length"),
           ("kappa", lambda w: w.kappa.__setitem__(0, math.nan), r"intent\.traffic\.trace\.kappa: kappa must be finite"),
           ("beta", lambda w: w.beta.__setitem__(1, -1.0), r"intent\.traffic\.trace\.beta: beta must be finite"),
           ("mean", lambda w: setattr(w, "mean_rate_bps", 0.0), r"intent\.traffic\.trace\.mean_rate_bps: must be > 0"),
           ("none", lambda w: w.ClearField("theta"), r"intent\.traffic\.trace\.theta: field required")]
    for _, change, match in bad:
        m = services_pb2.TrafficEnvelope()
        m.CopyFrom(msg.traffic)
        change(m.trace)
        with pytest.raises(ConfigError, match=match):
            traffic_from_proto(m)
    huge = services_pb2.Intent()
    huge.CopyFrom(msg)
    huge.traffic.trace.sigma_bits = 1e300
    with pytest.raises(InputError, match=r"intent\.traffic\.trace\.sigma_bits\(=1e\+300\) must be in \[0, 1e\+15\]"):
        check_physical(intent_from_proto(huge))


def test_trefed_run_replays_the_trace_in_the_data_plane(trace_dir, monkeypatch, tmp_path):
    """End to end on the agents' own classes (real gRPC on 127.0.0.1, no Ray): the trace tenant
    is admitted on its fitted envelope, and the packets its access domain signed for are the
    trace's, from offset 3 s, looped, shifted to the tenant's start."""
    import pyarrow.parquet as pq
    from inprocess import InProcessRuntime

    import agents.runtime

    runtime = InProcessRuntime()
    monkeypatch.setattr(agents.runtime, "Runtime", lambda address=None: runtime)
    try:
        code = trefed(["run", str(trace_dir / "cfg.yaml"), "--out", str(tmp_path / "run")])
    finally:
        runtime.shutdown()
    assert code == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [t["admitted"] for t in report["tenants"]] == [True]
    rows = pq.read_table(tmp_path / "run" / "telemetry" / "packets.parquet").to_pydict()
    mine = (np.array(rows["domain_id"]) == "access") & (np.array(rows["tenant"]) == "tr")
    seen = np.sort(np.array(rows["ingress_s"])[mine])
    tr = read_trace(trace_dir / "data" / "tenant.parquet")
    t = tr.times_s
    replay = np.concatenate([t[t >= OFFSET_S] - OFFSET_S, t + (tr.duration_s - OFFSET_S)])
    expected = START_S + replay[START_S + replay < 12.0]
    assert len(seen) == len(expected) > 1000
    assert np.allclose(seen, expected, rtol=0, atol=1e-9)


def test_trefed_trace_generate_and_fit(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert trefed(["trace", "generate", str(out), "--duration", "120", "--peak-bps", "1e6", "--packet-bits",
                   "8000", "--seed", "4"]) == 0
    tr = read_trace(out)
    assert f"wrote {out}: {len(tr)} packets over 120 s" in capsys.readouterr().out
    assert trefed(["trace", "fit", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["packets"] == len(tr) and doc["mean_rate_bps"] == tr.mean_rate_bps
    env = fit_mgf_envelope(tr)
    assert [r["kappa_per_s"] for r in doc["mgf_envelope"]] == list(env.kappa_values)
    for row in doc["token_buckets"]:
        assert row["sigma_bits"] == fit_token_bucket(tr, row["rho_bps"])
    assert doc["token_buckets"][-1]["rho_bps"] == doc["peak_bps"]
    assert trefed(["trace", "fit", str(out)]) == 0
    text = capsys.readouterr().out
    assert "token buckets" in text and "MGF envelope" in text and f"{len(tr)} packets" in text
    assert trefed(["trace", "generate", str(tmp_path / "x.csv"), "--duration", "-1"]) == 2
    assert "duration_s(=-1.0) must be > 0" in capsys.readouterr().err


def test_every_admission_policy_plans_a_trace_tenant_from_its_fit(trace_dir):
    """dnc and peak-rate plan with the fitted token bucket and peak rate, its largest packet the
    store-and-forward size; none reserves the trace's mean rate; snc its MGF envelope."""
    from agents.broker.plan import packet_bits_of, plan_offer, token_bucket_of
    from federation.calculus.dnc import RateLatency, worst_case_delay

    cfg = load_config(trace_dir / "cfg.yaml")
    t = cfg.tenants[0]
    model = cfg.models[0]
    path = cfg.paths(t.access, model.compute_domain)[0]
    bodies = [cfg.domain(d).envelope_body("k") for d in path]
    prices = [cfg.domain(d).price_per_mbps_hour for d in path]
    intent = t.intent.model_copy(update={"deadline_s": 0.2})
    tr = intent.traffic
    assert isinstance(tr, TraceConfig)
    assert token_bucket_of(tr, request_size_bits=model.request_size_bits) == (tr.sigma_bits, 4.1e6)
    assert packet_bits_of(tr, request_size_bits=model.request_size_bits) == 1000.0
    offers = {p: plan_offer(model, path, bodies, intent, prices, p) for p in ("snc", "dnc", "peak-rate", "none")}
    rate = {p: min(b.rate_bps for b in o.budgets) for p, o in offers.items()}
    assert rate["none"] == pytest.approx(max(tr.mean_rate_bps, min(cfg.domain(d).guardrails.min_tenant_rate_bps
                                                                      for d in path)))
    assert rate["peak-rate"] >= tr.peak_bps * (1 - 1e-9)
    dnc = offers["dnc"]
    lat = [b.delay_s for b in dnc.budgets]  # each domain's own worst case
    assert dnc.bound.delay_s <= 0.2 and all(d > 0 for d in lat)
    hops = [RateLatency(b.rate_bps, 0.0) for b in dnc.budgets]
    assert dnc.bound.delay_s >= worst_case_delay(tr.sigma_bits, 4.1e6, hops, 1000.0)  # latencies on top
    assert offers["snc"].bound.delay_s <= 0.2
