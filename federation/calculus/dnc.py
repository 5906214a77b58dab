"""Deterministic network calculus: token-bucket arrival curves through rate-latency domains.

The worst-case counterpart of the stochastic calculus (:mod:`federation.calculus.compose`), and
the baseline of the broker's ``dnc`` and ``peak-rate`` admission policies
(``agents.broker.plan``): a flow constrained by the arrival curve ``alpha(t) = sigma + rho t``
crosses ``H`` domains, domain ``i`` offering the rate-latency service curve
``beta_i(t) = r_i (t - T_i)^+``; :func:`worst_case_delay` is the largest delay any bit (any
packet) can see end to end, :func:`per_domain_delays` the worst case of each domain on its own,
:func:`equal_rate` the smallest common rate meeting a deadline.

Packets. A packetized flow (packets of at most ``L`` bits) crosses store-and-forward domains:
each domain but the last holds a packet until its last bit is in, which adds ``L / r_i`` to that
domain's latency (Le Boudec & Thiran, *Network Calculus*, Springer LNCS 2050, 2001, Thm 1.7.1:
the packetizer after a rate-latency server of rate ``r`` costs ``l_max / r``). This is how the
stochastic calculus counts them too (``compose.packetized``: the ``H - 1`` first hops), so a
``dnc`` and an ``snc`` plan of the same token bucket agree where both apply. ``L = 0`` is a fluid
flow.

Units: bits, bits/s, s.

Notes
-----
Min-plus convolution of rate-latency curves is rate-latency (Le Boudec & Thiran, Thm 1.4.6):

.. math::
    \\beta_1 \\otimes \\dots \\otimes \\beta_H = r_{\\min} (t - \\textstyle\\sum_i T_i)^+,
    \\qquad r_{\\min} = \\min_i r_i,

and the delay of ``alpha`` through a rate-latency curve ``R (t - T)^+`` with ``R >= rho`` is the
horizontal deviation (Thm 1.4.2) ``h(alpha, beta) = T + sigma / R``. End to end, with the
packetizers' ``L / r_i`` folded into the latencies of the ``H - 1`` first domains:

.. math::
    D \\le \\sum_{i=1}^{H} T_i + \\frac{\\sigma}{r_{\\min}} + \\sum_{i=1}^{H-1} \\frac{L}{r_i}
    \\qquad (\\text{"pay bursts only once"}).

A greedy source (the burst ``sigma`` at time 0, then ``rho``) through constant-rate servers of one
common rate meets it with equality: the burst's last packet waits ``sigma / r`` at the first
domain and ``L / r`` at every later one. Per domain alone (:func:`per_domain_delays`), domain ``i``
sees the output of the ones before it, whose burst grows by ``rho`` times their latency (Thm
1.4.3: ``alpha \\oslash beta = sigma + rho T + rho t``), so
``d_i = T_i' + sigma_i / r_i`` with ``sigma_1 = sigma``, ``sigma_{i+1} = sigma_i + rho T_i'`` and
``T_i'`` the latency with its packetizer; the ``d_i`` add up to more than the end-to-end bound
(each domain alone pays the burst again), but each is a worst case of its own domain.

Stability: every ``r_i >= rho`` (else the backlog grows without bound and
:class:`~federation.errors.NoFiniteBound` is raised).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from federation.errors import InputError, NoFiniteBound

__all__ = ["RateLatency", "convolve", "worst_case_delay", "per_domain_delays", "equal_rate"]


@dataclass(frozen=True)
class RateLatency:
    """The service curve ``beta(t) = rate (t - latency)^+`` of one domain.

    Attributes
    ----------
    rate : float
        Guaranteed rate, bits/s (> 0).
    latency : float
        Fixed latency ``T``, s (>= 0): the domain's own plus its propagation to the next.
    """

    rate: float
    latency: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise InputError(f"rate(={self.rate!r}) must be > 0 and finite (bits/s)")
        if not (self.latency >= 0 and math.isfinite(self.latency)):
            raise InputError(f"latency(={self.latency!r}) must be >= 0 and finite (s)")


def _check_flow(sigma: float, rho: float, packet_bits: float) -> None:
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise InputError(f"sigma(={sigma!r}) must be >= 0 and finite (bits)")
    if not (rho > 0 and math.isfinite(rho)):
        raise InputError(f"rho(={rho!r}) must be > 0 and finite (bits/s)")
    if not (packet_bits >= 0 and math.isfinite(packet_bits)):
        raise InputError(f"packet_bits(={packet_bits!r}) must be >= 0 and finite (bits)")


def _check(sigma: float, rho: float, hops: Sequence[RateLatency], packet_bits: float) -> None:
    if not hops:
        raise InputError("the path has no domains")
    _check_flow(sigma, rho, packet_bits)
    for i, h in enumerate(hops):
        if h.rate < rho:
            raise NoFiniteBound(f"domain {i}: rate {h.rate:g} bits/s < the arrival rate rho {rho:g} bits/s "
                                f"(no finite worst case)")


def _latencies(hops: Sequence[RateLatency], packet_bits: float) -> list[float]:
    """Each domain's latency with its packetizer (``L / r_i`` on all but the last), s."""
    n = len(hops)
    return [h.latency + (packet_bits / h.rate if i < n - 1 else 0.0) for i, h in enumerate(hops)]


