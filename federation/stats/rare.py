r"""``P(X > d)`` of a rare level of a time series from its samples: the clustering measured at lower levels.

:func:`tail_probability` sees only the indicator ``X_t > d``. With no exceedance (or a handful)
it cannot tell how strongly exceedances cluster, so each of its at most
:data:`~federation.stats.dependent.MAX_BATCHES` batches counts as one sample and the upper 95 %
limit never falls below about ``3.6e-3``, however long the run. With the samples themselves
(delays in time order), :func:`tail_probability_of` measures the clustering where the series has
enough exceedances -- at lower levels ``u < d`` of the same series -- and uses it at ``d``.

* :func:`tail_probability_of` -> :class:`LevelProportionEstimate` (or today's
  :class:`~federation.stats.dependent.BatchProportionEstimate` when ``d`` itself has enough
  effective exceedances, or when no lower level has).
* :func:`reference_levels`: the lower levels and their cluster index.

Notes
-----
**Rare exceedances are a compound Poisson count.** Exceedances of a high level ``d`` come in
clusters (a busy period of a queue) that are rare and nearly independent, so the count in ``n``
samples is :math:`K = \sum_{j=1}^{N} C_j` with :math:`N` about Poisson of mean
:math:`n p / E[C]` and i.i.d. cluster sizes :math:`C_j` (Leadbetter, Lindgren & Rootzén 1983,
*Extremes and Related Properties of Random Sequences*, Springer, ch. 5; Rootzén 1988, "Maxima and
exceedances of stationary Markov chains", Adv. Appl. Prob. 20, 371-390). Then

.. math::

    E K = n p, \qquad \mathrm{Var}\, K = E[N]\, E[C^2] = n p\, \psi, \qquad
    \psi = \frac{E[C^2]}{E[C]} \ \ge\ E[C] = 1/\theta

(:math:`\theta` the extremal index), so :math:`K / \psi` has the mean and the variance of a
binomial count of :math:`n / \psi` trials and the interval is Clopper-Pearson at
:math:`(k/\psi, n/\psi)` (:class:`~federation.stats.dependent.BatchProportionEstimate`'s Notes,
with :math:`\psi` for the VIF). With no exceedance it gives the upper limit
:math:`\approx -\ln(\alpha)\, \psi / n`, above the exact compound-Poisson one
:math:`-\ln(\alpha) / (n \theta)` from :math:`P(K = 0) = P(N = 0) = e^{-n p \theta}`.

**The cluster index from a lower level.** At a level ``u < d`` with enough exceedances, cut the
series into batches long against the correlation time of ``X_t > u`` and take, with their counts
:math:`K_b(u)`,

.. math::

    \hat\psi(u) = \frac{\sum_b K_b(u)^2}{\sum_b K_b(u)}
                = \mathrm{VIF}_m(u)\,(1 - \hat p_u) + m \hat p_u ,

the *uncentred* second moment per exceedance (``m`` samples per batch). It is not the VIF at
``u``: at a low level the clusters of a queue are separated by regenerations (the queue empties,
and cannot exceed ``u`` again for a while), which make the count at ``u`` *less* dispersed than
its clusters -- for 2e7 M/M/1 waiting times the VIF at ``p = 0.1`` is 6.5 at load 0.5 (253 at
0.9) while :math:`\sum C^2 / \sum C` over busy periods is 8.6-9.2 (354-384) at every level from
``p = 0.1`` to ``1e-4``. Adding :math:`m \hat p_u` back (the batch's own mean count) restores
that deficit when the batch is long against the regeneration time; beyond it, it overstates
:math:`\psi` by about :math:`m \hat p_u`. The uncentred moment only grows with the batch length
(:math:`(a + b)^2 \ge a^2 + b^2`), so the batches are the shortest the lag-1 test of
:func:`~federation.stats.dependent.batch_vif` accepts, its search started from batches of 64
samples; and the levels are as high as they can be: walking down from ``d`` over levels with
``sqrt 2`` times as many exceedances each, the first :data:`REFERENCES` with at least
:data:`MIN_EFFECTIVE` effective exceedances (:math:`k_u / \hat\psi(u)`, at most
:data:`MAX_REFERENCE_P` of the samples above ``u``). At ``d`` the inflation is

.. math::

    \max\Big(\max_u \hat\psi(u)\, (t_\nu / z)^2,\ \mathrm{VIF}(d)\Big)

with :math:`\nu` the fewest degrees of freedom among the levels (the Student factor of
:class:`~federation.stats.dependent.BatchProportionEstimate`; batches neither empty nor full,
minus one) and :math:`\mathrm{VIF}(d)` the batch-means point estimate at ``d`` itself when it can
be formed (exceedances in two batches or more): a guard against clusters at ``d`` larger than
those below it that the data shows.

**Why this is conservative for queueing delays, and when it is not.** The assumption is that the
cluster index does not grow with the level: :math:`\psi(d) \le \max_u \psi(u)`. For a FIFO queue
with light-tailed service it holds in the limit: above a high level the waiting time moves as
the free random walk :math:`S_k` of service minus inter-arrival times, so the cluster of
exceedances of ``u`` converges to a law that does not depend on ``u`` (Hooghiemstra & Meester
1996, "Computing the extremal index of special Markov chains and queues", Stoch. Proc. Appl.
65, 171-185, Theorem 1: :math:`\theta = \int P(\sup_{k \ge 1} S_k \le -x)\, \nu(dx)`, with
:math:`\nu` the limit law of the overshoot). For M/M/1 it holds at every level ``u > 0``: the
overshoot at an upcrossing is exponential whatever ``u`` (memoryless service) and the excursion
above ``u`` is the free walk, so the clusters have the same law at every level up to returns
from below ``u``, which change by :math:`O(p)`; Theorem 1 gives :math:`\theta = (1 - \rho)^2`
(mean cluster 4 at load 0.5, 100 at 0.9; measured 3.9 and 89-103 from ``p = 0.1`` to
``1e-4``). It fails when clusters grow with the level: heavy-tailed (subexponential) service or
on-off periods, where a high level is reached by one large job or burst whose excursion lasts a
time proportional to the level (the extremal index tends to 0); long-range dependence; and
non-stationary series (an impairment window that lifts only the highest delays). The
``VIF(d)`` guard catches such growth where ``d`` has exceedances in two batches or more, never
growth hidden beyond the data. Coverage on M/M/1 waiting times at loads 0.5-0.9 and
probabilities 1e-2 .. 1e-5 (``benchmarks/bench_coverage.py --rare``): the one-sided 95 % upper
limit covers at 0.951 or more wherever it used the lower levels; with Pareto(2.5) service
(``--heavy``) it covers 0.855 at the p99.9, as the assumption's failure predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from federation.errors import InputError
from federation.stats.base import ProportionEstimate, _check_level
from federation.stats.dependent import (
    BatchProportionEstimate,
    _chosen_batches,
    _t_over_z_sq,
    tail_probability,
)
from federation.stats.independent import ViolationEstimate

__all__ = [
    "MIN_EFFECTIVE",
    "REFERENCES",
    "MAX_REFERENCE_P",
    "ReferenceLevel",
    "LevelProportionEstimate",
    "reference_levels",
    "tail_probability_of",
]

#: Effective exceedances (``k / psi``) a level needs before its clustering is trusted.
MIN_EFFECTIVE = 50.0
#: Lower levels whose cluster index is maximised over.
REFERENCES = 3
#: The lowest reference level has at most this fraction of the samples above it.
MAX_REFERENCE_P = 0.1
#: Ratio of the exceedance counts of consecutive candidate levels.
_STEP = math.sqrt(2.0)
#: The batch search at a reference level starts from batches of at least this many samples.
_FINE = 64


@dataclass(frozen=True)
class ReferenceLevel:
    """A lower level ``threshold`` of the series and the clustering of its exceedances.

    Attributes
    ----------
    threshold
        The level ``u`` (the unit of the samples).
    count
        Samples above it.
    psi
        :math:`\\sum_b K_b^2 / \\sum_b K_b` over its batches (>= 1): the cluster index.
    batches
        Batches chosen for its indicator.
    dof
        Degrees of freedom of its batch variance (batches neither empty nor full, minus one).
    """

    threshold: float
    count: int
    psi: float
    batches: int
    dof: int

    @property
    def effective(self) -> float:
        """Effective exceedances ``count / psi``."""
        return self.count / self.psi


@dataclass(frozen=True)
class LevelProportionEstimate(BatchProportionEstimate):
    r"""``P(X > d)`` with the variance inflation measured at lower levels of the same series.

    Attributes
    ----------
    count, n
        Exceedances of ``d`` and samples.
    vif
        The largest cluster index :math:`\hat\psi(u)` of the reference levels (>= 1).
    batches
        Batches of the indicator at ``d`` (:func:`~federation.stats.dependent.batch_vif`).
    dof
        The fewest degrees of freedom among the reference levels.
    direct_vif
        The batch-means VIF at ``d`` itself (1 when it cannot be formed).
    references
        The reference levels, highest first.

    Notes
    -----
    The interval is :class:`~federation.stats.dependent.BatchProportionEstimate`'s with the
    inflation :math:`\max(\hat\psi\, (t_\nu/z)^2,\ \mathrm{VIF}(d))` (the module Notes).
    """

    method: ClassVar[str] = "batch-means clopper-pearson, clusters of lower levels"

    direct_vif: float = 1.0
    references: tuple[ReferenceLevel, ...] = ()

    @property
    def n_eff(self) -> float:
        """``n / max(vif, direct_vif)`` (without the level's Student factor)."""
        return self.n / max(self.vif, self.direct_vif) if self.n > 0 else 0.0

    def inflation(self, level: float = 0.95) -> float:
        """``max(vif (t_dof / z)^2, direct_vif)`` at ``level``."""
        return max(self.vif * _t_over_z_sq(_check_level(level), self.dof), self.direct_vif)


def _samples(samples: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise InputError(f"samples must be one-dimensional (a series in time order), got shape {x.shape}")
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
        raise InputError(f"samples must be numbers (delays in time order), got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if np.isnan(x).any():
        raise InputError("samples contain NaN (count a lost packet as inf)")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or math.isnan(threshold):
        raise InputError(f"threshold(={threshold!r}) must be a number (the level d, in the unit of the samples)")
    return x, float(threshold)


def _level(x: np.ndarray, u: float, ones: np.ndarray) -> ReferenceLevel | None:
    e = (x > u).astype(np.float64)
    start = max(1, 2 ** int(math.floor(math.log2(max(len(x) // _FINE, 1)))))
    bc, bs, _ = _chosen_batches(e, ones, start)
    k = float(bc.sum())
    if k <= 0:
        return None
    mixed = int(np.count_nonzero((bc > 0) & (bc < bs)))
    return ReferenceLevel(float(u), int(k), max(1.0, float(bc @ bc) / k), len(bc), min(len(bc) - 1, mixed - 1))


def reference_levels(samples: np.ndarray, threshold: float, *,
                     min_effective: float = MIN_EFFECTIVE) -> tuple[ReferenceLevel, ...]:
    """The levels below ``threshold`` whose clustering :func:`tail_probability_of` uses (module Notes).

    Parameters
    ----------
    samples
        The series in time order (NaN not allowed: count a lost packet as inf).
    threshold
        The level ``d`` (same unit).
    min_effective
        Effective exceedances a level needs, > 0.

    Returns
    -------
    tuple of ReferenceLevel
        At most :data:`REFERENCES` levels, highest first; empty when no level below ``threshold``
        with at most :data:`MAX_REFERENCE_P` of the samples above it has ``min_effective``
        effective exceedances.
    """
    x, d = _samples(samples, threshold)
    if not min_effective > 0:
        raise InputError(f"min_effective(={min_effective!r}) must be > 0")
    n = len(x)
    cmax = int(MAX_REFERENCE_P * n)
    k_d = int(np.count_nonzero(x > d))
    c = max(2 * k_d, int(math.ceil(min_effective)))
    if c > cmax or cmax >= n:
        return ()
    top = np.sort(np.partition(x, n - cmax - 1)[n - cmax - 1:])  # the cmax + 1 largest, ascending
    ones = np.ones(n)
    out: list[ReferenceLevel] = []
    last = math.nan
    while c <= cmax and len(out) < REFERENCES:
        u = float(top[cmax - c])  # c samples lie above it (fewer with ties)
        c = max(c + 1, int(math.ceil(c * _STEP)))
        if not (math.isfinite(u) and u < d) or u == last:
            continue
        last = u
        lv = _level(x, u, ones)
        if lv is not None and lv.dof >= 1 and lv.effective >= min_effective:
            out.append(lv)
    return tuple(out)


def tail_probability_of(samples: np.ndarray, threshold: float, *, independent: bool = False,
                        min_effective: float = MIN_EFFECTIVE) -> ProportionEstimate:
    """``P(X > threshold)`` from the samples in time order, honest for rare and absent exceedances.

    Parameters
    ----------
    samples
        The series in time order (delays, s, or any unit; a lost packet as inf, which exceeds every
        level; a sample that must never count, as -inf). NaN is refused.
    threshold
        The level ``d`` (same unit).
    independent
        True when the samples really are independent (then the exact Clopper-Pearson estimate).
    min_effective
        Effective exceedances (``k / VIF``) above which ``d``'s own batch-means estimate is used,
        and that a lower level needs to lend its clustering (module Notes), > 0.

    Returns
    -------
    ProportionEstimate
        :class:`~federation.stats.independent.ViolationEstimate` (independent); the
        :class:`~federation.stats.dependent.BatchProportionEstimate` of
        :func:`~federation.stats.dependent.tail_probability` when ``d`` has at least
        ``min_effective`` effective exceedances or no lower level qualifies (today's answer); else a
        :class:`LevelProportionEstimate`.

    Raises
    ------
    InputError
        ``samples`` not a one-dimensional numeric array, a NaN in them, ``threshold`` not a number.
    """
    x, d = _samples(samples, threshold)
    if not min_effective > 0:
        raise InputError(f"min_effective(={min_effective!r}) must be > 0")
    e = x > d
    if independent:
        return ViolationEstimate(int(np.count_nonzero(e)), len(e))
    direct = tail_probability(e)
    assert isinstance(direct, BatchProportionEstimate)
    if direct.n == 0 or (direct.dof >= 1 and direct.count / direct.vif >= min_effective):
        return direct
    refs = reference_levels(x, d, min_effective=min_effective)
    if not refs:
        return direct
    return LevelProportionEstimate(
        direct.count, direct.n, max(r.psi for r in refs), direct.batches, min(r.dof for r in refs),
        direct_vif=direct.vif if direct.dof >= 1 else 1.0, references=refs)
