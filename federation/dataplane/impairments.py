"""Impairments the runner injects into a domain over a time window.

An :class:`Impairment` acts on one domain (0-based index along the path; every message counts
domains from 1, as ``--impair`` and the rest of the command line do) during ``[start, end)``
seconds of simulated time:

``delay``     extra fixed delay ``value`` s for packets leaving the domain's server in the window
``spikes``    each packet leaving in the window is delayed, with probability ``prob``, by an extra
              exponential delay of mean ``value`` s
``degrade``   the domain's capacity is multiplied by ``value`` in (0, 1] during the window
``outage``    capacity 0 during the window (queued work waits for the end)
``loss``      loss probability raised to ``value`` for packets arriving in the window
``error``     inference error probability raised to ``value`` for packets arriving in the window

Overlapping windows combine: delays add, capacity factors multiply, probabilities take the max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from federation.errors import InputError

__all__ = [
    "ImpairmentKind",
    "IMPAIRMENT_KINDS",
    "Impairment",
    "capacity_schedule",
    "window_max",
    "window_sum",
    "parse_impairment",
]

ImpairmentKind = Literal["delay", "spikes", "degrade", "outage", "loss", "error"]
IMPAIRMENT_KINDS: tuple[str, ...] = ("delay", "spikes", "degrade", "outage", "loss", "error")


@dataclass(frozen=True)
class Impairment:
    """One impairment on ``domain`` during ``[start, end)`` s (see the module docstring)."""

    domain: int
    kind: ImpairmentKind
    start: float
    end: float
    value: float = 0.0
    prob: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in IMPAIRMENT_KINDS:
            raise InputError(f"impairment kind(={self.kind!r}) must be one of {'|'.join(IMPAIRMENT_KINDS)}")
        if self.domain < 0 or int(self.domain) != self.domain:
            raise InputError(f"impairment {self.kind!r}: domain index(={self.domain}) must be a whole number >= 0 "
                             "(0-based here; messages count domains from 1)")
        what = f"impairment {self.kind!r} on domain {self.domain + 1}"  # counted from 1, as on the command line
        if not (math.isfinite(self.start) and math.isfinite(self.end) and self.start >= 0):
            raise InputError(f"{what}: window [{self.start:g}, {self.end:g}) must be finite, start >= 0")
        if not self.end > self.start:
            raise InputError(f"{what}: end(={self.end:g}) must be > start(={self.start:g})")
        v = self.value
        if self.kind in ("delay", "spikes") and not (v > 0 and math.isfinite(v)):
            raise InputError(f"{what}: value(={v:g}) must be a delay > 0 (s)")
        if self.kind == "degrade" and not 0.0 < v <= 1.0:
            raise InputError(f"{what}: value(={v:g}) must be a capacity factor in (0, 1]")
        if self.kind in ("loss", "error") and not 0.0 <= v <= 1.0:
            raise InputError(f"{what}: value(={v:g}) must be a probability in [0, 1]")
        if not 0.0 <= self.prob <= 1.0:
            raise InputError(f"{what}: prob(={self.prob:g}) must be in [0, 1]")


def _of(imps: Sequence[Impairment], domain: int, kinds: tuple[str, ...]) -> list[Impairment]:
    return [i for i in imps if i.domain == domain and i.kind in kinds]


def capacity_schedule(imps: Sequence[Impairment], domain: int) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints and capacity factors of ``domain`` (see :mod:`federation.dataplane.kernels`).

    Returns ``(bps, fac)`` with ``len(fac) == len(bps) + 1``; ``([], [1.0])`` if unimpaired.
    """
    win = _of(imps, domain, ("degrade", "outage"))
    bps = np.unique(np.array([x for i in win for x in (i.start, i.end)], dtype=np.float64))
    fac = np.ones(len(bps) + 1)
    for i in win:
        f = 0.0 if i.kind == "outage" else i.value
        lo = np.searchsorted(bps, i.start, side="right")
        hi = np.searchsorted(bps, i.end, side="right")
        fac[lo:hi] *= f
    return bps, fac


def window_max(imps: Sequence[Impairment], domain: int, kind: str, t: np.ndarray, base: float) -> np.ndarray | float:
    """``max(base, value of every `kind` window containing t)`` per time in ``t``."""
    win = _of(imps, domain, (kind,))
    if not win:
        return base
    out = np.full(len(t), base)
    for i in win:
        m = (t >= i.start) & (t < i.end)
        np.maximum(out, np.where(m, i.value, base), out=out)
    return out


def window_sum(imps: Sequence[Impairment], domain: int, kind: str, t: np.ndarray) -> np.ndarray | None:
    """Sum of ``value`` over the ``kind`` windows containing each time (None if no such window)."""
    win = _of(imps, domain, (kind,))
    if not win:
        return None
    out = np.zeros(len(t))
    for i in win:
        out[(t >= i.start) & (t < i.end)] += i.value
    return out


def parse_impairment(text: str) -> Impairment:
    """Parse ``DOMAIN:KIND:START:END[:VALUE[:PROB]]`` (domain counted from 1, times in s).

    Examples: ``2:outage:1.0:1.5``, ``1:degrade:0:10:0.5``, ``3:spikes:0:60:0.02:0.01``.
    """
    parts = text.split(":")
    if not 4 <= len(parts) <= 6:
        raise InputError(f"impairment {text!r}: expected DOMAIN:KIND:START:END[:VALUE[:PROB]]")
    try:
        dom = int(parts[0])
        nums = [float(x) for x in parts[2:]]
    except ValueError:
        raise InputError(f"impairment {text!r}: DOMAIN must be an integer and START/END/VALUE/PROB numbers") from None
    if dom < 1:
        raise InputError(f"impairment {text!r}: DOMAIN(={dom}) is counted from 1")
    kind = parts[1]
    if kind not in IMPAIRMENT_KINDS:
        raise InputError(f"impairment {text!r}: kind(={kind!r}) must be one of {'|'.join(IMPAIRMENT_KINDS)}")
    value = nums[2] if len(nums) > 2 else 0.0
    if kind in ("delay", "spikes", "degrade", "loss", "error") and len(nums) < 3:
        raise InputError(f"impairment {text!r}: kind {kind!r} needs a VALUE")
    prob = nums[3] if len(nums) > 3 else 1.0
    return Impairment(dom - 1, cast(ImpairmentKind, kind), nums[0], nums[1], value, prob)
