"""The baseline: the standard MGF tandem bound as published SNC toolboxes compute it.

Kept to measure what the exact composition sum of :mod:`federation.calculus.tandem` gains
(``benchmarks/bench_tightness.py``, ``tests/test_bounds_valid.py``); never used to admit a
tenant.

References
----------
S. Bondorf, P. Nikolaus, J. Schmitt, the DISCO SNC MGF toolbox; M. Fidler, IWQoS 2006.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from federation.calculus.arrivals import Arrival
from federation.calculus.bound import Bound, BoundMethod
from federation.calculus.roots import invert_delay
from federation.calculus.services import Service
from federation.calculus.tandem import check_stable
from federation.errors import NoFiniteBound

__all__ = ["baseline_tandem_violation", "baseline_tandem_delay"]


def _baseline_log(arrival: Arrival, services: Sequence[Service], theta: float, d: float, delta: float) -> float:
    """Log of the textbook discrete-time tandem bound (DISCO SNC MGF toolbox style).

    Every hop (deterministic or not) is an MGF server ``(R_h(theta), sigma_h(theta))``; leftover
    service by subtraction; the convolution of two servers is ``(min R, sigma_1 + sigma_2 -
    log(1 - exp(-theta*|R_1 - R_2|))/theta)``, with a slack ``delta`` subtracted from the larger
    rate when the rates are equal; the single-hop delay bound is then
    ``exp(theta*(sigma_A + sigma_S) - theta*R_S*d) / (1 - exp(-theta*(R_S - rho_A)))``.
    In continuous time the same formula is used with the slot replaced by the grid step 1
    (the toolboxes are discrete-time).
    """
    k = arrival.kappa(theta)
    if not math.isfinite(k):
        return math.inf
    g_net = None
    d_net = 0.0
    for s in services:
        g, dd = s.gamma(theta), s.delta(theta)
        if not g > 0:  # no (leftover) service at this theta: no finite bound here
            return math.inf
        if g_net is None:
            g_net, d_net = g, dd
            continue
        lo_g, hi_g = min(g_net, g), max(g_net, g)
        if hi_g - lo_g < theta * delta:
            lo_g = hi_g - theta * delta  # slack: the net rate is min R - delta
        if not hi_g - lo_g > 0:  # the slack was lost to rounding (rates far above theta*delta)
            return math.inf
        d_net = d_net + dd - math.log(-math.expm1(-(hi_g - lo_g)))
        g_net = lo_g
    assert g_net is not None
    if g_net - k <= 0:
        return math.inf
    return arrival.beta(theta) + d_net - g_net * d - math.log(-math.expm1(-(g_net - k)))


def baseline_tandem_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound:
    """The standard MGF tandem bound (the published-toolbox baseline), optimised over theta and slack.

    The virtual delay is ``delay`` minus the latencies; in discrete time it is floored to slots.
    """
    lat = sum(s.latency for s in services)
    d = delay - lat
    if arrival.time == "discrete":
        d = math.floor(d + 1e-9)
    if d < 0:
        return Bound(delay, 1.0, math.nan, BoundMethod.MGF_BASELINE)
    check_stable(arrival, services)
    cap = min([arrival.theta_max, *(s.theta_max for s in services)])
    scale = arrival.packet_size
    hi = min(cap * (1 - 1e-9), 1e4 / scale)
    thetas = np.exp(np.linspace(math.log(hi * 1e-7), math.log(hi), 60))
    rate = max(arrival.mean_rate, 1e-300)
    best, best_th = math.inf, math.nan
    for th in thetas:
        for frac in (1e-3, 1e-2, 0.05, 0.2):
            v = _baseline_log(arrival, services, float(th), d, frac * rate)
            if v < best:
                best, best_th = v, float(th)
    if not math.isfinite(best):
        raise NoFiniteBound("baseline: no theta with a finite bound")
    return Bound(delay, float(min(1.0, math.exp(min(best, 0.0)))), best_th, BoundMethod.MGF_BASELINE)


def baseline_tandem_delay(arrival: Arrival, services: Sequence[Service], epsilon: float) -> Bound:
    """Smallest delay with the baseline bound ``<= epsilon``."""
    lat = sum(s.latency for s in services)
    discrete = arrival.time == "discrete"

    def p(dv: float) -> float:
        return baseline_tandem_violation(arrival, services, lat + dv).epsilon

    d0 = max(arrival.packet_size / max(min(s.mean_rate for s in services), 1e-300), 1e-9)
    dv = invert_delay(p, epsilon, 0.0, d0 * 10, discrete=discrete, rtol=1e-3)
    return Bound(dv + lat, p(dv), math.nan, BoundMethod.MGF_BASELINE)

