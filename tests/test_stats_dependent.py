"""federation.stats for time series: tail_probability, tail_quantile, judge, batch_vif, holm."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import stats

from federation.errors import InputError
from federation.stats import (
    BatchProportionEstimate,
    Judgement,
    ProportionEstimate,
    QuantileEstimate,
    ViolationEstimate,
    batch_vif,
    holm,
    judge,
    tail_probability,
    tail_quantile,
)


def _ar_indicator(n: int, phi: float, seed: int, thr: float = 2.0) -> tuple[np.ndarray, float]:
    """An AR(1) Gaussian series (unit marginal variance) and its exact P(X > thr)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n) * math.sqrt(1 - phi**2)
    x = lfilter([1.0], [1.0, -phi], e, zi=[rng.standard_normal() * phi])[0]
    return x, float(stats.norm.sf(thr))


def test_independent_is_clopper_pearson_and_order_statistics():
    e = np.zeros(1000, bool)
    e[:7] = True
    est = tail_probability(e, independent=True)
    assert isinstance(est, ViolationEstimate) and isinstance(est, ProportionEstimate)
    assert (est.count, est.n, est.n_eff, est.method) == (7, 1000, 1000.0, "clopper-pearson")
    x = np.random.default_rng(0).exponential(size=10_000)
    q = tail_quantile(x, 0.99, independent=True)
    assert q.method == "order-statistic" and q.n_eff == 10_000 and q.value == np.sort(x)[9899]
    assert q.conclusive(0.95)


def test_iid_series_batch_estimate_is_close_to_the_exact_one():
    rng = np.random.default_rng(3)
    e = rng.random(200_000) < 0.01
    b = tail_probability(e)
    assert isinstance(b, BatchProportionEstimate) and b.method == "batch-means clopper-pearson"
    assert 0.5 < b.vif < 2.0 and b.n_eff <= b.n
    ex = tail_probability(e, independent=True).interval(0.95)
    ci = b.interval(0.95)
    assert ci.low < b.value < ci.high
    assert (ci.high - ci.low) == pytest.approx(ex.high - ex.low, rel=0.5)
    assert pickle.loads(pickle.dumps(b)) == b


def test_correlated_series_widens_the_interval_and_covers():
    """AR(1) with phi = 0.99: VIF of the indicator is large; the batch interval covers the truth."""
    hits = 0
    for seed in range(20):
        x, truth = _ar_indicator(400_000, 0.99, seed)
        est = tail_probability(x > 2.0)
        assert est.vif > 20
        ci = est.interval(0.95)
        hits += ci.low <= truth <= ci.high
    assert hits >= 16  # 95 % nominal; binomial(20, 0.95) >= 16 with probability 0.997


def test_no_exceedance_counts_each_batch_once():
    est = tail_probability(np.zeros(1 << 16, bool))
    assert est.value == 0.0 and est.interval(0.95).low == 0.0
    assert est.n_eff == est.batches == 256
    assert est.upper_limit(0.95) > 1 - 0.05 ** (1 / 256) - 1e-12


def test_judge_three_ways_and_str_enum():
    rng = np.random.default_rng(5)
    e = rng.random(100_000) < 0.01
    est = tail_probability(e, independent=True)
    assert judge(est, 0.02) is Judgement.COMPLIANT
    assert judge(est, 0.005) is Judgement.VIOLATING
    assert judge(est, 0.01) is Judgement.INCONCLUSIVE
    assert judge(tail_probability(e[:50]), 0.01) is Judgement.INCONCLUSIVE
    assert Judgement.COMPLIANT == "COMPLIANT" and str(Judgement.VIOLATING) == "VIOLATING"
    with pytest.raises(InputError, match="budget"):
        judge(est, 1.5)


def test_p_value_agrees_with_the_lower_limit():
    est = tail_probability(np.random.default_rng(1).random(50_000) < 0.01)
    for budget in (0.0085, 0.009, 0.0095):
        pv = est.p_value_above(budget)
        assert 1e-6 < pv < 0.5
        # a larger alpha (lower level) lifts the lower limit above the budget, a smaller one does not
        assert est.lower_limit(1 - pv * 0.99) <= budget <= est.lower_limit(1 - pv * 1.01)
    assert est.p_value_above(0.5) == 1.0


def test_quantile_dependent_is_wider_and_p9999_from_1000_is_inconclusive():
    x, _ = _ar_indicator(200_000, 0.99, 7)
    dep, ind = tail_quantile(x, 0.99), tail_quantile(x, 0.99, independent=True)
    assert isinstance(dep, QuantileEstimate) and dep.method == "batch-means inverted clopper-pearson"
    assert dep.n_eff < ind.n_eff / 10
    w = dep.interval(0.95)
    v = ind.interval(0.95)
    assert w.low <= v.low and w.high >= v.high
    small = tail_quantile(np.random.default_rng(0).exponential(size=1000), 0.9999)
    assert not small.conclusive(0.95) and small.interval(0.95).high == math.inf


@pytest.mark.parametrize("bad,match", [
    (lambda: tail_probability(np.zeros((3, 3), bool)), "one-dimensional"),
    (lambda: tail_probability(np.array([0.5, 1.0])), "boolean"),
    (lambda: tail_quantile(np.arange(5.0), 1.0), "p"),
    (lambda: tail_quantile(np.array([1.0, np.nan]), 0.5), "NaN"),
    (lambda: holm([0.1, 2.0], 0.05), "p_values"),
    (lambda: holm([0.1], 1.0), "alpha"),
    (lambda: batch_vif(np.zeros(3), np.ones(2)), "sizes"),
])
def test_bad_input_names_the_field(bad, match):
    with pytest.raises(InputError, match=match):
        bad()


def test_holm_step_down():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop
    assert holm(p, 0.05).tolist() == [True, False, False, True]
    assert holm(np.array([0.001, 0.002]), 0.05).all()
    assert not holm(np.array([0.9]), 0.05).any() and holm(np.empty(0), 0.05).size == 0


def test_quantile_block_counts_equal_the_indicator_estimate():
    """The inversion's exceedance counts per starting batch (ties included) give batch_vif's own answer."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    x = lfilter([1.0], [1.0, -0.99], rng.standard_normal(300_000))
    x[rng.random(len(x)) < 0.1] = 0.0  # ties
    q = tail_quantile(x, 0.999)
    ranks = q._ranks
    sizes = ranks.sizes
    n = len(x)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    step = ranks._blocks[3]
    for i in (0, 5000, n // 2, n - 1000, n - 3, n - 1, step - 1, step, 7 * step + step // 2, n - step // 3):
        counts = ranks.counts_above(q.sorted_samples, i)
        brute = np.add.reduceat((x > q.sorted_samples[i]).astype(np.int64), edges[:-1])
        assert np.array_equal(counts, brute), i
        fast, slow = batch_vif(counts, sizes), batch_vif(x > q.sorted_samples[i])
        assert int(counts.sum()) == int(np.count_nonzero(x > q.sorted_samples[i]))
        assert (fast.batches, fast.dof) == (slow.batches, slow.dof) and fast.vif == pytest.approx(slow.vif, rel=1e-12)
