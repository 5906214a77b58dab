"""Bound versus simulation for one model: is the calculus bound valid, and how tight is it?

:func:`compare` takes the ``--arrival`` / ``--hop`` / ``--cross`` model of ``trefed bound`` and
``trefed simulate``, computes the calculus bound curve ``P(D > d)`` on a grid of ``d`` **and** runs
the packet-level simulation of the same model (continuous time), and returns a frozen
:class:`CompareResult`: the simulated CCDF with exact Clopper-Pearson intervals, per target
epsilon the bounded and the simulated delay (a quantile with an order-statistic interval) and
their ratio, and a validity verdict. Pure: no printing, no files (see ``federation.compare.plots`` and
``federation.compare.report``).

Like with like. The calculus bounds the *time-stationary virtual delay* (the time until all work
of the flow that arrived by a random instant ``t`` has left the last hop, plus the latencies, in
the fluid model); the data plane measures each packet's *end-to-end delay* (egress of the last
hop minus arrival at the first). Two delay notions are compared, each exactly:

``packet`` (auto for one Poisson ``--arrival`` through FIFO hops). The simulated quantity is every
packet's end-to-end delay. By PASTA and Slivnyak's theorem a packet arriving at ``t`` sees the
time-stationary state plus itself, so the bound is turned into a bound on the *packet* delay,
taking the smallest of these valid conversions at every ``d``:

* one hop: ``P(D > d) = E[P(V > d - X)] <= E[min(1, b(d - X))]``, with ``X`` the packet's own
  service time (``L/R`` for fixed size, exponential for ``size=exp`` or a ``service=exp`` hop),
  independent of the stationary workload ``V`` that the FIFO packet waits for. With cross traffic
  ``b`` bounds the flow's virtual delay under strict priority to the cross traffic, which is at
  least the total workload over the rate that a FIFO packet waits for. ``b`` is evaluated on a
  fine grid and used as a right-continuous step function (valid because ``b`` is non-increasing);
* a tandem of constant-rate links without cross traffic, fixed-size packets: FIFO packets of one
  size see their bottleneck (Friedman 1965): ``D = W + sum_h L/R_h`` with ``W`` the bottleneck's
  waiting time, while the fluid bound with the packetizer latencies covers ``W + sum_{h<H} L/R_h``,
  so ``P(D > d) <= b(d - L/R_H)`` (martingale and MGF bounds);
* ``mgf-maxplus`` already bounds the store-and-forward packet tandem; for a tagged packet the
  factor ``lambda/(lambda + theta)`` (the exponential time since the last arrival) is dropped;
* ``product-form`` is the exact sojourn tail of the Jackson tandem: used as is;
* any tandem (cross traffic, exponential hops): the tagged packet leaves no later than all the
  flow's work that arrived by ``t`` including itself, so the MGF tandem bound with the packet as an
  extra burst (``exp(theta*L)``) bounds it, for any work-conserving scheduler.

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

Refused (an :class:`~federation.errors.InputError` says why): discrete time (the data plane
simulates continuous time); ``pareto-onoff`` (no MGF); ``token-bucket`` (the data plane's
greedy source is a deterministic worst case from time 0, not a stationary process); the
data-plane-only hop keys ``buffer``/``ceiling``/``loss`` (the calculus bounds lossless
queues); the ``partition`` scheduler with several flows at a hop (not work-conserving: the
blind-multiplexing bound does not cover it); exponential sizes through two or more
store-and-forward hops (no packetizer latency bounds an unbounded packet); ``service=exp`` hops
with cross traffic or with packets of several sizes (the calculus' random server removes one
packet of the flow's size per completion); on-off sources with cross traffic or ``service=exp`` hops;
several ``--arrival`` flows under ``wfq`` unless fixed-size through constant-rate hops without
cross traffic (WFQ serves the aggregate out of order, so its last hop's packetizer ``L_max/R_H``
is added: the cumulative packet departures lag the fluid ones by up to one packet).

Statistics. The first ``warmup`` fraction of the packets is discarded (the run starts empty).
Clopper-Pearson intervals assume independent samples, but delays in a queue are strongly
autocorrelated, so the verdict uses an honest lower limit: the exceedance indicator's variance
inflation is estimated by batch means (``batches`` contiguous batches) and the Clopper-Pearson
limit is taken at the effective sample size ``n / VIF`` (one-sided, ``confidence``). A grid point
has enough data when it has at least ``min_effective`` effective exceedances. The verdict is
VALID if the bound is at least that lower limit at every such point, else VIOLATED at the point
with the largest lower limit / bound.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

import numpy as np
from scipy import stats

from agents.cli.bound import build_model
from federation.calculus.arrivals import Arrival, PoissonArrival
from federation.calculus.bound import Bound
from federation.calculus.compose import packetized, violation_bound
from federation.calculus.martingale import martingale_violation
from federation.calculus.packet import maxplus_violation, product_form_violation
from federation.calculus.services import ConstantRate, ExpService, Leftover, Service
from federation.calculus.tandem import tandem_violation
from federation.dataplane.engine import Admission, Domain, Scheduler, Simulation, Source
from federation.dataplane.traffic import traffic_from_spec
from federation.errors import InputError, NoFiniteBound
from federation.specs import ArrivalSpec, HopSpec, parse_arrival, parse_cross, parse_hop

__all__ = [
    "Notion",
    "GridPoint",
    "EpsilonRow",
    "LoadRow",
    "CompareResult",
    "compare",
    "compare_loads",
    "batch_lower_limit",
    "quantile_ci",
    "DEFAULT_EPSILONS",
]

Notion = Literal["packet", "virtual"]
DEFAULT_EPSILONS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)


@dataclass(frozen=True)
class GridPoint:
    """One delay ``d`` (s) of the grid: the bound and the simulated ``P(D > d)``.

    ``sim_lower`` is the one-sided lower confidence limit (level ``CompareResult.confidence``) at
    the batch-means effective sample size; ``enough`` says whether the point enters the verdict.
    """

    delay: float
    bound: float
    method: str
    theta: float  # the bound's optimising theta (1/bit, or 1/s for mgf-maxplus); nan if none
    sim: float
    count: int  # samples with delay > d
    ci95_low: float  # exact Clopper-Pearson (independent samples)
    ci95_high: float
    sim_lower: float  # batch-corrected one-sided lower limit used by the verdict
    effective_n: float
    enough: bool


@dataclass(frozen=True)
class EpsilonRow:
    """Per target ``epsilon``: bounded delay, simulated ``(1 - epsilon)``-quantile (s) and the ratio."""

    epsilon: float
    bound_delay: float
    bound_method: str
    sim_delay: float
    sim_ci95_low: float
    sim_ci95_high: float  # inf when too few samples for an upper order statistic
    ratio: float  # bound_delay / sim_delay
    enough: bool  # at least 10 samples beyond the quantile


@dataclass(frozen=True)
class LoadRow:
    """One utilisation of a ``--loads`` sweep (arrival rates scaled to ``load`` of the bottleneck)."""

    load: float
    scale: float
    epsilons: tuple[EpsilonRow, ...]
    valid: bool


@dataclass(frozen=True)
class CompareResult:
    """Everything :func:`compare` found. Delays in seconds, probabilities in [0, 1]."""

    arrivals: tuple[str, ...]
    hops: tuple[str, ...]
    cross: tuple[str, ...]
    scheduler: str
    packets: int
    seed: int
    packet_size: float
    notion: Notion
    notion_reason: str
    conversion: str  # how the calculus bound was turned into a bound on the simulated quantity
    utilisation: float  # of the bottleneck hop (all flows there)
    samples: int  # after the warm-up
    latency: float  # sum of latencies and propagation delays (the smallest possible delay)
    grid: tuple[GridPoint, ...]
    epsilons: tuple[EpsilonRow, ...]
    valid: bool
    worst_delay: float  # the d with the largest sim_lower / bound (nan if no point has enough data)
    worst_ratio: float  # that sim_lower / bound (> 1 means violated)
    confidence: float
    elapsed_bound: float  # s
    elapsed_sim: float  # s
    sim_delays: np.ndarray | None = None  # sorted samples (for plots; not in JSON)
    loads: tuple[LoadRow, ...] = ()

    @property
    def verdict(self) -> str:
        """``"VALID"`` or ``"VIOLATED"``."""
        return "VALID" if self.valid else "VIOLATED"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (no numpy arrays; nan/inf become None)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float | np.floating):
                return float(x) if math.isfinite(x) else None
            if isinstance(x, np.integer):
                return int(x)
            return x

        def row(obj: Any) -> dict[str, Any]:
            return {k: clean(v) for k, v in obj.__dict__.items()}

        return {
            "inputs": {
                "arrivals": list(self.arrivals), "hops": list(self.hops), "cross": list(self.cross),
                "scheduler": self.scheduler, "packets": self.packets, "seed": self.seed,
                "packet_size": self.packet_size, "epsilons": [e.epsilon for e in self.epsilons],
                "confidence": self.confidence,
            },
            "notion": self.notion,
            "notion_reason": self.notion_reason,
            "conversion": self.conversion,
            "utilisation": clean(self.utilisation),
            "samples": self.samples,
            "latency": clean(self.latency),
            "verdict": self.verdict,
            "worst_delay": clean(self.worst_delay),
            "worst_ratio": clean(self.worst_ratio),
            "grid": [row(g) for g in self.grid],
            "epsilons": [row(e) for e in self.epsilons],
            "loads": [{"load": r.load, "scale": r.scale, "valid": r.valid,
                       "epsilons": [row(e) for e in r.epsilons]} for r in self.loads],
            "elapsed_bound_seconds": self.elapsed_bound,
            "elapsed_sim_seconds": self.elapsed_sim,
        }


# ------------------------------------------------------------------------------------------ stats


def batch_lower_limit(indicator_counts: np.ndarray, batch_sizes: np.ndarray, level: float) -> tuple[float, float]:
    """One-sided lower confidence limit of a proportion from autocorrelated samples.

    ``indicator_counts[b]`` exceedances among ``batch_sizes[b]`` contiguous samples. The variance
    inflation factor ``VIF = (t_{B-1}/z)^2 m s_b^2 / (p (1 - p))`` (``s_b^2`` the variance of the
    ``B`` batch fractions, ``m`` the mean batch size, the Student-t factor for the estimated
    variance) gives the effective sample size ``n_eff = n / max(1,
    VIF)``; the limit is the Clopper-Pearson one at ``(p n_eff, n_eff)``. Returns
    ``(lower, n_eff)``; ``lower = 0`` when there is no exceedance.
    """
    n = float(batch_sizes.sum())
    k = float(indicator_counts.sum())
    if n <= 0 or k <= 0:
        return 0.0, n
    p = k / n
    if p >= 1.0:
        return float((1.0 - level) ** (1.0 / n)), n
    frac = indicator_counts / batch_sizes
    b = len(batch_sizes)
    m = n / b
    s2 = float(np.var(frac, ddof=1)) if b > 1 else p * (1 - p) / m
    # (t_{b-1} / z)^2: the batch variance is itself estimated from b batches (Student t)
    tz = (stats.t.ppf(level, max(b - 1, 1)) / stats.norm.ppf(level)) ** 2 if b > 1 else 1.0
    vif = max(1.0, tz * m * s2 / (p * (1.0 - p)))
    neff = n / vif
    lo = float(stats.beta.ppf(1.0 - level, p * neff, neff - p * neff + 1.0))
    return (lo if math.isfinite(lo) else 0.0), neff


def quantile_ci(sorted_x: np.ndarray, p: float, level: float = 0.95, vif: float = 1.0) -> tuple[float, float, float]:
    """The ``p``-quantile of sorted samples and its distribution-free order-statistic interval.

    The estimate is the smallest sample with empirical CDF >= ``p``; the interval is
    ``[x_(l), x_(u)]`` with ``l, u`` the binomial ``(n, p)`` quantiles at ``(1 -/+ level)/2``
    (``P(x_(l) <= q_p <= x_(u)) >= level`` for independent samples). For autocorrelated samples
    pass the variance inflation factor ``vif`` of the indicator ``x > q_p``: the ranks come from
    the binomial at the effective size ``n / vif`` and are scaled back to ``n``. ``inf`` when the
    upper rank exceeds ``n``.
    """
    n = len(sorted_x)
    if n == 0:
        return math.nan, math.nan, math.nan
    i = min(n - 1, max(0, math.ceil(p * n) - 1))
    a = (1.0 - level) / 2.0
    vif = max(1.0, float(vif))
    ne = max(1, int(n / vif))
    lo_i = int(math.floor(stats.binom.ppf(a, ne, p) * n / ne))  # 1-based order statistic l
    hi_i = int(math.ceil((stats.binom.ppf(1.0 - a, ne, p) + 1) * n / ne))
    lo = float(sorted_x[lo_i - 1]) if lo_i >= 1 else -math.inf
    hi = float(sorted_x[hi_i - 1]) if hi_i <= n else math.inf
    return float(sorted_x[i]), lo, hi


# ------------------------------------------------------------------------------------------ model


class _Tagged(Arrival):
    """The flow plus one tagged packet at the end of the window (``size`` bits, fixed or Exp mean)."""

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
class _Model:
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


def _model(arrivals: Sequence[str], hops: Sequence[str], cross: Sequence[str], scheduler: str,
           packet_size: float, notion: str) -> _Model:
    if not arrivals:
        raise InputError("give at least one --arrival")
    if not hops:
        raise InputError("give at least one --hop")
    if not (packet_size > 0 and math.isfinite(packet_size)):
        raise InputError(f"--packet-size(={packet_size!r}) must be > 0 and finite (bits)")
    arr = tuple(parse_arrival(a, "continuous") for a in arrivals)
    hp = tuple(parse_hop(h) for h in hops)
    cr = tuple((c.hop, c.arrival) for c in (parse_cross(x, len(hp), "continuous") for x in cross))
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

    ns = argparse.Namespace(time="continuous", arrival=list(arrivals), hop=list(hops), cross=list(cross),
                            dependent=False)
    flow, services, _ = build_model(ns)
    services = list(services)
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
        services[j - 1] = Leftover(s_j.base, _Tagged(s_j.cross, extra, False))
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
    return _Model(arr, hp, cr, flow, tuple(services), latency, want, reason, conversion,
                  shift, size, size_exp, exp_size)


# ------------------------------------------------------------------------------------------ bound


class _BoundCurve:
    """``d -> (epsilon, method, theta)``: a valid bound on the *simulated* quantity's ``P(D > d)``."""

    def __init__(self, m: _Model, d_hi: float, fine: int = 300) -> None:
        self.m = m
        self.flow = m.flow
        self.services = list(m.services)
        self.lat = m.latency
        self.H = len(self.services)
        self.fl = packetized(self.flow, self.services)
        self.cross = any(isinstance(s, Leftover) for s in self.services)
        last = self.services[-1]
        base = last.base if isinstance(last, Leftover) else last
        self.own_exp = isinstance(base, ExpService) or m.size_exp
        # the tagged packet's own service time at the last hop (s): mean of X
        self.own_mean = base.packet_size / base.rate if isinstance(base, ExpService) else m.size / base.mean_rate
        self.friedman = (self.H >= 2 and not self.cross and not m.size_exp
                         and all(isinstance(s, ConstantRate) for s in self.services))
        self.conv = self.H == 1
        self._fine: tuple[np.ndarray, np.ndarray, list[Bound]] | None = None
        self._d_hi = d_hi
        self._n_fine = fine

    def raw(self, d: float) -> Bound:
        return violation_bound(self.flow, self.services, d)

    def _fine_grid(self) -> tuple[np.ndarray, np.ndarray, list[Bound]]:
        if self._fine is None:
            g = np.linspace(self.lat, self.lat + (self._d_hi - self.lat) * 1.5, self._n_fine)
            bs = [self.raw(float(x)) for x in g]
            self._fine = (g, np.array([b.epsilon for b in bs]), bs)
        return self._fine

    def _convolved(self, d: float) -> tuple[float, Bound]:
        """``E[min(1, b(d - X))]`` with ``b`` a right-continuous upper step function on the fine grid."""
        g, e, bs = self._fine_grid()
        y = d - self.lat  # X ranges over [0, inf); b(d - X) = 1 when d - X < g[0] = lat
        if y <= 0:
            return 1.0, bs[0]
        # cells [g_i, g_{i+1}) of d - X, X = d - (cell): P(d - X in [g_i, g_{i+1})) = P(X in (d - g_{i+1}, d - g_i)]
        edges = np.append(g, np.inf)
        hi_x = d - edges[:-1]  # X <= d - g_i
        lo_x = d - edges[1:]   # X > d - g_{i+1}
        if self.own_exp:
            mu = 1.0 / self.own_mean

            def cdf(x: np.ndarray) -> np.ndarray:
                return -np.expm1(-mu * np.clip(x, 0.0, None))
        else:
            x0 = self.own_mean

            def cdf(x: np.ndarray) -> np.ndarray:
                return (x >= x0).astype(float)
        w = np.clip(cdf(hi_x) - cdf(lo_x), 0.0, None)
        p_below = 1.0 - float(cdf(np.array([d - g[0]]))[0])  # d - X < g[0]: X > d - lat
        val = p_below + float(w @ e)
        i = int(np.searchsorted(g, d - self.own_mean, side="right")) - 1
        return min(1.0, max(val, 0.0)), bs[max(i, 0)]

    def __call__(self, d: float) -> tuple[float, str, float]:
        m = self.m
        if m.notion == "virtual":
            b = self.raw(d - m.shift)
            return b.epsilon, b.method, b.theta
        cands: list[tuple[float, str, float]] = []
        if self.conv:
            v, b = self._convolved(d)
            cands.append((v, f"{b.method}+own-service", b.theta))
        if self.friedman:
            x = d - self.own_mean
            for fb in (martingale_violation(self.flow, self.fl, x), tandem_violation(self.flow, self.fl, x)):
                if fb is not None:
                    cands.append((fb.epsilon, f"{fb.method}+last-hop-shift", fb.theta))
        mp = maxplus_violation(self.flow, self.services, d)
        if mp is not None and isinstance(self.flow, PoissonArrival):
            lam = self.flow.rate
            cands.append((min(1.0, mp.epsilon * (lam + mp.theta) / lam), "mgf-maxplus(tagged)", mp.theta))
        pf = product_form_violation(self.flow, self.services, d)
        if pf is not None:
            cands.append((pf.epsilon, "product-form", pf.theta))
        try:
            tb = tandem_violation(_Tagged(self.flow, m.size, m.size_exp), self.fl, d)
            cands.append((tb.epsilon, "mgf-tandem(tagged)", tb.theta))
        except NoFiniteBound:
            pass
        if not cands:  # pragma: no cover - the tagged MGF bound always applies to a stable model
            return 1.0, "none", math.nan
        return min(cands, key=lambda c: c[0])

    def delay(self, eps: float, lo: float, hi: float) -> tuple[float, str]:
        """Smallest grid-free ``d`` in ``[lo, ...]`` with bound ``<= eps`` (bisection; inf if none)."""
        f = self(lo)
        if f[0] <= eps:
            return lo, f[1]
        for _ in range(60):
            if self(hi)[0] <= eps:
                break
            hi = lo + 2.0 * (hi - lo)
        else:
            return math.inf, "none"
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if self(mid)[0] <= eps:
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-5 * max(hi, 1e-300):
                break
        return hi, self(hi)[1]


