"""Two slotted FIFO hops with cross traffic: a delay bound from the second hop's busy periods.

:func:`slotted_violation` and :func:`slotted_delay` bound the delay (whole slots) of a slot's
work in discrete time through two constant-rate hops served FIFO (cut-through: work can leave in
the slot it arrives; in a slot the cross traffic goes before the flow, the worst order FIFO
allows), the second shared with independent i.i.d. cross traffic, the first alone or shared too
(:class:`~federation.calculus.services.FifoLeftover`), then any links without cross traffic at
least as fast as the hop before them. The flow is i.i.d. per slot (exponential increments, or
compound Poisson packets per slot). This is the model of
:func:`federation.calculus.reference.slotted_fifo_tandem_delays`. Elsewhere the functions return
``None``.

Like :mod:`~federation.calculus.fifo_recursion` (its continuous-time, packet counterpart), the
bound keeps at the second hop the exponent of the hop's aggregate over the flow's own slots
instead of charging the cross traffic over the whole delay window, as the residual-service
bounds of :mod:`~federation.calculus.fifo` do.

Notes
-----
Units: slots and bits; ``theta`` in 1/slot; ``c_k`` the hops' rates (bits/slot). ``a_t`` is the
flow's work of slot ``t`` (``F(r, 0] = sum_{r < t <= 0} a_t``), ``x^k_t`` hop ``k``'s cross work;
``G_k(t)`` the slot in which the last bit of slot ``t``'s work leaves hop ``k`` (``G_0(t) = t``);
the delay of slot ``0`` is ``G_2(0)``.

**One hop, one bit.** A bit entering hop ``k`` in slot ``tau`` with ``P`` bits of the hop's
input ahead of it (itself included) leaves in slot ``tau + ceil(Q)^+``, ``Q = max_{s < tau} [(P -
I_k(s))/c_k - (tau - s)]`` (``I_k`` the hop's cumulative input at slot ends): the departures are
``D(T) = min_{s <= T} [I_k(s) + c_k (T - s)]``. At the first hop this is ``G_1(0) =
ceil(W_1(0)/c_1)``, ``W_1`` the aggregate's Lindley workload at slot ends, and the martingale
bound of :func:`~federation.calculus.martingale.martingale_model` gives ``P(G_1(0) > j) <= H_1
e^{-u_1 j}`` for integers ``j``: ``beta_1(theta) = H_1`` for ``theta <= u_1``.

**Sample path at hop 2.** Let ``s*`` attain ``Q`` for the last bit of slot ``0`` (``tau =
G_1(0)``) and ``rho = max{r: G_1(r) <= s*}`` (``rho < 0``): the flow ahead of the bit that left
hop 1 after ``s*`` is at most ``F(rho, 0]``, and ``s* < G_1(rho + 1)``. As ``phi(t) = t - 1 +
V(t - 1) + X(t - 1, tau]/c_2`` is non-decreasing (``V`` the cross traffic's own backlog at hop 2
in slots, ``V(t) = (V(t-1) + x_t/c_2 - 1)^+``, ``X`` its work), ``s* + X(s*, tau]/c_2 <=
phi(G_1(rho + 1))``. **Restart** (by induction over the hops: a queue whose server first serves
the work up to a bit for ``w`` slots delays every later departure by at most ``w``, and arrivals
no later give departures no later): ``G_1(t) <= G_1(rho) + E^R(t) - rho`` for ``t > rho``, ``E^R``
the exit slots in the queue ``R`` restarted empty at the end of slot ``rho``, fed the flow from
slot ``rho + 1`` and fresh cross traffic. So, with ``D^R_first`` and ``D^R_last`` the delays of
``R``'s first slot ``-m = rho + 1`` and of slot ``0`` in ``R`` and ``V(t') <= V(t) + X(t, t']/c``,

.. math::

    \\tau + Q \\le G_1(\\rho) + D^R_{first} + V(G_1(\\rho)) + \\big(F(\\rho, 0] +
        X(G_1(\\rho), G_1(\\rho) + D^R_{last} + m + 1]\\big) / c_2 .

``G_1(rho)`` has the law of ``G_1(0)``; ``V(G_1(rho))`` is stationary and independent of it (hop
2's cross traffic is independent of hop 1); the window's cross work comes after it; ``R`` is
independent of all three. With ``G_2(0) = max(tau, tau + ceil(Q))``, ``P(G_1 > y) <= beta_1
e^{theta} e^{-theta y}`` for real ``y`` and a union over ``rho = -m - 1``, for integers ``j``

.. math::

    P(G_2(0) > j) \\le \\beta_1 e^{-\\theta j} \\Big[ 1 + M_2(\\theta) e^{\\delta} \\sum_{m \\ge 0}
        e^{(\\delta - \\theta) m} K(m) \\Big], \\qquad K(m) = E\\, e^{\\theta D^R_{first} +
        \\alpha F(\\rho, 0] + \\delta D^R_{last}},

``alpha = theta/c_2``, ``delta = log E e^{theta x^2/c_2}`` and ``M_2 = E e^{theta V} <= 1 + theta
H_2/(u_2 - theta)`` from the martingale bound on ``V``.

**The restarted queue.** ``D^R_first <= (a_{-m} + x^1_{-m})/c_1``, ``D^R_last <= W^R(0)/c_1 +
1`` and ``W^R(0) <= W'(0) + a_{-m} + x^1_{-m}``, ``W'`` the queue restarted one slot later. Under
the tilt ``e^{alpha a_t}`` of its ``m`` slots (the flow stays i.i.d.: exponential increments of
rate ``lambda - alpha``, or compound Poisson with tilted rate and sizes) ``W'(0)`` is at most the
stationary workload of the tilted aggregate (martingale bound, where it is stable) and at most
``max_{i <= m}`` of its partial sums (a union over them), so

.. math::

    K(m) \\le e^{\\delta + \\kappa_a(\\alpha + g) + \\kappa_1(g)} e^{m \\kappa_a(\\alpha)}
        \\min\\Big(1 + \\frac{\\delta \\tilde H}{\\tilde u - \\delta}, \\sum_{i=0}^{m} e^{i \\tilde
        \\kappa(\\delta / c_1)}\\Big), \\qquad g = (\\theta + \\delta)/c_1,

``tilde kappa(s) = kappa_a(alpha + s) - kappa_a(alpha) + kappa_1(s) - s c_1``. The sum over ``m``
converges when ``theta > delta + kappa_a(alpha)``, i.e. below the Lundberg root of hop 2's
aggregate: ``P(D > T + j) <= beta_2(theta) e^{-theta j}``, ``T`` the latencies, minimised over
``theta``.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federation.calculus.arrivals import Arrival, ExpIncrements, PoissonArrival, aggregate
from federation.calculus.bound import Bound, BoundMethod
from federation.calculus.martingale import martingale_model
from federation.calculus.services import ConstantRate, FifoLeftover, Service
from federation.errors import InputError

__all__ = ["SlottedModel", "slotted_model", "slotted_log_coefficient", "slotted_violation", "slotted_delay"]

#: Terms of the sum over the restarted queue's length evaluated one by one (the rest by its envelope).
TERMS = 4096
#: The theta grid of a model: fractions of its largest theta.
_FRACTIONS = (*np.linspace(0.01, 0.99, 99).tolist(), 0.995, 0.999)


@dataclass(frozen=True)
class SlottedModel:
    """Two slotted FIFO hops the bound applies to (module Notes); build it with :func:`slotted_model`.

    Attributes
    ----------
    flow : Arrival
        The flow: :class:`ExpIncrements` or a discrete :class:`PoissonArrival` (i.i.d. per slot).
    c1, c2 : float
        The two hops' rates (bits/slot).
    cross1 : Arrival or None
        Hop 1's i.i.d. cross traffic (``None``: none).
    cross2 : Arrival
        Hop 2's i.i.d. cross traffic.
    latency : float
        The hops' constant latencies, summed (slots).
    """

    flow: Arrival
    c1: float
    cross1: Arrival | None
    c2: float
    cross2: Arrival
    latency: float = 0.0


def _tiltable(a: Arrival) -> bool:
    return isinstance(a, ExpIncrements) or (isinstance(a, PoissonArrival) and a.time == "discrete")


def _tilt(a: Arrival, s: float) -> Arrival | None:
    """The per-slot law of ``a`` tilted by ``e^{s a}`` (the same family), or ``None`` past its pole."""
    if s == 0.0:
        return a
    if isinstance(a, ExpIncrements):
        return ExpIncrements(a.lamb - s) if s < a.lamb else None
    assert isinstance(a, PoissonArrival)
    if a.size == "det":
        return PoissonArrival(a.rate * math.exp(s * a.mean_size), a.mean_size, "det", time="discrete")
    x = s * a.mean_size
    return PoissonArrival(a.rate / (1.0 - x), a.mean_size / (1.0 - x), "exp", time="discrete") if x < 1.0 else None


def _iid(x: Arrival) -> bool:
    return x.time == "discrete" and x.iid and not x.deterministic


def slotted_model(arrival: Arrival, services: Sequence[Service]) -> SlottedModel | None:
    """The model of ``arrival`` through ``services``, or ``None`` when the bound does not apply.

    It applies in discrete time to an i.i.d. flow (exponential increments, compound Poisson)
    through a first hop (:class:`ConstantRate`, or :class:`FifoLeftover` of one with i.i.d. cross
    traffic), a second hop that serves i.i.d. cross traffic FIFO, and constant-rate links without
    cross traffic, each at least as fast as the hop before it (they add their latencies only);
    every hop stable.
    """
    if arrival.time != "discrete" or not _tiltable(arrival):
        return None
    queues: list[tuple[float, Arrival | None]] = []
    latency = 0.0
    for s in services:
        if isinstance(s, FifoLeftover) and type(s.base) is ConstantRate and _iid(s.cross):
            c, x = s.base.rate, s.cross
        elif type(s) is ConstantRate:
            c, x = s.rate, None
        else:
            return None
        if s.time != "discrete" or (x is not None and x.time != "discrete"):
            return None
        latency += s.latency
        if queues and x is None and c >= queues[-1][0]:
            continue  # passes the flow on unchanged: its output is at most the previous rate per slot
        queues.append((c, x))
    if len(queues) != 2 or queues[1][1] is None:
        return None
    (c1, x1), (c2, x2) = queues
    assert x2 is not None
    for c, x in queues:
        if not arrival.mean_rate + (x.mean_rate if x is not None else 0.0) < c:
            return None
    return SlottedModel(arrival, c1, x1, c2, x2, latency)


def _kappa(a: Arrival | None, s: float) -> float:
    """``log E e^{s a}`` per slot (``inf`` past the pole)."""
    if a is None or s == 0.0:
        return 0.0
    return a.kappa(s) if s < a.theta_max else math.inf


def _queue(parts: Sequence[Arrival | None], c: float) -> tuple[float, float] | None:
    """``(H, u)`` with ``P(W/c > v) <= H e^{-u v}`` (``v`` slots) for the stationary workload of the
    parts' aggregate at rate ``c``; ``None`` if unstable."""
    ps = [p for p in parts if p is not None]
    agg = aggregate(ps)
    if not agg.mean_rate < c:
        return None
    m = martingale_model(agg, [ConstantRate(c, time="discrete")])
    if m is None:  # pragma: no cover - i.i.d. parts below the rate always have one
        return None
    return min(1.0, m.prefactor), m.decay


