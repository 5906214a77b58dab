"""Columnar telemetry of the data plane and streaming summaries of it.

Per domain, a :class:`DomainLog` holds one row per packet the domain saw, in the order the
domain processed them (arrival order, ties by flow then sequence number): flow index, sequence
number within the flow, tenant id, ingress and egress times (s; egress NaN when lost), and
lost / inference-error flags. :class:`Delivered` holds one row per packet that left its last
domain: end-to-end ingress (arrival at its first domain) and egress times.

A run is a sequence of :class:`TelemetryChunk`; :meth:`Telemetry.concat` joins them. The
concatenation of a chunked run equals the unchunked run exactly (per domain, and per flow for
delivered packets). For runs larger than memory, :class:`DelayAccumulator` summarises
end-to-end delays in bounded memory. Estimates with confidence intervals are made from these
counts by :mod:`federation.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from federation.errors import InputError

__all__ = [
    "DomainLog",
    "Delivered",
    "TelemetryChunk",
    "Telemetry",
    "DelayAccumulator",
    "select_ranks",
]


def _cat(arrays: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    if not arrays:
        return np.empty(0, dtype)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


@dataclass(frozen=True, eq=False)
class DomainLog:
    """Packets seen by one domain (0-based ``domain``), columnar; times in seconds."""

    domain: int
    flow: np.ndarray  # int16: index of the source in the simulation
    seq: np.ndarray  # int64: packet number within its flow
    tenant: np.ndarray  # int32
    ingress: np.ndarray  # float64
    egress: np.ndarray  # float64, NaN if lost here
    lost: np.ndarray  # bool
    error: np.ndarray  # bool: inference error here

    def __len__(self) -> int:
        return len(self.seq)

    @property
    def sojourn(self) -> np.ndarray:
        """``egress - ingress`` (s; NaN for lost packets)."""
        return self.egress - self.ingress

    @staticmethod
    def concat(logs: Sequence[DomainLog]) -> DomainLog:
        """Rows of ``logs`` (same domain) one after the other."""
        return DomainLog(
            logs[0].domain,
            *(_cat([getattr(x, f) for x in logs], object) for f in
              ("flow", "seq", "tenant", "ingress", "egress", "lost", "error")),
        )

    def equals(self, other: DomainLog) -> bool:
        """Bit-identical columns (NaN equal to NaN)."""
        return self.domain == other.domain and all(
            np.array_equal(getattr(self, f), getattr(other, f), equal_nan=f in ("ingress", "egress"))
            for f in ("flow", "seq", "tenant", "ingress", "egress", "lost", "error"))


@dataclass(frozen=True, eq=False)
class Delivered:
    """Packets that left their last domain: end-to-end ``ingress``/``egress`` (s), error flag."""

    flow: np.ndarray
    seq: np.ndarray
    tenant: np.ndarray
    ingress: np.ndarray
    egress: np.ndarray
    error: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)

    @property
    def delay(self) -> np.ndarray:
        """End-to-end delay ``egress - ingress`` (s)."""
        return self.egress - self.ingress

    def select(self, mask: np.ndarray) -> Delivered:
        """The rows where ``mask`` holds."""
        return Delivered(*(getattr(self, f)[mask] for f in ("flow", "seq", "tenant", "ingress", "egress", "error")))

    @staticmethod
    def concat(parts: Sequence[Delivered]) -> Delivered:
        """Rows of ``parts`` one after the other."""
        return Delivered(*(_cat([getattr(x, f) for x in parts], object) for f in
                           ("flow", "seq", "tenant", "ingress", "egress", "error")))


@dataclass(frozen=True, eq=False)
class TelemetryChunk:
    """What one chunk of a run produced.

    ``domains`` is None when per-domain logs were not recorded. ``generated`` and ``lost`` count
    packets per flow (lost: dropped anywhere on the path in this chunk).
    """

    domains: tuple[DomainLog, ...] | None
    delivered: Delivered
    generated: np.ndarray
    lost: np.ndarray


@dataclass(frozen=True, eq=False)
class Telemetry:
    """A whole run's telemetry (the concatenation of its chunks)."""

    domains: tuple[DomainLog, ...] | None
    delivered: Delivered
    generated: np.ndarray
    lost: np.ndarray

    @staticmethod
    def concat(chunks: Iterable[TelemetryChunk]) -> Telemetry:
        """Join chunks (of one run) in order."""
        chunks = list(chunks)
        if not chunks:
            raise InputError("no telemetry chunks to join")
        doms = None
        if chunks[0].domains is not None:  # then every chunk of the run has them
            per_chunk = [cast(tuple[DomainLog, ...], c.domains) for c in chunks]
            doms = tuple(DomainLog.concat([d[k] for d in per_chunk]) for k in range(len(chunks[0].domains)))
        return Telemetry(doms, Delivered.concat([c.delivered for c in chunks]),
                         np.sum([c.generated for c in chunks], axis=0),
                         np.sum([c.lost for c in chunks], axis=0))

    def flow(self, f: int) -> Delivered:
        """Delivered packets of flow ``f`` in the order they left the path."""
        return self.delivered.select(self.delivered.flow == f)

    def tenant(self, tenant: int) -> Delivered:
        """Delivered packets of ``tenant`` (all its flows)."""
        return self.delivered.select(self.delivered.tenant == tenant)


