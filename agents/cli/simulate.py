"""``trefed simulate``: packet-level Monte-Carlo of a tandem path (the data plane).

Same ``--arrival`` / ``--hop`` / ``--cross`` grammar and ``--time`` as ``trefed bound``. Each
``--arrival`` flow is a tenant (numbered 0, 1, ... in the order given) crossing every hop; together
they are the flow of interest. Each ``--cross`` flow is a tenant too (the next numbers): it enters
at its hop, shares it and leaves after it.

``--packets N`` is the number of packets of the flow of interest: all ``--arrival`` flows
together (exactly N with one ``--arrival``; with several, the first stops after its share
``N * rate_0 / sum(rates)`` and every other flow, cross traffic included, runs until then, so the
total is N up to the randomness of the other flows' counts).

Reports the end-to-end delay quantiles of the flow of interest with 95 % intervals, its
delay-violation probability at ``--delay`` with a 95 % interval, its loss rate, and the engine speed
in packet-hops per second (the whole pipeline); with several flows, the same per tenant. An
unstable model (load rho >= 1 at a hop, or in a tenant's partition) exits 2 naming the hop:
its delays would only grow with the run's length; ``--allow-unstable`` runs it anyway (a
transient study) with a warning on stderr.

The intervals hold for autocorrelated delays (consecutive packets of a queue are): batch means
with a data-chosen batch count and Clopper-Pearson / order statistics at the effective sample
size (``federation.stats``; the method and ``n_eff`` are in the JSON). A quantile interval with
an infinite upper end is inconclusive: too few effective samples lie beyond it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from agents.cli.progress import packet_progress
from agents.cli.text import plain
from federation.errors import InputError

if TYPE_CHECKING:  # the data plane (numpy, scipy, numba) is imported when the command runs
    from federation.dataplane.path import Admission, Domain, Source
    from federation.dataplane.telemetry import DelayAccumulator

__all__ = ["register", "run", "QUANTILES", "SCHEDULERS"]

#: Reported quantiles of the end-to-end delay: JSON key -> probability.
QUANTILES: dict[str, float] = {"p50": 0.5, "p99": 0.99, "p99.9": 0.999, "p99.99": 0.9999}

#: The schedulers of ``--scheduler``: ``federation.dataplane.path.SCHEDULERS`` (a test keeps
#: them equal), written out so that building the parser does not import the data plane.
SCHEDULERS: tuple[str, ...] = ("fifo", "partition", "wfq")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` sub-command."""
    p = subparsers.add_parser(
        "simulate",
        help="packet-level Monte-Carlo of a tandem path: delay quantiles, violation probability, loss",
        description=plain(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arrival", action="append", required=True, metavar="SPEC",
                   help="KIND:key=value,...: a tenant's flow through every hop, e.g. poisson:rate=800 "
                        "(repeat: tenants 0, 1, ...)")
    p.add_argument("--hop", action="append", required=True,
                   help="a domain, in path order (repeat): rate=R[,latency=T][,service=size|exp][,prop=P]"
                        "[,buffer=B][,ceiling=C][,loss=p]")
    p.add_argument("--cross", action="append", default=[], help="HOP=SPEC: a one-hop cross flow (repeat)")
    p.add_argument("--time", choices=("continuous", "discrete"), default="continuous",
                   help="time model (the data plane simulates continuous time)")
    p.add_argument("--packets", type=int, default=1_000_000, metavar="N",
                   help="packets of the --arrival flows together (the flow of interest; cross traffic "
                        "runs alongside and is not counted); default 1000000")
    p.add_argument("--seed", type=int, default=0, help="root random seed")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="fifo", help="scheduler in every domain")
    p.add_argument("--reserve", action="append", default=[], metavar="TENANT=RATE",
                   help="reserved rate (bits/s) of a tenant (0.. the --arrival flows, then the --cross flows) "
                        "in every domain (partition/wfq); default: "
                        "each domain's rate split in proportion to the offered loads")
    p.add_argument("--impair", action="append", default=[], metavar="DOMAIN:KIND:START:END[:VALUE[:PROB]]",
                   help="impairment (delay|spikes|degrade|outage|loss|error) on a domain (from 1) over a window (s)")
    p.add_argument("--delay", type=float, default=None, help="delay target d (s) for P(delay > d)")
    p.add_argument("--packet-size", type=float, default=1.0,
                   help="packet size (bits) of on-off and token-bucket flows")
    p.add_argument("--chunk", type=int, default=1 << 16, help="packets per chunk (memory bound; no effect on results)")
    p.add_argument("--allow-unstable", action="store_true",
                   help="simulate a model with load >= 1 at a hop (a transient study: its delays grow with "
                        "the run's length); a warning on stderr instead of exit code 2")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: for runs of at least 5 million packets)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _reservations(args: argparse.Namespace, sources: list[Source], domains: list[Domain]) -> Admission:
    from federation.dataplane.path import Admission

    res: dict[int, float | tuple[float, ...]] = {}
    for item in args.reserve:
        t, sep, r = item.partition("=")
        try:
            tenant, rate = int(t), float(r)
        except ValueError:
            raise InputError(f"--reserve {item!r}: expected TENANT=RATE (integer tenant, rate in bits/s)") from None
        if not sep or not (rate > 0 and math.isfinite(rate)):
            raise InputError(f"--reserve {item!r}: rate must be > 0 (bits/s)")
        if not 0 <= tenant < len(sources):
            raise InputError(f"--reserve {item!r}: tenant(={tenant}) must be between 0 and {len(sources) - 1}")
        res[tenant] = rate
    if args.scheduler == "fifo" or res:
        return Admission(None, res)
    # Default: every domain's rate split in proportion to the offered work of the flows there.
    return Admission.proportional(sources, domains)




