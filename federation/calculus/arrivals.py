"""Arrival models with moment-generating-function (MGF) envelopes.

Every model bounds the MGF of its cumulative work ``A(s, t)`` (bits) over an interval of length
``t - s`` (seconds in continuous time, slots in discrete time)::

    E[exp(theta * A(s, t))] <= exp(theta * (rho(theta) * (t - s) + sigma(theta)))

for ``0 < theta < theta_max``. The calculus works in log space with
``kappa(theta) = theta * rho(theta)`` (log-MGF per unit time) and ``beta(theta) = theta * sigma(theta)``.

Models (continuous time ``"continuous"``: seconds, bits, bits/s; discrete time ``"discrete"``:
slots, bits, bits/slot):

* :class:`TokenBucket` ``(sigma, rho)``: deterministic, ``A(s,t) <= sigma + rho (t-s)``.
* :class:`PoissonArrival` ``(rate, mean_size, size)``: packets of fixed (``"det"``) or exponential
  (``"exp"``) size; in continuous time a Poisson process of ``rate`` packets/s, in discrete time
  a Poisson number of packets per slot with mean ``rate``.
* :class:`ExpIncrements` ``(lamb)`` (discrete only): i.i.d. exponential work per slot, mean ``1/lamb``.
* :class:`MMOO`: ``n`` independent Markov-modulated on-off sources (discrete: per-slot
  ``stay_on`` / ``stay_off`` probabilities and ``peak`` bits/slot; continuous: mean ``on`` /
  ``off`` sojourn times in seconds and ``peak`` bits/s, fluid at ``peak`` while on).
* :class:`CorrelatedMMOO`: ``n`` sources driven by **one** modulating chain.
* :class:`Aggregate`: a sum of flows, independent (sum of the envelopes) or of unknown
  dependence (Hölder's inequality).
* :class:`TabulatedArrival`: ``kappa`` and ``beta`` given on a theta grid (e.g. fitted from a
  trace by :func:`federation.trace.fit.fit_mgf_envelope`), interpolated conservatively.

Notes
-----
For a stationary *reversible* modulating chain (every two-state chain and every birth-death
count chain is reversible) the matrix ``K = D^{1/2} P D^{1/2}`` (``D = diag(exp(theta*a))``) is
self-adjoint in ``L^2(pi)``, so ``E[exp(theta*A(0,t))] = <D^{1/2}1, K^{t-1} D^{1/2}1>_pi
<= lambda(theta)^(t-1) * E_pi[exp(theta*a)]`` with ``lambda`` the spectral radius of ``P D``.
Hence ``rho = log(lambda)/theta`` and ``sigma = max(0, log(E_pi[e^{theta a}] / lambda))/theta``
(discrete), and ``sigma = 0`` in continuous time (``exp(t(Q + theta*Lambda))`` is self-adjoint).
A fully correlated group of ``n`` identical sources has the MGF of one source with ``n``
times the peak, which by Hölder's inequality bounds *any* dependence between the sources —
so :class:`CorrelatedMMOO` is valid whatever the data plane's ``corr`` knob is.

References
----------
C.-S. Chang, *Performance Guarantees in Communication Networks*, Springer 2000, §7.2 (effective
bandwidth of Markov sources). M. Fidler, "An end-to-end probabilistic network calculus with
moment generating functions", IWQoS 2006, §2.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np

from federation.errors import NoFiniteBound, SpecError
from federation.specs import ArrivalSpec, TimeModel

__all__ = [
    "Arrival",
    "TokenBucket",
    "PoissonArrival",
    "ExpIncrements",
    "MMOO",
    "CorrelatedMMOO",
    "Aggregate",
    "TabulatedArrival",
    "aggregate",
    "arrival_from_spec",
    "binom_pmf",
]

_LOG_HUGE = 700.0


def _check_pos(name: str, x: float) -> float:
    x = float(x)
    if not (x > 0.0 and math.isfinite(x)):
        raise SpecError(f"{name}(={x!r}) must be > 0 and finite")
    return x


def _check_time(time: str) -> TimeModel:
    if time not in ("continuous", "discrete"):
        raise SpecError(f"time(={time!r}) must be 'continuous' or 'discrete'")
    return cast(TimeModel, time)


class Arrival(ABC):
    """Base class: an MGF envelope ``(rho(theta), sigma(theta))`` for ``0 < theta < theta_max``.

    Subclasses implement :meth:`kappa` (``theta*rho(theta)``) and :meth:`beta`
    (``theta*sigma(theta)``), both in log space so that large ``theta`` overflows to ``inf``
    instead of raising.
    """

    #: "continuous" (seconds) or "discrete" (slots)
    time: TimeModel = "continuous"

    @property
    @abstractmethod
    def theta_max(self) -> float:
        """Supremum (exclusive) of the theta range where the MGF is finite (1/bits)."""

    @property
    @abstractmethod
    def mean_rate(self) -> float:
        """Long-run mean rate (bits/s or bits/slot)."""

    @property
    def peak_rate(self) -> float:
        """Peak rate (inf when unbounded)."""
        return math.inf

    @property
    def packet_size(self) -> float:
        """Mean packet size (bits) used by random-service (``service="exp"``) hops."""
        return 1.0

    @property
    def deterministic(self) -> bool:
        """True when the envelope is a deterministic token bucket (``kappa`` linear, ``beta`` const)."""
        return False

    @property
    def iid(self) -> bool:
        """True when increments over disjoint slots (or a Lévy process) are i.i.d."""
        return False

    @abstractmethod
    def kappa(self, theta: float) -> float:
        """``theta * rho(theta)``: log-MGF per unit time (1; ``inf`` outside the range)."""

    def beta(self, theta: float) -> float:
        """``theta * sigma(theta)`` (dimensionless, >= 0)."""
        return 0.0

    def rho(self, theta: float) -> float:
        """Effective bandwidth ``rho(theta)`` (bits/s or bits/slot)."""
        return self.kappa(theta) / theta

    def sigma(self, theta: float) -> float:
        """Burst term ``sigma(theta)`` (bits)."""
        return self.beta(theta) / theta

    def log_mgf_bound(self, theta: float, t: float) -> float:
        """Upper bound on ``log E[exp(theta*A(0,t))]``."""
        return self.kappa(theta) * t + self.beta(theta)

    def overshoot(self, theta: float) -> float:
        """A lower bound (>= 1) on ``inf_v E[exp(theta*(X - v)) | X >= v]`` for the jumps ``X``.

        Used by the martingale bounds as the overshoot factor; 1 is always valid.
        """
        return 1.0

    def markov(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(P or Q, rates)`` of a reversible modulating chain when the model is Markov-modulated."""
        return None

    def __add__(self, other: Arrival) -> Arrival:
        return aggregate([self, other])


