"""``trefed compare``: bound vs simulation of the same model (federation.compare: model, curve, run, plots,
report; the CLI) and the estimators it uses (federation.stats)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import federation.compare.curve as curvemod
import federation.compare.model as modelmod
import federation.compare.run as cmpmod
from agents.cli.main import main
from federation.compare.plots import ccdf_figure, delay_vs_load_figure
from federation.compare.report import markdown_report
from federation.compare.run import compare
from federation.errors import InputError
from federation.specs import parse_hop
from federation.stats import batch_lower_limit, quantile_estimate

ROOT = Path(__file__).resolve().parents[1]
N = 60_000  # packets per scenario: the whole module runs in well under a minute on 2 cores

# (id, arrivals, hops, cross, packet_size, expected notion, max bound/sim delay ratio at 1e-2)
SCENARIOS = [
    ("M/M/1 u=0.7", ["poisson:rate=0.7,size=exp"], ["rate=1"], [], 1.0, "packet", 1.15),
    ("M/D/1 u=0.8", ["poisson:rate=0.8"], ["rate=1"], [], 1.0, "packet", 1.15),
    ("M/M/1 exp server", ["poisson:rate=0.6"], ["rate=1,service=exp"], [], 1.0, "packet", 1.15),
    ("3-hop Poisson tandem", ["poisson:rate=0.6"], ["rate=1,latency=0.5", "rate=1.2", "rate=1,prop=2"], [], 1.0,
     "packet", 1.3),
    ("MMOO into a link", ["mmoo:on=1,off=1,peak=1,n=4"], ["rate=3"], [], 0.05, "virtual", 1.3),
    ("Poisson cross traffic", ["poisson:rate=0.4"], ["rate=1"], ["1=poisson:rate=0.3"], 1.0, "packet", 2.5),
    ("tandem, cross at hop 2", ["poisson:rate=0.5"], ["rate=1", "rate=1.5"], ["2=poisson:rate=0.5"], 1.0,
     "packet", 4.0),
    ("two flows, wfq", ["poisson:rate=0.3", "poisson:rate=0.3,mean_size=2"], ["rate=1.2", "rate=1"], [], 1.0,
     "virtual", 1.4),
    ("on-off cross traffic", ["poisson:rate=0.3"], ["rate=1"], ["1=mmoo:on=2,off=2,peak=0.5,n=2"], 1.0, "packet",
     6.0),
    ("cross traffic, wfq", ["poisson:rate=0.4,size=exp"], ["rate=1"], ["1=poisson:rate=0.3"], 1.0, "virtual", 2.5),
]


@pytest.mark.parametrize("name,arr,hops,cross,ps,notion,max_ratio", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenarios_are_valid(name, arr, hops, cross, ps, notion, max_ratio):
    sched = "wfq" if "wfq" in name else "fifo"
    r = compare(arr, hops, cross, packets=N if ps == 1.0 else 5 * N, seed=3, packet_size=ps, scheduler=sched)
    assert r.notion == notion
    assert r.valid, f"{name}: worst lower/bound {r.worst_ratio:.3g} at d={r.worst_delay:.3g}"
    assert sum(g.enough for g in r.grid) >= 10  # the verdict rests on real data
    e2 = r.epsilons[0]
    assert e2.epsilon == 1e-2 and e2.enough
    # tight as well as valid (BENCHMARKS.md: 1.0-1.14 on single hops, <= 3.4 on tandems with cross)
    assert e2.bound_delay >= 0.9 * e2.sim_ci95_low and e2.bound_delay / e2.sim_ci95_high < max_ratio
    bounds = [g.bound for g in r.grid]
    assert all(0.0 <= b <= 1.0 for b in bounds) and all(np.diff(bounds) <= 1e-12)
    assert r.grid[0].delay == pytest.approx(r.latency)


def test_mm1_packet_bound_is_the_exact_sojourn_tail():
    """M/M/1: the martingale waiting-time bound convolved with the own service is exactly e^{-(mu-lambda)d}."""
    r = compare(["poisson:rate=0.5,size=exp"], ["rate=1"], packets=20_000, seed=1)
    for g in r.grid[1:]:
        exact = math.exp(-0.5 * g.delay)
        assert exact * 0.999 <= g.bound <= exact * 1.06  # step approximation of the waiting-time bound
    for e in r.epsilons:  # bounded delay vs the exact quantile log(1/eps)/(mu - lambda)
        assert e.bound_delay == pytest.approx(math.log(1 / e.epsilon) / 0.5, rel=0.02)


def test_tandem_packet_bound_adds_only_the_last_transmission():
    """Constant-rate tandem, fixed size L: D = W_bottleneck + sum L/R_h (Friedman); the bound at eps
    is the M/D/1 waiting-time bound + the three transmissions + latencies."""
    one = compare(["poisson:rate=0.6"], ["rate=1"], packets=20_000, seed=1)
    three = compare(["poisson:rate=0.6"], ["rate=1", "rate=2", "rate=4,latency=1"], packets=20_000, seed=1)
    for a, b in zip(one.epsilons, three.epsilons):
        assert b.bound_delay == pytest.approx(a.bound_delay + 1 / 2 + 1 / 4 + 1, rel=0.02)
        assert b.sim_delay == pytest.approx(a.sim_delay + 1.75, rel=0.25)


def test_wrong_bound_is_violated(monkeypatch):
    """The check can fail: a bound scaled down 100-fold is caught, naming the worst d."""
    for name in ("violation_bound", "virtual_violation_bound"):
        def too_small(*a, real=getattr(curvemod, name), **k):
            b = real(*a, **k)
            return type(b)(b.delay, b.epsilon * 1e-2, b.theta, b.method, b.detail)

        monkeypatch.setattr(curvemod, name, too_small)
    for arr, hops, ps in ((["poisson:rate=0.7,size=exp"], ["rate=1"], 1.0),
                          (["mmoo:on=1,off=1,peak=1,n=4"], ["rate=3"], 0.05)):
        r = compare(arr, hops, packets=N, seed=2, packet_size=ps)
        assert not r.valid and r.verdict == "VIOLATED"
        assert r.worst_ratio > 1.0 and r.latency < r.worst_delay < r.grid[-1].delay
        assert "VIOLATED" in markdown_report(r)


def test_bound_on_a_too_fast_hop_is_violated(monkeypatch):
    """A bound computed for a faster hop than the simulated one (passed to the bound only) fails."""
    real = modelmod.build_model

    def faster(arrivals, hops, cross=(), **kw):
        return real(arrivals, [parse_hop("rate=1.6")], cross, **kw)

    monkeypatch.setattr(modelmod, "build_model", faster)
    r = compare(["poisson:rate=0.8"], ["rate=1"], packets=N, seed=4)
    assert not r.valid and r.worst_ratio > 1.0


@pytest.mark.parametrize("kw,words", [
    (dict(arrivals=["token-bucket:sigma=5,rho=0.5"]), "greedy"),
    (dict(arrivals=["pareto-onoff:on=1,off=1,peak=1,alpha=1.5"]), "no MGF"),
    (dict(hops=["rate=1,buffer=10"]), "lossless"),
    (dict(hops=["rate=1,loss=0.01"]), "lossless"),
    (dict(cross=["1=poisson:rate=0.2"], scheduler="partition"), "not work-conserving"),
    (dict(arrivals=["poisson:rate=0.3,size=exp"], hops=["rate=1", "rate=1"]), "packetizer"),
    (dict(hops=["rate=1,service=exp"], cross=["1=poisson:rate=0.1"]), "cross traffic at a service=exp"),
    (dict(arrivals=["poisson:rate=0.3,size=exp"], hops=["rate=1,service=exp"]), "fixed size"),
    (dict(arrivals=["mmoo:on=1,off=1,peak=0.1,n=2"], cross=["1=poisson:rate=0.1"]), "on-off sources with cross"),
    (dict(arrivals=["poisson:rate=0.3", "poisson:rate=0.2"], notion="packet"), "exactly one Poisson"),
    (dict(arrivals=["poisson:rate=0.3", "poisson:rate=0.2,size=exp"], scheduler="wfq"), "out of arrival order"),
    (dict(epsilons=[0.0]), "epsilons"),
    (dict(packets=10), "packets"),
])
def test_refusals_explain_why(kw, words):
    args = dict(arrivals=["poisson:rate=0.5"], hops=["rate=1"], cross=[])
    args.update({k: kw.pop(k) for k in ("arrivals", "hops", "cross") if k in kw})
    kw.setdefault("packets", 5_000)
    with pytest.raises(InputError, match=words):
        compare(args["arrivals"], args["hops"], args["cross"], **kw)


def test_batch_lower_limit_and_quantile_estimate():
    rng = np.random.default_rng(0)
    x = rng.random(100_000) < 0.01  # i.i.d.: no inflation, the plain Clopper-Pearson limit
    counts = x.reshape(20, -1).sum(1).astype(float)
    lo, neff = batch_lower_limit(counts, np.full(20, 5000.0), 0.99)
    cp = stats.beta.ppf(0.01, x.sum(), len(x) - x.sum() + 1)
    assert neff > 0.5 * len(x) and lo == pytest.approx(cp, rel=0.05)
    y = np.repeat(rng.random(1000) < 0.01, 100)  # runs of 100 identical samples: ~100x inflation
    lo2, neff2 = batch_lower_limit(y.reshape(20, -1).sum(1).astype(float), np.full(20, 5000.0), 0.99)
    assert neff2 < len(y) / 20 and lo2 < y.mean()
    assert batch_lower_limit(np.zeros(4), np.full(4, 10.0), 0.99)[0] == 0.0
    # order-statistic interval of the 0.99-quantile of Exp(1) covers log(100) (known answer)
    cover = 0
    for s in range(40):
        z = np.sort(np.random.default_rng(s).exponential(size=5_000))
        est = quantile_estimate(z, 0.99)
        q, ci = est.value, est.interval(0.95)
        cover += ci.low <= math.log(100) <= ci.high
        assert ci.low <= q <= ci.high
    assert cover >= 34  # nominal 95 %
    wide = quantile_estimate(z, 0.99, vif=10.0).interval(0.95)  # wider for autocorrelated samples
    plain = quantile_estimate(z, 0.99).interval(0.95)
    assert wide.high - wide.low > plain.high - plain.low


def test_figures_and_report(tmp_path):
    r = compare(["poisson:rate=0.6"], ["rate=1"], ["1=poisson:rate=0.2"], packets=20_000, seed=5)
    png = ccdf_figure(r, tmp_path / "c.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "c.png").read_bytes() == png
    rows = cmpmod.compare_loads(["poisson:rate=0.6"], ["rate=1"], loads=[0.4, 0.8], packets=10_000, seed=5)
    assert [row.load for row in rows] == [0.4, 0.8]
    assert rows[0].scale == pytest.approx(0.4 / 0.6) and rows[1].scale == pytest.approx(0.8 / 0.6)
    assert rows[1].epsilons[0].sim_delay > rows[0].epsilons[0].sim_delay  # more load, more delay
    assert delay_vs_load_figure(rows, tmp_path / "l.png")[:4] == b"\x89PNG"
    md = markdown_report(r, "c.png")
    assert "VALID" in md and "| 0.001 |" in md and "![CCDF" in md and "1=poisson:rate=0.2" in md
    js = r.to_json()
    json.dumps(js, allow_nan=False)  # strict JSON
    assert js["verdict"] == "VALID" and len(js["grid"]) == len(r.grid)


def test_cli_writes_files_and_exits_by_verdict(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    rc = main(["compare", "--arrival", "poisson:rate=0.7", "--hop", "rate=1", "--packets", "30000",
               "--out", str(out), "--json", "--epsilons", "1e-2,1e-3"])
    assert rc == 0
    js = json.loads(capsys.readouterr().out)
    assert js["verdict"] == "VALID" and [e["epsilon"] for e in js["epsilons"]] == [1e-2, 1e-3]
    for key in ("bound", "method", "theta", "sim", "ci95_low", "ci95_high"):
        assert key in js["grid"][0]
    for key in ("bound_delay", "sim_delay", "sim_ci95_low", "sim_ci95_high", "ratio"):
        assert key in js["epsilons"][0]
    assert json.loads((out / "compare.json").read_text())["verdict"] == "VALID"
    assert (out / "ccdf.png").read_bytes()[:4] == b"\x89PNG"
    assert "VALID" in (out / "report.md").read_text()
    # human summary, no plot
    rc = main(["compare", "--arrival", "poisson:rate=0.7", "--hop", "rate=1", "--packets", "20000",
               "--out", str(tmp_path / "p"), "--no-plot"])
    assert rc == 0 and "VALID" in capsys.readouterr().out and not (tmp_path / "p" / "ccdf.png").exists()
    # --loads: rows in the JSON and the delay-vs-load figure
    rc = main(["compare", "--arrival", "poisson:rate=0.5", "--hop", "rate=1", "--packets", "10000",
               "--out", str(tmp_path / "l"), "--loads", "0.5,0.8", "--epsilons", "1e-2", "--json"])
    js = json.loads(capsys.readouterr().out)
    assert rc == 0 and [row["load"] for row in js["loads"]] == [0.5, 0.8]
    assert (tmp_path / "l" / "delay_vs_load.png").exists()
    assert "Delay versus load" in (tmp_path / "l" / "report.md").read_text()
    # bad input: exit 2 with the reason
    assert main(["compare", "--time", "discrete", "--arrival", "poisson:rate=0.5", "--hop", "rate=1"]) == 2
    assert "continuous time" in capsys.readouterr().err
    assert main(["compare", "--arrival", "poisson:rate=0.5", "--hop", "rate=1", "--epsilons", "x"]) == 2
    # violated: exit 1
    real = curvemod.violation_bound
    monkeypatch.setattr(curvemod, "violation_bound", lambda *a, **k: (lambda b: type(b)(
        b.delay, b.epsilon * 1e-3, b.theta, b.method, b.detail))(real(*a, **k)))
    rc = main(["compare", "--arrival", "poisson:rate=0.7", "--hop", "rate=1", "--packets", "30000",
               "--out", str(tmp_path / "v"), "--no-plot"])
    assert rc == 1 and "VIOLATED" in capsys.readouterr().out


def test_cli_subprocess(tmp_path):
    out = tmp_path / "s"
    p = subprocess.run([sys.executable, "-m", "agents.cli", "compare", "--arrival", "poisson:rate=0.5",
                        "--hop", "rate=1", "--packets", "20000", "--out", str(out), "--no-plot"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "compare.json").read_text())["notion"] == "packet"


def test_exp_hop_units_agree_with_the_bound():
    """service=exp serves one packet of the flow's size per completion in both bound and simulation:
    Poisson 800/s of 1000-bit packets into a 1 Mb/s exponential server is M/M/1 at load 0.8."""
    r = compare(["poisson:rate=800,mean_size=1000"], ["rate=1e6,service=exp"], packets=N, seed=6)
    assert r.valid and r.utilisation == pytest.approx(0.8)
    for e in r.epsilons[:2]:  # exact sojourn quantile log(1/eps)/(mu - lambda), mu = 1000/s
        assert e.bound_delay == pytest.approx(math.log(1 / e.epsilon) / 200.0, rel=0.01)
        assert e.sim_delay == pytest.approx(e.bound_delay, rel=0.2)


def test_simulate_exp_hop_serves_one_packet_of_the_flow_size(capsys):
    """`trefed simulate` agrees with `trefed bound` on service=exp units (was: mean 1/rate s, i.e.
    1-bit packets): 800/s of 1000-bit packets into 1 Mb/s is M/M/1 at load 0.8, median sojourn
    log(2)/(mu - lambda) = log(2)/200 s."""
    assert main(["simulate", "--arrival", "poisson:rate=800,mean_size=1000", "--hop", "rate=1e6,service=exp",
                 "--packets", "100000", "--seed", "2", "--json"]) == 0
    q = json.loads(capsys.readouterr().out)["delay_quantiles"]
    assert q["p50"] == pytest.approx(math.log(2) / 200, rel=0.1)
    assert q["p99"] == pytest.approx(math.log(100) / 200, rel=0.2)


def test_the_core_does_not_import_its_cli():
    """federation.compare builds its model with the typed calculus builder, not the CLI's argparse one
    (it used to import agents.cli.bound.build_model and fake an argparse.Namespace)."""
    code = ("import sys, federation.compare.run, federation.compare.model, federation.compare.curve; "
            "print(sorted(m for m in sys.modules if m == 'agents' or m.startswith('agents.')))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_typed_build_model_is_the_bound_clis_model():
    """The calculus builder gives `trefed bound` its model: prop in the latency, cross traffic as Leftover."""
    from federation.calculus.model import build_model
    from federation.calculus.services import Leftover
    from federation.errors import SpecError
    from federation.specs import parse_arrival, parse_cross

    hops = [parse_hop("rate=1,latency=0.5,prop=0.25"), parse_hop("rate=2")]
    m = build_model([parse_arrival("poisson:rate=0.3"), parse_arrival("poisson:rate=0.2")], hops,
                    [parse_cross("2=poisson:rate=0.5", 2)])
    assert m.flow.mean_rate == pytest.approx(0.5) and len(m.services) == 2
    assert m.services[0].latency == pytest.approx(0.75)
    assert isinstance(m.services[1], Leftover) and m.services[1].cross.mean_rate == pytest.approx(0.5)
    with pytest.raises(SpecError, match="discrete time"):
        build_model([parse_arrival("poisson:rate=0.3", "discrete")], hops)


def _point(d: float, p_value: float) -> cmpmod.GridPoint:
    return cmpmod.GridPoint(d, 0.01, "product-form", math.nan, 0.012, 100, 0.009, 0.015, 0.009, 8000.0, True,
                            p_value)


def test_many_grid_points_at_one_percent_each_are_one_family():
    """150 points each at p = 0.005 are not a violation at family-wise error 1 % (Holm); one at 1e-6 is.

    Before issue 9 every point was tested at 1 % without correction: an exact bound was flagged.
    """
    base = compare(["poisson:rate=0.7,size=exp"], ["rate=1"], packets=20_000, seed=1)
    from dataclasses import replace

    grid = tuple(_point(float(d), 0.005) for d in np.linspace(1, 10, 150))
    r = cmpmod.joint_verdict(replace(base, grid=grid))
    assert r.valid and r.verdict == "VALID" and r.tested == 150 and not any(g.rejected for g in r.grid)
    r = cmpmod.joint_verdict(replace(base, grid=(*grid[:-1], _point(10.0, 1e-6))))
    assert not r.valid and r.grid[-1].rejected and r.worst_delay == 10.0


def test_verdict_and_exit_code_agree_over_a_sweep(tmp_path, capsys, monkeypatch):
    """A violation found at one load of --loads makes the printed verdict VIOLATED, and the exit code 1.

    Before issue 9 the summary printed VALID (the main model's verdict) while exiting 1.
    """
    real = cmpmod.compare_loads

    def one_bad(*a, **k):
        rows = real(*a, **k)
        bad = tuple(_point(g.delay, 1e-9) if i == 3 else g for i, g in enumerate(rows[0].grid))
        return (cmpmod.LoadRow(rows[0].load, rows[0].scale, rows[0].epsilons, True, bad), *rows[1:])

    monkeypatch.setattr(cmpmod, "compare_loads", one_bad)
    rc = main(["compare", "--arrival", "poisson:rate=0.5", "--hop", "rate=1", "--packets", "10000",
               "--out", str(tmp_path / "l"), "--loads", "0.5,0.8", "--epsilons", "1e-2", "--no-plot"])
    out = capsys.readouterr().out
    assert rc == 1 and "VIOLATED" in out and "VALID:" not in out
    rc = main(["compare", "--arrival", "poisson:rate=0.5", "--hop", "rate=1", "--packets", "10000",
               "--out", str(tmp_path / "j"), "--loads", "0.5,0.8", "--epsilons", "1e-2", "--no-plot", "--json"])
    js = json.loads(capsys.readouterr().out)
    assert rc == 1 and js["verdict"] == "VIOLATED" and [row["valid"] for row in js["loads"]] == [False, True]
