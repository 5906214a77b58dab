"""Isolation: under static partition a tenant's delays do not depend on its neighbours (exactly);
under shared FIFO a correlated-burst neighbour inflates them."""

from __future__ import annotations

import numpy as np
import pytest

from federation.dataplane.engine import Simulation
from federation.dataplane.impairments import Impairment
from federation.dataplane.path import Admission, Domain, ServiceTimes, Source
from federation.dataplane.traffic import CorrelatedMMOOTraffic, PacketSizes, Poisson

NEIGHBOURS = {
    "silent-ish": Poisson(0.01),
    "poisson": Poisson(2.0, PacketSizes("exponential", 1.0)),
    # mean 2 pkt/s; all 8 sources switch together: bursts of 8 pkt/s (the link rate) for ~4 s
    "correlated-burst": CorrelatedMMOOTraffic(on=4.0, off=12.0, peak=1.0, n=8, corr=1.0),
    "overload": Poisson(50.0),
}


def _path(scheduler: str) -> list[Domain]:
    return [Domain(8.0, scheduler=scheduler),
            Domain(8.0, latency=0.01, scheduler=scheduler, service=ServiceTimes("lognormal", 0.1, 0.6)),
            Domain(8.0, scheduler=scheduler, buffer=40.0, ceiling=5.0)]


def _run(scheduler: str, neighbour, *, chunk: int = 1 << 16, impaired: bool = False):
    srcs = [Source(0, Poisson(2.0, PacketSizes("exponential", 1.0))), Source(1, neighbour),
            Source(2, Poisson(1.0), entry=1, exit=1)]
    adm = Admission(None, {0: 3.0, 1: 3.0, 2: 1.0})
    imps = [Impairment(1, "degrade", 500, 900, 0.5), Impairment(2, "outage", 1500, 1550)] if impaired else []
    sim = Simulation(_path(scheduler), srcs, packets=8000, seed=21, admission=adm, chunk_packets=chunk,
                     impairments=imps)
    return sim.run()


@pytest.mark.parametrize("impaired", [False, True], ids=["plain", "impaired"])
def test_partition_isolation_is_exact(impaired):
    ref = _run("partition", NEIGHBOURS["silent-ish"], impaired=impaired)
    mine = ref.flow(0)
    for name, model in NEIGHBOURS.items():
        other = _run("partition", model, chunk=1000, impaired=impaired)
        got = other.flow(0)
        assert np.array_equal(got.seq, mine.seq), name
        assert np.array_equal(got.egress, mine.egress), name  # bit-identical
        assert other.lost[0] == ref.lost[0], name
        for a, b in zip(ref.domains, other.domains):  # tenant 0's rows in every domain log
            ma, mb = a.tenant == 0, b.tenant == 0
            assert np.array_equal(a.egress[ma], b.egress[mb], equal_nan=True), name
            assert np.array_equal(a.ingress[ma], b.ingress[mb]), name


def test_fifo_correlated_burst_neighbour_inflates_tail():
    """Same neighbour sources and mean rate; only the correlation knob moves (0 -> 1)."""
    indep = _run("fifo", CorrelatedMMOOTraffic(on=4.0, off=12.0, peak=1.0, n=8, corr=0.0)).flow(0).delay
    calm = _run("fifo", NEIGHBOURS["poisson"]).flow(0).delay
    bursty = _run("fifo", NEIGHBOURS["correlated-burst"]).flow(0).delay
    assert np.quantile(bursty, 0.99) > 2.5 * np.quantile(indep, 0.99)  # measured ~3.6x
    assert np.quantile(bursty, 0.99) > 2.5 * np.quantile(calm, 0.99)
    assert bursty.mean() > 1.5 * indep.mean()  # measured ~1.8x
    # and under partition the very same neighbour changes nothing
    a = _run("partition", NEIGHBOURS["poisson"]).flow(0).delay
    b = _run("partition", NEIGHBOURS["correlated-burst"]).flow(0).delay
    assert np.array_equal(a, b)


def test_wfq_bounds_the_damage_of_a_bursty_neighbour():
    fifo = _run("fifo", NEIGHBOURS["correlated-burst"]).flow(0).delay
    wfq = _run("wfq", NEIGHBOURS["correlated-burst"]).flow(0).delay
    part = _run("partition", NEIGHBOURS["correlated-burst"]).flow(0).delay
    assert np.quantile(wfq, 0.99) < np.quantile(fifo, 0.99)
    # work conservation: WFQ lends idle capacity, so it beats the static partition
    assert wfq.mean() < part.mean()
