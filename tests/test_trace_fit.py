"""Envelopes fitted from traces: exact token buckets and peak rates, the MGF envelope's validity for
the trace itself, its conservativeness for a source whose exact envelope is known, and the
conservative interpolation of :class:`TabulatedArrival`."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from federation.calculus.arrivals import CorrelatedMMOO, PoissonArrival, TabulatedArrival
from federation.dataplane.traffic import CorrelatedMMOOTraffic, PacketSizes, generate
from federation.errors import InputError, SpecError
from federation.trace import Trace, fit_mgf_envelope, fit_token_bucket, peak_rate, token_bucket_frontier
from federation.trace.fit import empirical_log_mgf


def _random_trace(seed: int, n: int = 60) -> Trace:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 10, n))
    sizes = rng.integers(1, 50, n).astype(float) * 100
    t[5], sizes[4], sizes[5] = t[4], 5000.0, 5000.0  # two of the largest packets at one instant
    return Trace(t, sizes, 10.0)


def _brute_sigma(trace: Trace, rho: float) -> float:
    """max over windows [t_i, t_j] of two loops of the trace of bits - rho (t_j - t_i), O(n^2)."""
    t = np.concatenate([trace.times_s, trace.times_s + trace.duration_s])
    s = np.concatenate([trace.sizes_bits, trace.sizes_bits])
    best = -math.inf
    for i in range(len(t)):
        acc = np.cumsum(s[i:]) - rho * (t[i:] - t[i])
        best = max(best, float(acc.max()))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_bucket_is_the_exact_worst_burst_of_the_looped_trace(seed):
    tr = _random_trace(seed)
    for factor in (1.0, 1.3, 2.0, 10.0):
        rho = factor * tr.mean_rate_bps
        assert fit_token_bucket(tr, rho) == pytest.approx(_brute_sigma(tr, rho), rel=1e-12, abs=1e-6)
    assert fit_token_bucket(tr, 0.9 * tr.mean_rate_bps) == math.inf  # the loop's backlog grows
    frontier = token_bucket_frontier(tr)
    sigmas = [s for s, _ in frontier]
    assert sigmas == sorted(sigmas, reverse=True) and sigmas[-1] >= tr.max_size_bits
    with pytest.raises(InputError, match=r"rho\(=-1\.0\) must be > 0"):
        fit_token_bucket(tr, -1.0)


def test_peak_rate_of_back_to_back_packets_is_the_source_peak():
    # an on-off source sending 1000-bit packets back to back at 1 Mb/s while on
    s = generate(CorrelatedMMOOTraffic(0.2, 0.8, 1e6, 1, 1.0, PacketSizes("fixed", 1000.0)), seed=4, horizon=100.0)
    tr = Trace(s.times, s.sizes, 100.0)
    peak = peak_rate(tr)
    assert 1e6 <= peak <= 1e6 * (1 + 1e-8)  # rounded up, to a relative 1e-9
    assert fit_token_bucket(tr, peak) <= tr.max_size_bits * (1 + 1e-12)
    assert fit_token_bucket(tr, 0.99 * peak) > tr.max_size_bits
    # packets at one instant adding to more than one packet: no finite peak rate
    assert peak_rate(_random_trace(0)) == math.inf


def test_the_envelope_bounds_the_traces_own_log_mgf_at_every_window():
    """The exact log-MGF of the looped trace at a random phase, at window lengths off the fit's
    grid and beyond the period, is never above the fitted ``kappa t + beta``."""
    s = generate(CorrelatedMMOOTraffic(0.1, 0.3, 2e6, 1, 1.0, PacketSizes("fixed", 2000.0)), seed=9, horizon=60.0)
    tr = Trace(s.times, s.sizes, 60.0)
    env = fit_mgf_envelope(tr)
    th = np.asarray(env.theta)
    mid = np.sqrt(th[1:] * th[:-1])  # between grid points: the interpolation
    grid = np.concatenate([th, mid])
    rng = np.random.default_rng(1)
    windows = np.concatenate([rng.uniform(1e-3, 1.0, 20), rng.uniform(1.0, 59.0, 10), [60.0, 97.3, 250.0]])
    for w in windows:
        lm = empirical_log_mgf(tr, grid, w)
        bound = np.array([env.log_mgf_bound(x, w) for x in grid])
        assert np.all(lm <= bound + 1e-9 * np.abs(bound)), (w, np.max(lm - bound))


def test_empirical_log_mgf_is_the_mean_over_phases():
    """Against a direct Riemann sum over a fine phase grid (the exact sum is a limit of it)."""
    tr = _random_trace(3, 40)
    t2 = np.concatenate([tr.times_s, tr.times_s + tr.duration_s])
    c2 = np.concatenate([[0.0], np.cumsum(np.concatenate([tr.sizes_bits, tr.sizes_bits]))])
    u = (np.arange(400_000) + 0.5) * (tr.duration_s / 400_000)
    w = 0.77
    a = c2[np.searchsorted(t2, u + w, side="left")] - c2[np.searchsorted(t2, u, side="left")]
    for theta in (1e-4, 1e-3):
        direct = math.log(np.mean(np.exp(theta * a)))
        assert empirical_log_mgf(tr, [theta], w)[0] == pytest.approx(direct, rel=1e-3)


ON, OFF, PEAK, N, L = 0.2, 0.8, 1e6, 4, 16_000.0
THETAS = np.geomspace(2.5e-9, 1.25e-5, 14)  # effective bandwidths from ~mean to ~peak of the source


@pytest.fixture(scope="module")
def mmoo_fits():
    """Fits of 300 s traces of CorrelatedMMOO traffic (4 sources on one chain, 4 Mb/s while on),
    with the default margins and without them, for four seeds."""
    out = []
    for seed in range(4):
        s = generate(CorrelatedMMOOTraffic(ON, OFF, PEAK, N, 1.0, PacketSizes("fixed", L)), seed=seed, horizon=300.0)
        tr = Trace(s.times, s.sizes, 300.0)
        out.append((fit_mgf_envelope(tr, THETAS), fit_mgf_envelope(tr, THETAS, inflation=0.0, confidence=0.5)))
    return out


def test_the_fitted_envelope_is_never_below_the_true_one(mmoo_fits):
    """The issue's check. What the calculus needs of an arrival is ``log_mgf_bound(theta, t) >=
    log E exp(theta A(s, s+t))`` for every t; the source's exact envelope (Chang's effective
    bandwidth of the two-state chain, ``beta = 0`` in continuous time) gives that with equality as
    t grows, so the fit is at least as conservative as the truth at every t iff, at every theta of
    the grid, ``kappa_fit >= kappa_true`` and ``beta_fit >= beta_true`` (and the linear
    interpolation between grid points then keeps it, kappa_true being convex). That is what is
    checked, for four seeds. Without the margins (no Hölder inflation, the plain mean instead of
    the batch-means upper limit) the same fit falls below the truth: the sample MGF of on-off
    traffic is biased low."""
    true = CorrelatedMMOO(peak=PEAK, on=ON, off=OFF, n=N)
    k_true = np.array([true.kappa(t) for t in THETAS])
    b_true = np.array([true.beta(t) for t in THETAS])
    naive_worst = []
    for env, naive in mmoo_fits:
        k_fit, b_fit = np.array(env.kappa_values), np.array(env.beta_values)
        assert np.all(k_fit >= k_true), np.min(k_fit / k_true)
        assert np.all(b_fit >= b_true)
        mids = np.sqrt(THETAS[1:] * THETAS[:-1])
        assert all(env.kappa(x) >= true.kappa(x) for x in mids)
        # and it is not the peak-rate envelope: well below theta * peak in the middle of the grid
        assert np.min(k_fit[5:9] / (THETAS[5:9] * PEAK * N)) < 0.7
        naive_worst.append(float(np.min(np.array(naive.kappa_values) / k_true)))
    assert min(naive_worst) < 0.99, naive_worst  # the test can fail: the fit without margins does


def test_the_textbook_estimate_is_far_below_the_truth(mmoo_fits):
    """The effective-bandwidth estimate ``log(sample MGF over windows of length w) / w`` at a long
    window w (no line, no margins) underestimates kappa at large theta by a factor ~4: why the fit
    takes slopes and margins."""
    s = generate(CorrelatedMMOOTraffic(ON, OFF, PEAK, N, 1.0, PacketSizes("fixed", L)), seed=0, horizon=300.0)
    tr = Trace(s.times, s.sizes, 300.0)
    true = CorrelatedMMOO(peak=PEAK, on=ON, off=OFF, n=N)
    w = 300.0 / 16
    textbook = empirical_log_mgf(tr, THETAS, w) / w
    assert textbook[-1] < 0.4 * true.kappa(THETAS[-1])


def test_tabulated_interpolation_bounds_a_convex_log_mgf_between_grid_points():
    """Tabulate Poisson's exact kappa on a coarse grid: the interpolated envelope stays above the
    exact kappa between grid points and below the first (the chord through 0), and is inf above."""
    p = PoissonArrival(rate=100.0, mean_size=1000.0, size="exp")
    grid = np.geomspace(1e-5, 9e-4, 6)
    tab = TabulatedArrival(tuple(grid), tuple(p.kappa(t) for t in grid), (0.0,) * 6, p.mean_rate, math.inf,
                           1000.0, 1000.0)
    for x in np.geomspace(1e-7, 9e-4, 200):
        assert tab.kappa(x) >= p.kappa(x) * (1 - 1e-12)
    assert tab.kappa(1e-3) == math.inf and tab.theta_max == grid[-1]
    assert tab.kappa(grid[2]) == p.kappa(grid[2]) and tab.beta(1e-6) == 0.0
    assert pickle.loads(pickle.dumps(tab)) == tab


@pytest.mark.parametrize("change, match", [
    ({"theta": (2e-6, 1e-6)}, "theta must be strictly increasing"),
    ({"kappa_values": (0.1, math.nan)}, "kappa must be finite"),
    ({"kappa_values": (1e-4, 0.5)}, r"kappa\[0\]\(=0\.0001\) must be >= theta\[0\] \* mean_rate_bps"),
    ({"kappa_values": (0.5, 0.6)}, r"kappa\[1\]/theta\[1\].* must be >= kappa\[0\]/theta\[0\]"),
    ({"beta_values": (0.0, -1.0)}, "beta must be finite and >= 0"),
    ({"theta": (1e-6,)}, "must have one length"),
    ({"peak_rate_bps": 10.0}, r"peak_rate_bps\(=10\.0\) must be >= mean_rate_bps"),
])
def test_tabulated_arrival_refuses_what_is_no_envelope(change, match):
    good = {"theta": (1e-6, 2e-6), "kappa_values": (0.2, 0.5), "beta_values": (0.0, 0.1), "mean_rate_bps": 1e5,
            "peak_rate_bps": 1e6, "mean_size_bits": 1e3, "max_size_bits": 1e3}
    TabulatedArrival(**good)
    with pytest.raises(SpecError, match=match) as info:
        TabulatedArrival(**{**good, **change})
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_fit_options_are_checked():
    tr = _random_trace(0)
    for kwargs, match in [({"thetas": [1e-3, 1e-4]}, "strictly increasing"), ({"thetas": [-1.0]}, "> 0"),
                          ({"inflation": -1.0}, r"inflation\(=-1\.0\)"), ({"batches": 1}, r"batches\(=1\)"),
                          ({"confidence": 1.0}, r"confidence\(=1\.0\)")]:
        with pytest.raises(InputError, match=match):
            fit_mgf_envelope(tr, **kwargs)
