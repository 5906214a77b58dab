"""A small fixed-seed version of benchmarks/bench_coverage.py: the 95 % intervals cover (binomial tolerance).

Coverage of a nominal 95 % interval over R replications is binomial(R, 0.95) when the interval is
exact; the check accepts [0.95 - 3 sd, 0.95 + 3 sd] with sd = sqrt(0.95 * 0.05 / R). An interval
for independent samples on these series covers far less (about 0.2 for the M/M/1 P(W > q99)).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_coverage", ROOT / "benchmarks" / "bench_coverage.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_coverage"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _ok(cover: float, reps: int) -> bool:
    sd = math.sqrt(0.95 * 0.05 / reps)
    return 0.95 - 3 * sd <= cover <= 0.95 + 3 * sd


@pytest.fixture(scope="module")
def bench():
    return _bench()


def test_iid_exponential_covers(bench):
    m = bench.models(20_000, 10)[0]
    r = bench.coverage(m, 200, seed=11)
    for tag in ("dependent", "exact"):
        assert _ok(r[tag]["P>q99"], 200) and _ok(r[tag]["q999"], 200), (tag, r[tag])
    assert r["exact"]["q999_inconclusive"] == 0.0


def test_mm1_waiting_times_cover(bench):
    m = bench.models(10, 1_000_000)[3]
    r = bench.coverage(m, 60, seed=12, quantile=False)
    c = r["dependent"]
    assert _ok(c["P>q99"], 60) and _ok(c["P>q999"], 60), c


def test_rare_levels_of_mm1_cover_where_an_independent_interval_does_not(bench):
    """The ``--rare`` cells in small: M/M/1 at load 0.7, 1e5 waiting times, 60 replications.

    The one-sided 95 % upper limit of tail_probability_of must cover at >= 0.95 - 3 sd (binomial)
    at every level 1e-2 .. 1e-5 (1e-4 and 1e-5 with no or few exceedances); Clopper-Pearson on the
    same delays, as if independent, covers far less at 1e-3 and 1e-4.
    """
    rows = {r["p"]: r for r in bench.rare_coverage(0.7, 100_000, 60, seed=13)}
    floor = 0.95 - 3 * math.sqrt(0.95 * 0.05 / 60)
    for p, r in rows.items():
        assert r["upper95"] >= floor and r["upper975"] >= r["upper95"], (p, r)
    assert rows[1e-5]["zero"] > 0.5 and rows[1e-4]["few"] > 0.2
    assert rows[1e-3]["independent95"] < floor - 0.2 and rows[1e-4]["independent95"] < floor - 0.2


def test_the_audit_needs_fewer_packets_than_the_indicator_alone(bench):
    rows = bench.audit_packets((100_000,), 1)
    assert rows[0]["domains_compliant"] == 1.0 and rows[0]["indicator_domains_compliant"] < 1.0
