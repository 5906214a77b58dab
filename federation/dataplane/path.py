"""The simulated path: its domains, the tenant sources on it, and who is admitted.

Frozen values that configure a :class:`~federation.dataplane.engine.Simulation`; units s, bits,
bits/s.

A path is a sequence of :class:`Domain` s (0-based index). Each domain is a single
work-conserving server of ``rate`` bits/s followed by a constant delay ``latency + prop`` s: a
packet's *work* is its size in bits (``service=None``) or a random service time drawn per
packet (:class:`ServiceTimes`, seconds at the nominal rate: exponential / lognormal /
empirical, e.g. an inference server) times ``rate``. A domain may have a finite buffer (bits of
unfinished work; a packet that does not fit is dropped), a hard latency ceiling (a packet whose
sojourn in the domain would exceed it is lost: dropped on arrival when the FIFO server can
already tell, otherwise on departure), Bernoulli or Gilbert-Elliott (:class:`GilbertElliott`)
loss on the way out, batching (up to ``batch`` waiting packets served together, needing the
largest member's work), and an inference error probability (the packet is delivered but
flagged).

Scheduling per domain: ``fifo`` (one shared queue), ``partition`` (each tenant with a
reservation gets a dedicated FIFO server of its reserved rate and the same share of the buffer;
flows without a reservation share a FIFO server of the left-over rate) and ``wfq``
(work-conserving self-clocked fair queueing with the reserved rates as weights, see
:func:`federation.dataplane.kernels.scfq`).

A :class:`Source` is one tenant's traffic entering at domain ``entry`` and leaving after domain
``exit``. :class:`Admission` gives the admitted tenant set and their reservations: traffic of
rejected tenants never enters. :func:`path_loads` gives every hop's long-run load (and every
tenant partition's), which :func:`federation.stability.require_stable` checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from federation.dataplane.traffic import TrafficModel, exponentials
from federation.errors import InputError
from federation.specs import HopSpec
from federation.stability import HopLoad

__all__ = [
    "path_loads",
    "Scheduler",
    "SCHEDULERS",
    "ServiceTimes",
    "GilbertElliott",
    "Domain",
    "Source",
    "Admission",
]

Scheduler = Literal["fifo", "partition", "wfq"]
SCHEDULERS: tuple[str, ...] = ("fifo", "partition", "wfq")


@dataclass(frozen=True)
class ServiceTimes:
    """I.i.d. service times (s, at the domain's nominal rate), independent of packet sizes.

    ``exp``: exponential of mean ``mean``; ``lognormal``: mean ``mean`` and log-standard deviation
    ``sigma``; ``empirical``: draws with replacement from ``values``.
    """

    kind: Literal["exp", "lognormal", "empirical"] = "exp"
    mean: float = 1.0
    sigma: float = 0.5
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("exp", "lognormal", "empirical"):
            raise InputError(f"service kind(={self.kind!r}) must be exp|lognormal|empirical")
        if self.kind == "empirical":
            if not self.values or any(not (v >= 0 and math.isfinite(v)) for v in self.values):
                raise InputError("empirical service times need values, all >= 0 and finite")
            object.__setattr__(self, "mean", float(np.mean(self.values)))
        elif not (self.mean > 0 and math.isfinite(self.mean)):
            raise InputError(f"service mean(={self.mean:g}) must be > 0 and finite")
        if self.kind == "lognormal" and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise InputError(f"lognormal sigma(={self.sigma:g}) must be > 0 and finite")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` service times (s) from ``rng``.

        The engine draws ``exp`` service times from its counter-based streams instead
        (:mod:`federation.dataplane.rng`, one per tenant flow and domain), lognormal and empirical
        ones here.
        """
        if self.kind == "exp":
            return exponentials(rng, n, self.mean)
        if self.kind == "lognormal":
            out = rng.standard_normal(n)
            out *= self.sigma
            out += math.log(self.mean) - 0.5 * self.sigma**2
            np.exp(out, out=out)
            return out
        vals = np.asarray(self.values)
        return vals[rng.integers(0, len(vals), n)]


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state burst loss: per packet, good->bad w.p. ``p_gb``, bad->good w.p. ``p_bg``;
    loss probability ``loss_good`` / ``loss_bad`` in each state (chain per tenant flow)."""

    p_gb: float
    p_bg: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for k in ("p_gb", "p_bg", "loss_good", "loss_bad"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"Gilbert-Elliott {k}(={v:g}) must be in [0, 1]")

    @property
    def stationary_loss(self) -> float:
        """Long-run loss probability."""
        pb = self.p_gb / (self.p_gb + self.p_bg) if self.p_gb + self.p_bg > 0 else 0.0
        return pb * self.loss_bad + (1 - pb) * self.loss_good


@dataclass(frozen=True)
class Domain:
    """One domain on the path (link or compute); see the module docstring. Units: s, bits, bits/s."""

    rate: float
    latency: float = 0.0
    prop: float = 0.0
    service: ServiceTimes | None = None
    buffer: float = math.inf
    ceiling: float = math.inf
    loss: float = 0.0
    gilbert: GilbertElliott | None = None
    batch: int = 1
    error: float = 0.0
    scheduler: Scheduler = "fifo"
    name: str = ""

    def __post_init__(self) -> None:
        w = f"domain {self.name or ''}".rstrip()
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise InputError(f"{w}: rate(={self.rate:g}) must be > 0 and finite")
        for k in ("latency", "prop"):
            v = getattr(self, k)
            if not (v >= 0 and math.isfinite(v)):
                raise InputError(f"{w}: {k}(={v:g}) must be >= 0 and finite")
        for k in ("buffer", "ceiling"):
            if not getattr(self, k) > 0:
                raise InputError(f"{w}: {k}(={getattr(self, k):g}) must be > 0")
        if not 0.0 <= self.loss < 1.0:
            raise InputError(f"{w}: loss(={self.loss:g}) must be in [0, 1)")
        if not 0.0 <= self.error <= 1.0:
            raise InputError(f"{w}: error(={self.error:g}) must be in [0, 1]")
        if self.batch < 1 or int(self.batch) != self.batch:
            raise InputError(f"{w}: batch(={self.batch}) must be a whole number >= 1")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"{w}: scheduler(={self.scheduler!r}) must be one of {'|'.join(SCHEDULERS)}")
        if self.batch > 1 and self.scheduler != "fifo":
            raise InputError(f"{w}: batching needs the fifo scheduler (got {self.scheduler!r})")

    @classmethod
    def from_hop(cls, hop: HopSpec, scheduler: Scheduler = "fifo", name: str = "",
                 packet_size: float = 1.0) -> Domain:
        """The domain of a parsed ``--hop``.

        ``service=exp``: i.i.d. exponential service times of mean ``packet_size / rate`` s, i.e.
        one packet of ``packet_size`` bits (the flow of interest's mean packet size) per
        completion at ``rate`` bits/s -- the model of ``trefed bound`` (``ExpService``).
        """
        if not (packet_size > 0 and math.isfinite(packet_size)):
            raise InputError(f"packet_size(={packet_size!r}) must be > 0 and finite")
        service = ServiceTimes("exp", packet_size / hop.rate) if hop.service == "exp" else None
        return cls(rate=hop.rate, latency=hop.latency, prop=hop.prop, service=service, buffer=hop.buffer,
                   ceiling=hop.ceiling, loss=hop.loss, scheduler=scheduler, name=name)

    @property
    def delay(self) -> float:
        """Constant delay after the server (s)."""
        return self.latency + self.prop


@dataclass(frozen=True)
class Source:
    """Traffic of ``tenant`` entering at domain ``entry`` and leaving after ``exit`` (None: the last)."""

    tenant: int
    traffic: TrafficModel
    entry: int = 0
    exit: int | None = None


@dataclass(frozen=True)
class Admission:
    """Admitted tenants (None: everyone) and reservations (bits/s; one rate or one per domain)."""

    admitted: frozenset[int] | None = None
    reservations: Mapping[int, float | tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def proportional(cls, sources: Sequence[Source], domains: Sequence[Domain]) -> Admission:
        """Everyone admitted; each domain's rate split among the flows crossing it in proportion
        to their offered work (packets/s, times the mean size on size-served domains).

        A flow gets a domain's whole rate where it does not cross it (never used there).
        """
        per: dict[int, list[float]] = {s.tenant: [] for s in sources}
        for h, d in enumerate(domains):
            here = [s for s in sources if s.entry <= h <= (s.exit if s.exit is not None else len(domains) - 1)]

            def load(s: Source) -> float:
                return s.traffic.packet_rate * (1.0 if d.service is not None else s.traffic.sizes.mean)

            total = sum(load(s) for s in here)
            for s in sources:
                per[s.tenant].append(d.rate * load(s) / total if s in here else d.rate)
        return cls(None, {t: tuple(v) for t, v in per.items()})


def path_loads(sources: Sequence[Source], domains: Sequence[Domain], admission: Admission,
              packet_size: float) -> list[HopLoad]:
    """The load of every hop (from 1), and of every tenant's partition under ``partition``.

    A flow's offered work at a hop is its packet rate times its mean size (bits/s), or times
    ``packet_size`` on ``service=exp`` hops (one such packet per completion); Bernoulli loss on
    the hops before thins it. Under ``partition`` each tenant's reserved server is checked as well
    (the unreserved tenants share what is left). Hops with a finite buffer or latency ceiling are
    never unstable (they drop what they cannot serve) and pass at most their rate on.
    """
    nh = len(domains)
    through = [1.0] * len(sources)  # fraction of each flow's packets still on the path
    loads: list[HopLoad] = []
    for h, d in enumerate(domains):
        here = [f for f, s in enumerate(sources) if s.entry <= h <= (nh - 1 if s.exit is None else s.exit)]

        def work(f: int, d: Domain = d) -> float:
            t = sources[f].traffic
            return through[f] * t.packet_rate * (packet_size if d.service is not None else t.sizes.mean)

        offered = sum(work(f) for f in here)
        cross = sum(work(f) for f in here if sources[f].entry == h == sources[f].exit)
        if d.buffer < math.inf or d.ceiling < math.inf:
            for f in here:
                through[f] *= min(1.0, d.rate / offered) if offered > 0 else 1.0
        else:
            loads.append(HopLoad(h + 1, offered, d.rate, cross=cross))
        if d.scheduler == "partition" and d.buffer == math.inf and d.ceiling == math.inf:
            reserved: dict[int, float] = {}
            for f in here:
                r = admission.reservations.get(sources[f].tenant)
                if r is not None:
                    reserved[f] = float(r[h] if isinstance(r, tuple) else r)
            for f, r in reserved.items():
                loads.append(HopLoad(h + 1, work(f), r, who=f"tenant {sources[f].tenant}'s partition",
                                     rate_name="reserved rate"))
            rest = [f for f in here if f not in reserved]
            if rest:
                left = d.rate - sum(reserved.values())
                if left > 0:
                    loads.append(HopLoad(h + 1, sum(work(f) for f in rest), left,
                                         who="the unreserved tenants' share", rate_name="left-over rate"))
        for f in here:
            through[f] *= 1.0 - d.loss
    return loads
