"""Many tests at once: Holm's step-down control of the family-wise error.

One verdict over a grid of delays (and loads) must not be wrong with probability more than its
``alpha`` *as a whole*: :func:`holm` rejects the hypotheses ``P_i <= budget_i`` it can while
keeping the probability of rejecting any true one at most ``alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from federation.errors import InputError

__all__ = ["holm"]


def holm(p_values: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    r"""Holm's step-down procedure: which hypotheses are rejected at family-wise level ``alpha``.

    Parameters
    ----------
    p_values
        One p-value per hypothesis, in [0, 1].
    alpha
        Family-wise error rate in (0, 1).

    Returns
    -------
    numpy.ndarray
        Boolean, True where the hypothesis is rejected.

    Notes
    -----
    Sort the p-values :math:`p_{(1)} \le \dots \le p_{(m)}`; reject :math:`H_{(1)}, \dots,
    H_{(j)}` for the largest :math:`j` with :math:`p_{(i)} \le \alpha / (m - i + 1)` for every
    :math:`i \le j` (Holm 1979, Scand. J. Statist. 6(2), 65-70). The family-wise error is at most
    ``alpha`` under any dependence between the tests (the grid points of one CCDF are strongly
    dependent), and the procedure is uniformly more powerful than Bonferroni.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha(={alpha!r}) must be in (0, 1)")
    if p.size and (np.isnan(p).any() or p.min() < 0.0 or p.max() > 1.0):
        raise InputError("p_values must be in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    ok = p[order] <= alpha / (m - np.arange(m))
    j = m if ok.all() else int(np.argmin(ok))  # the first failure stops the step-down
    out = np.zeros(m, dtype=bool)
    out[order[:j]] = True
    return out