@dataclass(frozen=True)
class TokenBucket(Arrival):
    """Token-bucket constrained traffic: ``A(s,t) <= sigma + rho*(t-s)`` surely.

    Parameters
    ----------
    sigma : float
        Bucket depth (bits), >= 0.
    rho : float
        Token rate (bits/s, or bits/slot in discrete time), > 0.
    time : {"continuous", "discrete"}
    packet_size : float
        Maximum packet size (bits); 0 (default) means fluid traffic. Random-service hops serve
        ``packet_size`` bits per completion (1 bit when fluid); in continuous time a positive
        value adds the store-and-forward packetizer latency ``packet_size/R`` per constant-rate hop
        (see :func:`federation.calculus.compose.packetized`).
    """

    sigma_: float
    rho_: float
    time: TimeModel = "continuous"
    packet_size_: float = 1.0

    def __init__(self, sigma: float, rho: float, time: TimeModel = "continuous", packet_size: float = 0.0):
        sigma = float(sigma)
        if not (sigma >= 0.0 and math.isfinite(sigma)):
            raise SpecError(f"sigma(={sigma!r}) must be >= 0 and finite")
        object.__setattr__(self, "sigma_", sigma)
        object.__setattr__(self, "rho_", _check_pos("rho", rho))
        object.__setattr__(self, "time", _check_time(time))
        packet_size = float(packet_size)
        if not (packet_size >= 0.0 and math.isfinite(packet_size)):
            raise SpecError(f"packet_size(={packet_size!r}) must be >= 0 and finite")
        object.__setattr__(self, "packet_size_", packet_size)

    theta_max = math.inf

    @property
    def mean_rate(self) -> float:
        return self.rho_

    @property
    def packet_size(self) -> float:
        return self.packet_size_ if self.packet_size_ > 0 else 1.0

    @property
    def deterministic(self) -> bool:
        return True

    def kappa(self, theta: float) -> float:
        return theta * self.rho_

    def beta(self, theta: float) -> float:
        return theta * self.sigma_


