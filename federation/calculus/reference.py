"""Reference simulators that the calculus is validated against (vectorised numpy, no event loop).

* :func:`slotted_tandem_delays`: the standard slotted fluid tandem (work arriving in slot ``t`` can
  be served in slot ``t``; what hop ``i`` serves in slot ``t`` enters hop ``i+1`` in the same slot),
  each hop a work-conserving server with per-slot capacity, a one-hop cross flow per hop served
  with **strict priority over the flow of interest** (the worst case that blind multiplexing
  covers). Min-plus scans: ``D_h(t) = L_h(t) + min_{s<=t}(D_{h-1}(s) - L_h(s))``. Returns the
  virtual delay ``D(t) = min{T >= 0 : A(0,t) <= D_H(0,t+T)}`` of every slot.
* :func:`slotted_fifo_tandem_delays`: the same slotted tandem with every hop serving its cross
  flow and the flow of interest in **one FIFO queue** (within a slot the cross work first, the
  worst order FIFO allows).
* :func:`packet_tandem_departures`: FIFO packet tandem with given service times, the Lindley
  max-plus scan ``D = C + maximum.accumulate(A - C_prev)`` per hop.
* :func:`time_exceedance`: time-stationary ``P(V(t) > d)`` of the virtual delay
  ``V(t) = F_{N(t)} - t`` (``F_k`` = when the work that arrived by packet ``k`` has left).
* :func:`fluid_mmoo_exceedance`: continuous-time fluid on-off sources into a constant-rate queue
  (piecewise-linear workload, Lindley over rate segments).
* sample generators for every arrival model; estimates come as
  :class:`~federation.stats.BatchMeansEstimate` (batch-means confidence limits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np

from federation.calculus.arrivals import (
    MMOO,
    Aggregate,
    Arrival,
    CorrelatedMMOO,
    ExpIncrements,
    PoissonArrival,
    TokenBucket,
)
from federation.stats import BatchMeansEstimate

__all__ = [
    "slot_samples",
    "slotted_tandem_delays",
    "slotted_fifo_tandem_delays",
    "exceedance",
    "packet_tandem_departures",
    "time_exceedance",
    "continuous_mmoo_segments",
    "fluid_segments_exceedance",
]

def _batch_estimate(weights: np.ndarray, hits: np.ndarray, batches: int = 50) -> BatchMeansEstimate:
    """Weighted fraction with batch-means standard error (``hits`` in [0, weights])."""
    n = len(weights)
    b = max(2, min(batches, n))
    idx = np.linspace(0, n, b + 1).astype(int)
    hw = np.add.reduceat(hits, idx[:-1])
    ww = np.add.reduceat(weights, idx[:-1])
    p = float(hits.sum() / weights.sum())
    frac = hw / ww
    se = float(np.std(frac, ddof=1) / math.sqrt(b))
    return BatchMeansEstimate(p, se, n)


# ----------------------------------------------------------------------------- sample paths


def _mmoo_states(stay_on: float, stay_off: float, t: int, rng: np.random.Generator) -> np.ndarray:
    """0/1 on-state per slot of one stationary discrete on-off chain (geometric sojourns)."""
    p_on = (1 - stay_off) / (2 - stay_on - stay_off)
    state = rng.random() < p_on
    out = np.empty(0, dtype=np.int8)
    chunks = []
    total = 0
    while total < t:
        m = max(64, int(2 * t * (1 - max(stay_on, stay_off)) + 64))
        on_len = rng.geometric(1 - stay_on, m)
        off_len = rng.geometric(1 - stay_off, m)
        if state:
            lens = np.column_stack([on_len, off_len]).ravel()
            vals = np.tile(np.array([1, 0], dtype=np.int8), m)
        else:
            lens = np.column_stack([off_len, on_len]).ravel()
            vals = np.tile(np.array([0, 1], dtype=np.int8), m)
        chunks.append(np.repeat(vals, lens))
        total += int(lens.sum())
    out = np.concatenate(chunks)[:t]
    return out


def slot_samples(arrival: Arrival, t: int, rng: np.random.Generator) -> np.ndarray:
    """Per-slot work (bits) of a discrete-time arrival model for ``t`` slots (stationary start).

    Token buckets are sent greedily (burst ``sigma`` in the first slot, then ``rho`` per slot).
    """
    if isinstance(arrival, TokenBucket):
        a = np.full(t, arrival.rho_)
        a[0] += arrival.sigma_
        return a
    if isinstance(arrival, PoissonArrival):
        k = rng.poisson(arrival.rate, t)
        if arrival.size == "det":
            return k * arrival.mean_size
        return rng.gamma(np.maximum(k, 1e-300), arrival.mean_size) * (k > 0)
    if isinstance(arrival, ExpIncrements):
        return rng.exponential(1.0 / arrival.lamb, t)
    if isinstance(arrival, CorrelatedMMOO):
        return _mmoo_states(arrival.stay_on, arrival.stay_off, t, rng) * (arrival.n * arrival.peak)
    if isinstance(arrival, MMOO):
        s = np.zeros(t)
        for _ in range(arrival.n):
            s += _mmoo_states(arrival.stay_on, arrival.stay_off, t, rng)
        return s * arrival.peak
    if isinstance(arrival, Aggregate):
        if arrival.dependent:
            # one dependence structure: all parts driven by the same random stream (comonotone-ish)
            seed = int(rng.integers(2**63))
            total = sum(slot_samples(p, t, np.random.default_rng(seed)) for p in arrival.parts)
        else:
            total = sum(slot_samples(p, t, rng) for p in arrival.parts)
        return cast(np.ndarray, total)  # an array: an Aggregate has at least one part
    raise TypeError(f"no slot sampler for {type(arrival).__name__}")


def _cum(x: np.ndarray) -> np.ndarray:
    out = np.empty(len(x) + 1)
    out[0] = 0.0
    np.cumsum(x, out=out[1:])
    return out


def slotted_tandem_delays(
    arrivals: np.ndarray,
    capacities: Sequence[np.ndarray | float],
    cross: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Virtual delays (slots) of every slot through a slotted tandem; see the module notes.

    Parameters
    ----------
    arrivals : (T,) array
        Work of the flow of interest per slot (bits).
    capacities : sequence of (T,) arrays or floats
        Per-slot capacity of each hop (bits/slot).
    cross : sequence of (T,) arrays or None, optional
        Cross work per slot at each hop (strict priority over the flow).

    Returns
    -------
    (T',) int array
        ``D(t)`` for the slots whose delay is resolved within the horizon (censored tail dropped).
    """
    t = len(arrivals)
    a_cum = _cum(arrivals)
    d = a_cum
    for h, c in enumerate(capacities):
        c_arr = np.broadcast_to(np.asarray(c, dtype=float), (t,))
        c_cum = _cum(c_arr)
        x = None if cross is None else cross[h]
        if x is not None:
            x_cum = _cum(np.asarray(x, dtype=float))
            x_out = c_cum + np.minimum.accumulate(x_cum - c_cum)
            l_cum = c_cum - x_out
        else:
            l_cum = c_cum
        d = l_cum + np.minimum.accumulate(d - l_cum)
    return _resolved_delays(a_cum, d, t)


