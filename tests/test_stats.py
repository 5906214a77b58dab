"""federation.stats: estimates as objects (value, method, interval at any level), known answers, coverage."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import stats

from federation.errors import InputError
from federation.stats import (
    Estimate,
    Interval,
    QuantileEstimate,
    ViolationEstimate,
    quantile_estimate,
    violation_estimate,
)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_violation_interval_is_clopper_pearson_at_the_level_asked(level):
    """The interval follows its level (the old ``ci95_low`` field was 95 % by name at any level)."""
    v = violation_estimate(7, 1000)
    ref = stats.binomtest(7, 1000).proportion_ci(confidence_level=level, method="exact")
    assert v.interval(level) == Interval(ref.low, ref.high)
    # the beta-quantile form of the Notes
    a = 1.0 - level
    assert v.interval(level).low == pytest.approx(stats.beta.ppf(a / 2, 7, 1000 - 7 + 1), rel=1e-9)
    assert v.interval(level).high == pytest.approx(stats.beta.ppf(1 - a / 2, 7 + 1, 1000 - 7), rel=1e-9)


def test_violation_estimate_fields_and_closed_forms():
    v = violation_estimate(7, 1000)
    assert (v.value, v.count, v.n, v.method) == (0.007, 7, 1000, "clopper-pearson")
    assert isinstance(v, Estimate) and isinstance(v, ViolationEstimate)
    wide, narrow = v.interval(0.999), v.interval(0.9)
    assert wide.low < narrow.low < v.value < narrow.high < wide.high
    # k = 0 and k = n: closed forms (alpha/2)^(1/n)
    n = 500
    assert violation_estimate(0, n).interval(0.99) == Interval(0.0, pytest.approx(1 - 0.005 ** (1 / n)))
    assert violation_estimate(n, n).interval(0.99) == Interval(pytest.approx(0.005 ** (1 / n)), 1.0)
    # no data: nan and the whole unit interval
    z = violation_estimate(0, 0)
    assert math.isnan(z.value) and z.interval(0.95) == Interval(0.0, 1.0)
    assert pickle.loads(pickle.dumps(v)) == v


@pytest.mark.parametrize("bad,match", [
    (lambda: violation_estimate(3, 2), "count"),
    (lambda: violation_estimate(-1, 2), "count"),
    (lambda: violation_estimate(0, -1), "n"),
    (lambda: violation_estimate(1, 10).interval(1.0), "level"),
    (lambda: violation_estimate(1, 10).interval(0.0), "level"),
    (lambda: quantile_estimate(np.arange(5.0), 1.0), "p"),
    (lambda: quantile_estimate(np.arange(5.0), 0.5).interval(95), "level"),
])
def test_bad_input_names_the_field(bad, match):
    with pytest.raises(InputError, match=match):
        bad()


def test_clopper_pearson_covers_at_its_level_for_independent_samples():
    """Coverage on binomial data with a known p (the Notes' assumption): at least the level."""
    rng = np.random.default_rng(11)
    p, n, reps = 0.01, 2000, 400
    ks = rng.binomial(n, p, reps)
    for level in (0.9, 0.99):
        cover = sum(ci.low <= p <= ci.high for ci in (violation_estimate(int(k), n).interval(level) for k in ks))
        # Clopper-Pearson is conservative; allow 2 binomial standard errors of Monte-Carlo noise
        assert cover / reps >= level - 2 * math.sqrt(level * (1 - level) / reps)


def test_quantile_estimate_value_interval_and_degenerate_inputs():
    x = np.sort(np.random.default_rng(0).exponential(size=10_000))
    q = quantile_estimate(x, 0.99)
    assert isinstance(q, QuantileEstimate) and q.method == "order-statistic" and q.n == 10_000
    assert q.value == x[9899]  # ceil(0.99 n)-th order statistic (inverted CDF)
    ci = q.interval(0.95)
    lo = int(stats.binom.ppf(0.025, 10_000, 0.99))
    hi = int(stats.binom.ppf(0.975, 10_000, 0.99)) + 1
    assert ci == Interval(x[lo - 1], x[hi - 1])
    assert q.interval(0.5).high - q.interval(0.5).low < ci.high - ci.low < q.interval(0.999).high - q.interval(
        0.999).low
    # too few samples beyond the quantile: no upper order statistic
    assert quantile_estimate(x[:100], 0.999).interval(0.95).high == math.inf
    empty = quantile_estimate(np.empty(0), 0.5)
    assert math.isnan(empty.value) and all(math.isnan(e) for e in (empty.interval().low, empty.interval().high))
    assert quantile_estimate(x, 0.99, vif=0.2).vif == 1.0  # no deflation below independence