# ------------------------------------------------------------------------------------------ simulate


def _simulate(m: _Model, scheduler: str, packets: int, seed: int, packet_size: float,
              progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival at hop 1, egress of the last hop, size in bits) of every delivered packet of the
    flow of interest, in arrival order."""
    sched = cast(Scheduler, scheduler)  # checked by _model
    domains = [Domain.from_hop(h, sched, name=str(i + 1), packet_size=m.exp_size)
               for i, h in enumerate(m.hops)]
    sources = [Source(i, traffic_from_spec(a, packet_size=packet_size)) for i, a in enumerate(m.arr_specs)]
    k = len(sources)
    for i, (hop, spec) in enumerate(m.cross):
        sources.append(Source(k + i, traffic_from_spec(spec, packet_size=packet_size), entry=hop - 1, exit=hop - 1))
    adm = Admission() if scheduler == "fifo" else Admission.proportional(sources, domains)
    sim = Simulation(domains, sources, seed=seed, packets=packets, admission=adm, record_domains=False)
    cols: dict[str, list[np.ndarray]] = {"a": [], "e": [], "f": [], "q": []}
    done = 0
    for chunk in sim.chunks():
        d = chunk.delivered
        if len(d):
            if sim.nflows > k:
                d = d.select(d.flow < k)
            cols["a"].append(np.asarray(d.ingress, dtype=float))
            cols["e"].append(np.asarray(d.egress, dtype=float))
            cols["f"].append(np.asarray(d.flow, dtype=np.int64))
            cols["q"].append(np.asarray(d.seq, dtype=np.int64))
        done += int(chunk.generated[0])
        if progress is not None:
            progress(done, packets)
    a, e, f, q = (np.concatenate(v) if v else np.empty(0) for v in cols.values())
    order = np.argsort(a, kind="stable")
    a, e, f, q = a[order], e[order], f[order].astype(np.int64), q[order].astype(np.int64)
    # packet sizes: the telemetry has none, so replay each flow's generator (same seed, same stream)
    size = np.empty(len(a))
    for i, src in enumerate(sources[:k]):
        sel = f == i
        if not sel.any():
            continue
        gen = src.traffic.generator(np.random.SeedSequence(seed, spawn_key=(src.tenant, src.entry)))
        t_i, s_i = gen.take(float(np.nextafter(a[sel].max(), np.inf)))
        if len(t_i) <= q[sel].max() or not np.array_equal(t_i[q[sel]], a[sel]):  # pragma: no cover
            raise RuntimeError("replayed traffic does not match the simulated packets")
        size[sel] = s_i[q[sel]]
    return a, e, size


def _samples(m: _Model, a: np.ndarray, e: np.ndarray, size: np.ndarray, warmup: float, seed: int) -> np.ndarray:
    """The simulated quantity, in time order, after the warm-up (see the module notes).

    ``virtual``: the horizontal deviation between the flow's cumulative arrivals (bits, at the
    first hop) and departures (bits, at the egress of the last hop) at time-uniform probes, i.e.
    ``min{T: A(tau) <= D(tau + T)}`` -- the calculus' delay -- and at least the path latency. It is
    the time until all the flow's work that arrived by ``tau`` has left when the flow is served
    FIFO internally; under WFQ with several flows of interest it is the FIFO-equivalent delay of
    the aggregate's bits, which is what the bound is about.
    """
    n = len(a)
    if n < 100:
        raise InputError(f"only {n} packets delivered: raise --packets")
    start = int(warmup * n)
    if m.notion == "packet":
        return (e - a)[start:]
    cum_a = np.cumsum(size)
    oe = np.argsort(e, kind="stable")
    e_sorted = e[oe]
    cum_d = np.cumsum(size[oe])
    t0, t1 = float(a[start]), float(a[-1])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x70726F6265,)))
    tau = np.sort(rng.uniform(t0, t1, n - start))
    idx = np.searchsorted(a, tau, side="right") - 1  # the last packet arrived by tau (>= start)
    need = cum_a[idx] * (1.0 - 1e-12)
    j = np.minimum(np.searchsorted(cum_d, need, side="left"), n - 1)
    v = e_sorted[j] - tau
    np.maximum(v, m.latency, out=v)
    return v


# ------------------------------------------------------------------------------------------ compare


def _bottleneck_util(m: _Model) -> float:
    u = 0.0
    for i, (h, s) in enumerate(zip(m.hops, m.services), start=1):
        load = m.flow.mean_rate + sum(_arrival_rate(c) for j, c in m.cross if j == i)
        u = max(u, load / h.rate)
        del s
    return u


def _arrival_rate(spec: ArrivalSpec) -> float:
    """Mean rate (bits/s) of a parsed continuous-time arrival spec."""
    from federation.calculus.arrivals import arrival_from_spec

    return arrival_from_spec(spec).mean_rate


def compare(
    arrivals: Sequence[str],
    hops: Sequence[str],
    cross: Sequence[str] = (),
    *,
    packets: int = 200_000,
    seed: int = 0,
    scheduler: str = "fifo",
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    notion: str = "auto",
    packet_size: float = 1.0,
    grid_points: int = 60,
    confidence: float = 0.99,
    warmup: float = 0.02,
    batches: int = 20,
    min_effective: float = 5.0,
    progress: Callable[[int, int], None] | None = None,
) -> CompareResult:
    """Bound versus packet-level simulation of one model (continuous time).

    Parameters
    ----------
    arrivals, hops, cross
        The ``--arrival`` / ``--hop`` / ``--cross`` specs (``federation.specs``); units s, bits, bits/s.
    packets
        Packets of the first arrival flow to simulate (>= 1000).
    seed
        Root seed of the simulation and of the probe instants.
    scheduler
        ``fifo`` | ``wfq`` | ``partition`` in every domain.
    epsilons
        Target violation probabilities in (0, 1) for the delay-quantile comparison.
    notion
        ``auto`` | ``packet`` | ``virtual``: the compared delay (module notes).
    packet_size
        Packet size (bits) of on-off flows in the data plane.
    grid_points
        Number of delays ``d`` (s) on the grid, from the path latency to past both the largest
        simulated delay and the bound's delay at the smallest epsilon.
    confidence
        One-sided level of the lower limit used by the verdict.
    warmup
        Fraction of the samples discarded at the start (the run starts empty).
    batches, min_effective
        Batch means for the autocorrelation correction, and the effective exceedance count a grid
        point needs to enter the verdict.
    progress
        Called as ``progress(done, total)`` packets of flow 0 after every simulation chunk.

    Returns
    -------
    CompareResult

    Raises
    ------
    InputError
        Bad input, or a model where bound and simulation do not describe the same quantity.
    NoFiniteBound
        The model is unstable.
    """
    import time

    if packets < 1000:
        raise InputError(f"--packets(={packets}) must be >= 1000")
    eps = tuple(sorted({float(e) for e in epsilons}, reverse=True))
    if not eps or any(not 0.0 < e < 1.0 for e in eps):
        raise InputError(f"--epsilons(={list(epsilons)}) must be probabilities in (0, 1)")
    if not 0.5 < confidence < 1.0:
        raise InputError(f"confidence(={confidence!r}) must be in (0.5, 1)")
    if not 0.0 <= warmup < 0.5:
        raise InputError(f"warmup(={warmup!r}) must be in [0, 0.5)")
    if grid_points < 5:
        raise InputError(f"grid_points(={grid_points}) must be >= 5")
    m = _model(arrivals, hops, cross, scheduler, packet_size, notion)
    util = _bottleneck_util(m)
    if util >= 1.0:
        raise NoFiniteBound(f"the bottleneck utilisation is {util:.3g} >= 1: no stationary delay")

    t0 = time.perf_counter()
    a, e, size = _simulate(m, scheduler, packets, seed, packet_size, progress)
    x = _samples(m, a, e, size, warmup, seed)
    t_sim = time.perf_counter() - t0
    n = len(x)
    xs = np.sort(x)

    t0 = time.perf_counter()
    try:  # a rough upper end for the grid: the raw bound's delay at the smallest epsilon
        from federation.calculus.compose import delay_bound

        rough = delay_bound(m.flow, list(m.services), min(eps)).delay + m.shift + 5.0 * m.size / min(
            h.rate for h in m.hops)
    except NoFiniteBound:  # pragma: no cover - stability is checked above
        rough = float(xs[-1])
    hi = max(float(xs[-1]), rough, m.latency * 1.05 + 1e-12) * 1.05
    curve = _BoundCurve(m, d_hi=hi)
    inverted = {r: curve.delay(r, m.latency, hi) for r in eps}
    top = max([float(xs[-1])] + [d for d, _ in inverted.values() if math.isfinite(d)])
    hi = max(top * 1.05, m.latency * 1.05 + 1e-12)
    grid = np.linspace(m.latency, hi, grid_points)
    bounds = [curve(float(d)) for d in grid]
    # P(D > d) is non-increasing, so a bound at d' <= d also bounds P(D > d): take the running
    # minimum (removes the optimiser's small wiggles; the method is the one that gave the value)
    for i in range(1, len(bounds)):
        if bounds[i][0] > bounds[i - 1][0]:
            bounds[i] = bounds[i - 1]
    rows = []
    nb = max(2, min(batches, n // 50))
    edges = np.linspace(0, n, nb + 1).astype(np.int64)
    sizes = np.diff(edges).astype(float)
    for r in eps:
        bd, bm = inverted[r]
        q0 = quantile_ci(xs, 1.0 - r)[0]
        counts = np.add.reduceat((x > q0).astype(np.int64), edges[:-1]).astype(float)
        _, neff = batch_lower_limit(counts, sizes, 0.95)
        q, qlo, qhi = quantile_ci(xs, 1.0 - r, vif=n / neff if neff > 0 else 1.0)
        beyond = int(n - np.searchsorted(xs, q, side="right"))
        rows.append(EpsilonRow(r, bd, bm, q, qlo, qhi, bd / q if q > 0 else math.inf,
                               beyond >= 10 and math.isfinite(qhi)))
    t_bound = time.perf_counter() - t0

    # simulated CCDF, exact CP intervals, batch-corrected lower limits
    points = []
    worst, worst_d = -math.inf, math.nan
    violated_any = False
    for d, (bv, bmeth, bth) in zip(grid, bounds):
        above = x > d
        k = int(above.sum())
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        counts = np.add.reduceat(above.astype(np.int64), edges[:-1])
        lower, neff = batch_lower_limit(counts.astype(float), sizes, confidence)
        enough = k > 0 and (k / n) * neff >= min_effective
        if enough:
            ratio = lower / bv if bv > 0 else math.inf
            violated_any = violated_any or ratio > 1.0
            # the worst point; among the non-trivial ones (bound < 1) unless the bound is violated
            if (bv < 1.0 or ratio > 1.0) and ratio > worst:
                worst, worst_d = ratio, float(d)
        points.append(GridPoint(float(d), float(bv), bmeth, float(bth), k / n, k, float(ci.low), float(ci.high),
                                lower, float(neff), bool(enough)))
    valid = not violated_any
    return CompareResult(
        arrivals=tuple(arrivals), hops=tuple(hops), cross=tuple(cross), scheduler=scheduler, packets=packets,
        seed=seed, packet_size=packet_size, notion=m.notion, notion_reason=m.notion_reason,
        conversion=m.conversion, utilisation=util, samples=n, latency=m.latency, grid=tuple(points),
        epsilons=tuple(rows), valid=valid, worst_delay=worst_d, worst_ratio=worst if worst > -math.inf else math.nan,
        confidence=confidence, elapsed_bound=t_bound, elapsed_sim=t_sim, sim_delays=xs,
    )


def _scale_spec(text: str, factor: float) -> str:
    """The arrival spec with its rate scaled by ``factor`` (poisson: rate; on-off: peak)."""
    spec = parse_arrival(text, "continuous")
    key = {"poisson": "rate", "mmoo": "peak", "correlated-mmoo": "peak"}.get(spec.kind)
    if key is None:
        raise InputError(f"arrival {text!r}: --loads scales poisson rates and on-off peaks only")
    kind, _, body = text.partition(":")
    items = []
    for item in body.split(","):
        k, _, v = item.partition("=")
        if k.strip() == key:
            v = repr(spec.num(key) * factor)
        items.append(f"{k.strip()}={v.strip()}")
    return f"{kind}:{','.join(items)}"


def compare_loads(
    arrivals: Sequence[str],
    hops: Sequence[str],
    cross: Sequence[str] = (),
    *,
    loads: Sequence[float],
    **kwargs: Any,
) -> tuple[LoadRow, ...]:
    """Run :func:`compare` with every ``--arrival`` rate scaled so the bottleneck is at each ``load``.

    Poisson rates and on-off peaks are scaled by one common factor (cross traffic unchanged), so
    that the most loaded hop (all flows there) has utilisation ``load`` in (0, 1).
    """
    m = _model(arrivals, hops, cross, kwargs.get("scheduler", "fifo"), kwargs.get("packet_size", 1.0),
               kwargs.get("notion", "auto"))
    out = []
    for u in loads:
        if not 0.0 < u < 1.0:
            raise InputError(f"--loads: {u!r} must be in (0, 1)")
        # largest factor f with (f * flow + cross_i) / R_i <= u at every hop
        f = math.inf
        for i, h in enumerate(m.hops, start=1):
            c = sum(_arrival_rate(s) for j, s in m.cross if j == i)
            if u * h.rate <= c:
                raise InputError(f"--loads {u:g}: the cross traffic alone loads hop {i} beyond it")
            f = min(f, (u * h.rate - c) / m.flow.mean_rate)
        r = compare([_scale_spec(a, f) for a in arrivals], hops, cross, **kwargs)
        out.append(LoadRow(float(u), float(f), r.epsilons, r.valid))
    return tuple(out)
