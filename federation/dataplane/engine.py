"""Packet-level Monte-Carlo data plane: tenant flows through domains in tandem.

A :class:`Simulation` carries the :class:`~federation.dataplane.path.Source` s of a path of
:class:`~federation.dataplane.path.Domain` s (the model, its schedulers and admission: see
:mod:`federation.dataplane.path`) under
:class:`~federation.dataplane.impairments.Impairment` s that act on domains over time windows,
and yields its telemetry (:mod:`federation.dataplane.telemetry`) window by window.

End-to-end delay = egress of the last domain - arrival at the first domain (s).

Engine. FIFO and partition hops are max-plus scans in numpy,
``D_n = C_n + max_{k<=n}(A_k - C_{k-1})`` with ``C`` the running sum of service times (equal to
the Lindley recursion ``D_n = max(A_n, D_{n-1}) + S_n``); finite buffers, ceilings, variable
capacity, batching and WFQ run in the numba kernels of :mod:`federation.dataplane.kernels` (imported
by the branches that call them: numba and its kernels take ~0.6 s to load, short plain FIFO runs never
need it). When every flow crosses every domain and each is a plain FIFO or static partition with
exponential service, long runs go through the whole path in one compiled pass per window
(:func:`~federation.dataplane.kernels.tandem_exp`, and :func:`~federation.dataplane.kernels.tandem_poisson`
with Poisson flows generated inline: packet by packet, service times drawn inline, no intermediate
arrays); all-WFQ paths with Poisson flows in one discrete-event pass
(:func:`~federation.dataplane.kernels.tandem_scfq_poisson`). Both use the same arithmetic and random
streams as the hop-by-hop path, so they give the same packets bit for bit. Time is cut
into windows holding about ``chunk_packets`` packets; every server, generator and random stream
carries its state from one window to the next and a domain only processes packets it can no
longer be surprised by (earlier than the horizon up to which all its inputs are known), so the
chunked run is bit-identical to the unchunked one and memory stays bounded. Random streams are
keyed by (seed, tenant, entry domain, domain, purpose): a tenant's draws never depend on what
other tenants send. Exponential service times (and Poisson inter-arrival times) come from the
counter-based streams of :mod:`federation.dataplane.rng`, the other draws from numpy generators.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from federation.dataplane.impairments import Impairment, capacity_schedule, window_max, window_sum
from federation.dataplane.path import Admission, Domain, ServiceTimes, Source
from federation.dataplane.telemetry import Delivered, DomainLog, Telemetry, TelemetryChunk
from federation.dataplane.traffic import Poisson, child_generator, child_stream, exponential_draw
from federation.errors import InputError

__all__ = [
    "Simulation",
    "simulate",
    "max_plus_fifo",
]

#: runs with at least this many packet-hops use the compiled kernels by default (they save more than the
#: ~0.6 s it takes to load numba and them: ~75 ns per packet-hop of numpy ziggurat draws)
COMPILED_MIN_PACKET_HOPS = 1e7

# purposes of the per (flow, domain) random streams
_WORK, _LOSS, _GE, _ERR, _SPIKE_U, _SPIKE_X = range(6)


def max_plus_fifo(A: np.ndarray, S: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Departures of a FIFO work-conserving server as a max-plus scan (vectorised).

    ``D_n = C_n + max_{k<=n} (A_k - C_{k-1})`` with ``C_n = S_0 + ... + S_n``, i.e. the Lindley
    recursion ``D_n = max(A_n, D_{n-1}) + S_n``. ``A`` (s, sorted) is read only; ``S`` (service times,
    s) is overwritten by ``C``. ``state = [C_{-1}, running max]`` (start ``[0, -inf]``) continues the
    scan over the next piece bit-identically.
    """
    n = len(A)
    out = np.empty(n)
    if n == 0:
        return out
    S[0] += state[0]
    np.cumsum(S, out=S)
    out[0] = A[0] - state[0]
    np.subtract(A[1:], S[:-1], out=out[1:])
    if out[0] < state[1]:
        out[0] = state[1]
    np.fmax.accumulate(out, out=out)  # = maximum.accumulate without NaN checks (faster)
    state[0] = S[-1]
    state[1] = out[-1]
    out += S
    return out


# Packet columns carried between domains: flow (int16), seq (int64), t (arrival here, s), a0 (arrival
# at the first domain, s); "size" (bits) only if some domain serves by size, "err" only if some
# domain can flag inference errors.
Batch = dict[str, np.ndarray]
_FLOW = np.int16
_MAX_FLOWS = np.iinfo(_FLOW).max
#: Packets per pass of the SCFQ kernel over a hop (its pool then fits in a core's L2 cache).
_SCFQ_PASS = 8192


def _empty() -> Batch:
    return {"flow": np.empty(0, _FLOW), "seq": np.empty(0, np.int64), "t": np.empty(0), "a0": np.empty(0)}


def _take(b: Batch, idx: np.ndarray) -> Batch:
    return {k: v[idx] for k, v in b.items()}


def _concat(parts: Sequence[Batch], empty: Batch) -> Batch:
    parts = [p for p in parts if len(p["t"])]
    if not parts:
        return empty
    if len(parts) == 1:
        return parts[0]
    keys = set.intersection(*(set(p) for p in parts))
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


