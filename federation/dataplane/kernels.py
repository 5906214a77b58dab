"""Compiled per-packet loops of the data plane (numba, ``@njit(cache=True)``).

Only what cannot be vectorised lives here: servers whose decisions depend on the queue content
(finite buffers, latency ceilings, time-varying capacity, batching, the work-conserving
fair-queueing scheduler), the Gilbert-Elliott loss chain and the token-bucket shaper; and, for
long runs, the exponential streams of :mod:`federation.dataplane.rng` and a whole tandem of plain
FIFO / rate-partition hops in one packet-by-packet pass (:func:`tandem_exp`). Otherwise plain FIFO
and rate-partition hops are max-plus scans in numpy (``federation.dataplane.engine``).

Conventions. Times in seconds, work in bits, rates in bits/s. A server's capacity is
``rate * fac[k]`` on segment ``k`` of the piecewise-constant schedule with breakpoints ``bps``
(sorted): ``fac[0]`` applies before ``bps[0]``, ``fac[k]`` on ``[bps[k-1], bps[k])`` and
``fac[-1]`` after the last breakpoint (it must be > 0). Every kernel carries its state in a
small float64 array that the caller keeps between chunks, so processing a stream in pieces
gives bit-identical results to processing it at once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from federation.dataplane.rng import FE, GOLDEN, KE, LOW8, M1, M2, S11, S27, S30, S31, TWO53, WE, ZR

__all__ = [
    "finish_time",
    "fifo_general",
    "fifo_batch",
    "scfq",
    "gilbert_elliott",
    "token_bucket_shape",
    "exp_fill",
    "tandem_exp",
    "tandem_poisson",
    "tandem_scfq_poisson",
]


@njit(cache=True)
def finish_time(s: float, work: float, rate: float, bps: np.ndarray, fac: np.ndarray) -> float:
    """Time at which ``work`` bits started at ``s`` complete under the capacity schedule."""
    if work <= 0.0:
        return s
    m = len(bps)
    if m == 0:
        return s + work / (rate * fac[0])
    k = np.searchsorted(bps, s, side="right")
    while True:
        cap = rate * fac[k]
        end = bps[k] if k < m else np.inf
        if cap > 0.0:
            dt = work / cap
            if s + dt <= end:
                return s + dt
            work -= cap * (end - s)
        s = end
        k += 1


@njit(cache=True)
def _work_between(a: float, b: float, rate: float, bps: np.ndarray, fac: np.ndarray) -> float:
    """Capacity (bits) offered on ``[a, b]``."""
    if b <= a:
        return 0.0
    k = np.searchsorted(bps, a, side="right")
    m = len(bps)
    total = 0.0
    s = a
    while s < b:
        end = bps[k] if k < m else np.inf
        e = min(end, b)
        total += rate * fac[k] * (e - s)
        s = e
        k += 1
    return total


@njit(cache=True)
def fifo_general(A: np.ndarray, w: np.ndarray, rate: float, bps: np.ndarray, fac: np.ndarray,
                 buffer: float, ceil_budget: float, state: np.ndarray) -> np.ndarray:
    """FIFO work-conserving server with a finite buffer, a latency ceiling and variable capacity.

    A packet arriving at ``A[i]`` with ``w[i]`` bits is dropped (departure NaN) if the
    unfinished work it finds plus its own exceeds ``buffer`` bits, or if its departure would
    come more than ``ceil_budget`` seconds after its arrival; dropped packets use no capacity.
    ``state[0]`` is the last departure time (``-inf`` initially).
    """
    n = len(A)
    D = np.empty(n)
    last = state[0]
    for i in range(n):
        a = A[i]
        if buffer < np.inf and last > a:
            if _work_between(a, last, rate, bps, fac) + w[i] > buffer:
                D[i] = np.nan
                continue
        d = finish_time(max(a, last), w[i], rate, bps, fac)
        if d - a > ceil_budget:
            D[i] = np.nan
            continue
        D[i] = d
        last = d
    state[0] = last
    return D


@njit(cache=True)
def fifo_batch(A: np.ndarray, w: np.ndarray, rate: float, bps: np.ndarray, fac: np.ndarray,
               max_batch: int, horizon: float, state: np.ndarray) -> tuple[np.ndarray, int]:
    """FIFO batching server: when free, it takes up to ``max_batch`` waiting packets at once.

    A batch's service needs the largest work of its members (parallel inference). A batch is
    only started before ``horizon`` (arrivals after it are unknown); returns departures of the
    served prefix (NaN beyond) and its length. ``state[0]``: time the server is next free.
    """
    n = len(A)
    D = np.full(n, np.nan)
    t = state[0]
    i = 0
    while i < n:
        s = max(t, A[i])
        if s >= horizon:
            break
        j = i
        wmax = 0.0
        while j < n and j - i < max_batch and A[j] <= s:
            wmax = max(wmax, w[j])
            j += 1
        t = finish_time(s, wmax, rate, bps, fac)
        for k in range(i, j):
            D[k] = t
        i = j
    state[0] = t
    return D, i


@njit(cache=True)
def scfq(A: np.ndarray, w: np.ndarray, flow: np.ndarray, cmap: np.ndarray, tag_pre: np.ndarray,
         crate: np.ndarray, rate: float, bps: np.ndarray, fac: np.ndarray, horizon: float, state: np.ndarray,
         flast: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-clocked fair queueing (Golestani 1994): work-conserving WFQ with reserved rates.

    Packet ``i`` of flow ``flow[i]`` belongs to class ``c = cmap[flow[i]]``, which holds the reserved
    rate ``crate[c]`` (bits/s, ``sum(crate) <= rate``). On arrival a
    packet gets the finish tag ``F = max(F_last[c], v) + w / crate[c]`` where ``v`` is the tag of the
    packet in service (reset to 0, with all ``F_last``, when the server idles); the server always
    sends the head-of-line packet with the smallest tag (ties: lower class) at the full link
    ``rate``. Packets are given in arrival order; the first ``len(tag_pre)`` of them were admitted
    in an earlier call and keep their tags ``tag_pre``. No service starts at or after ``horizon``.

    Returns ``(D, order, F)``: departures (NaN for packets still queued), the served packets in
    service (= departure) order, and the tags. ``state = [t_free, v]`` and ``flast`` carry over.
    """
    n = len(A)
    ncls = len(crate)
    D = np.full(n, np.nan)
    F = np.full(n, np.nan)
    order = np.empty(n, np.int64)
    nxt = np.full(n, -1, np.int64)
    head = np.full(ncls, -1, np.int64)
    tail = np.full(ncls, -1, np.int64)
    hf = np.full(ncls, np.inf)  # tag of each class's head-of-line packet (inf: empty)
    npre = len(tag_pre)
    inv = 1.0 / crate
    const = len(bps) == 0
    irate = 1.0 / (rate * fac[0])
    t = state[0]
    v = state[1]
    nq = 0
    ia = 0
    ns = 0
    while True:
        while ia < n and A[ia] <= t:
            c = cmap[flow[ia]]
            if ia < npre:
                f = tag_pre[ia]
            else:
                f = max(flast[c], v) + w[ia] * inv[c]
                flast[c] = f
            F[ia] = f
            if head[c] < 0:
                head[c] = ia
                hf[c] = f
            else:
                nxt[tail[c]] = ia
            tail[c] = ia
            nq += 1
            ia += 1
        if nq == 0:
            if ia >= n or A[ia] >= horizon:
                break
            v = 0.0
            for c in range(ncls):
                flast[c] = 0.0
            t = A[ia]
            continue
        if t >= horizon:
            break
        best = 0
        bf = hf[0]
        for c in range(1, ncls):  # branch-free: which class is smallest is unpredictable
            x = hf[c]
            lt = x < bf
            bf = x if lt else bf
            best = c if lt else best
        i = head[best]
        j = nxt[i]
        head[best] = j
        if j < 0:
            tail[best] = -1
            hf[best] = np.inf
        else:
            hf[best] = F[j]
        nq -= 1
        v = bf
        if const:
            t = t + w[i] * irate
        else:
            t = finish_time(t, w[i], rate, bps, fac)
        D[i] = t
        order[ns] = i
        ns += 1
    state[0] = t
    state[1] = v
    return D, order[:ns], F


