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
