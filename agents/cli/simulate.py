"""``trefed simulate``: packet-level Monte-Carlo of a tandem path (the data plane).

Same ``--arrival`` / ``--hop`` / ``--cross`` grammar and ``--time`` as ``trefed bound``. The
``--arrival`` flows (repeat to aggregate; tenants 0, 1, ...) cross every hop and together are
the flow of interest; each ``--cross`` flow (the next tenant ids) enters at its hop, shares it
and leaves after it. ``--packets`` counts packets of the first ``--arrival``; every flow runs
until that packet arrives. Reports the end-to-end delay quantiles of the flow of interest, its
delay-violation probability at ``--delay`` with an exact (Clopper-Pearson) 95 % interval, its
loss rate, and the engine speed in packet-hops per second (the whole pipeline).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import numpy as np

from federation.dataplane.engine import Simulation
from federation.dataplane.impairments import parse_impairment
from federation.dataplane.path import SCHEDULERS, Admission, Domain, Source
from federation.dataplane.telemetry import DelayAccumulator
from federation.dataplane.traffic import traffic_from_spec
from federation.errors import InputError
from federation.specs import parse_arrival, parse_cross, parse_hop
from federation.stats import violation_estimate

__all__ = ["register", "run", "QUANTILES"]

#: Reported quantiles of the end-to-end delay: JSON key -> probability.
QUANTILES: dict[str, float] = {"p50": 0.5, "p99": 0.99, "p99.9": 0.999, "p99.99": 0.9999}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` sub-command."""
    p = subparsers.add_parser(
        "simulate",
        help="packet-level Monte-Carlo of a tandem path: delay quantiles, violation probability, loss",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arrival", action="append", required=True, metavar="SPEC",
                   help="KIND:key=value,...: a through flow, e.g. poisson:rate=800 (repeat to aggregate)")
    p.add_argument("--hop", action="append", required=True,
                   help="a domain, in path order (repeat): rate=R[,latency=T][,service=size|exp][,prop=P]"
                        "[,buffer=B][,ceiling=C][,loss=p]")
    p.add_argument("--cross", action="append", default=[], help="HOP=SPEC: a one-hop cross flow (repeat)")
    p.add_argument("--time", choices=("continuous", "discrete"), default="continuous",
                   help="time model (the data plane simulates continuous time)")
    p.add_argument("--packets", type=int, default=1_000_000, help="packets of the first --arrival to simulate")
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
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: for runs of at least 5 million packets)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _reservations(args: argparse.Namespace, sources: list[Source], domains: list[Domain]) -> Admission:
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


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print the summary; returns 0."""
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
    size = (sum(s.traffic.packet_rate * s.traffic.sizes.mean for s in sources)
            / sum(s.traffic.packet_rate for s in sources))
    domains = [Domain.from_hop(h, args.scheduler, name=str(i + 1), packet_size=size) for i, h in enumerate(hops)]
    for i, text in enumerate(args.cross):
        c = parse_cross(text, len(hops), args.time)
        sources.append(Source(k + i, traffic_from_spec(c.arrival, packet_size=args.packet_size),
                              entry=c.hop - 1, exit=c.hop - 1))
    impairments = [parse_impairment(x) for x in args.impair]
    admission = _reservations(args, sources, domains)
    sim = Simulation(domains, sources, seed=args.seed, packets=args.packets, admission=admission,
                     impairments=impairments, chunk_packets=args.chunk, record_domains=False)
    rate0 = sources[0].traffic.packet_rate
    expected = int(args.packets * sum(s.traffic.packet_rate for s in sources[:k]) / rate0 * 1.01) + 1000
    acc = DelayAccumulator([args.delay] if args.delay is not None else [], expected=expected)
    lost = 0
    errors = 0
    show = args.progress if args.progress is not None else args.packets >= 5_000_000
    t0 = time.perf_counter()
    progress = None
    if show:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("simulate"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task("simulate", total=args.packets)
    done = 0
    generated = 0
    try:
        for chunk in sim.chunks():
            d = chunk.delivered
            if len(d):
                if sim.nflows > k:
                    d = d.select(d.flow < k)
                acc.add(d.egress - d.ingress, copy=False)
                errors += int(np.count_nonzero(d.error))
            lost += int(chunk.lost[:k].sum())
            generated += int(chunk.generated[:k].sum())
            done += int(chunk.generated[0])
            if progress is not None:
                progress.update(task, completed=done)
    finally:
        if progress is not None:
            progress.stop()
    if acc.n + lost != generated:  # pragma: no cover - an engine invariant
        raise RuntimeError(f"accounting error: {acc.n} delivered + {lost} lost != {generated} generated")
    # Quantile mode: exact whenever every delay is kept; the tail of a streamed run is exact when
    # all packets were delivered (the expected count), the bulk within 0.01 %.
    q = acc.quantiles(list(QUANTILES.values()))
    elapsed = time.perf_counter() - t0  # the whole pipeline: traffic, hops, quantiles
    viol: dict[str, Any] | None = None
    if args.delay is not None:
        v = violation_estimate(acc.exceed[0], acc.n)
        ci95 = v.interval(0.95)
        viol = {"delay": args.delay, "value": v.value, "ci95_low": ci95.low, "ci95_high": ci95.high,
                "count": v.count, "n": v.n}
    result: dict[str, Any] = {
        "packets": generated,
        "delivered": acc.n,
        "lost": lost,
        "loss_rate": lost / generated,
        "inference_errors": errors,
        "delay_quantiles": {k: q[p] for k, p in QUANTILES.items()},
        "quantiles_exact": acc.exact,
        "max_delay": acc.max if acc.n else math.nan,
        "violation_probability": viol,
        "packet_hops": sim.packet_hops,
        "elapsed_seconds": elapsed,
        "packet_hops_per_second": sim.packet_hops / elapsed if elapsed > 0 else math.nan,
        "scheduler": args.scheduler,
        "seed": args.seed,
        "hops": len(domains),
        "cross_flows": len(args.cross),
    }
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=True))
        return 0
    out = sys.stdout
    print(f"packets {generated:,} (flow of interest), delivered {acc.n:,}, lost {lost:,} "
          f"(loss rate {result['loss_rate']:.3g})", file=out)
    print("end-to-end delay (s): " + ", ".join(f"{k} {v:.6g}" for k, v in result["delay_quantiles"].items())
          + ("" if acc.exact else "  [p50 from a 0.01 % histogram]"), file=out)
    if viol is not None:
        print(f"P(delay > {args.delay:g} s) = {viol['value']:.4g}  (95 % CI [{viol['ci95_low']:.4g}, "
              f"{viol['ci95_high']:.4g}], {viol['count']:,}/{viol['n']:,})", file=out)
    print(f"{sim.packet_hops:,} packet-hops in {elapsed:.3f} s: "
          f"{result['packet_hops_per_second'] / 1e6:.1f} M packet-hops/s", file=out)
    return 0
