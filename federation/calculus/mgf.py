"""MGF-based stochastic network calculus: single-hop and tandem delay and backlog bounds.

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
safeguarded false-position root finder (:func:`bracket_root`).

References
----------
M. Fidler, IWQoS 2006 (end-to-end MGF calculus); F. Ciucu, A. Burchard, J. Liebeherr, "Scaling
properties of statistical end-to-end bounds in the network calculus", IEEE Trans. IT 2006;
S. Bondorf, P. Nikolaus, J. Schmitt, the DISCO SNC MGF toolbox (the baseline in
:func:`baseline_tandem_violation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.signal import lfilter

from federation.calculus.arrivals import Arrival
from federation.calculus.services import ConstantRate, Leftover, Service
from federation.errors import InputError, NoFiniteBound
from federation.specs import TimeModel

__all__ = [
    "Bound",
    "Tandem",
    "log_geometric_tail",
    "tandem_violation",
    "tandem_delay",
    "tandem_log_at",
    "backlog_violation",
    "deterministic_delay",
    "baseline_tandem_violation",
    "baseline_tandem_delay",
    "invert_delay",
    "bracket_root",
    "maxplus_violation",
    "maxplus_log_at",
    "product_form_violation",
]


@dataclass(frozen=True)
class Bound:
    """A tail bound ``P(D > delay) <= epsilon``.

    Attributes
    ----------
    delay : float
        Delay (s or slots), including the latencies.
    epsilon : float
        Violation probability bound in [0, 1].
    theta : float
        Optimising theta (1/bits); nan when not applicable (deterministic bound).
    method : str
        ``"mgf-tandem"``, ``"martingale"``, ``"deterministic"`` or ``"mgf-baseline"``.
    detail : dict
        Free parameters of the optimum (e.g. ``tau``).
    """

    delay: float
    epsilon: float
    theta: float
    method: str
    detail: dict = field(default_factory=dict, compare=False)


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


def _hop_names(services: Sequence[Service]) -> list[str]:
    return [f"hop {i + 1}" for i in range(len(services))]


def _check_stable(arrival: Arrival, services: Sequence[Service], names: Sequence[str] | None = None) -> None:
    names = list(names) if names is not None else _hop_names(services)
    for name, s in zip(names, services):
        if arrival.mean_rate >= s.mean_rate:
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


def _log_bound_of(k: float, base: float, gam: Sequence[float], d_virtual: float, discrete: bool) -> tuple[float, float]:
    """(log bound, tau) of the tandem bound from its exponents at one theta.

    ``k`` = ``kappa_A(theta)``, ``base`` = ``beta_A + sum delta_h`` (minus ``theta*backlog``),
    ``gam`` = the hops' ``gamma_h(theta)`` (all ``> k``); see the module notes.
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
        _check_stable(arrival, tandem.services, names)
        stoch, r, lat = tandem.split()
        self.hops: list[Service] = list(stoch)
        if not math.isnan(r):
            self.hops.append(ConstantRate(r, 0.0, tandem.time))
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
        return _log_bound_of(k, base, gam, d_virtual, self.discrete)

    def optimise(self, d_virtual: float, backlog: float = 0.0) -> tuple[float, float, float]:
        """(log bound, theta, tau) minimised over theta."""
        hi = self.theta_hi
        lo = hi * 1e-6
        grid = np.exp(np.linspace(math.log(lo), math.log(hi), 11))
        vals = [self.log_bound(float(t), d_virtual, backlog)[0] for t in grid]
        i = int(np.argmin(vals))
        a = math.log(grid[max(i - 1, 0)])
        b = math.log(grid[min(i + 1, len(grid) - 1)])
        res = minimize_scalar(
            lambda x: self.log_bound(math.exp(x), d_virtual, backlog)[0],
            bounds=(a, b),
            method="bounded",
            options={"xatol": 1e-2},
        )
        if res.fun < vals[i]:
            th = math.exp(res.x)
        else:
            th = float(grid[i])
        val, tau = self.log_bound(th, d_virtual, backlog)
        return val, th, tau


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
        (``method="mgf-tandem-hoelder"``).

    Returns
    -------
    Bound
        ``epsilon`` in [0, 1]; ``method`` is ``"deterministic"`` for a token bucket through
        deterministic hops (``epsilon`` 0 or 1), else ``"mgf-tandem"``.

    Raises
    ------
    NoFiniteBound
        If a hop is unstable (mean arrival rate >= mean service rate).
    """
    tandem = Tandem(tuple(services), arrival.time)
    if arrival.deterministic and all(s.deterministic for s in services):
        _check_stable(arrival, services, names)
        dd = deterministic_delay(arrival, tandem)
        return Bound(delay, 0.0 if delay >= dd else 1.0, math.nan, "deterministic", {"worst_case": dd})
    method = "mgf-tandem"
    if dependent:
        _check_stable(arrival, services, names)
        arrival, services = _hoelder(arrival, services)
        tandem = Tandem(tuple(services), arrival.time)
        method = "mgf-tandem-hoelder"
    prob = _Problem(arrival, tandem, names)
    dv = delay - prob.lat
    if dv < 0:
        return Bound(delay, 1.0, math.nan, method, {"reason": "delay below the latencies"})
    val, th, tau = prob.optimise(dv)
    eps = float(min(1.0, math.exp(min(val, 0.0))))
    return Bound(delay, eps, th, method, {"tau": tau, "log_epsilon": val})


def tandem_log_at(arrival: Arrival, services: Sequence[Service], delay: float, theta: float) -> float:
    """The log of the (independent) MGF tandem bound on ``P(D > delay)`` at one ``theta``.

    Unclipped and not optimised over ``theta`` (``tau`` is chosen as in
    :func:`tandem_violation`); ``inf`` where ``theta`` gives no finite bound, 0 below the
    latencies. Any ``theta`` gives a valid bound, so this is a cheap sufficient test, e.g. to
    search reserved rates at a fixed ``theta``.
    """
    tandem = Tandem(tuple(services), arrival.time)
    try:
        stoch, r, lat = tandem.split()
    except NoFiniteBound:
        return math.inf
    hops: list[Service] = list(stoch)
    if not math.isnan(r):
        hops.append(ConstantRate(r, 0.0, tandem.time))
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
    return _log_bound_of(k, base, gam, dv, tandem.time == "discrete")[0]


def bracket_root(g, a: float, b: float, ga: float, gb: float, rtol: float, max_evals: int = 200) -> float:
    """Smallest ``x`` in ``(a, b]`` with ``g(x) <= 0`` to ``rtol`` relative, for non-increasing ``g``.

    ``ga = g(a) > 0 >= gb = g(b)`` (``ga`` may be ``inf``). Safeguarded false position with the
    Illinois modification (an end kept twice has its value halved, so concave or convex ``g``
    still converges from both sides): an interpolated step lands at least ``rtol*b/2`` inside the
    bracket (so a good estimate closes the bracket at the next step); a bisection (geometric when
    the bracket spans more than a factor 4) is taken when a value is not finite or the bracket
    did not halve over the last three steps. Returns the right end (where ``g <= 0`` was seen).
    """
    widths = [math.inf, math.inf, math.inf]
    fa, fb = ga, gb  # values used for interpolation (Illinois-scaled)
    last = ""
    for _ in range(max_evals):
        if b - a <= rtol * b:
            break
        interp = math.isfinite(fa) and math.isfinite(fb) and fa > fb and (b - a) <= 0.5 * widths[-3]
        if interp:
            m = a + (b - a) * fa / (fa - fb)
            h = 0.5 * rtol * b
            m = min(max(m, a + h), b - h)
            if not a < m < b:
                interp = False
        if not interp:
            m = math.sqrt(a * b) if a > 0 and b > 4.0 * a else 0.5 * (a + b)
        widths.append(b - a)
        gm = g(m)
        if gm <= 0:
            b, fb = m, gm
            if last == "b":
                fa *= 0.5
            last = "b"
        else:
            a, fa = m, gm
            if last == "a":
                fb *= 0.5
            last = "a"
    return b


def invert_delay(
    prob_of_delay: Callable[[float], float], epsilon: float, lo: float, hi: float, *, discrete: bool, rtol: float = 1e-4
) -> float:
    """Smallest delay ``d`` in ``[lo, inf)`` with ``prob_of_delay(d) <= epsilon`` (to ``rtol``).

    Doubling to a bracket, then :func:`bracket_root` on ``log prob_of_delay`` (continuous time)
    or an integer bisection (discrete time).

    ``prob_of_delay`` must be non-increasing. In discrete time the answer is an integer offset
    from ``lo`` (the latency).
    """
    seen: dict[float, float] = {}

    def prob(x: float) -> float:  # memoised prob_of_delay
        if x not in seen:
            seen[x] = prob_of_delay(x)
        return seen[x]

    if prob(lo) <= epsilon:
        return lo
    step = max(hi - lo, 1e-12)
    a = 0.0
    while prob(lo + step) > epsilon:
        a = step
        step *= 2.0
        if step > 1e15:
            raise NoFiniteBound(f"no finite delay reaches epsilon={epsilon:g}")
    b = step
    if discrete:
        a, b = math.floor(a), math.ceil(b)
        while b - a > 1:
            m = (a + b) // 2
            if prob(lo + m) <= epsilon:
                b = m
            else:
                a = m
        return lo + b
    # Safeguarded false position on log p (near-linear in the delay for exponential tails).
    log_eps = math.log(epsilon)

    def g(x: float) -> float:
        p = prob(lo + x)
        return (math.log(p) if p > 0 else -math.inf) - log_eps

    b = bracket_root(g, a, b, g(a), g(b), rtol)
    return lo + b


def tandem_delay(
    arrival: Arrival,
    services: Sequence[Service],
    epsilon: float,
    *,
    names: Sequence[str] | None = None,
    dependent: bool = False,
) -> Bound:
    """Smallest delay ``d`` (s or slots, including latencies) with the MGF bound ``P(D > d) <= epsilon``.

    ``dependent`` as in :func:`tandem_violation`.
    """
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    tandem = Tandem(tuple(services), arrival.time)
    if arrival.deterministic and all(s.deterministic for s in services):
        _check_stable(arrival, services, names)
        dd = deterministic_delay(arrival, tandem)
        return Bound(dd, epsilon, math.nan, "deterministic", {"worst_case": dd})
    method = "mgf-tandem"
    if dependent:
        _check_stable(arrival, services, names)
        arrival, services = _hoelder(arrival, services)
        tandem = Tandem(tuple(services), arrival.time)
        method = "mgf-tandem-hoelder"
    prob = _Problem(arrival, tandem, names)
    discrete = tandem.time == "discrete"
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
        dv = invert_delay(lambda x: p(x), epsilon, 0.0, guess, discrete=discrete)
    elif val0 <= log_eps:
        dv = 0.0
    else:
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
        dv = bracket_root(lambda x: logp(x) - log_eps, a, step, ga, gb, 1e-4)
    val, th, tau = prob.optimise(dv)
    return Bound(dv + prob.lat, float(min(1.0, math.exp(min(val, 0.0)))), th, method, {"tau": tau})


def backlog_violation(arrival: Arrival, service: Service, backlog: float) -> Bound:
    """Optimised MGF bound on ``P(B > backlog)`` at a single hop (``backlog`` in bits).

    ``Bound.delay`` carries the backlog level here.
    """
    prob = _Problem(arrival, Tandem((service,), arrival.time))
    val, th, tau = prob.optimise(0.0, backlog)
    return Bound(backlog, float(min(1.0, math.exp(min(val, 0.0)))), th, "mgf-backlog", {"tau": tau})


# --------------------------------------------------------------------------------------------
# Baseline: the standard MGF tandem bound as published toolboxes compute it
# --------------------------------------------------------------------------------------------


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
        if g_net is None:
            g_net, d_net = g, dd
            continue
        lo_g, hi_g = min(g_net, g), max(g_net, g)
        if hi_g - lo_g < theta * delta:
            lo_g = hi_g - theta * delta  # slack: the net rate is min R - delta
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
        return Bound(delay, 1.0, math.nan, "mgf-baseline")
    _check_stable(arrival, services)
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
    return Bound(delay, float(min(1.0, math.exp(min(best, 0.0)))), best_th, "mgf-baseline")


def baseline_tandem_delay(arrival: Arrival, services: Sequence[Service], epsilon: float) -> Bound:
    """Smallest delay with the baseline bound ``<= epsilon``."""
    lat = sum(s.latency for s in services)
    discrete = arrival.time == "discrete"

    def p(dv: float) -> float:
        return baseline_tandem_violation(arrival, services, lat + dv).epsilon

    d0 = max(arrival.packet_size / max(min(s.mean_rate for s in services), 1e-300), 1e-9)
    dv = invert_delay(p, epsilon, 0.0, d0 * 10, discrete=discrete, rtol=1e-3)
    return Bound(dv + lat, p(dv), math.nan, "mgf-baseline")


# --------------------------------------------------------------------------------------------
# Continuous time, Poisson packets: the max-plus (packet-domain) tandem bound
# --------------------------------------------------------------------------------------------


def _maxplus_parts(arrival: Arrival, services: Sequence[Service]):
    """(lambda, [log-MGF of a packet's service time per hop]) or None when not applicable."""
    from federation.calculus.arrivals import PoissonArrival
    from federation.calculus.services import ExpService

    if not isinstance(arrival, PoissonArrival) or arrival.time != "continuous" or arrival.size != "det":
        return None
    size = arrival.mean_size
    funcs = []
    for s in services:
        if isinstance(s, ConstantRate):
            funcs.append((lambda r: (lambda th: th * size / r, math.inf))(s.rate))
        elif isinstance(s, ExpService) and s.time == "continuous" and s.packet_size == size:
            mu = s.completion_rate
            funcs.append((lambda m: (lambda th: -math.log1p(-th / m) if th < m else math.inf, m))(mu))
        else:
            return None
    return arrival.rate, funcs


def maxplus_log_at(arrival: Arrival, services: Sequence[Service], delay: float, theta: float) -> float | None:
    """The log of the :func:`maxplus_violation` bound at one ``theta`` (unclipped; ``inf`` outside
    the feasible range), or ``None`` when the bound does not apply. Cheap: used to search rates at
    a fixed ``theta``.
    """
    parts = _maxplus_parts(arrival, services)
    if parts is None:
        return None
    lam, funcs = parts
    d = delay - sum(s.latency for s in services)
    if d < 0:
        return 0.0
    return _maxplus_log(lam, funcs, d, theta)


def _maxplus_log(lam: float, funcs, d: float, theta: float) -> float:
    """``log`` of the max-plus bound at ``theta`` for virtual delay ``d`` (``inf`` when infeasible)."""
    if not 0 < theta < min(f[1] for f in funcs):
        return math.inf
    lr = math.log(lam / (lam + theta))
    tot = -theta * d + lr
    for f, _ in funcs:
        g = f(theta)
        x = lr + g
        if not x < 0:
            return math.inf
        tot += g - math.log(-math.expm1(x))
    return tot


def maxplus_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound | None:
    """Packet-domain MGF bound for Poisson packets (fixed size) through constant-rate / exponential hops.

    In max-plus form the last departure of packet ``N`` is
    ``max_{k_0<=...<=k_{H-1}<=N} A_{k_0} + sum_h sum_{j=k_{h-1}}^{k_h} s_{h,j}``; the union bound
    over the packet indices (a discrete set: no time discretisation) gives, for the virtual delay
    at a time-stationary ``t`` (``t - A_N ~ Exp(lambda)`` independent of the past),

    ``P(V > d) <= exp(-theta*d) * lambda/(lambda+theta) * prod_h M_h/(1 - lambda*M_h/(lambda+theta))``

    with ``M_h = E[exp(theta*s_h)]`` (``exp(theta*L/R)`` or ``mu/(mu-theta)``). It bounds the
    store-and-forward packet tandem, hence also the fluid model (which serves at least as fast).
    ``None`` when not applicable (other arrivals, cross traffic, discrete time).
    """
    parts = _maxplus_parts(arrival, services)
    if parts is None:
        return None
    lam, funcs = parts
    lat = sum(s.latency for s in services)
    d = delay - lat
    if d < 0:
        return Bound(delay, 1.0, math.nan, "mgf-maxplus")
    cap = min(f[1] for f in funcs)

    def logb(theta: float) -> float:
        return _maxplus_log(lam, funcs, d, theta)

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
    res = minimize_scalar(lambda x: logb(math.exp(x)), bounds=(math.log(hi) - 20.0, math.log(hi)),
                          method="bounded", options={"xatol": 1e-6})
    th = math.exp(res.x)
    val = logb(th)
    return Bound(delay, float(min(1.0, math.exp(min(val, 0.0)))), th, "mgf-maxplus")


def product_form_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound | None:
    """Exact sojourn tail of a Jackson tandem, a bound on the virtual delay.

    Poisson packets of fixed size through exponential-service hops only (continuous time, no cross
    traffic) form a tandem of M/M/1 queues; a packet's sojourn times at the hops are independent
    ``Exp(mu_h - lambda)`` (Reich 1957, Burke's theorem), so its end-to-end sojourn is
    hypoexponential. A Poisson arrival at ``t`` sees the time-stationary state (PASTA) and leaves
    after all earlier work (FIFO, no overtaking), so ``P(V(t) > d) <= P(sum_h Exp(mu_h - lambda) > d)``.
    ``None`` when not applicable.
    """
    from scipy.linalg import expm

    from federation.calculus.arrivals import PoissonArrival
    from federation.calculus.services import ExpService

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
        return Bound(delay, 1.0, math.nan, "product-form")
    h = len(rates)
    t = np.diag(-rates) + np.diag(rates[:-1], 1)
    p = float(expm(t * d)[0].sum())
    return Bound(delay, float(min(1.0, max(p, 0.0))), math.nan, "product-form", {"sojourn_rates": rates.tolist(), "hops": h})