def _log_mgf(q: tuple[float, float] | None, b: float) -> float:
    """``log E e^{b V}`` for ``P(V > v) <= H e^{-u v}``, ``V >= 0`` (``inf`` from ``u`` on)."""
    if q is None:
        return math.inf
    h, u = q
    if b <= 0.0:
        return 0.0
    return math.log1p(b * h / (u - b)) if b < u else math.inf


@functools.lru_cache(maxsize=64)
def _first_hop(m: SlottedModel) -> tuple[float, float]:
    q = _queue([m.flow, m.cross1], m.c1)
    assert q is not None  # stable: checked by slotted_model
    return q


@functools.lru_cache(maxsize=8192)
def _log_coefficient(m: SlottedModel, theta: float) -> float:
    h1, u1 = _first_hop(m)
    if not theta <= u1:
        return math.inf
    log_b1 = math.log(h1) if h1 > 0 else -math.inf
    delta = _kappa(m.cross2, theta / m.c2)
    log_m2 = _log_mgf(_queue([m.cross2], m.c2), theta)
    alpha = theta / m.c2
    ka = _kappa(m.flow, alpha)
    rate = delta - theta + ka  # per slot of the restarted queue: must be < 0
    g = (theta + delta) / m.c1
    first = _kappa(m.flow, alpha + g) + _kappa(m.cross1, g)
    if not (math.isfinite(delta) and math.isfinite(log_m2) and rate < 0 and math.isfinite(first)):
        return math.inf
    ft = _tilt(m.flow, alpha)
    stat = _log_mgf(_queue([ft, m.cross1], m.c1), delta) if ft is not None else math.inf
    s = delta / m.c1
    kd = _kappa(m.flow, alpha + s) - ka + _kappa(m.cross1, s) - s * m.c1
    ms = np.arange(TERMS, dtype=float)
    if math.isfinite(kd):  # the union over the partial sums, capped by the stationary bound
        restarted = np.minimum(np.logaddexp.accumulate(ms * kd), stat)
    else:
        restarted = np.full(TERMS, stat)
    if not math.isfinite(restarted[-1]) and not (math.isfinite(kd) and rate + max(kd, 0.0) < 0):
        return math.inf
    total = float(np.logaddexp.reduce(rate * ms + restarted))
    # beyond TERMS: restarted <= stat, or grows at most by max(kd, 0) per slot
    growth = rate if math.isfinite(stat) else rate + max(kd, 0.0)
    last = stat if math.isfinite(stat) else float(restarted[-1]) + max(kd, 0.0)
    total = float(np.logaddexp(total, rate * TERMS + last - math.log(-math.expm1(growth))))
    log_k = delta + first  # e^delta: the last delay's ceiling
    return log_b1 + float(np.logaddexp(0.0, log_m2 + delta + log_k + total))


