"""Bound versus simulation for one model: is the calculus bound valid, and how tight is it?

:func:`compare` takes the ``--arrival`` / ``--hop`` / ``--cross`` model of ``trefed bound`` and
``trefed simulate``, checks that bound and simulation describe the same quantity and chooses the
delay notion (:mod:`federation.compare.model`), computes the bound curve ``P(D > d)`` on a grid
of ``d`` (:mod:`federation.compare.curve`) **and** runs the packet-level simulation of the same
model (continuous time), and returns a frozen :class:`CompareResult`: the simulated CCDF with
exact Clopper-Pearson intervals, per target epsilon the bounded and the simulated delay (a
quantile with an order-statistic interval) and their ratio, and a validity verdict. Pure: no
printing, no files (see ``federation.compare.plots`` and ``federation.compare.report``).

The simulated quantity (see :mod:`federation.compare.model`): ``packet``, every packet's
end-to-end delay; ``virtual``, the horizontal deviation between the flow's cumulative arrivals
and departures at time-uniform probe instants.

Statistics (:mod:`federation.stats`). The first ``warmup`` fraction of the packets is discarded
(the run starts empty). Delays in a queue are strongly autocorrelated, so every interval is the
dependent-data one of :func:`~federation.stats.tail_probability` (batch means with a chosen
batch count, Clopper-Pearson at the effective sample size). A grid point enters the verdict when
it has at least ``min_effective`` effective exceedances (below that the batch variance rests on
too few clusters to be trusted). Each such point tests ``H0: P(D > d) <= bound(d)`` (one-sided
p-value); the verdict is VIOLATED when Holm's step-down procedure rejects any of them at
family-wise error ``1 - confidence`` (:func:`~federation.stats.holm`), over the whole grid and,
with ``--loads``, over every load of the sweep together (:func:`joint_verdict`), so an exact
bound is flagged with probability at most ``1 - confidence`` however many points are tested.
``sim_lower`` is the Bonferroni (simultaneous) lower limit of each tested point at that family
level; the CCDF band (``ci95_low``/``ci95_high``) is pointwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from federation.calculus.compose import delay_bound
from federation.compare.curve import BoundCurve
from federation.compare.model import (
    ComparedModel,
    Notion,
    arrival_rate,
    bottleneck_utilisation,
    compared_model,
)
from federation.dataplane.engine import Simulation, simulate
from federation.dataplane.path import Admission, Domain, Scheduler, Source
from federation.dataplane.traffic import PacketSizes, Poisson, traffic_from_spec
from federation.errors import InputError, NoFiniteBound
from federation.specs import parse_arrival
from federation.stats import holm, tail_probability, tail_quantiles

__all__ = [
    "fifo_tandem_departures",
    "GridPoint",
    "EpsilonRow",
    "LoadRow",
    "CompareResult",
    "compare",
    "compare_loads",
    "joint_verdict",
    "DEFAULT_EPSILONS",
]

DEFAULT_EPSILONS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)


@dataclass(frozen=True)
class GridPoint:
    """One delay ``d`` (s) of the grid: the bound and the simulated ``P(D > d)``.

    ``ci95_low``/``ci95_high`` is the pointwise 95 % interval for autocorrelated samples;
    ``sim_lower`` the simultaneous (Bonferroni over the tested points) one-sided lower limit at
    ``CompareResult.confidence``; ``enough`` says whether the point enters the verdict,
    ``p_value`` is that of ``H0: P(D > d) <= bound`` (1 if not tested), ``rejected`` whether
    Holm's procedure rejects it.
    """

    delay: float
    bound: float
    method: str
    theta: float  # the bound's optimising theta (1/bit, or 1/s for mgf-maxplus); nan if none
    sim: float
    count: int  # samples with delay > d
    ci95_low: float  # pointwise, batch means + Clopper-Pearson (autocorrelated samples)
    ci95_high: float
    sim_lower: float  # simultaneous one-sided lower limit (Bonferroni over the tested points)
    effective_n: float
    enough: bool
    p_value: float = 1.0
    rejected: bool = False


@dataclass(frozen=True)
class EpsilonRow:
    """Per target ``epsilon``: bounded delay, simulated ``(1 - epsilon)``-quantile (s) and the ratio."""

    epsilon: float
    bound_delay: float
    bound_method: str
    sim_delay: float
    sim_ci95_low: float
    sim_ci95_high: float  # inf when too few effective samples for an upper order statistic
    ratio: float  # bound_delay / sim_delay
    enough: bool  # at least 10 samples beyond the quantile and a finite interval (conclusive)


@dataclass(frozen=True)
class LoadRow:
    """One utilisation of a ``--loads`` sweep (arrival rates scaled to ``load`` of the bottleneck)."""

    load: float
    scale: float
    epsilons: tuple[EpsilonRow, ...]
    valid: bool
    grid: tuple[GridPoint, ...] = ()  # for the joint verdict (not in JSON)


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
    worst_delay: float  # the largest sim_lower / bound (among the rejected d if violated)
    worst_ratio: float  # that sim_lower / bound (nan if no point has enough data)
    confidence: float
    elapsed_bound: float  # s
    elapsed_sim: float  # s
    sim_delays: np.ndarray | None = None  # sorted samples (for plots; not in JSON)
    loads: tuple[LoadRow, ...] = ()
    tested: int = 0  # hypotheses in the family of the verdict (grid points with enough data)

    @property
    def verdict(self) -> str:
        """``"VALID"`` or ``"VIOLATED"`` (with ``--loads``: over the whole sweep, see :func:`joint_verdict`)."""
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
            "tested": self.tested,
            "family_wise_error": 1.0 - self.confidence,
            "grid": [row(g) for g in self.grid],
            "epsilons": [row(e) for e in self.epsilons],
            "loads": [{"load": r.load, "scale": r.scale, "valid": r.valid,
                       "epsilons": [row(e) for e in r.epsilons]} for r in self.loads],
            "elapsed_bound_seconds": self.elapsed_bound,
            "elapsed_sim_seconds": self.elapsed_sim,
        }


# ------------------------------------------------------------------------------------------ simulate


def _simulate(m: ComparedModel, scheduler: str, packets: int, seed: int, packet_size: float,
              progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival at hop 1, egress of the last hop, size in bits) of every delivered packet of the
    flow of interest, in arrival order."""
    sched = cast(Scheduler, scheduler)  # checked by compared_model
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