@dataclass(frozen=True)
class PoissonArrival(Arrival):
    """Poisson packets: ``rate`` packets/s (continuous) or a Poisson(``rate``) count per slot.

    Parameters
    ----------
    rate : float
        Packets per second (continuous) or mean packets per slot (discrete), > 0.
    mean_size : float
        Packet size (``size="det"``) or mean packet size (``size="exp"``), bits, > 0.
    size : {"det", "exp"}
        Fixed or i.i.d. exponential packet sizes.
    time : {"continuous", "discrete"}

    Notes
    -----
    Compound Poisson: ``log E[exp(theta*A(t))] = rate*t*(M(theta) - 1)`` with
    ``M(theta) = exp(theta*L)`` (det) or ``1/(1 - theta*m)`` (exp, ``theta < 1/m``); ``sigma = 0``.
    """

    rate: float
    mean_size: float = 1.0
    size: Literal["det", "exp"] = "det"
    time: TimeModel = "continuous"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _check_pos("rate", self.rate))
        object.__setattr__(self, "mean_size", _check_pos("mean_size", self.mean_size))
        if self.size not in ("det", "exp"):
            raise SpecError(f"size(={self.size!r}) must be det or exp")
        _check_time(self.time)

    @property
    def theta_max(self) -> float:
        return math.inf if self.size == "det" else 1.0 / self.mean_size

    @property
    def mean_rate(self) -> float:
        return self.rate * self.mean_size

    @property
    def packet_size(self) -> float:
        return self.mean_size

    @property
    def iid(self) -> bool:
        return True

    def log_jump_mgf(self, theta: float) -> float:
        """``log E[exp(theta*L)]`` of one packet size ``L``."""
        if self.size == "det":
            return theta * self.mean_size
        x = theta * self.mean_size
        return -math.log1p(-x) if x < 1.0 else math.inf

    def kappa(self, theta: float) -> float:
        g = self.log_jump_mgf(theta)
        if g > _LOG_HUGE:
            return math.inf
        return self.rate * math.expm1(g)

    def overshoot(self, theta: float) -> float:
        if self.size == "exp":
            x = theta * self.mean_size
            return 1.0 / (1.0 - x) if x < 1.0 else math.inf
        return 1.0


@dataclass(frozen=True)
class ExpIncrements(Arrival):
    """I.i.d. exponential work per slot with rate ``lamb`` (mean ``1/lamb`` bits/slot); discrete time.

    ``log E[exp(theta*a)] = -log(1 - theta/lamb)`` for ``theta < lamb``; ``sigma = 0``.
    """

    lamb: float
    time: TimeModel = "discrete"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lamb", _check_pos("lamb", self.lamb))
        if self.time != "discrete":
            raise SpecError("exp-increments is a discrete-time model (time must be 'discrete')")

    @property
    def theta_max(self) -> float:
        return self.lamb

    @property
    def mean_rate(self) -> float:
        return 1.0 / self.lamb

    @property
    def iid(self) -> bool:
        return True

    def kappa(self, theta: float) -> float:
        x = theta / self.lamb
        return -math.log1p(-x) if x < 1.0 else math.inf

    def overshoot(self, theta: float) -> float:
        x = theta / self.lamb
        return 1.0 / (1.0 - x) if x < 1.0 else math.inf


