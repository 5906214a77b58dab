"""The broker's planning: from a tenant's intent and a path's verified envelopes to a priced offer.

Pure: configs, envelope bodies and offers in, no gRPC, no event loop (the broker runs
:func:`plan_offer` in a worker thread and caches its result under :func:`plan_key`).

Adapters from the config to the calculus: :func:`arrival_of` (the arrival model of a traffic
envelope) and :func:`burst_of` (the burst declared to the domains' ``max_burst_bits`` guardrail).

Planning one (model, path) candidate (:func:`plan_offer`), under the broker's admission policy
(``broker.admission``, recorded in the offer's ``admission``):

1. the burst must be within every domain's ``max_burst_bits``;
2. split the fidelity budget: ``eps_delay = eps - loss - e_model`` where
   ``loss = 1 - prod(1 - p_loss_i)`` over the path and ``e_model`` is the model's error
   probability; no budget left is a rejection;
3. size the reservation, by policy (every rate raised to ``min_tenant_rate_bps``; a rate above a
   ``max_tenant_rate_bps`` is a rejection):

   * ``snc``: :func:`federation.calculus.plan.plan_rates` gives the cost-minimising rates ``r_i``
     (bits/s, cost ``price_per_mbps_hour`` of each domain) whose composed bound meets the deadline
     at ``eps_delay`` (plan_rates guarantees ``compose_path(...).delay <= deadline`` at its rates);
     :func:`federation.calculus.compose.compose_path` then gives the composed bound and the
     per-domain budget ``(d_i, eps_i)``;
   * ``dnc``: the deterministic arrival curve ``sigma + rho t`` (:func:`token_bucket_of`; Poisson
     has none and is refused) through rate-latency domains ``r_i (t - T_i)^+`` (``T_i`` as for
     ``snc``: latency and propagation, plus the model's mean latency at the compute domain;
     exponential-service domains are taken as rate-latency at their reserved rate, the
     assumption of the deterministic calculus -- their random service times are not bounded):
     one common rate, the smallest whose worst case ``sum T_i + (sigma + (H-1) L) / r`` meets the
     deadline (:func:`federation.calculus.dnc.equal_rate`, ``L = request_size_bits`` packetized
     as ``snc`` counts a token bucket's packets); the bound is that worst case with
     ``epsilon_delay = 0``; each domain's budget ``d_i`` is its own worst case
     (:func:`federation.calculus.dnc.per_domain_delays`: the burst grown by the domains before
     it, so the ``d_i`` add up to more than the end-to-end worst case) at ``eps_i = eps_delay / H``:
     a domain that serves as its envelope says never exceeds ``d_i``, so the auditor can judge
     it at any ``eps_i > 0``;
   * ``peak-rate``: :func:`peak_rate_of` on every domain (or the ``dnc`` rate, where the deadline
     needs more), budgets and bound as for ``dnc`` at that rate;
   * ``none``: the mean rate (:func:`mean_rate_of`), no delay check and no bound: the contract's
     "bound" is the intent as asked, ``(d, eps_delay)``, method ``none`` (what the auditor then
     judges, proven by nothing); the budgets split it equally, ``d_i = T_i + (d - sum T_j) / H``, ``eps_i = eps_delay / H``
     (backed by nothing: the auditor shows what that costs). Capacity still refuses; the run lets
     such a tenant in unreserved (``agents.scenario``);
4. price it: model price + ``sum_i r_i/1e6 * price_per_mbps_hour_i``.

Domain slices. A network domain serves the tenant's slice as a rate-latency service (rate
``r_i``, latency ``T_i`` of its envelope, plus its propagation delay). The compute domain serves
it with i.i.d. exponential service times at the reserved rate (``EXPONENTIAL_SERVICE``); the
model's mean inference latency (catalogue ``latency.mean_s``) is added to the compute slice's
constant latency.

Physical ranges (:func:`check_physical`). The wire allows any positive double; the broker plans
only intents within :data:`PHYSICAL_RANGES` (a deadline up to a day, sizes from one bit, rates up to
a petabit per second, ...), so a value such as ``mean_size_bits=5e-324`` or ``deadline_s=1e300``
is an input error naming the field instead of an overflow deep in the calculus.

Units: seconds, bits, bits/s; prices per hour.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trefed.v1 import envelope_pb2, services_pb2

from federation.calculus.arrivals import MMOO, Arrival, CorrelatedMMOO, PoissonArrival, TokenBucket
from federation.config import (
    IntentConfig,
    MmooConfig,
    ModelConfig,
    PoissonConfig,
    TokenBucketConfig,
    TraceConfig,
)
from federation.errors import InputError, NoFiniteBound

if TYPE_CHECKING:
    from federation.calculus.compose import DomainSlice

__all__ = [
    "ADMISSION_POLICIES", "PHYSICAL_RANGES", "Infeasible", "arrival_of", "burst_of", "check_physical", "mean_rate_of",
    "packet_bits_of", "path_slices", "peak_rate_of", "plan_key", "plan_offer", "token_bucket_of",
]

#: ``field path -> (low, high)``, inclusive: what an intent must satisfy to be planned (units of the field).
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "intent.deadline_s": (1e-9, 86_400.0),                         # s: a nanosecond to a day
    "intent.epsilon": (1e-15, 1.0),                                # probability
    "intent.max_price": (0.0, 1e12),                               # per hour
    "intent.traffic.token_bucket.sigma_bits": (0.0, 1e15),         # bits
    "intent.traffic.token_bucket.rho_bps": (1e-3, 1e15),           # bits/s: up to 1 Pb/s
    "intent.traffic.poisson.rate_pps": (1e-6, 1e12),               # requests/s
    "intent.traffic.poisson.mean_size_bits": (1.0, 1e12),          # bits
    "intent.traffic.mmoo.peak_bps": (1e-3, 1e15),                  # bits/s
    "intent.traffic.mmoo.mean_on_s": (1e-9, 1e9),                  # s
    "intent.traffic.mmoo.mean_off_s": (1e-9, 1e9),                 # s
    "intent.traffic.trace.sigma_bits": (0.0, 1e15),                # bits
    "intent.traffic.trace.rho_bps": (1e-3, 1e15),                  # bits/s
    "intent.traffic.trace.mean_rate_bps": (1e-3, 1e15),            # bits/s
    "intent.traffic.trace.mean_size_bits": (1.0, 1e12),            # bits
    "intent.traffic.trace.max_size_bits": (1.0, 1e12),             # bits
}
#: The largest mean rate of a traffic envelope, bits/s (the calculus' rates stay finite below it).
MAX_MEAN_RATE_BPS = 1e15


class Infeasible(Exception):
    """A (model, path) candidate cannot meet the intent; the message names the domain and the limit."""


def check_physical(intent: IntentConfig) -> None:
    """Refuse an intent outside :data:`PHYSICAL_RANGES`, naming the field and its range.

    Raises
    ------
    InputError
        ``intent.deadline_s(=1e+300) must be in [1e-09, 86400] (s)``-style messages.
    """
    t = intent.traffic
    wire = {"token-bucket": "token_bucket", "poisson": "poisson", "mmoo": "mmoo", "trace": "trace"}[t.kind]
    values: dict[str, float] = {"intent.deadline_s": intent.deadline_s, "intent.epsilon": intent.epsilon,
                                "intent.max_price": intent.max_price}
    for name in type(t).model_fields:
        key = f"intent.traffic.{wire}.{name}"
        if key in PHYSICAL_RANGES:
            values[key] = float(getattr(t, name))
    for key, value in values.items():
        low, high = PHYSICAL_RANGES[key]
        if not low <= value <= high:
            raise InputError(f"{key}(={value!r}) must be in [{low:g}, {high:g}]")
    mean = (t.rho_bps if isinstance(t, TokenBucketConfig) else t.rate_pps * t.mean_size_bits
            if isinstance(t, PoissonConfig) else float(t.mean_rate_bps or 0.0) if isinstance(t, TraceConfig)
            else t.peak_bps * t.sources)
    if mean > MAX_MEAN_RATE_BPS:
        raise InputError(f"intent.traffic: mean rate {mean:g} bits/s must be at most {MAX_MEAN_RATE_BPS:g}")


def arrival_of(
    traffic: TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig, *, request_size_bits: float = 1.0
) -> Arrival:
    """The calculus' arrival model of a validated traffic envelope (continuous time, bits).

    A token bucket's and MMOO sources' packets are the model's requests (``request_size_bits``:
    what a compute domain with exponential service serves per completion; the data plane sends
    MMOO sources as whole requests, and the bounds take a packet's view of them); Poisson requests
    carry their own (mean) size; a trace is its fitted MGF envelope
    (:class:`~federation.calculus.arrivals.TabulatedArrival`, its own packet sizes).
    """
    if isinstance(traffic, TraceConfig):
        return traffic.arrival()
    if isinstance(traffic, TokenBucketConfig):
        return TokenBucket(traffic.sigma_bits, traffic.rho_bps, packet_size=request_size_bits)
    if isinstance(traffic, PoissonConfig):
        return PoissonArrival(
            rate=traffic.rate_pps,
            mean_size=traffic.mean_size_bits,
            size="exp" if traffic.exponential_sizes else "det",
        )
    cls = CorrelatedMMOO if traffic.correlated else MMOO
    return cls(peak=traffic.peak_bps, on=traffic.mean_on_s, off=traffic.mean_off_s, n=traffic.sources,
               packet=request_size_bits)


def burst_of(traffic: TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig) -> float:
    """The burst (bits) declared to domains for the ``max_burst_bits`` guardrail.

    Token bucket: ``sigma``. Poisson: one request (``mean_size_bits``; the deterministic size,
    or the mean of exponential sizes). MMOO: 0 (a fluid source has no instantaneous burst; its
    burstiness is in the MGF the calculus uses). Trace: its fitted token bucket's ``sigma_bits``
    (the trace's worst burst at ``rho_bps``).
    """
    if isinstance(traffic, TokenBucketConfig | TraceConfig):
        assert traffic.sigma_bits is not None  # a validated TraceConfig has its fit
        return traffic.sigma_bits
    if isinstance(traffic, PoissonConfig):
        return traffic.mean_size_bits
    return 0.0


def plan_key(
    model: ModelConfig,
    path: Sequence[str],
    bodies: Sequence[envelope_pb2.EnvelopeBody],
    intent: IntentConfig,
) -> tuple:
    """What an offer depends on: the model, the path, its envelopes' sequences and the intent
    without its tenant (hashable; equal keys give equal offers under one config)."""
    return (
        model.id,
        tuple(path),
        tuple(b.header.sequence for b in bodies),
        intent.deadline_s,
        intent.epsilon,
        tuple(intent.traffic.model_dump().items()),
    )


def _slices(
    model: ModelConfig, bodies: Sequence[envelope_pb2.EnvelopeBody], rates: Sequence[float]
) -> list[DomainSlice]:
    """The calculus' view of the path at ``rates`` (bits/s), see the module docstring."""
    from federation.calculus.compose import DomainSlice

    out = []
    for b, r in zip(bodies, rates):
        compute = b.header.kind == envelope_pb2.COMPUTE
        out.append(
            DomainSlice(
                domain_id=b.header.domain_id,
                rate=float(r),
                latency=b.model.latency_s + (model.latency.mean_s if compute else 0.0),
                propagation_delay=b.model.propagation_delay_s,
                service="exp" if b.model.service == envelope_pb2.EXPONENTIAL_SERVICE else "size",
                loss_probability=b.model.loss_probability,
                error_probability=model.error_probability if compute else 0.0,
                work_bits=model.request_size_bits if compute else 0.0,  # one inference per request
            )
        )
    return out


def path_slices(
    model: ModelConfig, bodies: Sequence[envelope_pb2.EnvelopeBody], rates: Sequence[float]
) -> list[DomainSlice]:
    """The calculus' view of a path (envelope bodies, path order) at reserved ``rates`` (bits/s)
    for ``model``: what an offer's bound is composed from (see the module docstring)."""
    return _slices(model, bodies, rates)


#: The broker's admission policies (``broker.admission``, :class:`~federation.config.BrokerSettings`).
ADMISSION_POLICIES: tuple[str, ...] = ("snc", "dnc", "peak-rate", "none")


def packet_bits_of(traffic: TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig, *,
                   request_size_bits: float) -> float:
    """The largest packet (bits) of a traffic envelope, what a store-and-forward hop holds it for:
    a trace's largest packet, else the model's request."""
    if isinstance(traffic, TraceConfig):
        assert traffic.max_size_bits is not None  # a validated TraceConfig has its fit
        return traffic.max_size_bits
    return request_size_bits


def token_bucket_of(
    traffic: TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig, *, request_size_bits: float
) -> tuple[float, float] | None:
    """The deterministic arrival curve ``sigma + rho t`` (bits, bits/s) of a traffic envelope, or
    None when it has none (what the ``dnc`` policy plans with).

    Token bucket: ``(sigma, rho)`` as declared. MMOO: only the peak bounds it (an on period has no
    bound on its length), so ``rho = sources * peak_bps``; the data plane sends each source's
    traffic as requests of ``request_size_bits``, and a packetized source exceeds its fluid curve
    by one packet (Le Boudec & Thiran, Thm 1.7.1), so ``sigma = sources * request_size_bits``.
    Trace: the token bucket fitted to it (the exact worst burst of the looped trace at ``rho_bps``).
    Poisson: None (any burst has a positive probability: no finite ``sigma``).
    """
    if isinstance(traffic, TraceConfig):
        assert traffic.sigma_bits is not None and traffic.rho_bps is not None  # fitted
        return traffic.sigma_bits, traffic.rho_bps
    if isinstance(traffic, TokenBucketConfig):
        return traffic.sigma_bits, traffic.rho_bps
    if isinstance(traffic, MmooConfig):
        return traffic.sources * request_size_bits, traffic.sources * traffic.peak_bps
    return None


def peak_rate_of(traffic: TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig, *,
                 slack_s: float) -> float | None:
    """The peak rate (bits/s) the ``peak-rate`` policy reserves, or None when there is none.

    MMOO: ``sources * peak_bps``, every source on. Token bucket: its burst arrives at once (an
    unbounded instantaneous rate), so its peak rate is taken as the rate that drains the burst
    within the deadline's slack ``slack_s`` (the deadline less the path's fixed latencies, s) while
    ``rho`` keeps arriving: ``rho + sigma / slack_s``. Trace: its fitted peak rate (the smallest
    rate whose bucket holds one packet). Poisson: None (no peak).
    """
    if isinstance(traffic, TraceConfig):
        return traffic.peak_bps
    if isinstance(traffic, TokenBucketConfig):
        return traffic.rho_bps + traffic.sigma_bits / slack_s
    if isinstance(traffic, MmooConfig):
        return traffic.sources * traffic.peak_bps
    return None


def mean_rate_of(traffic: TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig) -> float:
    """The long-run mean rate (bits/s) of a traffic envelope (what the ``none`` policy reserves):
    its arrival model's (:func:`arrival_of`)."""
    return arrival_of(traffic).mean_rate


@dataclass(frozen=True)
class _Plan:
    """What a policy decided: rates (bits/s), per-domain ``(d_i s, eps_i)``, the end-to-end bound."""

    rates: tuple[float, ...]
    budgets: tuple[tuple[float, float], ...]
    delay_s: float
    epsilon_delay: float
    theta: float
    method: str
    loss: float
    error: float


def _latencies(model: ModelConfig, bodies: Sequence[envelope_pb2.EnvelopeBody]) -> list[float]:
    """Each domain's fixed latency ``T_i`` (s): its envelope's latency and propagation, and the model's
    mean inference latency at the compute domain (as the stochastic calculus has them)."""
    return [float(s.latency + s.propagation_delay) for s in _slices(model, bodies, [1.0] * len(bodies))]


def _check_rates(path: Sequence[str], bodies: Sequence[envelope_pb2.EnvelopeBody], rates: Sequence[float],
                 policy: str) -> tuple[float, ...]:
    """``rates`` raised to every domain's ``min_tenant_rate_bps``; Infeasible above a ``max_tenant_rate_bps``."""
    out = []
    for d, b, r in zip(path, bodies, rates):
        g = b.guardrails
        if r > g.max_tenant_rate_bps:
            raise Infeasible(f"{policy}: domain {d!r}: needs {r:g} bps > guardrail max_tenant_rate_bps "
                             f"{g.max_tenant_rate_bps:g} bps")
        out.append(max(float(r), g.min_tenant_rate_bps))
    return tuple(out)


def _plan_snc(model: ModelConfig, path: Sequence[str], bodies: Sequence[envelope_pb2.EnvelopeBody],
              intent: IntentConfig, prices: Sequence[float], eps_delay: float) -> _Plan:
    """``snc``: the cheapest rates whose composed stochastic bound meets the deadline (module docstring)."""
    from federation.calculus.compose import compose_path
    from federation.calculus.plan import plan_rates

    arrival = arrival_of(intent.traffic, request_size_bits=model.request_size_bits)
    max_rates = [b.guardrails.max_tenant_rate_bps for b in bodies]
    # plan_rates needs positive weights: a free domain weighs (almost) nothing.
    costs = [max(p / 1e6, 1e-15) for p in prices]
    try:
        planned = plan_rates(
            _slices(model, bodies, max_rates),
            arrival,
            delay=intent.deadline_s,
            epsilon=eps_delay,
            costs=costs,
            max_rates=max_rates,
        )
    except NoFiniteBound as exc:
        limiting = min(zip(max_rates, path))[1]
        raise Infeasible(
            f"deadline {intent.deadline_s:g} s at epsilon_delay {eps_delay:.3g} is out of reach within the "
            f"domains' guardrail max_tenant_rate_bps (tightest: domain {limiting!r}, "
            f"{min(max_rates):g} bps): {exc.reason}"
        ) from None
    # plan_rates guarantees compose_path(...).delay <= deadline at its rates, each within
    # max_tenant_rate_bps (an envelope's validation makes min_tenant_rate_bps <= max_tenant_rate_bps).
    rates = [max(float(r), b.guardrails.min_tenant_rate_bps) for r, b in zip(planned, bodies)]
    # the domains' budgets share the deadline, each backed by its domain's own bound where they fit
    e2e = compose_path(_slices(model, bodies, rates), arrival, epsilon=eps_delay, share_delay=intent.deadline_s)
    if e2e.delay > intent.deadline_s:
        # Only if a rate was raised to a guardrail's minimum and the optimiser's tolerance made
        # the bound of the faster service come out higher: the bound at the planned rates holds
        # for the faster service too.
        e2e = compose_path(_slices(model, bodies, planned), arrival, epsilon=eps_delay,
                           share_delay=intent.deadline_s)
    per_domain = {pd.domain_id: pd for pd in e2e.per_domain}
    return _Plan(tuple(rates), tuple((float(per_domain[d].delay), float(per_domain[d].epsilon)) for d in path),
                 float(e2e.delay), float(e2e.epsilon_delay), float(e2e.theta), str(e2e.method),
                 float(e2e.loss_probability), float(e2e.error_probability))


def _worst_case(model: ModelConfig, path: Sequence[str], bodies: Sequence[envelope_pb2.EnvelopeBody],
                intent: IntentConfig, eps_delay: float, loss: float, rates: Sequence[float], sigma: float,
                rho: float, policy: str) -> _Plan:
    """The deterministic plan at ``rates``: the worst case end to end, and each domain's own as its
    budget ``d_i`` with ``eps_i = eps_delay / H`` (``dnc`` and ``peak-rate``)."""
    from federation.calculus.dnc import RateLatency, per_domain_delays, worst_case_delay

    hops = [RateLatency(r, t) for r, t in zip(rates, _latencies(model, bodies))]
    L = packet_bits_of(intent.traffic, request_size_bits=model.request_size_bits)
    worst = worst_case_delay(sigma, rho, hops, L)
    if worst > intent.deadline_s:
        raise Infeasible(f"{policy}: worst-case delay {worst:.6g} s at the reserved rates exceeds the deadline "
                         f"{intent.deadline_s:g} s")
    share = eps_delay / len(path)
    budgets = tuple((float(d), share) for d in per_domain_delays(sigma, rho, hops, L))
    return _Plan(tuple(float(r) for r in rates), budgets, float(worst), 0.0, math.nan, policy, loss,
                 model.error_probability)


def _deterministic(policy: str, model: ModelConfig, bodies: Sequence[envelope_pb2.EnvelopeBody],
                   intent: IntentConfig, lat: Sequence[float]) -> tuple[float, float, float]:
    """``(sigma, rho, r)``: the traffic's arrival curve (:func:`token_bucket_of`) and the smallest common
    rate whose worst case meets the deadline (``dnc`` and ``peak-rate``); Infeasible without a curve."""
    from federation.calculus.dnc import equal_rate

    tb = token_bucket_of(intent.traffic, request_size_bits=model.request_size_bits)
    if tb is None:
        raise Infeasible(f"{policy}: {intent.traffic.kind} traffic has no deterministic arrival curve (declare a "
                         f"token bucket)")
    sigma, rho = tb
    try:
        r = equal_rate(sigma, rho, lat, intent.deadline_s,
                       packet_bits_of(intent.traffic, request_size_bits=model.request_size_bits))
    except NoFiniteBound as exc:
        raise Infeasible(f"{policy}: {exc.reason}") from None
    return sigma, rho, r


def _plan_dnc(model: ModelConfig, path: Sequence[str], bodies: Sequence[envelope_pb2.EnvelopeBody],
              intent: IntentConfig, eps_delay: float, loss: float) -> _Plan:
    """``dnc``: the smallest common rate whose worst-case delay meets the deadline (module docstring)."""
    sigma, rho, r = _deterministic("dnc", model, bodies, intent, _latencies(model, bodies))
    rates = _check_rates(path, bodies, [r] * len(path), "dnc")
    return _worst_case(model, path, bodies, intent, eps_delay, loss, rates, sigma, rho, "dnc")


def _plan_peak(model: ModelConfig, path: Sequence[str], bodies: Sequence[envelope_pb2.EnvelopeBody],
               intent: IntentConfig, eps_delay: float, loss: float) -> _Plan:
    """``peak-rate``: the peak rate on every domain, or the ``dnc`` rate where the deadline needs more."""
    lat = _latencies(model, bodies)
    slack = intent.deadline_s - math.fsum(lat)
    if not slack > 0:
        raise Infeasible(f"peak-rate: deadline {intent.deadline_s:g} s is not above the path's latencies "
                         f"({math.fsum(lat):g} s)")
    peak = peak_rate_of(intent.traffic, slack_s=slack)
    if peak is None:
        raise Infeasible(f"peak-rate: {intent.traffic.kind} traffic has no peak rate (declare a token bucket)")
    sigma, rho, need = _deterministic("peak-rate", model, bodies, intent, lat)
    rates = _check_rates(path, bodies, [max(peak, need)] * len(path), "peak-rate")
    return _worst_case(model, path, bodies, intent, eps_delay, loss, rates, sigma, rho, "peak-rate")


def _plan_none(model: ModelConfig, path: Sequence[str], bodies: Sequence[envelope_pb2.EnvelopeBody],
               intent: IntentConfig, eps_delay: float, loss: float) -> _Plan:
    """``none``: the mean rate, no delay check; the budgets an equal split of what the tenant asked."""
    mean = mean_rate_of(intent.traffic)
    rates = _check_rates(path, bodies, [mean] * len(path), "none")
    lat = _latencies(model, bodies)
    slack = (intent.deadline_s - math.fsum(lat)) / len(path)
    if not slack > 0:
        raise Infeasible(f"none: deadline {intent.deadline_s:g} s is not above the path's latencies "
                         f"({math.fsum(lat):g} s)")
    budgets = tuple((t + slack, eps_delay / len(path)) for t in lat)
    # no bound: the contract carries the intent as asked, (d, eps_delay), proven by nothing
    return _Plan(rates, budgets, intent.deadline_s, eps_delay, math.nan, "none", loss, model.error_probability)


def plan_offer(
    model: ModelConfig,
    path: Sequence[str],
    bodies: Sequence[envelope_pb2.EnvelopeBody],
    intent: IntentConfig,
    prices_per_mbps_hour: Sequence[float],
    admission: str = "snc",
) -> services_pb2.Offer:
    """The offer of one (model, path) candidate for an intent under an admission policy (module docstring).

    Parameters
    ----------
    model : ModelConfig
        The catalogue model; its compute domain ends ``path``.
    path : sequence of str
        Domain ids, access domain first.
    bodies : sequence of EnvelopeBody
        The path's *verified* envelope bodies, in path order.
    intent : IntentConfig
        Deadline (s), epsilon, traffic.
    prices_per_mbps_hour : sequence of float
        Each domain's price of a reserved Mb/s for an hour, path order.
    admission : str
        The policy, one of :data:`ADMISSION_POLICIES` (``broker.admission``).

    Returns
    -------
    Offer
        Path, per-domain budgets (rate bits/s, ``d_i`` s, ``eps_i``, envelope id and sequence),
        the end-to-end bound (``delay_s <= intent.deadline_s``; ``snc``: the composed stochastic
        bound at ``epsilon_delay``; ``dnc``/``peak-rate``: the worst case, ``epsilon_delay = 0``;
        ``none``: the intent as asked, method ``none``, proven by nothing), the price per hour and ``admission``; its ``offer_id`` is a
        digest of :func:`plan_key` and the policy.

    Raises
    ------
    Infeasible
        The candidate cannot meet the intent within the domains' guardrails (the message names
        the domain and the limit).
    InputError
        An unknown ``admission``.
    """
    if admission not in ADMISSION_POLICIES:
        raise InputError(f"broker.admission(={admission!r}) must be one of {', '.join(ADMISSION_POLICIES)}")
    burst = burst_of(intent.traffic)
    loss_keep = 1.0
    for b in bodies:
        g = b.guardrails
        if burst > g.max_burst_bits:
            raise Infeasible(
                f"domain {b.header.domain_id!r}: burst {burst:g} bits exceeds guardrail max_burst_bits "
                f"{g.max_burst_bits:g}"
            )
        loss_keep *= 1.0 - b.model.loss_probability
    loss = 1.0 - loss_keep
    eps_delay = intent.epsilon - loss - model.error_probability
    if not eps_delay > 0:
        raise Infeasible(
            f"loss {loss:.3g} + model error {model.error_probability:g} leave no delay budget within "
            f"epsilon {intent.epsilon:g}"
        )
    if admission == "snc":
        plan = _plan_snc(model, path, bodies, intent, prices_per_mbps_hour, eps_delay)
    elif admission == "dnc":
        plan = _plan_dnc(model, path, bodies, intent, eps_delay, loss)
    elif admission == "peak-rate":
        plan = _plan_peak(model, path, bodies, intent, eps_delay, loss)
    else:
        plan = _plan_none(model, path, bodies, intent, eps_delay, loss)

    budgets = []
    cost = model.price_per_hour
    for d, r, (d_i, eps_i), b, price in zip(path, plan.rates, plan.budgets, bodies, prices_per_mbps_hour):
        budgets.append(
            services_pb2.DomainBudget(
                domain_id=d,
                delay_s=d_i,
                epsilon=eps_i,
                rate_bps=r,
                tre_id=b.header.tre_id,
                tre_sequence=b.header.sequence,
            )
        )
        cost += r / 1e6 * price
    bound = services_pb2.EndToEndBound(
        delay_s=plan.delay_s,
        epsilon_delay=plan.epsilon_delay,
        loss_probability=plan.loss,
        error_probability=plan.error,
        epsilon_total=plan.epsilon_delay + plan.loss + plan.error,
        theta=plan.theta,
        method=plan.method,
    )
    key = plan_key(model, path, bodies, intent)
    if admission != "snc":  # an snc offer keeps the id it had before the policies
        key = (*key, admission)
    return services_pb2.Offer(
        offer_id="of-" + hashlib.sha256(repr(key).encode()).hexdigest()[:16],
        model_id=model.id,
        compute_domain=model.compute_domain,
        path=list(path),
        bound=bound,
        budgets=budgets,
        price_per_hour=cost,
        admission=admission,
    )
