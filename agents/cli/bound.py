"""``trefed bound``: end-to-end delay tail bounds through a tandem of hops (a calculator).

Given ``--delay D`` it prints a bound on ``P(D_e2e > D)``; given ``--epsilon E`` the smallest
delay ``D`` with ``P(D_e2e > D) <= E``. The bound is the smallest of the methods that apply
(deterministic, martingale, MGF tandem; with ``--multiplexing fifo`` the FIFO bounds) and the
output says which one gave it, plus the
risk-budget split into per-hop ``(d_i, eps_i)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from federation.errors import InputError

if TYPE_CHECKING:  # the calculus (numpy, scipy) is imported when the command runs
    pass

__all__ = ["register", "run"]

_EPILOG = """\
What is bounded. The flow of interest (the aggregate of the --arrival flags) crosses the hops in
order; a --cross HOP=SPEC flow shares hop HOP only (it enters there and leaves after it) and is
served with arbitrary priority against the flow (blind multiplexing: the bound holds for any
work-conserving scheduler, including strict priority to the cross traffic). With
--multiplexing fifo the hops serve their cross traffic and the flow in one FIFO queue, as the
data plane's fifo domains do, and the FIFO bounds (methods mgf-fifo, martingale-fifo and, for
fixed-size Poisson packets with Poisson cross traffic in continuous time, fifo-recursion) apply too.

