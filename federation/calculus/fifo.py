"""FIFO multiplexing: the FIFO residual service in the MGF tandem bound, and the FIFO martingale bound.

A hop that serves the flow of interest and a cross flow ``A_c`` in one FIFO queue
(:class:`~federation.calculus.services.FifoLeftover`) offers the flow, for every ``x >= 0``, the
residual service (``S`` the hop's work-conserving service, ``m = t - s``)

::

    S_x(s, t) = [S(s, t) - A_c(s, t)]^+        if m < x   (blind)
              = 0                              if m = x
              = [S(s, t) - A_c(s, t - x)]^+    if m > x   (FIFO)

Sample path: let ``s*`` start the busy period holding ``t``; the queue is empty at ``s*``, so
``D_1(t) >= A_1(s*) + [S(s*, t) - A_c(s*, t)]^+`` always (blind). If ``s* < t - x``, either all
the work that arrived by ``t - x`` has left by ``t`` (``D_1(t) >= A_1(t - x)``: the point
``m = x``), or, FIFO, no cross work that arrived after ``t - x`` has started, so
``D_c(t) <= A_c(t - x)`` and ``D_1(t) = D(t) - D_c(t) >= A_1(s*) + S(s*, t) - A_c(s*, t - x)``.
Hence ``D_1(t) >= inf_{s<=t} A_1(s) + S_x(s, t)`` (Le Boudec and Thiran, Prop. 6.2.1, for a
dynamic server and with the blind branch kept below ``x``). ``x = 0`` is blind multiplexing; a
positive ``x`` drops from the windows longer than ``x`` the cross traffic that arrives after
``t - x``, which FIFO serves after the flow.

The MGF tandem bound (:func:`fifo_tandem_violation`). With ``theta`` and, per hop, a weight
``w_h(m)`` bounding ``exp(kappa_A tau m) E[exp(-theta S_h)]`` over every pair of split points
whose grid cells are ``m`` apart (cell ``tau``; one slot in discrete time)::

    P(V > d) <= exp(beta_A - kappa_A tau j) sum_{m in N^H, |m| >= j} prod_h w_h(m_h),   d = j tau.

Discrete time (``x = n`` slots, ``k = kappa_A``, ``c_0 = delta_S + beta_c``): a plain hop has
``w(m) = e^{k m} min(1, e^{delta - gamma m})``; a FIFO hop ``e^{k m} min(1, e^{c_0 - (gamma_S -
kappa_c) m})`` for ``m < n``, ``e^{k n}`` at ``m = n`` and ``e^{k m} min(1, e^{c_0 - gamma_S m +
kappa_c (m - n)})`` above. Continuous time (``x = n tau``, ``k = kappa_A tau``; a window of ``m``
cells is longer than ``(m - 1) tau`` and shorter than ``(m + 1) tau``, so only ``m = n`` may hold
the length ``x``; the service is taken over the inner cells, the cross traffic over the outer
ones and the arrival from the start of its cell): ``gamma (m - 1) tau`` replaces ``gamma m`` and
``kappa_c (m + 1) tau`` (blind) or ``kappa_c (m + 1 - n) tau`` (FIFO) the cross terms, with
``w(0) = 1``. Each weight is a finite head and a geometric tail, and the sum over compositions is
the tail of their convolution, computed by a positive recursion (no cancellation). Deterministic
hops without FIFO cross traffic are merged into their bottleneck first (as in
:mod:`federation.calculus.tandem`). The bound is minimised over ``theta``, over the FIFO offsets
(one per FIFO hop; searched as one offset common to all FIFO hops and, where the hops differ, one
for each group of equal hops with the others blind) and in continuous time over the grid (``j``
cells). Independence of the flow, the hops' services and the cross flows is assumed (one-hop
cross traffic).

The martingale bound (:func:`fifo_martingale_violation`): at a single FIFO hop the flow's
virtual delay is at most the aggregate's (all the work that arrived by ``t`` has left by
``t + V_agg(t)``), and the aggregate of independent i.i.d. flows is i.i.d.: the martingale bound of
:func:`federation.calculus.martingale.martingale_model` for the aggregate applies. Constant-rate
links after the hop that are at least as fast add only their latencies (the flow leaves the FIFO
hop at most at its rate).

References
----------
J.-Y. Le Boudec, P. Thiran, *Network Calculus*, Springer LNCS 2050, 2001, Prop. 6.2.1 (FIFO
residual service); M. Fidler, "An end-to-end probabilistic network calculus with moment
generating functions", IWQoS 2006; F. Ciucu, F. Poloczek, J. Schmitt, "Sharp per-flow delay
bounds for bursty arrivals: the case of FIFO, SP, and EDF scheduling", IEEE INFOCOM 2014.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federation.calculus.arrivals import Arrival, aggregate
from federation.calculus.bound import Bound, BoundMethod, FifoDetail
from federation.calculus.martingale import MartingaleModel, martingale_model
from federation.calculus.roots import invert_delay, minimize_scalar_bounded
from federation.calculus.services import ConstantRate, FifoLeftover, Service
from federation.calculus.tandem import Tandem, check_stable
from federation.errors import InputError

__all__ = [
    "fifo_applies",
    "HopWeight",
    "log_composition_tail",
    "fifo_tandem_violation",
    "fifo_tandem_delay",
    "fifo_martingale_violation",
    "fifo_martingale_delay",
]

#: Grid sizes (cells per delay) tried in continuous time.
_CELLS = (12, 24, 48, 96)


def fifo_applies(services: Sequence[Service]) -> bool:
    """Whether some hop serves its cross traffic FIFO (:class:`FifoLeftover`): the FIFO bounds apply."""
    return any(isinstance(s, FifoLeftover) for s in services)


@dataclass(frozen=True)
class HopWeight:
    """A hop's weight in the composition sum: ``log w(m) = c m + f(m)``, ``m`` in grid cells.

    ``f(m) = head[m]`` for ``m < len(head)`` (each ``<= 0``) and ``min(0, a - b m)`` beyond;
    ``c`` is the arrival's ``kappa_A tau``, ``b > c`` the hop's decay per cell and ``a`` its log
    prefactor (all dimensionless).
    """

    c: float
    a: float
    b: float
    head: tuple[float, ...] = ()

    @property
    def linear_from(self) -> int:
        """The first ``m`` from which ``log w`` is the linear ``c m + a - b m``."""
        return max(len(self.head), math.ceil(self.a / self.b) if self.a > 0 else 0)

    def log_values(self, n: int) -> np.ndarray:
        """``log w(m)`` for ``m = 0 .. n-1``."""
        m = np.arange(n, dtype=float)
        out = np.minimum(0.0, self.a - self.b * m)
        k = min(len(self.head), n)
        out[:k] = self.head[:k]
        out += self.c * m
        return out


def log_composition_tail(weights: Sequence[HopWeight], j: int) -> float:
    """``log sum_{m in N^H, |m| >= j} prod_h w_h(m_h)`` for the weights of the module notes.

    Each ``w_h`` is explicit below ``L = max(j, linear_from) + 1`` and geometric (ratio
    ``exp(c - b) < 1``) from ``L`` on. The positive recursion over the hops keeps the mass of the
    partial sums below ``j`` term by term and the mass at or above ``j`` as one number:
    ``surv' = surv * W_h + sum_{k<j} p(k) T_h(j - k)`` and ``p' = (p * w_h)[:j]`` (``W_h`` the total
    mass of ``w_h``, ``T_h`` its tail sums), each hop scaled by its largest weight.
    """
    big = max([j, *(w.linear_from for w in weights)]) + 1
    log_scale = 0.0
    p = np.empty(0)
    surv = 0.0
    for idx, w in enumerate(weights):
        lv = w.log_values(big)
        r = w.c - w.b  # log ratio of the geometric tail
        lt = w.c * big + w.a - w.b * big - math.log(-math.expm1(r))  # log of the tail sum from `big`
        top = max(float(lv.max()), lt)
        vals = np.exp(lv - top)
        tail_big = math.exp(lt - top)
        # tails[i] = sum_{m >= i} w(m) for i in 0..big
        tails = np.empty(big + 1)
        tails[big] = tail_big
        tails[:big] = np.cumsum(vals[::-1])[::-1] + tail_big
        if idx == 0:
            p = vals[:j].copy()
            surv = float(tails[j])
        else:
            if j > 0:
                surv = surv * float(tails[0]) + float(np.dot(p, tails[j:0:-1]))
                p = np.convolve(p, vals[:j])[:j]
            else:
                surv = surv * float(tails[0])
        log_scale += top
        s = max(float(p.max()) if len(p) else 0.0, surv)
        if s <= 0.0:
            return -math.inf
        p /= s
        surv /= s
        log_scale += math.log(s)
    return log_scale + math.log(surv) if surv > 0 else -math.inf


class _FifoProblem:
    """The optimisation of the FIFO tandem bound for one (arrival, services)."""

    def __init__(self, arrival: Arrival, services: Sequence[Service], names: Sequence[str] | None):
        check_stable(arrival, services, names)
        self.arrival = arrival
        self.discrete = arrival.time == "discrete"
        self.fifo = [s for s in services if isinstance(s, FifoLeftover)]
        stoch, rate, lat = Tandem(tuple(s for s in services if not isinstance(s, FifoLeftover)), arrival.time).split()
        self.plain: list[Service] = list(stoch)
        if not math.isnan(rate):
            self.plain.append(ConstantRate(rate, 0.0, arrival.time))
        self.lat = lat + sum(s.latency for s in services)
        hops: list[Service] = [*self.plain, *self.fifo]
        self.theta_cap = min([arrival.theta_max, *(h.theta_max for h in hops)])
        self.hops = hops
        self.theta_hi = self._theta_hi()

    def _feasible(self, theta: float) -> bool:
        if not 0 < theta < self.theta_cap:
            return False
        k = self.arrival.kappa(theta)
        return math.isfinite(k) and all(h.gamma(theta) - k > 0 for h in self.hops)

    def _theta_hi(self) -> float:
        scale = max(self.arrival.packet_size, 1e-300)
        lo, hi = 0.0, 1.0 / scale
        while self._feasible(hi) and hi < 1e6 / scale:
            lo, hi = hi, hi * 2.0
        if lo == 0.0:
            for _ in range(200):
                hi /= 2.0
                if self._feasible(hi):
                    lo, hi = hi, hi * 2.0
                    break
            else:
                raise InputError("FIFO bound: no theta > 0 with a finite bound")  # pragma: no cover
        for _ in range(60):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if self._feasible(mid) else (lo, mid)
            if hi / lo < 1 + 1e-9:
                break
        return lo

    def weights(self, theta: float, tau: float, offsets: tuple[int, ...]) -> list[HopWeight] | None:
        """The hops' weights at ``theta`` on cells of ``tau`` with FIFO offsets (cells, one per FIFO hop)."""
        if not self._feasible(theta):
            return None
        k = self.arrival.kappa(theta) * tau
        out = []
        for h in self.plain:
            g, dl = h.gamma(theta) * tau, h.delta(theta)
            out.append(HopWeight(k, dl, g) if self.discrete else HopWeight(k, dl + g, g))
        for f, n in zip(self.fifo, offsets):
            gs, kc = f.base.gamma(theta) * tau, f.cross.kappa(theta) * tau
            c0 = f.base.delta(theta) + f.cross.beta(theta)
            if self.discrete:  # blind below x, no service at x, FIFO above
                head = [min(0.0, c0 - (gs - kc) * m) for m in range(n)] + [0.0]
                a = c0 - kc * n
            else:  # m cells: a length in ((m-1) tau, (m+1) tau), so x = n tau is possible only at m = n
                head = [min(0.0, c0 + gs + kc - (gs - kc) * m) for m in range(n)] + [0.0]
                a = c0 + gs + kc * (1 - n)
            out.append(HopWeight(k, a, gs - kc, tuple(head)))
        return out

    def log_bound(self, theta: float, j: int, tau: float, offsets: tuple[int, ...]) -> float:
        """The unclipped log bound at virtual delay ``j * tau``."""
        ws = self.weights(theta, tau, offsets)
        if ws is None:
            return math.inf
        return self.arrival.beta(theta) - ws[0].c * j + log_composition_tail(ws, j)

    def _grids(self, dv: float) -> list[tuple[int, float]]:
        if self.discrete:
            return [(int(math.floor(dv + 1e-9)), 1.0)]
        if dv <= 0:
            gap = min(h.gamma(self.theta_hi * 0.5) for h in self.hops) - self.arrival.kappa(self.theta_hi * 0.5)
            return [(0, 0.15 / max(gap, 1e-300))]
        return [(j, dv / j) for j in _CELLS]

    def _families(self) -> list[list[int]]:
        """Offset families (the FIFO hops that share one offset; the others get 0, i.e. blind):
        all FIFO hops alike and, when they differ, each group of equal hops alone, so that a
        loaded hop can take a long offset."""
        nf = len(self.fifo)
        fams = [list(range(nf))]
        groups: list[list[int]] = []
        for i, f in enumerate(self.fifo):
            for g in groups:
                if self.fifo[g[0]] == f:
                    g.append(i)
                    break
            else:
                groups.append([i])
        if len(groups) > 1:
            fams += groups
        return fams

    def _theta_opt(self, j: int, tau: float, offsets: tuple[int, ...]) -> tuple[float, float]:
        hi = self.theta_hi
        grid = np.exp(np.linspace(math.log(hi * 1e-5), math.log(hi), 10))
        vals = [self.log_bound(float(t), j, tau, offsets) for t in grid]
        i = int(np.argmin(vals))
        a, b = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
        res = minimize_scalar_bounded(lambda x: self.log_bound(math.exp(x), j, tau, offsets), (a, b), xatol=1e-2)
        if res.fun < vals[i]:
            return float(res.fun), math.exp(float(res.x))
        return float(vals[i]), float(grid[i])

    def optimise(self, dv: float) -> tuple[float, float, float, tuple[int, ...]]:
        """(log bound, theta, tau, offsets in cells) minimised over theta, the FIFO offsets and the grid."""
        nf = len(self.fifo)
        best: tuple[float, float, float, tuple[int, ...]] = (math.inf, math.nan, math.nan, (0,) * nf)
        for j, tau in self._grids(dv):
            if j <= 0:
                val, th = self._theta_opt(j, tau, (0,) * nf)
                best = min(best, (val, th, tau, (0,) * nf), key=lambda r: r[0])
                continue
            top = j - 1
            for hops in self._families():
                def offs(n: int, hops: list[int] = hops) -> tuple[int, ...]:
                    return tuple(n if i in hops else 0 for i in range(nf))

                share = top // len(hops)  # offsets summing below the delay, and longer ones
                coarse = sorted({int(round(v)) for v in (*np.linspace(0, share, min(share + 1, 7)),
                                                         *np.linspace(0, top, min(top + 1, 5)))})
                results = {n: self._theta_opt(j, tau, offs(n)) for n in coarse}
                nb = min(results, key=lambda n: results[n][0])
                i = coarse.index(nb)  # refine between the neighbours of the best coarse offset
                lo = coarse[i - 1] if i > 0 else nb
                hi = coarse[i + 1] if i + 1 < len(coarse) else nb
                for n in range(lo + 1, hi):
                    results.setdefault(n, self._theta_opt(j, tau, offs(n)))
                nb = min(results, key=lambda n: results[n][0])
                val, th = results[nb]
                if val < best[0]:
                    best = (val, th, tau, offs(nb))
        return best


