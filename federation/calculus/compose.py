"""TRE composition: a tenant's end-to-end envelope from the domains on its path.

Each domain on the path contributes a :class:`DomainSlice` (from its TRE and the tenant's
reservation): a rate-latency service at the reserved rate (or a random-service compute domain),
a propagation delay, a loss and an inference-error probability. :func:`compose_path` returns the
tight composed delay bound (the smallest of the MGF tandem bound and, where applicable, the
martingale bound; the deterministic bound for a token bucket through deterministic hops), its
risk-budget decomposition into per-domain ``(d_i, eps_i)``, and the total fidelity budget
``eps_total = eps_delay + p_loss + e_model``.

What is bounded: the end-to-end *virtual delay* of the tenant's traffic (the time until all work
that arrived by a time ``t`` has left the last domain, ``t`` time-stationary), plus every
domain's latency and propagation delay. Loss is ``1 - prod(1 - p_loss_i)``; inference errors
add over the compute domains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, cast

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from federation.calculus.arrivals import Arrival, PoissonArrival
from federation.calculus.budget import decompose, exponential_tails
from federation.calculus.martingale import martingale_delay, martingale_violation
from federation.calculus.mgf import (
    Bound,
    _log_bound_of,
    bracket_root,
    invert_delay,
    maxplus_violation,
    product_form_violation,
    tandem_delay,
    tandem_violation,
)
from federation.calculus.services import ConstantRate, ExpService, Service
from federation.errors import InputError, NoFiniteBound

__all__ = [
    "DomainSlice",
    "DomainBudget",
    "EndToEndEnvelope",
    "violation_bound",
    "delay_bound",
    "compose_path",
    "path_violation_probability",
    "plan_rates",
    "PLAN_MAX_SURROGATE",
    "PLAN_MAX_BOUNDS",
    "PLAN_MAX_DELAYS",
    "slice_services",
    "split_bound",
    "packetized",
]


@dataclass(frozen=True)
class DomainSlice:
    """One domain on a tenant's path, from its TRE and the tenant's reservation."""

    domain_id: str
    rate: float  # bits/s reserved for the tenant (rate R of its rate-latency service)
    latency: float = 0.0  # s, scheduler latency T of the rate-latency service
    propagation_delay: float = 0.0  # s, constant, added to the delay
    service: Literal["size", "exp"] = "size"  # "exp": i.i.d. exponential service times, mean size/rate
    loss_probability: float = 0.0  # probability a packet is lost in this domain
    error_probability: float = 0.0  # inference error probability (compute domains), else 0


@dataclass(frozen=True)
class DomainBudget:
    """A domain's sub-budget: ``P(D_i > delay) <= epsilon`` (delay in s)."""

    domain_id: str
    delay: float
    epsilon: float


@dataclass(frozen=True)
class EndToEndEnvelope:
    """The composed end-to-end envelope of a tenant's path."""

    delay: float  # s, bounded end-to-end delay at epsilon_delay (includes latencies + propagation)
    epsilon_delay: float  # P(D > delay) <= epsilon_delay
    theta: float  # optimising theta (1/bit; 1/s for "mgf-maxplus"; nan if not applicable)
    method: str  # "deterministic", "martingale", "martingale-sp", "mgf-tandem", "mgf-maxplus", "product-form"
    per_domain: tuple[DomainBudget, ...]  # sum d_i <= delay, sum eps_i <= epsilon_delay
    loss_probability: float  # 1 - prod(1 - p_loss_i)
    error_probability: float  # inference error (sum over compute domains)
    epsilon_total: float  # epsilon_delay + loss_probability + error_probability


