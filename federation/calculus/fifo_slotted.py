r"""Slotted FIFO tandems with cross traffic: delay bounds from the hops' busy periods.

:func:`slotted_violation` and :func:`slotted_delay` bound the delay (whole slots) of a slot's
work in discrete time through constant-rate hops served FIFO (cut-through: work can leave in the
slot it arrives; in a slot the cross traffic goes before the flow, the worst order FIFO allows),
each alone or shared with independent i.i.d. cross traffic
(:class:`~federation.calculus.services.FifoLeftover`), at least two of them queueing (a link
without cross traffic at least as fast as the hop before it passes the flow on unchanged). The
flow is i.i.d. per slot (exponential increments, or compound Poisson packets per slot). This is
the model of :func:`federation.calculus.reference.slotted_fifo_tandem_delays`. Elsewhere the
functions return ``None``.

Like :mod:`~federation.calculus.fifo_recursion` (its continuous-time, packet counterpart), the
bounds keep at each hop the exponent of the hop's aggregate over the flow's own slots instead of
charging the cross traffic over the whole delay window, as the residual-service bounds of
:mod:`~federation.calculus.fifo` do. It loses to them on long tandems: each hop's union over the
flow's slots costs a factor that grows with the depth.

Notes
-----
Units: slots and bits; ``theta`` in 1/slot; ``c_k`` the hops' rates (bits/slot). ``a_t`` is the
flow's work of slot ``t`` (``F(r, 0] = sum_{r < t <= 0} a_t``), ``x^k_t`` hop ``k``'s cross work
(``delta_k(b) = log E e^{b x^k / c_k}``); ``G_k(t)`` the slot in which the last bit of slot
``t``'s work leaves hop ``k`` (``G_0(t) = t``); ``V_k`` hop ``k``'s cross traffic queued alone
(slots, ``V(t) = (V(t-1) + x_t/c - 1)^+``), ``M_k(b) = E e^{b V_k} <= 1 + b H_k/(u_k - b)`` from
its martingale bound ``P(V_k > v) <= H_k e^{-u_k v}``
(:func:`~federation.calculus.martingale.martingale_model`).

**One hop, one bit.** A bit entering hop ``k`` in slot ``tau`` with ``P`` bits of the hop's
input ahead of it (itself included) leaves in slot ``tau + ceil(Q)^+``, ``Q = max_{s < tau} [(P -
I_k(s))/c_k - (tau - s)]`` (``I_k`` the hop's cumulative input at slot ends): the departures are
``D(T) = min_{s <= T} [I_k(s) + c_k (T - s)]``. At the first hop ``G_1(0) = ceil(W_1(0)/c_1)``,
``W_1`` the aggregate's Lindley workload at slot ends, and its martingale bound gives ``P(G_1(0)
> j) <= H_1 e^{-u_1 j}`` for integers ``j >= 0``.

**Sample path at hop k.** Let ``s*`` attain ``Q`` for the last bit of slot ``0`` (``tau =
G_{k-1}(0)``; the hop is empty at the end of ``s*``) and ``rho = max{r: G_{k-1}(r) <= s*}``
(``rho < 0``): the flow ahead of the bit that left hop ``k-1`` after ``s*`` is at most ``F(rho,
0]``, and ``s* < G_{k-1}(rho + 1)``. As ``phi(t) = t - 1 + V_k(t - 1) + X_k(t - 1, tau]/c_k`` is
non-decreasing (``X_k`` the cross work), ``s* + X_k(s*, tau]/c_k <= phi(t)`` for every ``t >
s*``. **Restart** (by induction over the hops: a queue whose server first serves the work up to
a bit for ``w`` slots delays every later departure by at most ``w``, and arrivals no later give
departures no later): ``G_{k-1}(t) <= G_{k-1}(rho) + E^R(t) - rho`` for ``t > rho``, ``E^R`` the
exit slots of the tandem ``R`` of hops ``1..k-1`` restarted empty at the end of slot ``rho``, fed
the flow from slot ``rho + 1`` and at each hop the cross traffic after the slot ``rho``'s bit
entered it, which is independent of everything before.

**The bound.** With ``t = G_{k-1}(r)``, ``r = rho + 1``, the restart at ``r`` (``R_r`` fed slots
``r+1 .. 0``, ``D^{R_r}`` its delay of slot ``0``) and ``V(t') <= V(t) + X(t, t']/c``,
``ceil(tau + Q) <= Z_r + 1`` with

.. math::

    Z_r + 1 = G_{k-1}(r) + V_k(G_{k-1}(r) - 1) + \big(a_r + F(r, 0] + X_k[G_{k-1}(r),
        G_{k-1}(r) + D^{R_r} - r]\big) / c_k ;

the stationary part ``G_{k-1}(r) + a_r/c_k`` carries its slot's work and has the law of
``G_{k-1}(0) + a_0/c_k``; ``V_k`` before it, the window's cross work after it and ``R_r`` are
independent of it and of each other. With the tail coefficients
``beta_k(w) = sup_y P(G_k(0) + w a_0 > y) e^{theta y}`` over real ``y`` and a union over ``r =
-n <= 0`` (the term ``r = 0`` is at least ``tau``, so the case ``Q <= 0`` needs no term of its own),

.. math::

    \beta_k(w) \le M_k e^{\delta_k} \Big[ \beta_{k-1}(w + 1/c_k) +
        \beta_{k-1}(1/c_k) \sum_{n \ge 1} e^{(\delta_k - \theta) n}
        J_{k-1}(n; \theta/c_k, \theta/c_k + \theta w, \delta_k) \Big],

``beta_1(w) <= e^{delta_1(theta) + kappa_a(theta (1/c_1 + w))}`` for ``theta <= u_1`` (``G_1(0)
<= U + (a_0 + x^1_0)/c_1`` by ``ceil(z - 1)^+ <= z``, ``U = W_1(-1)/c_1`` independent of slot
``0`` with ``P(U > v) <= e^{-theta v}`` for every real ``v``: no pole at ``u_1``), ``beta_1(0) <=
max(H_1 e^{theta}, 1)`` too (``P(G_1 > y) = 1`` for ``y < 0``: a coefficient below 1 would be
wrong), and ``P(D > T + y) <= beta_H(0) e^{-theta y}`` for every real ``y``; as ``D`` is whole slots,
``P(D > T + j) = P(D > T + y)`` for ``j <= y < j + 1``, so ``P(D > T + j) <= beta_H(0) e^{-theta (j
+ 1)}`` for integers ``j`` (one slot below the real-valued bound's ceiling). The
moments ``J_j(n; a, a_l, b) = E exp(a F[1, n-1] + a_l a_n + b D_j(n))`` of the tandem of hops
``1..j`` restarted empty before slot 1 (``D_j(n)`` the delay of its slot ``n``) follow from the
same argument inside it (the union over its slots ``r = 1..n``; the cross backlog there is at
most ``V_j``):

.. math::

    J_j(n; a, a_l, b) \le M_j(b) e^{\delta} \Big[ J_{j-1}(n; a, a_l +
        b/c_j, b) + \sum_{r=1}^{n-1} e^{(\delta - b)(n - r)} J_{j-1}(r; a, a + b/c_j, b)
        J_{j-1}(n - r; a + b/c_j, a_l + b/c_j, \delta) \Big],

``delta = delta_j(b)``, ``J_0(n; a, a_l) = e^{(n-1) kappa_a(a) + kappa_a(a_l)}``. At ``j = 1``
also ``D_1(n) <= (W'(n-1) + a_n + x^1_n)/c_1``, ``W'`` the restarted queue's workload before slot
``n``; under the tilt ``e^{a a_t}`` of slots ``1..n-1`` the flow stays i.i.d. (exponential
increments of rate ``lambda - a``, or compound Poisson with tilted rate and sizes) and ``W'`` is at
most the stationary workload of the tilted aggregate (martingale bound, where it is stable) and
at most the largest of its partial sums (a union), so ``J_1 <= e^{kappa_a(a_l + b/c_1) +
kappa_1(b/c_1)} e^{(n-1) kappa_a(a)} min(1 + b H~/(u~ - b), sum_{i<n} e^{i kappa~(b/c_1)})``,
``kappa~(s) = kappa_a(a + s) - kappa_a(a) + kappa_1(s) - s c_1``; the smaller is used. Each ``J`` is evaluated for
``n <= cells`` and bounded beyond by an exponential envelope from the same recursion (``sum_{r=1}^
{n-1} e^{g r + h (n - r)} <= e^{max(g, h) n}/(e^{|g - h|} - 1)``), which closes the sums over
``n``; the sums over ``r`` are convolutions of logarithms
(:func:`~federation.calculus.logconv.log_convolve`: no term lost to underflow). **Hoelder.** With ``Z = exp(a F[1, n-1] + al a_n)``, ``E[Z e^{b D}] = E[Z^{1 - t/p} (Z^{t/p}
e^{b D})] <= (E Z^w)^{1 - 1/p} (E Z^t e^{p b D})^{1/p}``, ``w = (1 - t/p) / (1 - 1/p)``, so
``J_j(n; a, al, b) <= J_0(n; w a, w al)^{1 - 1/p} J_j(n; t a, t al, p b)^{1/p}`` with the
recursion's bound at ``p b`` (``p = 2``, ``t = 1/2``: half the flow's tilt moves to the exact
``J_0``); the smaller bound is used at every level. The union over a restarted tandem's slots
costs a factor that the ``1/p``-th power shrinks, at the price of the moment at ``p b`` (5 hops:
74 -> 58 slots at ``1e-3`` with ``t = 1``; ``t = 1/2`` then 3 hops u=0.8 81 -> 76). Checked against the slotted tandem's simulation (``tests/test_fifo_slotted.py``), the
``J`` against a Monte Carlo of the restarted tandems.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federation.calculus.arrivals import Arrival, ExpIncrements, PoissonArrival, aggregate
from federation.calculus.bound import Bound, BoundMethod
from federation.calculus.logconv import log_convolve
from federation.calculus.martingale import martingale_model
from federation.calculus.roots import THETA_FRACTIONS, exponential_tail_min
from federation.calculus.services import ConstantRate, FifoLeftover, Service
from federation.errors import InputError

__all__ = ["SlottedModel", "slotted_model", "slotted_log_coefficient", "slotted_violation", "slotted_delay"]

#: Slots of a restarted tandem evaluated one by one (the rest by its envelope).
CELLS = 512


@dataclass(frozen=True)
class SlottedModel:
    """A slotted FIFO tandem the bound applies to (module Notes); build it with :func:`slotted_model`.

    Attributes
    ----------
    flow : Arrival
        The flow: :class:`ExpIncrements` or a discrete :class:`PoissonArrival` (i.i.d. per slot).
    queues : tuple of (float, Arrival or None)
        The queueing hops in path order: rate (bits/slot) and i.i.d. cross traffic (``None``:
        none); links that pass the flow on unchanged are left out.
    latency : float
        The hops' constant latencies, summed (slots).
    cells : int
        Slots of the restarted tandems evaluated one by one (the rest by their envelopes).
    """

    flow: Arrival
    queues: tuple[tuple[float, Arrival | None], ...]
    latency: float = 0.0
    cells: int = CELLS

    def delta(self, k: int, b: float) -> float:
        """``log E e^{b x^k / c_k}`` of hop ``k``'s (from 1) cross work per slot (``inf`` past its pole)."""
        c, x = self.queues[k - 1]
        return _kappa(x, b / c)

    def log_m(self, k: int, b: float) -> float:
        """``log E e^{b V_k}`` of hop ``k``'s cross traffic queued alone (slots; martingale tail)."""
        c, x = self.queues[k - 1]
        return 0.0 if x is None else _log_mgf(_queue((x,), c), b)

    def first_hop(self) -> tuple[float, float]:
        """``(H_1, u_1)``: ``P(G_1 > v) <= H_1 e^{-u_1 v}`` for the first hop's aggregate (slots)."""
        c, x = self.queues[0]
        q = _queue((self.flow, x), c)
        assert q is not None  # stable: checked by slotted_model
        return q