@njit(cache=True)
def gilbert_elliott(u_tr: np.ndarray, u_loss: np.ndarray, p_gb: float, p_bg: float, loss_good: float,
                    loss_bad: float, state: np.ndarray) -> np.ndarray:
    """Gilbert-Elliott burst loss over a packet sequence.

    Before each packet the channel moves good->bad with probability ``p_gb`` and bad->good with
    ``p_bg``; the packet is lost with probability ``loss_bad`` (bad) or ``loss_good`` (good).
    ``state[0]`` is 1.0 while bad.
    """
    n = len(u_tr)
    lost = np.empty(n, np.bool_)
    bad = state[0] > 0.5
    for k in range(n):
        if bad:
            if u_tr[k] < p_bg:
                bad = False
        elif u_tr[k] < p_gb:
            bad = True
        lost[k] = u_loss[k] < (loss_bad if bad else loss_good)
    state[0] = 1.0 if bad else 0.0
    return lost


@njit(cache=True)
def token_bucket_shape(t: np.ndarray, s: np.ndarray, sigma: float, rho: float,
                       state: np.ndarray) -> np.ndarray:
    """Greedy FIFO token-bucket shaper (depth ``sigma`` bits, rate ``rho`` bits/s).

    ``state = [tokens, time of tokens, last departure]``; returns the departure times.
    """
    n = len(t)
    out = np.empty(n)
    tok = state[0]
    tt = state[1]
    last = state[2]
    for k in range(n):
        d = max(t[k], last)
        tok = min(sigma, tok + rho * (d - tt))
        tt = d
        if tok < s[k]:
            d += (s[k] - tok) / rho
            tok = s[k]
            tt = d
        tok -= s[k]
        out[k] = d
        last = d
    state[0] = tok
    state[1] = tt
    state[2] = last
    return out


