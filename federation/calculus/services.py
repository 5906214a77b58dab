"""Service models with MGF envelopes.

A (dynamic) server offers its input a service ``S(s, t)`` (bits) with
``D(t) >= inf_{s<=t} A(s) + S(s, t)`` and, for ``0 < theta < theta_max``::

    E[exp(-theta * S(s, t))] <= exp(-theta * (R(theta) * (t - s) - sigma_S(theta)))

followed by a constant ``latency`` (seconds or slots) that is added to the delay. In log space
``gamma(theta) = theta * R(theta)`` and ``delta(theta) = theta * sigma_S(theta)``.

Models:

* :class:`ConstantRate` / :func:`rate_latency`: a work-conserving link of ``rate`` bits/s
  (deterministic; a packet's service time is its size over the rate) with latency ``T``.
* :class:`ExpService`: a random-service domain (e.g. an inference server). Continuous time:
  service completions form a Poisson process of rate ``rate/packet_size`` per second, each
  removing one packet (``packet_size`` bits) — the exact model of i.i.d. exponential service
  times of mean ``packet_size/rate`` (an M/M/1 server is the reflection of ``A - S``).
  Discrete time: an i.i.d. exponential per-slot capacity of mean ``rate`` bits/slot.
* :class:`Leftover`: the service left to a flow by cross traffic under arbitrary (blind)
  multiplexing, ``[S(s,t) - A_c(s,t)]^+`` (valid for any work-conserving scheduler, including
  strict priority to the cross traffic).
* :class:`FifoLeftover`: the same hop when it serves the flow and the cross traffic in one FIFO
  queue. Every bound that takes a :class:`Leftover` still applies (blind multiplexing covers
  FIFO); :mod:`federation.calculus.fifo` adds the tighter FIFO residual service.
* :func:`reserved_slice`: a tenant's reserved rate ``r`` in a domain of capacity ``C``
  (docs/design.md §4): a rate-latency service ``(r, T + L_max/C)`` as granted by a rate partition
  or a WFQ/DRR scheduler, independent of the other tenants.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from federation.calculus.arrivals import Arrival
from federation.errors import SpecError
from federation.specs import HopSpec, TimeModel

__all__ = [
    "Service",
    "ConstantRate",
    "ExpService",
    "Leftover",
    "FifoLeftover",
    "rate_latency",
    "reserved_slice",
    "service_from_hop",
]


class Service(ABC):
    """Base class: a service MGF envelope ``(gamma, delta)`` plus a constant ``latency``."""

    time: TimeModel = "continuous"
    latency: float = 0.0

    @property
    def deterministic(self) -> bool:
        """True when ``S(s,t) >= R*(t-s) - sigma_S`` surely (``gamma`` linear, ``delta`` constant)."""
        return False

    @property
    def theta_max(self) -> float:
        """Supremum of the theta range (1/bits)."""
        return math.inf

    @property
    @abstractmethod
    def mean_rate(self) -> float:
        """Long-run mean service rate (bits/s or bits/slot)."""

    @abstractmethod
    def gamma(self, theta: float) -> float:
        """``theta * R(theta)`` (per unit time)."""

    def delta(self, theta: float) -> float:
        """``theta * sigma_S(theta)`` (>= 0)."""
        return 0.0


@dataclass(frozen=True)
class ConstantRate(Service):
    """A work-conserving constant-rate link of ``rate`` bits/s (bits/slot) with latency ``latency``."""

    rate: float
    latency: float = 0.0
    time: TimeModel = "continuous"

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise SpecError(f"rate(={self.rate!r}) must be > 0 and finite")
        if not (self.latency >= 0 and math.isfinite(self.latency)):
            raise SpecError(f"latency(={self.latency!r}) must be >= 0 and finite")

    @property
    def deterministic(self) -> bool:
        return True

    @property
    def mean_rate(self) -> float:
        return self.rate

    def gamma(self, theta: float) -> float:
        return theta * self.rate


def rate_latency(rate: float, latency: float = 0.0, time: TimeModel = "continuous") -> ConstantRate:
    """The rate-latency service ``beta(t) = rate * [t - latency]^+`` (bits/s, s)."""
    return ConstantRate(rate, latency, time)


@dataclass(frozen=True)
class ExpService(Service):
    """Random service: i.i.d. exponential service times (continuous) / exponential capacity (discrete).

    Parameters
    ----------
    rate : float
        Mean service rate (bits/s; bits/slot in discrete time).
    packet_size : float
        Work removed per service completion (bits), continuous time only.
    latency : float
        Constant latency added to the delay (s or slots).
    """

    rate: float
    packet_size: float = 1.0
    latency: float = 0.0
    time: TimeModel = "continuous"

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise SpecError(f"rate(={self.rate!r}) must be > 0 and finite")
        if not self.packet_size > 0:
            raise SpecError(f"packet_size(={self.packet_size!r}) must be > 0")

    @property
    def mean_rate(self) -> float:
        return self.rate

    @property
    def completion_rate(self) -> float:
        """Service completions per second (continuous time)."""
        return self.rate / self.packet_size

    def gamma(self, theta: float) -> float:
        if self.time == "continuous":
            return self.completion_rate * -math.expm1(-theta * self.packet_size)
        return math.log1p(theta * self.rate)


@dataclass(frozen=True)
class Leftover(Service):
    """Leftover service ``[S(s,t) - A_c(s,t)]^+`` under blind multiplexing with cross traffic ``cross``.

    ``gamma = gamma_S - kappa_c`` and ``delta = delta_S + beta_c`` (cross independent of the
    service); valid for every work-conserving scheduler (the worst case is strict priority to
    the cross traffic).
    """

    base: Service
    cross: Arrival

    @property
    def time(self) -> TimeModel:  # type: ignore[override]
        return self.base.time

    @property
    def latency(self) -> float:  # type: ignore[override]
        return self.base.latency

    @property
    def deterministic(self) -> bool:
        return self.base.deterministic and self.cross.deterministic

    @property
    def theta_max(self) -> float:
        return min(self.base.theta_max, self.cross.theta_max)

    @property
    def mean_rate(self) -> float:
        return self.base.mean_rate - self.cross.mean_rate

    def gamma(self, theta: float) -> float:
        return self.base.gamma(theta) - self.cross.kappa(theta)

    def delta(self, theta: float) -> float:
        return self.base.delta(theta) + self.cross.beta(theta)


@dataclass(frozen=True)
class FifoLeftover(Leftover):
    """A hop that serves the flow and the cross traffic ``cross`` in one FIFO queue.

    As a :class:`Leftover` (``gamma``, ``delta``, ``mean_rate``) it is the blind-multiplexing
    leftover, valid for FIFO too; the FIFO bounds of :mod:`federation.calculus.fifo` use the FIFO
    residual service ``[S(s,t) - A_c(s,t-x)]^+ 1{t-s > x}`` instead (free parameter ``x >= 0``).
    """


def reserved_slice(
    capacity: float,
    rate: float,
    *,
    latency: float = 0.0,
    max_packet: float = 0.0,
    service: Literal["size", "exp"] = "size",
    packet_size: float = 1.0,
    time: TimeModel = "continuous",
) -> Service:
    """The service a tenant gets from a reservation of ``rate`` bits/s in a domain of ``capacity``.

    A rate partition or a WFQ/DRR scheduler isolates the tenant: it sees a rate-latency service
    of rate ``rate`` and latency ``latency + max_packet/capacity`` (one maximum-size packet of
    another tenant in transmission, non-preemptive), whatever the other tenants send.
    ``service="exp"`` gives the tenant's share of a random-service (inference) domain.
    Raises :class:`SpecError` if ``rate`` exceeds ``capacity``.
    """
    if not 0 < rate <= capacity:
        raise SpecError(f"reserved rate(={rate:g}) must be in (0, capacity={capacity:g}]")
    t = latency + max_packet / capacity
    if service == "exp":
        return ExpService(rate, packet_size, t, time)
    return ConstantRate(rate, t, time)


def service_from_hop(
    hop: HopSpec, *, packet_size: float = 1.0, time: TimeModel = "continuous"
) -> ExpService | ConstantRate:
    """The calculus service of a parsed ``--hop`` (latency only; ``prop`` is added by the caller)."""
    if hop.service == "exp":
        return ExpService(hop.rate, packet_size, hop.latency, time)
    return ConstantRate(hop.rate, hop.latency, time)