def _bound(prob: _FifoProblem, delay: float) -> Bound:
    dv = delay - prob.lat
    if dv < 0:
        return Bound(delay, 1.0, math.nan, BoundMethod.MGF_FIFO, FifoDetail(math.nan, (0.0,) * len(prob.fifo), 0.0))
    val, th, tau, offs = prob.optimise(dv)
    return Bound(delay, float(min(1.0, math.exp(min(val, 0.0)))), th, BoundMethod.MGF_FIFO,
                 FifoDetail(tau, tuple(n * tau for n in offs), val))


def fifo_tandem_violation(
    arrival: Arrival, services: Sequence[Service], delay: float, *, names: Sequence[str] | None = None
) -> Bound | None:
    """The MGF tandem bound on ``P(D > delay)`` with the FIFO residual service at the FIFO hops.

    Parameters
    ----------
    arrival : Arrival
        The flow of interest (its time model must match the services').
    services : sequence of Service
        The hops in order; a :class:`~federation.calculus.services.FifoLeftover` hop serves its
        cross traffic FIFO with the flow (independent of the flow and of the other hops).
    delay : float
        End-to-end delay (s or slots) including the latencies.
    names : sequence of str, optional
        Hop names used in the "no finite bound" reason.

    Returns
    -------
    Bound or None
        ``method=MGF_FIFO`` with a :class:`~federation.calculus.bound.FifoDetail`; ``None`` when
        no hop is FIFO with cross traffic (the MGF tandem bound is then the same bound).

    Raises
    ------
    NoFiniteBound
        If a hop is unstable.

    Notes
    -----
    See the module notes; ``x = 0`` is the blind-multiplexing bound on the same grid.
    """
    if not fifo_applies(services):
        return None
    return _bound(_FifoProblem(arrival, services, names), delay)


