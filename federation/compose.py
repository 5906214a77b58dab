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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from federation.arrivals import Arrival
from federation.budget import decompose, exponential_tails
from federation.calculus import (
    Bound,
    invert_delay,
    maxplus_violation,
    product_form_violation,
    tandem_delay,
    tandem_violation,
)
from federation.errors import InputError, NoFiniteBound
from federation.martingale import martingale_delay, martingale_violation
from federation.services import ConstantRate, ExpService, Service

__all__ = [
    "DomainSlice",
    "DomainBudget",
    "EndToEndEnvelope",
    "violation_bound",
    "delay_bound",
    "compose_path",
    "path_violation_probability",
    "plan_rates",
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
    from federation.arrivals import PoissonArrival, TokenBucket

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
        d = invert_delay(
            lambda x: alt(arrival, services, x).epsilon,  # type: ignore[union-attr]  # noqa: B023
            epsilon, lat, max(hi, lat + 1e-12), discrete=False,
        )
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
    ``sum eps_i <= bound.epsilon``), by :func:`federation.budget.decompose` on the domains'
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


def plan_rates(
    path: Sequence[DomainSlice],
    traffic: Arrival,
    *,
    delay: float,
    epsilon: float,
    costs: Sequence[float] | None = None,
    max_rates: Sequence[float] | None = None,
) -> tuple[float, ...]:
    """Cost-minimising reserved rates (bits/s) meeting ``P(D > delay) <= epsilon`` end to end.

    The ``rate`` fields of ``path`` are ignored (a template). ``costs`` (per bit/s, default 1)
    weight the rates; ``max_rates`` (bits/s, default unlimited) cap them. Deterministic paths
    (token bucket, ``service="size"``) have the closed form ``r_i = max(rho, sigma/(delay - sum
    T_i))``; otherwise the cheapest rates are searched on
    the optimised composed bound: the deterministic domains share one rate (only the bottleneck
    enters the bound), each random-service domain has its own; the cheapest scale of a direction
    is found by bisection and the direction by a derivative-free search.

    Raises
    ------
    NoFiniteBound
        If no rates within ``max_rates`` meet the target (the reason names the binding domain
        when it is a single one).
    """
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
    if traffic.deterministic and all(s.service == "size" for s in path):
        need = max(rho, traffic.beta(1.0) / (delay - lat))
        for s, m in zip(path, cap):
            if need > m:
                raise NoFiniteBound(f"domain {s.domain_id!r}: needs {need:g} bits/s > max rate {m:g} bits/s")
        return tuple(float(need) for _ in path)

    # In the composed bound the deterministic (service="size") domains enter only through their
    # smallest rate, so they share one rate; every random-service domain is its own variable.
    det = [i for i, s in enumerate(path) if s.service != "exp"]
    groups: list[list[int]] = ([det] if det else []) + [[i] for i, s in enumerate(path) if s.service == "exp"]
    gcost = np.array([c[g].sum() for g in groups])
    gcap = np.array([cap[g].min() for g in groups])

    def rates_of(v: np.ndarray) -> np.ndarray:
        r = np.empty(n)
        for g, x in zip(groups, v):
            r[g] = x
        return r

    def feasible(v: np.ndarray) -> bool:
        if np.any(v > gcap * (1 + 1e-12)):
            return False
        planned = [replace(s, rate=float(x)) for s, x in zip(path, rates_of(v))]
        try:
            return path_violation_probability(planned, traffic, delay=delay, time=traffic.time) <= epsilon
        except NoFiniteBound:
            return False

    def cheapest_scale(w: np.ndarray) -> float:
        """Smallest s with rates rho + s*w feasible (inf if none within the caps)."""
        hi = float(np.min(np.where(np.isfinite(gcap), (gcap - rho) / w, np.inf)))
        if not math.isfinite(hi):
            hi = rho
            for _ in range(80):
                if feasible(rho + hi * w):
                    break
                hi *= 2.0
        if not feasible(rho + hi * w):
            return math.inf
        lo = 0.0
        while hi - lo > 1e-4 * hi:
            mid = 0.5 * (lo + hi)
            if feasible(rho + mid * w):
                hi = mid
            else:
                lo = mid
        return hi

    def plan(u: np.ndarray) -> tuple[float, np.ndarray]:
        w = np.exp(np.concatenate([[0.0], u]))
        sc = cheapest_scale(w)
        if not math.isfinite(sc):
            return math.inf, w
        v = rho + sc * w
        return float(gcost @ v), v

    k = len(groups)
    best_cost, best_v = plan(np.zeros(k - 1))
    if k == 2:
        res = minimize_scalar(lambda u: plan(np.array([u]))[0], bounds=(-4.0, 4.0), method="bounded",
                              options={"xatol": 1e-2})
        cst, v = plan(np.array([res.x]))
        if cst < best_cost:
            best_cost, best_v = cst, v
    elif k > 2:
        res = minimize(lambda u: plan(u)[0], np.zeros(k - 1), method="Nelder-Mead",
                       options={"xatol": 1e-2, "fatol": 1e-4 * best_cost if math.isfinite(best_cost) else 1e-4,
                                "maxfev": 60 * k})
        cst, v = plan(res.x)
        if cst < best_cost:
            best_cost, best_v = cst, v
    if not math.isfinite(best_cost):
        which = [path[g[0]].domain_id for g in groups]
        raise NoFiniteBound(f"no rates within max_rates meet delay {delay:g} s at epsilon {epsilon:g} "
                            f"(domains {', '.join(which)})")
    return tuple(float(x) for x in rates_of(best_v))