def select_ranks(v: np.ndarray, ks: Sequence[int]) -> None:
    """Partition ``v`` in place so that ``v[k]`` is its ``k``-th smallest value for each ``k`` in ``ks``.

    Notes
    -----
    One ``partition`` per rank, each on the part above the previous one (``ks`` ascending): the
    first pass is over all of ``v``, the later ones over ever shorter tails. numpy's
    ``partition`` with several ``kth`` gives the same values but is several times slower.
    """
    lo = 0
    for k in sorted(ks):
        if k >= lo:
            v[lo:].partition(k - lo)
            lo = k + 1


class DelayAccumulator:
    """End-to-end delays summarised in bounded memory.

    Keeps every delay while there are at most ``exact_limit`` of them: quantiles are then exact
    (``numpy.quantile``, method ``inverted_cdf``: the smallest observed value with empirical CDF
    >= p). Beyond that it keeps (i) the exact largest ``ceil(tail * expected) + 1`` delays when the
    total count ``expected`` is known in advance, so that quantiles at ``p >= 1 - tail`` stay exact,
    and (ii) a log-spaced histogram (relative bin width ``rel``) for lower quantiles, which are then
    exact to within a factor ``1 + rel``. Exceedance counts of the ``thresholds`` are always exact,
    and kept per :meth:`add` call in time order (:meth:`exceed_series`), so that an estimate for
    autocorrelated delays (``federation.stats.batch_vif``) can be made in streaming mode too.
    """

    def __init__(self, thresholds: Sequence[float] = (), *, expected: int | None = None,
                 exact_limit: int = 1 << 24, tail: float = 0.011, rel: float = 1e-4) -> None:
        self.thresholds = tuple(float(x) for x in thresholds)
        self.exceed = [0] * len(self.thresholds)
        self._block_exceed: list[list[int]] = [[] for _ in self.thresholds]
        self._block_sizes: list[int] = []
        self.n = 0
        self.expected = expected
        self.exact_limit = exact_limit
        self.tail = tail
        self._parts: list[np.ndarray] = []
        self._buf: np.ndarray | None = None
        self._use_buf = expected is not None and 0 < expected <= exact_limit
        self._kept = 0
        self._streaming = False
        self._k = 0
        self._top = np.empty(0)
        self._cut = -np.inf
        self._lrel = math.log1p(rel)
        self._lo = math.log(1e-12)
        self._nbins = int((math.log(1e7) - self._lo) / self._lrel) + 2
        self._hist: np.ndarray | None = None
        self._hpend: list[np.ndarray] = []
        self._hpend_n = 0
        self._tpend: list[np.ndarray] = []
        self._tpend_n = 0
        self._zeros = 0  # delays <= 1e-12 s (incl. rounding noise below 0)
        self.max = -np.inf

    def add(self, delays: np.ndarray, copy: bool = True) -> None:
        """Account for more delays (s); ``copy=False`` lets the accumulator keep ``delays`` itself."""
        if len(delays) == 0:
            return
        n0 = self.n
        self.n += len(delays)
        self._block_sizes.append(len(delays))
        for k, d in enumerate(self.thresholds):
            c = int(np.count_nonzero(delays > d))
            self.exceed[k] += c
            self._block_exceed[k].append(c)
        self.max = max(self.max, float(delays.max()))
        if not self._streaming:
            if self._use_buf and self._buf is None:
                assert self.expected is not None  # _use_buf
                self._buf = np.empty(self.expected)  # one copy, no final concatenation
            if self._buf is not None and self.n <= len(self._buf):
                self._buf[n0:self.n] = delays
            else:
                if self._buf is not None:  # more than expected: fall back to a list of parts
                    self._parts, self._buf = [self._buf[:n0]], None
                self._use_buf = False
                self._parts.append(np.array(delays, dtype=np.float64, copy=copy))
            self._kept += len(delays)
            if self._kept > self.exact_limit:
                self._go_streaming()
            return
        self._stream(delays)

    def _go_streaming(self) -> None:
        if self._buf is not None:
            self._parts, self._buf = [self._buf[:self._kept]], None
        self._use_buf = False
        self._streaming = True
        self._hist = np.zeros(self._nbins, np.int64)
        total = self.expected if self.expected is not None else 0
        self._k = int(math.ceil(self.tail * total)) + 1 if total else 0
        parts, self._parts = self._parts, []
        for p in parts:
            self._stream(p)

    def _stream(self, d: np.ndarray) -> None:
        # Work per call is O(len(d)): histogram indices and tail candidates are only buffered here
        # and folded in (one bincount, one partition) when the buffers grow large.
        pos = d > 1e-12
        self._zeros += int(len(d) - np.count_nonzero(pos))
        x = np.log(d[pos])
        x -= self._lo
        x *= 1.0 / self._lrel
        np.minimum(x, self._nbins - 1, out=x)
        self._hpend.append(x.astype(np.int32))
        self._hpend_n += len(x)
        if self._hpend_n >= 1 << 22:
            self._fold_hist()
        if self._k:
            new = d[d > self._cut]
            if len(new):
                self._tpend.append(new)
                self._tpend_n += len(new)
                if len(self._top) + self._tpend_n > 2 * self._k:
                    self._fold_top()

    def _fold_hist(self) -> None:
        if self._hpend:
            assert self._hist is not None
            self._hist += np.bincount(np.concatenate(self._hpend), minlength=self._nbins)
            self._hpend, self._hpend_n = [], 0

    def _fold_top(self) -> None:
        if self._tpend:
            top = np.concatenate([self._top, *self._tpend])
            self._tpend, self._tpend_n = [], 0
            if len(top) > self._k:
                top = np.partition(top, len(top) - self._k)[-self._k:]
                self._cut = float(top.min())
            self._top = top

    def exceed_series(self, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(exceedances of threshold ``k``, delays) per :meth:`add` call, in time order."""
        return np.array(self._block_exceed[k], np.int64), np.array(self._block_sizes, np.int64)

    @property
    def exact(self) -> bool:
        """True while every delay is kept (all quantiles exact)."""
        return not self._streaming

    def values(self) -> np.ndarray:
        """All delays (only while :attr:`exact`)."""
        if self._streaming:
            raise InputError("delays were summarised in streaming mode; values are not kept")
        if self._buf is not None:
            return self._buf[:self.n]
        return _cat(self._parts, np.float64) if self._parts else np.empty(0)

    def quantiles(self, ps: Sequence[float]) -> dict[float, float]:
        """The ``p``-quantile of the delays for each ``p`` (NaN when empty)."""
        if self.n == 0:
            return {p: math.nan for p in ps}
        if not self._streaming:
            v = self.values()
            if self._buf is None:
                self._parts = [v]
            ranks = {p: min(max(1, math.ceil(p * self.n - 1e-7)), self.n) for p in ps}
            select_ranks(v, sorted({r - 1 for r in ranks.values()}))
            return {p: float(v[r - 1]) for p, r in ranks.items()}
        out: dict[float, float] = {}
        self._fold_hist()
        self._fold_top()
        top = np.sort(self._top)
        assert self._hist is not None
        cum = np.cumsum(self._hist)
        for p in ps:
            rank = min(max(1, math.ceil(p * self.n - 1e-7)), self.n)  # 1-based rank of the inverted-cdf quantile
            from_top = self.n - rank  # number of values above it
            if self._k and from_top < min(self._k, len(top)):
                out[p] = float(top[len(top) - 1 - from_top])
            elif rank <= self._zeros:
                out[p] = 0.0
            else:
                b = int(np.searchsorted(cum, rank - self._zeros, side="left"))
                out[p] = math.exp(self._lo + (b + 0.5) * self._lrel)
        return out
