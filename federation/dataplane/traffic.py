"""Seeded, vectorised tenant traffic for the packet-level data plane.

A *traffic model* is a frozen description (:class:`Poisson`, :class:`MMOOTraffic`,
:class:`CorrelatedMMOOTraffic`, :class:`ParetoOnOff`, :class:`GreedyTokenBucket`, :class:`Shaped`,
:class:`TraceReplay`);
``model.generator(seedseq)`` turns it into a stateful :class:`PacketGenerator` whose
:meth:`~PacketGenerator.take` hands out every packet arriving before a time, in order.

Units: seconds and bits. Packet rates are packets per second, peaks bits per second.

Reproducibility and streaming. A generator draws its random numbers in fixed canonical
blocks (a fixed number of packets or on/off cycles per block) from its own streams
(:class:`numpy.random.Generator` s; Poisson inter-arrival times from a counter-based exponential
stream of :mod:`federation.dataplane.rng`), whatever windows it is asked for; cumulative sums carry their
running value into the next block (``x[0] += last; cumsum``), so the packets handed out over any
sequence of windows are bit-identical to those of one big window. This is what makes chunked
simulation equal the unchunked one.

Each tenant's traffic is its own stream (:func:`generate` returns a :class:`Stream` carrying the
tenant id); the data plane keys every random stream by tenant, so one tenant's packets never
depend on what another tenant sends.
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from federation.dataplane.rng import exponential_numpy
from federation.errors import InputError
from federation.specs import ArrivalSpec

__all__ = [
    "PacketSizes",
    "TrafficModel",
    "Poisson",
    "MMOOTraffic",
    "CorrelatedMMOOTraffic",
    "ParetoOnOff",
    "GreedyTokenBucket",
    "Shaped",
    "TraceReplay",
    "Windowed",
    "PacketGenerator",
    "Stream",
    "generate",
    "traffic_from_spec",
    "child_generator",
    "child_stream",
    "exponential_draw",
    "exponentials",
]

_BLOCK = 1 << 16  # packets per canonical block (Poisson)
_CYCLES = 1 << 12  # on/off cycles per canonical block (on-off models)


def child_generator(seedseq: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A PCG64 generator for the sub-stream ``key`` of ``seedseq`` (independent of spawn order)."""
    return np.random.Generator(
        np.random.PCG64(
            np.random.SeedSequence(seedseq.entropy, spawn_key=(*seedseq.spawn_key, *key))
        )
    )


def child_stream(seedseq: np.random.SeedSequence, *key: int) -> np.ndarray:
    """The state (one uint64 counter) of the compiled exponential stream ``key`` of ``seedseq``.

    Draw from it with :func:`exponential_draw` (or inside a kernel); the
    numbers depend only on the seed and how many were drawn before, not on the pieces asked for.
    """
    seq = np.random.SeedSequence(seedseq.entropy, spawn_key=(*seedseq.spawn_key, *key))
    return seq.generate_state(1, np.uint64)


def exponential_draw(state: np.ndarray, n: int, mean: float = 1.0) -> np.ndarray:
    """``n`` exponential variates of mean ``mean`` from stream ``state[0]`` (advanced; :mod:`~federation.dataplane.rng`).

    Compiled (:func:`federation.dataplane.kernels.exp_fill`) when numba is already loaded,
    numpy otherwise (numba and the kernels take ~0.6 s to load); the numbers are the same either way.
    """
    if "federation.dataplane.kernels" in sys.modules:
        from federation.dataplane.kernels import exp_fill

        out = np.empty(n)
        exp_fill(state, out, mean)
        return out
    return exponential_numpy(state, n, mean)


def exponentials(rng: np.random.Generator, n: int, mean: float = 1.0) -> np.ndarray:
    """``n`` i.i.d. exponential variates of mean ``mean`` by inversion, ``-mean * log(1 - U)``.

    ``U`` uniform on [0, 1), so ``1 - U`` is in (0, 1] and the log is finite. Faster than numpy's
    ziggurat on the data plane's hot path (a uniform and a SIMD log, in place).
    """
    out = rng.random(n)
    np.subtract(1.0, out, out=out)
    np.log(out, out=out)
    out *= -mean
    return out


