"""Data plane: known queueing answers, exactness of the scans, chunking, impairments, loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import federation.dataplane.engine as dp
import federation.dataplane.path as pth
from federation.dataplane.engine import Simulation, max_plus_fifo, simulate
from federation.dataplane.impairments import Impairment, parse_impairment
from federation.dataplane.kernels import fifo_general, scfq
from federation.dataplane.path import Admission, Domain, GilbertElliott, ServiceTimes, Source
from federation.dataplane.telemetry import DelayAccumulator
from federation.dataplane.traffic import CorrelatedMMOOTraffic, PacketSizes, Poisson
from federation.errors import InputError
from federation.specs import parse_hop
from federation.stats import violation_estimate

EXP1 = ServiceTimes("exp", 1.0)


def lindley(A, S):
    """The plain per-packet Lindley recursion D_n = max(A_n, D_{n-1}) + S_n (reference)."""
    D = np.empty(len(A))
    d = -math.inf
    for i, (a, s) in enumerate(zip(A, S)):
        d = max(a, d) + s
        D[i] = d
    return D


def test_public_names():
    import federation.dataplane.impairments as im
    import federation.dataplane.kernels as kn
    import federation.dataplane.telemetry as tm
    import federation.stats as stm

    assert set(pth.__all__) >= {"Domain", "Source", "Admission"}
    assert set(dp.__all__) >= {"Simulation", "simulate", "max_plus_fifo"}
    assert set(kn.__all__) == {"finish_time", "fifo_general", "fifo_batch", "scfq", "gilbert_elliott",
                               "token_bucket_shape", "exp_fill", "tandem_exp", "tandem_poisson",
                               "tandem_scfq_poisson"}
    assert set(im.__all__) >= {"Impairment", "parse_impairment", "capacity_schedule"}
    assert set(tm.__all__) >= {"DomainLog", "Delivered", "Telemetry", "DelayAccumulator"}
    assert "violation_estimate" in stm.__all__
    for mod in (dp, pth, kn, im, tm, stm):
        assert all(hasattr(mod, name) for name in mod.__all__)


@pytest.mark.parametrize("seed", range(5))
def test_max_plus_scan_equals_lindley_exactly(seed):
    """On integer-valued times the scan is exact: bit-identical to the Lindley recursion."""
    rng = np.random.default_rng(seed)
    A = np.cumsum(rng.integers(0, 5, 300)).astype(np.float64)
    S = rng.integers(0, 7, 300).astype(np.float64)
    ref = lindley(A, S)
    assert np.array_equal(max_plus_fifo(A, S.copy(), np.array([0.0, -np.inf])), ref)
    # in pieces, carrying the state
    st = np.array([0.0, -np.inf])
    cut = [0, 17, 18, 150, 300]
    D = np.concatenate([max_plus_fifo(A[a:b], S[a:b].copy(), st) for a, b in zip(cut, cut[1:])])
    assert np.array_equal(D, ref)
    # the compiled FIFO kernel with an unlimited buffer is the same recursion
    assert np.array_equal(fifo_general(A, S, 1.0, np.empty(0), np.ones(1), np.inf, np.inf,
                                       np.array([-np.inf])), ref)


def test_max_plus_scan_matches_lindley_on_random_floats():
    rng = np.random.default_rng(7)
    A = np.cumsum(rng.exponential(1.25, 5000))
    S = rng.exponential(1.0, 5000)
    assert np.allclose(max_plus_fifo(A, S.copy(), np.array([0.0, -np.inf])), lindley(A, S), rtol=1e-12, atol=1e-9)


def test_mm1_tandem_sojourn_is_a_sum_of_exponentials():
    """Three M/M/1 queues (lambda=0.8, mu=1) in tandem: the end-to-end sojourn is Gamma(3, 1/(mu-lambda)).

    Burke's theorem and Reich's independence of successive sojourn times (Kleinrock 1975, §4.8).
    """
    tel = simulate([Domain(1.0, service=EXP1) for _ in range(3)], [Source(0, Poisson(0.8))],
                   packets=1_000_000, seed=1, record_domains=False)
    d = tel.flow(0).delay
    for p in (0.5, 0.9, 0.99):
        assert np.quantile(d, p) == pytest.approx(stats.gamma.ppf(p, 3, scale=5.0), rel=0.04), p
    assert d.mean() == pytest.approx(15.0, rel=0.03)


def test_md1_mean_wait_pollaczek_khinchine():
    """M/D/1, lambda=0.8, D=1: mean wait lambda D^2 / (2 (1 - rho)) = 2 (P-K formula)."""
    tel = simulate([Domain(1.0, latency=0.25)], [Source(0, Poisson(0.8, PacketSizes("fixed", 1.0)))],
                   packets=1_000_000, seed=2)
    wait = tel.flow(0).delay - 1.0 - 0.25
    assert wait.min() >= -1e-9
    assert wait.mean() == pytest.approx(2.0, rel=0.04)
    log = tel.domains[0]
    assert np.allclose(log.sojourn, tel.flow(0).delay)


def _scenario(sched: str, chunk: int, imps=(), seed: int = 3):
    doms = [Domain(10.0, scheduler=sched),
            Domain(10.0, latency=0.1, scheduler=sched, service=ServiceTimes("lognormal", 0.05, 0.5), error=0.01),
            Domain(10.0, scheduler=sched, loss=0.01, gilbert=GilbertElliott(0.01, 0.2), ceiling=3.0)]
    srcs = [Source(t, Poisson(1.0, PacketSizes("exponential", 1.0))) for t in range(4)]
    srcs.append(Source(7, CorrelatedMMOOTraffic(1, 3, 4, n=4, corr=0.5), entry=1, exit=1))
    adm = Admission(None, {t: 2.0 for t in range(4)})
    return Simulation(doms, srcs, packets=4000, seed=seed, chunk_packets=chunk, admission=adm,
                      impairments=imps).run()


IMPS = (Impairment(0, "outage", 100, 120), Impairment(1, "degrade", 200, 400, 0.5),
        Impairment(2, "delay", 50, 60, 0.3), Impairment(1, "spikes", 0, 1000, 0.5, 0.1),
        Impairment(0, "loss", 300, 310, 0.5), Impairment(1, "error", 0, 100, 0.2))


def _same(a, b) -> bool:
    return all(x.equals(y) for x, y in zip(a.domains, b.domains)) and all(
        np.array_equal(a.flow(f).egress, b.flow(f).egress) and np.array_equal(a.flow(f).seq, b.flow(f).seq)
        for f in range(5)) and np.array_equal(a.lost, b.lost) and np.array_equal(a.generated, b.generated)


@pytest.mark.parametrize("sched", ["fifo", "partition", "wfq"])
@pytest.mark.parametrize("imps", [(), IMPS], ids=["plain", "impaired"])
def test_chunked_equals_unchunked(sched, imps):
    whole = _scenario(sched, 1 << 30, imps)
    assert _same(whole, _scenario(sched, 333, imps))
    # conservation: every generated packet is delivered or lost exactly once
    n_deliv = np.bincount(whole.delivered.flow, minlength=5)
    assert np.array_equal(n_deliv + whole.lost, whole.generated)


def test_same_seed_bit_identical_other_seed_differs():
    a, b, c = _scenario("wfq", 1000, IMPS), _scenario("wfq", 1000, IMPS), _scenario("wfq", 1000, IMPS, seed=4)
    assert _same(a, b)
    assert not np.array_equal(a.flow(0).egress, c.flow(0).egress)


def test_wfq_with_one_tenant_is_fifo():
    A = [Domain(1.0, service=EXP1, scheduler="wfq"), Domain(1.0, service=EXP1, scheduler="wfq")]
    B = [Domain(1.0, service=EXP1, buffer=1e300), Domain(1.0, service=EXP1, buffer=1e300)]  # kernel FIFO
    kw = dict(packets=20_000, seed=5, chunk_packets=3000)
    a = simulate(A, [Source(0, Poisson(0.9))], admission=Admission(None, {0: 1.0}), **kw)
    b = simulate(B, [Source(0, Poisson(0.9))], **kw)
    assert np.array_equal(a.flow(0).egress, b.flow(0).egress)


def test_scfq_serves_reserved_shares_under_overload():
    """Two always-backlogged classes with rates 3:1 get service in ratio 3:1 (work conservation)."""
    n = 4000
    A = np.zeros(n)
    w = np.ones(n)
    cls = np.array([0, 1] * (n // 2))
    D, order, _ = scfq(A, w, cls, np.arange(2), np.empty(0), np.array([0.75, 0.25]), 1.0, np.empty(0),
                       np.ones(1), np.inf, np.array([-np.inf, 0.0]), np.zeros(2))
    assert len(order) == n and np.all(np.diff(D[order]) > 0)
    first = order[:2000]
    share0 = np.count_nonzero(cls[first] == 0) / 2000
    assert share0 == pytest.approx(0.75, abs=0.01)
    assert D[order][-1] == pytest.approx(n)  # never idle


def test_wfq_protects_a_reserved_tenant_from_an_overloading_neighbour():
    doms = [Domain(1.0, service=EXP1, scheduler=s) for s in ("wfq",)]
    srcs = [Source(0, Poisson(0.3)), Source(1, Poisson(0.9))]  # total load 1.2: FIFO is unstable
    adm = Admission(None, {0: 0.5, 1: 0.5})
    wfq = simulate(doms, srcs, admission=adm, packets=20_000, seed=6)
    fifo = simulate([Domain(1.0, service=EXP1)], srcs, packets=20_000, seed=6)
    p99_wfq = np.quantile(wfq.flow(0).delay, 0.99)
    assert p99_wfq < np.quantile(fifo.flow(0).delay, 0.99) / 10
    # A dedicated M/M/1 of rate 0.5 at load 0.3 has p99 sojourn ln(100)/0.2 = 23; non-preemptive SCFQ
    # adds a latency of the order of a few maximal service times (Golestani 1994), not more.
    assert p99_wfq < 23.0 + 10.0
    # work conservation: the neighbour gets everything tenant 0 leaves (about 0.7 of the link)
    T = wfq.flow(0).ingress.max()  # arrivals stop here; the link is overloaded until then
    thr = np.count_nonzero(wfq.flow(1).egress <= T) / T
    assert thr == pytest.approx(0.7, rel=0.05)


def test_partition_reservation_is_a_dedicated_server():
    """Under partition, a tenant reserving r sees exactly an M/M/1 of rate r (service=exp scales)."""
    dom = [Domain(2.0, service=ServiceTimes("exp", 0.5), scheduler="partition")]
    tel = simulate(dom, [Source(0, Poisson(0.5)), Source(1, Poisson(0.5))],
                   admission=Admission(None, {0: 1.0, 1: 1.0}), packets=200_000, seed=8)
    d = tel.flow(0).delay
    assert d.mean() == pytest.approx(1 / (1.0 - 0.5), rel=0.05)


def test_finite_buffer_and_ceiling():
    src = [Source(0, Poisson(0.95, PacketSizes("exponential", 1.0)))]
    free = simulate([Domain(1.0)], src, packets=50_000, seed=9)
    buf = simulate([Domain(1.0, buffer=5.0)], src, packets=50_000, seed=9)
    ceil = simulate([Domain(1.0, latency=0.5, ceiling=6.0)], src, packets=50_000, seed=9)
    assert free.lost[0] == 0 and buf.lost[0] > 0 and ceil.lost[0] > 0
    assert buf.flow(0).delay.max() < free.flow(0).delay.max()
    assert ceil.flow(0).delay.max() <= 6.0
    log = ceil.domains[0]
    assert np.all(np.isnan(log.egress[log.lost]))
    assert len(ceil.flow(0)) + ceil.lost[0] == 50_000


def test_bernoulli_and_gilbert_elliott_loss_rates():
    n = 100_000
    src = [Source(0, Poisson(0.5))]
    b = simulate([Domain(1.0, loss=0.02)], src, packets=n, seed=10, record_domains=False)
    ci = violation_estimate(int(b.lost[0]), n).interval(0.999)
    assert ci.low <= 0.02 <= ci.high
    ge = GilbertElliott(0.01, 0.1, 0.0, 0.5)
    g = simulate([Domain(1.0, gilbert=ge)], src, packets=n, seed=10)
    assert g.lost[0] / n == pytest.approx(ge.stationary_loss, rel=0.15)
    # bursts: consecutive losses far more frequent than under independent loss of the same rate
    lost = g.domains[0].lost
    both = np.count_nonzero(lost[1:] & lost[:-1]) / n
    assert both > 5 * (g.lost[0] / n) ** 2


def test_inference_error_and_compute_service_times():
    dom = Domain(1.0, service=ServiceTimes("lognormal", 0.2, 0.8), error=0.05)
    tel = simulate([dom], [Source(0, Poisson(1.0))], packets=50_000, seed=11)
    f = tel.flow(0)
    assert np.count_nonzero(f.error) / len(f) == pytest.approx(0.05, rel=0.1)
    emp = Domain(1.0, service=ServiceTimes("empirical", values=(0.1, 0.3)))
    t2 = simulate([emp], [Source(0, Poisson(0.01))], packets=2000, seed=1)
    log = t2.domains[0]
    soj = log.sojourn
    # every packet's service time (departure minus the later of its arrival and the previous
    # departure: FIFO, Lindley) is one of the empirical values
    start = np.maximum(log.ingress, np.concatenate([[-np.inf], log.egress[:-1]]))
    served = log.egress - start
    assert np.all(np.isclose(served, 0.1) | np.isclose(served, 0.3))
    assert np.isclose(soj, 0.1).any() and np.isclose(soj, 0.3).any()


def test_batching_serves_several_packets_at_once():
    one = Domain(1.0, service=ServiceTimes("exp", 1.0))
    four = Domain(1.0, service=ServiceTimes("exp", 1.0), batch=4)
    src = [Source(0, Poisson(1.5))]  # overload without batching
    a = simulate([four], src, packets=20_000, seed=12, chunk_packets=777)
    b = simulate([four], src, packets=20_000, seed=12)
    assert np.array_equal(a.flow(0).egress, b.flow(0).egress)
    eg = b.domains[0].egress
    _, counts = np.unique(eg, return_counts=True)
    assert counts.max() <= 4 and counts.max() > 1
    assert np.quantile(b.flow(0).delay, 0.5) < np.quantile(simulate([one], src, packets=20_000, seed=12)
                                                          .flow(0).delay, 0.5)


def test_impairments_act_in_their_windows():
    src = [Source(0, Poisson(0.5))]
    dom = [Domain(1.0, service=EXP1)]
    base = simulate(dom, src, packets=5000, seed=13)
    dly = simulate(dom, src, packets=5000, seed=13, impairments=[Impairment(0, "delay", 1000, 2000, 7.0)])
    e0, e1 = base.domains[0].egress, dly.domains[0].egress
    inwin = (e0 >= 1000) & (e0 < 2000)
    assert inwin.any() and np.allclose(e1[inwin] - e0[inwin], 7.0) and np.array_equal(e1[~inwin], e0[~inwin])
    out = simulate(dom, src, packets=5000, seed=13, impairments=[Impairment(0, "outage", 1000, 1500)])
    eg = out.domains[0].egress
    assert not np.any((eg > 1000) & (eg < 1500))
    assert np.any(np.isclose(eg, 1500.0, atol=20))
    deg = simulate(dom, src, packets=5000, seed=13, impairments=[Impairment(0, "degrade", 0, 1e6, 0.75)])
    assert deg.flow(0).delay.mean() > 1.5 * base.flow(0).delay.mean()  # M/M/1 load 0.5 -> 0.67
    los = simulate(dom, src, packets=5000, seed=13, impairments=[Impairment(0, "loss", 0, 2000, 0.5)])
    lg = los.domains[0]
    assert lg.lost[lg.ingress < 2000].mean() == pytest.approx(0.5, abs=0.05) and not lg.lost[lg.ingress >= 2000].any()
    err = simulate(dom, src, packets=5000, seed=13, impairments=[Impairment(0, "error", 0, 2000, 0.3)])
    el = err.domains[0]
    assert el.error[el.ingress < 2000].mean() == pytest.approx(0.3, abs=0.05) and not el.error[el.ingress >= 2000].any()
    spk = simulate(dom, src, packets=5000, seed=13, impairments=[Impairment(0, "spikes", 0, 1e6, 5.0, 0.1)])
    extra = spk.domains[0].egress - base.domains[0].egress
    assert np.mean(extra > 0) == pytest.approx(0.1, abs=0.03) and extra.min() >= 0


def test_admission_keeps_rejected_tenants_out():
    srcs = [Source(0, Poisson(0.5)), Source(1, Poisson(5.0))]
    tel = simulate([Domain(1.0)], srcs, packets=1000, seed=1, admission=Admission(frozenset({0})))
    assert len(tel.generated) == 1 and not np.any(tel.domains[0].tenant == 1)
    assert tel.flow(0).delay.max() < 50  # the overloading tenant never entered


def test_cross_traffic_enters_and_leaves():
    srcs = [Source(0, Poisson(0.3)), Source(1, Poisson(0.5), entry=1, exit=1)]
    tel = simulate([Domain(1.0, service=EXP1) for _ in range(3)], srcs, packets=20_000, seed=14, chunk_packets=500)
    assert len(tel.domains[0]) == tel.generated[0] and not np.any(tel.domains[0].flow == 1)
    assert np.any(tel.domains[1].flow == 1) and not np.any(tel.domains[2].flow == 1)
    assert np.array_equal(tel.flow(1).egress, tel.domains[1].egress[tel.domains[1].flow == 1])
    # hop 2 sees both flows in arrival order
    assert np.all(np.diff(tel.domains[1].ingress) >= 0)


def test_domain_from_hop_spec():
    d = Domain.from_hop(parse_hop("rate=5,latency=0.1,service=exp,prop=0.2,buffer=9,ceiling=3,loss=0.1"), "wfq")
    assert d.service == ServiceTimes("exp", 0.2) and d.delay == pytest.approx(0.3)
    assert (d.buffer, d.ceiling, d.loss, d.scheduler) == (9.0, 3.0, 0.1, "wfq")


def test_validation():
    src = [Source(0, Poisson(0.5))]
    with pytest.raises(InputError, match="rate"):
        Domain(0.0)
    with pytest.raises(InputError, match="batching needs the fifo"):
        Domain(1.0, batch=2, scheduler="wfq")
    with pytest.raises(InputError, match="reservations sum"):
        simulate([Domain(1.0, scheduler="wfq")], src, packets=10, admission=Admission(None, {0: 2.0}))
    with pytest.raises(InputError, match="no reservation"):
        simulate([Domain(1.0, scheduler="partition")], src + [Source(1, Poisson(0.1))], packets=10,
                 admission=Admission(None, {0: 1.0}))
    with pytest.raises(InputError, match="exactly one"):
        Simulation([Domain(1.0)], src)
    with pytest.raises(InputError, match="entry"):
        Simulation([Domain(1.0)], [Source(0, Poisson(1.0), entry=1)], packets=10)
    with pytest.raises(InputError, match="path has 1 domains"):
        Simulation([Domain(1.0)], src, packets=10, impairments=[Impairment(3, "outage", 0, 1)])
    with pytest.raises(InputError, match="no admitted source"):
        Simulation([Domain(1.0)], src, packets=10, admission=Admission(frozenset()))
    with pytest.raises(InputError, match="end"):
        Impairment(0, "outage", 5, 1)
    with pytest.raises(InputError, match="capacity factor"):
        Impairment(0, "degrade", 0, 1, 1.5)
    assert parse_impairment("2:spikes:0:60:0.02:0.01") == Impairment(1, "spikes", 0, 60, 0.02, 0.01)
    with pytest.raises(InputError, match="needs a VALUE"):
        parse_impairment("1:degrade:0:10")


def test_delay_accumulator_streaming_matches_exact():
    rng = np.random.default_rng(3)
    x = rng.gamma(3, 5, 200_000)
    ps = [0.5, 0.99, 0.999, 0.9999]
    exact = DelayAccumulator([40.0])
    small = DelayAccumulator([40.0], expected=len(x), exact_limit=10_000)
    for part in np.array_split(x, 37):
        exact.add(part)
        small.add(part)
    assert exact.exact and not small.exact
    qe, qs = exact.quantiles(ps), small.quantiles(ps)
    for p in ps[1:]:
        assert qs[p] == qe[p]  # the tail stays exact
    assert qs[0.5] == pytest.approx(qe[0.5], rel=2e-4)
    assert exact.exceed == small.exceed == [int(np.count_nonzero(x > 40.0))]
    srt = np.sort(x)
    for p in ps:  # inverted-cdf definition
        assert qe[p] == srt[math.ceil(p * len(x)) - 1]


def test_violation_estimate_is_clopper_pearson():
    v = violation_estimate(7, 1000)
    ci = stats.binomtest(7, 1000).proportion_ci(method="exact")
    assert (v.value, v.interval(0.95).low, v.interval(0.95).high) == (0.007, ci.low, ci.high)
    z = violation_estimate(0, 1000)
    assert z.interval(0.95).low == 0.0 and z.interval(0.95).high == pytest.approx(1 - 0.025 ** (1 / 1000))


def test_delay_accumulator_buffer_and_overflow():
    rng = np.random.default_rng(4)
    x = rng.exponential(1.0, 10_000)
    for expected in (10_000, 4_000, None):  # exact fit, overflow to parts, no hint
        acc = DelayAccumulator(expected=expected)
        for part in np.array_split(x, 7):
            acc.add(part.copy(), copy=False)
        assert acc.exact and acc.n == 10_000
        assert np.array_equal(np.sort(acc.values()), np.sort(x))
        assert acc.quantiles([0.9])[0.9] == np.sort(x)[8999]


def test_delay_and_spike_windows_use_the_server_departure():
    """Both windows refer to the departure from the server, not to each other's effect."""
    dom = [Domain(1.0, service=EXP1)]
    src = [Source(0, Poisson(0.5))]
    base = simulate(dom, src, packets=3000, seed=15).domains[0].egress
    both = simulate(dom, src, packets=3000, seed=15, impairments=[
        Impairment(0, "delay", 0, 1000, 100.0), Impairment(0, "spikes", 1000, 2000, 1.0, 1.0)]).domains[0].egress
    inwin = base < 1000
    assert np.allclose(both[inwin] - base[inwin], 100.0)  # no spike: they left the server before 1000
    spiked = (base >= 1000) & (base < 2000)
    assert np.all(both[spiked] > base[spiked])


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(0, 6), min_size=1, max_size=200), seed=st.integers(0, 2**31),
       cuts=st.lists(st.integers(0, 200), max_size=6))
