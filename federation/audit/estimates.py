"""The estimators the auditor judges with: a thin seam over :mod:`federation.stats`.

The auditor asks three things of the estimators module (issue 9, item 1):

* ``tail_probability(exceed, independent=False)``: ``P(X > d)`` from exceedance indicators in
  time order, an interval that holds for autocorrelated data;
* ``tail_quantile(samples, p, independent=False)``: a ``p``-quantile with its interval;
* ``judge(estimate, budget, level)``: COMPLIANT / VIOLATING / INCONCLUSIVE.

They are taken from :mod:`federation.stats` when it has them; until it does, the stand-ins below
(batch means for the effective sample size, then Clopper-Pearson at that size) are used, so the
auditor is written against the final names. See docs/design.md section 6.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from federation import stats as _stats
from federation.errors import InputError

__all__ = ["Judgement", "Interval", "tail_probability", "tail_quantile", "judge", "is_conclusive", "check_level"]

Interval = _stats.Interval


class _Estimate(Protocol):
    @property
    def value(self) -> float: ...

    def interval(self, level: float = 0.95) -> Any: ...


class _Judgement(enum.StrEnum):
    COMPLIANT = "COMPLIANT"
    VIOLATING = "VIOLATING"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class _Proportion:
    """Stand-in ``ProportionEstimate``: ``count`` of ``n`` with ``n_eff`` effective samples."""

    count: int
    n: int
    n_eff: float
    method: str = "batch-means-clopper-pearson"

    @property
    def value(self) -> float:
        return self.count / self.n if self.n else math.nan

    def interval(self, level: float = 0.95) -> _stats.Interval:
        if self.n == 0:
            return _stats.Interval(0.0, 1.0)
        from scipy.stats import beta

        a = 1.0 - level
        k = self.value * self.n_eff
        low = 0.0 if k <= 0 else float(beta.ppf(a / 2, k, self.n_eff - k + 1))
        high = 1.0 if k >= self.n_eff else float(beta.ppf(1 - a / 2, k + 1, self.n_eff - k))
        return _stats.Interval(low, high)


def _n_eff(x: np.ndarray) -> float:
    """Effective sample size of a 0/1 series: ``n * p(1-p) / (b * var(batch means))``, <= n."""
    n = len(x)
    p = float(x.mean()) if n else 0.0
    if n < 100 or p in (0.0, 1.0):
        return float(n)
    b = max(1, n // 30)
    m = x[: (n // b) * b].reshape(-1, b).mean(axis=1)
    var = b * float(m.var(ddof=1))
    return float(min(n, n * p * (1 - p) / var)) if var > 0 else float(n)


def _tail_probability(exceed: np.ndarray, independent: bool = False) -> _Proportion:
    x = np.asarray(exceed, dtype=bool)
    n = len(x)
    return _Proportion(int(x.sum()), n, float(n) if independent else _n_eff(x.astype(np.float64)))


def _tail_quantile(samples: np.ndarray, p: float, independent: bool = False) -> _stats.QuantileEstimate:
    s = np.sort(np.asarray(samples, dtype=np.float64))
    vif = 1.0
    if not independent and len(s) >= 100:
        q = np.quantile(s, p)
        vif = max(1.0, len(s) / max(_n_eff((np.asarray(samples) > q).astype(np.float64)), 1.0))
    return _stats.quantile_estimate(s, p, vif=vif)


def _judge(estimate: _Estimate, budget: float, level: float) -> _Judgement:
    iv = estimate.interval(level)
    if iv.high <= budget:
        return _Judgement.COMPLIANT
    if iv.low > budget:
        return _Judgement.VIOLATING
    return _Judgement.INCONCLUSIVE


def _pick(name: str, fallback: Callable[..., Any]) -> Callable[..., Any]:
    return cast(Callable[..., Any], getattr(_stats, name, fallback))


Judgement: type[enum.StrEnum] = getattr(_stats, "Judgement", _Judgement)
#: ``tail_probability(exceed, independent=False) -> ProportionEstimate``
tail_probability = _pick("tail_probability", _tail_probability)
#: ``tail_quantile(samples, p, independent=False) -> QuantileEstimate``
tail_quantile = _pick("tail_quantile", _tail_quantile)
#: ``judge(estimate, budget, level) -> Judgement``
judge = _pick("judge", _judge)


def is_conclusive(estimate: Any, level: float) -> bool:
    """Whether a quantile estimate's interval is finite at ``level``."""
    conclusive = getattr(estimate, "conclusive", None)
    if conclusive is not None:
        return bool(conclusive(level))
    iv = estimate.interval(level)
    return math.isfinite(iv.low) and math.isfinite(iv.high)


def check_level(level: float) -> float:
    """``level`` as a float in (0, 1), else :class:`InputError` naming it."""
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise InputError(f"confidence(={level!r}) must be in (0, 1)")
    return float(level)

