"""TRE composition: a tenant's end-to-end envelope from the domains on its path.

Each domain on the path contributes a :class:`DomainSlice` (from its TRE and the tenant's
reservation): a rate-latency service at the reserved rate (or a random-service compute domain),
a propagation delay, a loss and an inference-error probability. :func:`compose_path` returns the
tight composed delay bound (the smallest of the MGF tandem bound and, where applicable, the
martingale bound; the deterministic bound for a token bucket through deterministic hops), its
risk-budget decomposition into per-domain ``(d_i, eps_i)``, and the total fidelity budget
``eps_total = eps_delay + p_loss + e_model``.

What is bounded: for Poisson packets (continuous time) a packet's end-to-end *sojourn*, from its
arrival to the departure of its last bit from the last domain, its own transmissions included
(what the data plane and the auditor measure; :mod:`~federation.calculus.sojourn`); for other
traffic the end-to-end *virtual delay* (the time until all work that arrived by a time ``t`` has
left the last domain, ``t`` time-stationary; for a token bucket at every instant). Every domain's
latency and propagation delay is added. Loss is ``1 - prod(1 - p_loss_i)``; inference errors
add over the compute domains.

:func:`violation_bound` and :func:`delay_bound` are the smallest valid bound over the methods
(:mod:`~federation.calculus.tandem`, :mod:`~federation.calculus.martingale`,
:mod:`~federation.calculus.packet`, :mod:`~federation.calculus.fifo`,
:mod:`~federation.calculus.fifo_recursion`); the reverse problem, the cheapest rates that meet a target,
is :func:`federation.calculus.plan.plan_rates`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from federation.calculus.arrivals import MMOO, Arrival, PoissonArrival, TabulatedArrival, TokenBucket
from federation.calculus.bound import Bound, BoundMethod
from federation.calculus.budget import decompose, exponential_tails
from federation.calculus.fifo import (
    fifo_martingale_delay,
    fifo_martingale_violation,
    fifo_tandem_delay,
    fifo_tandem_violation,
)
from federation.calculus.fifo_recursion import recursion_delay, recursion_violation
from federation.calculus.fifo_slotted import slotted_delay, slotted_violation
from federation.calculus.martingale import martingale_delay, martingale_violation
from federation.calculus.packet import maxplus_violation, product_form_violation
from federation.calculus.roots import invert_delay
from federation.calculus.services import ConstantRate, ExpService, Leftover, Service
from federation.calculus.sojourn import fluid_holds, packet_view, per_packet, sojourn_of
from federation.calculus.tandem import tandem_delay, tandem_violation
from federation.errors import InputError, NoFiniteBound

__all__ = [
    "DomainSlice",
    "DomainBudget",
    "EndToEndEnvelope",
    "violation_bound",
    "virtual_violation_bound",
    "delay_bound",
    "compose_path",
    "path_violation_probability",
    "slice_services",
    "split_bound",
    "backed_split",
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
    # service="exp": bits of work one request costs here (the model's request size: a mean
    # service time of work_bits/rate per request, whatever the request's own size); 0: its size
    work_bits: float = 0.0

    def service_rate(self, traffic: Arrival) -> float:
        """The rate (bits/s of ``traffic``'s own packets) the calculus serves it at: ``rate``,
        scaled by ``L/work_bits`` at an exponential-service domain when Poisson packets of mean
        size ``L`` each cost ``work_bits`` (a token bucket's packets are the model's requests already,
        fluid traffic has no requests)."""
        if self.service == "exp" and self.work_bits > 0 and isinstance(traffic, PoissonArrival):
            return self.rate * traffic.mean_size / self.work_bits
        return self.rate


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
    method: BoundMethod  # the method of the composed delay bound (a str enum: its value is the text)
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
    fixed-size packets (Poisson ``size="det"``, a token bucket's ``packet_size``, packetised
    on-off sources' ``packet``, a trace's largest packet for :class:`TabulatedArrival`); fluid or
    exponential-size traffic is left unchanged (fluid model).
    """
    if arrival.time != "continuous" or len(services) < 2:
        return list(services)
    if isinstance(arrival, PoissonArrival) and arrival.size == "det":
        size = arrival.mean_size
    elif isinstance(arrival, TokenBucket) and arrival.packet_size_ > 0:
        size = arrival.packet_size_
    elif isinstance(arrival, MMOO) and arrival.packet > 0:
        size = arrival.packet
    elif isinstance(arrival, TabulatedArrival):  # a trace's packets: at most its largest
        size = arrival.max_size_bits
    else:
        return list(services)
    out: list[Service] = []
    for i, s in enumerate(services):
        last = i == len(services) - 1
        if isinstance(s, ConstantRate) and not last:
            s = replace(s, latency=s.latency + size / s.rate)
        elif isinstance(s, Leftover) and isinstance(s.base, ConstantRate) and not last:
            s = type(s)(replace(s.base, latency=s.base.latency + size / s.base.rate), s.cross)
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
    MGF tandem, the FIFO bounds where a hop serves its cross traffic FIFO
    (:mod:`~federation.calculus.fifo`), and for Poisson packets in continuous time the packet-domain max-plus and
    product-form bounds and, through FIFO hops with Poisson cross traffic, the busy-period recursion
    (:mod:`~federation.calculus.fifo_recursion`); in discrete time, through slotted FIFO hops with
    i.i.d. traffic, its slotted counterpart (:mod:`~federation.calculus.fifo_slotted`). In continuous time with fixed-size packets the fluid methods get the
    packetizer latencies (:func:`packetized`), so the result bounds the store-and-forward packet
    tandem as well as the fluid one. For Poisson packets ``D`` is a packet's sojourn, its own
    transmission included (:mod:`~federation.calculus.sojourn`); the fluid methods do not apply
    to random packet sizes through more than one hop. ``dependent=True``: the flow and the
    hops' services (e.g. one cross flow at several hops) may be dependent; only the Hölder MGF
    tandem bound applies.

    Raises
    ------
    NoFiniteBound
        When no method gives a finite bound (e.g. random packet sizes through several hops with
        cross traffic).
    """
    best: Bound | None = None
    fl = packetized(arrival, services)
    for b in _candidates(arrival, services, delay, names, dependent):
        b2 = sojourn_of(arrival, services if b.method in _PACKET_METHODS else fl, b)
        if b2 is not None and (best is None or b2.epsilon < best.epsilon):
            best = b2
    if best is None:
        raise _no_packet_bound(arrival, services)
    return best


#: Methods computed on the services themselves (the others on the packetized ones).
_PACKET_METHODS = frozenset({BoundMethod.MGF_MAXPLUS, BoundMethod.PRODUCT_FORM, BoundMethod.FIFO_RECURSION})


def virtual_violation_bound(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound:
    """The smallest bound on the time-stationary *virtual* delay ``P(V > delay)`` (s, latencies included).

    ``V(t)`` is the time until the flow's work that arrived before ``t`` has left, ``t`` a random
    instant: the fluid methods' own quantity (without a packet's own transmission), what
    ``trefed compare --notion virtual`` measures at time-uniform probes. The max-plus bound
    gets back its factor ``lambda/(lambda+theta)`` (:func:`~federation.calculus.packet.maxplus_log_bound`);
    the product form bounds the sojourn, hence ``V`` too.
    """
    best: Bound | None = None
    for b in _candidates(arrival, services, delay, None, False, sojourn=False):
        if best is None or b.epsilon < best.epsilon:
            best = b
    if best is None:
        raise _no_packet_bound(arrival, services)
    return best


def _candidates(
    arrival: Arrival, services: Sequence[Service], delay: float, names: Sequence[str] | None, dependent: bool,
    *, sojourn: bool = True,
) -> Iterator[Bound]:
    """Every method's bound at ``delay``, cheapest first: the fluid ones on the virtual delay (the
    blind-multiplexing martingale bound on the sojourn when ``sojourn`` and per-packet), the
    packet ones on the sojourn (``sojourn=False``: the max-plus one on the virtual delay)."""
    fluid = fluid_holds(arrival, services)
    fl = packetized(arrival, services)
    if fluid:
        b = tandem_violation(arrival, fl, delay, names=names, dependent=dependent)
        yield b
        if b.method == BoundMethod.DETERMINISTIC or dependent:
            return
        m = martingale_violation(arrival, fl, delay, sojourn=sojourn and per_packet(arrival))
        if m is not None:
            yield m
        fm = fifo_martingale_violation(arrival, fl, delay)
        if fm is not None:
            yield fm
        # at one FIFO hop alone the FIFO MGF bound is never below the aggregate's martingale bound
        # (its term at the delay alone is at least exp(-gamma(theta) d) with theta below the root)
        if fm is None or len(fl) > 1:
            f = fifo_tandem_violation(arrival, fl, delay, names=names)
            if f is not None:
                yield f
        sl = slotted_violation(arrival, fl, delay)
        if sl is not None:
            yield sl
    elif dependent:
        return
    mp = maxplus_violation(arrival, services, delay)
    if mp is not None and not sojourn and isinstance(arrival, PoissonArrival) and math.isfinite(mp.theta):
        mp = replace(mp, epsilon=mp.epsilon * arrival.rate / (arrival.rate + mp.theta))
    for alt in (mp, product_form_violation(arrival, services, delay)):
        if alt is not None:
            yield alt
    if sojourn:  # a packet's sojourn in a FIFO packet tandem with Poisson cross traffic
        rec = recursion_violation(arrival, services, delay)
        if rec is not None:
            yield rec


def _no_packet_bound(arrival: Arrival, services: Sequence[Service]) -> NoFiniteBound:
    return NoFiniteBound(
        f"no bound applies to packets of random size (Poisson size={getattr(arrival, 'size', '?')}) "
        f"through {len(services)} store-and-forward hops with cross traffic: a packet's delay at a later "
        "hop depends on the sizes of the packets ahead of it; use fixed-size packets (size=det), or hops "
        "without cross traffic"
    )


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
    if it beats them at their delay. For Poisson packets (a packet's sojourn,
    :mod:`~federation.calculus.sojourn`), :func:`violation_bound` itself is inverted, from the
    virtual-delay bound up.
    """
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    if not packet_view(arrival):
        return _virtual_delay_bound(arrival, services, epsilon, names=names, dependent=dependent)
    # its own inversion, exact in theta; may lie below the fluid virtual-delay bound the inversion starts from
    rec = None if dependent else recursion_delay(arrival, services, epsilon)
    lat = sum(s.latency for s in services)
    if rec is not None and rec.delay > lat:
        # every method's bound is non-increasing in the delay: if none reaches epsilon just below the
        # recursion's delay (the inversion's tolerance), none gives a smaller one; one probe instead
        # of the inversion of every method (seconds on a long FIFO tandem)
        probe = lat + (rec.delay - lat) * (1.0 - 1e-4)
        if violation_bound(arrival, services, probe, names=names).epsilon > epsilon:
            return rec
    start = lat
    if fluid_holds(arrival, services):  # the virtual delay is a lower end: the packet adds to it
        start = max(lat, _virtual_delay_bound(arrival, services, epsilon, names=names, dependent=dependent).delay)
    own = arrival.packet_size * sum(1.0 / max(s.mean_rate, 1e-300) for s in services)  # mean own service, s

    def eps_at(x: float) -> float:
        return violation_bound(arrival, services, x, names=names, dependent=dependent).epsilon

    d = invert_delay(eps_at, epsilon, start, start + max(own, 1e-12), discrete=False)
    best = violation_bound(arrival, services, d, names=names, dependent=dependent)
    return rec if rec is not None and rec.delay < best.delay else best