def fifo_tandem_delay(
    arrival: Arrival,
    services: Sequence[Service],
    epsilon: float,
    *,
    hi: float | None = None,
    names: Sequence[str] | None = None,
) -> Bound | None:
    """Smallest delay ``d`` (s or slots, including latencies) with the FIFO bound ``P(D > d) <= epsilon``.

    ``hi`` (optional, s or slots) is a delay known to be large enough (e.g. another bound's):
    when the FIFO bound does not reach ``epsilon`` there, ``None`` is returned (it would not be
    the smallest). ``None`` also when :func:`fifo_applies` is false.
    """
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    if not fifo_applies(services):
        return None
    prob = _FifoProblem(arrival, services, names)
    cache: dict[float, Bound] = {}

    def eps_at(d: float) -> float:
        if d not in cache:
            cache[d] = _bound(prob, d)
        return cache[d].epsilon

    if hi is not None:
        if eps_at(hi) > epsilon:
            return None
        start = max(hi, prob.lat + 1e-12)
    else:
        start = prob.lat + sum(arrival.packet_size / max(s.mean_rate, 1e-300) for s in services) * 10.0
    d = invert_delay(eps_at, epsilon, prob.lat, start, discrete=prob.discrete, rtol=1e-3)
    eps_at(d)
    return cache[d]


