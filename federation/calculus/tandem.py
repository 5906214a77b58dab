"""The MGF tandem bound: end-to-end delay (and single-hop backlog) bounds with bursts paid once.

The end-to-end service of a tandem is the min-plus convolution of the hop services, so bursts
are paid once. With independent hops, the union bound over the arrival window and over every
split point of the convolution gives, in discrete time (slots, ``d`` integer)::

    P(D > d) <= exp(beta_A + sum_h delta_h - kappa_A * d) * sum_{m in N^H, |m| >= d} prod_h a_h^{m_h},
    a_h = exp(-(gamma_h - kappa_A)),

where ``kappa_A = theta*rho_A``, ``beta_A = theta*sigma_A`` (arrival) and ``gamma_h = theta*R_h``,
``delta_h = theta*sigma_h`` (hop ``h``). The sum over compositions is evaluated *exactly*
(``prod_h 1/(1-a_h)`` times the tail of a sum of independent geometric variables, by a positive
linear recursion with no cancellation), not through the usual slack-rate relaxation.

In continuous time the same bound is taken on a grid of step ``tau = d/j``; each hop but the one
with the largest ``gamma`` loses one grid step (``exp(gamma_h*tau)``), the arrival one
(``exp(kappa_A*tau)``); ``tau`` is optimised with ``theta``.

Deterministic hops (constant rate, or leftover of a token bucket) are first merged exactly into
one rate-latency hop (``R = min R_h``, latencies add), so a tandem of links costs no more than its
bottleneck. The latencies are constant delays added to the bound's virtual delay.

Optimisation over ``theta`` is in log space: a coarse log grid over the stable range followed by
bounded Brent; the returned probability is clipped to ``[0, 1]``. The delay at a given
``epsilon`` inverts the *unclipped* optimised log bound (near-linear in the delay) with a
safeguarded false-position root finder (:func:`~federation.calculus.roots.bracket_root`).

``dependent=True`` drops the independence of the flow and the hops (e.g. one cross flow at
several hops): Hölder's inequality with equal exponents ``p`` (the number of random factors)
replaces the product of MGFs, each random factor evaluated at ``p*theta``.

References
----------
M. Fidler, IWQoS 2006 (end-to-end MGF calculus); F. Ciucu, A. Burchard, J. Liebeherr, "Scaling
properties of statistical end-to-end bounds in the network calculus", IEEE Trans. IT 2006.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federation.calculus.arrivals import Arrival
from federation.calculus.bound import BacklogBound, Bound, BoundMethod, DeterministicDetail, TandemDetail
from federation.calculus.roots import bracket_root, invert_delay, minimize_scalar_bounded
from federation.calculus.services import ConstantRate, Leftover, Service
from federation.errors import InputError, NoFiniteBound
from federation.specs import TimeModel

__all__ = [
    "Tandem",
    "check_stable",
    "deterministic_delay",
    "log_geometric_tail",
    "tandem_log_bound",
    "tandem_violation",
    "tandem_delay",
    "tandem_log_at",
    "backlog_violation",
]


def log_geometric_tail(log_a: np.ndarray, j: int) -> float:
    """``log sum_{m in N^H, m_1+...+m_H >= j} prod_h a_h^{m_h}`` for ``0 < a_h < 1``.

    Computed as ``-sum log(1-a_h) + log P(G_1+...+G_H >= j)`` with independent geometric
    ``G_h`` (``P(G=k) = (1-a) a^k``), by the recursion ``P(X+G >= j) = P(X >= j) +
    sum_{k<j} P(X=k) a^{j-k}`` scaled by ``max(a)^k`` (no cancellation, no underflow).
    """
    log_a = np.asarray(log_a, dtype=float)
    if log_a.ndim == 1 and len(log_a) <= 2:
        fast = _log_geometric_tail_small([float(x) for x in log_a], j)
        if fast is not None:
            return fast
    return _log_geometric_tail_recursive(log_a, j)


def _log_geometric_tail_small(log_a: list[float], j: int) -> float | None:
    """Closed forms of :func:`log_geometric_tail` for one or two hops (``None``: use the recursion).

    One hop: ``a^j/(1-a)``. Two hops (``a >= b``): ``(a^(j+1)/(1-a) - b^(j+1)/(1-b))/(a - b)``,
    evaluated in log space; when ``b/a`` is within ``1e-4`` of 1 the difference cancels and the
    exact recursion is used instead.
    """
    if not all(x < 0.0 for x in log_a):
        return None
    if len(log_a) == 1:
        la = log_a[0]
        return max(j, 0) * la - math.log(-math.expm1(la))
    la, lb = max(log_a), min(log_a)
    l1a, l1b = math.log(-math.expm1(la)), math.log(-math.expm1(lb))
    if j <= 0:
        return -(l1a + l1b)
    lr = lb - la
    a = math.exp(la)
    if lr == 0.0:  # a == b: sum_{n>=j} (n+1) a^n
        return j * la + math.log(a + (1.0 - a) * (j + 1)) - 2.0 * l1a
    e1 = -math.expm1(lr)  # 1 - b/a in (0, 1]
    num = a * e1 - (1.0 - a) * math.expm1((j + 1) * lr)  # two positive terms: no cancellation
    return (j + 1) * la + math.log(num) - l1a - l1b - la - math.log(e1)


def _log_geometric_tail_recursive(log_a: np.ndarray, j: int) -> float:
    """The general positive recursion of :func:`log_geometric_tail` (any number of hops)."""
    log_a = np.asarray(log_a, dtype=float)
    norm = -float(np.sum(np.log(-np.expm1(log_a))))
    if j <= 0:
        return norm
    lam = float(np.max(log_a))
    b = np.exp(log_a - lam)
    one_minus_a = -np.expm1(log_a)
    k = np.arange(j, dtype=float)
    # first geometric: scaled pmf (1-a) b^k for k < j, scaled survival b^j
    p = one_minus_a[0] * np.power(b[0], k)
    surv = b[0] ** j
    small = j <= 256
    if not small and len(b) > 1:
        from scipy.signal import lfilter  # 1 s to import (scipy.stats with it): only for long sequences

    for h in range(1, len(b)):
        if small:  # short sequences: a direct convolution is cheaper than lfilter's overhead
            f = np.convolve(p, np.power(b[h], k))[:j]
        else:
            f = lfilter([1.0], [1.0, -b[h]], p)
        surv = surv + b[h] * f[-1]
        p = one_minus_a[h] * f
    if surv <= 0.0:
        return -math.inf
    return norm + lam * j + math.log(surv)


@dataclass(frozen=True)
class Tandem:
    """A tandem of hop services traversed by one flow (cross traffic inside :class:`Leftover` hops)."""

    services: tuple[Service, ...]
    time: TimeModel = "continuous"

    @property
    def latency(self) -> float:
        """Sum of the constant latencies (s or slots)."""
        return sum(s.latency for s in self.services)

    def split(self) -> tuple[list[Service], float, float]:
        """(stochastic hops, merged deterministic rate or nan, extra latency of merged deterministic hops).

        A deterministic hop with ``gamma = theta*R`` and ``delta = theta*sigma`` is the
        rate-latency server ``(R, sigma/R)``; their convolution is ``(min R, sum latencies)``.
        """
        stoch: list[Service] = []
        det_rate = math.inf
        det_lat = 0.0
        for s in self.services:
            if s.deterministic:
                r = s.gamma(1.0)
                if r <= 0:
                    raise NoFiniteBound("a hop has no leftover capacity (cross rate >= link rate)")
                det_rate = min(det_rate, r)
                det_lat += s.delta(1.0) / r
            else:
                stoch.append(s)
        return stoch, (det_rate if math.isfinite(det_rate) else math.nan), det_lat

    def merged(self) -> tuple[list[Service], float]:
        """(the stochastic hops plus one merged deterministic hop of rate ``min R`` and latency 0,
        the extra latency of the merged deterministic hops) as in :meth:`split`."""
        stoch, r, lat = self.split()
        hops: list[Service] = list(stoch)
        if not math.isnan(r):
            hops.append(ConstantRate(r, 0.0, self.time))
        return hops, lat


#: The value a minimiser sees for an infeasible ``theta`` (finite, above every finite log bound).
_INFEASIBLE = 1e300


def _hop_names(services: Sequence[Service]) -> list[str]:
    return [f"hop {i + 1}" for i in range(len(services))]


def check_stable(arrival: Arrival, services: Sequence[Service], names: Sequence[str] | None = None,
                 *, bounded_at_one: bool = False) -> None:
    """Raise :class:`NoFiniteBound` naming the first hop whose mean service rate the flow's mean rate reaches.

    ``names`` (default ``"hop 1"``, ``"hop 2"``, ...) name the hops in the reason.
    ``bounded_at_one``: a rate equal to the hop's is still bounded (a token bucket through
    constant-rate hops: the worst case ``sigma/R``), only above it is refused.
    """
    names = list(names) if names is not None else _hop_names(services)
    for name, s in zip(names, services):
        if arrival.mean_rate > s.mean_rate or (arrival.mean_rate == s.mean_rate and not bounded_at_one):
            raise NoFiniteBound(
                f"{name}: unstable, mean arrival rate {arrival.mean_rate:g} >= mean service rate "
                f"{s.mean_rate:g}"
                + (" left by the cross traffic" if isinstance(s, Leftover) else "")
            )


def deterministic_delay(arrival: Arrival, tandem: Tandem) -> float:
    """Worst-case delay of a token bucket through deterministic rate-latency hops: ``sigma/R_min + sum T``."""
    stoch, r, lat = tandem.split()
    if stoch or not arrival.deterministic:
        raise InputError("deterministic_delay needs a token bucket through deterministic hops")
    rho, sigma = arrival.kappa(1.0), arrival.beta(1.0)
    if rho > r:
        raise NoFiniteBound(f"token rate {rho:g} > bottleneck rate {r:g}")
    return sigma / r + lat + tandem.latency


class _HolderArrival(Arrival):
    """``E[exp(theta*A)]^(1/p)`` at ``p*theta``: the arrival's factor in Hölder's inequality."""

    def __init__(self, base: Arrival, p: int):
        self.base, self.p, self.time = base, p, base.time

    @property
    def theta_max(self) -> float:
        return self.base.theta_max / self.p

    @property
    def mean_rate(self) -> float:
        return self.base.mean_rate

    @property
    def packet_size(self) -> float:
        return self.base.packet_size

    def kappa(self, theta: float) -> float:
        return self.base.kappa(self.p * theta) / self.p

    def beta(self, theta: float) -> float:
        return self.base.beta(self.p * theta) / self.p


class _HolderService(Service):
    """A random service's factor in Hölder's inequality (``gamma(p*theta)/p``)."""

    def __init__(self, base: Service, p: int):
        self.base, self.p, self.time, self.latency = base, p, base.time, base.latency

    @property
    def theta_max(self) -> float:
        return self.base.theta_max / self.p

    @property
    def mean_rate(self) -> float:
        return self.base.mean_rate

    def gamma(self, theta: float) -> float:
        return self.base.gamma(self.p * theta) / self.p

    def delta(self, theta: float) -> float:
        return self.base.delta(self.p * theta) / self.p


def _hoelder(arrival: Arrival, services: Sequence[Service]) -> tuple[Arrival, list[Service]]:
    """Wrap the random factors for Hölder's inequality with equal exponents ``p`` = their number."""
    p = int(not arrival.deterministic) + sum(not s.deterministic for s in services)
    if p <= 1:
        return arrival, list(services)
    a = arrival if arrival.deterministic else _HolderArrival(arrival, p)
    return a, [s if s.deterministic else _HolderService(s, p) for s in services]