def _spectral_2x2(a: float, b: float, c: float, d: float) -> float:
    """Largest eigenvalue of the real 2x2 matrix [[a, b], [c, d]] with real spectrum."""
    tr = a + d
    det = a * d - b * c
    disc = max(tr * tr / 4.0 - det, 0.0)
    return tr / 2.0 + math.sqrt(disc)


@dataclass(frozen=True)
class MMOO(Arrival):
    """``n`` independent Markov-modulated on-off sources (fluid at ``peak`` while on).

    Discrete time: per-slot ``stay_on`` / ``stay_off`` probabilities (``P(on->on)``,
    ``P(off->off)``), ``peak`` bits/slot. Continuous time: mean ``on`` / ``off`` sojourn times (s,
    exponential), ``peak`` bits/s. Construct with :meth:`discrete` or the continuous form
    ``MMOO(peak, on, off, n=1)``.

    ``packet`` (bits, continuous time; 0: fluid): the sources send whole packets of ``packet``
    bits, source by source one packet each time its on-time reaches a multiple of
    ``packet/peak`` (what the data plane does). Each source's packets then run ahead of its fluid
    by at most one packet, ``A_p(s, t] <= A(s, t] + n * packet`` (:attr:`packet_burst`), and a
    packet arrives only while its source is on; the bounds on a packet's delay account for both
    (:mod:`~federation.calculus.sojourn`, :func:`~federation.calculus.martingale.martingale_model`).
    Random-service hops serve ``packet`` bits per completion.
    """

    peak: float
    on: float = math.nan
    off: float = math.nan
    n: int = 1
    stay_on: float = math.nan
    stay_off: float = math.nan
    time: TimeModel = "continuous"
    packet: float = 0.0
    _group_peak: float = field(default=math.nan, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "peak", _check_pos("peak", self.peak))
        n = int(self.n)
        if n < 1 or n != self.n:
            raise SpecError(f"n(={self.n!r}) must be a whole number >= 1")
        object.__setattr__(self, "n", n)
        _check_time(self.time)
        if self.time == "continuous":
            _check_pos("on", self.on)
            _check_pos("off", self.off)
        else:
            for k in ("stay_on", "stay_off"):
                v = getattr(self, k)
                if not 0.0 < v < 1.0:
                    raise SpecError(f"{k}(={v!r}) must be in (0, 1)")
        packet = float(self.packet)
        if not (packet >= 0.0 and math.isfinite(packet)):
            raise SpecError(f"packet(={self.packet!r}) must be >= 0 and finite")
        if packet > 0 and self.time != "continuous":
            raise SpecError("packet: packetised on-off sources are continuous-time only")
        object.__setattr__(self, "packet", packet)
        object.__setattr__(self, "_group_peak", self.peak)

    @classmethod
    def discrete(cls, stay_on: float, stay_off: float, peak: float, n: int = 1) -> MMOO:
        """Discrete-time MMOO (per-slot transition probabilities, ``peak`` bits/slot)."""
        return cls(peak=peak, n=n, stay_on=stay_on, stay_off=stay_off, time="discrete")

    # --- one modulating chain -------------------------------------------------------------
    @property
    def p_on(self) -> float:
        """Stationary probability that a source is on."""
        if self.time == "continuous":
            return self.on / (self.on + self.off)
        return (1.0 - self.stay_off) / (2.0 - self.stay_on - self.stay_off)

    def _chain_kappa(self, theta: float, peak: float) -> tuple[float, float]:
        """(log spectral radius, log E_pi[exp(theta*a)]) of one chain with the given peak."""
        x = theta * peak
        if self.time == "continuous":
            alpha, beta_ = 1.0 / self.off, 1.0 / self.on
            s = x - alpha - beta_
            lam = 0.5 * (s + math.sqrt(s * s + 4.0 * alpha * x))
            return lam, 0.0
        if x > _LOG_HUGE:
            # log of the Perron root for huge theta: ~ x + log(stay_on)
            return x + math.log(self.stay_on), x + math.log(self.p_on)
        e = math.exp(x)
        po, pf = self.stay_on, self.stay_off
        lam = _spectral_2x2(pf, (1.0 - pf) * e, 1.0 - po, po * e)
        mean = (1.0 - self.p_on) + self.p_on * e
        return math.log(lam), math.log(mean)

    @property
    def _sources(self) -> int:
        return self.n

    def _peak_per_chain(self) -> float:
        return self.peak

    def kappa(self, theta: float) -> float:
        lam, _ = self._chain_kappa(theta, self._peak_per_chain())
        return self._sources * lam

    def beta(self, theta: float) -> float:
        if self.time == "continuous":
            return 0.0
        lam, mean = self._chain_kappa(theta, self._peak_per_chain())
        return self._sources * max(0.0, mean - lam)

    theta_max = math.inf

    @property
    def mean_rate(self) -> float:
        return self.n * self.peak * self.p_on

    @property
    def peak_rate(self) -> float:
        return self.n * self.peak

    @property
    def packet_size(self) -> float:
        return self.packet if self.packet > 0 else 1.0

    @property
    def packet_burst(self) -> float:
        """Bits the packetised sources can run ahead of the fluid ones (``n * packet``; 0 when fluid)."""
        return self.n * self.packet

    def markov(self) -> tuple[np.ndarray, np.ndarray]:
        """The aggregate's reversible chain: count chain of ``n`` independent sources.

        Returns ``(P, rates)`` (discrete: transition matrix, bits/slot per state) or
        ``(Q, rates)`` (continuous: generator, bits/s per state); state ``k`` = ``k`` sources on.
        """
        n = self.n
        rates = self.peak * np.arange(n + 1, dtype=float)
        if self.time == "continuous":
            alpha, beta_ = 1.0 / self.off, 1.0 / self.on
            q = np.zeros((n + 1, n + 1))
            for k in range(n + 1):
                if k < n:
                    q[k, k + 1] = (n - k) * alpha
                if k > 0:
                    q[k, k - 1] = k * beta_
                q[k, k] = -q[k].sum()
            return q, rates
        p = np.zeros((n + 1, n + 1))
        for k in range(n + 1):
            stay = binom_pmf(k, self.stay_on)
            turn = binom_pmf(n - k, 1.0 - self.stay_off)
            p[k] = np.convolve(stay, turn)
        return p, rates