def _positive(name: str, x: float) -> float:
    x = float(x)
    if not (x > 0.0 and math.isfinite(x)):
        raise InputError(f"{name}(={x:g}) must be > 0 and finite")
    return x


@dataclass(frozen=True)
class PacketSizes:
    """Packet size law (bits).

    ``fixed``: every packet has ``mean`` bits; ``exponential``: i.i.d. exponential of mean
    ``mean``; ``empirical``: i.i.d. draws (with replacement) from ``values``.
    """

    kind: Literal["fixed", "exponential", "empirical"] = "fixed"
    mean: float = 1.0
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential", "empirical"):
            raise InputError(f"packet size kind(={self.kind!r}) must be fixed|exponential|empirical")
        if self.kind == "empirical":
            if not self.values:
                raise InputError("empirical packet sizes need at least one value")
            if any(not (v > 0 and math.isfinite(v)) for v in self.values):
                raise InputError("empirical packet sizes must all be > 0 and finite")
            object.__setattr__(self, "mean", float(np.mean(self.values)))
        else:
            _positive("packet size mean", self.mean)

    @classmethod
    def empirical(cls, values: Sequence[float]) -> PacketSizes:
        """Sizes drawn with replacement from ``values`` (bits)."""
        return cls("empirical", 1.0, tuple(float(v) for v in values))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` sizes (bits, float64)."""
        if self.kind == "fixed":
            return np.full(n, self.mean)
        if self.kind == "exponential":
            return exponentials(rng, n, self.mean)
        vals = np.asarray(self.values)
        return vals[rng.integers(0, len(vals), n)]


class PacketGenerator(ABC):
    """Stateful generator handing out a stream's packets window by window."""

    def __init__(self) -> None:
        self._t = np.empty(0)
        self._s = np.empty(0)
        self.count = 0  #: packets handed out so far

    @abstractmethod
    def _block(self) -> tuple[np.ndarray, np.ndarray]:
        """The next canonical block (times sorted, sizes)."""

    def take(self, until: float) -> tuple[np.ndarray, np.ndarray]:
        """All not yet handed-out packets arriving strictly before ``until`` (s): (times, sizes)."""
        if not until < math.inf:
            raise InputError(f"until(={until}) must be finite")
        parts_t, parts_s = [], []
        t, s = self._t, self._s
        while len(t) == 0 or t[-1] < until:
            parts_t.append(t)
            parts_s.append(s)
            t, s = self._block()
        k = int(np.searchsorted(t, until, side="left"))
        parts_t.append(t[:k])
        parts_s.append(s[:k])
        self._t, self._s = t[k:], s[k:]
        out_t = parts_t[0] if len(parts_t) == 1 else np.concatenate(parts_t)
        out_s = parts_s[0] if len(parts_s) == 1 else np.concatenate(parts_s)
        self.count += len(out_t)
        return out_t, out_s


class TrafficModel(ABC):
    """A traffic model; ``generator(seedseq)`` gives its packets."""

    sizes: PacketSizes

    @property
    @abstractmethod
    def packet_rate(self) -> float:
        """Long-run mean packet rate (packets/s)."""

    @abstractmethod
    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        """A fresh generator whose random streams derive from ``seedseq``."""


# --------------------------------------------------------------------------- Poisson


class _PoissonGen(PacketGenerator):
    def __init__(self, rate: float, sizes: PacketSizes, seedseq: np.random.SeedSequence) -> None:
        super().__init__()
        self.scale = 1.0 / rate
        self.sizes = sizes
        self.stream_t = child_stream(seedseq, 0)
        self.rng_s = child_generator(seedseq, 1)
        self.last = 0.0

    def _block(self) -> tuple[np.ndarray, np.ndarray]:
        t = exponential_draw(self.stream_t, _BLOCK, self.scale)  # inter-arrival times (s)
        t[0] += self.last
        np.cumsum(t, out=t)
        self.last = float(t[-1])
        return t, self.sizes.draw(self.rng_s, _BLOCK)


@dataclass(frozen=True)
class Poisson(TrafficModel):
    """Poisson packet arrivals of ``rate`` packets/s with i.i.d. ``sizes``."""

    rate: float
    sizes: PacketSizes = field(default_factory=PacketSizes)

    def __post_init__(self) -> None:
        _positive("poisson rate", self.rate)

    @property
    def packet_rate(self) -> float:
        return float(self.rate)

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        return _PoissonGen(self.rate, self.sizes, seedseq)


# --------------------------------------------------------------------------- on-off family


class _OnOffGen(PacketGenerator):
    """One on-off source: while on, one packet per ``mean_size / peak`` seconds of on-time."""

    def __init__(self, on: float, off: float, peak: float, alpha: float | None, sizes: PacketSizes,
                 seedseq: np.random.SeedSequence, sub: int) -> None:
        super().__init__()
        self.on, self.off, self.alpha, self.sizes = on, off, alpha, sizes
        self.gap = sizes.mean / peak
        self.u_last = 0.0  # cumulative on-time so far (s)
        self.rng = child_generator(seedseq, 0, sub)
        self.rng_s = child_generator(seedseq, 1, sub)
        # Stationary start: on with probability on/(on+off). Exponential residuals are exact;
        # for Pareto periods the first period is a fresh one (no stationary residual).
        if self.rng.random() < on / (on + off):
            self.next_on = 0.0
        else:
            self.next_on = float(self._durations(self.off, 1)[0])

    def _durations(self, mean: float, n: int) -> np.ndarray:
        if self.alpha is None:
            return exponentials(self.rng, n, mean)
        a = self.alpha
        out = self.rng.pareto(a, n)  # Lomax; classic Pareto = x_m * (1 + Lomax)
        out += 1.0
        out *= mean * (a - 1.0) / a
        return out

    def _block(self) -> tuple[np.ndarray, np.ndarray]:
        on = self._durations(self.on, _CYCLES)
        off = self._durations(self.off, _CYCLES)
        cyc = on + off
        cyc[0] += self.next_on
        np.cumsum(cyc, out=cyc)  # cyc[j] = start of on period j+1
        starts = np.empty(_CYCLES)
        starts[0] = self.next_on
        starts[1:] = cyc[:-1]
        self.next_on = float(cyc[-1])
        # Fluid-exact packetisation: packet m leaves when the source's cumulative on-time reaches
        # m * gap (the phase carries over from one on period to the next, so no rounding bias).
        u_end = on.copy()
        u_end[0] += self.u_last
        np.cumsum(u_end, out=u_end)
        u_start = np.empty(_CYCLES)
        u_start[0] = self.u_last
        u_start[1:] = u_end[:-1]
        self.u_last = float(u_end[-1])
        m0 = np.ceil(u_start / self.gap).astype(np.int64)
        counts = np.ceil(u_end / self.gap).astype(np.int64) - m0
        total = int(counts.sum())
        first = np.cumsum(counts) - counts
        m = np.arange(total, dtype=np.int64)
        m += np.repeat(m0 - first, counts)
        k = m.astype(np.float64)
        k *= self.gap
        k += np.repeat(starts - u_start, counts)
        return k, self.sizes.draw(self.rng_s, total)


class _MergedGen(PacketGenerator):
    """Several sub-generators merged into one stream (ties: sub-generator order)."""

    def __init__(self, subs: list[PacketGenerator]) -> None:
        super().__init__()
        self.subs = subs

    def _block(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - take() overridden
        raise NotImplementedError

    def take(self, until: float) -> tuple[np.ndarray, np.ndarray]:
        parts = [g.take(until) for g in self.subs]
        if len(parts) == 1:
            t, s = parts[0]
        else:
            t = np.concatenate([p[0] for p in parts])
            s = np.concatenate([p[1] for p in parts])
            order = np.argsort(t, kind="stable")
            t, s = t[order], s[order]
        self.count += len(t)
        return t, s


def _check_onoff(on: float, off: float, peak: float, n: int) -> None:
    _positive("on", on)
    _positive("off", off)
    _positive("peak", peak)
    if n < 1 or int(n) != n:
        raise InputError(f"n(={n}) must be a whole number >= 1")


@dataclass(frozen=True)
class MMOOTraffic(TrafficModel):
    """``n`` independent Markov-modulated on-off sources.

    Each source alternates exponential on periods (mean ``on`` s) and off periods (mean ``off``
    s); while on it sends packets at ``peak`` bits/s, i.e. one every ``sizes.mean / peak`` s.
    """

    on: float
    off: float
    peak: float
    n: int = 1
    sizes: PacketSizes = field(default_factory=PacketSizes)

    def __post_init__(self) -> None:
        _check_onoff(self.on, self.off, self.peak, self.n)

    @property
    def packet_rate(self) -> float:
        return self.n * self.peak / self.sizes.mean * self.on / (self.on + self.off)

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        return _MergedGen([_OnOffGen(self.on, self.off, self.peak, None, self.sizes, seedseq, i)
                           for i in range(self.n)])


@dataclass(frozen=True)
class CorrelatedMMOOTraffic(TrafficModel):
    """``n`` on-off sources of which ``round(corr * n)`` share one modulating chain.

    ``corr = 1``: all ``n`` sources switch together (one chain, peak ``n * peak``: the
    worst-case correlated burst); ``corr = 0``: ``n`` independent sources (as :class:`MMOOTraffic`).
    In between, ``m = round(corr * n)`` sources follow the common chain and ``n - m`` are
    independent, so the knob moves in steps of ``1/n``. The mean rate does not depend on ``corr``.
    """

    on: float
    off: float
    peak: float
    n: int = 1
    corr: float = 1.0
    sizes: PacketSizes = field(default_factory=PacketSizes)

    def __post_init__(self) -> None:
        _check_onoff(self.on, self.off, self.peak, self.n)
        if not 0.0 <= self.corr <= 1.0:
            raise InputError(f"corr(={self.corr:g}) must be in [0, 1]")

    @property
    def coupled(self) -> int:
        """Number of sources on the common chain."""
        return int(round(self.corr * self.n))

    @property
    def packet_rate(self) -> float:
        return self.n * self.peak / self.sizes.mean * self.on / (self.on + self.off)

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        m = self.coupled
        subs: list[PacketGenerator] = []
        if m:
            subs.append(_OnOffGen(self.on, self.off, m * self.peak, None, self.sizes, seedseq, 0))
        subs += [_OnOffGen(self.on, self.off, self.peak, None, self.sizes, seedseq, 1 + i)
                 for i in range(self.n - m)]
        return _MergedGen(subs)


@dataclass(frozen=True)
class ParetoOnOff(TrafficModel):
    """``n`` independent on-off sources with Pareto(``alpha``) on and off periods (heavy tails).

    Period means are ``on`` and ``off`` seconds (scale ``x_m = mean (alpha - 1) / alpha``);
    ``alpha`` in (1, 2) gives infinite variance and long-range dependence.
    """

    on: float
    off: float
    peak: float
    alpha: float
    n: int = 1
    sizes: PacketSizes = field(default_factory=PacketSizes)

    def __post_init__(self) -> None:
        _check_onoff(self.on, self.off, self.peak, self.n)
        if not self.alpha > 1.0:
            raise InputError(f"alpha(={self.alpha:g}) must be > 1")

    @property
    def packet_rate(self) -> float:
        return self.n * self.peak / self.sizes.mean * self.on / (self.on + self.off)

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        return _MergedGen([_OnOffGen(self.on, self.off, self.peak, self.alpha, self.sizes, seedseq, i)
                           for i in range(self.n)])


# --------------------------------------------------------------------------- token bucket


class _GreedyTBGen(PacketGenerator):
    def __init__(self, sigma: float, rho: float, size: float) -> None:
        super().__init__()
        self.sigma, self.rho, self.size = sigma, rho, size
        self.k = 0

    def _block(self) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(self.k + 1, self.k + 1 + _BLOCK, dtype=np.float64)
        self.k += _BLOCK
        k *= self.size
        k -= self.sigma
        k /= self.rho
        np.maximum(k, 0.0, out=k)
        return k, np.full(_BLOCK, self.size)


@dataclass(frozen=True)
class GreedyTokenBucket(TrafficModel):
    """The greedy (worst-case) source of a token bucket ``(sigma bits, rho bits/s)``.

    Packet ``k = 1, 2, ...`` of ``size`` bits is sent at ``max(0, (k size - sigma) / rho)``:
    the whole burst at time 0, then the sustained rate. Deterministic.
    """

    sigma: float
    rho: float
    size: float = 1.0

    def __post_init__(self) -> None:
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise InputError(f"sigma(={self.sigma:g}) must be >= 0 and finite")
        _positive("rho", self.rho)
        _positive("packet size", self.size)

    @property
    def sizes(self) -> PacketSizes:  # type: ignore[override]
        return PacketSizes("fixed", self.size)

    @property
    def packet_rate(self) -> float:
        return self.rho / self.size

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        return _GreedyTBGen(self.sigma, self.rho, self.size)


class _ShapedGen(PacketGenerator):
    def __init__(self, inner: PacketGenerator, sigma: float, rho: float) -> None:
        super().__init__()
        self.inner = inner
        self.sigma, self.rho = sigma, rho
        self.state = np.array([sigma, 0.0, -np.inf])  # tokens, time of tokens, last departure
        self.pend_t = np.empty(0)
        self.pend_s = np.empty(0)

    def _block(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - take() overridden
        raise NotImplementedError

    def take(self, until: float) -> tuple[np.ndarray, np.ndarray]:
        # Shaped times are >= original times, so originals >= until cannot leave before until.
        t, s = self.inner.take(until)
        if len(t):
            if float(s.max()) > self.sigma:
                raise InputError(f"token-bucket shaper: a packet of {float(s.max()):g} bits exceeds "
                                 f"the bucket depth sigma(={self.sigma:g})")
            from federation.dataplane.kernels import token_bucket_shape  # numba: only for shaped traffic

            d = token_bucket_shape(t, s, self.sigma, self.rho, self.state)
            self.pend_t = np.concatenate([self.pend_t, d])
            self.pend_s = np.concatenate([self.pend_s, s])
        k = int(np.searchsorted(self.pend_t, until, side="left"))
        out_t, out_s = self.pend_t[:k], self.pend_s[:k]
        self.pend_t, self.pend_s = self.pend_t[k:], self.pend_s[k:]
        self.count += k
        return out_t, out_s


@dataclass(frozen=True)
class Shaped(TrafficModel):
    """``inner`` traffic passed through a greedy FIFO token-bucket shaper ``(sigma bits, rho bits/s)``.

    A packet leaves the shaper at the earliest time at or after its arrival, and after the
    previous packet, when the bucket (depth ``sigma``, filled at ``rho``) holds its size.
    The output conforms to the arrival curve ``sigma + rho t``.
    """

    inner: TrafficModel
    sigma: float
    rho: float

    def __post_init__(self) -> None:
        _positive("shaper sigma", self.sigma)
        _positive("shaper rho", self.rho)

    @property
    def sizes(self) -> PacketSizes:  # type: ignore[override]
        return self.inner.sizes

    @property
    def packet_rate(self) -> float:
        return min(self.inner.packet_rate, self.rho / self.inner.sizes.mean)

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        return _ShapedGen(self.inner.generator(seedseq), self.sigma, self.rho)


# --------------------------------------------------------------------------- trace replay


class _TraceGen(PacketGenerator):
    def __init__(self, times: np.ndarray, sizes: np.ndarray, duration: float, offset: float, loop: bool) -> None:
        super().__init__()
        self.times, self.sizes, self.duration, self.loop = times, sizes, duration, loop
        self.i = int(np.searchsorted(times, offset, side="left"))  # next packet of the trace
        self.shift = -offset  # replay time = trace time + shift
        self.done = False

    def _block(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.times)
        if self.i >= n:
            if not self.loop:
                if self.done:  # pragma: no cover - take() never asks past the sentinel
                    raise InputError("trace replay: asked past its end")
                self.done = True
                return np.array([math.inf]), np.array([0.0])  # sentinel: never before any finite until
            self.i = 0
            self.shift += self.duration
        j = min(n, self.i + _BLOCK)
        t = self.times[self.i:j] + self.shift
        s = self.sizes[self.i:j].copy()
        self.i = j
        return t, s


@dataclass(frozen=True, eq=False)
class TraceReplay(TrafficModel):
    """A recorded trace replayed: packet ``i`` at ``times[i] - offset`` (s) with ``sizes[i]`` bits.

    The replay starts at the trace's time ``offset`` (its own time 0 is the trace's
    ``offset``); with ``loop`` the trace repeats with period ``duration`` (s) for ever (packet
    ``i`` of round ``k`` at ``times[i] + k duration - offset``), else the replay ends with the
    trace. ``times`` nondecreasing in ``[0, duration)``, ``sizes`` > 0 (the checks of
    :class:`federation.trace.schema.Trace`, which is where traces come from). Deterministic
    (the seed is not used); handed out in blocks of at most 65536 packets, slices of the arrays.
    ``sizes`` (the :class:`PacketSizes` the data plane's load checks read) is the fixed mean.
    """

    times: np.ndarray
    packet_bits: np.ndarray
    duration: float
    offset: float = 0.0
    loop: bool = True

    def __post_init__(self) -> None:
        t = np.asarray(self.times, dtype=np.float64)
        b = np.asarray(self.packet_bits, dtype=np.float64)
        if t.ndim != 1 or b.shape != t.shape or len(t) == 0:
            raise InputError("trace replay: times and packet_bits must be nonempty 1-d arrays of one length")
        _positive("trace duration", self.duration)
        if not (t[0] >= 0 and t[-1] < self.duration):
            raise InputError(f"trace replay: times must lie in [0, duration(={self.duration:g})) s")
        if not (self.offset >= 0 and math.isfinite(self.offset)):
            raise InputError(f"trace offset(={self.offset:g}) must be >= 0 and finite (s)")
        if self.loop:
            object.__setattr__(self, "offset", float(self.offset) % float(self.duration))
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "packet_bits", b)

    @property
    def sizes(self) -> PacketSizes:  # type: ignore[override]
        return PacketSizes("fixed", float(self.packet_bits.mean()))

    @property
    def packet_rate(self) -> float:
        return len(self.times) / self.duration

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        return _TraceGen(self.times, self.packet_bits, float(self.duration), float(self.offset), self.loop)


# --------------------------------------------------------------------------- streams


@dataclass(frozen=True)
class Stream:
    """One tenant's packets: arrival ``times`` (s, sorted), ``sizes`` (bits), ``tenant`` id."""

    tenant: int
    times: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


def generate(model: TrafficModel, *, tenant: int = 0, seed: int = 0, horizon: float | None = None,
             packets: int | None = None) -> Stream:
    """Generate one tenant's stream up to ``horizon`` seconds, or its first ``packets`` packets.

    The random streams are keyed by ``(seed, tenant)``, exactly as in the data plane.
    """
    if (horizon is None) == (packets is None):
        raise InputError("give exactly one of horizon and packets")
    gen = model.generator(np.random.SeedSequence(seed, spawn_key=(tenant, 0)))
    if horizon is not None:
        if not (horizon > 0 and math.isfinite(horizon)):
            raise InputError(f"horizon(={horizon:g}) must be > 0 and finite")
        t, s = gen.take(horizon)
        return Stream(tenant, t, s)
    if packets is None or packets < 1:
        raise InputError(f"packets(={packets}) must be >= 1")
    ts, ss, n, until = [], [], 0, 0.0
    step = max(packets, 1024) / model.packet_rate
    while n < packets:
        until += step
        t, s = gen.take(until)
        ts.append(t)
        ss.append(s)
        n += len(t)
    return Stream(tenant, np.concatenate(ts)[:packets], np.concatenate(ss)[:packets])


def traffic_from_spec(spec: ArrivalSpec, *, packet_size: float = 1.0) -> TrafficModel:
    """The data-plane traffic model of a parsed ``--arrival`` spec (continuous time only).

    ``poisson`` uses its own ``size``/``mean_size``; the on-off kinds and ``token-bucket``
    (a greedy source) send packets of ``packet_size`` bits.
    """
    if spec.time != "continuous":
        raise InputError(f"arrival {spec.text!r}: the data plane simulates continuous time only "
                         "(discrete-time fluid models are checked by the calculus)")
    _positive("packet size", packet_size)
    fixed = PacketSizes("fixed", packet_size)
    k = spec.kind
    if k == "poisson":
        kind: Literal["exponential", "fixed"] = "exponential" if spec["size"] == "exp" else "fixed"
        return Poisson(spec.num("rate"), PacketSizes(kind, spec.num("mean_size")))
    if k == "mmoo":
        return MMOOTraffic(spec.num("on"), spec.num("off"), spec.num("peak"), int(spec.num("n")), fixed)
    if k == "correlated-mmoo":
        return CorrelatedMMOOTraffic(spec.num("on"), spec.num("off"), spec.num("peak"), int(spec.num("n")),
                              spec.num("corr"), fixed)
    if k == "pareto-onoff":
        return ParetoOnOff(spec.num("on"), spec.num("off"), spec.num("peak"), spec.num("alpha"),
                           int(spec.num("n")), fixed)
    if k == "token-bucket":
        return GreedyTokenBucket(spec.num("sigma"), spec.num("rho"), packet_size)
    raise InputError(f"arrival {spec.text!r}: kind {k!r} is not simulated by the data plane")


# --------------------------------------------------------------------------- windows


class _WindowedGen(PacketGenerator):
    def __init__(self, inner: PacketGenerator, start: float, end: float) -> None:
        super().__init__()
        self.inner, self.start, self.end = inner, start, end

    def _block(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - take() overridden
        raise NotImplementedError

    def take(self, until: float) -> tuple[np.ndarray, np.ndarray]:
        if not until < math.inf:
            raise InputError(f"until(={until}) must be finite")
        upto = min(until, self.end) - self.start
        if upto <= 0:
            return np.empty(0), np.empty(0)
        t, s = self.inner.take(upto)
        t = t + self.start
        self.count += len(t)
        return t, s


@dataclass(frozen=True)
class Windowed(TrafficModel):
    """``inner`` traffic switched on at ``start`` s and off at ``end`` s: a tenant that arrives at
    ``start`` and leaves at ``end``.

    The inner source starts afresh at ``start`` (its packets at ``start + t`` for its own times
    ``t``) and packets at or after ``end`` are not sent. Its random streams are the inner model's.
    """

    inner: TrafficModel
    start: float = 0.0
    end: float = math.inf

    def __post_init__(self) -> None:
        if not (self.start >= 0 and math.isfinite(self.start)):
            raise InputError(f"window start(={self.start:g}) must be >= 0 and finite (s)")
        if not self.end > self.start:
            raise InputError(f"window end(={self.end:g}) must be > start(={self.start:g}) (s)")

    @property
    def sizes(self) -> PacketSizes:  # type: ignore[override]
        return self.inner.sizes

    @property
    def packet_rate(self) -> float:
        """The inner model's rate while on (packets/s): what the path must carry during the window."""
        return self.inner.packet_rate

    def generator(self, seedseq: np.random.SeedSequence) -> PacketGenerator:
        return _WindowedGen(self.inner.generator(seedseq), self.start, self.end)