def _resolved_delays(a_cum: np.ndarray, d: np.ndarray, t: int) -> np.ndarray:
    """``min{T >= 0: a_cum[t] <= d[t+T]}`` per slot ``t >= 1`` (cumulative index ``t``: the work up to
    and including slot ``t``), the censored tail dropped. The rounding tolerance can place the
    match before slot ``t`` when the slot brings almost no work: the delay is then 0, not negative."""
    tol = 1e-9 * max(1.0, float(a_cum[-1]))
    idx = np.searchsorted(d, a_cum - tol, side="left")
    ok = (idx <= t)[1:]
    delays = np.maximum(idx - np.arange(t + 1), 0)[1:]
    last = int(np.argmin(ok)) if not ok.all() else len(ok)
    return delays[:last]


def slotted_fifo_tandem_delays(
    arrivals: np.ndarray,
    capacities: Sequence[np.ndarray | float],
    cross: Sequence[np.ndarray | None],
) -> np.ndarray:
    """Virtual delays (slots) of every slot through a slotted tandem of FIFO hops with cross traffic.

    Parameters are those of :func:`slotted_tandem_delays`; hop ``h`` serves the flow's work and
    ``cross[h]`` (``None``: no cross flow) in one FIFO queue, in slot order, the cross work of a
    slot before the flow's. The aggregate leaves as ``D = L + min.accumulate(I - L)`` (``I`` its
    cumulative input, ``L`` the cumulative capacity); the flow has left what precedes position
    ``D`` in the FIFO order: ``A_cum[k-1] + clip(D - I[k-1] - x_k, 0, a_k)`` for the slot ``k``
    whose input straddles ``D``. Returns the delays of the slots resolved within the horizon.
    """
    t = len(arrivals)
    a_cum = _cum(arrivals)
    flow_in = np.asarray(arrivals, dtype=float)  # the flow's work entering the hop, per slot
    f_cum = a_cum
    for h, c in enumerate(capacities):
        l_cum = _cum(np.broadcast_to(np.asarray(c, dtype=float), (t,)))
        x = cross[h]
        if x is None:
            f_cum = l_cum + np.minimum.accumulate(f_cum - l_cum)
        else:
            x = np.asarray(x, dtype=float)
            i_cum = _cum(flow_in + x)
            d_agg = l_cum + np.minimum.accumulate(i_cum - l_cum)
            k = np.clip(np.searchsorted(i_cum, d_agg, side="left"), 1, t)  # slot k: i_cum[k-1] < D <= i_cum[k]
            f_cum = f_cum[k - 1] + np.clip(d_agg - i_cum[k - 1] - x[k - 1], 0.0, flow_in[k - 1])
            f_cum = np.minimum(np.maximum.accumulate(f_cum), _cum(flow_in))
        flow_in = np.diff(f_cum)
    return _resolved_delays(a_cum, f_cum, t)