def binom_pmf(n: int, p: float) -> np.ndarray:
    """``scipy.stats.binom.pmf(arange(n + 1), n, p)``: the Binomial(n, p) probabilities of 0..n.

    SciPy's own kernel (the ufunc ``scipy.special._ufuncs._binom_pmf`` that ``binom.pmf`` calls,
    clipped to [0, 1] as ``binom.pmf`` does), so the same values to the last bit, without
    importing ``scipy.stats`` (0.8 s; ``scipy.special`` alone is 0.2 s). SciPy versions without
    that ufunc get ``binom.pmf`` itself. ``n >= 0`` whole, ``0 <= p <= 1``.
    """
    k = np.arange(n + 1)
    try:
        from scipy.special._ufuncs import _binom_pmf
    except ImportError:  # pragma: no cover - older SciPy (the kernel lived in scipy.stats._boost)
        from scipy.stats import binom

        return np.asarray(binom.pmf(k, n, p), dtype=float)
    return np.clip(_binom_pmf(k, np.asarray(n), np.asarray(p)), 0, 1)


@dataclass(frozen=True)
class CorrelatedMMOO(MMOO):
    """``n`` on-off sources driven by **one** modulating chain (all on or all off together).

    Its MGF is that of one source with peak ``n*peak``; by Hölder's inequality this bounds the
    aggregate of ``n`` such sources under any dependence, so the envelope is valid whatever the
    correlation of the data plane's sources.
    """

    @classmethod
    def discrete(cls, stay_on: float, stay_off: float, peak: float, n: int = 1) -> CorrelatedMMOO:
        return cls(peak=peak, n=n, stay_on=stay_on, stay_off=stay_off, time="discrete")

    @property
    def _sources(self) -> int:
        return 1

    def _peak_per_chain(self) -> float:
        return self.n * self.peak

    def markov(self) -> tuple[np.ndarray, np.ndarray]:
        rates = np.array([0.0, self.n * self.peak])
        if self.time == "continuous":
            alpha, beta_ = 1.0 / self.off, 1.0 / self.on
            return np.array([[-alpha, alpha], [beta_, -beta_]]), rates
        pf, po = self.stay_off, self.stay_on
        return np.array([[pf, 1.0 - pf], [1.0 - po, po]]), rates


