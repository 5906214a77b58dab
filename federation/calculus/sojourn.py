"""A packet's own share of its delay: from a virtual-delay bound to a bound on the packet's sojourn.

The fluid methods (:mod:`~federation.calculus.tandem`, :mod:`~federation.calculus.martingale`,
:mod:`~federation.calculus.fifo`) bound the *virtual delay* ``V(t)`` at a time-stationary ``t``:
the time until the work that arrived before ``t`` has left. What the data plane and the auditor
measure is a packet's *sojourn* ``S``, from its arrival to the departure of its last bit from the
last hop, its own transmission included. For Poisson packets in continuous time the two differ by
the packet itself: an arrival sees the time-stationary state (PASTA), and its own size ``L`` is
independent of it. Elsewhere (token buckets: their envelope bounds every interval, the arrival
instants' included; fluid traffic; discrete time) nothing is added.

Notes
-----
A method whose bound is a union of Chernoff bounds in ``theta`` (1/bit) over the intervals
``(s, t]`` of the flow's arrivals (the MGF tandem and FIFO bounds) gives, for the arrivals with
the packet's own ``L`` bits added at ``t``,

.. math::

    P(S > d) \\le E[e^{\\theta L}] \\, \\varepsilon_V(d; \\theta)

at the same ``theta`` (every term gains the factor; the term ``s = t`` keeps the bound at 1
below the packet's own transmission time). ``E[e^{theta L}]`` is ``e^{theta L}`` for a fixed
size, ``1/(1 - theta m)`` for an exponential size of mean ``m``. The martingale bound
``P(Q > x) <= H e^{-a x}`` holds for ``x >= 0`` only (``Q >= 0``), so with the packet's own
service time ``Y`` (``L/C`` at the bottleneck ``C``, or ``Exp(mu)`` at an exponential-service hop)

.. math::

    P(S > d) \\le P(Y > x) + H e^{-a x} E[e^{a Y}; Y \\le x], \\qquad x = d - T,

exact for M/M/1 (``e^{-(mu-lambda) x}``); the FIFO martingale bound is the aggregate's at the
FIFO hop, the same with ``C`` that hop's rate. The blind-multiplexing martingale bound (a
backlog plus future cross work) takes the packet's size itself
(:func:`~federation.calculus.martingale.priority_violation` with ``sojourn=True``). The max-plus and product-form bounds of :mod:`~federation.calculus.packet`
bound the sojourn already.

Packetised on-off sources (:class:`~federation.calculus.arrivals.MMOO` with ``packet > 0``) differ
from their fluid model twice: each source's packets run ahead of its fluid by at most one packet
(``A_p(s, t] <= A(s, t] + b``, ``b`` = :attr:`~federation.calculus.arrivals.MMOO.packet_burst`, the
packet's own bits included), and packets arrive only while their source is on, so a packet does
not see the time-stationary queue. A packet's sojourn exceeds ``d`` only if the fluid queue plus
``b`` does at its arrival, and with ``r(X)`` the packet rate in the chain's state ``X``,
``P^0(E) = E[r(X_t) 1_{E_t}] / E[r(X_t)] <= P(E_t) * max r / E r = P(E_t) / p_on`` for any
stationary event ``E_t``. So a union bound in ``theta`` gains the factor ``e^{theta b} / p_on``;
the martingale bound takes the packet's (Palm) law of the state and the shift ``b`` itself
(:func:`~federation.calculus.martingale.martingale_model`).

A fluid bound covers the store-and-forward packet tandem only with the packetizer latencies of
:func:`~federation.calculus.compose.packetized`, which need a largest packet: for exponential
sizes the fluid methods hold on one hop only (where the fluid and the packet queue coincide).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from federation.calculus.arrivals import MMOO, Arrival, PoissonArrival
from federation.calculus.bound import (
    Bound,
    BoundMethod,
    FifoDetail,
    MartingaleDetail,
    PriorityDetail,
    TandemDetail,
)
from federation.calculus.services import ConstantRate, ExpService, Leftover, Service

__all__ = ["per_packet", "packetised_onoff", "packet_view", "fluid_holds", "sojourn_of", "own_log_mgf"]

#: Methods whose bound is already on the packet's sojourn (or holds at every instant).
_ALREADY = frozenset({
    BoundMethod.DETERMINISTIC, BoundMethod.MGF_MAXPLUS, BoundMethod.PRODUCT_FORM, BoundMethod.FIFO_RECURSION})


def per_packet(arrival: Arrival) -> bool:
    """Whether a delay of this traffic is a Poisson packet's sojourn (continuous-time Poisson packets)."""
    return isinstance(arrival, PoissonArrival) and arrival.time == "continuous"


def packetised_onoff(arrival: Arrival) -> bool:
    """Whether the traffic is on-off sources sending whole packets (``MMOO.packet > 0``)."""
    return isinstance(arrival, MMOO) and arrival.packet > 0


def packet_view(arrival: Arrival) -> bool:
    """Whether a delay bound of this traffic must be a packet's (Poisson or packetised on-off packets)."""
    return per_packet(arrival) or packetised_onoff(arrival)


def fluid_holds(arrival: Arrival, services: Sequence[Service]) -> bool:
    """Whether the fluid methods bound the packet system: always, except random packet sizes
    through more than one hop or through a hop that is not constant-rate (no largest packet)."""
    if not (per_packet(arrival) and isinstance(arrival, PoissonArrival) and arrival.size != "det"):
        return True
    if len(services) != 1:
        return False
    s = services[0]
    return isinstance(s, ConstantRate) or (isinstance(s, Leftover) and isinstance(s.base, ConstantRate))


