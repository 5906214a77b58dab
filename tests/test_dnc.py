"""Deterministic network calculus (``federation.calculus.dnc``) against the data plane: a greedy
token-bucket source through rate-latency domains never exceeds the worst case, and meets it."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from federation.calculus.dnc import RateLatency, convolve, equal_rate, per_domain_delays, worst_case_delay
from federation.dataplane.engine import Simulation
from federation.dataplane.path import Domain, Source
from federation.dataplane.traffic import GreedyTokenBucket, PacketSizes, Poisson, Shaped
from federation.errors import InputError, NoFiniteBound

SIGMA, RHO, L = 2e5, 2e6, 1e4  # bits, bits/s, bits
LAT = [(0.001, 0.002), (0.0005, 0.001), (0.002, 0.0)]  # (latency, propagation) per domain, s
#: Floating point: the simulated delay is a sum of the same terms in another order.
ROUNDING = 1e-12


def _simulate(rates: list[float], traffic) -> tuple[np.ndarray, list[float]]:
    doms = [Domain(r, a, b) for r, (a, b) in zip(rates, LAT)]
    tel = Simulation(doms, [Source(0, traffic)], horizon=2.0, seed=3).run()
    d = tel.delivered
    assert tel.domains is not None
    return d.egress - d.ingress, [float(np.nanmax(x.egress - x.ingress)) for x in tel.domains]


def _hops(rates: list[float]) -> list[RateLatency]:
    return [RateLatency(r, a + b) for r, (a, b) in zip(rates, LAT)]


def test_the_closed_forms():
    hops = _hops([5e6, 4e6, 6e6])
    c = convolve(hops)
    assert c.rate == 4e6 and c.latency == pytest.approx(0.0065)
    # Le Boudec & Thiran Thm 1.4.6 / 1.7.1: sum T + sigma / min r + L / r_1 + L / r_2
    assert worst_case_delay(SIGMA, RHO, hops, L) == pytest.approx(0.0065 + SIGMA / 4e6 + L / 5e6 + L / 4e6)
    assert worst_case_delay(SIGMA, RHO, hops) == pytest.approx(0.0065 + SIGMA / 4e6)  # fluid
    # per domain: the burst grows by rho times the latency (with packetizer) of the domains before
    t1, t2 = 0.003 + L / 5e6, 0.0015 + L / 4e6
    assert per_domain_delays(SIGMA, RHO, hops, L) == pytest.approx(
        (t1 + SIGMA / 5e6, t2 + (SIGMA + RHO * t1) / 4e6, 0.002 + (SIGMA + RHO * (t1 + t2)) / 6e6))
    r = equal_rate(SIGMA, RHO, [0.003, 0.0015, 0.002], 0.03, L)
    assert r == pytest.approx((SIGMA + 2 * L) / (0.03 - 0.0065))
    assert worst_case_delay(SIGMA, RHO, [RateLatency(r, t) for t in (0.003, 0.0015, 0.002)], L) <= 0.03
    assert equal_rate(0.0, RHO, [0.003], 0.03) == RHO  # no burst: the sustained rate


def test_a_greedy_source_meets_the_worst_case_exactly_at_one_common_rate():
    """The burst's last packet waits sigma / r at the first domain and L / r at every later one."""
    rates = [5e6] * 3
    delays, _ = _simulate(rates, GreedyTokenBucket(SIGMA, RHO, L))
    w = worst_case_delay(SIGMA, RHO, _hops(rates), L)
    assert delays.max() <= w * (1 + ROUNDING)
    assert delays.max() >= w * (1 - ROUNDING)  # tight: factor 1


@pytest.mark.parametrize("rates", [[8e6, 4e6, 6e6], [4e6, 9e6, 5e6], [2.5e6, 2.5e6, 20e6]])
def test_the_worst_case_is_never_exceeded_and_tight_within_5_percent_for_a_greedy_source(rates):
    """With unequal rates the bound's packetizer terms are ``L / r_i`` of the first H - 1 domains,
    while the burst's last packet pays its transmission at the last H - 1 (at most ``L / r_1 -
    L / r_H`` apart: 3.5 ms of 94.5 ms on the third path)."""
    delays, per = _simulate(rates, GreedyTokenBucket(SIGMA, RHO, L))
    hops = _hops(rates)
    w = worst_case_delay(SIGMA, RHO, hops, L)
    assert delays.max() <= w * (1 + ROUNDING)
    assert w / delays.max() <= 1.05, (w, delays.max())
    # each domain's own worst case holds for what the domain saw
    for seen, bound in zip(per, per_domain_delays(SIGMA, RHO, hops, L)):
        assert seen <= bound * (1 + ROUNDING)


def test_random_conforming_traffic_stays_within_the_worst_case():
    rates = [3e6, 2.5e6, 4e6]
    traffic = Shaped(Poisson(RHO * 0.95 / L, PacketSizes("fixed", L)), SIGMA, RHO)
    delays, per = _simulate(rates, traffic)
    assert len(delays) > 300
    assert delays.max() <= worst_case_delay(SIGMA, RHO, _hops(rates), L)
    assert all(s <= b for s, b in zip(per, per_domain_delays(SIGMA, RHO, _hops(rates), L)))


def test_bad_input_names_the_field_and_errors_pickle():
    with pytest.raises(InputError, match=r"rate\(=-1"):
        RateLatency(-1.0, 0.0)
    with pytest.raises(InputError, match=r"latency\(=nan"):
        RateLatency(1.0, math.nan)
    with pytest.raises(InputError, match=r"sigma\(=-1"):
        worst_case_delay(-1.0, 1.0, [RateLatency(2.0, 0.0)])
    with pytest.raises(InputError, match="no domains"):
        convolve([])
    with pytest.raises(NoFiniteBound, match="domain 1: rate 1 bits/s < the arrival rate rho 2"):
        worst_case_delay(0.0, 2.0, [RateLatency(3.0, 0.0), RateLatency(1.0, 0.0)])
    with pytest.raises(NoFiniteBound, match="not above the path's latencies") as exc:
        equal_rate(SIGMA, RHO, [0.02, 0.02], 0.03)
    again = pickle.loads(pickle.dumps(exc.value))
    assert type(again) is NoFiniteBound and str(again) == str(exc.value)