@dataclass(frozen=True)
class Aggregate(Arrival):
    """The sum of several flows.

    ``dependent=False``: independent flows, ``kappa = sum kappa_i``, ``beta = sum beta_i``.
    ``dependent=True``: unknown dependence, Hölder with equal exponents ``p_i = k`` (``k`` flows):
    ``E[exp(theta*sum A_i)] <= prod E[exp(k*theta*A_i)]^(1/k)``, i.e.
    ``kappa(theta) = sum kappa_i(k*theta)/k`` and ``theta_max = min theta_max_i / k``.
    """

    parts: tuple[Arrival, ...]
    dependent: bool = False

    def __post_init__(self) -> None:
        if not self.parts:
            raise SpecError("an aggregate needs at least one flow")
        times = {p.time for p in self.parts}
        if len(times) != 1:
            raise SpecError("cannot aggregate continuous-time and discrete-time flows")
        object.__setattr__(self, "time", times.pop())

    @property
    def _k(self) -> int:
        return len(self.parts) if self.dependent else 1

    @property
    def theta_max(self) -> float:
        return min(p.theta_max for p in self.parts) / self._k

    @property
    def mean_rate(self) -> float:
        return sum(p.mean_rate for p in self.parts)

    @property
    def peak_rate(self) -> float:
        return sum(p.peak_rate for p in self.parts)

    @property
    def packet_size(self) -> float:
        tot = sum(p.mean_rate / p.packet_size for p in self.parts)
        return self.mean_rate / tot

    @property
    def deterministic(self) -> bool:
        return all(p.deterministic for p in self.parts)

    @property
    def iid(self) -> bool:
        return (not self.dependent or len(self.parts) == 1) and all(p.iid for p in self.parts)

    def kappa(self, theta: float) -> float:
        k = self._k
        return sum(p.kappa(k * theta) for p in self.parts) / k

    def beta(self, theta: float) -> float:
        k = self._k
        return sum(p.beta(k * theta) for p in self.parts) / k

    def overshoot(self, theta: float) -> float:
        """Independent parts: the smallest part factor (the crossing happens within one part's
        increment or jump, whose conditional overshoot is at least that part's); dependent: 1."""
        if self.dependent and len(self.parts) > 1:
            return 1.0
        return min(p.overshoot(theta) for p in self.parts)