def tandem_log_bound(
    k: float, base: float, gam: Sequence[float], d_virtual: float, discrete: bool
) -> tuple[float, float]:
    """(log bound, tau) of the tandem bound from its exponents at one theta: the one implementation.

    Parameters
    ----------
    k : float
        ``kappa_A(theta)`` of the arrival (per s or slot).
    base : float
        ``beta_A(theta) + sum_h delta_h(theta)`` (minus ``theta*backlog`` for a backlog bound).
    gam : sequence of float
        The hops' ``gamma_h(theta)`` (per s or slot), all ``> k``.
    d_virtual : float
        Virtual delay (s or slots, latencies excluded), ``>= 0``.
    discrete : bool
        Discrete time (``d_virtual`` floored to slots; ``tau`` 1) or continuous time.

    Returns
    -------
    (float, float)
        The unclipped log bound and the grid step ``tau`` it was taken on (best of three).

    Notes
    -----
    See the module notes: ``base - k*j + log_geometric_tail(k - gam, j)`` in discrete time;
    in continuous time on a grid ``tau = d/j`` with the penalty ``(k + sum gam - max gam)*tau``.
    """
    if discrete:
        j = int(math.floor(d_virtual + 1e-9))
        return base - k * j + log_geometric_tail(np.array([k - g for g in gam]), j), 1.0
    best, best_tau = math.inf, math.nan
    gap = min(gam) - k
    penalty_rate = k + sum(gam) - max(gam)
    neg = np.array([k - g for g in gam])
    for c in (0.05, 0.15, 0.5):
        tau = c / gap
        if d_virtual > 0:
            j = min(max(1, int(math.floor(d_virtual / tau))), 192)
            tau = d_virtual / j
        else:
            j = 0
        val = base + penalty_rate * tau - k * j * tau + log_geometric_tail(neg * tau, j)
        if val < best:
            best, best_tau = val, tau
    return best, best_tau


