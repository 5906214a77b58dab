"""Arrival envelopes fitted from a trace: token buckets (deterministic) and an MGF envelope (stochastic).

Every fit works on the trace *closed into a loop* of period ``duration_s`` (the packets of
``[0, duration_s)`` repeating). That covers a replay with or without looping: a window of a
replay that stops at the trace's end holds a subset of the packets of the same window of the loop.

* :func:`fit_token_bucket` -- the exact worst-case burst ``sigma(rho)`` of the trace at a rate;
  :func:`token_bucket_frontier` -- ``(sigma, rho)`` pairs at several rates; :func:`peak_rate` --
  the smallest rate whose bucket needs no more than one (the largest) packet.
* :func:`fit_mgf_envelope` -- a :class:`~federation.calculus.arrivals.TabulatedArrival`
  (``kappa(theta)``, ``beta(theta)`` on a theta grid) for the stochastic calculus;
  :func:`default_thetas` -- the grid it uses unless told.
* :func:`fit_trace` -- all of it at once (:class:`TraceFit`: what a tenant declares).

Units: seconds, bits, bits/s; theta in 1/bit, kappa in 1/s, beta dimensionless.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federation.calculus.arrivals import TabulatedArrival
from federation.errors import InputError
from federation.trace.schema import Trace

__all__ = [
    "TraceFit",
    "fit_token_bucket",
    "token_bucket_frontier",
    "peak_rate",
    "default_thetas",
    "empirical_log_mgf",
    "fit_mgf_envelope",
    "fit_trace",
    "DEFAULT_RHO_FACTOR",
]

#: Default rate of a trace's token bucket, as a multiple of its mean rate (at most its peak).
DEFAULT_RHO_FACTOR = 2.0
_PEAK_RTOL = 1e-9
_LEVELS = 1 << 16  # most distinct window contents per window in the empirical MGF


def _loop2(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Times and sizes of two periods of the looped trace."""
    t, s = trace.times_s, trace.sizes_bits
    return np.concatenate([t, t + trace.duration_s]), np.concatenate([s, s])


def _sigma(t2: np.ndarray, c2: np.ndarray, s2: np.ndarray, rho: float) -> float:
    d = c2 - rho * t2  # C_j - rho t_j
    e = d - s2  # C_{i-1} - rho t_i
    return float(np.max(d - np.minimum.accumulate(e)))


def fit_token_bucket(trace: Trace, rho: float) -> float:
    """The smallest bucket depth ``sigma`` (bits) such that the looped trace conforms to ``(sigma, rho)``.

    Parameters
    ----------
    trace : Trace
    rho : float
        Token rate, bits/s, > 0.

    Returns
    -------
    float
        ``sigma(rho) = max over windows [t_i, t_j] of (bits of packets i..j) - rho (t_j - t_i)``
        (packets are instantaneous), exactly; at least the largest packet; ``inf`` when
        ``rho`` is below the mean rate (the loop's backlog grows without bound).

    Notes
    -----
    With ``C_j`` the cumulative bits up to packet ``j``, ``sigma = max_j [C_j - rho t_j -
    min_{i<=j} (C_{i-1} - rho t_i)]``: one pass with a running minimum, O(n). Two periods of the
    loop hold every window shorter than a period; a longer window holds a whole period more,
    which adds ``total - rho * duration <= 0`` when ``rho`` is at least the mean rate.
    """
    rho = float(rho)
    if not (rho > 0 and math.isfinite(rho)):
        raise InputError(f"rho(={rho!r}) must be > 0 and finite (bits/s)")
    if rho < trace.mean_rate_bps * (1 - 1e-12):
        return math.inf
    t2, s2 = _loop2(trace)
    return _sigma(t2, np.cumsum(s2), s2, rho)