@dataclass(frozen=True)
class TabulatedArrival(Arrival):
    """An MGF envelope given by its values on a theta grid (continuous time, bits, seconds).

    ``log E exp(theta A(s, t)) <= kappa_k (t - s) + beta_k`` at ``theta = theta_k``, for every
    interval; between grid points the envelope is interpolated so that it stays an upper bound.

    Parameters
    ----------
    theta : tuple of float
        Strictly increasing grid, 1/bit, > 0.
    kappa_values : tuple of float
        ``kappa_k`` (1/s), finite, with ``kappa_k >= theta_k * mean_rate_bps`` (Jensen) and
        ``kappa_k / theta_k`` (the effective bandwidth) nondecreasing in k.
    beta_values : tuple of float
        ``beta_k`` (dimensionless), finite, >= 0.
    mean_rate_bps, peak_rate_bps : float
        Long-run mean rate and peak rate (bits/s; peak may be inf), ``0 < mean <= peak``.
    mean_size_bits, max_size_bits : float
        Mean and largest packet size (bits), ``0 < mean <= max``. A fitted envelope counts whole
        packets at their arrival instants (no fluid lead to add); store-and-forward hops add the
        packetizer latency of the largest packet (:func:`federation.calculus.compose.packetized`).

    Notes
    -----
    Conservative interpolation. For any traffic, ``L_t(theta) = log E exp(theta A(s, s+t))`` is
    convex in theta (Hölder) and ``L_t(0) = 0``. So for ``theta`` between grid points
    ``theta_k < theta < theta_{k+1}``, with ``lambda = (theta - theta_k)/(theta_{k+1} - theta_k)``,
    ``L_t(theta) <= (1-lambda) L_t(theta_k) + lambda L_t(theta_{k+1}) <= (1-lambda)(kappa_k t +
    beta_k) + lambda(kappa_{k+1} t + beta_{k+1})``: linear interpolation of ``kappa`` and of
    ``beta`` is an envelope at every ``t``, and below the grid the same holds with the point
    ``(0, 0, 0)`` (``kappa = theta kappa_1/theta_1``, ``beta = theta beta_1/theta_1``). Above the
    last grid point nothing is known: ``kappa = inf`` (``theta_max`` is the last grid point).
    """

    theta: tuple[float, ...]
    kappa_values: tuple[float, ...]
    beta_values: tuple[float, ...]
    mean_rate_bps: float
    peak_rate_bps: float
    mean_size_bits: float
    max_size_bits: float
    time: TimeModel = "continuous"

    def __post_init__(self) -> None:
        th = np.asarray(self.theta, dtype=float)
        ka = np.asarray(self.kappa_values, dtype=float)
        be = np.asarray(self.beta_values, dtype=float)
        if th.ndim != 1 or len(th) == 0:
            raise SpecError("theta must be a nonempty list (1/bit)")
        if ka.shape != th.shape or be.shape != th.shape:
            raise SpecError(f"theta, kappa and beta must have one length, got {len(th)}, {len(ka)} and {len(be)}")
        if not (np.all(np.isfinite(th)) and np.all(th > 0)):
            raise SpecError("theta must be finite and > 0 (1/bit)")
        if np.any(np.diff(th) <= 0):
            raise SpecError("theta must be strictly increasing")
        mean = _check_pos("mean_rate_bps", self.mean_rate_bps)
        peak = float(self.peak_rate_bps)
        if not peak >= mean:
            raise SpecError(f"peak_rate_bps(={peak!r}) must be >= mean_rate_bps(={mean!r})")
        size = _check_pos("mean_size_bits", self.mean_size_bits)
        if not (math.isfinite(self.max_size_bits) and self.max_size_bits >= size):
            raise SpecError(f"max_size_bits(={self.max_size_bits!r}) must be finite and >= mean_size_bits(={size!r})")
        if not np.all(np.isfinite(ka)):
            raise SpecError("kappa must be finite")
        low = ka < th * mean * (1 - 1e-9)
        if low.any():
            k = int(np.argmax(low))
            raise SpecError(f"kappa[{k}](={float(ka[k])!r}) must be >= theta[{k}] * mean_rate_bps "
                            f"(={float(th[k] * mean)!r}): "
                            "an effective bandwidth is at least the mean rate")
        rho = ka / th
        dec = np.diff(rho) < -1e-9 * rho[1:]
        if dec.any():
            k = int(np.argmax(dec)) + 1
            raise SpecError(f"kappa[{k}]/theta[{k}](={float(rho[k])!r}) must be >= kappa[{k - 1}]/theta[{k - 1}]"
                            f"(={float(rho[k - 1])!r}): effective bandwidths are nondecreasing in theta")
        if not (np.all(np.isfinite(be)) and np.all(be >= 0)):
            raise SpecError("beta must be finite and >= 0")
        if self.time != "continuous":
            raise SpecError("a tabulated envelope is a continuous-time model (time must be 'continuous')")
        for name, arr in (("theta", th), ("kappa_values", ka), ("beta_values", be)):
            object.__setattr__(self, name, tuple(arr.tolist()))
        object.__setattr__(self, "mean_rate_bps", mean)
        object.__setattr__(self, "peak_rate_bps", peak)

    @property
    def theta_max(self) -> float:
        return self.theta[-1]

    @property
    def mean_rate(self) -> float:
        return self.mean_rate_bps

    @property
    def peak_rate(self) -> float:
        return self.peak_rate_bps

    @property
    def packet_size(self) -> float:
        return self.mean_size_bits

    def _interp(self, theta: float, values: tuple[float, ...]) -> float:
        grid = self.theta
        if not theta > 0:
            return 0.0
        if theta > grid[-1]:
            return math.inf
        k = bisect.bisect_left(grid, theta)  # grid[k-1] < theta <= grid[k]
        t0, v0 = (grid[k - 1], values[k - 1]) if k else (0.0, 0.0)
        return v0 + (values[k] - v0) * (theta - t0) / (grid[k] - t0)

    def kappa(self, theta: float) -> float:
        return self._interp(theta, self.kappa_values)

    def beta(self, theta: float) -> float:
        return self._interp(theta, self.beta_values)


