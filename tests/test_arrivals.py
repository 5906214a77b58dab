"""Arrival and service MGF envelopes against exact MGFs (matrix products, closed forms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

import federation.calculus.arrivals as arrivals_mod
import federation.calculus.services as services_mod
from federation.calculus.arrivals import (
    MMOO,
    Aggregate,
    CorrelatedMMOO,
    ExpIncrements,
    PoissonArrival,
    TokenBucket,
    aggregate,
    arrival_from_spec,
)
from federation.calculus.services import ConstantRate, ExpService, Leftover, reserved_slice, service_from_hop
from federation.errors import NoFiniteBound, SpecError
from federation.specs import parse_arrival, parse_hop


def _stationary(p: np.ndarray, generator: bool = False) -> np.ndarray:
    w, v = np.linalg.eig(p.T)
    i = int(np.argmin(np.abs(w))) if generator else int(np.argmin(np.abs(w - 1)))
    pi = np.abs(v[:, i].real)
    return pi / pi.sum()


def _exact_log_mgf_discrete(p: np.ndarray, rates: np.ndarray, theta: float, t: int) -> float:
    """log E[exp(theta*A(1..t))] of a stationary Markov-modulated source (matrix product)."""
    pi = _stationary(p)
    dmat = np.diag(np.exp(theta * rates))
    v = pi @ dmat
    m = p @ dmat
    logscale = 0.0
    for _ in range(t - 1):
        v = v @ m
        s = v.sum()
        logscale += math.log(s)
        v = v / s
    return logscale + math.log(v.sum())


@pytest.mark.parametrize(
    "model",
    [
        MMOO.discrete(0.9, 0.8, 1.0, n=1),
        MMOO.discrete(0.7, 0.95, 2.0, n=3),
        MMOO.discrete(0.2, 0.3, 1.0, n=2),  # negatively correlated chain
        CorrelatedMMOO.discrete(0.9, 0.9, 1.0, n=4),
    ],
)
def test_discrete_mmoo_envelope_bounds_exact_mgf(model):
    p, rates = model.markov()
    for theta in (0.05, 0.3, 1.0, 3.0):
        gaps = []
        for t in (1, 2, 5, 20, 80):
            exact = _exact_log_mgf_discrete(p, rates, theta, t)
            bound = model.log_mgf_bound(theta, t)
            assert exact <= bound + 1e-9, (theta, t, exact, bound)
            gaps.append(bound - exact)
        # the effective bandwidth is exact: the gap does not grow with t
        assert gaps[-1] <= gaps[-2] + 1e-3


@pytest.mark.parametrize(
    "model", [MMOO(peak=1.0, on=1.0, off=2.0, n=1), MMOO(peak=2.0, on=0.3, off=0.5, n=3), CorrelatedMMOO(1.0, 1.0, 1.0, 5)]
)
def test_continuous_mmoo_envelope_bounds_exact_mgf(model):
    q, rates = model.markov()
    pi = _stationary(q, generator=True)

    def exact(theta: float, t: float) -> float:
        m = q + theta * np.diag(rates)
        lam = float(np.max(np.linalg.eigvals(m).real))  # shift for numerical range
        return lam * t + math.log(float(pi @ expm(t * (m - lam * np.eye(len(rates)))) @ np.ones(len(rates))))

    for theta in (0.1, 0.7, 2.0):
        for t in (0.1, 1.0, 10.0):
            assert exact(theta, t) <= model.log_mgf_bound(theta, t) + 1e-9
        # the effective bandwidth is the Perron root: tight for long intervals
        assert model.log_mgf_bound(theta, 200.0) - exact(theta, 200.0) < 1.0


def test_mmoo_limits_and_mean():
    m = MMOO.discrete(0.9, 0.8, 1.5, n=4)
    assert m.p_on == pytest.approx(0.2 / 0.3)
    assert m.mean_rate == pytest.approx(4 * 1.5 * 2 / 3)
    assert m.rho(1e-7) == pytest.approx(m.mean_rate, rel=1e-4)  # rho(0+) = mean
    assert m.rho(50.0) == pytest.approx(m.peak_rate, rel=0.01)  # rho(inf) = peak
    c = MMOO(peak=1.0, on=1.0, off=3.0, n=2)
    assert c.rho(1e-7) == pytest.approx(0.5, rel=1e-4)
    assert c.rho(1e4) == pytest.approx(2.0, rel=1e-3)
    # one chain driving n sources is burstier than n independent ones
    ind, cor = MMOO.discrete(0.9, 0.9, 1.0, n=5), CorrelatedMMOO.discrete(0.9, 0.9, 1.0, n=5)
    assert cor.mean_rate == pytest.approx(ind.mean_rate)
    assert cor.rho(0.5) > ind.rho(0.5)


def test_poisson_and_exp_increments_closed_forms():
    p = PoissonArrival(3.0, 2.0, "det")
    assert p.kappa(0.4) == pytest.approx(3.0 * (math.exp(0.8) - 1))
    e = PoissonArrival(3.0, 2.0, "exp")
    assert e.kappa(0.4) == pytest.approx(3.0 * (1 / (1 - 0.8) - 1))
    assert e.theta_max == 0.5 and e.kappa(0.5) == math.inf
    x = ExpIncrements(2.0)
    assert x.kappa(1.0) == pytest.approx(math.log(2.0))
    assert x.mean_rate == 0.5 and x.theta_max == 2.0
    # Monte-Carlo check of a compound Poisson MGF (exponential sizes)
    rng = np.random.default_rng(0)
    k = rng.poisson(3.0, 400_000)
    a = rng.gamma(np.maximum(k, 1e-300), 2.0) * (k > 0)
    assert math.log(np.mean(np.exp(0.1 * a))) == pytest.approx(e.kappa(0.1), rel=0.01)
    assert TokenBucket(5.0, 2.0).log_mgf_bound(0.3, 10.0) == pytest.approx(0.3 * 25.0)


def test_aggregation_independent_and_hoelder():
    a, b = PoissonArrival(1.0, 1.0), MMOO(peak=1.0, on=1.0, off=1.0, n=2)
    ind = aggregate([a, b])
    dep = aggregate([a, b], dependent=True)
    assert isinstance(ind, Aggregate) and not ind.dependent
    for th in (0.1, 0.5):
        assert ind.kappa(th) == pytest.approx(a.kappa(th) + b.kappa(th))
        assert dep.kappa(th) >= ind.kappa(th)
    # Hölder for identical flows is the exact comonotone MGF: kappa(2 theta) / 2 summed twice
    same = aggregate([a, a], dependent=True)
    assert same.kappa(0.3) == pytest.approx(a.kappa(0.6))
    assert dep.theta_max == min(a.theta_max, b.theta_max) / 2
    tb = aggregate([TokenBucket(1.0, 2.0), TokenBucket(3.0, 4.0)])
    assert isinstance(tb, TokenBucket) and tb.deterministic and tb.sigma(1.0) == 4.0 and tb.rho(1.0) == 6.0
    with pytest.raises(SpecError):
        aggregate([PoissonArrival(1.0), PoissonArrival(1.0, time="discrete")])


@pytest.mark.parametrize(
    "text,time,cls",
    [
        ("token-bucket:sigma=10,rho=2", "continuous", TokenBucket),
        ("poisson:rate=5,size=exp,mean_size=100", "continuous", PoissonArrival),
        ("poisson:rate=0.5", "discrete", PoissonArrival),
        ("exp-increments:lamb=2", "discrete", ExpIncrements),
        ("mmoo:stay_on=0.9,stay_off=0.8,peak=1,n=3", "discrete", MMOO),
        ("mmoo:on=1,off=2,peak=3", "continuous", MMOO),
        ("correlated-mmoo:stay_on=0.9,stay_off=0.8,peak=1,n=3,corr=0.5", "discrete", CorrelatedMMOO),
        ("correlated-mmoo:on=1,off=2,peak=3,n=2", "continuous", CorrelatedMMOO),
    ],
)
def test_arrival_from_spec(text, time, cls):
    a = arrival_from_spec(parse_arrival(text, time))
    assert type(a) is cls
    assert a.time == time
    assert a.mean_rate > 0
    assert a.kappa(1e-3) > 0


def test_arrival_from_spec_rejects_heavy_tails():
    with pytest.raises(NoFiniteBound, match="Pareto"):
        arrival_from_spec(parse_arrival("pareto-onoff:on=1,off=1,peak=1,alpha=1.5"))


def test_constructor_validation_names_the_value():
    with pytest.raises(SpecError, match=r"rho\(=-1"):
        TokenBucket(1.0, -1.0)
    with pytest.raises(SpecError, match="stay_on"):
        MMOO.discrete(1.2, 0.5, 1.0)
    with pytest.raises(SpecError, match="discrete"):
        ExpIncrements(1.0, time="continuous")


def test_services():
    assert ConstantRate(3.0).gamma(0.5) == 1.5
    # discrete exponential capacity: E[exp(-theta c)] = 1/(1 + theta R)
    s = ExpService(2.0, time="discrete")
    rng = np.random.default_rng(1)
    c = rng.exponential(2.0, 400_000)
    assert -math.log(np.mean(np.exp(-0.3 * c))) == pytest.approx(s.gamma(0.3), rel=5e-3)
    # continuous: Poisson completions of 100-bit packets at 1000 bits/s
    sc = ExpService(1000.0, 100.0)
    assert sc.completion_rate == 10.0
    assert sc.gamma(0.01) == pytest.approx(10.0 * (1 - math.exp(-1.0)))
    lo = Leftover(ConstantRate(2.0), PoissonArrival(1.0))
    assert lo.mean_rate == pytest.approx(1.0)
    assert lo.gamma(0.2) == pytest.approx(0.4 - PoissonArrival(1.0).kappa(0.2))
    r = reserved_slice(10e6, 2e6, latency=1e-3, max_packet=12000)
    assert isinstance(r, ConstantRate) and r.rate == 2e6 and r.latency == pytest.approx(1e-3 + 12000 / 10e6)
    with pytest.raises(SpecError):
        reserved_slice(1e6, 2e6)
    h = service_from_hop(parse_hop("rate=5,service=exp,latency=0.1"), packet_size=2.0)
    assert isinstance(h, ExpService) and h.latency == 0.1 and h.packet_size == 2.0


def test_public_names():
    assert set(arrivals_mod.__all__) >= {"Arrival", "TokenBucket", "PoissonArrival", "MMOO", "arrival_from_spec"}
    for mod in (arrivals_mod, services_mod):
        for name in mod.__all__:
            assert hasattr(mod, name)
