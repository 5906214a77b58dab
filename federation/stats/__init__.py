"""Estimates as objects: a point estimate, the method that made it, and intervals at any level.

In the style of ``scipy.stats`` result objects (``binomtest(...).proportion_ci(confidence_level)``):
an estimator returns a frozen result, whose ``value`` is the point estimate, ``interval(level)``
the two-sided confidence :class:`Interval` at the level asked for (never part of a field name),
``method`` the estimator (its assumptions are in that class's Notes) and ``n_eff`` the effective
sample size.

* :mod:`~federation.stats.base`: :class:`Interval`, :class:`Estimate`,
  :class:`ProportionEstimate`, :func:`judge` -> :class:`Judgement`.
* :mod:`~federation.stats.dependent`: :func:`tail_probability`, :func:`tail_quantile` for time
  series (queueing delays): batch means with a chosen batch count, :func:`batch_vif`.
* :mod:`~federation.stats.rare`: :func:`tail_probability_of` from the samples themselves, for rare
  and absent exceedances: the clustering measured at lower levels of the same series
  (:class:`LevelProportionEstimate`).
* :mod:`~federation.stats.independent`: exact Clopper-Pearson (:func:`violation_estimate`) and
  order-statistic (:func:`quantile_estimate`) intervals for independent samples.
* :mod:`~federation.stats.pot`: peaks over threshold (generalised Pareto, extremal index,
  profile likelihood) for quantiles beyond the data: :func:`pot_quantile`.
* :mod:`~federation.stats.multiple`: :func:`holm` for many tests at once.
* :mod:`~federation.stats.batch`: the reference simulators' :class:`BatchMeansEstimate` and
  :func:`batch_lower_limit`.

Pure: numpy and scipy only. The intervals import ``scipy.special`` (0.3 s) when computed, and only
the exact Clopper-Pearson one ``scipy.stats`` (0.8 s), so building an estimate pays for neither.
"""

from federation.stats.base import Estimate, Interval, Judgement, ProportionEstimate, judge
from federation.stats.batch import BatchMeansEstimate, batch_lower_limit
from federation.stats.dependent import (
    BatchProportionEstimate,
    BatchQuantileEstimate,
    BatchVIF,
    batch_vif,
    tail_probability,
    tail_quantile,
    tail_quantiles,
)
from federation.stats.independent import (
    QuantileEstimate,
    ViolationEstimate,
    quantile_estimate,
    violation_estimate,
)
from federation.stats.multiple import holm
from federation.stats.pot import PotQuantileEstimate, extremal_index, pot_quantile
from federation.stats.rare import (
    LevelProportionEstimate,
    ReferenceLevel,
    reference_levels,
    tail_probability_of,
)

__all__ = [
    "Interval",
    "Estimate",
    "ProportionEstimate",
    "Judgement",
    "judge",
    "tail_probability",
    "tail_probability_of",
    "LevelProportionEstimate",
    "ReferenceLevel",
    "reference_levels",
    "tail_quantile",
    "tail_quantiles",
    "batch_vif",
    "BatchVIF",
    "BatchProportionEstimate",
    "BatchQuantileEstimate",
    "ViolationEstimate",
    "violation_estimate",
    "QuantileEstimate",
    "quantile_estimate",
    "holm",
    "pot_quantile",
    "PotQuantileEstimate",
    "extremal_index",
    "BatchMeansEstimate",
    "batch_lower_limit",
]
