"""The data plane of a federation run: the admitted tenants' traffic through their paths' domains.

:func:`simulate_run` turns a config and the tenants the control plane let in
(:class:`ActiveTenant`: path, model, reserved rates per domain or none, active window) into one
:class:`~federation.dataplane.engine.Simulation` per distinct path and returns every domain's
packet log (what that domain's meters saw: the rows its telemetry reports) and the packets
delivered end to end.

The model of each domain is its envelope's (:func:`plane_domain`): a work-conserving server of
the model's ``rate_bps`` followed by ``latency_s + propagation_delay_s``; a ``rate-latency``
domain serves packets by size (bits), an ``exponential`` (compute) domain draws i.i.d.
exponential service times of mean ``request_size_bits / rate_bps`` at its full rate, i.e. of mean
``request_size_bits / r`` at a reservation ``r`` -- the slices the broker's calculus bounds
(``agents.broker.plan``). The scheduler (``run.scheduler``) decides how tenants share a domain:
``partition`` gives each reserved tenant a server of its reserved rate (unreserved tenants share
the rest), ``wfq`` weighs them by it, ``fifo`` ignores reservations. Each tenant's compute domain
adds the model's mean inference latency (catalogue ``latency.mean_s``, a constant, as the calculus
assumes) and flags each answer wrong with the model's ``error_probability``; both act after the
last server, so they are applied to the logs after the simulation, exactly.

Traffic (:func:`plane_traffic`): a ``token-bucket`` tenant sends Poisson requests of
``request_size_bits`` at rate ``rho`` through a ``(sigma, rho)`` shaper (random, and conforming to
its envelope: the heaviest traffic the envelope admits on average); ``poisson`` and ``mmoo`` are
what they declare (MMOO sources packetised into requests); a ``trace`` tenant replays its trace
file (:class:`~federation.dataplane.traffic.TraceReplay`: its packets and sizes, from
``offset_s``, looped if asked). A tenant is on during
``[start_s, end_s)`` (:class:`~federation.dataplane.traffic.Windowed`).

Paths. The engine simulates a tandem. Tenants on the same path share one simulation; a domain
that lies on several distinct paths is simulated once per path (its capacity, not its queue,
shared: each path's simulation sees only that path's tenants), which :attr:`PlaneRun.shared`
reports so the reader knows.

Units: seconds, bits, bits/s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from federation.config import (
    DomainConfig,
    FederationConfig,
    MmooConfig,
    ModelConfig,
    PoissonConfig,
    TokenBucketConfig,
    TraceConfig,
)
from federation.dataplane.engine import Simulation
from federation.dataplane.impairments import Impairment
from federation.dataplane.path import Admission, Domain, Scheduler, ServiceTimes, Source
from federation.dataplane.telemetry import Delivered, DomainLog, Telemetry
from federation.dataplane.traffic import (
    CorrelatedMMOOTraffic,
    MMOOTraffic,
    PacketSizes,
    Poisson,
    Shaped,
    TraceReplay,
    TrafficModel,
    Windowed,
    child_generator,
)
from federation.errors import InputError

__all__ = ["ActiveTenant", "PlaneRun", "plane_domain", "plane_traffic", "simulate_run"]

#: Purpose key of the per-tenant stream of inference errors (distinct from the engine's).
_ERROR_STREAM = 977


@dataclass(frozen=True)
class ActiveTenant:
    """A tenant whose traffic enters the data plane.

    Attributes
    ----------
    tenant_id, index
        Its id and its index in the config's tenants (the data plane's tenant and flow number).
    path
        Domain ids, access first, compute last.
    model_id
        The catalogue model serving it.
    rates_bps
        Reserved rate per domain of ``path`` (bits/s), or None: admitted without a reservation
        (admission control off, best effort).
    start_s, end_s
        When it sends: ``[start_s, end_s)``, s.
    """

    tenant_id: str
    index: int
    path: tuple[str, ...]
    model_id: str
    rates_bps: tuple[float, ...] | None
    start_s: float
    end_s: float


@dataclass(frozen=True, eq=False)
class PlaneRun:
    """What the data plane did.

    Attributes
    ----------
    logs
        Domain id -> every packet it saw (rows of all tenants crossing it, by ingress); ``flow``
        and ``tenant`` are the tenant's config index, so packet ids are unique over the run.
    delivered
        Packets that left their path (``tenant`` = config index; ``ingress`` at the first domain).
    generated, lost
        Packets sent and lost on the path, per tenant index.
    horizon_s
        Simulated time, s.
    packet_hops
        Packets served, summed over domains.
    wall_s
        Wall time of the simulation, s.
    shared
        Domains lying on more than one distinct path (simulated once per path).
    """

    logs: dict[str, DomainLog]
    delivered: Delivered
    generated: dict[int, int]
    lost: dict[int, int]
    horizon_s: float
    packet_hops: int
    wall_s: float
    shared: tuple[str, ...]

    def tenant_delays(self, index: int) -> np.ndarray:
        """End-to-end delays (s) of tenant ``index``'s delivered packets, in order of arrival."""
        d = self.delivered
        m = d.tenant == index
        order = np.argsort(d.ingress[m], kind="stable")
        return (d.egress[m] - d.ingress[m])[order]

    def tenant_outcomes(self, index: int, entry: str, *, errors: bool = True) -> np.ndarray:
        """Per packet tenant ``index`` sent, in order of arrival at its first domain ``entry``: its
        end-to-end delay (s), or inf when it was lost (or, with ``errors``, answered wrongly): what
        violates any deadline. With ``errors`` it is the series the auditor judges a total budget on.
        """
        first = self.logs[entry]
        seq = first.seq[first.tenant == index]  # the log is in ingress order
        out = np.full(len(seq), np.inf)
        if len(seq) == 0:
            return out
        at = np.zeros(int(seq.max()) + 1, np.int64)
        at[seq] = np.arange(len(seq))
        d = self.delivered
        m = (d.tenant == index) & ~d.error if errors else d.tenant == index
        out[at[d.seq[m]]] = d.egress[m] - d.ingress[m]
        return out