def _tiltable(a: Arrival) -> bool:
    return isinstance(a, ExpIncrements) or (isinstance(a, PoissonArrival) and a.time == "discrete")


def _tilt(a: Arrival, s: float) -> Arrival | None:
    """The per-slot law of ``a`` tilted by ``e^{s a}`` (the same family), or ``None`` past its pole."""
    if s == 0.0:
        return a
    if isinstance(a, ExpIncrements):
        return ExpIncrements(a.lamb - s) if s < a.lamb else None
    assert isinstance(a, PoissonArrival)
    if a.size == "det":
        return PoissonArrival(a.rate * math.exp(s * a.mean_size), a.mean_size, "det", time="discrete")
    x = s * a.mean_size
    return PoissonArrival(a.rate / (1.0 - x), a.mean_size / (1.0 - x), "exp", time="discrete") if x < 1.0 else None


def _iid(x: Arrival) -> bool:
    return x.time == "discrete" and x.iid and not x.deterministic


def slotted_model(arrival: Arrival, services: Sequence[Service], *, cells: int = CELLS) -> SlottedModel | None:
    """The model of ``arrival`` through ``services``, or ``None`` when the bound does not apply.

    It applies in discrete time to an i.i.d. flow (exponential increments, compound Poisson)
    through constant-rate hops (:class:`ConstantRate`, or :class:`FifoLeftover` of one with
    i.i.d. cross traffic served FIFO), at least two of them queueing (a link without cross
    traffic at least as fast as the hop before it passes the flow on unchanged and adds its
    latency only), one with cross traffic; every hop stable.
    """
    if arrival.time != "discrete" or not _tiltable(arrival):
        return None
    queues: list[tuple[float, Arrival | None]] = []
    latency = 0.0
    for s in services:
        if isinstance(s, FifoLeftover) and type(s.base) is ConstantRate and _iid(s.cross):
            c, x = s.base.rate, s.cross
        elif type(s) is ConstantRate:
            c, x = s.rate, None
        else:
            return None
        if s.time != "discrete":
            return None
        latency += s.latency
        if queues and x is None and c >= queues[-1][0]:
            continue  # passes the flow on unchanged: its output is at most the previous rate per slot
        queues.append((c, x))
    if len(queues) < 2 or all(x is None for _, x in queues):
        return None
    for c, x in queues:
        if not arrival.mean_rate + (x.mean_rate if x is not None else 0.0) < c:
            return None
    return SlottedModel(arrival, tuple(queues), latency, cells)


