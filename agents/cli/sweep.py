"""``trefed sweep``: a grid of config parameters times seeds, as Ray tasks over a cluster's nodes.

``trefed sweep CONFIG --grid KEY=V1,V2,... [--grid ...] --seeds N [--address ADDR] --out DIR``
    runs every point of the grid's cartesian product ``N`` times (seeds ``run.seed .. run.seed+N-1``),
    each (point, seed) a Ray task running the whole loop of ``trefed run`` in its worker
    (:mod:`agents.sweep`), and writes ``DIR/rows.jsonl`` (streamed), ``rows.csv``, ``rows.parquet``,
    ``aggregate.csv``, ``sweep.json``, ``sweep.md`` and the figures. ``KEY`` is a dotted path into the
    config (``tenants[0].intent.epsilon``, ``domains[1].model.rate_bps``, ``run.scheduler``, an
    experiment's knob such as ``experiment.loads``); every point is validated before Ray starts
    (exit 2 naming the key). A rerun with the same ``--out`` runs only what is not done yet.
    ``--address`` (or ``RAY_ADDRESS``) joins a cluster (exit 2 at once when nothing answers there);
    without one, a local Ray on 127.0.0.1. ``--serial`` runs the tasks one by one in this process
    (no Ray): the reference a cluster's results must match.

Exit code 0 when every task ran, 1 when some failed (each is in ``sweep.md`` with its error), 2 for
bad input. Progress (tasks done, in flight, rate, ETA) goes to stderr; the summary to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time

from federation.errors import InputError

__all__ = ["register", "run_sweep_command"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the ``trefed`` parser."""
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of config parameters x seeds as Ray tasks over a cluster; rows, aggregate, figures",
        description="Run every point of the cartesian product of the --grid axes, --seeds times each, as Ray "
        "tasks spread over the nodes of a local Ray (default) or the cluster at --address; each task runs the "
        "whole loop of `trefed run` in-process. Writes rows (JSON lines, CSV, Parquet), the aggregate per "
        "point with Student-t intervals across seeds, figures, sweep.json and sweep.md into --out. A rerun with "
        "the same --out resumes. Exit 0: every task ran; 1: some failed; 2: bad input.",
    )
    p.add_argument("config", metavar="CONFIG", help="federation config (YAML)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a dotted config path and its values, e.g. tenants[0].intent.epsilon=0.005,0.01 "
                        "(repeatable: the cartesian product)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="replications per point, seeds run.seed .. run.seed+N-1 (default 1)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory; a rerun into it skips finished tasks (default runs/NAME-sweep-YYYYmmdd-HHMMSS)")
    p.add_argument("--address", default=None,
                   help="address of an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray on 127.0.0.1)")
    p.add_argument("--max-retries", type=int, default=3, metavar="K",
                   help="Ray's retries of a task whose worker or node dies (default 3)")
    p.add_argument("--max-in-flight", type=int, default=None, metavar="M",
                   help="tasks submitted at once (default twice the cluster's CPUs)")
    p.add_argument("--metric", action="append", default=None, metavar="NAME",
                   help="a metric of sweep.md's table and the figures (repeatable; default admitted, "
                        "worst_violation_rate, violation_found, claim_holds: those the rows have)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--serial", action="store_true", help="run the tasks one by one in this process, without Ray")
    p.add_argument("--no-figures", action="store_true", help="do not draw the figures")
    p.add_argument("--insecure", action="store_true", help="run each point's federation without TLS (faster)")
    p.set_defaults(func=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """``trefed sweep``: exit 0 every task ran, 1 some failed."""
    import hashlib
    from pathlib import Path

    import yaml

    from agents.cli.run import phase_printer
    from federation.experiment.sweep import parse_grid, plan_sweep

    on_phase = phase_printer()
    if not 0.0 < args.level < 1.0:
        raise InputError(f"--level(={args.level!r}) must be in (0, 1)")
    if args.max_retries < 0:
        raise InputError(f"--max-retries(={args.max_retries}) must be >= 0")
    if args.max_in_flight is not None and args.max_in_flight < 1:
        raise InputError(f"--max-in-flight(={args.max_in_flight}) must be >= 1")
    if args.serial and args.address:
        raise InputError("--serial runs without Ray: it takes no --address")
    axes = parse_grid(args.grid)
    path = Path(args.config)
    on_phase(f"loading {path}")
    from federation.config import load_config

    config = load_config(path)  # names the file and the field when it does not load
    raw = path.read_bytes()
    data = yaml.safe_load(raw.decode("utf-8"))
    plan = plan_sweep(data, axes, args.seeds, config_sha256=hashlib.sha256(raw).hexdigest(),
                      config_path=str(path), base_dir=path.parent)
    on_phase(f"sweep: {len(plan.points)} points x {plan.seeds} seeds = {len(plan.tasks)} tasks"
             f"{' (each runs the experiment ' + config.experiment.kind + ')' if config.experiment else ''}")
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out(={str(out)!r}) is not a directory")
    runtime = None
    if not args.serial:
        # An explicit cluster address must be in the environment before Ray is first imported:
        # agents.runtime keeps a local Ray on loopback only when no address is set.
        if args.address:
            os.environ["RAY_ADDRESS"] = args.address
        on_phase("importing Ray")
        from agents.runtime import Runtime

        runtime = Runtime(args.address, num_cpus=os.cpu_count() or 1)
    from agents.sweep import run_sweep

    metrics = tuple(args.metric) if args.metric else None
    command = ("trefed sweep " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["sweep"]
               else "trefed sweep " + shlex.quote(str(path)))  # (called from Python: the config alone)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Ray's driver prints raylet warnings on stdout
            kw = {"metrics": metrics} if metrics else {}
            doc = run_sweep(plan, out, runtime, base_dir=path.parent, max_retries=args.max_retries,
                            max_in_flight=args.max_in_flight, figures=not args.no_figures, level=args.level,
                            insecure=args.insecure, command=command, on_phase=on_phase, **kw)
    finally:
        if runtime is not None:
            runtime.shutdown()
    t = doc["tasks"]
    env = doc["environment"]
    speed = doc["speedup"]
    print(f"trefed sweep: {doc['points']} points x {doc['seeds']} seeds: {t['ok']} of {t['total']} tasks ok, "
          f"{t['failed']} failed, {t['skipped']} resumed")
    print(f"  {len(env['nodes'])} node(s) ({env['where']}), wall {doc['wall_s']:.1f} s, serial estimate "
          f"{doc['serial_estimate_s']:.1f} s" + (f", speed-up {speed:.2f}x" if isinstance(speed, float) else ""))
    if t["per_node"]:
        print("  tasks per node: " + ", ".join(f"{n[:12]}: {k}" for n, k in sorted(t["per_node"].items())))
    print(f"results: {out / 'sweep.md'} (and sweep.json, rows.csv, rows.parquet, aggregate.csv, figures)")
    return 0 if t["failed"] == 0 and t["not_run"] == 0 else 1