def _martingale(arrival: Arrival, services: Sequence[Service]) -> MartingaleModel | None:
    """The aggregate's martingale model at the one FIFO hop, with the latencies of the links after it."""
    if not services or not isinstance(services[0], FifoLeftover):
        return None
    f, rest = services[0], services[1:]
    if arrival.time != f.cross.time or not (arrival.iid and f.cross.iid):
        return None
    # links after the FIFO hop add no queueing when they are at least as fast: the flow leaves the
    # FIFO hop at most at its rate (fluid; and its packets at least L/C apart)
    if rest and not (isinstance(f.base, ConstantRate)
                     and all(isinstance(r, ConstantRate) and r.rate >= f.base.rate for r in rest)):
        return None
    m = martingale_model(aggregate([arrival, f.cross]), [f.base])
    if m is None:
        return None
    return MartingaleModel(m.prefactor, m.decay, m.theta, m.latency + sum(r.latency for r in rest), m.discrete)


def fifo_martingale_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound | None:
    """Martingale bound on ``P(D > delay)`` at one FIFO hop with i.i.d. cross traffic, or ``None``.

    The aggregate's virtual-delay bound (module notes): applies to one
    :class:`~federation.calculus.services.FifoLeftover` hop whose flow and cross flow are i.i.d.
    (``martingale_model`` of their aggregate through the base service applies), first on the path
    and followed only by constant-rate links at least as fast as its (constant) rate: the flow
    leaves the FIFO hop at most at that rate, so they add their latencies and no queueing.
    """
    m = _martingale(arrival, services)
    return None if m is None else m.bound(delay, BoundMethod.MARTINGALE_FIFO)


def fifo_martingale_delay(arrival: Arrival, services: Sequence[Service], epsilon: float) -> Bound | None:
    """Smallest delay with the FIFO martingale bound ``<= epsilon``, or ``None`` if not applicable."""
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    m = _martingale(arrival, services)
    return None if m is None else m.bound(m.delay(epsilon), BoundMethod.MARTINGALE_FIFO)