def token_bucket_frontier(trace: Trace, rhos: Sequence[float] | None = None) -> tuple[tuple[float, float], ...]:
    """``(sigma_bits, rho_bps)`` pairs of the looped trace (exact, see :func:`fit_token_bucket`).

    ``rhos`` default: 1, 1.25, 1.5, 2, 3 and 5 times the mean rate, those below the peak, and the
    peak rate (:func:`peak_rate`). Every pair is a token bucket the trace conforms to; sigma is
    nonincreasing in rho.
    """
    if rhos is None:
        peak = peak_rate(trace)
        mean = trace.mean_rate_bps
        rhos = [f * mean for f in (1.0, 1.25, 1.5, 2.0, 3.0, 5.0) if f * mean < peak]
        if math.isfinite(peak):
            rhos.append(peak)
    t2, s2 = _loop2(trace)
    c2 = np.cumsum(s2)
    out = []
    for r in rhos:
        r = float(r)
        if not (r > 0 and math.isfinite(r)):
            raise InputError(f"rho(={r!r}) must be > 0 and finite (bits/s)")
        sigma = math.inf if r < trace.mean_rate_bps * (1 - 1e-12) else _sigma(t2, c2, s2, r)
        out.append((sigma, r))
    return tuple(out)


def peak_rate(trace: Trace) -> float:
    """The trace's peak rate (bits/s): the smallest ``rho`` with ``sigma(rho)`` = the largest packet.

    The rate of a token bucket one packet deep that the looped trace conforms to: for a source
    sending ``L``-bit packets back to back at ``P`` bits/s while on, exactly ``P``. Found by
    bisection on the exact :func:`fit_token_bucket` to a relative ``1e-9``, rounded up (the
    returned rate is one the trace conforms to); ``inf`` if packets arrive together whose
    sizes add to more than the largest one.
    """
    t2, s2 = _loop2(trace)
    c2 = np.cumsum(s2)
    lmax = trace.max_size_bits
    tol = lmax * 1e-12

    def fits(r: float) -> bool:
        return _sigma(t2, c2, s2, r) <= lmax + tol

    # packets at one instant adding to more than one packet: no finite rate
    same = np.diff(t2) == 0
    if same.any():
        run = np.concatenate([[False], same])
        group = np.cumsum(~run)
        if np.bincount(group, s2).max() > lmax + tol:
            return math.inf
    lo = trace.mean_rate_bps
    if fits(lo):
        return lo
    hi = lo * 2
    while not fits(hi):
        lo, hi = hi, hi * 2
        if hi > 1e30:  # pragma: no cover - gaps of 1e-30 s between packets
            return math.inf
    while hi - lo > _PEAK_RTOL * hi:
        mid = 0.5 * (lo + hi)
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def default_thetas(trace: Trace, count: int = 16) -> np.ndarray:
    """The theta grid (1/bit) :func:`fit_mgf_envelope` uses unless told: ``count`` points,
    geometric from ``0.01 / b`` to ``min(100 / b, 30 / L)`` where ``b`` is the trace's burst at
    twice its mean rate (``fit_token_bucket(trace, 2 * mean)``) and ``L`` its largest packet:
    effective bandwidths from near the mean rate to near the peak."""
    b = fit_token_bucket(trace, DEFAULT_RHO_FACTOR * trace.mean_rate_bps)
    hi = min(100.0 / b, 30.0 / trace.max_size_bits)
    lo = min(0.01 / b, hi / 1e4)
    return np.geomspace(lo, hi, count)


def _windows(trace: Trace, smallest: float | None, per_octave: int) -> np.ndarray:
    """Window lengths (s): the period, divided by ``2^(1/per_octave)`` down to ``smallest``
    (default: the mean gap), at most 400."""
    period = trace.duration_s
    small = period / len(trace) if smallest is None else float(smallest)
    if not (small > 0 and math.isfinite(small)):
        raise InputError(f"smallest_window_s(={small!r}) must be > 0 and finite (s)")
    k = max(2, min(400, int(math.floor(per_octave * math.log2(period / small))) + 1))
    return (period / 2.0 ** (np.arange(k) / per_octave))[::-1]