class _Problem:
    """The optimisation of the tandem bound for a given (arrival, tandem)."""

    def __init__(self, arrival: Arrival, tandem: Tandem, names: Sequence[str] | None = None):
        self.arrival = arrival
        self.tandem = tandem
        self.discrete = tandem.time == "discrete"
        check_stable(arrival, tandem.services, names)
        self.hops, lat = tandem.merged()
        self.lat = lat + tandem.latency
        self.theta_cap = min([arrival.theta_max, *(h.theta_max for h in self.hops)])
        self.theta_hi = self._find_theta_hi()

    def _feasible(self, theta: float) -> bool:
        if not theta < self.theta_cap:
            return False
        k = self.arrival.kappa(theta)
        if not math.isfinite(k):
            return False
        return all(h.gamma(theta) - k > 0 for h in self.hops)

    def _find_theta_hi(self) -> float:
        scale = max(self.arrival.packet_size, 1e-300)
        theta = 1.0 / scale
        if not self._feasible(theta):
            lo = theta
            for _ in range(200):
                lo /= 2.0
                if self._feasible(lo):
                    break
            else:
                raise NoFiniteBound("no theta > 0 with a finite bound")
            hi = lo * 2.0
        else:
            lo = theta
            hi = theta * 2.0
            while self._feasible(hi):
                lo, hi = hi, hi * 2.0
                if hi > 1e6 / scale or hi >= self.theta_cap * 0.999999:
                    return min(hi, self.theta_cap * (1 - 1e-9))
        for _ in range(60):
            mid = math.sqrt(lo * hi)
            if self._feasible(mid):
                lo = mid
            else:
                hi = mid
            if hi / lo < 1 + 1e-9:
                break
        return lo

    def log_bound(self, theta: float, d_virtual: float, backlog: float = 0.0) -> tuple[float, float]:
        """(log bound, tau) at ``theta`` for virtual delay ``d_virtual`` (>= 0) and backlog level."""
        if not self._feasible(theta):
            return math.inf, math.nan
        k = self.arrival.kappa(theta)
        base = self.arrival.beta(theta) - theta * backlog
        gam = [h.gamma(theta) for h in self.hops]
        base += sum(h.delta(theta) for h in self.hops)
        return tandem_log_bound(k, base, gam, d_virtual, self.discrete)

    def optimise(self, d_virtual: float, backlog: float = 0.0) -> tuple[float, float, float]:
        """(log bound, theta, tau) minimised over theta."""
        hi = self.theta_hi
        lo = hi * 1e-6
        grid = np.exp(np.linspace(math.log(lo), math.log(hi), 11))
        vals = [self.log_bound(float(t), d_virtual, backlog)[0] for t in grid]
        i = int(np.argmin(vals))
        a = math.log(grid[max(i - 1, 0)])
        b = math.log(grid[min(i + 1, len(grid) - 1)])
        def log_at(x: float) -> float:
            v = self.log_bound(math.exp(x), d_virtual, backlog)[0]
            return v if v < math.inf else _INFEASIBLE  # the minimiser subtracts values: no inf - inf

        res = minimize_scalar_bounded(log_at, (a, b), xatol=1e-2)
        if res.fun < vals[i]:
            th = math.exp(res.x)
        else:
            th = float(grid[i])
        val, tau = self.log_bound(th, d_virtual, backlog)
        return val, th, tau