def _summary(acc: DelayAccumulator, generated: int, lost: int, errors: int, delay: float | None) -> dict[str, Any]:
    """Counts, delay quantiles and the violation estimate of one flow (or of the flow of interest).

    Intervals are for autocorrelated delays (``federation.stats.tail_probability`` and
    ``tail_quantiles``: batch means); in streaming mode the quantiles have no interval.
    """
    viol: dict[str, Any] | None = None
    intervals: dict[str, Any] = {k: None for k in QUANTILES}
    if acc.n and (delay is not None or acc.exact):
        from federation.stats import (  # scipy.stats: only for the intervals
            BatchProportionEstimate,
            ProportionEstimate,
            batch_vif,
            tail_probability,
            tail_quantiles,
        )

        if acc.exact:  # every delay kept, in time order (before quantiles() partitions them)
            x = acc.values()
            for key, e in zip(QUANTILES, tail_quantiles(x, list(QUANTILES.values())).values()):
                ci = e.interval(0.95)
                intervals[key] = {"ci95_low": ci.low, "ci95_high": ci.high, "n_eff": e.n_eff,
                                  "conclusive": e.conclusive(0.95), "method": e.method}
        if delay is not None:
            v: ProportionEstimate
            if acc.exact:
                v = tail_probability(x > delay)
            else:  # streaming: exceedance counts per chunk, in time order
                b = batch_vif(*acc.exceed_series(0))
                v = BatchProportionEstimate(acc.exceed[0], acc.n, b.vif, b.batches, b.dof)
            ci95 = v.interval(0.95)
            viol = {"delay": delay, "value": v.value, "ci95_low": ci95.low, "ci95_high": ci95.high,
                    "count": v.count, "n": v.n, "n_eff": v.n_eff, "method": v.method}
    q = acc.quantiles(list(QUANTILES.values()))
    return {
        "packets": generated,
        "delivered": acc.n,
        "lost": lost,
        "loss_rate": lost / generated if generated else math.nan,
        "inference_errors": errors,
        "delay_quantiles": {k: q[p] for k, p in QUANTILES.items()},
        "delay_quantile_intervals": intervals,
        "quantiles_exact": acc.exact,
        "max_delay": acc.max if acc.n else math.nan,
        "violation_probability": viol,
    }


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print the summary; returns 0 (2 on bad input or an unstable model)."""
    import numpy as np

    from federation.dataplane.engine import Simulation
    from federation.dataplane.impairments import parse_impairment
    from federation.dataplane.path import Domain, Source, path_loads
    from federation.dataplane.telemetry import DelayAccumulator
    from federation.dataplane.traffic import traffic_from_spec
    from federation.specs import parse_arrival, parse_cross, parse_hop
    from federation.stability import require_stable

    if args.time != "continuous":
        raise InputError("--time discrete: the data plane simulates packets in continuous time; "
                         "slotted fluid models are checked by `trefed bound`")
    if args.packets < 1:
        raise InputError(f"--packets(={args.packets}) must be >= 1")
    if args.chunk < 1:
        raise InputError(f"--chunk(={args.chunk}) must be >= 1")
    if args.delay is not None and not (args.delay >= 0 and math.isfinite(args.delay)):
        raise InputError(f"--delay(={args.delay}) must be >= 0 and finite (s)")
    hops = [parse_hop(h) for h in args.hop]
    sources = [Source(i, traffic_from_spec(parse_arrival(a, args.time), packet_size=args.packet_size))
               for i, a in enumerate(args.arrival)]
    k = len(sources)  # flows 0..k-1: the flow of interest
    # service=exp hops serve one packet of the flow of interest's mean size per completion (bits per
    # packet, weighted by packet rate), as in `trefed bound`: mean service time = size / rate.
    rates = [s.traffic.packet_rate for s in sources]
    size = sum(r * s.traffic.sizes.mean for r, s in zip(rates, sources)) / sum(rates)
    domains = [Domain.from_hop(h, args.scheduler, name=str(i + 1), packet_size=size) for i, h in enumerate(hops)]
    specs = list(args.arrival)
    for i, text in enumerate(args.cross):
        c = parse_cross(text, len(hops), args.time)
        sources.append(Source(k + i, traffic_from_spec(c.arrival, packet_size=args.packet_size),
                              entry=c.hop - 1, exit=c.hop - 1))
        specs.append(text)
    impairments = [parse_impairment(x) for x in args.impair]
    admission = _reservations(args, sources, domains)
    loads = path_loads(sources, domains, admission, size)
    unstable = require_stable(loads, "bits/s", allow=args.allow_unstable,
                              what="or give --allow-unstable for a transient study")
    for x in unstable:
        print(x.warning("bits/s"), file=sys.stderr)
    # --packets counts the flow of interest; the engine stops on flow 0's count: its share of N.
    first = args.packets if k == 1 else max(1, round(args.packets * rates[0] / sum(rates)))
    sim = Simulation(domains, sources, seed=args.seed, packets=first, admission=admission,
                     impairments=impairments, chunk_packets=args.chunk, record_domains=False)
    thresholds = [args.delay] if args.delay is not None else []
    expect = [int(first * s.traffic.packet_rate / rates[0] * 1.01) + 1000 for s in sources]
    acc = DelayAccumulator(thresholds, expected=sum(expect[:k]))
    nflows = len(sources)
    per = [DelayAccumulator(thresholds, expected=e) for e in expect] if nflows > 1 else []
    lost = np.zeros(nflows, np.int64)
    generated = np.zeros(nflows, np.int64)
    errors = np.zeros(nflows, np.int64)
    show = args.progress if args.progress is not None else args.packets >= 5_000_000
    t0 = time.perf_counter()
    with packet_progress(show, args.packets) as progress:
        for chunk in sim.chunks():
            d = chunk.delivered
            if len(d):
                for f, a in enumerate(per):
                    mine = d.select(d.flow == f)
                    a.add(mine.egress - mine.ingress, copy=False)
                    errors[f] += int(np.count_nonzero(mine.error))
                if nflows > k:
                    d = d.select(d.flow < k)
                acc.add(d.egress - d.ingress, copy=False)
                if not per:
                    errors[0] += int(np.count_nonzero(d.error))
            lost += chunk.lost
            generated += chunk.generated
            if progress is not None:
                progress(int(generated[:k].sum()))
    total, gone = int(generated[:k].sum()), int(lost[:k].sum())
    if acc.n + gone != total:  # pragma: no cover - an engine invariant
        raise RuntimeError(f"accounting error: {acc.n} delivered + {gone} lost != {total} generated")
    # Quantile mode: exact whenever every delay is kept; the tail of a streamed run is exact when
    # all packets were delivered (the expected count), the bulk within 0.01 %.
    result = _summary(acc, total, gone, int(errors[:k].sum()), args.delay)
    elapsed = time.perf_counter() - t0  # the whole pipeline: traffic, hops, quantiles
    tenants = []
    for f, a in enumerate(per):
        s = sources[f]
        hops_of = list(range(s.entry + 1, (len(domains) if s.exit is None else s.exit + 1) + 1))
        tenants.append({"tenant": s.tenant, "spec": specs[f], "role": "arrival" if f < k else "cross", "hops": hops_of,
                        **_summary(a, int(generated[f]), int(lost[f]), int(errors[f]), args.delay)})
    result.update({
        "tenants": tenants,
        "hop_loads": [{"hop": x.hop, "who": x.who, "rho": x.rho} for x in loads],
        "stable": not unstable,
        "packet_hops": sim.packet_hops,
        "elapsed_seconds": elapsed,
        "packet_hops_per_second": sim.packet_hops / elapsed if elapsed > 0 else math.nan,
        "scheduler": args.scheduler,
        "seed": args.seed,
        "hops": len(domains),
        "cross_flows": len(args.cross),
    })
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=True))
        return 0
    _print(result, args.delay)
    return 0


def _print(result: dict[str, Any], delay: float | None) -> None:
    """The human summary: the flow of interest, then one row per tenant (when several flows)."""
    flows = "flow of interest" if len(result["tenants"]) <= 1 else "flow of interest: every --arrival tenant"
    print(f"packets {result['packets']:,} ({flows}), delivered {result['delivered']:,}, lost {result['lost']:,} "
          f"(loss rate {result['loss_rate']:.3g})")
    print("end-to-end delay (s): " + ", ".join(f"{k} {v:.6g}" for k, v in result["delay_quantiles"].items())
          + f", max {result['max_delay']:.6g}" + ("" if result["quantiles_exact"] else "  [p50 from a 0.01 % histogram]"))
    cis = [f"{k} [{v['ci95_low']:.4g}, {v['ci95_high']:.4g}]" + ("" if v["conclusive"] else " (inconclusive)")
           for k, v in result["delay_quantile_intervals"].items() if v is not None and k != "p50"]
    if cis:
        print("  95 % CI: " + ", ".join(cis))
    viol = result["violation_probability"]
    if viol is not None:
        print(f"P(delay > {delay:g} s) = {viol['value']:.4g}  (95 % CI [{viol['ci95_low']:.4g}, "
              f"{viol['ci95_high']:.4g}], {viol['count']:,}/{viol['n']:,}, effective n {viol['n_eff']:,.0f})")
    if result["tenants"]:
        print("per tenant (delays in s; a cross flow's over its one hop):")
        for t in result["tenants"]:
            where = "every hop" if t["role"] == "arrival" else f"cross at hop {t['hops'][0]}"
            print(f"  tenant {t['tenant']}: {t['spec']} ({where})")
        cols = ["tenant", "packets", "lost", *QUANTILES, "max"] + ([f"P(D>{delay:g})"] if delay is not None else [])
        rows = [[str(t["tenant"]), f"{t['packets']:,}", f"{t['lost']:,}",
                 *(f"{v:.4g}" for v in t["delay_quantiles"].values()), f"{t['max_delay']:.4g}"]
                + ([f"{t['violation_probability']['value']:.3g}"] if delay is not None else [])
                for t in result["tenants"]]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        for r in [cols, *rows]:
            print("  " + "  ".join(x.rjust(w) for x, w in zip(r, widths)))
    print(f"{result['packet_hops']:,} packet-hops in {result['elapsed_seconds']:.3f} s: "
          f"{result['packet_hops_per_second'] / 1e6:.1f} M packet-hops/s")