def slotted_log_coefficient(model: SlottedModel, theta: float) -> float:
    """``log beta_2(theta)`` with ``P(D - T > j) <= beta_2 e^{-theta j}`` for integers ``j`` (module
    Notes); ``theta`` in 1/slot; ``inf`` where there is none."""
    if not theta > 0:
        raise InputError(f"theta(={theta!r}) must be > 0")
    return _log_coefficient(model, float(theta))


@functools.lru_cache(maxsize=64)
def _thetas(m: SlottedModel) -> tuple[np.ndarray, np.ndarray]:
    """The model's theta grid (fractions of the first hop's root, 1/slot) and ``log beta_2`` on it."""
    _, u1 = _first_hop(m)
    th = np.array([f * u1 for f in _FRACTIONS] + [u1])
    return th, np.array([_log_coefficient(m, float(t)) for t in th])


def slotted_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound | None:
    """``P(D > delay) <= epsilon`` for a slot's delay ``D`` (slots, latencies included, floored to
    whole slots), or ``None`` when the bound does not apply (:func:`slotted_model`) or is not finite."""
    m = slotted_model(arrival, services)
    if m is None:
        return None
    j = math.floor(delay - m.latency + 1e-9)
    if j < 0:
        return Bound(delay, 1.0, math.nan, BoundMethod.FIFO_SLOTTED)
    th, lb = _thetas(m)
    vals = lb - th * j
    i = int(np.argmin(vals))
    if not math.isfinite(vals[i]):
        return None
    eps = max(math.exp(min(0.0, float(vals[i]))), sys.float_info.min)
    return Bound(delay, eps, float(th[i]), BoundMethod.FIFO_SLOTTED)


def slotted_delay(arrival: Arrival, services: Sequence[Service], epsilon: float) -> Bound | None:
    """The smallest delay (whole slots past the latencies) with ``P(D > delay) <= epsilon``, optimised
    over theta, or ``None`` (see :func:`slotted_violation`)."""
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    m = slotted_model(arrival, services)
    if m is None:
        return None
    th, lb = _thetas(m)
    with np.errstate(invalid="ignore"):
        xs = np.where(np.isfinite(lb), (lb - math.log(epsilon)) / th, np.inf)
    best = float(np.min(xs))
    if not math.isfinite(best):
        return None
    # on the model's fixed theta grid, as slotted_violation: the bound at the delay is at most epsilon
    return slotted_violation(arrival, services, m.latency + max(0, math.ceil(best - 1e-9)))