def _prepare(
    arrival: Arrival, services: Sequence[Service], names: Sequence[str] | None, dependent: bool
) -> tuple[float, None, BoundMethod] | tuple[None, _Problem, BoundMethod]:
    """(worst-case delay, None, DETERMINISTIC) for a token bucket through deterministic hops, else
    (None, the optimisation problem, MGF_TANDEM or MGF_TANDEM_HOELDER)."""
    if arrival.deterministic and all(s.deterministic for s in services):
        check_stable(arrival, services, names, bounded_at_one=True)
        return deterministic_delay(arrival, Tandem(tuple(services), arrival.time)), None, BoundMethod.DETERMINISTIC
    method = BoundMethod.MGF_TANDEM
    if dependent:
        check_stable(arrival, services, names)
        arrival, services = _hoelder(arrival, services)
        method = BoundMethod.MGF_TANDEM_HOELDER
    return None, _Problem(arrival, Tandem(tuple(services), arrival.time), names), method


def tandem_violation(
    arrival: Arrival,
    services: Sequence[Service],
    delay: float,
    *,
    names: Sequence[str] | None = None,
    dependent: bool = False,
) -> Bound:
    """Optimised MGF bound on ``P(D > delay)`` through a tandem (delay includes the latencies).

    Parameters
    ----------
    arrival : Arrival
        The flow of interest (its time model must match the services').
    services : sequence of Service
        The hops in order; cross traffic as :class:`~federation.calculus.services.Leftover` hops.
    delay : float
        End-to-end delay (s or slots) including the hops' latencies.
    names : sequence of str, optional
        Hop names used in the "no finite bound" reason.
    dependent : bool
        If True, the arrival and the hop services (e.g. cross traffic of one flow at several
        hops) may be dependent: Hölder's inequality with equal exponents replaces independence
        (``method=MGF_TANDEM_HOELDER``).

    Returns
    -------
    Bound
        ``epsilon`` in [0, 1]; ``method`` is ``DETERMINISTIC`` for a token bucket through
        deterministic hops (``epsilon`` 0 or 1; detail :class:`DeterministicDetail`), else
        ``MGF_TANDEM`` (or ``MGF_TANDEM_HOELDER``) with a :class:`TandemDetail`.

    Raises
    ------
    NoFiniteBound
        If a hop is unstable (mean arrival rate >= mean service rate).
    """
    worst, prob, method = _prepare(arrival, services, names, dependent)
    if prob is None:
        assert worst is not None
        return Bound(delay, 0.0 if delay >= worst else 1.0, math.nan, method, DeterministicDetail(worst))
    dv = delay - prob.lat
    if dv < 0:  # below the latencies: the trivial bound 1
        return Bound(delay, 1.0, math.nan, method, TandemDetail(math.nan, 0.0))
    val, th, tau = prob.optimise(dv)
    eps = float(min(1.0, math.exp(min(val, 0.0))))
    return Bound(delay, eps, th, method, TandemDetail(tau, val))


