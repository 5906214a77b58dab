"""The reference simulators against naive loops and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federation.calculus.arrivals import MMOO, CorrelatedMMOO, ExpIncrements, PoissonArrival, TokenBucket
from federation.calculus.reference import (
    continuous_mmoo_segments,
    exceedance,
    fluid_segments_exceedance,
    packet_tandem_departures,
    slot_samples,
    slotted_tandem_delays,
    time_exceedance,
)


def _naive_slotted(a, caps, crosses):
    """Slot-by-slot tandem: cross traffic first at every hop, then the flow (FIFO within the flow)."""
    t = len(a)
    hops = len(caps)
    q = [0.0] * hops
    qc = [0.0] * hops
    out_cum = np.zeros(t + 1)
    for s in range(t):
        inflow = a[s]
        for h in range(hops):
            cap = caps[h][s]
            x = crosses[h][s] if crosses[h] is not None else 0.0
            qc[h] += x
            served_c = min(qc[h], cap)
            qc[h] -= served_c
            left = cap - served_c
            q[h] += inflow
            served = min(q[h], left)
            q[h] -= served
            inflow = served
        out_cum[s + 1] = out_cum[s] + inflow
    a_cum = np.concatenate([[0.0], np.cumsum(a)])
    delays = []
    for s in range(1, t + 1):
        u = s
        while u <= t and out_cum[u] < a_cum[s] - 1e-9:
            u += 1
        if u > t:
            break
        delays.append(u - s)
    return np.array(delays)


def test_slotted_tandem_matches_naive_loop():
    rng = np.random.default_rng(0)
    t = 400
    a = rng.exponential(0.5, t)
    caps = [rng.exponential(1.2, t), np.full(t, 1.0), rng.uniform(0.5, 1.5, t)]
    crosses = [rng.exponential(0.2, t), None, rng.exponential(0.1, t)]
    fast = slotted_tandem_delays(a, caps, crosses)
    slow = _naive_slotted(a, caps, crosses)
    n = min(len(fast), len(slow))
    assert n > 300
    np.testing.assert_array_equal(fast[:n], slow[:n])


def test_slotted_by_hand():
    # 3 bits in slot 0 through a 1 bit/slot link: served in slots 0, 1, 2 -> delay 2
    d = slotted_tandem_delays(np.array([3.0, 0, 0, 0, 0]), [1.0])
    assert list(d[:2]) == [2, 1]
    # same-slot forwarding: two unit links add no delay for 1 bit per slot
    assert list(slotted_tandem_delays(np.ones(5), [1.0, 1.0])) == [0] * 5


def test_packet_tandem_matches_loop():
    rng = np.random.default_rng(1)
    n = 500
    at = np.cumsum(rng.exponential(1.0, n))
    st = [rng.exponential(0.7, n), rng.exponential(0.5, n)]
    dep = packet_tandem_departures(at, st)
    prev = at.copy()
    for s in st:
        out = np.empty(n)
        last = -math.inf
        for k in range(n):
            last = max(last, prev[k]) + s[k]
            out[k] = last
        prev = out
    np.testing.assert_allclose(dep, prev)


def test_time_exceedance_matches_fine_grid():
    rng = np.random.default_rng(2)
    n = 300
    at = np.cumsum(rng.exponential(1.0, n))
    fin = packet_tandem_departures(at, [rng.exponential(0.8, n)])
    grid = np.linspace(at[0], at[-1], 400_000, endpoint=False)
    idx = np.searchsorted(at, grid, side="right") - 1
    v = np.maximum(fin[idx] - grid, 0.0)
    for d in (0.5, 2.0):
        assert time_exceedance(at, fin, d).p == pytest.approx(np.mean(v > d), abs=2e-3)


def test_fluid_segments_match_euler():
    lens = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    rates = np.array([3.0, 0.0, 4.0, 1.0, 2.5])
    cap = 1.5
    dt = 1e-4
    w, above = 0.0, {0.2: 0.0, 1.0: 0.0}
    for ln, r in zip(lens, rates):
        for _ in range(int(round(ln / dt))):
            w = max(w + (r - cap) * dt, 0.0)
            for d in above:
                above[d] += dt * (w / cap > d)
    for d, tm in above.items():
        assert fluid_segments_exceedance(lens, rates, cap, d, batches=2).p == pytest.approx(tm / lens.sum(), abs=1e-3)


def test_samplers_have_the_model_means():
    rng = np.random.default_rng(3)
    t = 200_000
    for model in (
        PoissonArrival(0.7, 2.0, "exp", time="discrete"),
        PoissonArrival(0.7, 2.0, "det", time="discrete"),
        ExpIncrements(2.5),
        MMOO.discrete(0.8, 0.9, 1.0, n=3),
        CorrelatedMMOO.discrete(0.8, 0.9, 1.0, n=3),
    ):
        x = slot_samples(model, t, rng)
        assert np.mean(x) == pytest.approx(model.mean_rate, rel=0.05)
    on = slot_samples(MMOO.discrete(0.8, 0.9, 1.0), t, rng) > 0
    assert np.mean(on[1:][on[:-1]]) == pytest.approx(0.8, abs=0.01)  # stay_on
    tb = slot_samples(TokenBucket(5.0, 0.5, time="discrete"), 10, rng)
    assert tb[0] == 5.5 and np.all(tb[1:] == 0.5)
    m = MMOO(peak=1.0, on=0.5, off=1.0, n=4)
    lens, rates = continuous_mmoo_segments(m, 20_000.0, rng)
    assert lens.sum() == pytest.approx(20_000.0)
    assert float(lens @ rates) / lens.sum() == pytest.approx(m.mean_rate, rel=0.03)
    assert rates.min() >= 0 and rates.max() <= 4.0


def test_estimate_confidence_limits():
    rng = np.random.default_rng(4)
    x = rng.random(100_000) < 0.01
    est = exceedance(x.astype(float), 0.5)
    assert est.lower_limit(0.99) <= est.p <= est.interval(0.98).high
    assert est.lower_limit(0.99) < 0.01 < est.interval(0.98).high
    assert est.stderr > 0
