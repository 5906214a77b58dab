"""The reference simulators' batch-means proportion and the batch-corrected lower limit.

:class:`BatchMeansEstimate` is what the reference simulators of ``federation.calculus.reference``
report; :func:`batch_lower_limit` is the one-sided limit from given batch counts. The estimators
of :mod:`federation.stats.dependent` choose the batches themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from federation.stats.base import Estimate, Interval, _check_level

__all__ = ["BatchMeansEstimate", "batch_lower_limit"]


@dataclass(frozen=True)
class BatchMeansEstimate(Estimate):
    r"""A proportion estimated from a stationary, autocorrelated series, with its batch-means error.

    Attributes
    ----------
    p
        The point estimate (the weighted fraction over the whole series), in [0, 1].
    stderr
        Its standard error from the spread of the batch fractions, >= 0.
    n
        Samples (slots, packets or segments) in the series.

    Notes
    -----
    The series is cut into ``B`` contiguous batches with fractions :math:`\hat p_b`;
    :math:`\mathrm{se} = \mathrm{sd}(\hat p_b) / \sqrt{B}`. When the batches are long against
    the correlation time their fractions are nearly independent and normal, and

    .. math::

        \hat p \pm z_{(1+\mathrm{level})/2}\, \mathrm{se}

    is the two-sided interval (clipped to [0, 1]); :meth:`lower_limit` is the one-sided
    :math:`\hat p - z_{\mathrm{level}}\, \mathrm{se}`. The normal quantile (not Student's t with
    ``B - 1`` degrees of freedom) is a large-``B`` approximation: with the reference simulators'
    ``B = 50`` the 99 % quantile is 2.33 instead of 2.40. With no exceedance seen, ``se = 0`` and
    the interval is the point ``0``: an estimate, not a bound, for rare events.
    """

    method: ClassVar[str] = "batch-means"

    p: float
    stderr: float
    n: int

    @property
    def n_eff(self) -> float:
        """``p (1 - p) / se^2``: the independent-sample size with the same standard error (``n`` if se = 0)."""
        if self.stderr <= 0 or not 0.0 < self.p < 1.0:
            return float(self.n)
        return min(float(self.n), self.p * (1.0 - self.p) / self.stderr**2)

    @property
    def value(self) -> float:
        """The point estimate ``p``."""
        return self.p

    def interval(self, level: float = 0.95) -> Interval:
        """The two-sided normal interval ``p +- z se`` at ``level``, clipped to [0, 1]."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + _check_level(level) / 2.0)
        return Interval(max(0.0, self.p - z * self.stderr), min(1.0, self.p + z * self.stderr))

    def lower_limit(self, level: float = 0.99) -> float:
        """The one-sided lower confidence limit ``max(0, p - z_level se)`` at ``level``."""
        from statistics import NormalDist

        return max(0.0, self.p - NormalDist().inv_cdf(_check_level(level)) * self.stderr)


def batch_lower_limit(indicator_counts: np.ndarray, batch_sizes: np.ndarray, level: float) -> tuple[float, float]:
    """One-sided lower confidence limit of a proportion from autocorrelated samples.

    Parameters
    ----------
    indicator_counts
        ``indicator_counts[b]``: exceedances among the ``batch_sizes[b]`` contiguous samples of
        batch ``b``.
    batch_sizes
        Samples per batch (> 0).
    level
        One-sided confidence level in (0, 1).

    Returns
    -------
    (lower, n_eff)
        The lower limit (``0`` when there is no exceedance) and the effective sample size.

    Notes
    -----
    With ``n`` samples, ``k`` exceedances, ``p = k / n``, ``B`` batches of mean size ``m`` and
    ``s_b^2`` the variance of the batch fractions, the variance inflation factor of the indicator
    is

    .. math::

        \\mathrm{VIF} = \\left(\\frac{t_{B-1}(\\mathrm{level})}{z(\\mathrm{level})}\\right)^2
                        \\frac{m\\, s_b^2}{p (1 - p)}

    (batch means; the Student-t factor because the batch variance is itself estimated from
    ``B`` batches), ``n_eff = n / max(1, VIF)``, and the limit is the one-sided Clopper-Pearson
    one at ``(p n_eff, n_eff)``: :math:`B^{-1}(1 - \\mathrm{level};\\ p n_e,\\ n_e - p n_e + 1)`.
    Valid when the batches are long against the correlation time (their means nearly
    independent).
    """
    from scipy import stats

    n = float(batch_sizes.sum())
    k = float(indicator_counts.sum())
    if n <= 0 or k <= 0:
        return 0.0, n
    p = k / n
    if p >= 1.0:
        return float((1.0 - level) ** (1.0 / n)), n
    frac = indicator_counts / batch_sizes
    b = len(batch_sizes)
    m = n / b
    s2 = float(np.var(frac, ddof=1)) if b > 1 else p * (1 - p) / m
    # (t_{b-1} / z)^2: the batch variance is itself estimated from b batches (Student t)
    tz = (stats.t.ppf(level, max(b - 1, 1)) / stats.norm.ppf(level)) ** 2 if b > 1 else 1.0
    vif = max(1.0, tz * m * s2 / (p * (1.0 - p)))
    neff = n / vif
    lo = float(stats.beta.ppf(1.0 - level, p * neff, neff - p * neff + 1.0))
    return (lo if math.isfinite(lo) else 0.0), neff
