"""federation.stats.rare: P(X > d) of rare and absent exceedances from the samples of a series."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from federation.errors import InputError
from federation.stats import (
    BatchProportionEstimate,
    Judgement,
    LevelProportionEstimate,
    ViolationEstimate,
    batch_vif,
    judge,
    reference_levels,
    tail_probability,
    tail_probability_of,
)


def mm1_waiting(rng: np.random.Generator, n: int, load: float) -> np.ndarray:
    """``n`` consecutive waiting times of a stationary M/M/1 queue (service rate 1), by Lindley's recursion.

    ``W_k = max(W_0 + X_k, X_k - min_{j <= k} X_j)`` with ``X_k`` the partial sums of service minus
    inter-arrival times; ``W_0`` from the stationary law (0 w.p. ``1 - load``, else Exp(1 - load)).
    """
    w0 = rng.exponential(1 / (1 - load)) if rng.random() < load else 0.0
    x = np.cumsum(rng.exponential(1.0, n) - rng.exponential(1 / load, n))
    x = np.concatenate(([0.0], x[:-1]))
    return np.maximum(w0 + x, x - np.minimum.accumulate(x))


def mm1_level(load: float, p: float) -> float:
    """The level ``d`` with ``P(W > d) = p``: ``P(W > x) = load e^{-(1 - load) x}`` (Kleinrock 1975, eq. 3.30)."""
    return math.log(load / p) / (1 - load)


def test_no_exceedance_in_a_long_run_is_compliant_where_the_indicator_alone_is_not():
    w = mm1_waiting(np.random.default_rng(1), 400_000, 0.5)
    d = float(w.max())  # no exceedance; P(W > d) is about 1 / n, far below the budget 1e-3
    old = tail_probability(w > d)
    new = tail_probability_of(w, d)
    assert old.count == new.count == 0
    assert old.upper_limit(0.95) > 2e-3 and judge(old, 1e-3) is Judgement.INCONCLUSIVE  # the defect
    assert isinstance(new, LevelProportionEstimate) and len(new.references) == 3
    assert new.upper_limit(0.95) < 1e-4 and judge(new, 1e-3) is Judgement.COMPLIANT
    assert new.interval(0.95).low == 0.0 and new.value == 0.0
    # the cluster index is at least the mean cluster size 1/theta = (1 - load)^-2 = 4, and it is
    # sum C^2 / sum C over the busy periods' exceedances (each busy period one cluster) within 15 %
    busy = np.cumsum(w == 0)
    for r in new.references:
        assert r.threshold < d and r.effective >= 50 and r.dof >= 1
        c = np.bincount(busy[w > r.threshold]).astype(np.float64)
        assert r.psi >= 4.0 and r.psi == pytest.approx(float(c @ c) / c.sum(), rel=0.15)
    assert batch_vif(w > d).vif == 400_000 / 512  # the indicator alone: each of 512 batches one sample


def test_enough_exceedances_at_d_is_todays_estimate():
    w = mm1_waiting(np.random.default_rng(2), 200_000, 0.5)
    d = mm1_level(0.5, 1e-2)
    new = tail_probability_of(w, d)
    assert type(new) is BatchProportionEstimate and new == tail_probability(w > d)


def test_no_lower_level_with_enough_exceedances_falls_back_to_todays_estimate():
    w = mm1_waiting(np.random.default_rng(3), 2_000, 0.9)  # 200 samples above the lowest level allowed
    d = mm1_level(0.9, 1e-3)
    assert reference_levels(w, d) == ()
    assert tail_probability_of(w, d) == tail_probability(w > d)
    assert tail_probability_of(np.empty(0), 1.0) == tail_probability(np.empty(0, bool))


def test_independent_is_exact_clopper_pearson():
    x = np.random.default_rng(4).exponential(size=10_000)
    e = tail_probability_of(x, 5.0, independent=True)
    assert isinstance(e, ViolationEstimate) and (e.count, e.n) == (int((x > 5.0).sum()), 10_000)


def test_the_inflation_is_the_larger_of_the_borrowed_one_and_the_one_at_d():
    e = LevelProportionEstimate(3, 100_000, 10.0, 256, 200, direct_vif=500.0)
    assert e.inflation(0.95) == 500.0 and e.n_eff == 200.0
    f = LevelProportionEstimate(3, 100_000, 10.0, 256, 200, direct_vif=2.0)
    assert 10.0 < f.inflation(0.95) < 10.5 and f.n_eff == 10_000.0
    assert e.upper_limit(0.95) > f.upper_limit(0.95)
    assert pickle.loads(pickle.dumps(e)) == e


def test_a_lost_packet_exceeds_every_level_and_minus_inf_none():
    w = mm1_waiting(np.random.default_rng(5), 100_000, 0.5)
    w[[200, 50_000]] = math.inf
    w[:100] = -math.inf
    e = tail_probability_of(w, 1e9)
    assert e.count == 2
    assert all(math.isfinite(r.threshold) for r in getattr(e, "references", ()))


@pytest.mark.parametrize("samples, threshold, field", [
    (np.array([1.0, math.nan]), 1.0, "NaN"),
    (np.ones((3, 2)), 1.0, "one-dimensional"),
    (np.array([True, False]), 0.5, "numbers"),
    (np.array(["a", "b"]), 0.5, "numbers"),
    (np.ones(10), math.nan, "threshold"),
    (np.ones(10), "5", "threshold"),
])
def test_bad_input_names_the_field(samples, threshold, field):
    with pytest.raises(InputError, match=field):
        tail_probability_of(samples, threshold)


def test_min_effective_must_be_positive():
    with pytest.raises(InputError, match="min_effective"):
        tail_probability_of(np.ones(10), 0.5, min_effective=0)


def test_upper_limit_covers_on_mm1_where_an_independent_interval_does_not():
    """A bounded coverage check (about 2 s): M/M/1 waiting times at load 0.9, the level of P(W > d) = 1e-3.

    2e5 waiting times hold about 200 exceedances in two clusters of mean size 100: the one-sided
    95 % upper limit must cover in at least 0.95 - 3 sd of 80 replications (binomial); Clopper-Pearson
    on the same data, which treats the delays as independent, covers about half the time.
    """
    rng = np.random.default_rng(2026)
    d, p, reps = mm1_level(0.9, 1e-3), 1e-3, 80
    covered = independent = borrowed = 0
    for _ in range(reps):
        w = mm1_waiting(rng, 200_000, 0.9)
        e = tail_probability_of(w, d)
        borrowed += isinstance(e, LevelProportionEstimate)
        covered += e.upper_limit(0.95) >= p
        independent += tail_probability_of(w, d, independent=True).upper_limit(0.95) >= p
    floor = 0.95 - 3 * math.sqrt(0.95 * 0.05 / reps)
    assert covered / reps >= floor
    assert independent / reps < floor - 0.2  # the test tells an independent interval apart
    assert borrowed >= reps // 4
