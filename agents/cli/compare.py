"""``trefed compare``: is the calculus bound valid for MY model, and how tight is it? With pictures.

Computes the bound curve ``P(D > d)`` of ``trefed bound`` on a grid of delays and runs the
packet-level simulation of ``trefed simulate`` on the same model, compares like with like (see
:mod:`federation.compare.run`), writes ``compare.json``, ``ccdf.png`` and ``report.md`` to ``--out``
and prints a summary. Exit code 0 when the bound is valid, 1 when it is violated, 2 on bad input
(an unstable model included).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.cli.progress import packet_progress
from agents.cli.simulate import SCHEDULERS
from agents.cli.text import plain
from federation.errors import InputError

if TYPE_CHECKING:  # the comparison (scipy, numba, matplotlib) is imported when the command runs
    from federation.compare.run import CompareResult

__all__ = ["register", "run", "EPSILONS"]

#: Default of ``--epsilons``: ``federation.compare.run.DEFAULT_EPSILONS`` (a test keeps them
#: equal), written out so that building the parser does not import the comparison.
EPSILONS = "0.01,0.001,0.0001"

_EPILOG = """\
What is compared. The calculus bounds the time-stationary virtual delay (the time until all work
of the flow that arrived by a random instant has left the last hop, plus latencies); the data
plane measures each packet's end-to-end delay (egress of the last hop minus arrival).
  packet  (auto for one Poisson --arrival through FIFO hops): every packet's end-to-end delay,
          against the bound converted exactly to packet delays (PASTA; own service time of the
          packet convolved in on one hop; last-hop transmission L/R_H added on constant-rate
          tandems; the tagged packet as an extra burst elsewhere).
  virtual (otherwise, e.g. on-off sources, several flows, wfq): the simulated virtual delay at
          time-uniform probe instants against the bound (shifted by the packetisation lag of
          on-off sources, with packetizer latencies on tandems).
Models where bound and simulation are not about the same quantity are refused with the reason
(token-bucket and pareto sources, buffer/ceiling/loss hops, partition with shared hops, ...).

Verdict: VIOLATED when the simulated P(D > d) is significantly above the bound at some grid point
with enough data: one-sided tests at every such point (and every load of --loads) together, Holm's
procedure at family-wise error 1 - --confidence (default 1 %), intervals for autocorrelated delays
(batch means, Clopper-Pearson at the effective sample size); VALID otherwise. The exit code is the
verdict: 0 VALID, 1 VIOLATED.

Outputs in --out (default results/compare-<UTC timestamp>/): compare.json, ccdf.png, report.md
(and delay_vs_load.png with --loads).