def _samples(m: ComparedModel, a: np.ndarray, e: np.ndarray, size: np.ndarray, warmup: float, seed: int) -> np.ndarray:
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
    min_effective: float = 10.0,
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
        ``1 -`` the family-wise error of the verdict (Holm over the tested grid points).
    warmup
        Fraction of the samples discarded at the start (the run starts empty).
    min_effective
        The effective exceedance count (``P n_eff``) a grid point needs to enter the verdict.
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
    m = compared_model(arrivals, hops, cross, scheduler, packet_size, notion)
    util = bottleneck_utilisation(m)
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
        rough = delay_bound(m.flow, list(m.services), min(eps)).delay + m.shift + 5.0 * m.size / min(
            h.rate for h in m.hops)
    except NoFiniteBound:  # pragma: no cover - stability is checked above
        rough = float(xs[-1])
    hi = max(float(xs[-1]), rough, m.latency * 1.05 + 1e-12) * 1.05
    curve = BoundCurve(m, d_hi=hi)
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
    qs = tail_quantiles(x, [1.0 - r for r in eps])
    for r in eps:
        bd, bm = inverted[r]
        qe = qs[1.0 - r]
        q = qe.value
        qci = qe.interval(0.95)
        beyond = int(n - np.searchsorted(xs, q, side="right"))
        rows.append(EpsilonRow(r, bd, bm, q, qci.low, qci.high, bd / q if q > 0 else math.inf,
                               beyond >= 10 and qe.conclusive(0.95)))
    t_bound = time.perf_counter() - t0

    # simulated CCDF: pointwise intervals for autocorrelated samples; the verdict by Holm
    ests = [tail_probability(x > d) for d in grid]
    enough = [est.count > 0 and est.value * est.n_eff >= min_effective for est in ests]
    tested = sum(enough)
    alpha = 1.0 - confidence
    points = []
    for d, (bv, bmeth, bth), est, ok in zip(grid, bounds, ests, enough):
        ci = est.interval(0.95)
        lower = est.lower_limit(1.0 - alpha / max(tested, 1)) if ok else 0.0
        pv = est.p_value_above(min(1.0, float(bv))) if ok else 1.0
        points.append(GridPoint(float(d), float(bv), bmeth, float(bth), est.value, est.count, float(ci.low),
                                float(ci.high), float(lower), float(est.n_eff), bool(ok), float(pv)))
    res = CompareResult(
        arrivals=tuple(arrivals), hops=tuple(hops), cross=tuple(cross), scheduler=scheduler, packets=packets,
        seed=seed, packet_size=packet_size, notion=m.notion, notion_reason=m.notion_reason,
        conversion=m.conversion, utilisation=util, samples=n, latency=m.latency, grid=tuple(points),
        epsilons=tuple(rows), valid=True, worst_delay=math.nan, worst_ratio=math.nan,
        confidence=confidence, elapsed_bound=t_bound, elapsed_sim=t_sim, sim_delays=xs, tested=tested,
    )
    return joint_verdict(res)