def packetized(arrival: Arrival, services: Sequence[Service]) -> list[Service]:
    """The services with the packetizer latencies of a store-and-forward tandem (continuous time).

    A constant-rate hop that forwards whole packets of at most ``L`` bits offers
    ``[R t - L]^+ >= R [t - L/R]^+`` (Le Boudec and Thiran, Thm. 1.7.1), so the fluid bounds cover
    the packet tandem if every constant-rate hop but a last one gets the extra latency ``L/R``
    (the last hop's packetizer does not delay the last bit). ``L`` is the flow's packet size for
    fixed-size packets (Poisson ``size="det"``, a token bucket's ``packet_size``); fluid or
    exponential-size traffic is left unchanged (fluid model).
    """
    from federation.calculus.arrivals import PoissonArrival, TokenBucket

    if arrival.time != "continuous" or len(services) < 2:
        return list(services)
    if isinstance(arrival, PoissonArrival) and arrival.size == "det":
        size = arrival.mean_size
    elif isinstance(arrival, TokenBucket) and arrival.packet_size_ > 0:
        size = arrival.packet_size_
    else:
        return list(services)
    out: list[Service] = []
    for i, s in enumerate(services):
        last = i == len(services) - 1
        if isinstance(s, ConstantRate) and not last:
            s = replace(s, latency=s.latency + size / s.rate)
        out.append(s)
    return out


def violation_bound(
    arrival: Arrival,
    services: Sequence[Service],
    delay: float,
    *,
    names: Sequence[str] | None = None,
    dependent: bool = False,
) -> Bound:
    """The smallest valid bound on ``P(D > delay)`` over the methods that apply.

    Deterministic (token bucket through deterministic hops), martingale (single queues),
    MGF tandem, and for Poisson packets in continuous time the packet-domain max-plus and
    product-form bounds. In continuous time with fixed-size packets the fluid methods get the
    packetizer latencies (:func:`packetized`), so the result bounds the store-and-forward packet
    tandem as well as the fluid one. ``dependent=True``: the flow and the hops' services (e.g.
    one cross flow at several hops) may be dependent; only the Hölder MGF tandem bound applies.
    """
    fl = packetized(arrival, services)
    b = tandem_violation(arrival, fl, delay, names=names, dependent=dependent)
    if b.method == "deterministic" or dependent:
        return b
    for alt in (
        martingale_violation(arrival, fl, delay),
        maxplus_violation(arrival, services, delay),
        product_form_violation(arrival, services, delay),
    ):
        if alt is not None and alt.epsilon < b.epsilon:
            b = alt
    return b


def delay_bound(
    arrival: Arrival,
    services: Sequence[Service],
    epsilon: float,
    *,
    names: Sequence[str] | None = None,
    dependent: bool = False,
) -> Bound:
    """The smallest delay bound at ``epsilon`` over the methods of :func:`violation_bound`.

    The closed-form and cheap bounds are inverted first; the MGF tandem bound is inverted only
    if it beats them at their delay.
    """
    fl = packetized(arrival, services)
    if dependent or (arrival.deterministic and all(s.deterministic for s in services)):
        return tandem_delay(arrival, fl, epsilon, names=names, dependent=dependent)
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    best = martingale_delay(arrival, fl, epsilon)
    lat = sum(s.latency for s in services)
    scale = sum(arrival.packet_size / max(s.mean_rate, 1e-300) for s in services)
    for alt in (maxplus_violation, product_form_violation):
        if alt(arrival, services, lat) is None:
            continue
        hi = best.delay if best is not None else lat + 10.0 * scale

        def eps_at(x: float, alt: Callable[[Arrival, Sequence[Service], float], Bound | None] = alt) -> float:
            b = alt(arrival, services, x)
            assert b is not None  # applicable at lat, so at every delay
            return b.epsilon

        d = invert_delay(eps_at, epsilon, lat, max(hi, lat + 1e-12), discrete=False)
        if best is None or d < best.delay:
            best = alt(arrival, services, d)
    if best is not None:
        mgf = tandem_violation(arrival, fl, best.delay, names=names)
        if mgf.epsilon >= epsilon:
            return best
    b = tandem_delay(arrival, fl, epsilon, names=names)
    return b if best is None or b.delay < best.delay else best


def slice_services(path: Sequence[DomainSlice], traffic: Arrival) -> list[Service]:
    """The calculus services of a path (propagation folded into the constant latency)."""
    out: list[Service] = []
    for s in path:
        if not (s.rate > 0 and math.isfinite(s.rate)):
            raise InputError(f"domain {s.domain_id!r}: rate(={s.rate!r}) must be > 0 and finite")
        if s.latency < 0 or s.propagation_delay < 0:
            raise InputError(f"domain {s.domain_id!r}: latency and propagation_delay must be >= 0")
        lat = s.latency + s.propagation_delay
        if s.service == "exp":
            out.append(ExpService(s.rate, traffic.packet_size, lat, traffic.time))
        elif s.service == "size":
            out.append(ConstantRate(s.rate, lat, traffic.time))
        else:
            raise InputError(f"domain {s.domain_id!r}: service(={s.service!r}) must be size or exp")
    return out