Continuous time (seconds, bits, bits/s): for one Poisson --arrival the bounded delay is a
packet's end-to-end *sojourn* -- from its arrival to the departure of its last bit from the last
hop, its own transmissions included, what `trefed simulate` and the auditor measure (a Poisson
arrival sees the time-stationary state, PASTA; store-and-forward: the packetizer latency
size/rate of every constant-rate hop but the last is included) -- plus every hop's latency and
prop. Exponential packet sizes (size=exp) through two or more hops are bounded without cross
traffic only (max-plus; no packetizer latency bounds an unbounded packet). For other traffic
the bounded delay is the end-to-end *virtual delay* at a time-stationary instant t -- the time
until all work of the flow that arrived by t has left the last hop, in the fluid model (work is
served bit by bit) -- plus the latencies (for a token bucket, at every instant). service=exp
hops serve one packet (the flow's mean packet size) per completion, completions at rate
rate/size per second (i.i.d. exponential service times). Precisely, the delay is the horizontal
deviation min{T: A(0,t) <= D_out(0,t+T)} of the flow's cumulative bits: "all work that arrived
by t has left" when the flow is served FIFO internally; for several --arrival flows served out
of order (e.g. WFQ among them) the last packet may leave later. `trefed compare` checks the
bound against `trefed simulate` on the same model.

Discrete time (slots, bits, bits/slot): the standard slotted model (work arriving in slot t can be
served in slot t; what hop i serves in slot t enters hop i+1 in the same slot); the delay is
D(t) = min{T >= 0 integer: A(0,t) <= D_out(0,t+T)} at a stationary slot t, plus the latencies.
service=exp hops have i.i.d. exponential per-slot capacity of mean rate.

Data-plane hop keys (buffer, ceiling) are ignored here; loss is reported, not bounded.

An unstable model (load rho >= 1 at a hop: the mean arrival rate there, cross traffic included,
at least the hop's rate) has no finite bound: exit code 2 naming the hop and its load.

Examples:
  trefed bound --arrival poisson:rate=800,size=exp,mean_size=1000 --hop rate=1e6 --delay 0.01
  trefed bound --time discrete --arrival mmoo:stay_on=0.9,stay_off=0.9,peak=1,n=10 \\
      --hop rate=7 --hop rate=8,service=exp --cross 2=poisson:rate=0.5 --epsilon 1e-3 --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bound`` sub-command."""
    p = subparsers.add_parser(
        "bound",
        help="end-to-end delay tail bound through a tandem of hops (stochastic network calculus)",
        description="trefed bound: end-to-end delay tail bounds through a tandem of hops (stochastic "
        "network calculus). The smallest valid bound is reported with the method that gave it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--time", choices=("continuous", "discrete"), default="continuous", help="time model")
    p.add_argument(
        "--arrival", action="append", required=True, metavar="SPEC", help="KIND:key=value,... (repeat to aggregate)"
    )
    p.add_argument(
        "--hop",
        action="append",
        required=True,
        metavar="SPEC",
        help="rate=R[,latency=T][,service=size|exp][,prop=P] (repeat, in path order)",
    )
    p.add_argument("--cross", action="append", default=[], metavar="HOP=SPEC", help="one-hop cross flow at HOP")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--delay", type=float, help="delay D (s or slots): print a bound on P(delay > D)")
    g.add_argument("--epsilon", type=float, help="probability E in (0,1): print the smallest D with P <= E")
    p.add_argument(
        "--dependent", action="store_true", help="the --arrival flows may be dependent (Hölder instead of independence)"
    )
    p.add_argument(
        "--multiplexing", choices=("blind", "fifo"), default="blind",
        help="how a hop serves its --cross flows with the flow: blind (any work-conserving scheduler) or fifo",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)




def run(args: argparse.Namespace) -> int:
    """Compute and print the bound; returns 0 (exit 2 on bad input or an unstable model)."""
    from federation.calculus.budget import hop_bounds
    from federation.calculus.compose import delay_bound, packetized, split_bound, violation_bound
    from federation.calculus.model import build_model, tandem_loads
    from federation.specs import parse_arrival, parse_cross, parse_hop
    from federation.stability import require_stable

    if args.delay is not None and not (args.delay >= 0 and math.isfinite(args.delay)):
        raise InputError(f"--delay(={args.delay!r}) must be >= 0 and finite")
    if args.epsilon is not None and not 0 < args.epsilon < 1:
        raise InputError(f"--epsilon(={args.epsilon!r}) must be in (0, 1)")
    arrivals = [parse_arrival(a, args.time) for a in args.arrival]
    hops = [parse_hop(h) for h in args.hop]
    cross = [parse_cross(c, len(hops), args.time) for c in args.cross]
    model = build_model(arrivals, hops, cross, time=args.time, dependent=args.dependent,
                        multiplexing=args.multiplexing)
    flow, services = model.flow, list(model.services)
    require_stable(tandem_loads(flow, services), "bits/s" if args.time == "continuous" else "bits/slot")
    names = [f"hop {i}" for i in range(1, len(services) + 1)]
    if args.delay is not None:
        b = violation_bound(flow, services, args.delay, names=names)
    else:
        b = delay_bound(flow, services, args.epsilon, names=names)
    # The split's offsets are the latencies the bound used, the packetizer's included (every hop
    # but the last holds a packet L/R): no hop gets less than a packet's pass through it.
    hop_services = packetized(flow, services)
    per = split_bound([str(i) for i in range(1, len(services) + 1)], flow, hop_services, b)
    alone = list(hop_bounds(flow, hop_services, [p.delay for p in per]))
    if len(services) > 1:  # the first hop sees the flow as declared: every method applies to it alone
        alone[0] = min(alone[0], violation_bound(flow, services[:1], per[0].delay).epsilon)
    else:
        alone[0] = min(alone[0], b.epsilon)
    loss = 1.0 - math.prod(1.0 - h.loss for h in hops)
    unit = "s" if args.time == "continuous" else "slots"
    out: dict[str, Any] = {
        "time": args.time,
        "method": b.method,
        "theta": None if math.isnan(b.theta) else b.theta,
        "theta_unit": b.theta_unit,
        "delay": b.delay,
        "hops": [
            {"hop": i, "spec": h.text, "rate": h.rate, "latency": h.latency, "prop": h.prop, "service": h.service}
            for i, h in enumerate(hops, start=1)
        ],
        "arrival": {"specs": list(args.arrival), "mean_rate": flow.mean_rate, "dependent": bool(args.dependent)},
        "cross": list(args.cross),
        "multiplexing": args.multiplexing,
        "per_domain": [{"hop": int(p.domain_id), "delay": p.delay, "epsilon": p.epsilon, "hop_bound": a,
                        "backed": a <= p.epsilon} for p, a in zip(per, alone)],
        "loss_probability": loss,
    }
    if args.delay is not None:
        out["violation_probability"] = b.epsilon
    else:
        out["epsilon"] = args.epsilon
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.delay is not None:
        print(f"P(delay > {args.delay:g} {unit}) <= {b.epsilon:.6g}   [{b.method}]")
    else:
        print(f"delay <= {b.delay:.6g} {unit} with probability >= 1 - {args.epsilon:g}   [{b.method}]")
    if not math.isnan(b.theta):
        print(f"theta = {b.theta:.6g} {b.theta_unit}")
    print("per-hop budget (sum d_i <= d, sum eps_i <= eps; backed: the hop's own bound at d_i is within eps_i):")
    for p, a in zip(per, alone):
        note = "backed" if a <= p.epsilon else f"not backed: the hop alone proves only {a:.3g}"
        print(f"  hop {p.domain_id}: d_i = {p.delay:.6g} {unit}, eps_i = {p.epsilon:.3g}   [{note}]")
    if not all(a <= p.epsilon for p, a in zip(per, alone)):
        print("  (the end-to-end bound pays the burst once; hop by hop it is paid at every hop)")
    if loss > 0:
        print(f"loss probability (not in the delay bound): {loss:.3g}")
    return 0
