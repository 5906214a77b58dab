"""The model ``trefed compare`` checks, and whether bound and simulation describe the same quantity.

:func:`compared_model` parses the ``--arrival`` / ``--hop`` / ``--cross`` specs, refuses the
models where a calculus bound and a simulation are not about the same quantity, chooses the
delay notion, and returns a :class:`ComparedModel`: the calculus model of ``trefed bound``
(:func:`federation.calculus.model.build_model`) with the packetisation corrections that make it
bound the *simulated* quantity. Units: seconds, bits, bits/s (continuous time only).

Like with like. The calculus bounds the *time-stationary virtual delay* (the time until all work
of the flow that arrived by a random instant ``t`` has left the last hop, plus the latencies, in
the fluid model); the data plane measures each packet's *end-to-end delay* (egress of the last
hop minus arrival at the first). Two delay notions are compared, each exactly:

``packet`` (auto for one Poisson ``--arrival`` through FIFO hops). The simulated quantity is every
packet's end-to-end delay. By PASTA and Slivnyak's theorem a packet arriving at ``t`` sees the
time-stationary state plus itself, so the bound is turned into a bound on the *packet* delay
(the conversions are in :mod:`federation.compare.curve`).

``virtual`` (auto otherwise; e.g. on-off sources, several aggregated flows, WFQ). The simulated
quantity is the calculus' delay of the packet system at time-uniform probe instants ``tau``: the
horizontal deviation ``min{T: A(tau) <= D(tau + T)}`` between the flow's cumulative bits at
arrival (first hop) and at egress (last hop; a packet's bits count when it leaves), and at least
the sum of latencies. With the flow served FIFO internally this is the time until all its work
that arrived by ``tau`` has left (the delay of a zero-size probe). Packetised on-off sources emit
a packet when the fluid source has produced it, so ``A_packet(s, t] <= A_fluid(s, t] + k L``
(``k`` sub-sources of ``L``-bit packets); through constant-rate links (bottleneck ``C``) the bound
is shifted by ``k L / C``, and a tandem gets the packetizer latencies ``L/R_h`` of every hop but
the last. On-off *cross* traffic gets the extra burst ``k L`` in its envelope (both notions).

Refused (an :class:`~federation.errors.InputError` says why): ``pareto-onoff`` (no MGF);
``token-bucket`` (the data plane's greedy source is a deterministic worst case from time 0, not a
stationary process); the data-plane-only hop keys ``buffer``/``ceiling``/``loss`` (the calculus
bounds lossless queues); the ``partition`` scheduler with several flows at a hop (not
work-conserving: the blind-multiplexing bound does not cover it); exponential sizes through two
or more store-and-forward hops (no packetizer latency bounds an unbounded packet);
``service=exp`` hops with cross traffic or with packets of several sizes (the calculus' random
server removes one packet of the flow's size per completion); on-off sources with cross traffic
or ``service=exp`` hops; several ``--arrival`` flows under ``wfq`` unless fixed-size through
constant-rate hops without cross traffic (WFQ serves the aggregate out of order, so its last
hop's packetizer ``L_max/R_H`` is added: the cumulative packet departures lag the fluid ones by
up to one packet). Discrete time is refused by the CLI (the data plane simulates continuous time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from federation.calculus.arrivals import Arrival, arrival_from_spec
from federation.calculus.model import build_model
from federation.calculus.services import ConstantRate, Leftover, Service
from federation.dataplane.traffic import traffic_from_spec
from federation.errors import InputError
from federation.specs import ArrivalSpec, HopSpec, parse_arrival, parse_cross, parse_hop

__all__ = [
    "Notion",
    "Tagged",
    "ComparedModel",
    "compared_model",
    "arrival_rate",
    "bottleneck_utilisation",
]

Notion = Literal["packet", "virtual"]


class Tagged(Arrival):
    """The flow ``base`` plus one tagged packet at the end of the window.

    The packet has ``size`` bits (``exp``: exponential of mean ``size``): the envelope's burst
    term grows by ``theta * size`` (fixed) or ``-log(1 - theta * size)`` (exponential, whose MGF
    ends at ``theta = 1 / size``). Also the extra burst ``k L`` of packetised on-off cross traffic.
    """

    def __init__(self, base: Arrival, size: float, exp: bool) -> None:
        self.base, self.size, self.exp = base, size, exp
        self.time = base.time

    @property
    def theta_max(self) -> float:
        return min(self.base.theta_max, 1.0 / self.size if self.exp else math.inf)

    @property
    def mean_rate(self) -> float:
        return self.base.mean_rate

    @property
    def packet_size(self) -> float:
        return self.base.packet_size

    def kappa(self, theta: float) -> float:
        return self.base.kappa(theta)

    def beta(self, theta: float) -> float:
        extra = theta * self.size if not self.exp else (
            -math.log1p(-theta * self.size) if theta * self.size < 1 else math.inf)
        return self.base.beta(theta) + extra


@dataclass(frozen=True)
class ComparedModel:
    """The model of one comparison: the parsed specs, the corrected calculus model, the notion."""

    arr_specs: tuple[ArrivalSpec, ...]
    hops: tuple[HopSpec, ...]
    cross: tuple[tuple[int, ArrivalSpec], ...]
    flow: Arrival
    services: tuple[Service, ...]  # calculus services (cross as Leftover)
    latency: float
    notion: Notion
    notion_reason: str
    conversion: str
    shift: float  # virtual notion: the bound is evaluated at d - shift
    size: float  # packet notion: the tagged packet's (mean) size, bits
    size_exp: bool
    exp_size: float  # bits per completion of service=exp hops (data plane)


def _subsources(spec: ArrivalSpec) -> int:
    if spec.kind == "mmoo":
        return int(spec.num("n"))
    if spec.kind == "correlated-mmoo":
        n = int(spec.num("n"))
        m = int(round(spec.num("corr") * n))
        return (1 if m else 0) + n - m
    return 0


def compared_model(arrivals: Sequence[str], hops: Sequence[str], cross: Sequence[str], scheduler: str,
                   packet_size: float, notion: str) -> ComparedModel:
    """The checked model of ``trefed compare`` (see the module notes; arguments as in
    :func:`federation.compare.run.compare`).

    Raises
    ------
    InputError
        Bad input, or a model where bound and simulation do not describe the same quantity.
    """
    if not arrivals:
        raise InputError("give at least one --arrival")
    if not hops:
        raise InputError("give at least one --hop")
    if not (packet_size > 0 and math.isfinite(packet_size)):
        raise InputError(f"--packet-size(={packet_size!r}) must be > 0 and finite (bits)")
    arr = tuple(parse_arrival(a, "continuous") for a in arrivals)
    hp = tuple(parse_hop(h) for h in hops)
    crs = tuple(parse_cross(x, len(hp), "continuous") for x in cross)
    cr = tuple((c.hop, c.arrival) for c in crs)
    for a in (*arr, *(c for _, c in cr)):
        if a.kind == "pareto-onoff":
            raise InputError(f"arrival {a.text!r}: Pareto on-off traffic has no MGF, so there is no "
                             "calculus bound to compare")
        if a.kind == "token-bucket":
            raise InputError(f"arrival {a.text!r}: the data plane's token-bucket source is the greedy "
                             "worst case from time 0, not a stationary process, so a simulated "
                             "distribution says nothing about the (deterministic) bound; use `trefed bound`")
    for i, h in enumerate(hp, start=1):
        for key, default in (("buffer", math.inf), ("ceiling", math.inf), ("loss", 0.0)):
            if getattr(h, key) != default:
                raise InputError(f"hop {i} ({h.text!r}): {key} is a data-plane key (drops/loss); the "
                                 "calculus bounds the delay of a lossless queue, so compare refuses it")
    flows_at = [len(arr) + sum(1 for j, _ in cr if j == i) for i in range(1, len(hp) + 1)]
    shared = any(n > 1 for n in flows_at)
    if scheduler == "partition" and shared:
        raise InputError("--scheduler partition with several flows at a hop: a static partition is not "
                         "work-conserving, and the calculus' blind-multiplexing bound covers only "
                         "work-conserving schedulers (fifo, wfq)")
    if scheduler not in ("fifo", "wfq", "partition"):
        raise InputError(f"--scheduler(={scheduler!r}) must be fifo, wfq or partition")
    poisson = [a for a in arr if a.kind == "poisson"]
    onoff = [a for a in arr if a.kind != "poisson"]
    size_hops = [h for h in hp if h.service == "size"]
    exp_hops = [i for i, h in enumerate(hp, start=1) if h.service == "exp"]
    if any(a["size"] == "exp" for a in poisson) and len(size_hops) >= 2:
        raise InputError("exponential packet sizes through two or more store-and-forward (service=size) "
                         "hops: a packet is forwarded only when fully received, and no packetizer "
                         "latency bounds an unbounded packet, so the fluid bound does not cover the "
                         "simulated packets; use size=det or one size hop")
    if exp_hops:
        if onoff or any(a["size"] != "det" for a in poisson) or len({a.num("mean_size") for a in poisson}) > 1:
            raise InputError("service=exp hops: the calculus' random server removes one packet of the flow's "
                             "size per completion; compare needs Poisson flows of one fixed size (size=det) "
                             "for this to be the simulated server")
        if any(j in exp_hops for j, _ in cr):
            raise InputError("cross traffic at a service=exp hop: the data plane gives every packet an "
                             "exponential time whatever its size, the calculus subtracts the cross bits, "
                             "so the two models differ; put cross traffic on service=size hops")
    if onoff and cr:
        raise InputError("on-off sources with cross traffic: compare's packetisation correction holds "
                         "for constant-rate links without cross traffic only")

    calculus = build_model(arr, hp, crs, time="continuous", multiplexing="fifo" if scheduler == "fifo" else "blind")
    flow, services = calculus.flow, list(calculus.services)
    latency = sum(h.latency + h.prop for h in hp)
    # packetised on-off cross traffic lags its fluid by < k L bits (k sub-sources of L-bit packets),
    # so over any window it can bring up to k L bits more than the fluid: give it that extra burst
    lag_c: dict[int, float] = {}
    for j, c in cr:
        if _subsources(c):
            lag_c[j] = lag_c.get(j, 0.0) + _subsources(c) * packet_size
    cross_note = ""
    for j, extra in lag_c.items():
        s_j = services[j - 1]
        assert isinstance(s_j, Leftover)
        services[j - 1] = type(s_j)(s_j.base, Tagged(s_j.cross, extra, False))
        cross_note = "; packetised on-off cross traffic: extra burst of (sub-sources x packet size) bits"
    # data-plane bits per completion of service=exp hops: the flow of interest's mean size (as simulate)
    tr = [traffic_from_spec(a, packet_size=packet_size) for a in arr]
    exp_size = sum(t.packet_rate * t.sizes.mean for t in tr) / sum(t.packet_rate for t in tr)

    single_poisson = len(arr) == 1 and arr[0].kind == "poisson"
    fifo_like = scheduler == "fifo" or not shared
    want: Notion
    if notion == "auto":
        if single_poisson and fifo_like:
            want, reason = "packet", "one Poisson flow through FIFO hops: PASTA makes packet delays comparable"
        else:
            why = ("the flow is not a single Poisson process" if not single_poisson
                   else f"the {scheduler} scheduler orders packets beyond FIFO")
            want, reason = "virtual", f"{why}: packets do not see time averages, so the time-stationary " \
                                      "virtual delay is compared"
    elif notion == "packet":
        if not single_poisson:
            raise InputError("--notion packet needs exactly one Poisson --arrival (PASTA: a Poisson "
                             "packet sees the time-stationary state the bound is about); use --notion virtual")
        if not fifo_like:
            raise InputError(f"--notion packet with the {scheduler} scheduler and shared hops: a packet may "
                             "be overtaken, so its delay is not the FIFO one; use --notion virtual")
        want, reason = "packet", "requested"
    elif notion == "virtual":
        want, reason = "virtual", "requested"
    else:
        raise InputError(f"--notion(={notion!r}) must be auto, packet or virtual")

    shift = 0.0
    size = float(arr[0].num("mean_size")) if single_poisson else 1.0
    size_exp = bool(single_poisson and arr[0]["size"] == "exp")
    if want == "packet":
        conversion = ("packet delay from the virtual-delay bound: smallest of the own-service "
                      "convolution (one hop) / last-hop transmission shift (constant-rate tandem, "
                      "Friedman), tagged-packet MGF tandem bound, max-plus without the "
                      "lambda/(lambda+theta) factor, product form (exact sojourn)")
    else:
        det_sizes = [a.num("mean_size") for a in poisson] + [packet_size] * len(onoff)
        lmax = max(det_sizes)
        packet_model = single_poisson and arr[0]["size"] == "det"
        notes = ["virtual delay at time-uniform probes vs the calculus bound"]
        if len(services) >= 2 and not packet_model and size_hops:
            # the calculus packetizes only a single fixed-size Poisson flow; do it for the rest
            out = []
            for i, s in enumerate(services):
                if isinstance(s, ConstantRate) and i < len(services) - 1:
                    s = replace(s, latency=s.latency + lmax / s.rate)
                out.append(s)
            services = out
            notes.append(f"packetizer latency {lmax:g}/R_h on every size hop but the last")
        if scheduler == "wfq" and shared and len(arr) > 1:
            # WFQ serves the tenants of the aggregate out of arrival order: the aggregate's last
            # packet in service at the last hop is no longer its own last bit, so the last hop's
            # packetizer L_max/R_H counts too (a pure shift on constant-rate links only)
            if cr or exp_hops or any(a["size"] == "exp" for a in poisson):
                raise InputError("several --arrival flows under wfq: WFQ serves the aggregate out of "
                                 "arrival order, so its delay exceeds the fluid bound by up to a packet "
                                 "transmission at the last hop; compare covers this only for fixed-size "
                                 "packets through constant-rate hops without cross traffic")
            shift += lmax / hp[-1].rate
            notes.append(f"wfq reorders the aggregate: last-hop packetizer {lmax:g}/{hp[-1].rate:g} s added")
        k = sum(_subsources(a) for a in onoff)
        if k:
            cmin = min(h.rate for h in hp)
            shift += k * packet_size / cmin
            notes.append(f"packetised on-off lag: bound at d - {k} x {packet_size:g} / {cmin:g} s")
        conversion = "; ".join(notes)
    conversion += cross_note
    return ComparedModel(arr, hp, cr, flow, tuple(services), latency, want, reason, conversion,
                  shift, size, size_exp, exp_size)


def bottleneck_utilisation(m: ComparedModel) -> float:
    """Utilisation of the most loaded hop (all flows there: the flow of interest and its cross traffic)."""
    u = 0.0
    for i, h in enumerate(m.hops, start=1):
        load = m.flow.mean_rate + sum(arrival_rate(c) for j, c in m.cross if j == i)
        u = max(u, load / h.rate)
    return u


def arrival_rate(spec: ArrivalSpec) -> float:
    """Mean rate (bits/s) of a parsed continuous-time arrival spec."""
    return arrival_from_spec(spec).mean_rate