def _kappa(a: Arrival | None, s: float) -> float:
    """``log E e^{s a}`` per slot (``inf`` past the pole)."""
    if a is None or s == 0.0:
        return 0.0
    return a.kappa(s) if s < a.theta_max else math.inf


@functools.lru_cache(maxsize=4096)
def _queue(parts: tuple[Arrival | None, ...], c: float) -> tuple[float, float] | None:
    """``(H, u)`` with ``P(W/c > v) <= H e^{-u v}`` (``v`` slots) for the stationary workload of the
    parts' aggregate at rate ``c``; ``None`` if unstable."""
    agg = aggregate([p for p in parts if p is not None])
    if not agg.mean_rate < c:
        return None
    m = martingale_model(agg, [ConstantRate(c, time="discrete")])
    if m is None:  # pragma: no cover - i.i.d. parts below the rate always have one
        return None
    return min(1.0, m.prefactor), m.decay


def _log_mgf(q: tuple[float, float] | None, b: float) -> float:
    """``log E e^{b V}`` for ``P(V > v) <= H e^{-u v}``, ``V >= 0`` (``inf`` from ``u`` on)."""
    if q is None:
        return math.inf
    h, u = q
    if b <= 0.0:
        return 0.0
    return math.log1p(b * h / (u - b)) if b < u else math.inf