def _check(path: Sequence[DomainSlice], traffic: Arrival, time: str) -> None:
    if not path:
        raise InputError("the path has no domains")
    if traffic.time != time:
        raise InputError(f"traffic is a {traffic.time}-time model but time={time!r}")
    for s in path:
        for name in ("loss_probability", "error_probability"):
            p = getattr(s, name)
            if not 0.0 <= p < 1.0:
                raise InputError(f"domain {s.domain_id!r}: {name}(={p!r}) must be in [0, 1)")
        if traffic.mean_rate >= s.rate:
            raise NoFiniteBound(
                f"domain {s.domain_id!r}: traffic mean rate {traffic.mean_rate:g} bits/s >= "
                f"reserved rate {s.rate:g} bits/s"
            )


def split_bound(
    ids: Sequence[str], traffic: Arrival, services: Sequence[Service], bound: Bound
) -> tuple[DomainBudget, ...]:
    """Per-domain ``(d_i, eps_i)`` of a composed ``bound`` (``sum d_i <= bound.delay``,
    ``sum eps_i <= bound.epsilon``), by :func:`federation.calculus.budget.decompose` on the domains'
    exponential tails at the bound's theta; for a deterministic bound, each domain gets its
    latency plus a share of the burst term in proportion to ``sigma/R_i`` and an equal share
    of epsilon.
    """
    ids = list(ids)
    path = ids
    if bound.method != "mgf-tandem" or not math.isfinite(bound.theta):
        theta = _split_theta(traffic, services, bound)
    else:
        theta = bound.theta
    if theta is None:
        # deterministic: latency + a share of the burst term proportional to sigma/R_i
        sig = traffic.beta(1.0)
        stand = np.array([sig / sv.gamma(1.0) for sv in services])
        lats = np.array([sv.latency for sv in services])
        rest = max(bound.delay - lats.sum(), 0.0)
        share = rest * stand / stand.sum() if stand.sum() > 0 else np.full(len(path), rest / len(path))
        d = lats + share
        e = bound.epsilon / len(path)
        return tuple(DomainBudget(i, float(di), e) for i, di in zip(ids, d))
    tails = exponential_tails(traffic, services, theta)
    sp = decompose(tails, bound.delay, bound.epsilon)
    return tuple(DomainBudget(i, d, e) for i, d, e in zip(ids, sp.delays, sp.epsilons))


def _split_theta(traffic: Arrival, services, bound: Bound) -> float | None:
    """A theta for the per-domain tails when the composed bound did not come from the MGF bound."""
    if traffic.deterministic and all(s.deterministic for s in services):
        return None
    try:
        return tandem_violation(traffic, services, bound.delay).theta
    except NoFiniteBound:  # pragma: no cover - checked before
        return None


def compose_path(
    path: Sequence[DomainSlice],
    traffic: Arrival,
    *,
    epsilon: float,
    time: Literal["continuous", "discrete"] = "continuous",
) -> EndToEndEnvelope:
    """Compose the end-to-end envelope of ``traffic`` through ``path`` at delay-violation ``epsilon``.

    Parameters
    ----------
    path : sequence of DomainSlice
        The domains in order.
    traffic : Arrival
        The tenant's traffic (bits, bits/s), e.g. ``TokenBucket(sigma, rho)``.
    epsilon : float
        Target delay-violation probability in (0, 1).
    time : {"continuous", "discrete"}
        Must match ``traffic.time``.

    Returns
    -------
    EndToEndEnvelope
        ``delay`` (s) with ``P(D > delay) <= epsilon_delay`` (= ``epsilon``), its per-domain
        split and the total fidelity budget.

    Raises
    ------
    NoFiniteBound
        If the traffic's mean rate reaches some domain's reserved rate (the reason names it).
    InputError
        For malformed slices.
    """
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    _check(path, traffic, time)
    services = slice_services(path, traffic)
    names = [f"domain {s.domain_id!r}" for s in path]
    b = delay_bound(traffic, services, epsilon, names=names)
    per = split_bound([s.domain_id for s in path], traffic, services, replace(b, epsilon=epsilon))
    loss = 1.0 - math.prod(1.0 - s.loss_probability for s in path)
    err = min(1.0, sum(s.error_probability for s in path))
    return EndToEndEnvelope(
        delay=float(b.delay),
        epsilon_delay=float(epsilon),
        theta=float(b.theta),
        method=b.method,
        per_domain=per,
        loss_probability=float(loss),
        error_probability=float(err),
        epsilon_total=float(epsilon + loss + err),
    )


