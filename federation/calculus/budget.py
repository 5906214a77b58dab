"""Risk-budget decomposition: per-domain sub-budgets ``(d_i, eps_i)`` of an end-to-end ``(d, eps)``.

If every domain ``i`` meets ``P(D_i > d_i) <= eps_i`` then, by the union bound,
``P(sum D_i > sum d_i) <= sum eps_i``; so a split with ``sum d_i <= d`` and ``sum eps_i <= eps``
makes each domain accountable for its share.

Per-domain tails. At a fixed ``theta`` the single-hop MGF bound of domain ``i`` is exponential in
its delay: ``eps_i(d_i) = M_i * exp(-g_i * (d_i - T_i))`` with ``g_i = theta*R_i(theta)`` and
``M_i = exp(theta*(sigma_in_i + sigma_i)) / (1 - exp(-theta*(R_i - rho)*tau)) * exp(theta*rho*tau)``,
where ``sigma_in_i`` is the burst of the flow at the domain's ingress (the output bound of the
upstream domains). Minimising ``sum eps_i(d_i)`` subject to ``sum d_i = d`` is convex; its KKT
conditions ``g_i * M_i * exp(-g_i*(d_i - T_i)) = lambda`` have the closed form of
:func:`split_closed_form` (water-filling on the active set). :func:`split_numeric` solves the
same program for arbitrary log-convex tails with ``scipy.optimize``; :func:`min_cost_rates`
chooses reserved rates minimising ``sum c_i r_i`` subject to an end-to-end target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from federation.calculus.arrivals import Arrival
from federation.errors import InputError, NoFiniteBound, TrefedError

__all__ = [
    "ExpTail",
    "RiskSplit",
    "exponential_tails",
    "hop_bounds",
    "split_closed_form",
    "split_numeric",
    "split_equal",
    "decompose",
    "min_cost_rates",
]


@dataclass(frozen=True)
class ExpTail:
    """``eps(d) = min(1, exp(log_prefactor - decay * (d - offset)))`` for ``d >= offset`` (else 1).

    The prefactor is kept as its log: at a large theta it is far beyond the float range, and
    capping it would understate the tail.
    """

    log_prefactor: float
    decay: float
    offset: float = 0.0

    @property
    def prefactor(self) -> float:
        """``exp(log_prefactor)`` (``inf`` beyond the float range)."""
        return math.exp(self.log_prefactor) if self.log_prefactor < 709.0 else math.inf

    def __call__(self, d: float) -> float:
        if d < self.offset:
            return 1.0
        v = self.log(d)
        return 1.0 if v >= 0 else math.exp(v)

    def log(self, d: float) -> float:
        """Unclipped ``log eps(d)``."""
        return self.log_prefactor - self.decay * (d - self.offset)


@dataclass(frozen=True)
class RiskSplit:
    """A split of ``(delay, epsilon)`` into per-domain ``(delays[i], epsilons[i])``.

    ``model_epsilons[i]`` is domain ``i``'s modelled tail at ``delays[i]``; ``feasible`` says
    whether ``sum(model_epsilons) <= epsilon`` (every domain can meet its budget). ``epsilons``
    always sum to at most ``epsilon`` (the modelled tails scaled to the budget).
    """

    delays: tuple[float, ...]
    epsilons: tuple[float, ...]
    model_epsilons: tuple[float, ...]
    feasible: bool


def exponential_tails(arrival: Arrival, services: Sequence, theta: float) -> list[ExpTail]:
    """Per-domain exponential tails at ``theta`` (see the module notes); one per service.

    The flow's burst grows domain by domain by the MGF output bound
    ``beta_out = beta_in + delta_i + kappa*tau - log(1 - exp(-(gamma_i - kappa)*tau))``
    (``tau`` = 1 slot in discrete time, ``1/(gamma_i - kappa)`` in continuous time).
    """
    discrete = arrival.time == "discrete"
    k = arrival.kappa(theta)
    beta_in = arrival.beta(theta)
    out: list[ExpTail] = []
    for s in services:
        g = s.gamma(theta)
        if not g > k:
            raise NoFiniteBound(f"theta={theta:g}: a domain has gamma <= kappa (unstable at this theta)")
        tau = 1.0 if discrete else 1.0 / (g - k)
        lead = 0.0 if discrete else k * tau
        logm = beta_in + s.delta(theta) + lead - math.log(-math.expm1(-(g - k) * tau))
        out.append(ExpTail(logm, g, s.latency))
        beta_in = logm
    return out


#: Points of the log-spaced theta grid of :func:`hop_bounds`, and its span below theta_max (decades).
_GRID = 400
_DECADES = 14.0


def hop_bounds(arrival: Arrival, services: Sequence, delays: Sequence[float]) -> tuple[float, ...]:
    """Per hop, the smallest bound on ``P(D_i > delays[i])`` of the hop's exponential tail
    (:func:`exponential_tails`: the flow's burst grown by the output bound of the hops before it)
    over a log-spaced grid of theta (``_GRID`` points over ``_DECADES`` decades below the largest
    theta where every hop is stable). Each grid value is a valid bound, so the result is valid
    whatever the grid (only possibly less tight); 1.0 where no theta gives a finite bound.

    ``services`` as the bound saw them (with :func:`~federation.calculus.compose.packetized`'s
    latencies for a packet tandem); ``delays`` in s (slots in discrete time).
    """
    cap = min([arrival.theta_max, *(s.theta_max for s in services)])
    top = math.log10(cap) if math.isfinite(cap) else 0.0
    if not math.isfinite(cap):  # find the stable range by doubling from 1
        hi = 1.0
        for _ in range(200):
            try:
                exponential_tails(arrival, services, hi * 2)
                hi *= 2
            except TrefedError:
                break
        top = math.log10(hi)
    best = np.zeros(len(services))  # log of the best bound so far (0: the trivial bound 1)
    for theta in np.logspace(top - _DECADES, top, _GRID, endpoint=False):
        try:
            tails = exponential_tails(arrival, services, float(theta))
        except (TrefedError, OverflowError, ValueError):
            continue
        for i, (t, d) in enumerate(zip(tails, delays)):
            if d >= t.offset:
                best[i] = min(best[i], t.log(d))
    return tuple(float(math.exp(b)) for b in best)  # a log below -745 is a bound of 0.0 (underflow)


def split_closed_form(tails: Sequence[ExpTail], delay: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``sum_i eps_i(d_i)`` subject to ``sum d_i = delay``, ``d_i >= offset_i`` (exact KKT).

    With ``x_i = d_i - offset_i`` the optimum is ``x_i = max(0, log(g_i M_i / lambda) / g_i)``
    with ``lambda`` fixed by ``sum x_i = delay - sum offset_i`` (water-filling over the active set).
    Returns ``(d, eps)`` arrays (eps unclipped).
    """
    g = np.array([t.decay for t in tails], dtype=float)
    logm = np.array([t.log_prefactor for t in tails], dtype=float)
    off = np.array([t.offset for t in tails], dtype=float)
    budget = delay - off.sum()
    if budget < 0:
        raise InputError(f"delay(={delay:g}) is below the sum of the domains' latencies ({off.sum():g})")
    c = np.log(g) + logm  # log(g_i M_i)
    active = np.ones(len(tails), dtype=bool)
    x = np.zeros(len(tails))
    for _ in range(len(tails) + 1):
        if budget <= 0 or not active.any():  # nothing to share (delay at the latencies; rounding)
            x = np.zeros(len(tails))
            break
        inv = 1.0 / g[active]
        loglam = (np.sum(c[active] * inv) - budget) / np.sum(inv)
        x = np.zeros(len(tails))
        x[active] = (c[active] - loglam) / g[active]
        if np.all(x[active] >= -1e-15):
            break
        active &= x > 0
    x = np.maximum(x, 0.0)
    x *= budget / x.sum() if x.sum() > 0 else 0.0
    d = off + x
    with np.errstate(over="ignore"):  # inf: a tail above 1 (decompose clips it)
        eps = np.exp(logm - g * x)
    return d, eps


def split_equal(tails: Sequence[ExpTail], delay: float) -> tuple[np.ndarray, np.ndarray]:
    """The naive split: each domain gets its latency plus an equal share of the rest."""
    off = np.array([t.offset for t in tails], dtype=float)
    x = np.full(len(tails), (delay - off.sum()) / len(tails))
    d = off + x
    with np.errstate(over="ignore"):
        return d, np.exp(np.array([t.log(di) for t, di in zip(tails, d)]))


def split_numeric(
    log_tails: Sequence[Callable[[float], float]],
    delay: float,
    offsets: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``sum_i exp(log_tails[i](d_i))`` s.t. ``sum d_i = delay``, ``d_i >= offsets[i]`` (SLSQP).

    ``log_tails[i]`` must be convex and non-increasing (log-convex tails), e.g. an optimised
    single-hop bound. Solved in the log-sum-exp form for numerical robustness.
    """
    from scipy.optimize import minimize  # 0.5 s to import: not on the path of the bounds (trefed bound)

    n = len(log_tails)
    off = np.zeros(n) if offsets is None else np.asarray(offsets, dtype=float)
    budget = delay - off.sum()
    if budget < 0:
        raise InputError(f"delay(={delay:g}) is below the sum of the offsets ({off.sum():g})")
    scale = budget if budget > 0 else 1.0

    def obj(y: np.ndarray) -> float:
        v = np.array([f(o + yi * scale) for f, o, yi in zip(log_tails, off, y)])
        m = float(np.max(v))
        return m + math.log(float(np.sum(np.exp(v - m))))

    y0 = np.full(n, 1.0 / n)
    res = minimize(
        obj,
        y0,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda y: np.sum(y) - 1.0}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    y = np.clip(res.x, 0.0, None)
    y /= y.sum()
    d = off + y * budget
    return d, np.array([math.exp(f(di)) for f, di in zip(log_tails, d)])


def decompose(tails: Sequence[ExpTail], delay: float, epsilon: float) -> RiskSplit:
    """Optimal split of ``(delay, epsilon)`` for exponential per-domain tails.

    The delays minimise the sum of the modelled tails; the epsilons are the modelled tails scaled
    so that they sum to exactly ``epsilon`` (slack shared in proportion, or, when infeasible,
    each domain's budget below its modelled tail in the same proportion).
    """
    d, model = split_closed_form(tails, delay)
    model = np.minimum(model, 1.0)
    tot = float(model.sum())
    eps = model * (epsilon / tot) if tot > 0 else np.full(len(tails), epsilon / len(tails))
    # guard the sums against rounding
    d = d * min(1.0, delay / d.sum()) if d.sum() > 0 else d
    eps = eps * min(1.0, epsilon / eps.sum()) if eps.sum() > 0 else eps
    return RiskSplit(tuple(map(float, d)), tuple(map(float, eps)), tuple(map(float, model)), tot <= epsilon)


def min_cost_rates(
    log_violation: Callable[[np.ndarray], float],
    log_epsilon: float,
    lower: np.ndarray,
    upper: np.ndarray,
    costs: np.ndarray,
) -> np.ndarray:
    """Minimise ``costs @ r`` subject to ``log_violation(r) <= log_epsilon``, ``lower < r <= upper``.

    ``log_violation`` is the (optimised) log bound as a function of the rate vector and must be
    non-increasing in every rate. Starts from the cheapest feasible *common scale* of
    ``upper`` (bisection), then improves with SLSQP in log-rate space; the result is re-checked
    and the feasible start is returned if the solver's point is not feasible.

    Raises :class:`NoFiniteBound` if even ``upper`` is infeasible.
    """
    from scipy.optimize import minimize  # 0.5 s to import: not on the path of the bounds (trefed bound)

    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    costs = np.asarray(costs, dtype=float)

    def ok(r: np.ndarray) -> bool:
        try:
            return log_violation(r) <= log_epsilon
        except NoFiniteBound:
            return False

    if not ok(upper):
        raise NoFiniteBound("infeasible: the target is not met even at the maximum rates")
    # common interpolation r(s) = lower + s*(upper - lower), bisection on s
    a, b = 0.0, 1.0
    for _ in range(50):
        m = 0.5 * (a + b)
        if ok(lower + m * (upper - lower)):
            b = m
        else:
            a = m
    start = lower + b * (upper - lower)
    # also a common rate: r_i = min(upper_i, max(lower_i, x))
    lo_x, hi_x = float(np.min(lower)), float(np.max(upper))
    for _ in range(60):
        m = 0.5 * (lo_x + hi_x)
        if ok(np.clip(np.full_like(lower, m), lower * (1 + 1e-9), upper)):
            hi_x = m
        else:
            lo_x = m
    common = np.clip(np.full_like(lower, hi_x), lower * (1 + 1e-9), upper)
    if ok(common) and costs @ common < costs @ start:
        start = common
    x0 = np.log(start)
    lb = np.log(lower * (1 + 1e-6))
    ub = np.log(upper)
    cscale = float(costs @ start)

    def cons(x: np.ndarray) -> float:
        try:
            return log_epsilon - log_violation(np.exp(x))
        except NoFiniteBound:
            return -50.0

    try:
        res = minimize(
            lambda x: float(costs @ np.exp(x)) / cscale,
            x0,
            method="SLSQP",
            bounds=list(zip(lb, ub)),
            constraints=[{"type": "ineq", "fun": cons}],
            options={"ftol": 1e-9, "maxiter": 100},
        )
        cand = np.exp(res.x)
    except (ValueError, FloatingPointError):  # pragma: no cover - solver failure
        cand = start
    if ok(cand) and costs @ cand <= costs @ start:
        return cand
    # nudge the solver's point into feasibility along the segment to the feasible start
    a, b = 0.0, 1.0
    for _ in range(40):
        m = 0.5 * (a + b)
        if ok(cand + m * (start - cand)):
            b = m
        else:
            a = m
    best = cand + b * (start - cand)
    return best if ok(best) and costs @ best <= costs @ start else start
