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

from federation.calculus.arrivals import Aggregate, PoissonArrival
from federation.calculus.bound import BoundMethod
from federation.calculus.compose import delay_bound, violation_bound
from federation.calculus.fifo_recursion import (
    recursion_applies,
    recursion_delay,
    recursion_log_mgf,
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


def test_the_first_hop_is_the_exact_fifo_queue_and_a_later_hop_only_adds():
    """One FIFO hop: the sojourn is the aggregate's M/G/1 wait plus L/C, whose transform is exact
    (Pollaczek-Khinchine). A second hop as fast without cross traffic adds exactly L/C to every
    sojourn (packets leave the first hop L/C apart): its factor is at least e^{theta L/C}."""
    flow, x = PoissonArrival(0.3, 1.0), PoissonArrival(0.4, 1.0, "exp")
    one = recursion_model(flow, [FifoLeftover(ConstantRate(1.0), x)])
    two = recursion_model(flow, [FifoLeftover(ConstantRate(1.0), x), ConstantRate(1.0)])
    assert one is not None and two is not None
    agg = Aggregate((flow, x))
    for theta in (0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7):
        den = theta - agg.kappa(theta)
        if den <= 0:
            assert math.isinf(recursion_log_mgf(one, theta))
            break
        exact = math.log(0.3) + math.log(theta) - math.log(den) + theta  # (1 - rho) theta / (theta - kappa) e^{theta L/C}
        assert recursion_log_mgf(one, theta) == pytest.approx(exact, rel=1e-12)
        assert recursion_log_mgf(two, theta) >= exact + theta
    else:
        raise AssertionError("no theta reached the aggregate's root")


def test_a_finer_grid_never_raises_the_moment():
    flow = PoissonArrival(0.3, 1.0)
    m = recursion_model(flow, _services([(1.0, 0.3, "det"), (1.0, 0.3, "exp"), (1.2, 0, "det")]))
    assert m is not None
    coarse = replace(m, cells=256)
    for theta in (0.05, 0.1, 0.2, 0.3):
        fine, rough = recursion_log_mgf(m, theta), recursion_log_mgf(coarse, theta)
        if math.isfinite(rough):
            assert fine <= rough + 1e-12, (theta, fine, rough)


def test_delay_and_violation_agree_and_the_tandem_picks_the_recursion():
    flow, services = PoissonArrival(0.3, 1.0), _services([(1.0, 0.3, "det")] * 2)
    d = recursion_delay(flow, services, 1e-3)
    assert d is not None and d.method == BoundMethod.FIFO_RECURSION and d.epsilon == 1e-3 and d.theta > 0
    v = recursion_violation(flow, services, d.delay)
    assert v is not None and v.epsilon <= 1e-3 * (1 + 1e-9)
    assert recursion_violation(flow, services, 1.5 * d.delay).epsilon < v.epsilon
    best = delay_bound(flow, services, 1e-3)
    assert best.method == BoundMethod.FIFO_RECURSION and best.delay == d.delay
    assert violation_bound(flow, services, best.delay).epsilon <= 1e-3 * (1 + 1e-9)
    # below a packet's own transmissions nothing is promised
    assert recursion_violation(flow, services, 1.9).epsilon == 1.0
    for bad in (0.0, 1.0, -1e-3, math.nan):
        with pytest.raises(InputError, match="epsilon"):
            recursion_delay(flow, services, bad)


CASES = [
    # (flow packets/s, [(rate, cross packets/s, cross size)], seed)
    (0.3, [(1.0, 0.3, "det")] * 2, 701),
    (0.3, [(1.0, 0.3, "exp")] * 3, 702),
    (0.3, [(1.0, 0.4, "exp"), (1.0, 0, "det"), (1.5, 0, "det")], 703),
    (0.2, [(1.0, 0.5, "exp"), (1.25, 0.3, "det"), (1.0, 0.4, "det")], 704),
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