def tandem_log_at(arrival: Arrival, services: Sequence[Service], delay: float, theta: float) -> float:
    """The log of the (independent) MGF tandem bound on ``P(D > delay)`` at one ``theta``.

    Unclipped and not optimised over ``theta`` (``tau`` is chosen as in
    :func:`tandem_violation`); ``inf`` where ``theta`` gives no finite bound, 0 below the
    latencies. Any ``theta`` gives a valid bound, so this is a cheap sufficient test, e.g. to
    search reserved rates at a fixed ``theta``.
    """
    tandem = Tandem(tuple(services), arrival.time)
    try:
        hops, lat = tandem.merged()
    except NoFiniteBound:
        return math.inf
    dv = delay - lat - tandem.latency
    if dv < 0:
        return 0.0
    if not 0 < theta < min([arrival.theta_max, *(h.theta_max for h in hops)]):
        return math.inf
    k = arrival.kappa(theta)
    if not math.isfinite(k):
        return math.inf
    gam = [h.gamma(theta) for h in hops]
    if not all(g > k for g in gam):
        return math.inf
    base = arrival.beta(theta) + sum(h.delta(theta) for h in hops)
    return tandem_log_bound(k, base, gam, dv, tandem.time == "discrete")[0]


def _invert(prob: _Problem, epsilon: float) -> float:
    """The smallest virtual delay (s or slots) at which the optimised log bound of ``prob`` reaches ``epsilon``."""
    discrete = prob.discrete
    cache: dict[float, tuple[float, float, float]] = {}

    def logp(dv: float) -> float:
        if dv not in cache:
            cache[dv] = prob.optimise(dv)
        return cache[dv][0]

    def p(dv: float) -> float:
        return math.exp(min(logp(dv), 0.0))

    log_eps = math.log(epsilon)
    val0 = logp(0.0)
    # initial scale: delay at which the bound at a moderate theta reaches epsilon
    th_mid = prob.theta_hi * 0.5
    guess = max(-log_eps / max(min(h.gamma(th_mid) for h in prob.hops), 1e-300), 1e-9)
    if discrete or not math.isfinite(val0):
        return invert_delay(lambda x: p(x), epsilon, 0.0, guess, discrete=discrete)
    if val0 <= log_eps:
        return 0.0
    # continuous: the unclipped log bound is near-linear in the delay, so false position on it
    # (bracket_root) converges in a few steps. First step: the smaller of the moderate-theta
    # guess and the delay where the zero-delay optimum decays (at its theta's slowest hop
    # rate) to epsilon; a small first step only costs doublings, which give a tight bracket.
    th0 = cache[0.0][1]
    gmin = min(h.gamma(th0) for h in prob.hops)
    step = (val0 - log_eps) / gmin if gmin > 0 else math.nan
    step = min(step, guess) if math.isfinite(step) and step > 0 else guess
    a, ga = 0.0, val0 - log_eps
    gb = logp(step) - log_eps
    while gb > 0:
        a, ga = step, gb
        step *= 2.0
        if step > 1e15:
            raise NoFiniteBound(f"no finite delay reaches epsilon={epsilon:g}")
        gb = logp(step) - log_eps
    return bracket_root(lambda x: logp(x) - log_eps, a, step, ga, gb, 1e-4)