def empirical_log_mgf(trace: Trace, thetas: Sequence[float] | np.ndarray, window_s: float, *,
                      batches: int = 1, _loop: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The log-MGF ``log E exp(theta A(U, U + window_s))`` of the looped trace at a uniformly
    random phase ``U`` in ``[0, duration_s)`` (exact for equal packets, else rounded up; see
    Notes), per theta; shape ``(len(thetas),)`` when ``batches`` is 1, else ``(len(thetas), batches)``: the same mean over the phases of each of ``batches``
    equal consecutive stretches of ``[0, duration_s)``.

    Notes
    -----
    ``A(u) = A(u, u + w)`` is piecewise constant in ``u``: packet ``i`` at ``t_i`` counts for
    ``t_i - w < u <= t_i``. Sorting the ``2n`` change points gives every piece's length and value,
    so the mean is a finite sum, computed in log space (``A`` shifted by its maximum). The values
    are rounded *up* to a grid of step ``Delta`` (the packet size when all packets are equal and
    ``max A`` is at most 65536 of them, else ``max A / 65536``), so the result is exact for
    equal-size packets and otherwise an upper bound, by at most ``theta Delta``: what a
    conservative envelope needs. O(n log n) (three sorted runs) plus O(65536) per theta.
    """
    th = np.asarray(thetas, dtype=np.float64)
    period = trace.duration_s
    w = float(window_s)
    if not (w > 0 and math.isfinite(w)):
        raise InputError(f"window_s(={w!r}) must be > 0 and finite (s)")
    k_full = math.floor(w / period)
    rem = w - k_full * period
    base = k_full * trace.total_bits
    t2, s2 = _loop2(trace) if _loop is None else _loop
    a0 = float(s2[t2 < rem].sum())
    edges_b = np.arange(1, batches) * (period / batches)
    ev = np.concatenate([t2 - rem, t2, edges_b])
    jump = np.concatenate([s2, -s2, np.zeros(len(edges_b))])
    keep = (ev > 0) & (ev < period)
    ev, jump = ev[keep], jump[keep]
    order = np.argsort(ev, kind="stable")
    ev, jump = ev[order], jump[order]
    a = np.empty(len(ev) + 1)
    a[0] = 0.0
    np.cumsum(jump, out=a[1:])
    a += a0  # bits in the window, per piece (beyond the whole periods)
    edges = np.empty(len(ev) + 2)
    edges[0], edges[-1] = 0.0, period
    edges[1:-1] = ev
    length = np.diff(edges)
    # window contents rounded up to a grid of at most _LEVELS levels (exact for equal packets): one
    # exponential per level, summed over the pieces of each batch
    amax = float(a.max())
    size = trace.sizes_bits
    step = float(size[0]) if size.min() == size.max() and amax <= size[0] * _LEVELS else amax / _LEVELS
    step = step if step > 0 else 1.0
    level = np.ceil(a / step - 1e-9).astype(np.int64)
    nlev = int(level.max()) + 1
    blk = np.zeros(len(a), np.int64)
    if batches > 1:
        blk[np.searchsorted(edges[:-1], np.arange(1, batches) * (period / batches), side="left")] = 1
        np.cumsum(blk, out=blk)
    per = np.bincount(blk * nlev + level, length, minlength=batches * nlev)
    lengths = per.reshape(batches, nlev) / (period / batches)
    used = lengths.any(axis=0)
    lengths = lengths[:, used]
    values = np.flatnonzero(used) * step
    amax = float(values[-1])
    x = values - amax
    out = np.empty((len(th), batches))
    per_pass = max(1, 4_000_000 // len(x))  # thetas per pass (memory: per_pass x levels doubles)
    for k0 in range(0, len(th), per_pass):
        part = th[k0:k0 + per_pass]
        m = lengths @ np.exp(np.multiply.outer(x, part))  # (batches, thetas)
        with np.errstate(divide="ignore"):
            out[k0:k0 + per_pass] = (part * (base + amax))[:, None] + np.log(m.T)
    return out[:, 0] if batches == 1 else out


@dataclass(frozen=True)
class _Fitted:
    kappa: np.ndarray
    beta: np.ndarray


def _cover(u: np.ndarray, windows: np.ndarray, thetas: np.ndarray, mean_rate: float) -> _Fitted:
    """The lines ``kappa t + beta`` covering ``u[j, k]`` (log-MGF bounds at ``windows[j]``) on
    every window interval, with ``kappa >= theta * mean_rate`` (see fit_mgf_envelope, Notes)."""
    slopes = np.diff(u, axis=0) / np.diff(windows)[:, None]
    kappa = np.maximum.reduce([slopes.max(axis=0), u[-1] / windows[-1], thetas * mean_rate])
    rho = np.maximum.accumulate(kappa / thetas)  # effective bandwidths nondecreasing in theta
    kappa = rho * thetas
    prev = np.concatenate([[0.0], windows[:-1]])
    beta = np.maximum(0.0, (u - kappa[None, :] * prev[:, None]).max(axis=0))
    return _Fitted(kappa, beta)


def fit_mgf_envelope(
    trace: Trace,
    thetas: Sequence[float] | None = None,
    *,
    inflation: float = 1.0,
    batches: int = 16,
    confidence: float = 0.95,
    smallest_window_s: float | None = None,
    windows_per_octave: int = 8,
) -> TabulatedArrival:
    """An MGF envelope ``E exp(theta A(s, t)) <= exp(kappa(theta) (t - s) + beta(theta))`` of the
    source a trace was sampled from, on a theta grid (see Notes for the method and its margins).

    Parameters
    ----------
    trace : Trace
    thetas : sequence of float, optional
        Increasing grid, 1/bit, > 0 (default :func:`default_thetas`).
    inflation : float
        The Hölder margin ``m >= 0``: the sample log-MGF is taken at ``(1 + m) theta`` and
        divided by ``1 + m`` (0: no margin). Default 1.
    batches : int
        Consecutive stretches of the phase for the batch-means upper limit, >= 2 (default 16).
    confidence : float
        One-sided level of that upper limit, in [0.5, 1) (0.5: the plain mean). Default 0.95.
    smallest_window_s : float, optional
        The shortest window (s); default the mean gap between packets.
    windows_per_octave : int
        Window lengths per factor 2, in [1, 64] (default 8; see Notes: ``beta`` pays for the
        gap between consecutive windows).

    Returns
    -------
    TabulatedArrival
        ``kappa``, ``beta`` at each theta (interpolated between grid points as
        :class:`~federation.calculus.arrivals.TabulatedArrival` documents), the trace's mean
        rate, peak rate and mean packet size.

    Notes
    -----
    **Windows.** Lengths ``w_j = duration / 2^(j/q)`` (``q = windows_per_octave``) from the period
    down to the smallest window (at most 400). For each ``w_j`` and each theta, the log-MGF of
    the looped trace (exact, or rounded up) at a uniformly random phase (:func:`empirical_log_mgf`), separately over ``B = batches``
    consecutive stretches of phases.

    **The margins** (why: a sample MGF of bursty traffic is biased low -- the rare long bursts
    that dominate ``E exp(theta A)`` at large theta and long windows are under-represented in
    a finite trace, and the windows overlap, so their sample is far smaller than it looks):

    1. *Batch-means upper limit on the dependent windows*: with ``M_b`` the MGF over the phases
       of stretch ``b`` (stretches of ``duration/B`` are long compared with the windows that
       matter, so nearly independent), ``U = log(mean M_b + t_{B-1, confidence} sd(M_b)/sqrt(B))``
       -- a Student-t upper limit for the MGF rather than its estimate.
    2. *Hölder inflation*: ``U(theta) = U_sample((1 + m) theta) / (1 + m)``. For any
       distribution ``log E e^{theta A} <= log E e^{(1+m) theta A} / (1 + m)`` (Lyapunov), so
       this stays an upper bound of the trace's own MGF; and where the MGF is dominated by a
       burst ``a`` seen with frequency ``p`` (``~ log p + theta a``), it plans for that burst at
       frequency ``p^{1/(1+m)}`` (``sqrt(p)`` for ``m = 1``): the under-sampled bursts of the
       source are taken as far likelier than the trace shows them.

    **The line.** For each theta, ``kappa`` is the largest of: the slopes between consecutive
    windows ``(U_j - U_{j-1}) / (w_j - w_{j-1})`` (the steepest growth of the log-MGF seen: for
    long windows the asymptotic slope, without the ``1/w`` bias of ``U/w``), ``U_J / w_J`` (the
    longest window) and ``theta * mean rate``; effective bandwidths ``kappa/theta`` are then made
    nondecreasing in theta (a running maximum, only raising kappa). Then
    ``beta = max(0, max_j (U_j - kappa w_{j-1}))`` (``w_{-1} = 0``): since ``A(s, s + w)`` grows
    with ``w``, ``kappa w + beta >= kappa w_{j-1} + beta >= U_j >= log E e^{theta A(w)}`` for
    every ``w`` in ``(w_{j-1}, w_j]`` (the price of the grid: up to ``kappa (w_j - w_{j-1})``, a
    fraction ``1 - 2^(-1/q)`` of the window, in ``beta``); beyond the period, every window holds whole periods of
    ``theta * total <= kappa * duration`` more. So the envelope bounds the looped trace's own
    log-MGF at every window length exactly, and the margins make it conservative for the
    source; ``tests/test_trace_fit.py`` checks it against MMOO traffic whose exact ``kappa`` is
    known, and that the fit without the margins is not.
    """
    th = default_thetas(trace) if thetas is None else np.asarray(thetas, dtype=np.float64)
    if th.ndim != 1 or len(th) == 0 or not np.all(np.isfinite(th)) or not np.all(th > 0):
        raise InputError("thetas must be a nonempty list of finite numbers > 0 (1/bit)")
    if np.any(np.diff(th) <= 0):
        raise InputError("thetas must be strictly increasing")
    inflation = float(inflation)
    if not (inflation >= 0 and math.isfinite(inflation)):
        raise InputError(f"inflation(={inflation!r}) must be >= 0 and finite")
    if not (isinstance(batches, int) and 2 <= batches <= 1024):
        raise InputError(f"batches(={batches!r}) must be a whole number in [2, 1024]")
    if not 0.5 <= confidence < 1:
        raise InputError(f"confidence(={confidence!r}) must be in [0.5, 1)")
    if not (isinstance(windows_per_octave, int) and 1 <= windows_per_octave <= 64):
        raise InputError(f"windows_per_octave(={windows_per_octave!r}) must be a whole number in [1, 64]")
    from scipy.special import stdtrit

    windows = _windows(trace, smallest_window_s, windows_per_octave)
    tq = float(stdtrit(batches - 1, confidence))
    u = np.empty((len(windows), len(th)))
    up = th * (1.0 + inflation)
    loop = _loop2(trace)
    for j, w in enumerate(windows):
        lm = empirical_log_mgf(trace, up, w, batches=batches, _loop=loop)  # (K, B)
        top = lm.max(axis=1, keepdims=True)
        m = np.exp(lm - top)
        mean, sd = m.mean(axis=1), m.std(axis=1, ddof=1)
        u[j] = (top[:, 0] + np.log(mean + tq * sd / math.sqrt(batches))) / (1.0 + inflation)
    fitted = _cover(u, windows, th, trace.mean_rate_bps)
    return TabulatedArrival(
        theta=tuple(th.tolist()),
        kappa_values=tuple(fitted.kappa.tolist()),
        beta_values=tuple(fitted.beta.tolist()),
        mean_rate_bps=trace.mean_rate_bps,
        peak_rate_bps=peak_rate(trace),
        mean_size_bits=trace.mean_size_bits,
        max_size_bits=trace.max_size_bits,
    )


@dataclass(frozen=True)
class TraceFit:
    """What a trace declares: a token bucket, its peak and mean rates, its MGF envelope.

    Attributes
    ----------
    sigma_bits, rho_bps : the token bucket ``(sigma(rho), rho)`` (bits, bits/s).
    peak_bps, mean_rate_bps : :func:`peak_rate` and the mean rate (bits/s).
    mean_size_bits, max_size_bits : packet sizes (bits).
    envelope : the MGF envelope (:func:`fit_mgf_envelope`).
    """

    sigma_bits: float
    rho_bps: float
    peak_bps: float
    mean_rate_bps: float
    mean_size_bits: float
    max_size_bits: float
    envelope: TabulatedArrival


def fit_trace(trace: Trace, *, rho_bps: float | None = None, thetas: Sequence[float] | None = None) -> TraceFit:
    """Token bucket at ``rho_bps`` (default :data:`DEFAULT_RHO_FACTOR` times the mean rate, at most
    the peak) and the MGF envelope (:func:`fit_mgf_envelope` with its default margins)."""
    env = fit_mgf_envelope(trace, thetas)
    peak = env.peak_rate
    rho = min(DEFAULT_RHO_FACTOR * trace.mean_rate_bps, peak) if rho_bps is None else float(rho_bps)
    sigma = fit_token_bucket(trace, rho)
    if not math.isfinite(sigma):
        raise InputError(f"rho_bps(={rho:g}) is below the trace's mean rate ({trace.mean_rate_bps:g} bits/s): "
                         "no finite burst")
    return TraceFit(sigma, rho, peak, trace.mean_rate_bps, trace.mean_size_bits, trace.max_size_bits, env)
