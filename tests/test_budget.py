"""Risk-budget decomposition: sums, closed form vs numeric solver, admission, cost-minimising rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federation.calculus.arrivals import PoissonArrival
from federation.calculus.budget import (
    ExpTail,
    decompose,
    exponential_tails,
    min_cost_rates,
    split_closed_form,
    split_equal,
    split_numeric,
)
from federation.calculus.services import ConstantRate, ExpService
from federation.calculus.tandem import tandem_violation
from federation.errors import InputError, NoFiniteBound


def _random_tails(rng: np.random.Generator, n: int) -> list[ExpTail]:
    return [ExpTail(math.log(float(rng.uniform(0.5, 50))), float(rng.uniform(0.1, 5)), float(rng.uniform(0, 2))) for _ in range(n)]


def test_split_always_satisfies_both_sums():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 7))
        tails = _random_tails(rng, n)
        delay = sum(t.offset for t in tails) + float(rng.uniform(0.01, 30))
        eps = float(10 ** rng.uniform(-6, -1))
        sp = decompose(tails, delay, eps)
        assert sum(sp.delays) <= delay * (1 + 1e-12)
        assert sum(sp.epsilons) <= eps * (1 + 1e-12)
        assert all(d >= t.offset - 1e-12 for d, t in zip(sp.delays, tails))
        assert all(e >= 0 for e in sp.epsilons)
        # feasibility flag is the modelled tail sum against the budget
        assert sp.feasible == (sum(sp.model_epsilons) <= eps)


def test_closed_form_matches_numeric_solver():
    rng = np.random.default_rng(1)
    for _ in range(25):
        n = int(rng.integers(2, 6))
        tails = _random_tails(rng, n)
        delay = sum(t.offset for t in tails) + float(rng.uniform(1, 20))
        d_cf, e_cf = split_closed_form(tails, delay)
        d_num, e_num = split_numeric([t.log for t in tails], delay, [t.offset for t in tails])
        assert e_cf.sum() == pytest.approx(e_num.sum(), rel=1e-4)
        assert e_cf.sum() <= e_num.sum() * (1 + 1e-9)
        np.testing.assert_allclose(d_cf, d_num, atol=2e-3 * delay)
        # KKT: g_i * eps_i equal on the active set
        g = np.array([t.decay for t in tails])
        active = d_cf > np.array([t.offset for t in tails]) + 1e-9
        if active.sum() > 1:
            kkt = g[active] * e_cf[active]
            assert kkt.max() == pytest.approx(kkt.min(), rel=1e-9)


def test_optimal_split_beats_equal_split():
    rng = np.random.default_rng(2)
    for _ in range(50):
        tails = _random_tails(rng, 4)
        delay = sum(t.offset for t in tails) + 10.0
        assert split_closed_form(tails, delay)[1].sum() <= split_equal(tails, delay)[1].sum() * (1 + 1e-12)


def _admissible_rate(services, delay: float, eps: float, split) -> float:
    """Largest Poisson packet rate whose split (at the best theta of a grid) meets eps."""

    def ok(lam: float) -> bool:
        flow = PoissonArrival(lam, 1.0, "exp")
        if flow.mean_rate >= min(s.mean_rate for s in services):
            return False
        for th in np.linspace(0.02, 0.98, 49) * flow.theta_max:
            try:
                tails = exponential_tails(flow, services, float(th))
            except NoFiniteBound:
                continue
            if sum(t.offset for t in tails) > delay:
                return False
            if split(tails, delay)[1].sum() <= eps:
                return True
        return False

    lo, hi = 0.0, min(s.mean_rate for s in services)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def test_optimal_split_admits_at_least_as_much_traffic():
    services = [ConstantRate(1.0, latency=1.0), ExpService(2.0, 1.0, latency=0.5), ConstantRate(4.0)]
    opt = _admissible_rate(services, 40.0, 1e-3, split_closed_form)
    eq = _admissible_rate(services, 40.0, 1e-3, split_equal)
    assert opt > 0
    assert opt >= eq
    assert opt > eq * 1.01  # heterogeneous domains: the optimum is strictly better here


def test_numeric_split_of_optimised_single_hop_bounds():
    flow = PoissonArrival(0.5, 1.0, "exp")
    services = [ConstantRate(1.0), ExpService(1.5, 1.0)]

    def log_tail(s):
        return lambda d: math.log(max(tandem_violation(flow, [s], d).epsilon, 1e-300))

    delay = 60.0
    d, e = split_numeric([log_tail(s) for s in services], delay)
    assert d.sum() == pytest.approx(delay)
    d_eq = np.full(2, delay / 2)
    e_eq = [math.exp(log_tail(s)(x)) for s, x in zip(services, d_eq)]
    assert e.sum() <= sum(e_eq) * (1 + 1e-6)


def test_split_rejects_delay_below_latency():
    with pytest.raises(InputError):
        split_closed_form([ExpTail(0.0, 1.0, 5.0)], 4.0)


def test_min_cost_rates_closed_form():
    """min sum c_i r_i s.t. sum 1/r_i <= K has r_i = sum_j sqrt(c_j) / (K sqrt(c_i))."""
    c = np.array([1.0, 4.0, 9.0])
    k = 0.5
    r = min_cost_rates(lambda x: math.log(np.sum(1.0 / x)), math.log(k), np.full(3, 0.1), np.full(3, 1e3), c)
    expect = np.sqrt(c).sum() / (k * np.sqrt(c))
    assert np.sum(1 / r) <= k * (1 + 1e-9)
    np.testing.assert_allclose(r, expect, rtol=2e-2)
    with pytest.raises(NoFiniteBound):
        min_cost_rates(lambda x: math.log(np.sum(1.0 / x)), math.log(k), np.full(3, 0.1), np.full(3, 2.0), c)