def plane_domain(d: DomainConfig, scheduler: str, request_size_bits: float) -> Domain:
    """The data-plane domain of a config domain (see the module docstring); bits, s."""
    m = d.model
    service = ServiceTimes("exp", request_size_bits / m.rate_bps) if m.service == "exponential" else None
    sched: Scheduler = scheduler  # type: ignore[assignment]
    return Domain(rate=m.rate_bps, latency=m.latency_s, prop=m.propagation_delay_s, service=service,
                  loss=m.loss_probability, scheduler=sched, name=d.id)


def plane_traffic(traffic: TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig, request_size_bits: float,
                  tenant_id: str = "") -> TrafficModel:
    """The data-plane traffic of a tenant's declared envelope (see the module docstring).

    Raises
    ------
    InputError
        A token bucket whose depth ``sigma_bits`` cannot hold one request; a trace without its
        file (a wire intent's) or whose file no longer reads.
    """
    if isinstance(traffic, TraceConfig):
        if traffic.path is None:
            raise InputError(f"tenant {tenant_id!r}: traffic.path: a trace tenant's data plane needs its trace file")
        from federation.trace.schema import read_trace

        trace = read_trace(traffic.path)
        return TraceReplay(trace.times_s, trace.sizes_bits, trace.duration_s, traffic.offset_s, traffic.loop)
    fixed = PacketSizes("fixed", request_size_bits)
    if isinstance(traffic, TokenBucketConfig):
        if traffic.sigma_bits < request_size_bits:
            raise InputError(f"tenant {tenant_id!r}: traffic.sigma_bits(={traffic.sigma_bits:g}) is smaller than "
                             f"one request ({request_size_bits:g} bits): no request conforms")
        return Shaped(Poisson(traffic.rho_bps / request_size_bits, fixed), traffic.sigma_bits, traffic.rho_bps)
    if isinstance(traffic, PoissonConfig):
        sizes = PacketSizes("exponential" if traffic.exponential_sizes else "fixed", traffic.mean_size_bits)
        return Poisson(traffic.rate_pps, sizes)
    if traffic.correlated:
        return CorrelatedMMOOTraffic(traffic.mean_on_s, traffic.mean_off_s, traffic.peak_bps, traffic.sources,
                                     1.0, fixed)
    return MMOOTraffic(traffic.mean_on_s, traffic.mean_off_s, traffic.peak_bps, traffic.sources, fixed)


def _impairments(config: FederationConfig, path: Sequence[str]) -> list[Impairment]:
    run = config.run
    out = []
    for imp in run.impairments:
        if imp.domain in path:
            out.append(Impairment(path.index(imp.domain), imp.kind, run.scaled(imp.start_s), run.scaled(imp.end_s),
                                  imp.value, imp.prob))
    return out


