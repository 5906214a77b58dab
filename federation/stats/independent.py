"""Estimators for independent samples: exact Clopper-Pearson and order-statistic intervals.

* :func:`violation_estimate` -> :class:`ViolationEstimate`: a probability ``P(X > d)`` from an
  exceedance count, exact Clopper-Pearson intervals.
* :func:`quantile_estimate` -> :class:`QuantileEstimate`: a ``p``-quantile from sorted samples,
  distribution-free order-statistic intervals (with a variance-inflation factor for
  autocorrelated samples, which :func:`~federation.stats.dependent.tail_quantile` estimates).

``scipy.stats`` (0.8 s to import) is imported by the Clopper-Pearson interval only; the
order-statistic ranks come from ``scipy.special`` (0.3 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from federation.errors import InputError
from federation.stats.base import Estimate, Interval, ProportionEstimate, _binom_ppf, _check_level

__all__ = ["ViolationEstimate", "violation_estimate", "QuantileEstimate", "quantile_estimate"]


@dataclass(frozen=True)
class ViolationEstimate(ProportionEstimate):
    """``P(X > d)`` estimated from ``count`` exceedances among ``n`` samples.

    Attributes
    ----------
    count
        Samples with ``X > d``, in ``[0, n]``.
    n
        Samples (``0``: no data; ``value`` is nan and every interval is ``[0, 1]``).

    Notes
    -----
    The point estimate is ``count / n``. :meth:`interval` is the exact Clopper-Pearson interval
    (Clopper & Pearson 1934, Biometrika 26(4)), the inversion of two one-sided binomial tests:
    with :math:`\\alpha = 1 - \\mathrm{level}`, :math:`k` = ``count``,

    .. math::

        \\mathrm{low} = B^{-1}(\\alpha/2;\\ k,\\ n - k + 1), \\qquad
        \\mathrm{high} = B^{-1}(1 - \\alpha/2;\\ k + 1,\\ n - k),

    :math:`B^{-1}` the beta quantile, ``low = 0`` when ``k = 0`` and ``high = 1`` when ``k = n``
    (``scipy.stats.binomtest(...).proportion_ci(method="exact")``). Its coverage is at least
    ``level`` **if the samples are independent** (``count`` binomial). Delays of consecutive
    packets in a queue are positively correlated, which makes this interval too narrow; see
    :func:`~federation.stats.dependent.tail_probability` for time series.
    """

    method: ClassVar[str] = "clopper-pearson"

    count: int
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise InputError(f"n(={self.n}) must be >= 0")
        if not 0 <= self.count <= self.n:
            raise InputError(f"count(={self.count}) must be in [0, n(={self.n})]")

    @property
    def n_eff(self) -> float:
        """``n``: the samples are independent."""
        return float(self.n)

    @property
    def value(self) -> float:
        """``count / n`` (nan when ``n = 0``)."""
        return self.count / self.n if self.n > 0 else math.nan

    def interval(self, level: float = 0.95) -> Interval:
        """The exact Clopper-Pearson interval at ``level`` (``[0, 1]`` when ``n = 0``)."""
        level = _check_level(level)
        if self.n <= 0:
            return Interval(0.0, 1.0)
        from scipy import stats

        ci = stats.binomtest(self.count, self.n).proportion_ci(confidence_level=level, method="exact")
        return Interval(float(ci.low), float(ci.high))


def violation_estimate(count: int, n: int) -> ViolationEstimate:
    """The estimate of ``P(X > d)`` from ``count`` exceedances among ``n`` independent samples."""
    return ViolationEstimate(int(count), int(n))


@dataclass(frozen=True, eq=False)
class QuantileEstimate(Estimate):
    """The ``p``-quantile of samples, with distribution-free order-statistic intervals.

    Attributes
    ----------
    sorted_samples
        The samples in ascending order (kept by reference, not copied).
    p
        The probability of the quantile, in (0, 1).
    vif
        Variance inflation factor (>= 1) of the indicator ``X > q_p`` for autocorrelated samples;
        1 for independent samples.

    Notes
    -----
    The estimate is the smallest sample with empirical CDF ``>= p``: :math:`x_{(i)}`,
    :math:`i = \\lceil p n \\rceil` (1-based, clipped to ``[1, n]``). The interval at ``level`` is
    :math:`[x_{(l)}, x_{(u)}]` with :math:`l` and :math:`u - 1` the binomial :math:`(n, p)`
    quantiles at :math:`(1 \\mp \\mathrm{level})/2`: the number of samples below :math:`q_p` is
    binomial, so :math:`P(x_{(l)} \\le q_p \\le x_{(u)}) \\ge \\mathrm{level}` for **independent**
    samples of any continuous distribution (David & Nagaraja 2003, *Order Statistics*, §7.1).
    For autocorrelated samples the ranks are taken from the binomial at the effective size
    :math:`n_e = \\lfloor n / \\mathrm{vif} \\rfloor` and scaled back by :math:`n / n_e`, which
    widens the interval. ``high`` is ``inf`` when the upper rank exceeds ``n`` (too few samples
    beyond the quantile), ``low`` is ``-inf`` when the lower rank is below 1. With no samples
    ``value`` and both ends are nan.
    """

    method: ClassVar[str] = "order-statistic"

    sorted_samples: np.ndarray = field(repr=False)
    p: float
    vif: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.p < 1.0:
            raise InputError(f"p(={self.p!r}) must be in (0, 1)")
        object.__setattr__(self, "vif", max(1.0, float(self.vif)))

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.sorted_samples)

    @property
    def n_eff(self) -> float:
        """``n / vif``: the effective sample size of the indicator ``X > q_p``."""
        return self.n / self.vif

    def conclusive(self, level: float = 0.95) -> bool:
        """True when the interval at ``level`` is finite at both ends (the data support the quantile)."""
        ci = self.interval(level)
        return math.isfinite(ci.low) and math.isfinite(ci.high)

    @property
    def value(self) -> float:
        """The smallest sample with empirical CDF ``>= p`` (nan when empty)."""
        n = self.n
        if n == 0:
            return math.nan
        return float(self.sorted_samples[min(n - 1, max(0, math.ceil(self.p * n) - 1))])

    def interval(self, level: float = 0.95) -> Interval:
        """The order-statistic interval at ``level`` (see Notes)."""
        return self._ranks_interval(_check_level(level), self.vif)

    def _ranks_interval(self, level: float, vif: float) -> Interval:
        n, x, p = self.n, self.sorted_samples, self.p
        if n == 0:
            return Interval(math.nan, math.nan)
        a = (1.0 - level) / 2.0
        ne = max(1, int(n / max(1.0, vif)))
        lo_i = int(math.floor(_binom_ppf(a, ne, p) * n / ne))  # 1-based order statistic l
        hi_i = int(math.ceil((_binom_ppf(1.0 - a, ne, p) + 1) * n / ne))
        lo = float(x[lo_i - 1]) if lo_i >= 1 else -math.inf
        hi = float(x[hi_i - 1]) if hi_i <= n else math.inf
        return Interval(lo, hi)


def quantile_estimate(sorted_samples: np.ndarray, p: float, *, vif: float = 1.0) -> QuantileEstimate:
    """The ``p``-quantile of ``sorted_samples`` (ascending) with its order-statistic intervals.

    ``vif``: the variance inflation factor of the indicator ``X > q_p`` for autocorrelated
    samples (see :class:`QuantileEstimate`).
    """
    return QuantileEstimate(sorted_samples, float(p), vif)
