"""The busy-period recursion (federation.calculus.fifo_recursion): where it applies, its moment
against the exact one-hop queue, its grid, and its validity against the data plane.

Validity: at every checked delay the bound is at least the 99 % lower confidence limit (batch
means) of the fraction of the flow's packets whose simulated sojourn (arrival to egress) exceeds
it, in the same model run by the data plane (FIFO domains, one-hop Poisson cross traffic).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import brentq

from federation.calculus import fifo_recursion
from federation.calculus.arrivals import Aggregate, PoissonArrival
from federation.calculus.bound import BoundMethod
from federation.calculus.compose import delay_bound, violation_bound
from federation.calculus.fifo_recursion import (
    recursion_applies,
    recursion_delay,
    recursion_log_coefficient,
    recursion_model,
    recursion_violation,
)
from federation.calculus.reference import exceedance
from federation.calculus.services import ConstantRate, ExpService, FifoLeftover, Leftover
from federation.compare.run import fifo_tandem_departures
from federation.errors import InputError


def _services(hops):
    return [FifoLeftover(ConstantRate(c), PoissonArrival(lc, 1.0, kc)) if lc else ConstantRate(c) for c, lc, kc in hops]


def test_it_applies_to_poisson_fixed_size_packets_through_fifo_links_only():
    flow, x = PoissonArrival(0.3, 1.0), PoissonArrival(0.3, 1.0, "exp")
    fifo = FifoLeftover(ConstantRate(1.0), x)
    assert recursion_applies(flow, [fifo, ConstantRate(1.0, latency=0.5)])
    assert recursion_applies(flow, [FifoLeftover(ConstantRate(1.0), Aggregate((x, PoissonArrival(0.1, 1.0))))])
    assert not recursion_applies(PoissonArrival(0.3, 1.0, "exp"), [fifo])  # random flow sizes
    assert not recursion_applies(flow, [ConstantRate(1.0)] * 2)  # no cross traffic: the packet methods
    assert not recursion_applies(flow, [Leftover(ConstantRate(1.0), x)])  # blind multiplexing
    assert not recursion_applies(flow, [FifoLeftover(ExpService(1.0), x)])  # a random link
    assert not recursion_applies(flow, [FifoLeftover(ConstantRate(1.0), PoissonArrival(0.8, 1.0))])  # unstable
    assert recursion_violation(flow, [ConstantRate(1.0)], 10.0) is None
    assert recursion_delay(flow, [Leftover(ConstantRate(1.0), x)], 1e-3) is None


def test_the_first_hop_is_lundbergs_bound_and_a_later_hop_only_adds():
    """One FIFO hop: the sojourn is the aggregate's stationary workload plus L/C, whose tail is at most
    e^{-theta* y} (Lundberg, theta* the aggregate's root): the coefficient is theta L/C up to the root
    and the bound at a delay d is e^{-theta* (d - L/C)}. A later hop at least as fast without cross
    traffic adds exactly L/C to every sojourn (packets leave the hop before L/C apart); a slower one
    queues them."""
    flow, x = PoissonArrival(0.3, 1.0), PoissonArrival(0.4, 1.0, "exp")
    one = recursion_model(flow, [FifoLeftover(ConstantRate(1.0), x)])
    free = recursion_model(flow, [FifoLeftover(ConstantRate(1.0), x), ConstantRate(1.0), ConstantRate(2.0)])
    slower = recursion_model(flow, [FifoLeftover(ConstantRate(1.0), x), ConstantRate(0.8)])
    assert one is not None and free is not None and slower is not None
    agg = Aggregate((flow, x))
    root = brentq(lambda t: t - agg.kappa(t), 1e-3, 0.999)
    for theta in (0.01, 0.1, 0.2, 0.5 * root, 0.99 * root):
        assert recursion_log_coefficient(one, theta) == theta
        assert recursion_log_coefficient(free, theta) == pytest.approx(2.5 * theta, rel=1e-12)
        assert recursion_log_coefficient(slower, theta) > 2.25 * theta
    assert math.isinf(recursion_log_coefficient(one, 1.01 * root))
    for d in (5.0, 20.0, 60.0):
        b = recursion_violation(flow, [FifoLeftover(ConstantRate(1.0), x)], d)
        assert b is not None and b.epsilon == pytest.approx(math.exp(-root * (d - 1.0)), rel=0.01 * d)
        assert b.epsilon >= math.exp(-root * (d - 1.0))


def test_a_finer_grid_never_raises_the_moment():
    flow = PoissonArrival(0.3, 1.0)
    m = recursion_model(flow, _services([(1.0, 0.3, "det"), (1.0, 0.3, "exp"), (1.2, 0, "det")]))
    assert m is not None
    coarse = replace(m, cells=256)
    for theta in (0.05, 0.1, 0.2, 0.3):
        fine, rough = recursion_log_coefficient(m, theta), recursion_log_coefficient(coarse, theta)
        if math.isfinite(rough):
            assert fine <= rough + 1e-12, (theta, fine, rough)


def _restarted_queue_moment(lam, lx, s, a, b, n, rng):
    """Monte Carlo of ``E exp(a F[-s, 0] + b G_1(0))`` for one unit-rate FIFO hop started empty at ``-s``:
    unit flow packets at ``-s``, Poisson ``lam`` between and (Palm) at ``0``; unit cross packets Poisson ``lx``."""
    out = np.empty(n)
    for i in range(n):
        nf, nx = rng.poisson(lam * s), rng.poisson(lx * s)
        t = np.sort(np.concatenate(([0.0], rng.uniform(0, s, nf), rng.uniform(0, s, nx))))
        w, last = 0.0, 0.0
        for u in t:
            w, last = max(w - (u - last), 0.0) + 1.0, u
        out[i] = math.exp(a * (nf + 2) + b * (max(w - (s - last), 0.0) + 1.0))
    return out.mean(), out.std() / math.sqrt(n)


@pytest.mark.parametrize("a,b", [(0.3, 0.3), (0.8, 0.3)])  # the tilted stationary queue; the recursion
def test_a_restarted_queue_moment_is_above_its_simulation(a, b):
    """J_1 (module Notes) against a simulation of the restarted queue it bounds, at three restart times."""
    m = recursion_model(PoissonArrival(0.3, 1.0), [FifoLeftover(ConstantRate(1.0), PoissonArrival(0.3, 1.0))])
    assert m is not None
    step = 40.0 / m.cells
    grid = fifo_recursion._grid(m, 1, a, b, step, {}, {})
    assert grid is not None
    rng = np.random.default_rng(708)
    for s in (2.0, 8.0, 20.0):
        i = round(s / step)
        bound = math.exp(grid.logs[i])
        mean, se = _restarted_queue_moment(0.3, 0.3, i * step, a, b, 20_000, rng)
        assert bound >= mean - 3 * se, (s, bound, mean, se)


def _fifo_hop(flow, cross):
    """Departures of unit packets arriving at sorted times ``flow`` from a unit-rate FIFO hop shared
    with unit cross packets arriving at ``cross``."""
    t = np.concatenate((flow, cross))
    d, out = 0.0, np.empty(len(flow))
    for i in np.argsort(t, kind="stable"):
        d = max(d, t[i]) + 1.0
        if i < len(flow):
            out[i] = d
    return out


def _restarted_tandem_moment(lam, lx, hops, s, a, b, n, rng):
    """Monte Carlo of ``E exp(a F[-s, 0] + b G_k(0))`` for ``hops`` unit-rate FIFO hops started empty at
    ``-s`` (time 0 here) with unit Poisson cross packets ``lx`` at every hop from then on: unit flow
    packets at ``-s``, Poisson ``lam`` between and (Palm) at ``0``."""
    out = np.empty(n)
    for i in range(n):
        nf = rng.poisson(lam * s)
        dep = np.concatenate(([0.0], np.sort(rng.uniform(0, s, nf)), [s]))
        for _ in range(hops):
            end = dep[-1]  # later cross packets cannot delay the last flow packet (FIFO)
            dep = _fifo_hop(dep, rng.uniform(0, end, rng.poisson(lx * end)))
        out[i] = math.exp(a * (nf + 2) + b * (dep[-1] - s))
    return out.mean(), out.std() / math.sqrt(n)


@pytest.mark.parametrize("a,b", [(0.2, 0.2), (0.4, 0.2)])
def test_a_restarted_tandem_moment_is_above_its_simulation_where_hoelder_splits_it(a, b):
    """J_2 (module Notes: Hoelder) against a simulation of the restarted 2-hop tandem it bounds, at
    three restart times, where the Hoelder split is below the recursion (so the check covers it)."""
    m = recursion_model(PoissonArrival(0.25, 1.0), [FifoLeftover(ConstantRate(1.0), PoissonArrival(0.25, 1.0))] * 2)
    assert m is not None
    step, memo = 40.0 / m.cells, {}
    grid = fifo_recursion._grid(m, 2, a, b, step, {}, memo)
    raw = memo[("raw", 2, a, b)]
    assert grid is not None and raw is not None
    rng = np.random.default_rng(709)
    for s in (2.0, 8.0, 20.0):
        i = round(s / step)
        bound = math.exp(grid.logs[i])
        assert grid.logs[i] < raw.logs[i] + math.log(0.9)
        mean, se = _restarted_tandem_moment(0.25, 0.25, 2, i * step, a, b, 20_000, rng)
        assert bound >= mean - 3 * se, (s, bound, mean, se)


def test_delay_and_violation_agree_and_the_tandem_picks_the_recursion():
    flow, services = PoissonArrival(0.3, 1.0), _services([(1.0, 0.3, "det")] * 2)
    d = recursion_delay(flow, services, 1e-3)
    assert d is not None and d.method == BoundMethod.FIFO_RECURSION and d.epsilon == 1e-3 and d.theta > 0
    v = recursion_violation(flow, services, d.delay)
    assert v is not None and v.epsilon <= 1e-3 * (1 + 1e-9)
    assert recursion_violation(flow, services, 1.5 * d.delay).epsilon < v.epsilon
    assert recursion_delay(flow, services, 1e-3) == d  # the same on every call
    best = delay_bound(flow, services, 1e-3)
    assert best.method == BoundMethod.FIFO_RECURSION and best.delay == pytest.approx(d.delay, rel=1e-6)
    assert best.delay <= d.delay
    assert violation_bound(flow, services, best.delay).epsilon <= 1e-3 * (1 + 1e-9)
    # below a packet's own transmissions nothing is promised
    assert recursion_violation(flow, services, 1.9).epsilon == 1.0
    for bad in (0.0, 1.0, -1e-3, math.nan):
        with pytest.raises(InputError, match="epsilon"):
            recursion_delay(flow, services, bad)



@pytest.mark.parametrize("hops", [[(1.0, 0.3, "det")] * 3, [(1.0, 0.45, "det")] * 3])
def test_delay_bound_is_the_inversion_of_every_method_with_or_without_the_shortcut(hops):
    """delay_bound skips the inversion of the other methods when none reaches epsilon just below
    the recursion's delay: the answer must be that of inverting violation_bound (every method) to
    its tolerance; at u = 0.9 the FIFO MGF bound beats the recursion and the inversion runs."""
    from federation.calculus.roots import invert_delay

    flow, services = PoissonArrival(hops[0][1], 1.0), _services(hops)
    best = delay_bound(flow, services, 1e-3)
    full = invert_delay(lambda x: violation_bound(flow, services, x).epsilon, 1e-3, 0.0, 3.0, discrete=False)
    assert best.delay == pytest.approx(full, rel=3e-4)
    assert violation_bound(flow, services, best.delay).epsilon <= 1e-3 * (1 + 1e-9)
    rec = recursion_delay(flow, services, 1e-3)
    assert rec is not None
    if best.method == BoundMethod.FIFO_RECURSION:
        assert best == rec
    else:
        assert best.delay < rec.delay


CASES = [
    # (flow packets/s, [(rate, cross packets/s, cross size)], seed)
    (0.3, [(1.0, 0.3, "det")] * 2, 701),
    (0.3, [(1.0, 0.3, "exp")] * 3, 702),
    (0.3, [(1.0, 0.4, "exp"), (1.0, 0, "det"), (1.5, 0, "det")], 703),
    (0.2, [(1.0, 0.5, "exp"), (1.25, 0.3, "det"), (1.0, 0.4, "det")], 704),
    (0.25, [(1.0, 0.25, "det")] * 4, 706),
]


@pytest.mark.parametrize("lam,hops,seed", CASES)
def test_recursion_valid_against_the_data_plane(lam, hops, seed):
    a, f = fifo_tandem_departures(lam, "det", hops, 200_000, seed)
    soj = (f - a)[2000:]
    flow, services = PoissonArrival(lam, 1.0), _services(hops)
    checked = 0
    for q in (0.9, 0.99, 0.999):
        d = float(np.quantile(soj, q))
        est = exceedance(soj, d)
        b = recursion_violation(flow, services, d)
        assert b is not None and b.epsilon >= est.lower_limit(0.99), (d, b, est)
        checked += est.p > 0
    assert checked >= 2


def test_the_validity_check_catches_a_recursion_that_ignores_a_hop_of_cross_traffic():
    """The same check fails for an invalid bound: the recursion with the first hop's cross traffic dropped."""
    hops = [(1.0, 0.5, "det"), (1.0, 0.1, "det")]
    a, f = fifo_tandem_departures(0.3, "det", hops, 200_000, 705)
    soj = (f - a)[2000:]
    flow = PoissonArrival(0.3, 1.0)
    wrong = [ConstantRate(1.0), FifoLeftover(ConstantRate(1.0), PoissonArrival(0.1, 1.0))]
    caught = 0
    for q in (0.9, 0.99, 0.999):
        d = float(np.quantile(soj, q))
        low = exceedance(soj, d).lower_limit(0.99)
        invalid = recursion_violation(flow, wrong, d)
        assert invalid is not None
        caught += invalid.epsilon < low
        assert recursion_violation(flow, _services(hops), d).epsilon >= low
    assert caught >= 2


@pytest.mark.parametrize("size,rate", [(12_000.0, 1e9), (8000.0, 1e6), (1e-3, 1e3)])
def test_the_bound_scales_with_the_packet_time(size, rate):
    """Bits and seconds enter only through L/C: a model in other units is the unit model rescaled."""
    def bound(size, rate):
        u = size / rate
        f = PoissonArrival(0.3 / u, size)
        hop = FifoLeftover(ConstantRate(rate, latency=0.5 * u), PoissonArrival(0.3 / u, size, "exp"))
        d = recursion_delay(f, [hop] * 3, 1e-3)
        assert d is not None
        return d.delay / u, recursion_violation(f, [hop] * 3, 40.0 * u).epsilon

    assert bound(size, rate) == pytest.approx(bound(1.0, 1.0), rel=1e-9)


def test_a_vanishing_bound_is_never_zero_and_saturation_gives_none_or_finite():
    flow, services = PoissonArrival(0.475, 1.0), _services([(1.0, 0.475, "det")] * 2)
    b = recursion_violation(flow, services, 1e4)
    assert b is not None and 0.0 < b.epsilon <= 1e-300
    for u, hops in ((0.99, 2), (0.99, 4), (0.999, 2)):
        f, s = PoissonArrival(u / 2, 1.0), _services([(1.0, u / 2, "det")] * hops)
        d = recursion_delay(f, s, 1e-3)
        assert d is None or (math.isfinite(d.delay) and d.delay > hops)