def test_scan_equals_lindley_property(gaps, seed, cuts):
    rng = np.random.default_rng(seed)
    A = np.cumsum(np.array(gaps, dtype=np.float64))
    S = rng.integers(0, 9, len(A)).astype(np.float64)
    edges = [0, *sorted(c % (len(A) + 1) for c in cuts), len(A)]
    st_ = np.array([0.0, -np.inf])
    D = np.concatenate([max_plus_fifo(A[a:b], S[a:b].copy(), st_) for a, b in zip(edges, edges[1:])])
    assert np.array_equal(D, lindley(A, S))


@settings(max_examples=12, deadline=None)
@given(chunk=st.integers(50, 5000), sched=st.sampled_from(["fifo", "partition", "wfq"]))
def test_chunk_size_never_matters(chunk, sched):
    doms = [Domain(4.0, scheduler=sched, service=EXP1), Domain(4.0, scheduler=sched, buffer=30.0)]
    srcs = [Source(0, Poisson(1.0)), Source(1, CorrelatedMMOOTraffic(1, 2, 2, n=3, corr=1.0)),
            Source(2, Poisson(0.5), entry=1)]
    adm = Admission(None, {0: 1.5, 1: 1.5, 2: 1.0})
    a = Simulation(doms, srcs, packets=1500, seed=chunk % 7, admission=adm, chunk_packets=chunk).run()
    b = Simulation(doms, srcs, packets=1500, seed=chunk % 7, admission=adm, chunk_packets=1 << 30).run()
    assert all(x.equals(y) for x, y in zip(a.domains, b.domains))
