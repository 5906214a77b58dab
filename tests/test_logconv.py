"""log_convolve (federation.calculus.logconv): the convolution of sequences given by their logs,
against a term-by-term reference, where scaling by the maxima would lose terms to underflow."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from federation.calculus.logconv import SAFE_RANGE, log_convolve


def _reference(x, y):
    """Each output's terms summed in the log domain (scipy's logsumexp, scaled by that output's largest)."""
    out = np.full(len(x) + len(y) - 1, -np.inf)
    for i in range(len(out)):
        r = np.arange(max(0, i - len(y) + 1), min(i, len(x) - 1) + 1)
        out[i] = logsumexp(x[r] + y[i - r])
    return out


def _naive(x, y):
    """Scaled by the maxima only: what the bounds did before (products below e^-708 become 0)."""
    mx, my = x.max(), y.max()
    with np.errstate(under="ignore", divide="ignore"):
        return np.log(np.convolve(np.exp(x - mx), np.exp(y - my))) + mx + my


RNG = np.random.default_rng(1414)
n = np.arange(300, dtype=float)
CASES = {
    "moderate": (0.3 * n + RNG.normal(0, 1, 300), -0.2 * n + RNG.normal(0, 1, 300)),
    "one trend, wide": (4.0 * n, 4.0 * n + 5.0 * np.sin(n)),  # a common tilt makes it narrow
    "opposite trends": (3.0 * n, -2.5 * n + RNG.normal(0, 3, 300)),  # no tilt helps: term by term
    "curved": (0.02 * (n - 150) ** 2, np.log1p(n)),
    "zeros": (np.where(n % 7 == 0, -np.inf, 2.0 * n), np.where(n < 5, -np.inf, -n)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_it_is_the_term_by_term_sum(name):
    x, y = CASES[name]
    got, ref = log_convolve(x, y), _reference(x, y)
    fin = np.isfinite(ref)
    assert np.array_equal(np.isfinite(got), fin)
    assert np.all(got[fin] >= ref[fin] - 1e-9 * np.maximum(1.0, np.abs(ref[fin])))
    assert np.all(got[fin] <= ref[fin] + 1e-9 * np.maximum(1.0, np.abs(ref[fin])))


def test_scaling_by_the_maxima_alone_loses_terms_where_it_does_not():
    x, y = CASES["opposite trends"]
    assert (x.max() - x.min()) + (y.max() - y.min()) > SAFE_RANGE
    ref, naive = _reference(x, y), _naive(x, y)
    assert np.any(naive < ref - 1.0)  # the naive sum is too small (or -inf) somewhere
    assert np.all(log_convolve(x, y) >= ref - 1e-9 * np.abs(ref))


def test_empty_and_all_zero_inputs():
    assert np.all(log_convolve(np.full(3, -np.inf), np.zeros(2)) == -np.inf)
    assert log_convolve(np.zeros(1), np.zeros(1)).tolist() == [0.0]
    assert np.allclose(log_convolve(np.log([1.0, 2.0]), np.log([3.0, 4.0])), np.log([3.0, 10.0, 8.0]))