def tandem_delay(
    arrival: Arrival,
    services: Sequence[Service],
    epsilon: float,
    *,
    names: Sequence[str] | None = None,
    dependent: bool = False,
) -> Bound:
    """Smallest delay ``d`` (s or slots, including latencies) with the MGF bound ``P(D > d) <= epsilon``.

    ``dependent`` as in :func:`tandem_violation`; the result's ``detail`` as there.
    """
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    worst, prob, method = _prepare(arrival, services, names, dependent)
    if prob is None:
        assert worst is not None
        return Bound(worst, epsilon, math.nan, method, DeterministicDetail(worst))
    dv = _invert(prob, epsilon)
    val, th, tau = prob.optimise(dv)
    return Bound(dv + prob.lat, float(min(1.0, math.exp(min(val, 0.0)))), th, method, TandemDetail(tau, val))


def backlog_violation(arrival: Arrival, service: Service, backlog: float) -> BacklogBound:
    """Optimised MGF bound on ``P(B > backlog)`` at a single hop (``backlog`` in bits).

    The tandem bound of one hop at virtual delay 0 with ``theta*backlog`` taken off the exponent
    (``P(B > b) <= E[exp(theta*(A - S))] exp(-theta*b)``, minimised over ``theta``).

    Raises
    ------
    NoFiniteBound
        If the hop is unstable.
    """
    prob = _Problem(arrival, Tandem((service,), arrival.time))
    val, th, tau = prob.optimise(0.0, backlog)
    return BacklogBound(backlog, float(min(1.0, math.exp(min(val, 0.0)))), th, TandemDetail(tau, val))
