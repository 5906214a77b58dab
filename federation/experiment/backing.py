"""The calculus of a granted contract: its composed bound curve, and whether each sub-budget is backed.

:func:`bound_curve` is ``x -> P(D > x)``, the composed bound (:func:`federation.calculus.compose.
path_violation_probability`) of a tenant's path at its reserved rates, what the broker admitted it on.

A contract's per-domain budgets ``(d_i, eps_i)`` sum to at most the contract's ``(d, eps)``:
where the deadline leaves room each is the stand-alone bound of the declared traffic through its
domain (:func:`federation.calculus.compose.backed_split`), else a split of the composed
end-to-end bound (:func:`federation.calculus.compose.split_bound`), which is not a per-domain
guarantee: the end-to-end bound pays the burst once, each domain alone does not. Either way
:func:`domain_bounds` gives, for each domain of a path at its granted ``d_i``, the
smallest per-domain bound the MGF calculus proves for the tenant's traffic,

.. math::

    \\varepsilon_i^{\\mathrm{bound}}(d_i) = \\min_{0 < \\theta < \\theta_{\\max}} \\min\\Big(1,\\
        M_i(\\theta)\\, e^{-\\theta R_i(\\theta)\\,(d_i - T_i)}\\Big),

the single-hop tail of :func:`federation.calculus.budget.exponential_tails` (the flow's burst
grown by the output bound of the domains before it, at the same theta; valid at every theta, so
the minimum over theta is valid). A budget with ``eps_i_bound <= eps_i`` is *backed*: a domain
that behaves as its envelope says meets it. One that is not backed may be missed by an honest
domain -- the run's report says which, so a VIOLATING verdict on an unbacked budget is read
with that in mind.

Units: s, bits, bits/s; theta in 1/bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from federation.calculus.arrivals import Arrival
from federation.calculus.budget import hop_bounds
from federation.calculus.compose import DomainSlice, packetized, path_violation_probability, slice_services
from federation.errors import TrefedError

__all__ = ["bound_curve", "domain_bounds", "alone_bounds", "CURVE_POINTS"]

#: Points of a bound curve.
CURVE_POINTS = 40


def domain_bounds(path: Sequence[DomainSlice], traffic: Arrival, delays: Sequence[float]) -> tuple[float, ...]:
    """Per domain of ``path``, the calculus' bound on ``P(D_i > delays[i])`` (see the module docstring):
    :func:`federation.calculus.budget.hop_bounds` of the path's packetized services."""
    return hop_bounds(traffic, packetized(traffic, slice_services(path, traffic)), delays)


def alone_bounds(path: Sequence[DomainSlice], traffic: Arrival, delays: Sequence[float]) -> tuple[float, ...]:
    """Per domain of ``path``, the bound on ``P(D_i > delays[i])`` of ``traffic`` (as declared)
    through that domain alone (:func:`federation.calculus.compose.path_violation_probability` of the
    one slice; a packet's own transmission included for Poisson packets); 1.0 where none is finite.

    Exact at the first domain; for a later one it assumes the traffic reaches it as declared (see
    :func:`federation.calculus.compose.backed_split`, Notes).
    """
    out = []
    for s, d in zip(path, delays):
        try:
            out.append(float(min(1.0, path_violation_probability([s], traffic, delay=float(d)))))
        except TrefedError:
            out.append(1.0)
    return tuple(out)


def bound_curve(path: Sequence[DomainSlice], traffic: Arrival, delay_bound_s: float,
                points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(x, p)``: the composed bound ``P(D > x) <= p`` (s) from the path's constant latencies to 2.5
    times the contract's queueing allowance beyond them (``delay_bound_s`` is the contract's ``d``);
    ``p = 1`` where no bound is finite."""
    fixed = sum(s.latency + s.propagation_delay for s in path)
    xs = np.linspace(fixed, fixed + 2.5 * max(delay_bound_s - fixed, 1e-6), points)[1:]
    ps = []
    for x in xs:
        try:
            ps.append(min(1.0, path_violation_probability(path, traffic, delay=float(x))))
        except TrefedError:
            ps.append(1.0)
    return xs, np.asarray(ps)
