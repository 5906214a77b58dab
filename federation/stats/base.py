"""The result objects every estimator returns: :class:`Interval`, :class:`Estimate`, proportions, verdicts.

:class:`ProportionEstimate` is the base of the estimates of ``P(X > d)`` (independent samples:
:class:`~federation.stats.independent.ViolationEstimate`; a time series:
:class:`~federation.stats.dependent.BatchProportionEstimate`). Its one-sided limits and its
p-value are derived from the two-sided, equal-tailed ``interval(level)``, so a subclass defines
only that. :func:`judge` turns a proportion into a :class:`Judgement` against a budget.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from federation.errors import InputError

__all__ = ["Interval", "Estimate", "ProportionEstimate", "Judgement", "judge"]


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]`` (in the unit of the estimate)."""

    low: float
    high: float


def _binom_ppf(q: float, n: int, p: float) -> int:
    """``scipy.stats.binom.ppf(q, n, p)`` from ``scipy.special`` (0.3 s to import, not 0.8 s).

    The smallest ``k`` in ``[0, n]`` with ``P(Bin(n, p) <= k) >= q`` (``-1`` when ``q = 0``).
    """
    from scipy import special

    if q <= 0.0:
        return -1
    if q >= 1.0 or p >= 1.0:
        return n
    if p <= 0.0:
        return 0
    k = special.bdtrik(q, n, p)
    k = int(math.ceil(k)) if math.isfinite(k) else 0
    k = min(max(k, 0), n)
    while k > 0 and special.bdtr(k - 1, n, p) >= q:
        k -= 1
    while k < n and special.bdtr(k, n, p) < q:
        k += 1
    return k


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise InputError(f"level(={level!r}) must be in (0, 1)")
    return float(level)


class Estimate(ABC):
    """A point estimate with confidence intervals; subclasses are frozen dataclasses.

    ``value`` is the point estimate, ``method`` names the estimator (and so its assumptions),
    ``interval(level)`` is the two-sided interval that covers the true value with probability at
    least ``level`` under the estimator's assumptions, ``n_eff`` the effective number of
    independent samples the estimate rests on (``n`` for independent samples).
    """

    method: ClassVar[str]

    @property
    @abstractmethod
    def value(self) -> float:
        """The point estimate (nan when there are no samples)."""

    @property
    @abstractmethod
    def n_eff(self) -> float:
        """Effective sample size (independent-sample equivalent)."""

    @abstractmethod
    def interval(self, level: float = 0.95) -> Interval:
        """The two-sided confidence interval at ``level`` in (0, 1)."""


class ProportionEstimate(Estimate):
    """An estimate of a probability from ``count`` exceedances among ``n`` samples.

    Notes
    -----
    Subclasses give an equal-tailed two-sided ``interval(level)``: each end misses with
    probability at most ``(1 - level) / 2``. The one-sided limits at ``level`` are therefore the
    ends of the two-sided interval at ``2 level - 1`` (``level`` in (0.5, 1)), and the one-sided
    p-value of ``H0: P <= budget`` is the smallest ``1 - level`` at which the lower limit exceeds
    the budget (found by bisection on the level; exact to 1e-6 relative).
    """

    count: int
    n: int

    def lower_limit(self, level: float = 0.95) -> float:
        """One-sided lower confidence limit at ``level`` in (0.5, 1)."""
        level = _check_level(level)
        if level <= 0.5:
            raise InputError(f"level(={level!r}) of a one-sided limit must be in (0.5, 1)")
        return self.interval(2.0 * level - 1.0).low

    def upper_limit(self, level: float = 0.95) -> float:
        """One-sided upper confidence limit at ``level`` in (0.5, 1)."""
        level = _check_level(level)
        if level <= 0.5:
            raise InputError(f"level(={level!r}) of a one-sided limit must be in (0.5, 1)")
        return self.interval(2.0 * level - 1.0).high

    def p_value_above(self, budget: float) -> float:
        """One-sided p-value of ``H0: P <= budget`` (small: the probability exceeds the budget).

        The smallest ``alpha`` with ``lower_limit(1 - alpha) > budget``; 1 when even the
        50 % limit (the point estimate's side) is not above the budget.
        """
        if not 0.0 <= budget <= 1.0:
            raise InputError(f"budget(={budget!r}) must be a probability in [0, 1]")
        if self.n <= 0 or self.count == 0 or self.lower_limit(0.5 + 1e-9) <= budget:
            return 1.0
        if self.lower_limit(1.0 - 1e-15) > budget:
            return 1e-15
        lo, hi = 1e-15, 0.5  # invariant: lower_limit(1 - hi) > budget >= lower_limit(1 - lo)
        for _ in range(80):  # bisection in log(alpha)
            mid = math.sqrt(lo * hi)
            if self.lower_limit(1.0 - mid) > budget:
                hi = mid
            else:
                lo = mid
            if hi / lo < 1.0 + 1e-6:
                break
        return hi


class Judgement(str, Enum):
    """The verdict on a probability against its budget."""

    COMPLIANT = "COMPLIANT"
    VIOLATING = "VIOLATING"
    INCONCLUSIVE = "INCONCLUSIVE"

    def __str__(self) -> str:
        return self.value


def judge(estimate: ProportionEstimate, budget: float, level: float = 0.95) -> Judgement:
    """``COMPLIANT`` / ``VIOLATING`` / ``INCONCLUSIVE``: the estimate against a probability budget.

    Parameters
    ----------
    estimate
        The estimated probability (e.g. of exceeding a delay budget).
    budget
        The allowed probability ``epsilon`` in [0, 1].
    level
        One-sided confidence level in (0.5, 1) of each of the two claims.

    Notes
    -----
    ``COMPLIANT`` when the one-sided upper limit at ``level`` is below ``budget``,
    ``VIOLATING`` when the one-sided lower limit is above it, else ``INCONCLUSIVE`` (the data
    cannot tell, e.g. too few effective samples). Each wrong verdict has probability at most
    ``1 - level`` under the estimator's assumptions; the two cannot both hold.
    """
    if not 0.0 <= budget <= 1.0 or budget != budget:
        raise InputError(f"budget(={budget!r}) must be a probability in [0, 1]")
    if estimate.n > 0 and estimate.upper_limit(level) < budget:
        return Judgement.COMPLIANT
    if estimate.n > 0 and estimate.lower_limit(level) > budget:
        return Judgement.VIOLATING
    return Judgement.INCONCLUSIVE
