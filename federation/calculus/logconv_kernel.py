"""The term-by-term log-domain convolution behind :func:`~federation.calculus.logconv.log_convolve`
(numba; imported only when a convolution needs it)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["log_convolve_terms", "SKIP"]

#: Terms below ``e^-SKIP`` of the largest at their index are not exponentiated; each counts as
#: ``e^-SKIP`` (so the sum stays an upper bound).
SKIP = 40.0


@njit(cache=True)
def log_convolve_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``log sum_r exp(x_r + y_{i-r})`` for every ``i``, each scaled by its own largest term."""
    nx, ny = len(x), len(y)
    out = np.full(nx + ny - 1, -np.inf)
    floor = math.exp(-SKIP)
    for i in range(nx + ny - 1):
        lo, hi = max(0, i - ny + 1), min(i, nx - 1)
        m = -np.inf
        for r in range(lo, hi + 1):
            v = x[r] + y[i - r]
            if v > m:
                m = v
        if m == -np.inf:
            continue
        s = 0.0
        for r in range(lo, hi + 1):
            t = x[r] + y[i - r] - m
            if t > -SKIP:
                s += math.exp(t)
            elif t > -np.inf:
                s += floor
        out[i] = m + math.log(s)
    return out
