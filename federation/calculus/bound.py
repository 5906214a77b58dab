"""The result types of the calculus: a delay bound, a backlog bound, the method that gave them.

Every bound function returns a :class:`Bound` (``P(D > delay) <= epsilon``) or, for the backlog,
a :class:`BacklogBound` (``P(B > backlog) <= epsilon``). ``method`` is a :class:`BoundMethod`,
a ``str`` enum: its members compare equal to, format as and serialise (JSON) as their values,
so ``"martingale"`` in a test, ``f"[{b.method}]"`` in the CLI and ``json.dumps`` all see the
same text. ``detail`` is the method's own typed record of the optimum (:data:`BoundDetail`),
or ``None`` when the method has nothing to add.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "BoundMethod",
    "TandemDetail",
    "FifoDetail",
    "DeterministicDetail",
    "MartingaleDetail",
    "PriorityDetail",
    "ProductFormDetail",
    "BoundDetail",
    "Bound",
    "BacklogBound",
]


class BoundMethod(enum.StrEnum):
    """The method that gave a bound (its value is the text the CLI and the JSON show)."""

    #: A token bucket through deterministic rate-latency hops: the worst case, ``epsilon`` 0 or 1.
    DETERMINISTIC = "deterministic"
    #: The martingale bound of a single queue (:mod:`federation.calculus.martingale`).
    MARTINGALE = "martingale"
    #: The martingale bound of one constant-rate hop shared with i.i.d. cross traffic (blind multiplexing).
    MARTINGALE_SP = "martingale-sp"
    #: The martingale bound of one FIFO hop shared with i.i.d. cross traffic (:mod:`federation.calculus.fifo`).
    MARTINGALE_FIFO = "martingale-fifo"
    #: The end-to-end MGF tandem bound with independent hops (:mod:`federation.calculus.tandem`).
    MGF_TANDEM = "mgf-tandem"
    #: The MGF tandem bound with Hölder's inequality (flow and hops may be dependent).
    MGF_TANDEM_HOELDER = "mgf-tandem-hoelder"
    #: The MGF tandem bound with the FIFO residual service at FIFO hops (:mod:`federation.calculus.fifo`).
    MGF_FIFO = "mgf-fifo"
    #: The packet-domain (max-plus) MGF bound for Poisson packets (:mod:`federation.calculus.packet`).
    MGF_MAXPLUS = "mgf-maxplus"
    #: The busy-period recursion of a FIFO packet tandem with cross traffic (:mod:`federation.calculus.fifo_recursion`).
    FIFO_RECURSION = "fifo-recursion"
    #: The same for slotted FIFO tandems of i.i.d. traffic (:mod:`federation.calculus.fifo_slotted`).
    FIFO_SLOTTED = "fifo-slotted"
    #: The exact sojourn tail of a Jackson tandem (:mod:`federation.calculus.packet`).
    PRODUCT_FORM = "product-form"
    #: The textbook MGF tandem bound of published toolboxes (:mod:`federation.calculus.baseline`).
    MGF_BASELINE = "mgf-baseline"
    #: The single-hop MGF backlog bound (:class:`BacklogBound`).
    MGF_BACKLOG = "mgf-backlog"


@dataclass(frozen=True)
class TandemDetail:
    """The optimum of an MGF tandem (or backlog) bound.

    Attributes
    ----------
    tau : float
        The time grid step of the continuous-time bound (s; 1 slot in discrete time; nan when
        the delay is below the latencies).
    log_epsilon : float
        The unclipped natural log of the bound at the optimum (may exceed 0; 0 when the delay
        is below the latencies).
    """

    tau: float
    log_epsilon: float


@dataclass(frozen=True)
class FifoDetail:
    """The optimum of the FIFO tandem bound (:attr:`BoundMethod.MGF_FIFO`).

    Attributes
    ----------
    tau : float
        The time grid step (s; 1 slot in discrete time).
    fifo_offsets : tuple of float
        The free parameter ``x`` of the FIFO residual service at each FIFO hop, in path order (s
        or slots, multiples of ``tau``; 0 is blind multiplexing).
    log_epsilon : float
        The unclipped natural log of the bound at the optimum.
    """

    tau: float
    fifo_offsets: tuple[float, ...]
    log_epsilon: float


@dataclass(frozen=True)
class DeterministicDetail:
    """A deterministic bound: ``worst_case`` is the worst-case delay (s or slots, latencies included)."""

    worst_case: float


@dataclass(frozen=True)
class MartingaleDetail:
    """``P(D > latency + d) <= prefactor * exp(-decay * d)``: prefactor >= 0, decay in 1/s (1/slot)."""

    prefactor: float
    decay: float


@dataclass(frozen=True)
class PriorityDetail:
    """The blind-multiplexing martingale bound: ``theta_star`` (1/bits), the aggregate's martingale root;
    ``sojourn``: the bound is on a Poisson packet's sojourn (its own size included)."""

    theta_star: float
    sojourn: bool = False


@dataclass(frozen=True)
class ProductFormDetail:
    """A Jackson tandem: the hops' sojourn rates ``mu_h - lambda`` (1/s)."""

    sojourn_rates: tuple[float, ...]

    @property
    def hops(self) -> int:
        """Number of hops."""
        return len(self.sojourn_rates)


#: The typed ``detail`` of a :class:`Bound` (``None``: the method records nothing more).
BoundDetail: TypeAlias = (
    TandemDetail | FifoDetail | DeterministicDetail | MartingaleDetail | PriorityDetail | ProductFormDetail
)


@dataclass(frozen=True)
class Bound:
    """A tail bound ``P(D > delay) <= epsilon``.

    Attributes
    ----------
    delay : float
        Delay (s or slots), including the latencies.
    epsilon : float
        Violation probability bound in [0, 1].
    theta : float
        Optimising theta (1/bits; 1/s for :attr:`BoundMethod.MGF_MAXPLUS` and
        :attr:`BoundMethod.FIFO_RECURSION`, 1/slot for :attr:`BoundMethod.FIFO_SLOTTED`); nan when not
        applicable (deterministic, product form).
    method : BoundMethod
        The method that gave the bound.
    detail : BoundDetail or None
        The method's record of the optimum (not compared).
    """

    delay: float
    epsilon: float
    theta: float
    method: BoundMethod
    detail: BoundDetail | None = field(default=None, compare=False)

    @property
    def theta_unit(self) -> str:
        """The unit of :attr:`theta`: ``"1/s"`` for the packet-domain methods, ``"1/slot"`` for the
        slotted busy-period bound, ``"1/bit"`` otherwise."""
        if self.method == BoundMethod.FIFO_SLOTTED:
            return "1/slot"
        return "1/s" if self.method in (BoundMethod.MGF_MAXPLUS, BoundMethod.FIFO_RECURSION) else "1/bit"


@dataclass(frozen=True)
class BacklogBound:
    """A backlog tail bound ``P(B > backlog) <= epsilon``.

    Attributes
    ----------
    backlog : float
        Backlog level (bits).
    epsilon : float
        Violation probability bound in [0, 1].
    theta : float
        Optimising theta (1/bits).
    detail : TandemDetail
        The optimum (not compared).
    method : BoundMethod
        Always :attr:`BoundMethod.MGF_BACKLOG`.
    """

    backlog: float
    epsilon: float
    theta: float
    detail: TandemDetail | None = field(default=None, compare=False)
    method: BoundMethod = BoundMethod.MGF_BACKLOG
