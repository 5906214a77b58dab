"""federation.stats.pot: peaks over threshold, generalised Pareto fit, extremal index, inconclusive."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from federation.errors import InputError
from federation.stats import PotQuantileEstimate, extremal_index, pot_quantile, tail_quantile


def test_mle_agrees_with_scipy_genpareto():
    x = np.random.default_rng(0).pareto(4.0, 50_000) + 1.0  # Pareto xi = 0.25 above 1
    e = pot_quantile(x, 0.9999, independent=True)
    xi, _, sigma = stats.genpareto.fit(e._y, floc=0)
    assert e.xi == pytest.approx(xi, abs=2e-3) and e.sigma == pytest.approx(sigma, rel=2e-3)
    assert isinstance(e, PotQuantileEstimate) and e.method.startswith("peaks-over-threshold")
    assert e.diagnostic["stable"] and set(e.diagnostic["shapes"]) == {e.exceedances // 2, e.exceedances,
                                                                    2 * e.exceedances}


def test_iid_exponential_p9999_beyond_the_data_covers():
    """p99.99 from 10^4 exponential samples (one expected beyond it): GPD intervals cover, order statistics cannot."""
    truth = -math.log(1e-4)
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(20):
        x = rng.exponential(size=10_000)
        assert not tail_quantile(x, 0.9999, independent=True).conclusive()
        e = pot_quantile(x, 0.9999, independent=True)
        assert e.conclusive()
        ci = e.interval(0.95)
        hits += ci.low <= truth <= ci.high
    assert hits >= 16  # binomial(20, 0.95) >= 16 with probability 0.997


def test_too_far_or_dependent_is_inconclusive():
    x = np.random.default_rng(2).exponential(size=1000)
    far = pot_quantile(x, 0.9999, independent=True)  # zeta / (1 - p) = 950 > 300
    assert not far.supported and not far.conclusive() and far.interval(0.95).high == math.inf
    from scipy.signal import lfilter

    ar = lfilter([1.0], [1.0, -0.99], np.random.default_rng(3).standard_normal(100_000))
    dep = pot_quantile(ar, 0.9999)
    ci = dep.interval(0.95)
    assert not dep.conclusive() and ci.high == math.inf
    assert ci.low == tail_quantile(ar, 0.9999).interval(0.95).low


def test_extremal_index_is_the_inverse_cluster_size():
    rng = np.random.default_rng(4)
    e = rng.random(200_000) < 0.01
    assert extremal_index(e) == pytest.approx(1.0, abs=0.1)
    clustered = np.repeat(rng.random(50_000) < 0.01, 4)  # clusters of 4
    assert extremal_index(clustered) == pytest.approx(0.25, abs=0.05)
    assert extremal_index(np.zeros(10, bool)) == 1.0


@pytest.mark.parametrize("bad,match", [
    (lambda: pot_quantile(np.arange(100.0), 1.5), "p"),
    (lambda: pot_quantile(np.arange(100.0), 0.9, exceedances=5), "exceedances"),
    (lambda: pot_quantile(np.ones((2, 2)), 0.9), "one-dimensional"),
    (lambda: pot_quantile(np.array([1.0, np.nan] * 50), 0.9), "NaN"),
])
def test_bad_input_names_the_field(bad, match):
    with pytest.raises(InputError, match=match):
        bad()