def _worst(grid: Sequence[GridPoint]) -> tuple[float, float]:
    """(d, sim_lower / bound) of the worst point: the largest ratio among the rejected points (the
    non-trivial ones, bound < 1, past the first grid point d = latency if any: the delay's atom is
    there), else among the tested non-trivial points; nan if none."""
    rej = [g for g in grid[1:] if g.rejected] or [g for g in grid if g.rejected]
    pool = [g for g in rej if g.bound < 1.0] or rej or [g for g in grid if g.enough and g.bound < 1.0]
    cand = [(g.sim_lower / g.bound if g.bound > 0 else math.inf, g.delay) for g in pool]
    if not cand:
        return math.nan, math.nan
    ratio, d = max(cand)
    return d, ratio


def joint_verdict(result: CompareResult) -> CompareResult:
    """The verdict over ``result``'s grid and every load row's grid together (Holm, one family).

    Family-wise error ``1 - result.confidence`` over all tested points; each point's
    ``rejected``, each load row's ``valid`` and ``result.valid`` are set from the one procedure,
    so the verdict printed and the exit code (``valid``) cannot disagree.
    """
    from dataclasses import replace

    grids = [result.grid, *(row.grid for row in result.loads)]
    pv = [g.p_value for grid in grids for g in grid if g.enough]
    rej = iter(holm(pv, 1.0 - result.confidence).tolist())
    new = [tuple(replace(g, rejected=bool(next(rej))) if g.enough else replace(g, rejected=False) for g in grid)
           for grid in grids]
    rows = tuple(replace(row, grid=g, valid=not any(p.rejected for p in g)) for row, g in zip(result.loads, new[1:]))
    wd, wr = _worst(new[0])
    valid = not any(p.rejected for g in new for p in g)
    return replace(result, grid=new[0], loads=rows, valid=valid, worst_delay=wd, worst_ratio=wr,
                   tested=len(pv))


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
    that the most loaded hop (all flows there) has utilisation ``load`` in (0, 1). Each row's
    ``valid`` is its own verdict; put the rows in a :class:`CompareResult` and call
    :func:`joint_verdict` for the verdict over the sweep.
    """
    m = compared_model(arrivals, hops, cross, kwargs.get("scheduler", "fifo"), kwargs.get("packet_size", 1.0),
               kwargs.get("notion", "auto"))
    out = []
    for u in loads:
        if not 0.0 < u < 1.0:
            raise InputError(f"--loads: {u!r} must be in (0, 1)")
        # largest factor f with (f * flow + cross_i) / R_i <= u at every hop
        f = math.inf
        for i, h in enumerate(m.hops, start=1):
            c = sum(arrival_rate(s) for j, s in m.cross if j == i)
            if u * h.rate <= c:
                raise InputError(f"--loads {u:g}: the cross traffic alone loads hop {i} beyond it")
            f = min(f, (u * h.rate - c) / m.flow.mean_rate)
        r = compare([_scale_spec(a, f) for a in arrivals], hops, cross, **kwargs)
        out.append(LoadRow(float(u), float(f), r.epsilons, r.valid, r.grid))
    return tuple(out)


def fifo_tandem_departures(lam: float, size: str, hops: Sequence[tuple[float, float, str]], packets: int,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(arrival times, egress times)`` (s) of flow 0's packets, in order, through FIFO data-plane domains.

    The FIFO cross-traffic reference the FIFO bounds are checked against (tests, ``bench_tightness``):
    flow 0 is Poisson ``lam`` packets/s of mean 1 bit (``size`` ``"det"`` or ``"exp"``); ``hops`` gives
    per domain ``(rate bits/s, cross packets/s (0: none), cross size "det"|"exp")``, each cross flow
    entering and leaving at its domain.
    """
    kind = {"det": "fixed", "exp": "exponential"}
    doms = [Domain(rate=c) for c, _, _ in hops]
    srcs = [Source(0, Poisson(lam, PacketSizes(kind[size], 1.0)))]  # type: ignore[arg-type]
    for h, (_, lc, kc) in enumerate(hops):
        if lc:
            srcs.append(Source(h + 1, Poisson(lc, PacketSizes(kind[kc], 1.0)), entry=h, exit=h))  # type: ignore[arg-type]
    d = simulate(doms, srcs, seed=seed, packets=packets, record_domains=False).tenant(0)
    o = np.argsort(d.seq)
    return d.ingress[o], d.egress[o]
