"""The convolution of two sequences given by their logarithms, with no term lost to underflow.

The bounds of :mod:`~federation.calculus.fifo_recursion` and :mod:`~federation.calculus.fifo_slotted`
sum products of moments that span hundreds of nats along a grid (a moment grows exponentially
with the restart time). Scaled by their maxima and exponentiated, the small ones underflow to 0:
a sum that drops them is too small, and so would be the bound built on it. :func:`log_convolve`
removes a common exponential trend first (which does not change the convolution but its scale),
convolves in floating point where every product then stays far above the underflow threshold, and
otherwise adds the terms in the log domain, each output scaled by its own largest term (compiled).
"""

from __future__ import annotations

import numpy as np

__all__ = ["log_convolve"]

#: The largest sum of the two sequences' ranges (nats) convolved in floating point: every product is
#: then at least ``e^-SAFE_RANGE`` of the largest, far above the smallest normal float (``e^-708``).
SAFE_RANGE = 600.0


def _range(v: np.ndarray) -> float:
    return float(v.max() - v.min())


def log_convolve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log sum_r exp(x_r + y_{i-r})`` for ``i = 0 .. len(x) + len(y) - 2``, like ``log(np.convolve(exp(x),
    exp(y)))`` without overflow or underflow; entries of ``-inf`` (zeros) allowed, none ``+inf`` or NaN.

    Notes
    -----
    For any ``gamma``, ``x_r + y_{i-r} = (x_r - gamma r) + (y_{i-r} - gamma (i - r)) + gamma i``; the
    ``gamma`` used is 0 where the untilted ranges allow it, else the endpoint slope of either
    sequence or their mean, whichever makes the two tilted ranges smallest. When the ranges still
    add up to more than :data:`SAFE_RANGE`, every output is summed term by term, scaled by its
    largest term (:func:`~federation.calculus.logconv_kernel.log_convolve_terms`).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x) + len(y) - 1
    fx, fy = np.isfinite(x), np.isfinite(y)
    if not (fx.any() and fy.any()):
        return np.full(n, -np.inf)
    if _range(x[fx]) + _range(y[fy]) <= SAFE_RANGE:  # the common case: no tilt needed
        return _convolve_scaled(x, y)
    ix, iy = np.flatnonzero(fx), np.flatnonzero(fy)
    slopes = []
    for idx, v in ((ix, x), (iy, y)):
        if idx[-1] > idx[0]:
            slopes.append(float(v[idx[-1]] - v[idx[0]]) / float(idx[-1] - idx[0]))
    if len(slopes) == 2:
        slopes.append(0.5 * (slopes[0] + slopes[1]))
    if not slopes:
        slopes = [0.0]
    rx, ry = np.arange(len(x), dtype=float), np.arange(len(y), dtype=float)

    def spread(gamma: float) -> float:
        return _range(x[ix] - gamma * ix) + _range(y[iy] - gamma * iy)

    gamma = min(slopes, key=spread)
    tx, ty = x - gamma * rx, y - gamma * ry
    trend = gamma * np.arange(n, dtype=float)
    if spread(gamma) <= SAFE_RANGE:
        return _convolve_scaled(tx, ty) + trend
    from federation.calculus.logconv_kernel import log_convolve_terms  # numba: only where needed

    return log_convolve_terms(x, y)


def _convolve_scaled(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log(np.convolve(exp(x), exp(y)))`` through the exponentials scaled by the maxima (the caller
    keeps the ranges within :data:`SAFE_RANGE`)."""
    mx, my = float(x.max()), float(y.max())
    with np.errstate(under="ignore", divide="ignore"):
        return np.log(np.convolve(np.exp(x - mx), np.exp(y - my))) + (mx + my)