def sojourn_of(arrival: Arrival, services: Sequence[Service], b: Bound) -> Bound | None:
    """The bound on a packet's sojourn at ``b.delay`` from ``b``, computed on ``services`` (see the module Notes).

    ``services`` are the ones ``b`` was computed on (for the fluid methods, with the packetizer
    latencies). ``b`` unchanged when it bounds the sojourn already or the traffic is not
    per-packet (:func:`per_packet`); ``None`` when ``b`` cannot be converted (no ``theta``, a
    blind-multiplexing martingale bound of the virtual delay, or the packet-size MGF is infinite
    at ``theta``).
    """
    if b.method in _ALREADY or b.epsilon >= 1.0:
        return b
    if packetised_onoff(arrival):
        return _onoff_sojourn(arrival, services, b)
    if not per_packet(arrival):
        return b
    assert isinstance(arrival, PoissonArrival)
    detail = b.detail
    if b.method in (BoundMethod.MARTINGALE, BoundMethod.MARTINGALE_FIFO):
        eps = _martingale_sojourn(arrival, services, b)
    elif b.method == BoundMethod.MARTINGALE_SP:
        return b if isinstance(detail, PriorityDetail) and detail.sojourn else None
    elif math.isfinite(b.theta) and b.theta > 0:
        log_factor = arrival.log_jump_mgf(b.theta)
        if not math.isfinite(log_factor):
            return None
        eps = b.epsilon * math.exp(log_factor)
        if isinstance(detail, (TandemDetail, FifoDetail)):  # the unclipped log, converted too
            detail = replace(detail, log_epsilon=detail.log_epsilon + log_factor)
    else:
        return None
    if eps is None:
        return None
    return Bound(b.delay, float(min(1.0, eps)), b.theta, b.method, detail)


def own_log_mgf(arrival: Arrival, theta: float) -> float:
    """The log factor a union bound in ``theta`` (1/bit) gains for a packet's sojourn: ``log E[exp(theta L)]``
    of a Poisson packet's own size (``inf`` past the pole), ``theta b - log p_on`` for packetised on-off
    sources (module Notes), 0 otherwise."""
    if packetised_onoff(arrival):
        assert isinstance(arrival, MMOO)
        return theta * arrival.packet_burst - math.log(arrival.p_on)
    if not per_packet(arrival):
        return 0.0
    assert isinstance(arrival, PoissonArrival)
    return arrival.log_jump_mgf(theta)


def _onoff_sojourn(arrival: Arrival, services: Sequence[Service], b: Bound) -> Bound | None:
    """A packetised on-off flow's bound from ``b``: the martingale one is a packet's already, a union
    bound in ``theta`` gains ``e^{theta b} / p_on`` (module Notes), the MGF tandem one with ``theta``
    optimised again with the factor in (``b``'s theta is the fluid bound's best, where the factor can
    be huge); any other is dropped."""
    if b.method == BoundMethod.MARTINGALE:
        return b
    if b.method in (BoundMethod.MARTINGALE_FIFO, BoundMethod.MARTINGALE_SP) or not (
            math.isfinite(b.theta) and b.theta > 0):
        return None
    detail = b.detail
    if isinstance(detail, (TandemDetail, FifoDetail)):
        log_eps = detail.log_epsilon  # unclipped: an epsilon that underflowed to 0 keeps its log
    elif b.epsilon > 0:
        log_eps = math.log(b.epsilon)
    else:
        return None
    best, theta = log_eps + own_log_mgf(arrival, b.theta), b.theta
    if b.method == BoundMethod.MGF_TANDEM:
        from federation.calculus.roots import minimize_scalar_bounded
        from federation.calculus.tandem import tandem_log_at

        def log_at(x: float) -> float:
            th = math.exp(x)
            v = tandem_log_at(arrival, services, b.delay, th) + own_log_mgf(arrival, th)
            return v if math.isfinite(v) else 1e300  # a finite stand-in: the minimiser subtracts values

        m = minimize_scalar_bounded(log_at, (math.log(b.theta) - 30.0, math.log(b.theta) + 1.0), xatol=1e-4)
        if m.fun < best:
            best, theta = float(m.fun), math.exp(float(m.x))
    if isinstance(detail, (TandemDetail, FifoDetail)):
        detail = replace(detail, log_epsilon=best)
    return Bound(b.delay, float(math.exp(min(0.0, best))), theta, b.method, detail)


def _martingale_sojourn(arrival: PoissonArrival, services: Sequence[Service], b: Bound) -> float | None:
    """``P(Y > x) + H e^{-a x} E[e^{a Y}; Y <= x]`` for the martingale bound ``b`` (Notes)."""
    detail = b.detail
    if not isinstance(detail, MartingaleDetail) or not detail.decay > 0:
        return None
    h, a = detail.prefactor, detail.decay
    x = b.delay - sum(s.latency for s in services)
    if x < 0:
        return 1.0
    first = services[0]
    if len(services) == 1 and isinstance(first, ExpService):
        nu = first.completion_rate  # Y ~ Exp(nu): the packet's own service time
    else:
        # the queue the martingale bounds: a FIFO hop's (its base rate), else the bottleneck link's
        c = first.base.rate if isinstance(first, Leftover) and isinstance(first.base, ConstantRate) else min(
            s.rate for s in services if isinstance(s, ConstantRate))
        if arrival.size == "det":
            y = arrival.mean_size / c
            return 1.0 if y > x else h * math.exp(-a * (x - y))
        nu = c / arrival.mean_size  # Y = L/C ~ Exp(C/m)
    if not a < nu:
        return None
    # P(Y > x) + h e^{-a x} * nu/(nu - a) * (1 - e^{-(nu - a) x})
    return math.exp(-nu * x) + h * nu / (nu - a) * (math.exp(-a * x) - math.exp(-nu * x))
