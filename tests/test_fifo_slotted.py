"""The slotted busy-period bound of two FIFO hops (``federation/calculus/fifo_slotted.py``).

Checked against the slotted FIFO tandem it models
(:func:`federation.calculus.reference.slotted_fifo_tandem_delays`, cut-through, the cross work of a
slot before the flow's): the simulated ``P(D > bound)`` at 99 % confidence (batch means) must not
exceed epsilon at three quantiles, and the same check catches a bound that ignores three fifths
of the second hop's cross traffic (at two fifths it is on the edge: 23 against a simulated 25 at
1e-3, inside the interval).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from federation.calculus.arrivals import MMOO, ExpIncrements, PoissonArrival
from federation.calculus.bound import BoundMethod
from federation.calculus.compose import delay_bound, violation_bound
from federation.calculus.fifo_slotted import (
    slotted_delay,
    slotted_log_coefficient,
    slotted_model,
    slotted_violation,
)
from federation.calculus.reference import exceedance, slot_samples, slotted_fifo_tandem_delays
from federation.calculus.services import ConstantRate, FifoLeftover
from federation.errors import InputError

D = "discrete"


def _link(c, latency=0.0):
    return ConstantRate(c, latency, time=D)


def _fifo(c, x):
    return FifoLeftover(_link(c), x)


def _px(rate, size=1.0, kind="exp"):
    return PoissonArrival(rate, size, kind, time=D)


def test_it_applies_to_two_slotted_queueing_hops_the_second_fifo_with_cross_traffic():
    f, x = ExpIncrements(1 / 0.3), _px(0.3)
    assert slotted_model(f, [_fifo(1.0, x), _fifo(1.0, x)]) is not None
    assert slotted_model(f, [_link(1.0), _fifo(1.0, x)]) is not None
    assert slotted_model(_px(0.2, 1.0, "det"), [_fifo(1.0, x), _fifo(1.0, x)]) is not None
    m = slotted_model(f, [_fifo(1.0, x), _link(1.5, 2.0), _fifo(1.0, x), _link(1.0, 1.0)])
    assert m is not None and m.latency == 3.0 and m.queues == ((1.0, x), (1.0, x))  # fast links pass the flow on
    m = slotted_model(f, [_fifo(1.0, x), _link(0.9), _fifo(1.0, x)])
    assert m is not None and m.queues == ((1.0, x), (0.9, None), (1.0, x))  # a slower link queues
    assert slotted_model(f, [_fifo(1.0, x)] * 5) is not None
    assert slotted_model(f, [_fifo(1.0, x), _link(0.8)]).queues == ((1.0, x), (0.8, None))  # a slower link
    assert slotted_model(f, [_link(1.0), _link(0.8)]) is None  # no cross traffic: the martingale bound
    assert slotted_model(f, [_fifo(1.0, x)]) is None  # one hop: the aggregate's martingale bound
    assert slotted_model(MMOO.discrete(0.8, 0.9, 0.3, n=2), [_fifo(1.0, x)] * 2) is None  # not i.i.d.
    assert slotted_model(PoissonArrival(0.3, 1.0), [FifoLeftover(ConstantRate(1.0), PoissonArrival(0.3, 1.0))] * 2) is None
    assert slotted_model(f, [_fifo(1.0, x), _fifo(1.0, _px(0.75))]) is None  # unstable
    assert slotted_violation(f, [_fifo(1.0, x)], 10) is None


def _simulate(flow, hops, t, seed):
    rng = np.random.default_rng(seed)
    arrivals = slot_samples(flow, t, rng)
    caps = [c for c, _ in hops]
    cross = [slot_samples(x, t, rng) if x is not None else None for _, x in hops]
    return slotted_fifo_tandem_delays(arrivals, caps, cross)[1000:]


def _services(hops):
    return [_fifo(c, x) if x is not None else _link(c) for c, x in hops]


CASES = [
    # (flow, [(rate, cross)], seed)
    (ExpIncrements(1 / 0.15), [(1.0, _px(0.15)), (1.0, _px(0.15))], 901),
    (ExpIncrements(1 / 0.3), [(1.0, _px(0.3)), (1.0, _px(0.3))], 902),
    (ExpIncrements(1 / 0.3), [(1.0, None), (1.0, _px(0.5))], 903),
    (ExpIncrements(1 / 0.2), [(1.2, _px(0.5)), (1.0, _px(0.3))], 904),
    (_px(0.25, 1.0, "det"), [(1.0, _px(0.3)), (1.0, _px(0.3, 1.0, "det"))], 905),
]


@pytest.mark.parametrize("flow,hops,seed", CASES)
def test_the_bound_is_valid_against_the_slotted_fifo_tandem(flow, hops, seed):
    delays = _simulate(flow, hops, 1_000_000, seed)
    services = _services(hops)
    for eps in (1e-2, 1e-3, 1e-4):
        b = slotted_delay(flow, services, eps)
        assert b is not None and b.method == BoundMethod.FIFO_SLOTTED and b.epsilon <= eps
        est = exceedance(delays, b.delay)
        assert est.lower_limit(0.99) <= eps, (eps, b.delay, est.p)
        # and not vacuous: within a factor 3 of the simulated quantile
        q = float(np.quantile(delays, 1 - eps))
        assert b.delay <= 3 * max(q, 1.0), (eps, b.delay, q)


def test_the_validity_check_catches_a_bound_that_ignores_three_fifths_of_the_second_hops_cross_traffic():
    flow, hops = ExpIncrements(1 / 0.3), [(1.0, None), (1.0, _px(0.5))]
    delays = _simulate(flow, hops, 1_000_000, 906)
    wrong = _services([(1.0, None), (1.0, _px(0.2))])  # 0.2 of hop 2's 0.5
    caught = False
    for eps in (1e-2, 1e-3):
        b = slotted_delay(flow, wrong, eps)
        assert b is not None
        caught |= exceedance(delays, b.delay).lower_limit(0.99) > eps
    assert caught


def test_delay_and_violation_agree_and_the_tandem_picks_the_slotted_bound():
    flow, services = ExpIncrements(1 / 0.15), [_fifo(1.0, _px(0.15))] * 2
    b = slotted_delay(flow, services, 1e-3)
    assert b is not None and float(b.delay).is_integer() and b.epsilon <= 1e-3 and b.theta > 0
    assert b.theta_unit == "1/slot"
    assert slotted_violation(flow, services, b.delay - 1).epsilon > 1e-3  # the smallest whole delay
    assert slotted_violation(flow, services, b.delay + 0.5).epsilon == b.epsilon  # floored to whole slots
    assert slotted_violation(flow, services, 2 * b.delay).epsilon < b.epsilon
    assert slotted_violation(flow, services, -0.5).epsilon == 1.0
    assert slotted_delay(flow, services, 1e-3) == b  # the same on every call
    best = delay_bound(flow, services, 1e-3)
    assert best == b
    assert violation_bound(flow, services, b.delay).epsilon <= 1e-3
    for bad in (0.0, 1.0, math.nan):
        with pytest.raises(InputError, match="epsilon"):
            slotted_delay(flow, services, bad)
    with pytest.raises(InputError, match="theta"):
        slotted_log_coefficient(slotted_model(flow, services), 0.0)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_the_bound_does_not_depend_on_the_unit_of_work(scale):
    """Bits scaled by ``scale`` (the flow, the cross sizes and the rates): the same delays."""
    flow = ExpIncrements(1 / (0.3 * scale))
    services = [_fifo(1.2 * scale, _px(0.4, scale)), _fifo(scale, _px(0.3, scale))]
    ref = [_fifo(1.2, _px(0.4)), _fifo(1.0, _px(0.3))]
    for eps in (1e-3, 1e-6):
        assert slotted_delay(flow, services, eps).delay == slotted_delay(ExpIncrements(1 / 0.3), ref, eps).delay


def test_near_saturation_the_bound_is_finite_and_large():
    flow, services = ExpIncrements(1 / 0.49), [_fifo(1.0, _px(0.49))] * 2
    b = slotted_delay(flow, services, 1e-3)
    assert b is not None and 100 < b.delay < math.inf
    v = slotted_violation(flow, services, 1e6)
    assert v is not None and 0.0 < v.epsilon < 1e-300


THREE_HOP_CASES = [
    # (flow, hops, seed, the largest ratio bound / simulated quantile expected; None: only valid)
    (ExpIncrements(1 / 0.3), [(1.0, _px(0.3))] * 3, 911, 4.0),
    (ExpIncrements(1 / 0.25), [(1.0, _px(0.3)), (0.8, None), (1.0, _px(0.3))], 912, 4.0),
    (ExpIncrements(1 / 0.3), [(1.0, _px(0.4)), (0.8, None)], 914, 4.0),  # FIFO, then a slower link
    (_px(0.15, 1.0, "exp"), [(1.0, _px(0.2, 1.0, "det"))] * 4, 913, None),  # loose (12x): the union per hop
]


@pytest.mark.parametrize("flow,hops,seed,ratio", THREE_HOP_CASES)
def test_the_general_recursion_is_valid_against_longer_slotted_fifo_tandems(flow, hops, seed, ratio):
    delays = _simulate(flow, hops, 1_000_000, seed)
    services = _services(hops)
    for eps in (1e-2, 1e-3, 1e-4):
        b = slotted_delay(flow, services, eps)
        assert b is not None and b.epsilon <= eps
        est = exceedance(delays, b.delay)
        assert est.lower_limit(0.99) <= eps, (eps, b.delay, est.p)
        if ratio is not None:
            assert b.delay <= ratio * max(float(np.quantile(delays, 1 - eps)), 1.0)


def _restarted_moments(flow, hops, n, a, al, b, reps, seed):
    """Monte Carlo of ``E exp(a F[1, n-1] + al a_n + b D(n))`` for the tandem restarted empty before
    slot 1: ``reps`` blocks of ``n`` flow slots, each followed by a gap whose last slots bring no
    cross work, so that the tandem is empty when the next block starts."""
    rng = np.random.default_rng(seed)
    gap, quiet = 200, 60
    block = n + gap
    t = reps * block
    arr = slot_samples(flow, t, rng).reshape(reps, block)
    arr[:, n:] = 0.0
    cross = []
    for _, x in hops:
        if x is None:
            cross.append(None)
            continue
        xs = slot_samples(x, t, rng).reshape(reps, block)
        xs[:, block - quiet:] = 0.0
        cross.append(xs.ravel())
    d = slotted_fifo_tandem_delays(arr.ravel(), [c for c, _ in hops], cross)
    idx = np.arange(reps) * block + (n - 1)
    idx = idx[idx < len(d)]
    f = arr[: len(idx), : n - 1].sum(axis=1)
    vals = np.exp(a * f + al * arr[: len(idx), n - 1] + b * d[idx])
    return float(vals.mean()), float(vals.std() / math.sqrt(len(vals)))


@pytest.mark.parametrize("hops", [[(1.0, _px(0.3))], [(1.0, _px(0.3)), (1.0, _px(0.3))], [(1.0, None), (1.0, _px(0.4))]])
@pytest.mark.parametrize("n", [1, 4, 12])
def test_a_restarted_tandems_moment_is_above_its_simulation(hops, n):
    """The moments J_j(n; a, al, b) the recursion is built from, against the restarted tandem itself."""
    from federation.calculus.fifo_slotted import _j_moment

    flow = ExpIncrements(1 / 0.3)
    model = slotted_model(flow, _services([*hops, (1.0, _px(0.1))]))  # a last hop to make a model
    assert model is not None
    for a, al, b in ((0.2, 0.4, 0.3), (0.5, 0.5, 0.15)):
        jm = _j_moment(model, len(hops), a, al, b, {})
        assert jm is not None
        mean, se = _restarted_moments(flow, hops, n, a, al, b, 20_000, 1000 + n)
        assert jm.logs[n] >= math.log(max(mean - 3 * se, 1e-300)), (a, al, b, math.exp(jm.logs[n]), mean)
        assert jm.logs[n] <= jm.log_a + jm.g * n + 1e-9  # the envelope bounds the grid


@pytest.mark.parametrize("kd", [-2.0, -1e-4, 0.0, 1e-4, 0.5, 40.0, 800.0])
def test_the_partial_sums_envelope_bounds_them_and_does_not_overflow(kd):
    """``sum_{i<n} e^{i kd} <= A e^{g n}`` for every ``n``, also where ``e^kd`` is past a float."""
    from federation.calculus.fifo_slotted import _log_partial_sums, _partial_sums_envelope

    log_a, g = _partial_sums_envelope(kd)
    n = np.arange(1, 200, dtype=float)
    assert np.all(_log_partial_sums(kd, n) <= log_a + g * n + 1e-9)