def aggregate(flows: Sequence[Arrival], dependent: bool = False) -> Arrival:
    """Aggregate ``flows`` (one flow is returned as is); see :class:`Aggregate`."""
    flows = list(flows)
    if len(flows) == 1:
        return flows[0]
    if all(isinstance(f, TokenBucket) for f in flows):
        tb = [f for f in flows if isinstance(f, TokenBucket)]
        return TokenBucket(
            sum(f.sigma_ for f in tb),
            sum(f.rho_ for f in tb),
            time=tb[0].time,
            packet_size=max(f.packet_size_ for f in tb),
        )
    return Aggregate(tuple(flows), dependent=dependent)


def arrival_from_spec(spec: ArrivalSpec) -> Arrival:
    """Build the calculus model of a parsed ``--arrival`` spec.

    Raises :class:`~federation.errors.NoFiniteBound` for ``pareto-onoff`` (heavy-tailed: no MGF).
    """
    k, t = spec.kind, spec.time
    if k == "token-bucket":
        return TokenBucket(spec.num("sigma"), spec.num("rho"), time=t)
    if k == "poisson":
        size = cast(Literal["det", "exp"], str(spec["size"]))  # PoissonArrival checks it
        return PoissonArrival(spec.num("rate"), spec.num("mean_size"), size, time=t)
    if k == "exp-increments":
        return ExpIncrements(spec.num("lamb"), time=t)
    if k in ("mmoo", "correlated-mmoo"):
        cls = MMOO if k == "mmoo" else CorrelatedMMOO
        n = int(spec.num("n"))
        if t == "discrete":
            return cls.discrete(spec.num("stay_on"), spec.num("stay_off"), spec.num("peak"), n)
        return cls(peak=spec.num("peak"), on=spec.num("on"), off=spec.num("off"), n=n)
    if k == "pareto-onoff":
        raise NoFiniteBound(f"arrival {spec.text or k!r}: Pareto on-off traffic has no MGF (heavy tail)")
    raise SpecError(f"arrival kind {k!r} has no calculus model")
