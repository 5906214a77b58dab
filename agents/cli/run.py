"""``trefed serve`` and ``trefed run``: the sub-commands that start a federation on Ray.

``trefed serve CONFIG [--host H] [--port P] [--address RAY_ADDRESS] [--state-dir DIR]``
    starts the domain controllers and the broker, prints ``broker listening on HOST:PORT`` (and
    each domain's address), serves until SIGINT or SIGTERM, then shuts everything down.

``trefed run CONFIG [--json] [--concurrent] [--address RAY_ADDRESS] [--state-dir DIR]``
    starts the federation, lets every tenant of the config request service (in config order),
    prints each tenant's outcome -- admitted with its contract (model, path, end-to-end bound,
    per-domain budget) or rejected with the reason naming the domain and the limit -- and the
    domains' capacity use, then shuts down. Exit code 0 whatever the admissions were.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from federation.config import FederationConfig, load_config
from federation.errors import InputError

if TYPE_CHECKING:  # Ray is imported only when a federation starts (see _federation)
    from agents.runner import Federation
    from agents.tenant import TenantOutcome

__all__ = ["register", "run_serve", "run_run", "render_outcomes"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``run`` to the ``trefed`` parser."""
    serve = subparsers.add_parser(
        "serve",
        help="start a federation (domains + broker) and serve the broker's gRPC API until interrupted",
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
        help="start a federation, let its tenants request service, print the outcomes, shut down",
        description="Start the federation of CONFIG, let every tenant request service (config order), "
        "print who was admitted (contract: model, path, bound, per-domain budget) and who was "
        "rejected (reason naming the domain and the limit), then shut down.",
    )
    run.add_argument("config", metavar="CONFIG", help="federation config (YAML)")
    run.add_argument("--json", action="store_true", help="print JSON instead of tables")
    run.add_argument("--concurrent", action="store_true", help="issue all tenants' requests at once")
    _common(run)
    run.set_defaults(func=run_run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default=None,
        help="address of an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray on 127.0.0.1)",
    )
    p.add_argument("--state-dir", default=None, help="directory of the domains' SQLite files (default: temporary)")


def _federation(args: argparse.Namespace, config: FederationConfig, **kw: Any) -> Federation:
    # An explicit cluster address must be in the environment before Ray is first imported:
    # agents.runtime keeps a local Ray on loopback only when no address is set.
    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    from agents.runner import Federation
    from agents.runtime import Runtime

    return Federation(config, runtime=Runtime(args.address), state_dir=args.state_dir, **kw)


# ---------------------------------------------------------------------------- serve


def run_serve(args: argparse.Namespace) -> int:
    """``trefed serve``: serve until SIGINT/SIGTERM; exit code 0."""
    config = load_config(args.config)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    fed = _federation(args, config, host=args.host, broker_port=args.port)
    previous: dict = {}
    try:
        try:
            fed.start()
        except OSError as exc:  # e.g. --port already in use
            raise InputError(f"cannot start the federation: {exc}") from None
        # After Ray started: Ray installs its own SIGTERM handler, ours must replace it.
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        print(f"broker listening on {fed.broker_address}", flush=True)
        for d, a in fed.domain_addresses.items():
            print(f"domain {d} listening on {a}", flush=True)
        print("serving; press Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        print("shutting down", flush=True)
    finally:
        fed.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


# ---------------------------------------------------------------------------- run


def run_run(args: argparse.Namespace) -> int:
    """``trefed run``: print every tenant's outcome; exit code 0."""
    config = load_config(args.config)
    with _federation(args, config) as fed:
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


def render_outcomes(config: FederationConfig, outcomes: Sequence[TenantOutcome], domains: Sequence) -> None:
    """Print the outcomes, the admitted tenants' per-domain budgets, the rejections and the
    domains' capacity use (rich tables; 120 columns when not on a terminal)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    admitted = [o for o in outcomes if o.admitted]
    rejected = [o for o in outcomes if not o.admitted]
    console.print(Text(f"trefed run: {config.name} -- {len(admitted)} of {len(outcomes)} tenants admitted",
                       style="bold"))

    table = Table(title="tenants", title_justify="left")
    table.add_column("tenant", style="bold", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("path", no_wrap=True)
    table.add_column("bound d @ eps_delay", justify="right", no_wrap=True)
    table.add_column("eps_total", justify="right", no_wrap=True)
    table.add_column("price/h", justify="right", no_wrap=True)
    for o in outcomes:
        if o.admitted:
            table.add_row(
                o.tenant_id,
                "[green]admitted[/green]" + (" (released)" if o.released else ""),
                o.model_id,
                ">".join(o.path),
                f"{_ms(o.delay_bound_s)} @ {o.epsilon_delay:.1e}",
                f"{o.epsilon_total:.1e}",
                f"{o.price_per_hour:.3f}",
            )
        else:
            table.add_row(o.tenant_id, "[red]rejected[/red]", "", "", "(reason below)", "", "")
    console.print(table)

    if admitted:
        budgets = Table(title="per-domain budgets: P(D_i > d_i) <= eps_i", title_justify="left")
        for col in ("tenant", "domain", "d_i", "eps_i", "reserved Mb/s"):
            budgets.add_column(col, justify="left" if col in ("tenant", "domain") else "right")
        for o in admitted:
            for i, b in enumerate(o.budgets):
                budgets.add_row(o.tenant_id if i == 0 else "", b.domain_id, _ms(b.delay_s), f"{b.epsilon:.2e}",
                                _mbps(b.rate_bps), end_section=i == len(o.budgets) - 1)
        console.print(budgets)

    if rejected:
        console.print(Text("rejections", style="italic"))
        for o in rejected:
            line = Text("  ")
            line.append(o.tenant_id, style="bold")
            line.append(f" ({o.code}): ", style="red")
            line.append(o.reason)
            console.print(line)

    caps = Table(title="domains after the run", title_justify="left")
    for col in ("domain", "reservable Mb/s", "committed Mb/s", "prepared Mb/s", "available Mb/s"):
        caps.add_column(col, justify="right" if col != "domain" else "left")
    for s in domains:
        caps.add_row(
            s.domain_id,
            _mbps(s.reservable_capacity_bps),
            _mbps(s.committed_bps),
            _mbps(s.prepared_bps),
            _mbps(s.available_bps),
        )
    console.print(caps)
