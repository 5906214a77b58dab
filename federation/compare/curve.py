"""The bound curve of ``trefed compare``: ``d -> P(D > d)`` bounded for the *simulated* quantity.

:class:`BoundCurve` evaluates, at a delay ``d`` (s), a valid upper bound on ``P(D > d)`` for the
delay notion of a :class:`~federation.compare.model.ComparedModel`, with the method that gave it.

``virtual`` notion: the calculus bound of the (corrected) model, at ``d - shift``.

``packet`` notion: the bound on the time-stationary virtual delay is turned into a bound on the
*packet* delay, taking the smallest of these valid conversions at every ``d``:

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
"""

from __future__ import annotations

import math

import numpy as np

from federation.calculus.arrivals import PoissonArrival
from federation.calculus.bound import Bound
from federation.calculus.compose import packetized, violation_bound, virtual_violation_bound
from federation.calculus.martingale import martingale_violation
from federation.calculus.packet import maxplus_violation, product_form_violation
from federation.calculus.services import ConstantRate, ExpService, Leftover
from federation.calculus.sojourn import per_packet
from federation.calculus.tandem import tandem_violation
from federation.compare.model import ComparedModel, Tagged
from federation.errors import NoFiniteBound

__all__ = ["BoundCurve"]


class BoundCurve:
    """``d -> (epsilon, method, theta)``: a valid bound on the *simulated* quantity's ``P(D > d)``.

    ``d_hi`` (s) is the largest delay asked for: the fine grid of the one-hop convolution covers
    ``[latency, latency + 1.5 (d_hi - latency)]`` with ``fine`` points. ``theta`` is the bound's
    optimising theta (1/bit, or 1/s for ``mgf-maxplus``), nan if none.
    """

    def __init__(self, m: ComparedModel, d_hi: float, fine: int = 300) -> None:
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
        """The calculus bound of the model's virtual delay at ``d`` (s), unconverted."""
        return virtual_violation_bound(self.flow, self.services, d)

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
        mp = maxplus_violation(self.flow, self.services, d)  # a packet's sojourn already
        if mp is not None and isinstance(self.flow, PoissonArrival):
            cands.append((mp.epsilon, "mgf-maxplus(tagged)", mp.theta))
        if per_packet(self.flow):  # what the broker composes: the calculus' own packet bound
            try:
                vb = violation_bound(self.flow, self.services, d)
                cands.append((vb.epsilon, f"{vb.method}(packet)", vb.theta))
            except NoFiniteBound:
                pass
        pf = product_form_violation(self.flow, self.services, d)
        if pf is not None:
            cands.append((pf.epsilon, "product-form", pf.theta))
        try:
            tb = tandem_violation(Tagged(self.flow, m.size, m.size_exp), self.fl, d)
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