def _postprocess(tel: Telemetry, group: Sequence[ActiveTenant], models: dict[str, ModelConfig],
                 seed: int) -> tuple[list[DomainLog], Delivered]:
    """Each tenant's model after the last server: mean inference latency, error flags (exact)."""
    assert tel.domains is not None
    last = tel.domains[-1]
    eg, err = last.egress.copy(), last.error.copy()
    d = tel.delivered
    d_eg, d_err = d.egress.copy(), d.error.copy()
    for t in group:
        model = models[t.model_id]
        for tenant, seq, egress, error in ((last.tenant, last.seq, eg, err), (d.tenant, d.seq, d_eg, d_err)):
            m = tenant == t.index
            egress[m] += model.latency.mean_s
            if model.error_probability > 0 and m.any():
                top = int(seq[m].max()) + 1
                flags = child_generator(np.random.SeedSequence(seed, spawn_key=(t.index,)), _ERROR_STREAM).random(top)
                error[m] |= flags[seq[m]] < model.error_probability
    logs = list(tel.domains[:-1]) + [DomainLog(last.domain, last.flow, last.seq, last.tenant, last.ingress, eg,
                                               last.lost, err)]
    return logs, Delivered(d.flow, d.seq, d.tenant, d.ingress, d_eg, d_err)


def _by_tenant(log: DomainLog) -> DomainLog:
    """``log`` with ``flow`` set to the tenant index (unique over the run's paths)."""
    return DomainLog(log.domain, log.tenant.astype(np.int16), log.seq, log.tenant, log.ingress, log.egress, log.lost,
                     log.error)


def simulate_run(config: FederationConfig, tenants: Sequence[ActiveTenant], *,
                 on_progress: Callable[[float, int], None] | None = None,
                 chunk_packets: int = 1 << 16) -> PlaneRun:
    """Simulate ``config.run.horizon_s`` seconds of the tenants' traffic (see the module docstring).

    Parameters
    ----------
    config
        The federation (domains, models, ``run`` settings: seed, schedulers, impairments).
    tenants
        The tenants let in, with their paths, models, reservations and windows.
    on_progress
        Called after each chunk with the fraction of the simulated time done (over all paths) and
        the packets simulated so far.
    chunk_packets
        About this many packets per chunk (results do not depend on it).

    Raises
    ------
    InputError
        No tenant to simulate, a tenant's traffic the data plane cannot send, reservations that
        exceed a domain's rate.
    """
    if not tenants:
        raise InputError("no tenant was let in: there is no traffic to simulate")
    run = config.run
    horizon = run.horizon_s
    models = {m.id: m for m in config.models}
    groups: dict[tuple[str, ...], list[ActiveTenant]] = {}
    for t in tenants:
        groups.setdefault(t.path, []).append(t)
    on_paths: dict[str, int] = {}
    for p in groups:
        for d in p:
            on_paths[d] = on_paths.get(d, 0) + 1
    logs: dict[str, list[DomainLog]] = {}
    delivered: list[Delivered] = []
    generated: dict[int, int] = {}
    lost: dict[int, int] = {}
    hops = 0
    t0 = time.perf_counter()
    done_paths = 0
    packets = 0
    for path, group in groups.items():
        size = max(models[t.model_id].request_size_bits for t in group)  # one service law per domain
        domains = [plane_domain(config.domain(d), run.scheduler_of(d), size) for d in path]
        sources = [Source(t.index, Windowed(plane_traffic(config.tenants[t.index].intent.traffic,
                                                          models[t.model_id].request_size_bits, t.tenant_id),
                                            t.start_s, max(t.end_s, t.start_s + 1e-9)))
                   for t in group]
        reservations = {t.index: t.rates_bps for t in group if t.rates_bps is not None}
        sim = Simulation(domains, sources, seed=run.seed, horizon=horizon, admission=Admission(None, reservations),
                         impairments=_impairments(config, path), chunk_packets=chunk_packets)
        chunks = []
        for chunk in sim.chunks():
            chunks.append(chunk)
            packets += int(chunk.generated.sum())
            if on_progress is not None:
                reached = float(chunk.delivered.ingress.max()) if len(chunk.delivered) else 0.0
                on_progress((done_paths + min(1.0, reached / horizon)) / len(groups), packets)
        tel = Telemetry.concat(chunks)
        hops += sim.packet_hops
        path_logs, dl = _postprocess(tel, group, models, run.seed)
        for d, log in zip(path, path_logs):
            logs.setdefault(d, []).append(_by_tenant(log))
        delivered.append(dl)
        for f, s in enumerate(sim.sources):
            generated[s.tenant] = int(tel.generated[f])
            lost[s.tenant] = int(tel.lost[f])
        done_paths += 1
    if on_progress is not None:
        on_progress(1.0, packets)
    merged = {}
    for d, parts in logs.items():
        log = DomainLog.concat(parts)
        order = np.argsort(log.ingress, kind="stable")
        merged[d] = DomainLog(log.domain, *(getattr(log, f)[order] for f in
                                            ("flow", "seq", "tenant", "ingress", "egress", "lost", "error")))
    return PlaneRun(merged, Delivered.concat(delivered), generated, lost, horizon, hops, time.perf_counter() - t0,
                    tuple(sorted(d for d, n in on_paths.items() if n > 1)))
