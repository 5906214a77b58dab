"""The FIFO bounds (federation.calculus.fifo): exact composition sums, and validity against the data plane.

Validity: at every checked delay the bound is at least the 99 % lower confidence limit (batch
means) of the time-stationary violation probability of the same model simulated by the data plane
(``federation.dataplane``: FIFO domains, one-hop Poisson cross traffic; not a priority simulation).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from federation.calculus.arrivals import ExpIncrements, PoissonArrival, TokenBucket
from federation.calculus.baseline import baseline_tandem_delay
from federation.calculus.bound import BoundMethod, FifoDetail, MartingaleDetail
from federation.calculus.compose import delay_bound, packetized, violation_bound
from federation.calculus.fifo import (
    HopWeight,
    fifo_applies,
    fifo_martingale_delay,
    fifo_martingale_violation,
    fifo_tandem_delay,
    fifo_tandem_violation,
    log_composition_tail,
)
from federation.calculus.model import build_model
from federation.calculus.reference import (
    exceedance,
    slot_samples,
    slotted_fifo_tandem_delays,
    slotted_tandem_delays,
    time_exceedance,
)
from federation.calculus.services import ConstantRate, ExpService, FifoLeftover, Leftover
from federation.calculus.tandem import tandem_delay, tandem_violation
from federation.compare.run import fifo_tandem_departures
from federation.errors import InputError, SpecError
from federation.specs import parse_arrival, parse_cross, parse_hop

D = "discrete"


def _brute_tail(weights, j, n=400):
    conv = np.exp(weights[0].log_values(n))
    for w in weights[1:]:
        conv = np.convolve(conv, np.exp(w.log_values(n)))[:n]
    return math.log(conv[j:].sum())


@pytest.mark.parametrize("j", [0, 1, 4, 9, 25])
def test_composition_tail_matches_the_truncated_convolution(j):
    ws = [HopWeight(0.3, 1.0, 1.1, (0.0, -0.2, 0.0)), HopWeight(0.3, 0.5, 0.9), HopWeight(0.3, -0.2, 0.7, (0.0,) * 6)]
    assert log_composition_tail(ws, j) == pytest.approx(_brute_tail(ws, j), rel=1e-10, abs=1e-10)


def test_a_plain_hop_weight_is_the_geometric_tail_of_the_tandem_bound():
    # one discrete hop without cross traffic: w(m) = exp(k m) exp(-gamma m) for delta = 0, so the
    # tail is a^j / (1 - a), a = exp(k - gamma) (the closed form of tandem.log_geometric_tail)
    k, g = 0.2, 0.9
    for j in (0, 3, 10):
        want = (k - g) * j - math.log(-math.expm1(k - g))
        assert log_composition_tail([HopWeight(k, 0.0, g)], j) == pytest.approx(want, rel=1e-12)


def test_fifo_applies_only_to_fifo_hops_and_keeps_every_leftover_bound():
    x = PoissonArrival(0.3, 1.0)
    f = FifoLeftover(ConstantRate(1.0), x)
    assert isinstance(f, Leftover) and f.gamma(0.5) == Leftover(ConstantRate(1.0), x).gamma(0.5)
    assert fifo_applies([f]) and not fifo_applies([Leftover(ConstantRate(1.0), x), ConstantRate(2.0)])
    flow = PoissonArrival(0.2, 1.0)
    assert fifo_tandem_violation(flow, [Leftover(ConstantRate(1.0), x)], 5.0) is None
    assert fifo_tandem_delay(flow, [ConstantRate(1.0)], 1e-3) is None
    assert fifo_martingale_violation(flow, [Leftover(ConstantRate(1.0), x)], 5.0) is None
    assert pickle.loads(pickle.dumps(f)) == f


def test_fifo_is_at_least_as_tight_as_blind_multiplexing():
    flow, x = ExpIncrements(2.0), PoissonArrival(0.3, 1.0, "exp", time=D)
    for hops in (1, 3):
        blind = [Leftover(ConstantRate(1.0, time=D), x)] * hops
        fifo = [FifoLeftover(ConstantRate(1.0, time=D), x)] * hops
        b = tandem_delay(flow, blind, 1e-3)
        f = fifo_tandem_delay(flow, fifo, 1e-3)
        assert f is not None and f.method == BoundMethod.MGF_FIFO and isinstance(f.detail, FifoDetail)
        assert f.delay < b.delay
        assert delay_bound(flow, fifo, 1e-3).delay <= f.delay
        # the chosen bound is the smallest, and at its delay it meets epsilon
        best = delay_bound(flow, fifo, 1e-3)
        assert violation_bound(flow, fifo, best.delay).epsilon <= 1e-3 * (1 + 1e-6)


def test_a_positive_fifo_offset_beats_blind_multiplexing():
    flow, x = ExpIncrements(2.0), PoissonArrival(0.3, 1.0, "exp", time=D)
    b = fifo_tandem_violation(flow, [FifoLeftover(ConstantRate(1.0, time=D), x)] * 2, 100.0)
    assert b is not None and isinstance(b.detail, FifoDetail)
    assert min(b.detail.fifo_offsets) > 0  # the optimum is not blind multiplexing
    blind = tandem_violation(flow, [Leftover(ConstantRate(1.0, time=D), x)] * 2, 100.0)
    assert 0 < b.epsilon < blind.epsilon < 1


def test_fifo_martingale_is_the_aggregate_queue_bound():
    # M/M/1-type check: Poisson exp-size flow and cross into a unit link; the aggregate is compound
    # Poisson with exponential jumps: P(W > d) = rho exp(-(1 - rho) d / m) exactly (m = mean size)
    flow, x = PoissonArrival(0.3, 1.0, "exp"), PoissonArrival(0.4, 1.0, "exp")
    b = fifo_martingale_violation(flow, [FifoLeftover(ConstantRate(1.0), x)], 10.0)
    assert b is not None and b.method == BoundMethod.MARTINGALE_FIFO and isinstance(b.detail, MartingaleDetail)
    assert b.epsilon == pytest.approx(0.7 * math.exp(-0.3 * 10.0), rel=1e-6)
    d = fifo_martingale_delay(flow, [FifoLeftover(ConstantRate(1.0), x)], 1e-3)
    assert d is not None and d.epsilon == pytest.approx(1e-3, rel=1e-6)
    with pytest.raises(InputError, match="epsilon"):
        fifo_martingale_delay(flow, [FifoLeftover(ConstantRate(1.0), x)], 1.5)
    with pytest.raises(InputError, match="epsilon"):
        fifo_tandem_delay(flow, [FifoLeftover(ConstantRate(1.0), x)], 0.0)


def test_fifo_martingale_with_faster_links_after_the_fifo_hop():
    flow, x = PoissonArrival(0.3, 1.0, "exp"), PoissonArrival(0.4, 1.0, "exp")
    one = fifo_martingale_violation(flow, [FifoLeftover(ConstantRate(1.0), x)], 10.0)
    more = fifo_martingale_violation(flow, [FifoLeftover(ConstantRate(1.0), x), ConstantRate(1.0, latency=0.5),
                                            ConstantRate(2.0, latency=0.25)], 10.75)
    assert one is not None and more is not None and more.epsilon == pytest.approx(one.epsilon, rel=1e-12)
    # a slower link after it, a link before it, or a second FIFO hop: not this bound
    assert fifo_martingale_violation(flow, [FifoLeftover(ConstantRate(1.0), x), ConstantRate(0.9)], 10.0) is None
    assert fifo_martingale_violation(flow, [ConstantRate(2.0), FifoLeftover(ConstantRate(1.0), x)], 10.0) is None
    assert fifo_martingale_violation(flow, [FifoLeftover(ConstantRate(1.0), x)] * 2, 10.0) is None


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_at_one_fifo_hop_the_martingale_is_never_above_the_fifo_mgf_bound(time):
    """Why violation_bound and delay_bound skip the (slower) FIFO MGF bound at a lone FIFO hop."""
    if time == D:
        flow, hops = ExpIncrements(1 / 0.3), [FifoLeftover(ConstantRate(1.0, time=D), PoissonArrival(0.4, 1.0, "exp", time=D)),
                                              FifoLeftover(ExpService(1.0, time=D), PoissonArrival(0.3, 1.0, "exp", time=D))]
    else:
        flow, hops = PoissonArrival(0.3, 1.0), [FifoLeftover(ConstantRate(1.0), PoissonArrival(0.4, 1.0, "exp")),
                                                FifoLeftover(ConstantRate(1.0, latency=2.0), PoissonArrival(0.5, 1.0))]
    for hop in hops:
        for d in (0.5, 3.0, 10.0, 30.0, 80.0):
            m, g = fifo_martingale_violation(flow, [hop], d), fifo_tandem_violation(flow, [hop], d)
            assert m is not None and g is not None and m.epsilon <= g.epsilon, (hop, d, m, g)


def test_build_model_chooses_the_multiplexing():
    arr = [parse_arrival("poisson:rate=0.3,mean_size=1", "continuous")]
    hops = [parse_hop("rate=1"), parse_hop("rate=1")]
    cross = [parse_cross("1=poisson:rate=0.2,mean_size=1", 2, "continuous")]
    blind = build_model(arr, hops, cross)
    fifo = build_model(arr, hops, cross, multiplexing="fifo")
    assert type(blind.services[0]) is Leftover and type(fifo.services[0]) is FifoLeftover
    assert type(fifo.services[1]) is ConstantRate
    with pytest.raises(SpecError, match="multiplexing"):
        build_model(arr, hops, cross, multiplexing="priority")  # type: ignore[arg-type]


def test_packetizer_latency_on_shared_links():
    """A link shared with cross traffic transmits a fixed-size packet in L/R as well (store and forward)."""
    flow = PoissonArrival(0.3, 2.0, "det")
    x = PoissonArrival(0.1, 1.0)
    out = packetized(flow, [FifoLeftover(ConstantRate(4.0), x), Leftover(ConstantRate(2.0), x), ConstantRate(1.0)])
    assert type(out[0]) is FifoLeftover and out[0].latency == pytest.approx(0.5)
    assert type(out[1]) is Leftover and out[1].latency == pytest.approx(1.0)
    assert out[2].latency == 0.0


# ------------------------------------------------------------------ validity against the data plane


def _virtual_quantile(a, f, q):
    lo, hi = 0.0, float(np.max(f - a)) + 1.0
    for _ in range(50):
        m = 0.5 * (lo + hi)
        lo, hi = (m, hi) if time_exceedance(a, f, m).p > 1.0 - q else (lo, m)
    return hi


FIFO_CASES = [
    # (flow packets/s, flow size, [(rate, cross packets/s, cross size)], seed)
    (0.3, "det", [(1.0, 0.4, "det")], 501),
    (0.3, "det", [(1.0, 0.4, "exp"), (1.0, 0, "det"), (1.5, 0, "det")], 507),
    (0.3, "exp", [(1.0, 0.4, "exp")], 502),
    (0.3, "det", [(1.0, 0.3, "det")] * 2, 503),
    (0.2, "det", [(1.0, 0.5, "exp"), (1.25, 0.3, "det"), (1.0, 0.4, "det")], 504),
]


@pytest.mark.parametrize("lam,size,hops,seed", FIFO_CASES)
def test_fifo_bounds_valid_against_the_data_plane(lam, size, hops, seed):
    a, f = fifo_tandem_departures(lam, size, hops, 200_000, seed)
    a, f = a[2000:], f[2000:]
    flow = PoissonArrival(lam, 1.0, size)
    services = [FifoLeftover(ConstantRate(c), PoissonArrival(lc, 1.0, kc)) if lc else ConstantRate(c)
                for c, lc, kc in hops]
    fl = packetized(flow, services)
    checked = 0
    for q in (0.9, 0.99, 0.999):
        d = _virtual_quantile(a, f, q)
        est = time_exceedance(a, f, d)
        low = est.lower_limit(0.99)
        best = violation_bound(flow, services, d)
        assert best.epsilon >= low, (d, best, est)
        mgf = fifo_tandem_violation(flow, fl, d)
        assert mgf is not None and mgf.epsilon >= low, (d, mgf, est)
        mart = fifo_martingale_violation(flow, fl, d)
        if sum(1 for _, lc, _ in hops if lc) == 1:
            assert mart is not None and mart.epsilon >= low, (d, mart, est)
        checked += est.p > 0
    assert checked >= 2


def test_the_validity_check_catches_a_bound_that_ignores_the_cross_traffic():
    """The same check fails for an invalid bound: the flow alone through the links (cross traffic dropped)."""
    lam, hops = 0.3, [(1.0, 0.4, "det")]
    a, f = fifo_tandem_departures(lam, "det", hops, 200_000, 505)
    a, f = a[2000:], f[2000:]
    flow = PoissonArrival(lam, 1.0, "det")
    caught = 0
    for q in (0.9, 0.99, 0.999):
        d = _virtual_quantile(a, f, q)
        est = time_exceedance(a, f, d)
        invalid = violation_bound(flow, [ConstantRate(1.0)], d)
        caught += invalid.epsilon < est.lower_limit(0.99)
        assert violation_bound(flow, [FifoLeftover(ConstantRate(1.0), PoissonArrival(0.4, 1.0))], d).epsilon \
            >= est.lower_limit(0.99)
    assert caught >= 2


def test_discrete_fifo_bound_valid_with_a_random_capacity_hop():
    rng = np.random.default_rng(607)
    t = 400_000
    flow, x = ExpIncrements(1.0 / 0.3), PoissonArrival(0.25, 1.0, "exp", time=D)
    caps = [1.0, rng.exponential(1.2, t)]
    dl = slotted_fifo_tandem_delays(slot_samples(flow, t, rng), caps, [slot_samples(x, t, rng) for _ in range(2)])
    dl = dl[1000:]
    services = [FifoLeftover(ConstantRate(1.0, time=D), x), FifoLeftover(ExpService(1.2, time=D), x)]
    for q in (0.9, 0.99, 0.999):
        d = float(np.quantile(dl, q))
        low = exceedance(dl, d).lower_limit(0.99)
        for b in (violation_bound(flow, services, d), fifo_tandem_violation(flow, services, d)):
            assert b is not None and b.epsilon >= low, (d, b)


def test_the_discrete_check_catches_a_bound_that_ignores_the_cross_traffic():
    rng = np.random.default_rng(606)
    t = 400_000
    flow, x = ExpIncrements(1.0 / 0.3), PoissonArrival(0.3, 1.0, "exp", time=D)
    a = slot_samples(flow, t, rng)
    dl = slotted_fifo_tandem_delays(a, [1.0] * 2, [slot_samples(x, t, rng) for _ in range(2)])[1000:]
    caught = 0
    for q in (0.9, 0.99, 0.999):
        d = float(np.quantile(dl, q))
        caught += violation_bound(flow, [ConstantRate(1.0, time=D)] * 2, d).epsilon < exceedance(dl, d).lower_limit(0.99)
    assert caught >= 2


def test_slotted_fifo_reference_is_lindley_on_one_hop_and_the_tandem_without_cross():
    rng = np.random.default_rng(600)
    t = 20_000
    a, x = rng.exponential(0.3, t), rng.exponential(0.3, t)
    q, w = np.empty(t), 0.0
    for i in range(t):  # Lindley on the aggregate: the flow's work of a slot is served after the cross work
        w = max(w + a[i] + x[i] - 1.0, 0.0)
        q[i] = w
    d = slotted_fifo_tandem_delays(a, [1.0], [x])
    np.testing.assert_array_equal(d, np.ceil(q[: len(d)] - 1e-9))
    np.testing.assert_array_equal(slotted_fifo_tandem_delays(a, [1.0, 1.2], [None, None]),
                                  slotted_tandem_delays(a, [1.0, 1.2]))
    # FIFO never delays the flow more than strict priority to the cross traffic
    fifo = slotted_fifo_tandem_delays(a, [1.0, 1.0], [x, x[::-1]])
    prio = slotted_tandem_delays(a, [1.0, 1.0], [x, x[::-1]])
    n = min(len(fifo), len(prio))
    assert np.all(fifo[:n] <= prio[:n]) and fifo.mean() < prio.mean()


def test_slotted_delays_are_never_negative():
    """A slot with almost no work after a big one: the rounding tolerance used to report -1, -2, ..."""
    a = np.array([5000.0] + [1e-7] * 5 + [0.5] * 10)
    assert slotted_tandem_delays(a, [1e4]).min() == 0
    assert slotted_fifo_tandem_delays(a, [1e4], [np.zeros(len(a))]).min() == 0


@pytest.mark.parametrize("hops,util_f,util_c,seed", [(1, 0.3, 0.3, 601), (1, 0.5, 0.4, 602), (2, 0.3, 0.3, 603),
                                                     (3, 0.4, 0.3, 604)])
def test_discrete_fifo_bounds_valid_against_the_slotted_fifo_tandem(hops, util_f, util_c, seed):
    rng = np.random.default_rng(seed)
    t = 400_000
    flow, x = ExpIncrements(1.0 / util_f), PoissonArrival(util_c, 1.0, "exp", time=D)
    a = slot_samples(flow, t, rng)
    dl = slotted_fifo_tandem_delays(a, [1.0] * hops, [slot_samples(x, t, rng) for _ in range(hops)])[1000:]
    services = [FifoLeftover(ConstantRate(1.0, time=D), x)] * hops
    checked = 0
    for q in (0.9, 0.99, 0.999):
        d = float(np.quantile(dl, q))
        est = exceedance(dl, d)
        low = est.lower_limit(0.99)
        cands = [violation_bound(flow, services, d), fifo_tandem_violation(flow, services, d)]
        if hops == 1:
            cands.append(fifo_martingale_violation(flow, services, d))
        for b in cands:
            assert b is not None and b.epsilon >= low, (d, b, est)
        checked += est.p > 0
    assert checked >= 2


def test_token_bucket_cross_traffic_is_fifo_too():
    flow = ExpIncrements(4.0)
    s = [FifoLeftover(ConstantRate(1.0, time=D), TokenBucket(2.0, 0.3, time=D))] * 2
    b = fifo_tandem_delay(flow, s, 1e-3)
    assert b is not None and b.delay <= tandem_delay(flow, s, 1e-3).delay


def test_baseline_survives_equal_leftover_rates_in_continuous_time():
    """Two equal-rate shared links: at large theta the leftover rate is negative and the slack is
    lost to rounding; the baseline skips those theta instead of failing with a math domain error."""
    flow = PoissonArrival(0.15, 1.0)
    hops = [Leftover(ConstantRate(1.0), PoissonArrival(0.15, 1.0))] * 2
    b = baseline_tandem_delay(flow, hops, 1e-3)
    assert math.isfinite(b.delay) and b.delay >= tandem_delay(flow, hops, 1e-3).delay * 0.5
