"""Counter-based exponential streams of the data plane, identical in numpy and in the compiled kernels.

A *stream* is one ``uint64`` counter ``s`` (a length-1 array, or one element of an array the
kernels own). Draw ``k = 1, 2, ...`` of a stream started at ``s0`` is a fixed function of the word
``w_k = mix(s0 + k * G)`` alone (SplitMix64: Weyl increment ``G`` and the output function ``mix``
of Steele, Lea & Flood 2014), so a stream consumed in pieces gives the numbers it gives consumed
at once, numpy can draw a block at once, and a compiled loop can draw one by one inline.

Exponentials: the 256-layer ziggurat of Marsaglia & Tsang (2000) in numpy's layout (the low 8
bits of ``w_k`` pick the layer, the top 53 the abscissa). In 98.9 % of draws that one word decides.
Otherwise the draw continues on its own sub-stream, counter ``t = w_k``: the wedge test takes the
uniform ``mix(t + G)``, a retry the word after it; the tail (beyond ``R = 7.697``) adds ``R`` and
starts a fresh ziggurat draw on the sub-stream (the exponential is memoryless), so no logarithm
is ever needed. The only transcendental, ``exp`` in the wedge test, is the C library's in both
implementations (``math.exp``), so both give bit-identical numbers.

Streams are seeded from :class:`numpy.random.SeedSequence` keys (:func:`child_stream` in
:mod:`federation.dataplane.traffic`), one per (tenant, entry domain, domain, purpose), and drawn
by :func:`federation.dataplane.traffic.exponential_draw` (compiled or numpy).
"""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["GOLDEN", "exponential_numpy"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  #: the Weyl increment of a stream's counter
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
S30, S27, S31, S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
LOW8 = np.uint64(0xFF)
TWO53 = 9007199254740992.0
ZR = 7.69711747013104972  # right end of the base layer
_ZV = 0.0039496598225815571993  # area of each layer


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ke, we, fe): accept bounds (53-bit integers), layer widths / 2^53 and densities at the edges."""
    x = np.empty(256)
    x[255] = ZR
    for i in range(254, 0, -1):
        x[i] = -math.log(_ZV / x[i + 1] + math.exp(-x[i + 1]))
    x[0] = 0.0
    q = _ZV * math.exp(ZR)  # width of the base layer, its tail included
    ke = np.empty(256, np.int64)
    ke[0] = math.floor(TWO53 * ZR / q)
    for i in range(1, 256):
        ke[i] = math.floor(TWO53 * x[i - 1] / x[i])
    we = x / TWO53
    we[0] = q / TWO53
    fe = np.exp(-x)
    return ke, we, fe


KE, WE, FE = _ziggurat_tables()


def _mix(z: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64's output function, elementwise (uint64, wrapping), in place on ``z``."""
    tmp = np.empty_like(z) if tmp is None else tmp
    for shift, mult in ((S30, M1), (S27, M2)):
        np.right_shift(z, shift, out=tmp)
        z ^= tmp
        z *= mult
    np.right_shift(z, S31, out=tmp)
    z ^= tmp
    return z


def exponential_numpy(state: np.ndarray, n: int, mean: float = 1.0) -> np.ndarray:
    """``n`` exponential variates of mean ``mean`` from stream ``state[0]`` (advanced), in numpy."""
    s0 = state[0]
    with np.errstate(over="ignore"):
        w = np.arange(1, n + 1, dtype=np.uint64)
        w *= GOLDEN
        w += s0
        state[0] = s0 + np.uint64(n) * GOLDEN if n else s0
    tmp = np.empty_like(w)
    _mix(w, tmp)
    i = w.view(np.uint8)[:: 8] if sys.byteorder == "little" else (w & LOW8).astype(np.intp)  # the low byte
    ri = np.right_shift(w, S11, out=tmp).view(np.int64)
    out = ri * WE[i]
    idx = np.flatnonzero(ri >= KE[i])  # ~1.1 % of draws go on, all at once, round by round
    w = w[idx]
    t = w.copy()  # each one's sub-stream counter
    off = np.zeros(len(idx))
    with np.errstate(over="ignore"):
        while len(idx):
            i = (w & LOW8).astype(np.intp)
            ri = (w >> S11).astype(np.int64)
            x = ri * WE[i]
            ok = ri < KE[i]
            out[idx[ok]] = off[ok] + x[ok]
            go = ~ok
            idx, w, t, off, i, x = idx[go], w[go], t[go], off[go], i[go], x[go]
            t += GOLDEN
            tail = i == 0  # beyond ZR: ZR + a fresh draw
            off[tail] += ZR
            u = (_mix(t.copy()) >> S11).astype(np.int64) * (1.0 / TWO53)
            lim = np.array([math.exp(-v) for v in x])  # the C library's exp, as in the kernels
            ok = ~tail & ((FE[i - 1] - FE[i]) * u + FE[i] < lim)
            out[idx[ok]] = off[ok] + x[ok]
            go = ~ok
            idx, t, off, tail = idx[go], t[go], off[go], tail[go]
            t[~tail] += GOLDEN  # a wedge retry takes the word after the uniform
            w = _mix(t.copy())
    out *= mean
    return out