def _log_partial_sums(kd: float, n: np.ndarray) -> np.ndarray:
    """``log sum_{i=0}^{n-1} e^{i kd}`` for ``n = 1, 2, ..., len(n)`` (``n`` must be that range)."""
    return np.logaddexp.accumulate((n - 1) * kd)


def _log_expm1(x: float) -> float:
    """``log(e^x - 1)`` for ``x > 0``, without overflow."""
    return x + math.log(-math.expm1(-x))


def _partial_sums_envelope(kd: float) -> tuple[float, float]:
    """``(log A, g)`` with ``sum_{i=0}^{n-1} e^{i kd} <= A e^{g n}`` for every ``n >= 1``."""
    if kd < -1e-3:
        return -math.log(-math.expm1(kd)), 0.0
    if kd > 1e-3:  # (e^{n kd} - 1) / (e^{kd} - 1) <= e^{n kd} / (e^{kd} - 1); log(e^kd - 1) without overflow
        return -_log_expm1(kd), kd
    eta = 1e-3  # n e^{max(kd, 0) n}, and n <= e^{eta n} / (e eta)
    return -1.0 - math.log(eta), eta + max(kd, 0.0)


def _tilted_queue(m: SlottedModel, a: float, b: float) -> tuple[float, float]:
    """``(stat, kd)`` for the first hop restarted under the flow's tilt ``e^{a a_t}``:
    ``log E~ e^{b W/c_1} <= stat`` (its stationary queue) and ``<= log sum_{i<n} e^{i kd}``
    over ``n - 1`` slots (a union over its partial sums)."""
    c1, x1 = m.queues[0]
    ft = _tilt(m.flow, a)
    stat = _log_mgf(_queue((ft, x1), c1), b) if ft is not None else math.inf
    s = b / c1
    kd = _kappa(m.flow, a + s) - _kappa(m.flow, a) + _kappa(x1, s) - b
    return stat, kd