Examples:
  trefed compare --arrival poisson:rate=0.8,size=exp --hop rate=1 --packets 1000000
  trefed compare --arrival mmoo:on=1,off=1,peak=1,n=4 --hop rate=3 --packet-size 0.05
  trefed compare --arrival poisson:rate=0.5 --hop rate=1 --hop rate=1.5 --cross 2=poisson:rate=0.5 \\
      --loads 0.3,0.5,0.7,0.9
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` sub-command."""
    p = subparsers.add_parser(
        "compare",
        help="calculus bound vs packet-level simulation of the same model: validity, tightness, pictures",
        description=plain(__doc__ or ""),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arrival", action="append", required=True, metavar="SPEC",
                   help="KIND:key=value,... (repeat to aggregate)")
    p.add_argument("--hop", action="append", required=True, metavar="SPEC",
                   help="rate=R[,latency=T][,service=size|exp][,prop=P] (repeat, in path order)")
    p.add_argument("--cross", action="append", default=[], metavar="HOP=SPEC", help="one-hop cross flow at HOP")
    p.add_argument("--time", choices=("continuous", "discrete"), default="continuous",
                   help="time model (only continuous: the data plane simulates packets in continuous time)")
    p.add_argument("--packets", type=int, default=200_000, help="packets of the first --arrival to simulate")
    p.add_argument("--seed", type=int, default=0, help="root random seed")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="fifo",
                   help="scheduler in every domain of the simulation")
    p.add_argument("--epsilons", default=EPSILONS,
                   help=f"target violation probabilities, comma-separated (default {EPSILONS})")
    p.add_argument("--notion", choices=("auto", "packet", "virtual"), default="auto",
                   help="compared delay: per-packet end-to-end or time-stationary virtual delay")
    p.add_argument("--packet-size", type=float, default=1.0, help="packet size (bits) of on-off flows")
    p.add_argument("--confidence", type=float, default=0.99,
                   help="1 - the family-wise error of the verdict (Holm over all tested grid points)")
    p.add_argument("--loads", default=None,
                   help="comma-separated bottleneck utilisations in (0,1): rerun with the arrival rates "
                        "scaled to each and plot delay vs load")
    p.add_argument("--out", default=None, help="output directory (default results/compare-<timestamp>/)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG figures")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: for runs of at least 2 million packets)")
    p.add_argument("--json", action="store_true", help="print compare.json to stdout instead of the summary")
    p.set_defaults(func=run)


def _floats(text: str, what: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}(={text!r}) must be comma-separated numbers") from None
    if not vals:
        raise InputError(f"{what}(={text!r}) is empty")
    return vals


def _out_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    base = Path("results") / f"compare-{stamp}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def _summary(r: CompareResult, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"compared: [bold]{r.notion} delay[/] ({r.notion_reason})")
    t = Table(title=f"bound vs simulation ({r.notion} delay, {r.samples:,} samples, utilisation "
                    f"{r.utilisation:.2f})")
    for col in ("epsilon", "bounded d (s)", "method", "simulated d (s)", "95 % CI (s)", "bound/sim"):
        t.add_column(col, justify="right" if col != "method" else "left")
    for e in r.epsilons:
        t.add_row(f"{e.epsilon:g}", f"{e.bound_delay:.4g}", e.bound_method,
                  f"{e.sim_delay:.4g}" + ("" if e.enough else "*"),
                  f"[{e.sim_ci95_low:.4g}, {e.sim_ci95_high:.4g}]", f"{e.ratio:.3f}")
    con.print(t)
    for row in r.loads:
        cells = ", ".join(f"@{e.epsilon:g} {e.ratio:.2f}x" for e in row.epsilons)
        con.print(f"load {row.load:g}: bound/sim {cells}  {'VALID' if row.valid else 'VIOLATED'}")
    fwe = f"family-wise error {1 - r.confidence:.2g}, Holm over {r.tested} grid points"
    if r.valid:
        con.print(f"[bold green]VALID[/]: no grid point's simulated probability is significantly above "
                  f"the bound ({fwe})")
        if r.worst_ratio != r.worst_ratio:  # nan: no point with a non-trivial bound had enough data
            con.print("(vacuous: the bound is 1 wherever the simulation has enough data)")
    else:
        where = "" if r.worst_delay == r.worst_delay else " at a load of the sweep"
        if not where:
            where = f" at d = {r.worst_delay:.4g} s (simultaneous lower limit / bound = {r.worst_ratio:.3g})"
        con.print(f"[bold red]VIOLATED[/]{where} ({fwe})")
    if any(not e.enough for e in r.epsilons):
        con.print("* too few effective samples beyond the quantile for its upper limit: raise --packets")
    con.print(f"report: {out / 'report.md'}")


def run(args: argparse.Namespace) -> int:
    """Run the comparison, write the files, print the summary; 0 if valid, 1 if violated."""
    from federation.compare.report import markdown_report
    from federation.compare.run import compare, compare_loads, joint_verdict

    if args.time != "continuous":
        raise InputError("--time discrete: the data plane simulates packets in continuous time, so there is "
                         "no slotted simulation to compare with (the calculus' slotted bounds are checked "
                         "by its own tests)")
    eps = _floats(args.epsilons, "--epsilons")
    loads = _floats(args.loads, "--loads") if args.loads else []
    show = args.progress if args.progress is not None else args.packets >= 2_000_000
    kw: dict[str, Any] = dict(packets=args.packets, seed=args.seed, scheduler=args.scheduler, epsilons=eps,
                              notion=args.notion, packet_size=args.packet_size, confidence=args.confidence)
    with packet_progress(show, args.packets) as progress:
        r = compare(args.arrival, args.hop, args.cross, progress=progress, **kw)
        if loads:  # one verdict over the model and the sweep together
            r = joint_verdict(replace(r, loads=compare_loads(args.arrival, args.hop, args.cross, loads=loads,
                                                             progress=progress, **kw)))
    out = _out_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = r.to_json()
    (out / "compare.json").write_text(json.dumps(data, indent=2) + "\n")
    ccdf = loads_png = None
    if not args.no_plot:
        from federation.compare.plots import ccdf_figure, delay_vs_load_figure

        ccdf_figure(r, out / "ccdf.png")
        ccdf = "ccdf.png"
        if r.loads:
            delay_vs_load_figure(r.loads, out / "delay_vs_load.png",
                                 title=" + ".join(args.arrival) + " → " + " → ".join(args.hop))
            loads_png = "delay_vs_load.png"
    (out / "report.md").write_text(markdown_report(r, ccdf, loads_png))
    if args.json:
        data["out"] = str(out)
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _summary(r, out)
    return 0 if r.valid else 1
