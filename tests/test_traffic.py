"""Traffic generators: laws, mean rates, window invariance, shaping, specs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import federation.dataplane.traffic as tr
from federation.dataplane.traffic import (
    CorrelatedMMOOTraffic,
    GreedyTokenBucket,
    MMOOTraffic,
    PacketSizes,
    ParetoOnOff,
    Poisson,
    Shaped,
    generate,
    traffic_from_spec,
)
from federation.errors import InputError
from federation.specs import parse_arrival

MODELS = [
    Poisson(3.0, PacketSizes("exponential", 2.0)),
    MMOOTraffic(1.0, 2.0, 10.0, n=3),
    CorrelatedMMOOTraffic(1.0, 2.0, 10.0, n=4, corr=0.5),
    ParetoOnOff(1.0, 2.0, 10.0, alpha=1.5, n=2),
    GreedyTokenBucket(5.0, 2.0),
    Shaped(Poisson(3.0), sigma=4.0, rho=3.5),
    Poisson(2.0, PacketSizes.empirical([1.0, 5.0, 9.0])),
]


def test_public_names():
    assert set(tr.__all__) >= {"Poisson", "MMOOTraffic", "CorrelatedMMOOTraffic", "ParetoOnOff", "GreedyTokenBucket",
                               "Shaped", "PacketSizes", "Stream", "generate", "traffic_from_spec"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_windows_do_not_change_the_stream(model):
    """Packets handed out over many small windows == one big window, bit for bit."""
    seed = np.random.SeedSequence(11, spawn_key=(3, 0))
    g1 = model.generator(seed)
    t1, s1 = g1.take(2000.0)
    g2 = model.generator(seed)
    edges = np.sort(np.random.default_rng(0).uniform(0, 2000, 40))
    parts = [g2.take(e) for e in edges] + [g2.take(2000.0)]
    t2 = np.concatenate([p[0] for p in parts])
    s2 = np.concatenate([p[1] for p in parts])
    assert np.array_equal(t1, t2) and np.array_equal(s1, s2)
    assert np.all(np.diff(t1) >= 0) and np.all(t1 < 2000.0)
    assert g1.count == len(t1)


def test_poisson_interarrivals_are_exponential():
    s = generate(Poisson(5.0), tenant=2, seed=1, packets=50_000)
    assert s.tenant == 2 and len(s) == 50_000
    gaps = np.diff(s.times)
    assert stats.kstest(gaps, "expon", args=(0, 1 / 5.0)).pvalue > 1e-3
    assert np.all(s.sizes == 1.0)


def test_tenants_and_seeds_give_independent_streams():
    a = generate(Poisson(5.0), tenant=0, seed=1, packets=100)
    b = generate(Poisson(5.0), tenant=1, seed=1, packets=100)
    c = generate(Poisson(5.0), tenant=0, seed=1, packets=100)
    assert not np.array_equal(a.times, b.times)
    assert np.array_equal(a.times, c.times)


@pytest.mark.parametrize("model,tol", [
    (MMOOTraffic(0.5, 1.5, 20.0, n=5), 0.03),
    (CorrelatedMMOOTraffic(0.5, 1.5, 20.0, n=5, corr=1.0), 0.06),
    (CorrelatedMMOOTraffic(0.5, 1.5, 20.0, n=5, corr=0.0), 0.03),
    (ParetoOnOff(0.5, 1.5, 20.0, alpha=2.5, n=5), 0.08),
    (GreedyTokenBucket(3.0, 7.0), 0.01),
])
def test_mean_rate(model, tol):
    horizon = 20_000.0
    s = generate(model, seed=4, horizon=horizon)
    assert len(s) / horizon == pytest.approx(model.packet_rate, rel=tol)


def test_correlation_knob_increases_burstiness_not_mean():
    counts = {}
    for corr in (0.0, 1.0):
        s = generate(CorrelatedMMOOTraffic(1.0, 3.0, 10.0, n=8, corr=corr), seed=5, horizon=40_000.0)
        counts[corr] = np.bincount(s.times.astype(np.int64), minlength=40_000)
    assert counts[0.0].mean() == pytest.approx(counts[1.0].mean(), rel=0.05)
    # fully correlated: variance of per-second counts ~ n times larger
    assert counts[1.0].var() > 4 * counts[0.0].var()
    assert CorrelatedMMOOTraffic(1, 1, 1, n=10, corr=0.34).coupled == 3


def test_pareto_periods_are_heavy_tailed():
    light = generate(MMOOTraffic(1.0, 1.0, 50.0), seed=2, horizon=50_000.0).times
    heavy = generate(ParetoOnOff(1.0, 1.0, 50.0, alpha=1.3), seed=2, horizon=50_000.0).times
    # the longest silence is far longer under Pareto off periods
    assert np.diff(heavy).max() > 5 * np.diff(light).max()


def _conforms(t: np.ndarray, s: np.ndarray, sigma: float, rho: float) -> bool:
    """A(t_i..t_j) <= sigma + rho (t_j - t_i) for all i <= j."""
    cum = np.cumsum(s)
    prev = cum - s  # bits before packet i
    lo = np.minimum.accumulate(prev - rho * t)
    return bool(np.all(cum - rho * t - lo <= sigma * (1 + 1e-12) + 1e-9))


def test_greedy_token_bucket_is_extremal():
    s = generate(GreedyTokenBucket(4.0, 2.0), seed=0, packets=1000)
    assert np.count_nonzero(s.times == 0.0) == 4
    assert _conforms(s.times, s.sizes, 4.0, 2.0)
    assert not _conforms(s.times, s.sizes, 3.0, 2.0)


def test_shaper_output_conforms_and_is_causal():
    inner = Poisson(5.0, PacketSizes.empirical([0.5, 1.0, 2.0]))
    raw = generate(inner, seed=3, horizon=500.0)
    shaped = generate(Shaped(inner, sigma=6.0, rho=4.0), seed=3, horizon=500.0)
    n = len(shaped)
    assert n > 1000
    assert np.all(shaped.times >= raw.times[:n]) and np.array_equal(shaped.sizes, raw.sizes[:n])
    assert _conforms(shaped.times, shaped.sizes, 6.0, 4.0)
    assert not _conforms(raw.times, raw.sizes, 6.0, 4.0)
    with pytest.raises(InputError, match="exceeds the bucket depth"):
        generate(Shaped(Poisson(5.0, PacketSizes("fixed", 9.0)), sigma=6.0, rho=40.0), seed=0, horizon=10.0)


def test_packet_sizes():
    rng = np.random.default_rng(0)
    assert np.all(PacketSizes("fixed", 3.0).draw(rng, 10) == 3.0)
    e = PacketSizes("exponential", 3.0).draw(rng, 100_000)
    assert e.mean() == pytest.approx(3.0, rel=0.02)
    emp = PacketSizes.empirical([1, 2, 7])
    assert emp.mean == pytest.approx(10 / 3)
    assert set(np.unique(emp.draw(rng, 1000))) == {1.0, 2.0, 7.0}
    with pytest.raises(InputError):
        PacketSizes("weird", 1.0)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        PacketSizes.empirical([])
    with pytest.raises(InputError):
        PacketSizes("fixed", -1.0)


def test_traffic_from_spec():
    assert traffic_from_spec(parse_arrival("poisson:rate=5,size=exp,mean_size=3")) == Poisson(
        5.0, PacketSizes("exponential", 3.0))
    m = traffic_from_spec(parse_arrival("mmoo:on=1,off=2,peak=3,n=4"), packet_size=0.5)
    assert m == MMOOTraffic(1.0, 2.0, 3.0, 4, PacketSizes("fixed", 0.5))
    c = traffic_from_spec(parse_arrival("correlated-mmoo:on=1,off=2,peak=3,n=4,corr=0.5"))
    assert isinstance(c, CorrelatedMMOOTraffic) and c.corr == 0.5
    p = traffic_from_spec(parse_arrival("pareto-onoff:on=1,off=2,peak=3,alpha=1.5"))
    assert isinstance(p, ParetoOnOff) and p.alpha == 1.5
    assert traffic_from_spec(parse_arrival("token-bucket:sigma=2,rho=3")) == GreedyTokenBucket(2.0, 3.0, 1.0)
    with pytest.raises(InputError, match="continuous time only"):
        traffic_from_spec(parse_arrival("poisson:rate=0.5", "discrete"))


def test_validation_messages():
    with pytest.raises(InputError, match=r"poisson rate\(=-1\)"):
        Poisson(-1.0)
    with pytest.raises(InputError, match="corr"):
        CorrelatedMMOOTraffic(1, 1, 1, n=2, corr=1.5)
    with pytest.raises(InputError, match="alpha"):
        ParetoOnOff(1, 1, 1, alpha=1.0)
    with pytest.raises(InputError, match="exactly one"):
        generate(Poisson(1.0))