def path_violation_probability(
    path: Sequence[DomainSlice],
    traffic: Arrival,
    *,
    delay: float,
    time: Literal["continuous", "discrete"] = "continuous",
) -> float:
    """The smallest valid bound on ``P(D > delay)`` (delay in s, incl. latencies and propagation)."""
    _check(path, traffic, time)
    services = slice_services(path, traffic)
    names = [f"domain {s.domain_id!r}" for s in path]
    return float(violation_bound(traffic, services, delay, names=names).epsilon)


#: Work caps of :func:`plan_rates` (it raises :class:`NoFiniteBound` rather than run longer).
PLAN_MAX_BOUNDS = 240  # evaluations of the theta-optimised violation bound
PLAN_MAX_DELAYS = 12  # evaluations of the composed delay bound (what compose_path returns)
PLAN_MAX_SURROGATE = 4000  # evaluations of the bound at a fixed theta (microseconds each)
_BIG = 1e150  # stands for "infeasible" inside scipy's minimisers (inf makes them produce nan)
_PLAN_LOG_MARGIN = 2e-3  # plan at log(epsilon) - margin: the composed delay then lands below the deadline


class _WorkCap(NoFiniteBound):
    """plan_rates ran out of its evaluation budget."""


class _Counter:
    """Counts evaluations of one kind and raises :class:`NoFiniteBound` (``_WorkCap``) past its cap."""

    def __init__(self, what: str, cap: int):
        self.what, self.cap, self.n = what, cap, 0

    def tick(self) -> None:
        self.n += 1
        if self.n > self.cap:
            raise _WorkCap(f"plan_rates: no plan found within {self.cap} evaluations of the {self.what}")


