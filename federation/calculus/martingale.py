"""Martingale-based delay bounds for single queues (far tighter than the MGF union bound).

The queue seen by the flow is the supremum of a random walk (or a Markov-additive process)
``Z_n = sum_{k<=n} U_k`` with negative drift. If ``h(X_n) exp(theta*Z_n)`` is a martingale
(``h`` the Perron eigenvector of the tilted kernel at the ``theta`` where its spectral radius is
1), optional stopping at the first passage ``N`` above ``x`` gives::

    P(sup_n Z_n >= x) <= E_pi[h(X_0)] / (min_{up states} h * overshoot(theta)) * exp(-theta*x),

where ``overshoot(theta) = inf_v E[exp(theta*(U - v)) | U >= v] >= 1`` (e.g. ``1/(1-theta*m)`` for
exponential jumps of mean ``m``, by memorylessness). For M/M/1 this is exact
(``P(W > d) = (lambda/mu) exp(-(mu - lambda) d)``).

Applicable here (otherwise the functions return ``None`` and the MGF bound is used):

* deterministic hops only (a tandem of constant-rate links is exactly its bottleneck ``C``,
  latencies add), with i.i.d. arrivals (discrete-time i.i.d. slots; continuous-time compound
  Poisson, i.e. Lévy) or one Markov-modulated on-off group (:class:`~federation.calculus.arrivals.MMOO`
  or :class:`~federation.calculus.arrivals.CorrelatedMMOO`, discrete or continuous fluid): the virtual
  delay exceeds ``d`` iff the backlog exceeds ``C*d``;
* a single constant-rate hop shared with i.i.d. cross traffic under any work-conserving
  scheduler (:func:`priority_violation`): the worst case is strict priority to the cross traffic,
  where the flow's work present at ``t`` has left by ``t+d`` if the total backlog ``Q(t)`` plus
  the cross work arriving in ``(t, t+d]`` is at most ``C*d``; ``Q(t)`` (martingale bound, any
  ``theta`` up to the aggregate's root) is independent of the future cross work, so
  ``P(D > d) <= H e^{(kappa_c(theta) - theta*C) d} + (1-H) P(A_c(d) > C d)`` (using
  ``min(1, H z) <= H z + (1-H) 1{z>1}``, the last term by a Chernoff bound);
* a single random-service hop: discrete time, i.i.d. arrivals and i.i.d. exponential per-slot
  capacity (``P(D > d) <= H * E[exp(-theta*S(0,d))]``, the future capacity being independent of
  the backlog); continuous time, Poisson packets of fixed size and exponential service times
  (M/M/1).

References
----------
F. Ciucu, F. Poloczek, J. Schmitt, "Sharp per-flow delay bounds for bursty arrivals: the case of
FIFO, SP, and EDF scheduling", IEEE INFOCOM 2014; F. Poloczek, F. Ciucu, "Scheduling analysis with
martingales", Performance Evaluation 2014; J. F. C. Kingman, "Inequalities in the theory of
queues", JRSS B 1970 (the overshoot factor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from federation.calculus.arrivals import MMOO, Arrival, PoissonArrival, aggregate
from federation.calculus.bound import Bound, BoundMethod, MartingaleDetail, PriorityDetail
from federation.calculus.roots import brentq, invert_delay, minimize_scalar_bounded
from federation.calculus.services import ConstantRate, ExpService, Leftover, Service
from federation.calculus.tandem import Tandem
from federation.errors import InputError

__all__ = [
    "MartingaleModel",
    "martingale_model",
    "martingale_violation",
    "martingale_delay",
    "priority_violation",
]


class MartingaleModel:
    """``P(D > latency + d) <= prefactor * exp(-decay * d)`` (``d`` virtual delay, floored in slots).

    Attributes
    ----------
    prefactor : float
        >= 0 (above 1 for a packet's view of a Markov-modulated queue); 0 means the delay can
        never exceed the latency.
    decay : float
        Exponential decay rate per second (per slot).
    theta : float
        The martingale's theta (1/bits, or 1/packets for the M/M/1 case).
    latency : float
        Constant latency added to the virtual delay.
    discrete : bool
    """

    def __init__(self, prefactor: float, decay: float, theta: float, latency: float, discrete: bool):
        self.prefactor = max(0.0, prefactor)  # may exceed 1 (a packet's view); violation() caps at 1
        self.decay = decay
        self.theta = theta
        self.latency = latency
        self.discrete = discrete

    def violation(self, delay: float) -> float:
        """Bound on ``P(D > delay)`` in [0, 1]."""
        dv = delay - self.latency
        if dv < 0:
            return 1.0
        if self.discrete:
            dv = math.floor(dv + 1e-9)
        return float(min(1.0, self.prefactor * math.exp(-self.decay * dv)))

    def bound(self, delay: float, method: BoundMethod = BoundMethod.MARTINGALE) -> Bound:
        """The :class:`Bound` ``P(D > delay) <= violation(delay)`` of ``method``, with its detail."""
        return Bound(delay, self.violation(delay), self.theta, method, MartingaleDetail(self.prefactor, self.decay))

    def delay(self, epsilon: float) -> float:
        """Smallest delay with :meth:`violation` ``<= epsilon``."""
        if self.prefactor <= epsilon:
            return self.latency
        dv = math.log(self.prefactor / epsilon) / self.decay
        if self.discrete:
            dv = math.ceil(dv - 1e-9)
        return self.latency + dv


def _root(f, cap: float, scale: float) -> float | None:
    """Positive root of the convex ``f`` with ``f(0)=0``, ``f'(0)<0`` in (0, cap), or None if none."""
    lo = 0.0
    hi = min(1.0 / scale, cap * 0.5) if math.isfinite(cap) else 1.0 / scale
    for _ in range(200):
        v = f(hi)
        if not math.isfinite(v) or v > 0:
            break
        lo = hi
        hi = hi * 2.0 if not math.isfinite(cap) else min(hi * 2.0, 0.5 * (hi + cap))
        if hi > 1e12 / scale:
            return None
    else:
        return None
    if not math.isfinite(f(hi)):
        # bisect the finite region first
        a, b = lo, hi
        for _ in range(200):
            m = 0.5 * (a + b)
            fm = f(m)
            if math.isfinite(fm) and fm > 0:
                hi = m
                break
            if math.isfinite(fm):
                a = m
            else:
                b = m
        else:
            return None
        lo = a
    if lo == 0.0:
        x = hi
        for _ in range(200):
            x /= 2.0
            fx = f(x)
            if math.isfinite(fx) and fx <= 0:
                break
            if x < 1e-12 * hi:
                return None
        lo = x
    return brentq(f, lo, hi, xtol=1e-14 * hi, rtol=1e-12, maxiter=200)


def _perron(m: np.ndarray) -> tuple[float, np.ndarray]:
    w, v = np.linalg.eig(m)
    i = int(np.argmax(w.real))
    vec = np.abs(v[:, i].real)
    return float(w[i].real), vec


def _markov_model(arrival: MMOO, c: float, discrete: bool) -> tuple[float, float]:
    """(prefactor, theta) of the Markov-additive martingale for an MMOO group into capacity ``c``.

    Packetised sources (``arrival.packet > 0``): the prefactor is the one a packet sees. The
    queue at ``t`` given the chain's state ``x`` at ``t`` is (reversibility) the supremum of the
    walk started in ``x``, bounded by ``h(x)/min_up h * e^{-theta q}``; a packet arrives in state
    ``x`` at the rate ``r(x)`` of its sources, so its state has the law ``pi(x) r(x) / sum pi r``
    (Palm), not ``pi``. (The queue the packet sees is at most the fluid one plus
    :attr:`~federation.calculus.arrivals.MMOO.packet_burst`; :func:`martingale_model` adds that.)
    """
    mat, rates = arrival.markov()
    up = rates > c
    if not up.any():
        return 0.0, math.inf
    if discrete:
        # stationary distribution
        w, v = np.linalg.eig(mat.T)
        pi = np.abs(v[:, int(np.argmin(np.abs(w - 1.0)))].real)
        pi /= pi.sum()

        def f(theta: float) -> float:
            x = theta * (rates - c)
            shift = float(np.max(x))
            return math.log(_perron(mat * np.exp(x - shift)[None, :])[0]) + shift

        theta = _root(f, math.inf, max(arrival.peak, 1e-300))
        if theta is None:
            return 1.0, math.nan
        _, h = _perron(mat * np.exp(theta * (rates - c) - np.max(theta * (rates - c)))[None, :])
    else:
        w, v = np.linalg.eig(mat.T)
        pi = np.abs(v[:, int(np.argmin(np.abs(w)))].real)
        pi /= pi.sum()

        def f(theta: float) -> float:
            return _perron(mat + theta * np.diag(rates - c))[0]

        theta = _root(f, math.inf, max(arrival.peak * min(arrival.on, arrival.off), 1e-300))
        if theta is None:
            return 1.0, math.nan
        _, h = _perron(mat + theta * np.diag(rates - c))
    weights = pi * rates / float(pi @ rates) if arrival.packet > 0 else pi
    pref = float(weights @ h) / float(np.min(h[up]))
    return pref, theta


def martingale_model(arrival: Arrival, services: Sequence[Service]) -> MartingaleModel | None:
    """The martingale bound's model for this flow and tandem, or ``None`` if not applicable."""
    discrete = arrival.time == "discrete"
    tandem = Tandem(tuple(services), arrival.time)
    theta: float | None
    if arrival.deterministic:
        return None
    if all(s.deterministic for s in services):
        stoch, c, lat = tandem.split()
        lat += tandem.latency
        if arrival.mean_rate >= c:
            return None
        if isinstance(arrival, MMOO):
            pref, theta = _markov_model(arrival, c, discrete)
            if pref == 0.0:
                return MartingaleModel(0.0, math.inf, math.inf, lat + arrival.packet_burst / c, discrete)
            if math.isnan(theta):
                return None
            # packets run ahead of the fluid by at most packet_burst bits: that much more queue, at c
            return MartingaleModel(pref, theta * c, theta, lat + arrival.packet_burst / c, discrete)
        if arrival.iid:
            theta = _root(lambda t: arrival.kappa(t) - t * c, arrival.theta_max, arrival.packet_size)
            if theta is None:
                return None
            pref = 1.0 / arrival.overshoot(theta)
            return MartingaleModel(pref, theta * c, theta, lat, discrete)
        return None
    if len(services) == 1 and isinstance(services[0], ExpService):
        s = services[0]
        if arrival.mean_rate >= s.rate:
            return None
        if discrete and arrival.iid:
            theta = _root(lambda t: arrival.kappa(t) - s.gamma(t), arrival.theta_max, arrival.packet_size)
            if theta is None:
                return None
            return MartingaleModel(1.0 / arrival.overshoot(theta), s.gamma(theta), theta, s.latency, True)
        if not discrete and isinstance(arrival, PoissonArrival) and arrival.size == "det":
            lam = arrival.rate
            mu = s.rate / arrival.packet_size if s.packet_size == arrival.packet_size else math.nan
            if not math.isfinite(mu):
                return None
            return MartingaleModel(lam / mu, mu - lam, mu - lam, s.latency, False)
    return None


def martingale_violation(
    arrival: Arrival, services: Sequence[Service], delay: float, *, sojourn: bool = False
) -> Bound | None:
    """Martingale bound on ``P(D > delay)`` (delay incl. latencies), or ``None`` if not applicable.

    ``sojourn``: the blind-multiplexing bound (:func:`priority_violation`) on a Poisson packet's
    sojourn; the others bound the virtual delay
    (:func:`federation.calculus.sojourn.sojourn_of` converts them).
    """
    m = martingale_model(arrival, services)
    if m is None:
        return priority_violation(arrival, services, delay, sojourn=sojourn)
    return m.bound(delay)


def martingale_delay(arrival: Arrival, services: Sequence[Service], epsilon: float) -> Bound | None:
    """Smallest delay with the martingale bound ``<= epsilon``, or ``None`` if not applicable."""
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    m = martingale_model(arrival, services)
    if m is None:
        parts = _sp_parts(arrival, services)
        if parts is None:
            return None
        cross, rate, _ = parts
        lat = services[0].latency
        first = priority_violation(arrival, services, lat)
        if first is None:
            return None
        scale = max(arrival.packet_size, cross.packet_size) / rate

        def eps_at(x: float) -> float:
            b = priority_violation(arrival, services, x)
            assert b is not None  # applicable at lat, so at every delay
            return b.epsilon

        dv = invert_delay(eps_at, epsilon, lat, lat + 10 * scale, discrete=arrival.time == "discrete")
        return priority_violation(arrival, services, dv)
    return m.bound(m.delay(epsilon))


def _sp_parts(arrival: Arrival, services: Sequence[Service]) -> tuple[Arrival, float, float] | None:
    if len(services) != 1 or not isinstance(services[0], Leftover):
        return None
    s = services[0]
    if not isinstance(s.base, ConstantRate) or not (arrival.iid and s.cross.iid):
        return None
    if arrival.time != s.cross.time or arrival.mean_rate + s.cross.mean_rate >= s.base.rate:
        return None
    return s.cross, s.base.rate, s.base.latency


def priority_violation(
    arrival: Arrival, services: Sequence[Service], delay: float, *, sojourn: bool = False
) -> Bound | None:
    """Martingale bound for one constant-rate hop with i.i.d. cross traffic (blind multiplexing).

    Valid for every work-conserving scheduler (strict priority to the cross traffic is the worst
    case); ``None`` when not applicable (see the module notes). ``sojourn=True`` (Poisson packets
    in continuous time): the bound on an arriving packet's sojourn, its own size ``L`` added to
    the work that must leave, ``P(Q + L + A_c(d) > C d) <= H E[e^{theta L}] e^{(kappa_c - theta C) d}
    + (1 - H) P(A_c(d) + L > C d)`` (``Q`` seen by the arrival: PASTA; ``L`` independent).
    """
    parts = _sp_parts(arrival, services)
    if parts is None:
        return None
    # a Poisson packet's own size L: its log-MGF, log E[exp(theta L)], and pole are the flow's
    own = arrival if sojourn and isinstance(arrival, PoissonArrival) and arrival.time == "continuous" else None
    cross, c, lat = parts
    discrete = arrival.time == "discrete"
    dv = delay - lat
    if dv < 0:
        return Bound(delay, 1.0, math.nan, BoundMethod.MARTINGALE_SP)
    if discrete:
        dv = math.floor(dv + 1e-9)
    tot = aggregate([arrival, cross])
    cap = min(arrival.theta_max, cross.theta_max)
    theta_star = _root(lambda t: tot.kappa(t) - t * c, cap, tot.packet_size)
    if theta_star is None:
        return None
    scale = cross.packet_size
    own_log = own.log_jump_mgf if own is not None else (lambda th: 0.0)
    # Chernoff bound on P(A_c(0,d) (+ L) > C d)
    if dv > 0:
        hi_s = min(cross.theta_max * (1 - 1e-9), 1e3 / scale, own.theta_max * (1 - 1e-9) if own else math.inf)
        res = minimize_scalar_bounded(
            lambda x: (cross.kappa(math.exp(x)) - math.exp(x) * c) * dv + own_log(math.exp(x)),
            (math.log(hi_s) - 25.0, math.log(hi_s)))
        log_chern = min(0.0, float(res.fun))
    else:
        log_chern = 0.0

    def value(theta: float) -> float:
        h = 1.0 / tot.overshoot(theta)
        g = own_log(theta)
        if not math.isfinite(g):
            return math.inf
        return h * math.exp((cross.kappa(theta) - theta * c) * dv + g) + (1.0 - h) * math.exp(log_chern)

    res = minimize_scalar_bounded(lambda x: value(theta_star * x), (1e-6, 1.0), xatol=1e-6)
    th = theta_star * float(res.x)
    v = min(value(th), value(theta_star))
    if value(theta_star) <= v:
        th = theta_star
    return Bound(delay, float(min(1.0, v)), th, BoundMethod.MARTINGALE_SP, PriorityDetail(theta_star, own is not None))

