"""``trefed serve`` and ``trefed run``: the sub-commands that start a federation on Ray.

``trefed serve CONFIG [--host H] [--port P] [--address RAY_ADDRESS] [--state-dir DIR]``
    starts the domain controllers, the broker and the auditor, prints ``broker listening on
    HOST:PORT``, ``auditor listening on HOST:PORT`` (its ``trefed.v1.Auditor`` service) and each
    domain's address, serves until SIGINT or SIGTERM, then shuts everything down.

``trefed run CONFIG [--out DIR] [--json] [--no-figures] [--address RAY_ADDRESS] [--state-dir DIR]``
    the whole loop (:mod:`agents.scenario`): starts the federation, lets the tenants request
    service at their times (admission, two-phase reservation, signed grants), sends the traffic of
    those let in through the data plane under the config's impairments and events, has every domain
    sign and report its telemetry to the auditor, gets the auditor's signed reports and writes
    ``report.json``, ``report.md``, the figures, the telemetry (Parquet), the contracts and the signed
    reports into ``DIR`` (default ``runs/NAME-YYYYmmdd-HHMMSS``). Prints an 80-column summary (or,
    with ``--json``, the report document) and where the report is. Exit code 0 when no violation
    was found, 1 when one was (the report names the domain), 2 for bad input.

``trefed run CONFIG`` with an ``experiment:`` section (:mod:`federation.experiments_spec`)
    runs the experiment instead (:mod:`agents.experiments`): every arm (a variant of the config)
    through the loop or the data plane, ``DIR/arms/NAME/`` per arm, ``experiment.json``, the
    figure(s) and ``report.md`` with the reading; an 80-column summary on stdout, each arm's
    progress on stderr. Exit code 0 when the experiment's claim holds, 1 when it does not, 2 for
    bad input.

``trefed run CONFIG --admissions-only [--json] [--concurrent] ...``
    admission control only: prints each tenant's outcome -- admitted with its contract (model,
    path, end-to-end bound, per-domain budget) or rejected with the reason naming the domain and the
    limit -- and the domains' capacity use, then shuts down. Exit code 0 whatever the admissions were.

Both report each phase of the start-up and shut-down (starting Ray, the domains, the broker,
the tenants' requests, ...) on stderr as it begins, so nothing of it mixes with the output
(``--json`` stays pure JSON: while ``run``'s federation runs, anything else printed on stdout,
such as the raylet warnings Ray's driver prints there, is sent to stderr). The phases are the sentences ``agents.runner.Federation`` passes
to its ``on_phase`` hook.

Security. The agents talk mutual TLS under a federation CA (see :mod:`agents.access`); both
commands say which mode they run in (``security: ...`` on stderr; ``serve`` also on stdout, with
where the CA is). ``serve`` without a ``keys_dir`` in the config writes the CA into a temporary
directory it names and removes on exit, so clients can be issued certificates
(``trefed keys issue --ca DIR ...``). ``--insecure`` turns TLS off: loopback hosts only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from federation.errors import InputError

if TYPE_CHECKING:  # Ray, gRPC and pydantic are imported only when a federation starts
    from rich.console import Console

    from agents.runner import Federation
    from agents.tenant import TenantOutcome
    from federation.config import FederationConfig

__all__ = ["register", "run_serve", "run_run", "render_outcomes", "phase_printer"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``run`` to the ``trefed`` parser."""
    serve = subparsers.add_parser(
        "serve",
        help="start a federation (domains + broker + auditor) and serve the broker's gRPC API until interrupted",
        description="Start the federation of CONFIG on a local Ray (or the cluster at --address), "
        "print the broker's address and serve until SIGINT/SIGTERM.",
    )
    serve.add_argument("config", metavar="CONFIG", help="federation config (YAML)")
    serve.add_argument("--host", default="127.0.0.1", help="interface the agents bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="broker port (default 0: a free port)")
    _common(serve)
    serve.set_defaults(func=run_serve)

    run = subparsers.add_parser(
        "run",
        help="run a federation end to end: admissions, traffic, telemetry, audit; write the report",
        description="Start the federation of CONFIG, let its tenants request service at their times, send "
        "their traffic through the data plane under the config's impairments and events, have every domain "
        "report its signed telemetry to the auditor, and write the accountability report (report.json, "
        "report.md, figures, Parquet telemetry, signed reports) to --out. Exit 0: no violation; 1: a "
        "violation (the report names the domain); 2: bad input. --admissions-only: admission control only. "
        "A config with an experiment: section runs the experiment's arms instead and writes experiment.json, "
        "report.md with the reading, the figure and arms/NAME/ (exit 0: its claim holds; 1: it does not).",
    )
    run.add_argument("config", metavar="CONFIG", help="federation config (YAML)")
    run.add_argument("--out", default=None, metavar="DIR",
                     help="where the report, figures, telemetry and signed reports go "
                          "(default runs/NAME-YYYYmmdd-HHMMSS)")
    run.add_argument("--json", action="store_true", help="print JSON instead of tables")
    run.add_argument("--no-figures", action="store_true", help="do not draw the figures")
    run.add_argument("--admissions-only", action="store_true",
                     help="admission control only: print who was admitted and who was rejected, no traffic")
    run.add_argument("--concurrent", action="store_true",
                     help="with --admissions-only: issue all tenants' requests at once")
    _common(run)
    run.set_defaults(func=run_run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default=None,
        help="address of an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray on 127.0.0.1)",
    )
    p.add_argument("--state-dir", default=None, help="directory of the domains' SQLite files (default: temporary)")
    p.add_argument("--insecure", action="store_true",
                   help="no TLS between the agents and for clients (loopback hosts only; default: mutual TLS)")


def phase_printer(stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> Callable[[str], None]:
    """An ``on_phase`` hook: each phase as one line on ``stream`` (default stderr) as it begins.

    ``[  1.2 s] starting the broker``: seconds since the hook was made. On a terminal the line
    is dimmed (rich); otherwise plain text, flushed at once.
    """
    out = stream if stream is not None else sys.stderr
    t0 = clock()
    console = None
    if out.isatty():
        from rich.console import Console

        console = Console(file=out, highlight=False)

    def on_phase(text: str) -> None:
        line = f"[{clock() - t0:5.1f} s] {text}"
        if console is not None:
            console.print(line, style="dim", markup=False)
        else:
            print(line, file=out, flush=True)

    return on_phase


def _load(args: argparse.Namespace, on_phase: Callable[[str], None]) -> FederationConfig:
    on_phase(f"loading {args.config}")
    from federation.config import load_config

    return load_config(args.config)


def _federation(args: argparse.Namespace, config: FederationConfig, on_phase: Callable[[str], None],
                **kw: Any) -> Federation:
    # An explicit cluster address must be in the environment before Ray is first imported:
    # agents.runtime keeps a local Ray on loopback only when no address is set.
    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    on_phase("importing Ray and gRPC")
    from agents.runner import Federation
    from agents.runtime import Runtime

    on_phase(_security(args, config))
    return Federation(config, runtime=Runtime(args.address), state_dir=args.state_dir, on_phase=on_phase,
                      insecure=args.insecure, **kw)


def _security(args: argparse.Namespace, config: FederationConfig) -> str:
    """The ``security: ...`` line of serve and run."""
    if args.insecure:
        return "security: INSECURE (--insecure): no TLS, no caller identities; loopback only"
    where = f"{config.keys_dir}/ca.crt" if config.keys_dir is not None else "a CA in memory"
    return f"security: mutual TLS between all agents and for clients (federation CA: {where})"


# ---------------------------------------------------------------------------- serve


def run_serve(args: argparse.Namespace) -> int:
    """``trefed serve``: serve until SIGINT/SIGTERM; exit code 0."""
    on_phase = phase_printer()
    config = _load(args, on_phase)
    # The handler takes no lock: it runs in the main thread between two bytecodes, and an
    # Event.set() there deadlocks if the main thread is inside Event.wait() (holding its lock).
    signals: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        signals.append(signum)

    if args.insecure and args.host not in ("localhost", "::1") and not args.host.startswith("127."):
        raise InputError(f"--host {args.host}: --insecure serves loopback hosts only; off loopback mTLS is required")
    tmp_keys = None
    if not args.insecure and config.keys_dir is None:  # clients need the CA to get a certificate
        import tempfile
        from pathlib import Path

        tmp_keys = tempfile.mkdtemp(prefix="trefed-keys-")
        config = config.model_copy(update={"keys_dir": Path(tmp_keys)})
    fed = _federation(args, config, on_phase, host=args.host, broker_port=args.port)
    # Before the start (a signal while starting stops right after it) and again after it: Ray
    # installs its own SIGTERM handler when it starts, ours must replace it.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            fed.start()
        except OSError as exc:  # e.g. --port already in use
            raise InputError(f"cannot start the federation: {exc}") from None
        for s in previous:
            signal.signal(s, on_signal)
        print(_security(args, config), flush=True)
        if not args.insecure:
            print(f"clients need a certificate of this CA: trefed keys issue --ca {config.keys_dir} "
                  "--role tenant --id NAME --out DIR", flush=True)
        print(f"broker listening on {fed.broker_address}", flush=True)
        print(f"auditor listening on {fed.auditor_address}", flush=True)
        for d, a in fed.domain_addresses.items():
            print(f"domain {d} listening on {a}", flush=True)
        print("serving; press Ctrl-C to stop", flush=True)
        while not signals:
            time.sleep(0.2)  # a signal interrupts the sleep; the handler runs, the loop sees it
        print("shutting down", flush=True)
    finally:
        fed.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        if tmp_keys is not None:
            import shutil

            shutil.rmtree(tmp_keys, ignore_errors=True)
    return 0


# ---------------------------------------------------------------------------- run


def run_run(args: argparse.Namespace) -> int:
    """``trefed run``: the whole loop (exit 0/1), or ``--admissions-only`` (exit 0)."""
    if args.admissions_only:
        return _run_admissions(args)
    on_phase = phase_printer()
    config = _load(args, on_phase)
    from pathlib import Path

    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out(={str(out)!r}) is not a directory")
    if config.experiment is not None:
        return _run_experiment(args, config, out, on_phase)
    from agents.scenario import run_scenario
    from federation.experiment.report import summary_lines, write_run

    with contextlib.redirect_stdout(sys.stderr), _federation(args, config, on_phase) as fed:
        record = run_scenario(fed, on_phase=on_phase, on_progress=_sim_progress(on_phase, config.run.horizon_s))
    on_phase(f"writing the report to {out}")
    doc = write_run(record, out, figures=not args.no_figures)
    _print_doc(args, doc, summary_lines(doc),
               f"report: {out / 'report.md'} (and report.json, figures, telemetry/, accountability/)")
    return int(doc["verdict"]["exit_code"])


def _print_doc(args: argparse.Namespace, doc: dict, summary: Sequence[str], trailer: str) -> None:
    """``doc`` as JSON with ``--json``, else the summary lines and the trailer (where the report is)."""
    if args.json:
        json.dump(doc, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        for line in summary:
            print(line)
        print(trailer)


def _run_experiment(args: argparse.Namespace, config: FederationConfig, out: Any,
                    on_phase: Callable[[str], None]) -> int:
    """``trefed run CONFIG`` with an ``experiment:`` section: every arm, the claim (exit 0 it holds, 1 not)."""
    from pathlib import Path

    import yaml

    from federation.experiment.kinds import build_arms
    from federation.experiment.results import summary_lines

    spec = config.experiment
    assert spec is not None
    data = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    arms = build_arms(data, spec, Path(args.config).parent)
    on_phase(f"experiment {spec.kind}: {len(arms)} arms")
    runtime = None
    if any(a.mode == "loop" for a in arms):
        if args.address:
            os.environ["RAY_ADDRESS"] = args.address
        on_phase("importing Ray and gRPC")
        from agents.runtime import Runtime

        runtime = Runtime(args.address)
    from agents.experiments import run_experiment

    try:
        with contextlib.redirect_stdout(sys.stderr):
            doc = run_experiment(config, arms, out, runtime=runtime, on_phase=on_phase,
                                 figures=not args.no_figures, state_dir=args.state_dir,
                                 federation_kw={"insecure": True} if getattr(args, "insecure", False) else None,
                                 base_data=data, base_dir=Path(args.config).parent)
    finally:
        if runtime is not None:
            runtime.shutdown()
    _print_doc(args, doc, summary_lines(doc), f"report: {out / 'report.md'} (and experiment.json, figures, arms/)")
    return int(doc["claim"]["exit_code"])


def _sim_progress(on_phase: Callable[[str], None], horizon_s: float) -> Callable[[float, int], None]:
    """The simulation's progress as phase lines at each quarter: packets, packets/s, ETA."""
    t0 = time.monotonic()
    marks = [0.25, 0.5, 0.75, 1.0]

    def update(frac: float, packets: int) -> None:
        while marks and frac >= marks[0]:
            mark = marks.pop(0)
            dt = max(time.monotonic() - t0, 1e-9)
            eta = dt * (1.0 - frac) / max(frac, 1e-9)
            on_phase(f"simulation {mark:.0%} of {horizon_s:g} s: {packets:,} packets, "
                     f"{packets / dt:,.0f} packets/s, ETA {eta:.1f} s")

    return update


def _run_admissions(args: argparse.Namespace) -> int:
    """``trefed run --admissions-only``: print every tenant's outcome; exit code 0."""
    on_phase = phase_printer()
    config = _load(args, on_phase)
    # While the federation runs, whatever else prints on stdout goes to stderr: Ray's driver prints
    # the raylet's warnings on stdout from a background thread, and stdout is the outcomes' alone.
    with contextlib.redirect_stdout(sys.stderr), _federation(args, config, on_phase) as fed:
        outcomes = fed.run_tenants(concurrent=args.concurrent)
        domains = [fed.domain_status(d.id) for d in config.domains]
        broker = fed.broker_address
    if args.json:
        doc = {
            "federation": config.name,
            "broker": broker,
            "tenants": [o.to_dict() for o in outcomes],
            "domains": [
                {
                    "domain_id": s.domain_id,
                    "reservable_capacity_bps": s.reservable_capacity_bps,
                    "committed_bps": s.committed_bps,
                    "prepared_bps": s.prepared_bps,
                    "available_bps": s.available_bps,
                }
                for s in domains
            ],
        }
        json.dump(doc, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        render_outcomes(config, outcomes, domains)
    return 0


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 1e3:.2f} ms"


def _mbps(x: float) -> str:
    return f"{x / 1e6:.1f}"


def render_outcomes(config: FederationConfig, outcomes: Sequence[TenantOutcome], domains: Sequence,
                    console: Console | None = None) -> None:
    """Print the outcomes, the admitted tenants' per-domain budgets (their paths, in order), the
    rejections and the domains' capacity use: rich tables that fit 80 columns (the console's
    width on a terminal, 120 columns otherwise, unless ``console`` is given)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 120))
    admitted = [o for o in outcomes if o.admitted]
    rejected = [o for o in outcomes if not o.admitted]
    console.print(Text(f"trefed run: {config.name} -- {len(admitted)} of {len(outcomes)} tenants admitted",
                       style="bold"))

    def table(title: str, *columns: str, left: int = 1) -> Table:
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1, 0, 0))
        for i, col in enumerate(columns):
            t.add_column(col, justify="left" if i < left else "right", overflow="fold")
        return t

    main = table("tenants: P(end-to-end delay > d) <= eps_delay", "tenant", "outcome", "model", "d (ms)",
                 "eps_delay", "eps_total", "price/h", left=3)
    for o in outcomes:
        if o.admitted:
            main.add_row(o.tenant_id, "[yellow]released[/yellow]" if o.released else "[green]admitted[/green]",
                         o.model_id, _ms(o.delay_bound_s).removesuffix(" ms"), f"{o.epsilon_delay:.1e}",
                         f"{o.epsilon_total:.1e}", f"{o.price_per_hour:.3f}")
        else:
            main.add_row(o.tenant_id, "[red]rejected[/red]", "", "", "", "", "")
    console.print(main)

    if admitted:
        budgets = table("per-domain budgets, path order: P(D_i > d_i) <= eps_i", "tenant", "domain", "d_i (ms)",
                        "eps_i", "reserved Mb/s", left=2)
        for o in admitted:
            for i, b in enumerate(o.budgets):
                budgets.add_row(o.tenant_id if i == 0 else "", b.domain_id, _ms(b.delay_s).removesuffix(" ms"),
                                f"{b.epsilon:.2e}", _mbps(b.rate_bps), end_section=i == len(o.budgets) - 1)
        console.print(budgets)

    if rejected:
        console.print(Text("rejections", style="italic"))
        for o in rejected:
            line = Text("  ")
            line.append(o.tenant_id, style="bold")
            line.append(f" ({o.code}): ", style="red")
            line.append(o.reason)
            console.print(line)

    caps = table("domains after the run (Mb/s)", "domain", "reservable", "committed", "prepared", "available")
    for s in domains:
        caps.add_row(
            s.domain_id,
            _mbps(s.reservable_capacity_bps),
            _mbps(s.committed_bps),
            _mbps(s.prepared_bps),
            _mbps(s.available_bps),
        )
    console.print(caps)