@dataclass
class _Hop:
    dom: Domain
    bps: np.ndarray
    fac: np.ndarray
    variable: bool  # capacity varies over time
    kernel_fifo: bool  # FIFO/partition need the compiled kernel
    flows: list[int]  # flows that visit this hop
    through: bool  # some flow arrives from the previous hop
    entering: list[int]  # flows entering here
    ordered_out: bool  # departures leave in time order
    cls_of_flow: np.ndarray  # flow -> class (partition/wfq)
    crate: np.ndarray  # class rates
    has_loss: bool
    has_error: bool
    has_delay: bool
    has_spikes: bool
    state: list[np.ndarray] = field(default_factory=list)
    flast: np.ndarray | None = None
    queue: Batch | None = None
    tags: np.ndarray = field(default_factory=lambda: np.empty(0))  # SCFQ tags of queued, admitted packets
    carry: Batch | None = None


class Simulation:
    """A configured data-plane run; iterate :meth:`chunks` or call :meth:`run`.

    Parameters
    ----------
    domains
        The path (at least one domain).
    sources
        Tenant flows; flow ``i`` is ``sources[i]`` (after admission). Flow 0 drives ``packets``.
    seed
        Root seed of every random stream.
    packets
        Stop after this many packets of flow 0 (all flows run until that packet's arrival time).
    horizon
        Or: simulate arrivals in ``[0, horizon)`` s.
    admission
        Admitted tenants and reservations (needed by ``partition``/``wfq`` domains).
    impairments
        Impairments over time windows.
    chunk_packets
        About this many packets (all flows) per chunk; results do not depend on it.
    record_domains
        Keep per-domain logs (otherwise only delivered packets and counts).
    compiled
        Draw exponentials in compiled code and serve the whole path in one compiled pass where the
        model allows it (see :meth:`_fusable`): True, False, or None (default) for when it pays off:
        when the compiled kernels are already loaded or the run has at least
        ``COMPILED_MIN_PACKET_HOPS`` packet-hops (loading numba and its kernels takes ~0.6 s).
        The results are bit-identical either way.
    """

    def __init__(self, domains: Sequence[Domain], sources: Sequence[Source], *, seed: int = 0,
                 packets: int | None = None, horizon: float | None = None,
                 admission: Admission | None = None, impairments: Sequence[Impairment] = (),
                 chunk_packets: int = 1 << 16, record_domains: bool = True,
                 compiled: bool | None = None) -> None:
        if not domains:
            raise InputError("the path needs at least one domain")
        if (packets is None) == (horizon is None):
            raise InputError("give exactly one of packets and horizon")
        if packets is not None and (packets < 1 or int(packets) != packets):
            raise InputError(f"packets(={packets}) must be a whole number >= 1")
        if horizon is not None and not (horizon > 0 and math.isfinite(horizon)):
            raise InputError(f"horizon(={horizon}) must be > 0 and finite")
        if chunk_packets < 1:
            raise InputError(f"chunk_packets(={chunk_packets}) must be >= 1")
        self.domains = tuple(domains)
        nh = len(self.domains)
        admission = admission or Admission()
        self.admission = admission
        self.sources: list[Source] = []
        seen = set()
        for s in sources:
            ex = nh - 1 if s.exit is None else s.exit
            if not (0 <= s.entry <= ex < nh):
                raise InputError(f"source of tenant {s.tenant}: entry(={s.entry}) and exit(={s.exit}) "
                                 f"must satisfy 0 <= entry <= exit < {nh} (domains)")
            if (s.tenant, s.entry) in seen:
                raise InputError(f"two sources of tenant {s.tenant} enter at domain {s.entry}")
            seen.add((s.tenant, s.entry))
            if admission.admitted is None or s.tenant in admission.admitted:
                self.sources.append(Source(s.tenant, s.traffic, s.entry, ex))
        if not self.sources:
            raise InputError("no admitted source: nothing to simulate")
        if len(self.sources) > _MAX_FLOWS:
            raise InputError(f"{len(self.sources)} sources: at most {_MAX_FLOWS} are supported")
        for imp in impairments:
            if imp.domain >= nh:
                raise InputError(f"impairment on domain {imp.domain + 1}, but the path has {nh} domains")
        self.impairments = tuple(impairments)
        self.seed = int(seed)
        self.packets = packets
        self.horizon = horizon
        self.chunk_packets = int(chunk_packets)
        self.record_domains = record_domains
        self.nflows = len(self.sources)
        self.exit = np.array([s.exit for s in self.sources], np.int64)
        self._rngs: dict[tuple[int, int, int], np.random.Generator] = {}
        self._streams: dict[tuple[int, int], np.ndarray] = {}
        self._ge: dict[tuple[int, int], np.ndarray] = {}
        self.hops = [self._configure(h) for h in range(nh)]
        self.tenant_of_flow = np.array([s.tenant for s in self.sources], np.int32)
        self._need_size = any(d.service is None for d in self.domains)
        self._svc_hops = [h for h, d in enumerate(self.domains) if d.service is not None]
        self._need_err = any(hp.has_error for hp in self.hops)
        self._gens = [s.traffic.generator(np.random.SeedSequence(self.seed, spawn_key=(s.tenant, s.entry)))
                      for s in self.sources]
        self.compiled = compiled is True or (compiled is None and (
            "federation.dataplane.kernels" in sys.modules
            or self._expected_packet_hops() >= COMPILED_MIN_PACKET_HOPS))  #: compiled kernels draw and serve
        if self.compiled:
            import federation.dataplane.kernels  # noqa: F401  (from now on exponentials are drawn compiled)
        self._fused = self._fusable() if self.compiled else None
        self._started = False
        self.packet_hops = 0  #: packets served, summed over domains (a packet counts once per domain)

    # ------------------------------------------------------------------ configuration

    def _reserved(self, tenant: int, h: int) -> float | None:
        r = self.admission.reservations.get(tenant)
        if r is None:
            return None
        if isinstance(r, tuple | list):
            if len(r) != len(self.domains):
                raise InputError(f"tenant {tenant}: {len(r)} reservations given for {len(self.domains)} domains")
            r = r[h]
        r = float(r)
        if not (r > 0 and math.isfinite(r)):
            raise InputError(f"tenant {tenant}: reservation(={r:g}) at domain {h + 1} must be > 0 and finite")
        return r

    def _configure(self, h: int) -> _Hop:
        dom = self.domains[h]
        imps = self.impairments
        bps, fac = capacity_schedule(imps, h)
        variable = len(bps) > 0
        flows = [f for f, s in enumerate(self.sources) if s.entry <= h <= self.exit[f]]
        through = any(s.entry < h <= self.exit[f] for f, s in enumerate(self.sources))
        entering = [f for f, s in enumerate(self.sources) if s.entry == h]
        has_delay = any(i.domain == h and i.kind == "delay" for i in imps)
        has_spikes = any(i.domain == h and i.kind == "spikes" for i in imps)
        cls_of_flow = np.zeros(self.nflows, np.int64)
        crate = np.array([dom.rate])
        if dom.scheduler != "fifo":
            tenants = sorted({self.sources[f].tenant for f in flows})
            res = {t: self._reserved(t, h) for t in tenants}
            reserved = [t for t in tenants if res[t] is not None]
            rates = [r for r in res.values() if r is not None]  # in tenant order, as reserved
            total = sum(rates)
            if total > dom.rate * (1 + 1e-12):
                raise InputError(f"domain {h + 1}: reservations sum to {total:g} bits/s, more than its "
                                 f"rate(={dom.rate:g})")
            unreserved = [t for t in tenants if res[t] is None]
            if unreserved:
                left = dom.rate - total
                if left <= dom.rate * 1e-9:
                    raise InputError(f"domain {h + 1} ({dom.scheduler}): tenant {unreserved[0]} has no "
                                     "reservation and no capacity is left over for best effort")
                rates.append(left)
            cmap = {t: i for i, t in enumerate(reserved)}
            for f in flows:
                cls_of_flow[f] = cmap.get(self.sources[f].tenant, len(reserved))
            crate = np.array(rates, dtype=np.float64)
        ncls = len(crate)
        kernel_fifo = variable or dom.buffer < math.inf or dom.ceiling < math.inf
        hop = _Hop(
            dom=dom, bps=bps, fac=fac, variable=variable, kernel_fifo=kernel_fifo, flows=flows,
            through=through, entering=entering,
            ordered_out=dom.scheduler in ("fifo", "wfq") and not has_delay and not has_spikes,
            cls_of_flow=cls_of_flow, crate=crate,
            has_loss=dom.loss > 0 or dom.gilbert is not None or any(
                i.domain == h and i.kind == "loss" for i in imps),
            has_error=dom.error > 0 or any(i.domain == h and i.kind == "error" for i in imps),
            has_delay=has_delay, has_spikes=has_spikes,
        )
        if dom.scheduler == "wfq":
            hop.state = [np.array([-np.inf, 0.0])]
            hop.flast = np.zeros(ncls)
        elif dom.batch > 1:
            hop.state = [np.array([-np.inf])]
        elif kernel_fifo:
            hop.state = [np.array([-np.inf]) for _ in range(ncls)]
        else:
            hop.state = [np.array([0.0, -np.inf]) for _ in range(ncls)]
        return hop

    def _fusable(self) -> str | None:
        """Which compiled pass can take every packet through the whole path, if one can.

        ``"maxplus"`` (:func:`~federation.dataplane.kernels.tandem_exp`): every domain a plain FIFO or
        static partition; ``"scfq"`` (:func:`~federation.dataplane.kernels.tandem_scfq_poisson`):
        every domain WFQ and every flow Poisson. Both need: every flow crossing every domain,
        exponential service, no buffer limit, ceiling, batching, loss or errors, no impairments, no
        per-domain logs. The results are bit-identical to the hop-by-hop path.
        """
        nh = len(self.domains)
        if self.record_domains or self.impairments:
            return None
        if any(s.entry != 0 or s.exit != nh - 1 for s in self.sources):
            return None
        if not all(d.batch == 1 and d.buffer == math.inf and d.ceiling == math.inf and d.loss == 0
                   and d.gilbert is None and d.error == 0 and d.service is not None and d.service.kind == "exp"
                   for d in self.domains):
            return None
        if all(d.scheduler in ("fifo", "partition") for d in self.domains):
            return "maxplus"
        if all(d.scheduler == "wfq" for d in self.domains) and all(type(s.traffic) is Poisson for s in self.sources):
            return "scfq"
        return None

    def _expected_packet_hops(self) -> float:
        """Mean number of packet-hops of the run (every flow crossing every domain)."""
        rate = sum(s.traffic.packet_rate for s in self.sources)
        if self.packets is not None:
            return self.packets * rate / self.sources[0].traffic.packet_rate * len(self.domains)
        return cast(float, self.horizon) * rate * len(self.domains)

    def _stream(self, f: int, h: int) -> np.ndarray:
        """The compiled exponential stream of flow ``f``'s service times at domain ``h``."""
        key = (f, h)
        st = self._streams.get(key)
        if st is None:
            s = self.sources[f]
            st = child_stream(np.random.SeedSequence(self.seed, spawn_key=(s.tenant, s.entry)), 100 + h, _WORK)
            self._streams[key] = st
        return st

    def _rng(self, f: int, h: int, purpose: int) -> np.random.Generator:
        key = (f, h, purpose)
        g = self._rngs.get(key)
        if g is None:
            s = self.sources[f]
            g = child_generator(np.random.SeedSequence(self.seed, spawn_key=(s.tenant, s.entry)), 100 + h, purpose)
            self._rngs[key] = g
        return g

    def _per_flow(self, hop: _Hop, h: int, flow: np.ndarray, purpose: int, draw) -> np.ndarray:  # noqa: ANN001
        n = len(flow)
        if len(hop.flows) == 1:
            return draw(self._rng(hop.flows[0], h, purpose), n)
        counts = np.bincount(flow, minlength=self.nflows)
        parts = [draw(self._rng(f, h, purpose), int(counts[f])) for f in hop.flows if counts[f]]
        if not parts:
            return np.empty(0)
        if len(parts) == 1:
            return parts[0]
        out = np.empty(n)
        out[np.argsort(flow, kind="stable")] = np.concatenate(parts)  # radix sort on int16: by flow, in order
        return out

    # ------------------------------------------------------------------ one hop

    def _work(self, hop: _Hop, h: int, b: Batch, seconds: bool = False) -> np.ndarray:
        """Work of each packet of ``b`` here: bits, or service time (s) at the full rate if ``seconds``.

        Random service times were drawn at the source (column ``s{h}``, seconds), one stream per
        (tenant flow, domain); the returned array may be that column (callers may overwrite it).
        """
        dom = hop.dom
        if dom.service is None:
            return b["size"] / dom.rate if seconds else b["size"].copy()
        x = b[f"s{h}"]
        return x if seconds else x * dom.rate

    def _serve(self, hop: _Hop, h: int, b: Batch, H: float) -> tuple[Batch, np.ndarray]:
        """Serve batch ``b`` (in processing order); returns the served rows (departure order) and D."""
        dom = hop.dom
        sched = dom.scheduler
        if sched == "fifo" and not hop.kernel_fifo and dom.batch == 1:
            S = self._work(hop, h, b, seconds=True)  # service times (s)
            return b, max_plus_fifo(b["t"], S, hop.state[0])
        w = self._work(hop, h, b)
        if sched == "wfq" or dom.batch > 1:
            q = hop.queue
            b = dict(b)
            b["w"] = w
            if q is not None and len(q["t"]):
                b = {k: np.concatenate([q[k], b[k]]) for k in b}
            if sched == "wfq":
                from federation.dataplane.kernels import scfq

                D, order, F = scfq(b["t"], b["w"], b["flow"], hop.cls_of_flow, hop.tags, hop.crate, dom.rate,
                                   hop.bps, hop.fac, H, hop.state[0], cast(np.ndarray, hop.flast))  # set for wfq
                wait = np.flatnonzero(np.isnan(D))
                hop.queue = _take(b, wait)
                # Admission follows arrival order, so the waiting packets that already hold a tag come
                # first in the queue; the rest (not yet arrived when the server stopped) get one later.
                ft = F[wait]
                hop.tags = ft[: len(ft) - int(np.count_nonzero(np.isnan(ft)))]
                return {k: v[order] for k, v in b.items() if k != "w"}, D[order]
            from federation.dataplane.kernels import fifo_batch

            D, done = fifo_batch(b["t"], b["w"], dom.rate, hop.bps, hop.fac, dom.batch, H, hop.state[0])
            hop.queue = {k: v[done:] for k, v in b.items()}
            return {k: v[:done] for k, v in b.items()}, D[:done]
        ceil_budget = dom.ceiling - dom.delay
        if hop.kernel_fifo:  # finite buffer, ceiling or varying capacity: max_plus_fifo cannot serve them
            from federation.dataplane.kernels import fifo_general
        if sched == "fifo":
            return b, fifo_general(b["t"], w, dom.rate, hop.bps, hop.fac, dom.buffer, ceil_budget, hop.state[0])
        # partition: one FIFO server per class
        cls = hop.cls_of_flow[b["flow"]]
        D = np.empty(len(w))
        for c in range(len(hop.crate)):
            idx = np.flatnonzero(cls == c)
            if not len(idx):
                continue
            r = float(hop.crate[c])
            A = b["t"][idx]
            wc = w[idx]
            if hop.kernel_fifo:
                buf = dom.buffer * r / dom.rate
                D[idx] = fifo_general(A, wc, r, hop.bps, hop.fac, buf, ceil_budget, hop.state[c])
            else:
                wc *= 1.0 / r
                D[idx] = max_plus_fifo(A, wc, hop.state[c])
        return b, D

    def _server_time(self, hop: _Hop) -> float:
        dom = hop.dom
        if dom.scheduler == "wfq" or dom.batch > 1 or hop.kernel_fifo:
            return min(float(s[0]) for s in hop.state)
        return min(float(s[1] + s[0]) if s[1] > -np.inf else -np.inf for s in hop.state)

    def _hop(self, h: int, b: Batch, H: float, log: list, delivered: list, lost: np.ndarray) -> tuple[Batch, float]:
        hop = self.hops[h]
        dom = hop.dom
        if not hop.flows:
            return self._empty(h + 1), H
        srv, D = self._serve(hop, h, b, H)
        self.packet_hops += len(D)
        H_out = max(self._server_time(hop), H) + dom.delay
        n = len(D)
        ingress = srv["t"]
        flow = srv["flow"]
        eg = D + dom.delay if (dom.delay or hop.has_delay or hop.has_spikes) else D  # never alias D below
        if hop.has_delay:
            extra = window_sum(self.impairments, h, "delay", D)
            assert extra is not None  # has_delay: a delay window lies on this hop
            eg += extra
        if hop.has_spikes:
            u = self._per_flow(hop, h, flow, _SPIKE_U, lambda g, k: g.random(k))
            x = self._per_flow(hop, h, flow, _SPIKE_X, lambda g, k: g.standard_exponential(k))
            for imp in self.impairments:
                if imp.domain == h and imp.kind == "spikes":
                    m = (D >= imp.start) & (D < imp.end) & (u < imp.prob)
                    eg[m] += x[m] * imp.value
        lostm = np.isnan(eg)
        if dom.ceiling < math.inf:
            with np.errstate(invalid="ignore"):
                lostm |= (eg - ingress) > dom.ceiling
        if hop.has_loss:
            u = self._per_flow(hop, h, flow, _LOSS, lambda g, k: g.random(k))
            if dom.gilbert is not None:
                ge = dom.gilbert
                from federation.dataplane.kernels import gilbert_elliott

                ut = self._per_flow(hop, h, flow, _GE, lambda g, k: g.random(k))
                for f in hop.flows:
                    m = flow == f
                    st = self._ge.setdefault((f, h), np.zeros(1))
                    lostm[m] |= gilbert_elliott(ut[m], u[m], ge.p_gb, ge.p_bg, ge.loss_good, ge.loss_bad, st)
            p = window_max(self.impairments, h, "loss", ingress, dom.loss)
            lostm |= u < p
        errh = None
        if hop.has_error:
            u = self._per_flow(hop, h, flow, _ERR, lambda g, k: g.random(k))
            e = window_max(self.impairments, h, "error", ingress, dom.error)
            errh = (u < e) & ~lostm
        anylost = bool(lostm.any())
        if anylost:
            eg[lostm] = np.nan
            lost += np.bincount(flow[lostm], minlength=self.nflows)
        if self.record_domains:
            log[h].append(DomainLog(h, flow, srv["seq"], self.tenant_of_flow[flow], ingress, eg, lostm,
                                    errh if errh is not None else np.zeros(n, np.bool_)))
        out = {k: v for k, v in srv.items() if k not in ("w", f"s{h}")}
        out["t"] = eg
        if errh is not None:
            out["err"] = out["err"] | errh
        exiting = [f for f in hop.flows if self.exit[f] == h]
        if not exiting:  # every packet here continues
            return (_take(out, ~lostm) if anylost else out), H_out
        if len(exiting) == len(hop.flows):  # every packet here leaves the path
            fin = _take(out, ~lostm) if anylost else out
            delivered.append(self._delivered(fin))
            return self._empty(h + 1), H_out
        exits = self.exit[flow] == h
        fin = _take(out, exits & ~lostm)
        delivered.append(self._delivered(fin))
        return _take(out, ~exits & ~lostm), H_out

    def _empty(self, h: int = 0) -> Batch:
        """An empty batch with the columns packets carry at domain ``h``."""
        b = _empty()
        for k in self._svc_hops:
            if k >= h:
                b[f"s{k}"] = np.empty(0)
        if self._need_size:
            b["size"] = np.empty(0)
        if self._need_err:
            b["err"] = np.empty(0, np.bool_)
        return b

    def _delivered(self, b: Batch) -> Delivered:
        n = len(b["t"])
        err = b["err"] if "err" in b else np.zeros(n, np.bool_)
        tenant = (np.full(n, self.tenant_of_flow[0], np.int32) if self.nflows == 1
                  else self.tenant_of_flow[b["flow"]])
        return Delivered(b["flow"], b["seq"], tenant, b["a0"], b["t"], err)

    # ------------------------------------------------------------------ one window

    def _fused_setup(self) -> None:
        """Flat arrays of the whole path for :func:`~federation.dataplane.kernels.tandem_exp`."""
        nh, nf = len(self.domains), self.nflows
        ncls = max(len(hp.crate) for hp in self.hops)
        self._f_streams = np.concatenate([self._stream(f, h) for f in range(nf) for h in range(nh)])
        self._f_mean = np.array([cast(ServiceTimes, d.service).mean for d in self.domains])
        self._f_rate = np.array([d.rate for d in self.domains])
        self._f_cls = np.array([hp.cls_of_flow for hp in self.hops], np.int64).reshape(nh, nf)
        self._f_inv = np.ones((nh, ncls))
        for h, hp in enumerate(self.hops):
            self._f_inv[h, :len(hp.crate)] = 1.0 / hp.crate
        self._f_part = np.array([d.scheduler == "partition" for d in self.domains])
        self._f_delay = np.array([d.delay for d in self.domains])
        self._f_csum = np.zeros((nh, ncls))
        self._f_cmax = np.full((nh, ncls), -np.inf)

    def _poisson_state(self) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
        """(generators, stream counters, mean gaps, first arrivals) of all-Poisson flows, for the kernels."""
        gens = cast(list[Any], self._gens)  # _PoissonGen: type checked by the caller
        pstate = np.array([g.stream_t[0] for g in gens], np.uint64)
        scale = np.array([g.scale for g in gens])
        pnext = np.empty(len(gens))
        for f in range(len(gens)):  # the first arrival: 0 + X_1 (as the generator's carried cumsum)
            pnext[f] = 0.0 + exponential_draw(pstate[f:f + 1], 1, scale[f])[0]
        return gens, pstate, scale, pnext

    def _chunks_scfq(self, step: float) -> Iterator[TelemetryChunk]:
        """The run when every domain is WFQ and every flow Poisson: one discrete-event compiled pass."""
        from federation.dataplane.kernels import NIL, tandem_scfq_poisson

        nf, nh = self.nflows, len(self.domains)
        ncls = max(len(hp.crate) for hp in self.hops)
        if 4 < ncls < 8:  # the kernel picks among 8 classes by a tree: empty ones (tag inf) are never picked
            ncls = 8
        gens, pstate, scale, pnext = self._poisson_state()
        count = np.zeros(nf, np.int64)
        limit0 = -1 if self.packets is None else int(self.packets)
        gen_until = math.inf if self.horizon is None else float(self.horizon)
        stop = np.array([np.inf])
        hop_f = np.zeros((nh, 3))  # server free, virtual time, queued
        hop_f[:, 0] = -np.inf
        prog = np.array([-1.0, 0.0])
        la_f, la_i, la = np.empty((1024, 1 + nh)), np.empty((1024, 2), np.int64), np.zeros(2, np.int64)
        flast = np.zeros((nh, ncls))
        nsent = nh * (ncls + 1)  # the pool's first packets: the sentinels of the queues and transit lists
        qtail = np.arange(nh * ncls, dtype=np.uint64).reshape(nh, ncls)
        hf = np.full((nh, ncls), np.inf)
        ttail = np.arange(nh * ncls, nsent, dtype=np.uint64)
        irate = np.array([1.0 / (hp.dom.rate * hp.fac[0]) for hp in self.hops])
        free = np.array([NIL], np.uint64)
        # the pool, one array per field (see tandem_scfq_poisson): a0, t, tag, w (per hop), next, flow, seq
        pool: list[np.ndarray] = [np.zeros(nsent), np.zeros(nsent), np.zeros(nsent), np.zeros((nh, nsent)),
                                  np.zeros(nsent, np.uint64), np.zeros(nsent, np.int64), np.zeros(nsent, np.int64)]

        def grow() -> None:
            n0 = len(pool[0])
            n1 = max(4096, 2 * n0)
            for i, a in enumerate(pool):
                g = np.empty((nh, n1) if a.ndim == 2 else n1, a.dtype)
                g[..., :n0] = a
                pool[i] = g
            nxt = pool[4]
            nxt[n0:n1 - 1] = np.arange(n0 + 1, n1, dtype=np.uint64)
            nxt[n1 - 1] = free[0]
            free[0] = n0

        grow()
        cap = self.chunk_packets + 64
        # each hop passes over the packets of its horizon: horizons of ~_SCFQ_PASS packets keep them in cache
        # (the decisions do not depend on where the horizons fall)
        sub = max(1, self.chunk_packets // _SCFQ_PASS)

        def run(W0: float, W: float) -> Iterator[TelemetryChunk]:
            horizons = [W] if not math.isfinite(W) else [W0 + (W - W0) * (i + 1) / sub for i in range(sub - 1)] + [W]
            a0, eg, fl, seq = np.empty(cap), np.empty(cap), np.empty(cap, _FLOW), np.empty(cap, np.int64)
            nout = np.zeros(1, np.int64)
            before = count.copy()
            for Wh in horizons:
                while True:
                    code = tandem_scfq_poisson(Wh, gen_until, limit0, stop, pstate, pnext, scale, count,
                                               self._f_streams, self._f_mean, self._f_rate, irate, self._f_cls,
                                               self._f_inv, self._f_delay, la_f, la_i, la, hop_f, flast, qtail, hf, ttail,
                                               pool[0], pool[1], pool[2], pool[3], pool[4], pool[5], pool[6], free, prog,
                                               a0, eg, fl, seq, nout)
                    if code == 2:
                        grow()
                    elif code == 1:  # the output is full: hand it out, go on
                        yield chunk(a0, eg, fl, seq, int(nout[0]), before)
                        a0, eg, fl, seq = np.empty(cap), np.empty(cap), np.empty(cap, _FLOW), np.empty(cap, np.int64)
                        nout[0] = 0
                        before = count.copy()
                    else:
                        break
            yield chunk(a0, eg, fl, seq, int(nout[0]), before)

        def chunk(a0: np.ndarray, eg: np.ndarray, fl: np.ndarray, seq: np.ndarray, n: int,
                  before: np.ndarray) -> TelemetryChunk:
            self.packet_hops += n * nh
            fl = fl[:n]
            tenant = np.full(n, self.tenant_of_flow[0], np.int32) if nf == 1 else self.tenant_of_flow[fl]
            return TelemetryChunk(None, Delivered(fl, seq[:n], tenant, a0[:n], eg[:n], np.zeros(n, np.bool_)),
                                  count - before, np.zeros(nf, np.int64))

        k = 0
        done = False
        W = 0.0
        while not done:
            k += 1
            W0 = W
            W, done = self._window_end(k, step)
            yield from run(W0, W)
            if limit0 >= 0 and count[0] >= limit0:
                done = True
        yield from run(W, np.inf)
        for f, g in enumerate(gens):
            g.count = int(count[f])

    def _window_end(self, k: int, step: float) -> tuple[float, bool]:
        """The end (s) of the ``k``-th window of ``step`` s, and whether it is the last (the horizon)."""
        W = k * step
        if self.horizon is not None and W >= self.horizon:
            return float(self.horizon), True
        return W, False

    def _chunks_poisson(self, step: float) -> Iterator[TelemetryChunk]:
        """The run when every flow is Poisson: generated inside the compiled pass, window by window.

        The windows end where :meth:`chunks` ends them, but the packets do not depend on that: the
        arrival streams are drawn one by one with the Poisson generator's arithmetic.
        """
        from federation.dataplane.kernels import tandem_poisson

        nf = self.nflows
        gens, pstate, scale, pnext = self._poisson_state()
        count = np.zeros(nf, np.int64)
        limit0 = -1 if self.packets is None else int(self.packets)
        stop = np.array([np.inf])
        cap = self.chunk_packets + 64
        k = 0
        done = False
        while not done:
            k += 1
            W, done = self._window_end(k, step)
            while True:
                before = count.copy()
                t, fl = np.empty(cap), np.empty(cap, _FLOW)
                seq, eg = np.empty(cap, np.int64), np.empty(cap)
                n = tandem_poisson(W, limit0, stop, pstate, pnext, scale, count, t, fl, seq, eg, self._f_streams,
                                   self._f_mean, self._f_rate, self._f_cls, self._f_inv, self._f_part,
                                   self._f_delay, self._f_csum, self._f_cmax)
                if limit0 >= 0 and count[0] >= limit0:
                    done = True
                self.packet_hops += n * len(self.domains)
                t, fl, seq, eg = t[:n], fl[:n], seq[:n], eg[:n]
                tenant = (np.full(n, self.tenant_of_flow[0], np.int32) if nf == 1 else self.tenant_of_flow[fl])
                yield TelemetryChunk(None, Delivered(fl, seq, tenant, t, eg, np.zeros(n, np.bool_)),
                                     count - before, np.zeros(nf, np.int64))
                if n < cap:
                    break
        for f, g in enumerate(gens):
            g.count = int(count[f])

    def _window_fused(self, new: dict[int, tuple[np.ndarray, np.ndarray]], W: float) -> TelemetryChunk:
        """One window through the whole path in one compiled pass (see :meth:`_fusable`).

        Every packet is served as soon as it arrives (FIFO servers see each flow in arrival order),
        so nothing waits for the window's horizon ``W``.
        """
        from federation.dataplane.kernels import tandem_exp

        generated = np.zeros(self.nflows, np.int64)
        ts, flows, seqs = [], [], []
        for f, (t, _) in new.items():
            n = len(t)
            generated[f] = n
            if n:
                start = self._gens[f].count - n
                ts.append(t)
                flows.append(np.full(n, f, _FLOW))
                seqs.append(np.arange(start, start + n, dtype=np.int64))
        if not ts:
            t, flow, seq = np.empty(0), np.empty(0, _FLOW), np.empty(0, np.int64)
        elif len(ts) == 1:
            t, flow, seq = ts[0], flows[0], seqs[0]
        else:  # arrival order at the first domain, ties by flow (as the hop-by-hop path merges them)
            t = np.concatenate(ts)
            order = np.argsort(t, kind="stable")
            t, flow, seq = t[order], np.concatenate(flows)[order], np.concatenate(seqs)[order]
        eg = tandem_exp(t, flow, self._f_streams, self._f_mean, self._f_rate, self._f_cls, self._f_inv,
                        self._f_part, self._f_delay, self._f_csum, self._f_cmax)
        self.packet_hops += len(t) * len(self.domains)
        tenant = (np.full(len(t), self.tenant_of_flow[0], np.int32) if self.nflows == 1
                  else self.tenant_of_flow[flow])
        return TelemetryChunk(None, Delivered(flow, seq, tenant, t, eg, np.zeros(len(t), np.bool_)), generated,
                              np.zeros(self.nflows, np.int64))

    def _window(self, new: dict[int, tuple[np.ndarray, np.ndarray]], W: float) -> TelemetryChunk:
        nh = len(self.domains)
        log: list[list[DomainLog]] = [[] for _ in range(nh)]
        delivered: list[Delivered] = []
        lost = np.zeros(self.nflows, np.int64)
        generated = np.zeros(self.nflows, np.int64)
        src: dict[int, Batch] = {}
        for f, (t, s) in new.items():
            n = len(t)
            generated[f] = n
            start = self._gens[f].count - n
            src[f] = {"flow": np.full(n, f, _FLOW), "seq": np.arange(start, start + n, dtype=np.int64),
                      "t": t, "a0": t}
            if self._need_size:
                src[f]["size"] = s
            if self._need_err:
                src[f]["err"] = np.zeros(n, np.bool_)
            so = self.sources[f]
            for h in self._svc_hops:
                if h >= so.entry:  # the same columns for every flow at a domain
                    svc = cast(ServiceTimes, self.domains[h].service)  # _svc_hops: a service is set
                    if h > self.exit[f]:
                        x = np.full(n, np.nan)
                    elif svc.kind == "exp":
                        x = exponential_draw(self._stream(f, h), n, svc.mean)
                    else:
                        x = svc.draw(self._rng(f, h, _WORK), n)
                    src[f][f"s{h}"] = x
        up: Batch | None = None
        H_up = W
        for h in range(nh):
            hop = self.hops[h]
            ent = [src[f] for f in hop.entering if f in src and len(src[f]["t"])]
            if not hop.through:
                b = _concat(ent, self._empty(h))
                if len(ent) > 1:
                    b = _take(b, np.argsort(b["t"], kind="stable"))
                H = W
            elif not hop.entering and self.hops[h - 1].ordered_out:
                b = up if up is not None else self._empty(h)
                H = H_up
            else:
                parts = [p for p in ([hop.carry] if hop.carry is not None else []) + [up] + ent if p is not None]
                b = _concat(parts, self._empty(h))
                H = min(H_up, W) if hop.entering else H_up
                order = np.lexsort((b["seq"], b["flow"], b["t"]))
                k = int(np.searchsorted(b["t"][order], H, side="left")) if H < np.inf else len(order)
                hop.carry = _take(b, order[k:])
                b = _take(b, order[:k])
            up, H_up = self._hop(h, b, H, log, delivered, lost)
        doms = None
        if self.record_domains:
            doms = tuple(DomainLog.concat(x) if x else DomainLog(
                h, np.empty(0, _FLOW), np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0),
                np.empty(0), np.empty(0, np.bool_), np.empty(0, np.bool_)) for h, x in enumerate(log))
        if delivered:
            dl = Delivered.concat(delivered)
        else:
            dl = Delivered(np.empty(0, _FLOW), np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0),
                           np.empty(0), np.empty(0, np.bool_))
        return TelemetryChunk(doms, dl, generated, lost)

    def chunks(self) -> Iterator[TelemetryChunk]:
        """Run window by window, yielding each window's telemetry (then a final flush)."""
        if self._started:
            raise InputError("a Simulation runs once; make a new one")
        self._started = True
        window = self._window
        if self._fused:
            self._fused_setup()
            window = self._window_fused
        rate = sum(s.traffic.packet_rate for s in self.sources)
        step = self.chunk_packets / rate
        if self.packets is not None:  # windows never need to reach far beyond flow 0's last packet
            step = min(step, 1.05 * self.packets / self.sources[0].traffic.packet_rate)
        if self._fused == "scfq":
            yield from self._chunks_scfq(step)
            return
        if self._fused and all(type(s.traffic) is Poisson for s in self.sources):
            yield from self._chunks_poisson(step)
            return
        k = 0
        done = False
        while not done:
            k += 1
            W, done = self._window_end(k, step)
            new: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            if self.packets is not None:
                g0 = self._gens[0]
                before = g0.count
                t, s = g0.take(W)
                if before + len(t) >= self.packets:
                    m = self.packets - before
                    g0.count = self.packets
                    t, s = t[:m], s[:m]
                    W = float(np.nextafter(t[-1], np.inf)) if m else W
                    done = True
                new[0] = (t, s)
            for f in range(self.nflows):
                if f not in new:
                    new[f] = self._gens[f].take(W)
            yield window(new, W)
        yield window({}, np.inf)

    def run(self) -> Telemetry:
        """The whole run in memory."""
        return Telemetry.concat(self.chunks())


def simulate(domains: Sequence[Domain], sources: Sequence[Source], **kwargs: Any) -> Telemetry:
    """Run a :class:`Simulation` to the end and return its :class:`~federation.dataplane.telemetry.Telemetry`."""
    return Simulation(domains, sources, **kwargs).run()