def plan_rates(
    path: Sequence[DomainSlice],
    traffic: Arrival,
    *,
    delay: float,
    epsilon: float,
    costs: Sequence[float] | None = None,
    max_rates: Sequence[float] | None = None,
) -> tuple[float, ...]:
    """Cost-minimising reserved rates (bits/s) whose composed bound meets ``(delay, epsilon)``.

    The returned rates satisfy ``compose_path(path with these rates, traffic, epsilon=epsilon).delay
    <= delay`` (the same composed bound, packetizer latencies included), and so also
    ``path_violation_probability(..., delay=delay) <= epsilon``.

    The ``rate`` fields of ``path`` are ignored (a template). ``costs`` (per bit/s, default 1)
    weight the rates; ``max_rates`` (bits/s, default unlimited) cap them.

    Notes
    -----
    Deterministic paths (token bucket, ``service="size"``) have the closed form
    ``r = max(rho, (sigma + (H-1) L)/(delay - sum T_i))`` (``L`` the packet size of a packetized
    flow in continuous time, 0 for fluid traffic: the packetizer latencies ``L/r`` of the ``H-1``
    first hops). Otherwise the deterministic domains share one rate (only the bottleneck enters the
    tandem bound) and every random-service domain has its own; a plan is ``rho + s*w`` for a
    direction ``w`` and a scale ``s``:

    1. the cheapest scale of the equal direction, minimised over ``theta`` of the scale at which
       the bound *at that fixed theta* meets ``epsilon`` (any theta gives a valid bound; the
       fixed-theta MGF tandem and max-plus bounds are computed straight from the rates in
       microseconds): a log grid of theta, then bounded Brent;
    2. the cheapest direction with that theta fixed, then the theta scan again on it; once more
       for two groups (alternating minimisation);
    3. the scale of that direction on the *optimised* bound (min over every method, theta
       optimised as :func:`compose_path` does), which corrects a theta the optimiser would not
       resolve and lets methods without a theta (martingale, product form) lower the plan;
    4. the composed delay bound (:func:`delay_bound`, what :func:`compose_path` returns) at the
       plan; if it exceeds ``delay`` (optimiser tolerances), the excess rates ``r - rho`` are
       scaled up by the smallest common factor that meets it.

    The work is capped (:data:`PLAN_MAX_SURROGATE`, :data:`PLAN_MAX_BOUNDS`,
    :data:`PLAN_MAX_DELAYS` evaluations, about a second in the worst case): past a cap
    :class:`NoFiniteBound` is raised, except in the direction search of step 2, which then keeps
    the best plan found so far. Typical time on a 3-hop path with one compute domain: 10-40 ms.

    Raises
    ------
    NoFiniteBound
        If no rates within ``max_rates`` meet the target (naming the domains), or the work caps
        are reached.
    InputError
        For a bad ``epsilon``, ``costs`` or ``max_rates``, or an empty path.
    """
    from federation.calculus.arrivals import TokenBucket
    from federation.calculus.mgf import maxplus_log_at

    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    n = len(path)
    if n == 0:
        raise InputError("the path has no domains")
    c = np.ones(n) if costs is None else np.asarray(costs, dtype=float)
    if c.shape != (n,) or np.any(c <= 0):
        raise InputError("costs must be one positive number per domain")
    cap = np.full(n, np.inf) if max_rates is None else np.asarray(max_rates, dtype=float)
    if cap.shape != (n,) or np.any(cap <= 0):
        raise InputError("max_rates must be one positive number per domain")
    rho = traffic.mean_rate
    for s, m in zip(path, cap):
        if m <= rho:
            raise NoFiniteBound(
                f"domain {s.domain_id!r}: max rate {m:g} bits/s <= traffic mean rate {rho:g} bits/s"
            )
    lat = sum(s.latency + s.propagation_delay for s in path)
    if delay <= lat:
        raise NoFiniteBound(f"delay {delay:g} s is not above the path's latencies ({lat:g} s)")
    time = traffic.time
    if traffic.deterministic and all(s.service == "size" for s in path):
        pkt = 0.0
        if time == "continuous" and n >= 2 and isinstance(traffic, TokenBucket) and traffic.packet_size_ > 0:
            pkt = (n - 1) * traffic.packet_size_  # packetizer latencies L/r of all hops but the last
        sig = traffic.beta(1.0)
        need = max((sig + pkt) / (delay - lat), rho * (1.0 + 1e-9))  # compose_path needs rate > rho
        for _ in range(64):  # no rounding above the deadline: check what compose_path computes
            planned = [replace(s, rate=float(need)) for s in path]
            if delay_bound(traffic, slice_services(planned, traffic), epsilon).delay <= delay:
                break
            need *= 1.0 + 1e-14
        for s, m in zip(path, cap):
            if need > m:
                raise NoFiniteBound(f"domain {s.domain_id!r}: needs {need:g} bits/s > max rate {m:g} bits/s")
        return tuple(float(need) for _ in path)

    det = [i for i, s in enumerate(path) if s.service != "exp"]
    groups: list[list[int]] = ([det] if det else []) + [[i] for i, s in enumerate(path) if s.service == "exp"]
    k = len(groups)
    gcost = np.array([c[g].sum() for g in groups])
    gcap = np.array([cap[g].min() for g in groups])
    target = math.log(epsilon) - _PLAN_LOG_MARGIN
    n_bound = _Counter("violation bound", PLAN_MAX_BOUNDS)
    n_delay = _Counter("composed delay bound", PLAN_MAX_DELAYS)
    n_surr = _Counter("fixed-theta bound", PLAN_MAX_SURROGATE)

    def rates_of(v: np.ndarray) -> np.ndarray:
        r = np.empty(n)
        for g, x in zip(groups, v):
            r[g] = x
        return r

    def services_of(v: np.ndarray) -> list[Service]:
        return slice_services([replace(s, rate=float(x)) for s, x in zip(path, rates_of(v))], traffic)

    def full(v: np.ndarray) -> tuple[float, Bound | None]:
        """(log of the optimised violation bound at ``delay`` (min over the methods), the bound)."""
        n_bound.tick()
        try:
            b = violation_bound(traffic, services_of(v), delay)
        except NoFiniteBound:
            return math.inf, None
        if b.method.startswith("mgf-tandem") and "log_epsilon" in b.detail:
            return float(b.detail["log_epsilon"]), b
        return (math.log(b.epsilon) if b.epsilon > 0 else -math.inf), b

    # Fixed-theta bounds straight from the group rates (what tandem_log_at / maxplus_log_at give on
    # services_of(v), without building the service objects): every hop is a constant-rate or an
    # exponential-service hop, whose gamma(theta) is linear (continuous time) in its rate.
    discrete = time == "discrete"
    base_lat = [s.latency + s.propagation_delay for s in path]
    lat_sum = sum(base_lat)
    pk = packetized(traffic, [ConstantRate(1.0, 0.0, time)] * 2)[0].latency  # packetizer L (0: none)
    pk_count = sum(1 for i, s in enumerate(path) if s.service != "exp" and i < n - 1)  # packetizing hops
    size = traffic.packet_size

    def surrogate(method: str, theta: float):
        """The log bound of ``method`` at the fixed ``theta`` as a function of the group rates."""
        if method == "mgf-tandem":
            if not 0 < theta < traffic.theta_max:
                return lambda v: math.inf
            kap, bet = traffic.kappa(theta), traffic.beta(theta)
            if not math.isfinite(kap):
                return lambda v: math.inf
            per_rate = math.nan if discrete else -math.expm1(-theta * size) / size
            n_exp0 = 1 if det else 0  # v[0] is the shared rate of the deterministic domains

            def f(v: np.ndarray) -> float:
                n_surr.tick()
                vs = v.tolist()
                gam = [math.log1p(theta * x) if discrete else x * per_rate for x in vs[n_exp0:]]
                dv = delay - lat_sum
                if det:
                    gam.append(theta * vs[0])
                    dv -= pk_count * pk / vs[0]
                if dv < 0:
                    return 0.0
                if not all(g > kap for g in gam):
                    return math.inf
                return _log_bound_of(kap, bet, gam, dv, discrete)[0]

            return f
        lam = cast(PoissonArrival, traffic).rate  # "mgf-maxplus": Poisson packets of fixed size
        if not theta > 0:
            return lambda v: math.inf
        lr = math.log(lam / (lam + theta))
        n_det = len(det)

        def g(v: np.ndarray) -> float:
            n_surr.tick()
            vs = v.tolist()
            tot = -theta * (delay - lat_sum) + lr
            terms = [(theta * size / vs[0], n_det)] if det else []
            for x in vs[1 if det else 0:]:
                mu = x / size
                if not theta < mu:
                    return math.inf
                terms.append((-math.log1p(-theta / mu), 1))
            for gi, mult in terms:
                y = lr + gi
                if not y < 0:
                    return math.inf
                tot += mult * (gi - math.log(-math.expm1(y)))
            return tot

        return g

    def scale_limit(w: np.ndarray) -> float:
        return float(np.min(np.where(np.isfinite(gcap), (gcap - rho) / w, np.inf)))

    def cheapest_scale(w: np.ndarray, f, rtol: float, guess: float | None = None, growth: float = 1.5) -> float:
        """Smallest ``s`` with ``f(rho + s*w) <= target`` (``inf`` if none within the caps).

        ``f`` must be non-increasing in the rates. From ``guess`` the bracket is grown
        geometrically (factor ``growth``), else from the caps (or ``rho`` without caps) by
        halving/doubling.
        """
        smax = scale_limit(w)

        def h(sc: float) -> float:
            return f(rho + sc * w) - target

        if guess is None or not 0 < guess:
            guess = smax if math.isfinite(smax) else max(rho, 1e-300)
            step = 2.0
        else:
            guess = min(guess, smax)
            step = growth
        hg = h(guess)
        # the bracket grows by step, step^2, step^4, ... (capped at 4x per move)
        if hg <= 0:
            hi, f_hi = guess, hg
            lo, f_lo = 0.0, math.inf
            for _ in range(64):
                x = hi / step
                fx = h(x)
                if fx > 0:
                    lo, f_lo = x, fx
                    break
                hi, f_hi = x, fx
                step = min(step * step, 4.0)
            else:
                return hi
        else:
            lo, f_lo = guess, hg
            for _ in range(64):
                if lo >= smax:
                    return math.inf
                x = min(lo * step, smax)
                fx = h(x)
                if fx <= 0:
                    hi, f_hi = x, fx
                    break
                lo, f_lo = x, fx
                step = min(step * step, 4.0)
            else:
                return math.inf
        return bracket_root(h, lo, hi, f_lo, f_hi, rtol)

    def infeasible() -> NoFiniteBound:
        which = [path[g[0]].domain_id for g in groups]
        return NoFiniteBound(
            f"no rates within max_rates meet delay {delay:g} s at epsilon {epsilon:g} "
            f"(domains {', '.join(which)})"
        )

    def direction(u: np.ndarray) -> np.ndarray:
        return np.exp(np.concatenate([[0.0], np.atleast_1d(u)]))

    # theta ranges: the largest theta with a finite bound at generous rates (the range only grows
    # with the rates)
    big = np.where(np.isfinite(gcap), gcap, rho * 1e3)
    methods = ["mgf-tandem"]
    if delay > lat_sum and maxplus_log_at(traffic, services_of(big), delay, 1e-300) is not None:
        methods.append("mgf-maxplus")

    def theta_hi(method: str) -> float | None:
        def finite(t: float) -> bool:
            return math.isfinite(surrogate(method, t)(big))

        t = 1.0 / traffic.packet_size if method == "mgf-tandem" else rho / traffic.packet_size
        if finite(t):
            for _ in range(60):
                if not finite(t * 2.0):
                    break
                t *= 2.0
            else:
                return t
            lo, hi = t, 2.0 * t
        else:
            for _ in range(200):
                t /= 2.0
                if finite(t):
                    break
            else:
                return None
            lo, hi = t, 2.0 * t
        for _ in range(12):
            m = math.sqrt(lo * hi)
            lo, hi = (m, hi) if finite(m) else (lo, m)
        return lo

    ranges = {m: theta_hi(m) for m in methods}

    def scan(w: np.ndarray, guess: float | None, around: dict | None) -> tuple[float, str, float]:
        """(cheapest scale, method, theta) of direction ``w``: min over theta of the fixed-theta scale."""
        best = (math.inf, "", math.nan)
        for m in methods:
            th_hi = ranges[m]
            if th_hi is None:
                continue
            memo: dict[float, float] = {}
            g0 = [guess]

            def s_of(x: float, m=m, memo=memo, g0=g0) -> float:
                if x not in memo:
                    sc = cheapest_scale(w, surrogate(m, math.exp(x)), 1e-3, g0[0])
                    memo[x] = sc
                    if math.isfinite(sc):
                        g0[0] = sc
                return memo[x]

            if around is not None and m in around:
                c0 = math.log(around[m])
                xs = np.array([c0 - 1.0, c0, c0 + 1.0])
            else:
                xs = np.linspace(math.log(th_hi) - 6 * math.log(10), math.log(th_hi), 10)
            vals = [s_of(float(x)) for x in xs]
            i = int(np.argmin(vals))
            if not math.isfinite(vals[i]):
                continue
            a_, b_ = float(xs[max(i - 1, 0)]), float(xs[min(i + 1, len(xs) - 1)])
            b_ = min(b_, math.log(th_hi))
            if b_ > a_:
                res = minimize_scalar(lambda x: min(s_of(x), _BIG), bounds=(a_, b_), method="bounded",
                                      options={"xatol": 2e-2, "maxiter": 10})
                x_best = float(res.x) if res.fun < vals[i] else float(xs[i])
            else:
                x_best = float(xs[i])
            sc = s_of(x_best)
            if sc < best[0]:
                best = (sc, m, math.exp(x_best))
        return best

    def cost_of(w: np.ndarray, sc: float) -> float:
        return float(gcost @ (rho + sc * w)) if math.isfinite(sc) else math.inf

    u = np.zeros(k - 1)
    w = direction(u)
    sc, meth, th = scan(w, None, None)
    if not math.isfinite(sc) and k > 1:
        # the equal direction may hit a cap first: put the excess where the caps allow
        for i in range(k):
            wi = np.full(k, 1e-3)
            wi[i] = 1.0
            s2, m2, t2 = scan(wi, None, None)
            if cost_of(wi, s2) < cost_of(w, sc):
                w, sc, meth, th = wi, s2, m2, t2
                u = np.log(wi[1:] / wi[0])
    if not math.isfinite(sc):
        # the theta grid missed a narrow window: the optimised bound on the equal direction
        w = direction(np.zeros(k - 1))
        u = np.zeros(k - 1)
        sc = cheapest_scale(w, lambda v: full(v)[0], 1e-3)
        if not math.isfinite(sc):
            raise infeasible()
        b0 = full(rho + sc * w)[1]
        if b0 is None or b0.method not in methods or not math.isfinite(b0.theta):
            meth, th = "mgf-tandem", (ranges.get("mgf-tandem") or 1.0) * 0.5
        else:
            meth, th = b0.method, b0.theta
    best_cost, best_v = cost_of(w, sc), rho + sc * w
    thetas = {meth: th}
    if k > 1:
        try:  # the direction search only improves a feasible plan: out of budget, keep the best
            for _ in range(2 if k == 2 else 1):
                f = surrogate(meth, th)

                def cost_at(x, f=f, guess=sc) -> float:
                    ww = direction(x)
                    return cost_of(ww, cheapest_scale(ww, f, 1e-3, guess))

                if k == 2:
                    c0 = float(u[0])
                    res = minimize_scalar(lambda x: min(cost_at(x), _BIG), bounds=(c0 - 3.0, c0 + 3.0), method="bounded",
                                          options={"xatol": 1e-2, "maxiter": 25})
                    u_new = np.array([res.x])
                else:
                    res = minimize(lambda x: min(cost_at(x), _BIG), u, method="Nelder-Mead",
                                   options={"xatol": 1e-2, "fatol": 1e-4 * best_cost, "maxfev": 20 * k})
                    u_new = np.asarray(res.x)
                w_new = direction(u_new)
                s_new, m_new, t_new = scan(w_new, float(np.min((best_v - rho) / w_new)), thetas)
                c_new = cost_of(w_new, s_new)
                if not c_new < best_cost * (1 - 1e-4):
                    break
                best_cost, best_v, u, w, sc, meth, th = c_new, rho + s_new * w_new, u_new, w_new, s_new, m_new, t_new
                thetas[meth] = th
        except _WorkCap:
            pass

    # The scale of the chosen direction on the optimised bound itself (min over all the methods,
    # theta optimised as compose_path does): corrects the fixed-theta scan both ways (a theta the
    # optimiser does not resolve; methods without a theta, e.g. martingale, that do better).
    s2 = cheapest_scale(w, lambda v: full(v)[0], 1e-3, sc, growth=1.05)
    if not math.isfinite(s2):
        raise infeasible()
    sc, best_v = s2, rho + s2 * w

    # Consistency with compose_path: the composed delay bound at epsilon must meet the deadline.
    def composed(v: np.ndarray) -> float:
        n_delay.tick()
        try:
            return float(delay_bound(traffic, services_of(v), epsilon).delay)
        except NoFiniteBound:
            return math.inf

    if composed(best_v) <= delay:
        return tuple(float(x) for x in rates_of(best_v))
    excess = best_v - rho
    fmax = scale_limit(excess)
    fac_lo, fac_hi = 1.0, None
    for fac in (1.002, 1.01, 1.03, 1.1, 1.3, 2.0, 4.0):
        fac = min(fac, fmax)
        if fac <= fac_lo:
            break
        if composed(rho + fac * excess) <= delay:
            fac_hi = fac
            break
        fac_lo = fac
    if fac_hi is None:
        raise NoFiniteBound(
            f"the composed delay bound stays above delay {delay:g} s within max_rates "
            f"(domains {', '.join(path[g[0]].domain_id for g in groups)})"
        )
    while fac_hi / fac_lo > 1.001 and n_delay.n < PLAN_MAX_DELAYS:
        mid = math.sqrt(fac_lo * fac_hi)
        if composed(rho + mid * excess) <= delay:
            fac_hi = mid
        else:
            fac_lo = mid
    return tuple(float(x) for x in rates_of(rho + fac_hi * excess))