# --------------------------------------------------------------------------- random streams
# The counter-based exponential streams of federation.dataplane.rng, drawn inline (same numbers).


@njit(cache=True, inline="always")
def _mix(s: np.uint64) -> np.uint64:
    """SplitMix64's output function of counter value ``s``."""
    z = (s ^ (s >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


@njit(cache=True)
def _exp_slow(w: np.uint64) -> float:
    """The rest of a draw whose first word ``w`` fell outside its layer's rectangle."""
    t = w
    off = 0.0
    while True:
        i = np.int64(w & LOW8)
        ri = np.int64(w >> S11)
        x = float(ri) * WE[i]
        if ri < KE[i]:
            return off + x
        t = t + GOLDEN
        if i == 0:  # the tail beyond ZR: memoryless, so ZR + a fresh draw
            off += ZR
            w = _mix(t)
            continue
        u = float(np.int64(_mix(t) >> S11)) * (1.0 / TWO53)
        if (FE[i - 1] - FE[i]) * u + FE[i] < math.exp(-x):
            return off + x
        t = t + GOLDEN
        w = _mix(t)


@njit(cache=True, inline="always")
def _exp1(s: np.uint64) -> tuple[float, np.uint64]:
    """The next standard exponential of the stream at counter ``s``, and the advanced counter."""
    s = s + GOLDEN
    w = _mix(s)
    i = np.int64(w & LOW8)
    ri = np.int64(w >> S11)
    if ri < KE[i]:
        return float(ri) * WE[i], s
    return _exp_slow(w), s


@njit(cache=True)
def exp_fill(state: np.ndarray, out: np.ndarray, mean: float) -> None:
    """Fill ``out`` with exponential variates of mean ``mean`` from the stream ``state[0]`` (advanced)."""
    s = state[0]
    for i in range(len(out)):
        x, s = _exp1(s)
        out[i] = x * mean
    state[0] = s


@njit(cache=True)
def tandem_exp(t: np.ndarray, flow: np.ndarray, streams: np.ndarray, mean: np.ndarray, rate: np.ndarray,
               cls: np.ndarray, inv: np.ndarray, partition: np.ndarray, delay: np.ndarray,
               csum: np.ndarray, cmax: np.ndarray) -> np.ndarray:
    """Packets through a tandem of FIFO / static-partition hops with exponential service, packet by packet.

    Packet ``i`` (arrival ``t[i]`` at the first hop, in arrival order) of flow ``f = flow[i]`` draws its
    service at hop ``h`` from stream ``streams[f * len(mean) + h]``: ``x = Exp(1) * mean[h]`` s at the
    full rate. A FIFO hop serves it in ``x``; a partition hop in the server of class
    ``c = cls[h, f]``, in ``x * rate[h] * inv[h, c]`` (``inv``: 1 / the class rate). It reaches the
    next hop ``delay[h]`` s after its departure. Returns the egress times of the last hop.

    Notes
    -----
    Each server runs the max-plus form of the Lindley recursion with the arithmetic of
    :func:`federation.dataplane.engine.max_plus_fifo`: ``M_n = max(M_{n-1}, A_n - C_{n-1})``,
    ``C_n = C_{n-1} + S_n``, ``D_n = M_n + C_n`` (``csum`` = C, ``cmax`` = M, per hop and class,
    carried between calls), so the result is bit-identical to the hop-by-hop numpy path.
    """
    n = len(t)
    nh = len(mean)
    out = np.empty(n)
    for i in range(n):
        f = flow[i]
        a = t[i]
        for h in range(nh):
            k = f * nh + h
            x, streams[k] = _exp1(streams[k])
            x = x * mean[h]
            c = 0
            if partition[h]:
                c = cls[h, f]
                x = x * rate[h] * inv[h, c]
            m = a - csum[h, c]
            mx = cmax[h, c]
            if m > mx:
                mx = m
            cmax[h, c] = mx
            cs = csum[h, c] + x
            csum[h, c] = cs
            a = (mx + cs) + delay[h]
        out[i] = a
    return out


@njit(cache=True)
def tandem_poisson(until: float, limit0: int, stop: np.ndarray, pstate: np.ndarray, pnext: np.ndarray, scale: np.ndarray,
                   count: np.ndarray, t_out: np.ndarray, f_out: np.ndarray, s_out: np.ndarray, e_out: np.ndarray,
                   streams: np.ndarray, mean: np.ndarray, rate: np.ndarray, cls: np.ndarray, inv: np.ndarray,
                   partition: np.ndarray, delay: np.ndarray, csum: np.ndarray, cmax: np.ndarray) -> int:
    """:func:`tandem_exp` fed by Poisson flows generated inline: all packets arriving before ``until``.

    Flow ``f``'s next arrival is ``pnext[f]`` (s); the one after it is ``pnext[f] + Exp(1) * scale[f]``
    with the draw from stream ``pstate[f]`` (the arithmetic of the Poisson generator of
    :mod:`federation.dataplane.traffic`: a carried cumulative sum). Packets are handed out in arrival
    order (ties: lower flow first), numbered per flow by ``count``; after flow 0's ``limit0``-th packet
    (``limit0 < 0``: no limit) flow 0 stops and the others only send up to that packet's time
    (``stop[0]``: arrivals before it, ``inf`` until then; kept by the caller).
    Writes arrival, flow, number and egress of each packet into the ``*_out`` arrays and returns how
    many it wrote: ``len(t_out)`` if they filled up (call again), fewer once the window is done.
    """
    nf = len(pnext)
    nh = len(mean)
    cap = len(t_out)
    until = min(until, stop[0])
    k = 0
    while k < cap:
        f = 0
        tf = pnext[0]
        for g in range(1, nf):  # branch-free: which flow is next is unpredictable
            x = pnext[g]
            lt = x < tf
            tf = x if lt else tf
            f = g if lt else f
        if not tf < until:
            break
        t_out[k] = tf
        f_out[k] = f
        s_out[k] = count[f]
        count[f] += 1
        x, pstate[f] = _exp1(pstate[f])
        pnext[f] = tf + x * scale[f]
        if f == 0 and count[0] == limit0:
            pnext[0] = np.inf
            stop[0] = np.nextafter(tf, np.inf)
            until = min(until, stop[0])
        a = tf
        for h in range(nh):
            j = f * nh + h
            x, streams[j] = _exp1(streams[j])
            x = x * mean[h]
            c = 0
            if partition[h]:
                c = cls[h, f]
                x = x * rate[h] * inv[h, c]
            m = a - csum[h, c]
            mx = cmax[h, c]
            if m > mx:
                mx = m
            cmax[h, c] = mx
            cs = csum[h, c] + x
            csum[h, c] = cs
            a = (mx + cs) + delay[h]
        e_out[k] = a
        k += 1
    return k


@njit(cache=True)
def _lookahead(la_f: np.ndarray, la_i: np.ndarray, la: np.ndarray, gen_until: float, limit0: int, stop: np.ndarray,
               pstate: np.ndarray, pnext: np.ndarray, scale: np.ndarray, count: np.ndarray, streams: np.ndarray,
               mean: np.ndarray, rate: np.ndarray) -> None:
    """Generate the next ``len(la_f)`` Poisson packets (fewer if the flows stop): ``la_f[k] = [t, w_0 ...]``
    (arrival, work in bits at each hop), ``la_i[k] = [flow, seq]``; ``la = [0, how many]``.

    The draws happen here, in a loop of independent draws, rather than one by one on the
    queueing loop's dependent path; each stream is still drawn in packet order.
    """
    nf = len(pnext)
    nh = len(mean)
    gen = min(gen_until, stop[0])
    k = 0
    while k < la_f.shape[0]:
        ta = pnext[0]
        f = 0
        for g in range(1, nf):  # branch-free: which flow is next is unpredictable
            x = pnext[g]
            lt = x < ta
            ta = x if lt else ta
            f = g if lt else f
        if not ta < gen:
            break
        la_f[k, 0] = ta
        la_i[k, 0] = f
        la_i[k, 1] = count[f]
        count[f] += 1
        x, pstate[f] = _exp1(pstate[f])
        pnext[f] = ta + x * scale[f]
        if f == 0 and count[0] == limit0:
            pnext[0] = np.inf
            stop[0] = np.nextafter(ta, np.inf)
            gen = min(gen, stop[0])
        for h in range(nh):
            j = f * nh + h
            x, streams[j] = _exp1(streams[j])
            la_f[k, 1 + h] = x * mean[h] * rate[h]
        k += 1
    la[0] = 0
    la[1] = k


#: The end of the SCFQ kernel's free list (packet indices are unsigned: no wrap-around test per access).
NIL = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True)
def tandem_scfq_poisson(until: float, gen_until: float, limit0: int, stop: np.ndarray, pstate: np.ndarray,
                        pnext: np.ndarray, scale: np.ndarray, count: np.ndarray, streams: np.ndarray,
                        mean: np.ndarray, rate: np.ndarray, irate: np.ndarray, cls: np.ndarray, inv: np.ndarray,
                        delay: np.ndarray, la_f: np.ndarray, la_i: np.ndarray, la: np.ndarray,
                        hop_f: np.ndarray, flast: np.ndarray, qtail: np.ndarray, hf: np.ndarray, ttail: np.ndarray,
                        pk_a0: np.ndarray, pk_t: np.ndarray, pk_tag: np.ndarray, pk_w: np.ndarray, pk_next: np.ndarray,
                        pk_flow: np.ndarray, pk_seq: np.ndarray, free: np.ndarray, prog: np.ndarray,
                        out_a0: np.ndarray, out_eg: np.ndarray, out_flow: np.ndarray, out_seq: np.ndarray,
                        nout: np.ndarray) -> int:
    """Poisson flows (generated inline, as in :func:`tandem_poisson`) through a tandem of SCFQ hops.

    Hop by hop, each hop runs the :func:`scfq` server (same decisions, same arithmetic) on the packets
    that reach it: at hop 0 the new packets before ``until`` (and before ``gen_until`` and ``stop[0]``,
    which flow 0's ``limit0``-th packet sets), at hop ``h`` those in transit from hop ``h - 1``, up to
    the horizon the engine's hop-by-hop path uses (``max(server free, horizon before) + delay``).
    Exponential work at hop ``h``: ``Exp(1) * mean[h] * rate[h]`` bits from stream ``streams[f * nh + h]``,
    drawn when the packet leaves its source, as on the hop-by-hop path, into the lookahead block
    ``la_f``/``la_i`` (:func:`_lookahead`; ``la = [next, length]``, kept by the caller).

    State (kept by the caller): ``hop_f[h] = [t, v, nq]`` (server free, virtual time, queued); per hop
    and class ``flast`` and ``hf`` (the head's tag, ``inf``: empty). The packet pool, one array per
    field, indexed by ``uint64`` packet ``p``: ``pk_a0`` (arrival at hop 0), ``pk_t`` (arrival at
    the hop it waits for), ``pk_tag`` (its successor's tag), ``pk_w[h]`` (work at hop ``h``, bits),
    ``pk_next`` (the next packet of its list), ``pk_flow``, ``pk_seq``. The first ``nh * (ncls + 1)``
    packets are sentinels: ``h * ncls + c`` heads the queue of class ``c`` at hop ``h``
    (``qtail[h, c]``: its last packet, the sentinel when empty), ``nh * ncls + h`` the packets in
    transit to hop ``h`` (``ttail[h]``), so that appending and removing take no branch. ``free[0]``
    heads the free list (:data:`NIL`: empty); ``prog = [hop, horizon]`` where an interrupted call
    resumes (``hop < 0``: a new call).
    Delivered packets go to ``out_a0``, ``out_eg``, ``out_flow``, ``out_seq``, ``nout[0]`` of them.
    Returns 0 when done, 1 when the output is full, 2 when the pool is (grow it): then call again.
    """
    nh = len(mean)
    ncls = qtail.shape[1]
    cap = len(out_a0)
    INF = np.inf
    h0 = 0
    H = until
    if prog[0] >= 0:
        h0 = int(prog[0])
        H = prog[1]
    # the next new packet (INF: none)
    if la[0] >= la[1]:
        _lookahead(la_f, la_i, la, gen_until, limit0, stop, pstate, pnext, scale, count, streams, mean, rate)
    ta = la_f[la[0], 0] if la[0] < la[1] else INF
    for h in range(h0, nh):
        t = hop_f[h, 0]
        v = hop_f[h, 1]
        nq = np.int64(hop_f[h, 2])
        q0 = h * ncls  # the sentinel of class 0
        ts = np.uint64(nh * ncls + h)  # the sentinel of the transit list
        wh = pk_w[h]
        ir = irate[h]
        dl = delay[h]
        first = h == 0
        last_hop = h == nh - 1
        while True:
            # admit every packet that reached the hop by t
            while True:
                if first:
                    if not (ta <= t and ta < H):
                        break
                    p = free[0]
                    if p == NIL:
                        hop_f[h, 0] = t
                        hop_f[h, 1] = v
                        hop_f[h, 2] = nq
                        prog[0] = h
                        prog[1] = H
                        return 2
                    free[0] = pk_next[p]
                    q = la[0]
                    f = la_i[q, 0]
                    pk_a0[p] = ta
                    pk_flow[p] = f
                    pk_seq[p] = la_i[q, 1]
                    for hh in range(nh):
                        pk_w[hh, p] = la_f[q, 1 + hh]
                    la[0] = q + 1
                    if la[0] >= la[1]:
                        _lookahead(la_f, la_i, la, gen_until, limit0, stop, pstate, pnext, scale, count, streams,
                                   mean, rate)
                    ta = la_f[la[0], 0] if la[0] < la[1] else INF
                else:
                    tt = ttail[h]
                    p = pk_next[ts]
                    if tt == ts or not pk_t[p] <= t:
                        break
                    pk_next[ts] = pk_next[p]
                    ttail[h] = ts if p == tt else tt
                    f = pk_flow[p]
                w = wh[p]
                c = cls[h, f]
                fl = flast[h, c]
                tag = (fl if fl > v else v) + w * inv[h, c]
                flast[h, c] = tag
                qt = qtail[h, c]
                pk_next[qt] = p  # the sentinel's next is the head
                pk_tag[qt] = tag  # the predecessor keeps its successor's tag: a dequeue reads only its own
                hc = hf[h, c]
                hf[h, c] = tag if qt == np.uint64(q0 + c) else hc
                qtail[h, c] = p
                nq += 1
            if nq == 0:  # idle until the next arrival, if it is known
                if first:
                    a = ta if ta < H else INF
                else:
                    p = pk_next[ts]
                    a = pk_t[p] if ttail[h] != ts and pk_t[p] < H else INF
                if a == INF:
                    break
                v = 0.0
                for cc in range(ncls):
                    flast[h, cc] = 0.0
                t = a
                continue
            if t >= H:
                break
            if last_hop and nout[0] >= cap:
                hop_f[h, 0] = t
                hop_f[h, 1] = v
                hop_f[h, 2] = nq
                prog[0] = h
                prog[1] = H
                return 1
            if ncls == 8:  # a tree, three compares deep (ties: the lower class, as the scan)
                x0, x1, x2, x3 = hf[h, 0], hf[h, 1], hf[h, 2], hf[h, 3]
                x4, x5, x6, x7 = hf[h, 4], hf[h, 5], hf[h, 6], hf[h, 7]
                lt = x1 < x0  # integer selects as arithmetic: a branch here would be unpredictable
                m01 = x1 if lt else x0
                i01 = np.int64(lt)
                lt = x3 < x2
                m23 = x3 if lt else x2
                i23 = 2 + np.int64(lt)
                lt = x5 < x4
                m45 = x5 if lt else x4
                i45 = 4 + np.int64(lt)
                lt = x7 < x6
                m67 = x7 if lt else x6
                i67 = 6 + np.int64(lt)
                lt = m23 < m01
                m03 = m23 if lt else m01
                i03 = i01 + (i23 - i01) * np.int64(lt)
                lt = m67 < m45
                m47 = m67 if lt else m45
                i47 = i45 + (i67 - i45) * np.int64(lt)
                lt = m47 < m03
                bf = m47 if lt else m03
                best = int(i03 + (i47 - i03) * np.int64(lt))
            else:
                best = 0
                bf = hf[h, 0]
                for c in range(1, ncls):
                    xx = hf[h, c]
                    lt = xx < bf
                    bf = xx if lt else bf
                    best = c if lt else best
            qs = np.uint64(q0 + best)
            p = pk_next[qs]
            qb = qtail[h, best]
            last = p == qb
            pk_next[qs] = pk_next[p]
            nt = pk_tag[p]
            qtail[h, best] = qs if last else qb
            hf[h, best] = INF if last else nt
            nq -= 1
            v = bf
            t = t + wh[p] * ir
            eg = t + dl
            if last_hop:
                k = nout[0]
                out_a0[k] = pk_a0[p]
                out_eg[k] = eg
                out_flow[k] = pk_flow[p]
                out_seq[k] = pk_seq[p]
                nout[0] = k + 1
                pk_next[p] = free[0]
                free[0] = p
            else:
                pk_t[p] = eg
                tt = ttail[h + 1]
                pk_next[tt] = p
                ttail[h + 1] = p
        hop_f[h, 0] = t
        hop_f[h, 1] = v
        hop_f[h, 2] = nq
        H = max(t, H) + dl
    prog[0] = -1
    return 0