# ---------------------------------------------------------------- moments of restarted tandems


@dataclass(frozen=True)
class _J:
    """``log J(n)`` for ``n = 0 .. cells`` and an envelope ``J(n) <= e^{log_a + g n}`` for every ``n >= 1``."""

    logs: np.ndarray
    log_a: float
    g: float


#: Hoelder's exponent ``p`` and the share ``t`` of the flow's tilt left on the tandem in the split
#: ``J_j(a, b) <= J_0(w a)^(1 - 1/p) J_j(t a, p b)^(1/p)``, ``w = (1 - t/p) / (1 - 1/p)`` (module Notes).
HOLDER_P = 2.0
HOLDER_TILT = 0.5


def _j_moment(m: SlottedModel, j: int, a: float, al: float, b: float, memo: dict) -> _J | None:
    """The smaller of the recursion's ``J_j`` and its Hoelder split (module Notes)."""
    key = (j, a, al, b)
    if key not in memo:
        best = _j_raw(m, j, a, al, b, memo)
        if j >= 1 and b > 0.0:
            q, t = 1.0 / HOLDER_P, HOLDER_TILT
            hi, w = _j_raw(m, j, t * a, t * al, HOLDER_P * b, memo), (1.0 - q * t) / (1.0 - q)
            j0 = _j_uncached(m, 0, w * a, w * al, 0.0, memo) if hi is not None else None
            if hi is not None and j0 is not None:
                cand = _J((1 - q) * j0.logs + q * hi.logs, (1 - q) * j0.log_a + q * hi.log_a, (1 - q) * j0.g + q * hi.g)
                best = cand if best is None else _smaller(best, cand)
        memo[key] = best
    return memo[key]


def _j_raw(m: SlottedModel, j: int, a: float, al: float, b: float, memo: dict) -> _J | None:
    key = ("raw", j, a, al, b)
    if key not in memo:
        memo[key] = _j_uncached(m, j, a, al, b, memo)
    return memo[key]


def _smaller(x: _J, y: _J) -> _J:
    """The pointwise smaller of two bounds on one ``J``; either envelope bounds it (the one growing slower is kept)."""
    g, log_a = min((x.g, x.log_a), (y.g, y.log_a))
    return _J(np.minimum(x.logs, y.logs), log_a, g)