def exceedance(delays: np.ndarray, d: float, warmup: int = 0, batches: int = 50) -> BatchMeansEstimate:
    """Estimate ``P(D > d)`` from a stationary series of per-slot delays (batch means)."""
    x = delays[warmup:]
    return _batch_estimate(np.ones(len(x)), (x > d).astype(float), batches)


def packet_tandem_departures(times: np.ndarray, service_times: Sequence[np.ndarray]) -> np.ndarray:
    """Departure times from the last hop of a FIFO packet tandem (store-and-forward).

    ``d_k = max(d_{k-1}, a_k) + s_k`` per hop, as the max-plus scan
    ``D = C + maximum.accumulate(A - C_prev)`` with ``C = cumsum(s)``.
    """
    a = np.asarray(times, dtype=float)
    for s in service_times:
        c = np.cumsum(s)
        c_prev = c - s
        a = c + np.maximum.accumulate(a - c_prev)
    return a


def time_exceedance(
    arrival_times: np.ndarray, finish: np.ndarray, d: float, horizon: float | None = None, batches: int = 50
) -> BatchMeansEstimate:
    """Time-stationary ``P(V(t) > d)`` of ``V(t) = finish[N(t)] - t`` (0 if negative).

    ``finish[k]`` is when all work that arrived up to packet ``k`` has left (e.g. the last hop's
    departure of packet ``k`` in FIFO). The time in ``[a_k, a_{k+1})`` with ``V > d`` is
    ``clip(finish_k - d - a_k, 0, a_{k+1} - a_k)``.
    """
    a = np.asarray(arrival_times, dtype=float)
    end = np.append(a[1:], horizon if horizon is not None else a[-1])
    gap = end - a
    hit = np.clip(finish - d - a, 0.0, gap)
    return _batch_estimate(gap, hit, batches)


def continuous_mmoo_segments(arrival: MMOO, horizon: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant input rate of a continuous MMOO (stationary start) on ``[0, horizon]``.

    Returns ``(lengths, rates)`` of consecutive segments (s, bits/s).
    """
    n_src = 1 if isinstance(arrival, CorrelatedMMOO) else arrival.n
    peak = arrival.n * arrival.peak if isinstance(arrival, CorrelatedMMOO) else arrival.peak
    times = [np.array([0.0, horizon])]
    deltas = [np.array([0.0, 0.0])]
    p_on = arrival.on / (arrival.on + arrival.off)
    for _ in range(n_src):
        state = rng.random() < p_on
        m = int(horizon / (arrival.on + arrival.off) * 1.5) + 64
        while True:
            on_len = rng.exponential(arrival.on, m)
            off_len = rng.exponential(arrival.off, m)
            lens = np.column_stack([on_len, off_len] if state else [off_len, on_len]).ravel()
            if lens.sum() >= horizon:
                break
            m *= 2
        edges = np.cumsum(lens)
        edges = edges[edges < horizon]
        sign = np.where(np.arange(len(edges)) % 2 == 0, -1.0, 1.0) if state else np.where(
            np.arange(len(edges)) % 2 == 0, 1.0, -1.0
        )
        times.append(np.concatenate([[0.0], edges]))
        deltas.append(np.concatenate([[peak if state else 0.0], sign * peak]))
    t = np.concatenate(times)
    dl = np.concatenate(deltas)
    order = np.argsort(t, kind="stable")
    t, dl = t[order], dl[order]
    rate = np.cumsum(dl)
    lengths = np.diff(t)
    return lengths, rate[:-1]


def fluid_segments_exceedance(
    lengths: np.ndarray, rates: np.ndarray, capacity: float, d: float, batches: int = 50
) -> BatchMeansEstimate:
    """Time-stationary ``P(V(t)/C > d)`` for a fluid queue with piecewise-constant input rates.

    The workload evolves linearly within a segment (slope ``rate - C``, reflected at 0); the
    virtual delay of a FIFO constant-rate queue is ``V/C``.
    """
    x = capacity * d
    u = (rates - capacity) * lengths
    s = np.cumsum(u)
    w_end = s - np.minimum(np.minimum.accumulate(s), 0.0)
    w0 = np.concatenate([[0.0], w_end[:-1]])
    slope = rates - capacity
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(w0 >= x, lengths, np.clip(lengths - (x - w0) / np.where(slope > 0, slope, np.inf), 0, lengths))
        down = np.clip((w0 - x) / np.where(slope < 0, -slope, np.inf), 0.0, lengths)
        down = np.where(slope == 0, np.where(w0 > x, lengths, 0.0), down)
    hit = np.where(slope > 0, up, down)
    return _batch_estimate(lengths, hit, batches)