def convolve(hops: Sequence[RateLatency]) -> RateLatency:
    """The end-to-end service curve of ``hops`` in tandem: rate ``min r_i``, latency ``sum T_i``
    (min-plus convolution, see the module Notes)."""
    if not hops:
        raise InputError("the path has no domains")
    return RateLatency(min(h.rate for h in hops), math.fsum(h.latency for h in hops))


def worst_case_delay(sigma: float, rho: float, hops: Sequence[RateLatency], packet_bits: float = 0.0) -> float:
    """The end-to-end worst-case delay (s) of a ``(sigma, rho)`` flow through ``hops`` (Notes).

    Parameters
    ----------
    sigma : float
        Burst, bits (>= 0).
    rho : float
        Sustained rate, bits/s (> 0).
    hops : sequence of RateLatency
        The domains in path order.
    packet_bits : float
        Largest packet, bits (0: a fluid flow); a store-and-forward packetizer at every domain but
        the last adds ``packet_bits / r_i``.

    Returns
    -------
    float
        ``sum T_i + sigma / min r_i + sum_{i < H} L / r_i``.

    Raises
    ------
    NoFiniteBound
        A domain's rate is below ``rho``.
    InputError
        A negative or non-finite input, or no domain.
    """
    _check(sigma, rho, hops, packet_bits)
    return math.fsum(_latencies(hops, packet_bits)) + sigma / min(h.rate for h in hops)


def per_domain_delays(sigma: float, rho: float, hops: Sequence[RateLatency],
                      packet_bits: float = 0.0) -> tuple[float, ...]:
    """Each domain's own worst-case delay (s), the flow's burst grown by the domains before it (Notes).

    ``d_i = T_i' + sigma_i / r_i``, ``sigma_1 = sigma``, ``sigma_{i+1} = sigma_i + rho T_i'``, with
    ``T_i'`` the latency plus the packetizer's ``L / r_i`` on all but the last domain. Raises as
    :func:`worst_case_delay`.
    """
    _check(sigma, rho, hops, packet_bits)
    out = []
    burst = sigma
    for h, t in zip(hops, _latencies(hops, packet_bits)):
        out.append(t + burst / h.rate)
        burst += rho * t
    return tuple(out)


def equal_rate(sigma: float, rho: float, latencies: Sequence[float], deadline: float,
               packet_bits: float = 0.0) -> float:
    """The smallest common rate (bits/s) of every domain whose worst-case delay meets ``deadline``.

    With one rate ``r`` on all ``H`` domains the worst case is ``sum T_i + (sigma + (H-1) L) / r``,
    so ``r = max(rho, (sigma + (H - 1) L) / (deadline - sum T_i))``. For a fluid flow (``L = 0``)
    it is also the cheapest allocation at any prices: only the smallest rate enters the bound, so
    any rate above it costs without helping. With packets a domain above the common rate shortens
    its own ``L / r_i`` term, which the common rate ignores (a few ``L / r`` at most).

    Parameters
    ----------
    sigma, rho, packet_bits
        As :func:`worst_case_delay` (bits, bits/s, bits).
    latencies : sequence of float
        Every domain's fixed latency ``T_i``, s.
    deadline : float
        End-to-end deadline, s.

    Raises
    ------
    NoFiniteBound
        ``deadline`` is not above ``sum T_i`` (no rate meets it).
    InputError
        A negative or non-finite input, or no domain.
    """
    if not latencies:
        raise InputError("the path has no domains")
    if not (deadline > 0 and math.isfinite(deadline)):
        raise InputError(f"deadline(={deadline!r}) must be > 0 and finite (s)")
    if any(not (t >= 0 and math.isfinite(t)) for t in latencies):
        raise InputError(f"latencies(={list(latencies)!r}) must be >= 0 and finite (s)")
    _check_flow(sigma, rho, packet_bits)
    slack = deadline - math.fsum(latencies)
    if not slack > 0:
        raise NoFiniteBound(f"deadline {deadline:g} s is not above the path's latencies ({deadline - slack:g} s)")
    need = (sigma + (len(latencies) - 1) * packet_bits) / slack
    r = max(rho, need)
    hops = [RateLatency(r, t) for t in latencies]
    for _ in range(64):  # no rounding above the deadline: check what worst_case_delay computes
        if worst_case_delay(sigma, rho, hops, packet_bits) <= deadline:
            break
        r *= 1.0 + 1e-14
        hops = [RateLatency(r, t) for t in latencies]
    return r