def _virtual_delay_bound(
    arrival: Arrival,
    services: Sequence[Service],
    epsilon: float,
    *,
    names: Sequence[str] | None = None,
    dependent: bool = False,
) -> Bound:
    """The smallest delay bound at ``epsilon`` of the fluid methods (virtual delay), and for
    Poisson packets the max-plus and product-form bounds."""
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
    fm = fifo_martingale_delay(arrival, fl, epsilon)
    if fm is not None and (best is None or fm.delay < best.delay):
        best = fm
    if best is None or tandem_violation(arrival, fl, best.delay, names=names).epsilon < epsilon:
        b = tandem_delay(arrival, fl, epsilon, names=names)
        best = b if best is None or b.delay < best.delay else best
    sl = slotted_delay(arrival, fl, epsilon)
    if sl is not None and (best is None or sl.delay < best.delay):
        best = sl
    if fm is not None and len(fl) == 1:  # as in violation_bound: the FIFO MGF bound cannot win
        return best
    f = fifo_tandem_delay(arrival, fl, epsilon, hi=best.delay, names=names)
    return f if f is not None and f.delay < best.delay else best


def slice_services(path: Sequence[DomainSlice], traffic: Arrival) -> list[Service]:
    """The calculus services of a path (propagation folded into the constant latency)."""
    out: list[Service] = []
    for s in path:
        if not (s.rate > 0 and math.isfinite(s.rate)):
            raise InputError(f"domain {s.domain_id!r}: rate(={s.rate!r}) must be > 0 and finite")
        if s.latency < 0 or s.propagation_delay < 0:
            raise InputError(f"domain {s.domain_id!r}: latency and propagation_delay must be >= 0")
        if s.work_bits < 0 or not math.isfinite(s.work_bits):
            raise InputError(f"domain {s.domain_id!r}: work_bits(={s.work_bits!r}) must be >= 0 and finite")
        lat = s.latency + s.propagation_delay
        if s.service == "exp":
            out.append(ExpService(s.service_rate(traffic), traffic.packet_size, lat, traffic.time))
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
        if traffic.mean_rate >= s.service_rate(traffic):
            work = "" if s.service_rate(traffic) == s.rate else f" ({s.work_bits:g} bits of work per request)"
            raise NoFiniteBound(
                f"domain {s.domain_id!r}: traffic mean rate {traffic.mean_rate:g} bits/s >= "
                f"reserved rate {s.rate:g} bits/s{work}"
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
    if bound.method != BoundMethod.MGF_TANDEM or not math.isfinite(bound.theta):
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


def backed_split(
    path: Sequence[DomainSlice], traffic: Arrival, delay: float, epsilon: float
) -> tuple[DomainBudget, ...] | None:
    """Per-domain budgets ``(d_i, eps_i)`` each backed by the bound of its domain alone, or ``None``.

    ``eps_i = epsilon/H``; ``d_i`` is at least ``delay_bound`` of ``traffic`` through domain ``i``
    alone at ``eps_i`` (its latency, propagation and a packet's own transmission included), and
    the slack ``delay - sum`` of these is shared in proportion to them. ``None`` when they do not
    fit in ``delay`` (s) or a domain alone has no finite bound. ``sum d_i <= delay``,
    ``sum eps_i <= epsilon``.

    Notes
    -----
    A domain that behaves as its envelope says, fed the tenant's traffic as declared, meets its
    budget: exactly so at the first domain. A later domain is fed what the domains before it let
    out; a work-conserving FIFO server of one flow passes it on no burstier than it came in plus
    its backlog, and for Poisson packets through constant-rate links of one rate (what the rate
    planner gives the network domains) the later links never queue (packets leave a link at least
    ``L/R`` apart), so the stand-alone bound of the declared traffic is conservative there
    (checked against the data plane in the tests); it is the budget a domain can verify from its
    own envelope and the contract alone.
    """
    n = len(path)
    share = epsilon / n
    alone: list[float] = []
    for s in path:
        try:
            alone.append(float(delay_bound(traffic, slice_services([s], traffic), share).delay))
        except NoFiniteBound:
            return None
    total = sum(alone)
    if not total <= delay or not all(math.isfinite(a) for a in alone):
        return None
    scale = delay / total if total > 0 else 1.0
    return tuple(DomainBudget(s.domain_id, float(a * scale), float(share)) for s, a in zip(path, alone))


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
    share_delay: float | None = None,
) -> EndToEndEnvelope:
    """Compose the end-to-end envelope of ``traffic`` through ``path`` at delay-violation ``epsilon``.

    The per-domain budgets are those of :func:`backed_split` when ``share_delay`` (s, e.g. the
    tenant's deadline, at least the composed delay) leaves room for them, else the split of the
    composed bound (:func:`split_bound`).

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
    per = None
    if share_delay is not None and share_delay >= b.delay:
        per = backed_split(path, traffic, share_delay, epsilon)
    if per is None:
        # The split's per-domain offsets are the latencies the bound used: the packetizer's included
        # (a store-and-forward hop holds every packet at least L/R), or each non-last domain's d_i
        # would be below the sojourn of a packet through it alone.
        per = split_bound([s.domain_id for s in path], traffic, packetized(traffic, services),
                          replace(b, epsilon=epsilon))
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