def _j_uncached(m: SlottedModel, j: int, a: float, al: float, b: float, memo: dict) -> _J | None:
    """``J_j(n; a, al, b) = E exp(a F[1, n-1] + al a_n + b D_j(n))`` of the tandem of hops ``1..j``
    restarted empty before slot 1 (module Notes), ``None`` where infinite."""
    n = np.arange(m.cells + 1, dtype=float)
    if j == 0:
        k, kl = _kappa(m.flow, a), _kappa(m.flow, al)
        if not (math.isfinite(k) and math.isfinite(kl)):
            return None
        logs = (n - 1) * k + kl
        logs[0] = 0.0
        return _J(logs, kl - k, k)
    best: _J | None = None
    c = m.queues[j - 1][0]
    dl, lm = m.delta(j, b), m.log_m(j, b)
    if math.isfinite(dl) and math.isfinite(lm):
        parts = [_j_moment(m, j - 1, *p, memo) for p in
                 ((a, al + b / c, b), (a, a + b / c, b), (a + b / c, al + b / c, dl))]
        if all(p is not None for p in parts):
            best = _union(parts, dl - b, dl + lm)  # type: ignore[arg-type]
    if j == 1:
        t = _tilted_j1(m, a, al, b)
        if best is None or t is None:
            return best or t
        return _smaller(best, t)
    return best


def _union(parts: list[_J], h: float, log_c: float) -> _J:
    """``J_j = e^{log_c} (J_n + sum_{r=1}^{n-1} J_p(r) e^{h (n-r)} J_q(n-r))`` and its envelope."""
    pn, pp, pq = parts
    cells = len(pn.logs) - 1
    n = np.arange(cells + 1, dtype=float)
    lq = pq.logs + h * n
    lc = np.full(cells + 1, -np.inf)
    lc[2:] = log_convolve(pp.logs[1:], lq[1:])[: cells - 1]  # r + (n - r) = i + 2
    logs = log_c + np.logaddexp(pn.logs, lc)
    logs[0] = 0.0
    # envelope: sum_{r=1}^{n-1} e^{g_p r + h' (n - r)} <= e^{G n} / (e^{|g_p - h'|} - 1), h' = g_q + h
    hq = pq.g + h
    gap = abs(pp.g - hq)
    eta = max(gap, 1e-3)
    grow = max(pp.g, hq) + (eta - gap)
    conv_a = pp.log_a + pq.log_a - _log_expm1(eta)
    g = max(pn.g, grow)
    log_a = log_c + float(np.logaddexp(pn.log_a, conv_a))
    with np.errstate(over="ignore"):
        logs[1:] = np.minimum(logs[1:], log_a + g * n[1:])
    return _J(logs, log_a, g)


def _tilted_j1(m: SlottedModel, a: float, al: float, b: float) -> _J | None:
    """``J_1`` through the first hop's queue over the first ``n - 1`` slots under the tilt (its
    stationary queue or a union over its partial sums) and the last slot's work (its delay
    ``ceil(z - 1)^+ <= z``, ``z = (W' + a_n + x_n)/c_1``)."""
    c1, x1 = m.queues[0]
    g1 = b / c1
    last = _kappa(m.flow, al + g1) + _kappa(x1, g1)
    k = _kappa(m.flow, a)
    if not (math.isfinite(last) and math.isfinite(k)):
        return None
    stat, kd = _tilted_queue(m, a, b)
    n = np.arange(m.cells + 1, dtype=float)
    t = np.full(m.cells + 1, stat)
    if math.isfinite(kd):
        t[1:] = np.minimum(_log_partial_sums(kd, n[1:]), stat)
    if not math.isfinite(t[-1]):
        return None
    logs = last + (n - 1) * k + t
    logs[0] = 0.0
    env = []
    if math.isfinite(stat):
        env.append((k, last - k + stat))
    if math.isfinite(kd):
        la, g = _partial_sums_envelope(kd)
        env.append((k + g, last - k + la))
    g, log_a = min(env)
    return _J(logs, log_a, g)


