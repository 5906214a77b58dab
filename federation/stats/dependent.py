r"""Tail estimates from a stationary time series (queueing delays): batch means with a chosen batch count.

* :func:`tail_probability` -> a :class:`~federation.stats.base.ProportionEstimate` of
  ``P(X > d)`` from the exceedance indicator in time order;
* :func:`tail_quantile` -> a :class:`~federation.stats.independent.QuantileEstimate` of the
  ``p``-quantile from the samples in time order;
* :func:`batch_vif`: the batches and the variance inflation factor both rest on.

With ``independent=True`` both return the exact estimates of
:mod:`federation.stats.independent` (Clopper-Pearson, order statistics).

Why batch means. Delays of consecutive packets are positively correlated over a busy period, so an
exceedance count has a variance ``VIF`` times the binomial one. Of the methods that estimate it,
non-overlapping batch means need only the indicator series (no model, no regeneration points: the
end-to-end delay of a tandem has none that are frequent), cost one pass, and stream (a count per
block), which the auditor needs. A block bootstrap (``arch``) estimates the same long-run variance
with a tuning parameter of the same kind (the block length) at ``B`` times the cost and a new
dependency; regenerative cycles exist for one FIFO queue only (busy periods), not for the
indicator of a multi-hop path; statsmodels offers HAC (Newey-West) variances, the same estimate
with a kernel instead of batches, at 1-2 s of import. So: batch means, with the batch count chosen
from the data (:func:`batch_vif`), in numpy, with ``scipy.special`` for the quantiles.

Assumptions: the series is stationary (discard the warm-up of a run that starts empty) and its
correlation time is shorter than the chosen batches. Two refinements make rare events honest:
the Student factor's degrees of freedom are those of the batches the event actually occurs in (a
p99.9 count in 512 batches rests on a few dozen clusters, not on 511 degrees of freedom), and with
no exceedance at all each batch counts as one sample (honest, but with at most ``MAX_BATCHES``
batches no upper limit falls below about ``3.6e-3``: where the samples themselves are at hand,
:func:`~federation.stats.rare.tail_probability_of` measures the clustering at lower levels
instead). Where even that is not enough -- a few effective exceedances -- intervals still
undercover a little (``benchmarks/bench_coverage.py``);
``trefed compare`` therefore tests only grid points with at least 10 effective exceedances, and
:func:`~federation.stats.base.judge` answers INCONCLUSIVE whenever the interval straddles the
budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from federation.errors import InputError
from federation.stats.base import Interval, ProportionEstimate, _check_level
from federation.stats.independent import QuantileEstimate, ViolationEstimate

__all__ = [
    "BatchVIF",
    "batch_vif",
    "BatchProportionEstimate",
    "BatchQuantileEstimate",
    "tail_probability",
    "tail_quantile",
    "tail_quantiles",
    "MIN_BATCHES",
    "MAX_BATCHES",
]

#: Fewest batches: below it the batch variance (``b - 1`` degrees of freedom) is too noisy.
MIN_BATCHES = 16
#: Most batches (the start of the search): ``min(MAX_BATCHES, 2^floor(log2 sqrt n))``.
MAX_BATCHES = 1024
#: The lag-1 autocorrelation of the batch counts above which batches are merged, in units of
#: ``1/sqrt(b)`` (its standard error under independence): a one-sided 10 % test.
_R1_Z = 1.2816


@dataclass(frozen=True)
class BatchVIF:
    """The batches chosen for a series and the variance inflation of its mean.

    Attributes
    ----------
    vif
        ``m s_b^2 / (p (1 - p))`` (>= 1), or ``n / batches`` when the series is constant.
    batches
        Number of batches ``b``.
    batch_size
        Mean samples per batch ``m = n / b``.
    lag1
        Lag-1 autocorrelation of the chosen batch counts (nan when constant).
    dof
        Degrees of freedom of the batch variance: ``b - 1``, but at most ``J - 1`` with ``J`` the
        batches that are neither empty nor full (a rare event's variance rests on the few batches
        it occurs in); 0 when the variance could not be estimated.
    """

    vif: float
    batches: int
    batch_size: float
    lag1: float
    dof: int


def _lag1(f: np.ndarray) -> float:
    c = f - f.mean()
    den = float(c @ c)
    return float(c[:-1] @ c[1:]) / den if den > 0 else math.nan


def _start(blocks: int, n: float) -> int:
    """The starting batch count ``min(MAX_BATCHES, blocks, 2^floor(log2 sqrt n))`` (at least 1)."""
    return max(1, min(MAX_BATCHES, blocks, 2 ** int(math.floor(math.log2(math.sqrt(max(n, 1.0)))))))


def _chosen_batches(c: np.ndarray, s: np.ndarray, start: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The batches :func:`batch_vif` chooses: (exceedances per batch, samples per batch, lag-1 correlation).

    ``c`` and ``s`` are float arrays of equal length (counts and sizes of consecutive blocks); the
    search is the one described in :func:`batch_vif`'s Notes, from ``start`` batches (default
    ``min(MAX_BATCHES, 2^floor(log2 sqrt n))``).
    """
    b = _start(len(c), float(s.sum())) if start is None else max(1, min(len(c), start))
    edges = np.linspace(0, len(c), b + 1).astype(np.int64)
    bc, bs = np.add.reduceat(c, edges[:-1]), np.add.reduceat(s, edges[:-1])
    while True:
        r1 = _lag1(bc / bs) if len(bc) > 2 else math.nan
        if not (len(bc) // 2 >= MIN_BATCHES and r1 > _R1_Z / math.sqrt(len(bc))):
            return bc, bs, r1
        if len(bc) % 2:  # an odd last batch joins its neighbour
            bc, bs = np.append(bc[:-2], bc[-2:].sum()), np.append(bs[:-2], bs[-2:].sum())
        bc, bs = bc[0::2] + bc[1::2], bs[0::2] + bs[1::2]


def batch_vif(counts: np.ndarray, sizes: np.ndarray | None = None) -> BatchVIF:
    r"""Choose non-overlapping batches of a series and estimate the variance inflation of its mean.

    Parameters
    ----------
    counts
        The series in time order: the indicator itself (bool or 0/1), or exceedance counts of
        consecutive blocks (then ``sizes``).
    sizes
        Samples per block (default: 1 each).

    Returns
    -------
    BatchVIF

    Notes
    -----
    Start with :math:`b = \min(1024, 2^{\lfloor \log_2 \sqrt n \rfloor})` batches (``b ~ sqrt n``:
    the variance estimate is consistent when both the batch size and the batch count grow), and
    halve ``b`` (merge neighbours) while the lag-1 autocorrelation of the batch fractions exceeds
    :math:`1.28/\sqrt b` (the batches are not yet long against the correlation time; the
    sequential test of Fishman & Yarberry 1997, "An implementation of the batch means method",
    INFORMS J. Computing 9(3), with a one-sided 10 % level) and ``b > 16``. Then

    .. math::

        \mathrm{VIF} = \frac{m\, s_b^2}{p (1 - p)}, \qquad n_{\mathrm{eff}} = n / \max(1, \mathrm{VIF})

    with :math:`s_b^2` the variance of the batch fractions. When no sample (or every sample)
    exceeds, the correlation cannot be estimated: ``VIF = m``, i.e. each batch counts as one
    independent sample (if the batches are independent, ``k = 0`` among ``b`` batches bounds the
    per-batch probability of an exceedance, which is at least ``p``).
    Assumptions: stationarity (discard a warm-up first) and a correlation time shorter than the
    chosen batch; the test above detects a violation of the latter only when it is gross.
    """
    if sizes is None:  # the indicator itself: straight into the starting batches (no float copy of it)
        x = np.asarray(counts).ravel()
        edges = np.linspace(0, len(x), _start(len(x), float(len(x))) + 1).astype(np.int64)
        if not len(x):
            c = s = np.empty(0)
        else:
            if x.dtype == np.bool_:  # positions of the exceedances, counted per batch (fast when rare)
                c = np.diff(np.searchsorted(np.flatnonzero(x), edges)).astype(np.float64)
            else:
                c = np.add.reduceat(x, edges[:-1], dtype=np.float64)
            s = np.diff(edges).astype(np.float64)
    else:
        c = np.asarray(counts, dtype=np.float64).ravel()
        s = np.asarray(sizes, dtype=np.float64).ravel()
    if len(s) != len(c):
        raise InputError(f"sizes(len={len(s)}) must have the length of counts(len={len(c)})")
    if len(c) == 0:
        return BatchVIF(1.0, 0, math.nan, math.nan, 0)
    n, k = float(s.sum()), float(c.sum())
    if not 0.0 < k < n:
        b = _start(len(c), n)
        return BatchVIF(max(1.0, n / b), b, n / b, math.nan, 0)
    bc, bs, r1 = _chosen_batches(c, s)
    b = len(bc)
    p = k / n
    m = n / b
    mixed = int(np.count_nonzero((bc > 0) & (bc < bs)))
    dof = min(b - 1, mixed - 1)
    if dof < 1:  # every exceedance in one batch: no variance estimate; each batch one sample
        return BatchVIF(max(1.0, m), b, m, r1, 0)
    s2 = float(np.var(bc / bs, ddof=1))
    return BatchVIF(max(1.0, m * s2 / (p * (1.0 - p))), b, m, r1, dof)


def _t_over_z_sq(level: float, dof: int) -> float:
    """``(t_dof((1+level)/2) / z((1+level)/2))^2``: the batch variance has ``dof`` degrees of freedom."""
    if dof < 1:
        return 1.0
    from scipy import special

    q = 0.5 + level / 2.0
    return float((special.stdtrit(dof, q) / special.ndtri(q)) ** 2)


@dataclass(frozen=True)
class BatchProportionEstimate(ProportionEstimate):
    r"""``P(X > d)`` from an autocorrelated indicator series: Clopper-Pearson at the batch-means size.

    Attributes
    ----------
    count, n
        Exceedances and samples.
    vif
        Variance inflation factor of the count (:func:`batch_vif`), >= 1.
    batches
        Batches it was estimated from.
    dof
        Degrees of freedom of the batch variance (:class:`BatchVIF`).

    Notes
    -----
    With :math:`\hat p = k/n`, :math:`n_e = n / (\mathrm{VIF}\,(t_\nu/z)^2)` (the Student
    factor at the interval's level because the batch variance is itself estimated, with
    :math:`\nu` = ``dof`` degrees of freedom) and
    :math:`k_e = \hat p\, n_e`, the interval is Clopper-Pearson at :math:`(k_e, n_e)`:

    .. math::

        \mathrm{low} = B^{-1}(\alpha/2;\ k_e,\ n_e - k_e + 1), \qquad
        \mathrm{high} = B^{-1}(1 - \alpha/2;\ k_e + 1,\ n_e - k_e),

    (``low = 0`` when ``k = 0``, ``high = 1`` when ``k = n``). For a count whose distribution is
    close to binomial with ``n_e`` trials (a compound-Poisson count of independent clusters has the
    same first two moments) this keeps the skewness of rare-event counts that a normal batch-means
    interval ignores; it is the interval of ``batch means + Clopper-Pearson``. Coverage is proved in
    ``benchmarks/bench_coverage.py``.
    """

    method: ClassVar[str] = "batch-means clopper-pearson"

    count: int
    n: int
    vif: float
    batches: int
    dof: int = 0

    @property
    def value(self) -> float:
        """``count / n`` (nan when ``n = 0``)."""
        return self.count / self.n if self.n > 0 else math.nan

    @property
    def n_eff(self) -> float:
        """``n / vif`` (without the level's Student factor)."""
        return self.n / self.vif if self.n > 0 else 0.0

    def inflation(self, level: float = 0.95) -> float:
        """The variance inflation at ``level``: ``vif (t_dof / z)^2`` (``n / inflation`` is :math:`n_e`)."""
        return self.vif * _t_over_z_sq(_check_level(level), self.dof)

    def interval(self, level: float = 0.95) -> Interval:
        """Clopper-Pearson at the effective size (Notes); ``[0, 1]`` when ``n = 0``."""
        level = _check_level(level)
        if self.n <= 0:
            return Interval(0.0, 1.0)
        from scipy import special

        ne = max(1.0, self.n / self.inflation(level))
        ke = self.count / self.n * ne
        a = (1.0 - level) / 2.0
        lo = 0.0 if self.count == 0 else float(special.betaincinv(ke, ne - ke + 1.0, a))
        hi = 1.0 if self.count == self.n else float(special.betaincinv(ke + 1.0, ne - ke, 1.0 - a))
        return Interval(lo, hi)


@dataclass(frozen=True, eq=False)
class BatchQuantileEstimate(QuantileEstimate):
    r"""The ``p``-quantile of an autocorrelated series, its interval the inversion of :func:`tail_probability`.

    Attributes
    ----------
    series
        The samples in time order (kept by reference).
    vif, batches, dof
        :func:`batch_vif` of the indicator ``X > value`` (``n_eff = n / vif``).

    Notes
    -----
    With :math:`[L(x), U(x)]` the interval at ``level`` of :math:`P(X > x)` from the indicator
    series ``X_t > x`` (:class:`BatchProportionEstimate`), the interval of the quantile is

    .. math::

        \{x:\ L(x) \le 1 - p \le U(x)\} = [\inf\{x: L(x) \le 1 - p\},\ \sup\{x: U(x) \ge 1 - p\}],

    the values of the quantile that the proportion test does not reject. It holds the true
    quantile :math:`q_p` exactly when the proportion interval at :math:`x = q_p` holds
    :math:`1 - p`, so its coverage is that of :func:`tail_probability` at the quantile (the
    ``P(X > q)`` cells of ``benchmarks/bench_coverage.py``). ``L`` and ``U`` are step functions
    of ``x`` (constant between order statistics) and decrease with ``x`` up to the noise of the
    batch variance; each end is found by bisection over the order statistics (about
    ``2 log2 n`` passes over the series). ``high`` is inf when even beyond the largest sample the
    upper limit is at least ``1 - p``: the data cannot bound the quantile (inconclusive).
    """

    method: ClassVar[str] = "batch-means inverted clopper-pearson"

    series: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    batches: int = 0
    dof: int = 0
    ranks: _RankBlocks | None = field(default=None, repr=False, compare=False)

    @cached_property
    def _ranks(self) -> _RankBlocks:
        return self.ranks if self.ranks is not None else _RankBlocks(self.series)

    def _limits(self, i: int, level: float) -> Interval:
        """The proportion interval of ``P(X > x)`` at the ``i``-th order statistic (0-based; -1: below all)."""
        n = len(self.series)
        counts = self._ranks.counts_above(self.sorted_samples, i)
        k = int(counts.sum())
        v = batch_vif(counts, self._ranks.sizes)
        if v.dof >= 1:  # the larger of the two inflations, the fewer degrees of freedom
            est = BatchProportionEstimate(k, n, max(v.vif, self.vif), v.batches,
                                          min(v.dof, self.dof) if self.dof >= 1 else v.dof)
        else:  # too few exceedances at x to estimate the correlation: that at the point estimate
            est = BatchProportionEstimate(k, n, self.vif, v.batches, self.dof)
        return est.interval(level)

    def interval(self, level: float = 0.95) -> Interval:
        """The inverted proportion interval at ``level`` (Notes); nan when empty."""
        level = _check_level(level)
        n, xs, tail = self.n, self.sorted_samples, 1.0 - self.p
        if n == 0:
            return Interval(math.nan, math.nan)
        # high: sup{x: U(x) >= tail}; U is constant on [xs[i], xs[i+1])
        if self._limits(n - 1, level).high >= tail:
            hi = math.inf
        else:
            a, b = -1, n - 1  # U(a) >= tail (U(-1): all exceed), U(b) < tail
            if self._limits(a, level).high < tail:
                hi = float(xs[0])
            else:
                while b - a > 1:
                    mid = (a + b) // 2
                    if self._limits(mid, level).high >= tail:
                        a = mid
                    else:
                        b = mid
                hi = float(xs[b])
        # low: inf{x: L(x) <= tail}
        if self._limits(-1, level).low <= tail:
            lo = -math.inf
        else:
            a, b = -1, n - 1  # L(a) > tail, L(b) <= tail (nothing exceeds the largest sample)
            while b - a > 1:
                mid = (a + b) // 2
                if self._limits(mid, level).low > tail:
                    a = mid
                else:
                    b = mid
            lo = float(xs[b])
        return Interval(lo, hi)


class _RankBlocks:
    """A series' starting batches of :func:`batch_vif` by rank, for the exceedance counts per batch
    at any order statistic without a pass over the whole series.

    ``block[r]`` is the batch of the ``r``-th smallest sample (an argsort, made on first use and
    shared by the quantile estimates of one series; the order among equal samples does not
    matter). The samples above ``xs[i]`` are those of rank at least ``j = searchsorted(xs, xs[i],
    "right")``, ties included exactly; their count per batch is ``sizes`` minus the count of ranks
    below ``j``, taken from the nearest of :data:`_CHECKPOINTS` prefix counts plus a ``bincount`` of
    at most ``n / (2 * _CHECKPOINTS)`` ranks.
    """

    def __init__(self, series: np.ndarray) -> None:
        self.series = series

    @cached_property
    def _blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(batch of each rank, samples per batch, prefix counts per batch every ``step`` ranks, step)."""
        n = len(self.series)
        b = _start(n, float(n))
        sizes: np.ndarray = np.diff(np.linspace(0, n, b + 1).astype(np.int64))
        block = np.repeat(np.arange(b, dtype=np.int32), sizes)[np.argsort(self.series)]
        k = max(1, min(_CHECKPOINTS, n // 4096))
        step = -(-n // k)
        prefix = np.zeros((k + 1, b), dtype=np.int64)
        for c in range(k):
            prefix[c + 1] = prefix[c] + np.bincount(block[c * step:(c + 1) * step], minlength=b)
        return block, sizes, prefix, step

    @property
    def sizes(self) -> np.ndarray:
        """Samples per starting batch."""
        return self._blocks[1]

    def counts_above(self, xs: np.ndarray, i: int) -> np.ndarray:
        """Samples per batch above the ``i``-th order statistic ``xs[i]`` (``i < 0``: all of them)."""
        block, sizes, prefix, step = self._blocks
        if i < 0:
            return sizes
        j = int(np.searchsorted(xs, xs[i], side="right"))
        c = min(len(prefix) - 1, (j + step // 2) // step)  # the nearest checkpoint
        at = min(c * step, len(xs))
        if j >= at:
            below = prefix[c] + np.bincount(block[at:j], minlength=len(sizes))
        else:
            below = prefix[c] - np.bincount(block[j:at], minlength=len(sizes))
        return sizes - below


#: Prefix counts :class:`_RankBlocks` keeps (at most; one per 4096 samples for shorter series).
_CHECKPOINTS = 512


def _series(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"{what} must be one-dimensional (a series in time order), got shape {a.shape}")
    return a


def tail_probability(exceed: np.ndarray, *, independent: bool = False) -> ProportionEstimate:
    """``P(X > d)`` from the exceedance indicator in time order.

    Parameters
    ----------
    exceed
        Boolean array in time order: True when the sample exceeded ``d`` (a lost packet counts as
        True).
    independent
        True when the samples really are independent (then the exact Clopper-Pearson estimate).

    Returns
    -------
    ProportionEstimate
        :class:`~federation.stats.independent.ViolationEstimate` (independent) or
        :class:`BatchProportionEstimate`: ``value``, ``interval(level)``, ``lower_limit``,
        ``upper_limit``, ``method``, ``n``, ``n_eff``.
    """
    e = _series(exceed, "exceed")
    if e.dtype != np.bool_:
        if e.size and not np.isin(e, (0, 1)).all():
            raise InputError("exceed must be a boolean array (True: the sample exceeded its budget)")
        e = e.astype(bool)
    n, k = len(e), int(np.count_nonzero(e))
    if independent:
        return ViolationEstimate(k, n)
    v = batch_vif(e)
    return BatchProportionEstimate(k, n, v.vif, v.batches, v.dof)


def tail_quantile(samples: np.ndarray, p: float, *, independent: bool = False) -> QuantileEstimate:
    """The ``p``-quantile of a series, with an interval that holds for autocorrelated samples.

    Parameters
    ----------
    samples
        The samples in time order (s, or any unit; NaN not allowed: count lost packets as inf).
    p
        Probability of the quantile in (0, 1).
    independent
        True when the samples are independent (exact order-statistic interval).

    Returns
    -------
    QuantileEstimate
        ``value``, ``interval(level)`` (``high`` is inf when too few effective samples lie beyond
        the quantile: then ``conclusive(level)`` is False), ``method``, ``n_eff``.
    """
    return tail_quantiles(samples, (p,), independent=independent)[float(p)]


def tail_quantiles(samples: np.ndarray, ps: Sequence[float], *,
                   independent: bool = False) -> dict[float, QuantileEstimate]:
    """:func:`tail_quantile` at several probabilities ``ps`` (one sort of the samples)."""
    x = _series(samples, "samples").astype(np.float64, copy=False)
    for p in ps:
        if not 0.0 < p < 1.0:
            raise InputError(f"p(={p!r}) must be in (0, 1)")
    if np.isnan(x).any():
        raise InputError("samples contain NaN (count a lost packet as inf)")
    xs = np.sort(x)
    ranks = _RankBlocks(x)  # shared: one argsort for every quantile's interval, when asked for
    out: dict[float, QuantileEstimate] = {}
    for p in ps:
        p = float(p)
        if independent:
            out[p] = QuantileEstimate(xs, p)
        elif len(x) == 0:
            out[p] = BatchQuantileEstimate(xs, p, 1.0, x, 0, 0)
        else:
            v = batch_vif(x > QuantileEstimate(xs, p).value)
            out[p] = BatchQuantileEstimate(xs, p, v.vif, x, v.batches, v.dof, ranks)
    return out
