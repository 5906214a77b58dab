"""Packet-domain bounds for Poisson packets in continuous time: max-plus MGF and product form.

Both bound a packet's end-to-end sojourn ``S`` (arrival to the departure of its last bit from
the last hop, its own transmissions included: what the data plane and the auditor measure) in a
store-and-forward tandem without cross traffic, for Poisson packets in continuous time: of a
fixed size ``L`` (bits) through constant-rate and exponential-service hops, and (max-plus only)
of exponential sizes through them. Elsewhere they return ``None``.

* :func:`maxplus_violation`: constant-rate and exponential-service hops. In max-plus form the
  last departure of packet ``N`` is ``max_{k_0<=...<=k_{H-1}<=N} A_{k_0} + sum_h
  sum_{j=k_{h-1}}^{k_h} s_{h,j}``; the union bound over the packet indices (a discrete set: no
  time discretisation) gives the bound of :func:`maxplus_log_bound`, optimised over ``theta``
  (1/s: here ``theta`` multiplies times, not bits).
* :func:`product_form_violation`: exponential-service hops only, a Jackson tandem: the exact
  sojourn tail (hypoexponential).

References
----------
J. Reich, "Waiting times when queues are in tandem", Ann. Math. Statist. 1957 (independent
sojourn times); F. Baccelli, G. Cohen, G. J. Olsder, J.-P. Quadrat, "Synchronization and
Linearity", Wiley 1992 (max-plus recursions of tandems).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from federation.calculus.arrivals import Arrival, PoissonArrival
from federation.calculus.bound import Bound, BoundMethod, ProductFormDetail
from federation.calculus.roots import minimize_scalar_bounded
from federation.calculus.services import ConstantRate, ExpService, Service

__all__ = [
    "maxplus_applies",
    "size_correlation_log",
    "maxplus_log_bound",
    "maxplus_log_at",
    "maxplus_violation",
    "product_form_violation",
]

#: A hop's log-MGF of a packet's service time, ``theta -> log E[exp(theta*s)]``, and its
#: supremum theta (1/s; ``inf`` for a constant-rate hop).
_HopMgf = tuple[Callable[[float], float], float]


def _maxplus_parts(
    arrival: Arrival, services: Sequence[Service]
) -> tuple[float, list[_HopMgf], _HopMgf | None] | None:
    """(lambda, [log-MGF of a packet's service time per hop], correlation) or None when not applicable.

    ``correlation`` is ``None`` when a packet's service times at the hops are independent (fixed
    size), else ``theta ->`` the log of the factor of :func:`maxplus_log_bound`'s Notes for an
    exponential size ``X`` served ``X/R_h`` at the constant-rate hops, and its supremum theta.
    """
    if not isinstance(arrival, PoissonArrival) or arrival.time != "continuous" or not services:
        return None
    if arrival.size not in ("det", "exp"):
        return None
    size = arrival.mean_size
    funcs: list[_HopMgf] = []
    per_bit: list[float] = []  # s/bit at the constant-rate hops (random sizes)
    for s in services:
        if isinstance(s, ConstantRate) and arrival.size == "det":
            funcs.append((lambda r: (lambda th: th * size / r, math.inf))(s.rate))
        elif isinstance(s, ConstantRate):  # X/R with X ~ Exp(mean size)
            per_bit.append(1.0 / s.rate)
            funcs.append(_exp_mgf(s.rate / size))
        elif isinstance(s, ExpService) and s.time == "continuous" and s.packet_size == size:
            funcs.append(_exp_mgf(s.completion_rate))  # i.i.d. Exp(mu), whatever the size
        else:
            return None
    if len(per_bit) < 2:
        return arrival.rate, funcs, None
    rates = [1.0 / c for c in per_bit]
    return arrival.rate, funcs, (lambda th: size_correlation_log(size, rates, th), 1.0 / (size * sum(per_bit)))


def _exp_mgf(mu: float) -> _HopMgf:
    """The log-MGF ``-log(1 - theta/mu)`` of an ``Exp(mu)`` time and its pole ``mu``."""
    return (lambda th: -math.log1p(-th / mu) if th < mu else math.inf, mu)


def maxplus_applies(arrival: Arrival, services: Sequence[Service]) -> bool:
    """Whether :func:`maxplus_violation` applies: Poisson packets in continuous time of a fixed
    size through constant-rate hops and exponential-service hops of that packet size, or of
    exponential sizes through such hops (no cross traffic)."""
    return _maxplus_parts(arrival, services) is not None


def size_correlation_log(mean_size: float, rates: Sequence[float], theta: float) -> float:
    """The log of the factor of :func:`maxplus_log_bound`'s Notes for an exponential size of mean
    ``mean_size`` (bits) served ``X/R`` at constant-rate hops of ``rates`` (bits/s); ``theta`` in
    1/s; ``inf`` past the pole, 0 for fewer than two hops."""
    if len(rates) < 2:
        return 0.0
    per = [mean_size / r for r in rates]
    x = theta * sum(per)
    if not x < 1:
        return math.inf
    return -math.log1p(-x) + sum(math.log1p(-theta * c) for c in per)


def maxplus_log_bound(
    lam: float, log_mgfs: Sequence[float], d_virtual: float, theta: float, *, correlation: float = 0.0
) -> float:
    """The log of the max-plus bound on a packet's sojourn ``P(S > d_virtual)`` at one ``theta`` (unclipped).

    Parameters
    ----------
    lam : float
        Poisson packet rate lambda (1/s).
    log_mgfs : sequence of float
        Per hop, ``log M_h(theta)`` with ``M_h = E[exp(theta*s_h)]`` the MGF of a packet's
        service time ``s_h`` (s): ``theta*L/R`` for a constant-rate hop, ``-log(1 - theta/mu)``
        for exponential service of rate ``mu`` (1/s).
    d_virtual : float
        Delay (s), latencies excluded.
    theta : float
        Free parameter (1/s), ``> 0``.
    correlation : float, optional
        The log of the factor (Notes) for service times that depend on one random size at
        several hops; 0 for independent service times.

    Returns
    -------
    float
        The log bound; ``inf`` where ``theta`` gives no finite bound.

    Notes
    -----
    A packet arriving at ``t`` (the ``n``-th) leaves the last hop at
    ``max_{k_0<=...<=k_{H-1}<=n} A_{k_0} + sum_h sum_{j=k_{h-1}}^{k_h} s_{h,j}`` (``k_H = n``);
    the union bound over the indices, with ``t - A_{k_0}`` a sum of ``n - k_0`` independent
    ``Exp(lambda)`` gaps, gives for its sojourn (own services included; Palm: the arrival sees the
    time-stationary past, PASTA)

    .. math::

        P(S > d) \\le e^{-\\theta d} \\prod_h \\frac{M_h}{1 - \\lambda M_h/(\\lambda+\\theta)},

    finite when ``lambda*M_h < lambda + theta`` for every hop (the time-stationary virtual delay
    has the extra factor ``lambda/(lambda+theta)``). When one random size ``X`` sets the service
    ``X/R_h`` at several constant-rate hops, a path's cells of one packet are dependent; with
    ``phi = log M_X`` convex and ``phi(0) = 0`` the packets a path visits at several hops
    (contiguous hop ranges overlapping in at most one hop) cost at most the factor
    ``M_X(theta sum_h 1/R_h) / prod_h M_X(theta/R_h)`` (over those hops) over the independent
    product.
    """
    lr = math.log(lam / (lam + theta))
    tot = -theta * d_virtual
    for g in log_mgfs:
        x = lr + g
        if not x < 0:
            return math.inf
        tot += g - math.log(-math.expm1(x))
    return tot + correlation


def _maxplus_log(lam: float, funcs: Sequence[_HopMgf], joint: _HopMgf | None, d: float, theta: float) -> float:
    """``log`` of the max-plus bound at ``theta`` for delay ``d`` (latencies excluded; ``inf`` when infeasible)."""
    if not 0 < theta < min(f[1] for f in (*funcs, *([joint] if joint else []))):
        return math.inf
    return maxplus_log_bound(lam, [f(theta) for f, _ in funcs], d, theta,
                             correlation=0.0 if joint is None else joint[0](theta))


def maxplus_log_at(arrival: Arrival, services: Sequence[Service], delay: float, theta: float) -> float | None:
    """The log of the :func:`maxplus_violation` bound at one ``theta`` (unclipped; ``inf`` outside
    the feasible range), or ``None`` when the bound does not apply. Cheap: used to search rates at
    a fixed ``theta``; ``delay`` (s) includes the latencies (0 below them).
    """
    parts = _maxplus_parts(arrival, services)
    if parts is None:
        return None
    lam, funcs, joint = parts
    d = delay - sum(s.latency for s in services)
    if d < 0:
        return 0.0
    return _maxplus_log(lam, funcs, joint, d, theta)


def maxplus_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound | None:
    """Packet-domain MGF bound on a Poisson packet's sojourn through constant-rate / exponential hops.

    Fixed-size or exponential-size packets through constant-rate and exponential-service hops
    (of the flow's mean packet size): the bound of :func:`maxplus_log_bound` at ``delay - sum T_h``
    (``delay`` in s, latencies included), minimised over ``theta`` (bounded Brent on
    ``log theta`` below the feasible supremum). ``None`` when not applicable (other arrivals,
    cross traffic, discrete time).
    """
    parts = _maxplus_parts(arrival, services)
    if parts is None:
        return None
    lam, funcs, joint = parts
    lat = sum(s.latency for s in services)
    d = delay - lat
    if d < 0:
        return Bound(delay, 1.0, math.nan, BoundMethod.MGF_MAXPLUS)
    cap = min(f[1] for f in (*funcs, *([joint] if joint else [])))

    def logb(theta: float) -> float:
        return _maxplus_log(lam, funcs, joint, d, theta)

    # feasible range: lambda*M_h(theta) < lambda + theta for all h
    hi = cap * (1 - 1e-12) if math.isfinite(cap) else 1.0 / arrival.packet_size
    if not math.isfinite(cap):
        while math.isfinite(logb(hi * 2.0)) and hi < 1e12 / arrival.packet_size:
            hi *= 2.0
        hi *= 2.0
    lo = hi
    for _ in range(200):
        lo /= 2.0
        if math.isfinite(logb(lo)):
            break
    else:
        return None
    a, b = lo, hi
    for _ in range(80):
        m = math.sqrt(a * b)
        if math.isfinite(logb(m)):
            a = m
        else:
            b = m
    hi = a
    res = minimize_scalar_bounded(lambda x: logb(math.exp(x)), (math.log(hi) - 20.0, math.log(hi)), xatol=1e-6)
    th = math.exp(res.x)
    val = logb(th)
    return Bound(delay, float(min(1.0, math.exp(min(val, 0.0)))), th, BoundMethod.MGF_MAXPLUS)


def product_form_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound | None:
    """Exact sojourn tail of a Jackson tandem (a packet's delay, its own services included).

    Poisson packets of fixed size through exponential-service hops only (continuous time, no cross
    traffic) form a tandem of M/M/1 queues; a packet's sojourn times at the hops are independent
    ``Exp(mu_h - lambda)`` (Reich 1957, Burke's theorem), so its end-to-end sojourn is
    hypoexponential. A Poisson arrival at ``t`` sees the time-stationary state (PASTA) and leaves
    after all earlier work (FIFO, no overtaking): ``P(S > d) = P(sum_h Exp(mu_h - lambda) > d)``.
    ``delay`` in s, latencies included. ``None`` when not applicable.
    """
    if not isinstance(arrival, PoissonArrival) or arrival.time != "continuous" or arrival.size != "det":
        return None
    exp = [s for s in services
           if isinstance(s, ExpService) and s.time == "continuous" and s.packet_size == arrival.mean_size]
    if not services or len(exp) != len(services):
        return None
    rates = np.array([s.completion_rate - arrival.rate for s in exp])
    if np.any(rates <= 0):
        return None
    d = delay - sum(s.latency for s in services)
    if d < 0:
        return Bound(delay, 1.0, math.nan, BoundMethod.PRODUCT_FORM)
    from scipy.linalg import expm  # 0.25 s to import: only once the bound applies

    t = np.diag(-rates) + np.diag(rates[:-1], 1)
    p = float(expm(t * d)[0].sum())
    return Bound(delay, float(min(1.0, max(p, 0.0))), math.nan, BoundMethod.PRODUCT_FORM,
                 ProductFormDetail(tuple(float(r) for r in rates)))