@functools.lru_cache(maxsize=8192)
def _log_coefficient(m: SlottedModel, theta: float) -> float:
    """``log beta_H(0)``: ``P(D - T > y) <= beta_H(0) e^{-theta y}`` for every real ``y`` (module Notes)."""
    h1, u1 = m.first_hop()
    c1, x1 = m.queues[0]
    memo: dict = {}
    coef: dict = {}

    def beta(k: int, w: float) -> float:
        key = (k, w)
        if key in coef:
            return coef[key]
        if k == 1:
            v = math.inf
            if w == 0.0 and theta <= u1:  # sup_y P(G_1 > y) e^{theta y}: H_1 e^theta from y = 0 on, 1 below
                v = max((math.log(h1) if h1 > 0 else -math.inf) + theta, 0.0)
            if theta <= u1:  # G_1 <= U + (a_0 + x_0)/c_1, U = W_1(-1)/c_1: sup_v P(U > v) e^{theta v} = 1
                v = min(v, _kappa(x1, theta / c1) + _kappa(m.flow, theta * (1.0 / c1 + w)))
        else:
            c = m.queues[k - 1][0]
            dk, lm = m.delta(k, theta), m.log_m(k, theta)
            v = math.inf
            if math.isfinite(dk) and math.isfinite(lm):
                b1, b2 = beta(k - 1, 1.0 / c + w), beta(k - 1, 1.0 / c)
                jm = _j_moment(m, k - 1, theta / c, theta / c + theta * w, dk, memo)
                s = _restart_sum(jm, dk - theta)
                if math.isfinite(b1) and math.isfinite(b2) and math.isfinite(s):
                    v = lm + dk + float(np.logaddexp(b1, b2 + s))
        coef[key] = v
        return v

    return beta(len(m.queues), 0.0)


def _restart_sum(jm: _J | None, rate: float) -> float:
    """``log sum_{n >= 1} e^{rate n} J(n)`` (``inf`` where it diverges)."""
    if jm is None:
        return math.inf
    gr = rate + jm.g
    if not gr < 0:
        return math.inf
    cells = len(jm.logs) - 1
    n = np.arange(1, cells + 1, dtype=float)
    head = float(np.logaddexp.reduce(rate * n + jm.logs[1:]))
    tail = jm.log_a + gr * (cells + 1) - math.log(-math.expm1(gr))
    return float(np.logaddexp(head, tail))


def slotted_log_coefficient(model: SlottedModel, theta: float) -> float:
    """``log beta(theta)`` with ``P(D - T > y) <= beta e^{-theta y}`` for every ``y`` (slots; module
    Notes: ``beta_H(0)``); ``theta`` in 1/slot; ``inf`` where there is none."""
    if not theta > 0:
        raise InputError(f"theta(={theta!r}) must be > 0")
    return _log_coefficient(model, float(theta))


@functools.lru_cache(maxsize=64)
def _thetas(m: SlottedModel) -> tuple[np.ndarray, np.ndarray]:
    """The model's theta grid (fractions of the first hop's root, 1/slot) and ``log beta`` on it."""
    _, u1 = m.first_hop()
    th = np.array([f * u1 for f in THETA_FRACTIONS] + [u1])
    return th, np.array([_log_coefficient(m, float(t)) for t in th])


def slotted_violation(arrival: Arrival, services: Sequence[Service], delay: float) -> Bound | None:
    """``P(D > delay) <= epsilon`` for a slot's delay ``D`` (slots, latencies included, floored to
    whole slots), or ``None`` when the bound does not apply (:func:`slotted_model`) or is not finite."""
    m = slotted_model(arrival, services)
    if m is None:
        return None
    j = math.floor(delay - m.latency + 1e-9)
    if j < 0:
        return Bound(delay, 1.0, math.nan, BoundMethod.FIFO_SLOTTED)
    best = exponential_tail_min(*_thetas(m), j + 1)  # D is whole slots: P(D > j) = P(D > y) for y < j + 1
    return None if best is None else Bound(delay, best[0], best[1], BoundMethod.FIFO_SLOTTED)


def slotted_delay(arrival: Arrival, services: Sequence[Service], epsilon: float) -> Bound | None:
    """The smallest delay (whole slots past the latencies) with ``P(D > delay) <= epsilon``, optimised
    over theta, or ``None`` (see :func:`slotted_violation`)."""
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    m = slotted_model(arrival, services)
    if m is None:
        return None
    th, lb = _thetas(m)
    with np.errstate(invalid="ignore"):
        xs = np.where(np.isfinite(lb), (lb - math.log(epsilon)) / th, np.inf)
    best = float(np.min(xs))
    if not math.isfinite(best):
        return None
    # on the model's fixed theta grid, as slotted_violation: the bound at the delay is at most epsilon
    return slotted_violation(arrival, services, m.latency + max(0, math.ceil(best - 1.0 - 1e-9)))
