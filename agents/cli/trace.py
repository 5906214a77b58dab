"""``trefed trace``: make a synthetic bursty trace, and fit the envelopes a trace declares.

``trefed trace generate OUT.parquet|OUT.csv [--duration S --peak-bps B --mean-on-s S --mean-off-s S
--alpha A --sources N --packet-bits L --seed N]`` writes a trace (schema ``trefed.trace/1``) of
heavy-tailed on-off traffic: Pareto on and off periods, packets back to back at the peak while on.

``trefed trace fit FILE [--rho-bps R ...] [--json]`` reads a trace (``.csv`` or ``.parquet``) and
prints what a tenant with that trace declares: its mean and peak rates, the token-bucket
frontier (the exact worst-case burst ``sigma`` at several rates ``rho``) and the MGF envelope
the stochastic calculus uses (the effective bandwidth ``rho(theta) = kappa/theta`` and burst
``sigma(theta) = beta/theta`` at a few thetas), as fitted by ``federation/trace/fit.py``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from agents.cli.text import plain

__all__ = ["register", "run_fit", "run_generate"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``trace generate`` and ``trace fit`` to the ``trefed`` parser."""
    parser = subparsers.add_parser(
        "trace",
        help="make a synthetic bursty trace; fit a trace's token buckets and MGF envelope",
        description=plain((__doc__ or "").split("\n\n", 1)[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="write a synthetic heavy-tailed on-off trace (.csv or .parquet)")
    gen.add_argument("out", metavar="OUT", type=Path, help="OUT.parquet or OUT.csv")
    gen.add_argument("--duration", type=float, default=600.0, metavar="S", help="length, s (default 600)")
    gen.add_argument("--peak-bps", type=float, default=2e6, metavar="B",
                     help="rate while every source is on, bits/s (default 2e6)")
    gen.add_argument("--mean-on-s", type=float, default=0.5, metavar="S", help="mean on period, s (default 0.5)")
    gen.add_argument("--mean-off-s", type=float, default=1.5, metavar="S", help="mean off period, s (default 1.5)")
    gen.add_argument("--alpha", type=float, default=1.5, help="Pareto shape of the periods, > 1 (default 1.5)")
    gen.add_argument("--sources", type=int, default=1, metavar="N", help="independent sources (default 1)")
    gen.add_argument("--packet-bits", type=float, default=12_000.0, metavar="L",
                     help="packet size, bits (default 12000)")
    gen.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    gen.set_defaults(func=run_generate)
    fit = sub.add_parser("fit", help="print a trace's rates, token-bucket frontier and MGF envelope")
    fit.add_argument("file", metavar="FILE", type=Path, help="a trace, .csv or .parquet")
    fit.add_argument("--rho-bps", type=float, nargs="+", default=None, metavar="R",
                     help="token rates of the frontier, bits/s (default: 1, 1.25, 1.5, 2, 3, 5 x the mean, the peak)")
    fit.add_argument("--thetas", type=int, default=6, metavar="N",
                     help="how many of the envelope's thetas to print (default 6; --json has all)")
    fit.add_argument("--json", action="store_true", help="one JSON document on stdout")
    fit.set_defaults(func=run_fit)


def run_generate(args: argparse.Namespace) -> int:
    """Write the synthetic trace; print where and what it holds."""
    from federation.trace.schema import write_trace
    from federation.trace.synth import synthetic_trace

    trace = synthetic_trace(args.duration, peak_bps=args.peak_bps, mean_on_s=args.mean_on_s,
                            mean_off_s=args.mean_off_s, alpha=args.alpha, sources=args.sources,
                            packet_bits=args.packet_bits, seed=args.seed)
    path = write_trace(trace, args.out)
    print(f"wrote {path}: {len(trace)} packets over {trace.duration_s:g} s, mean rate {trace.mean_rate_bps:.4g} bits/s")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    """Fit and print (see the module docstring)."""
    from federation.errors import InputError
    from federation.trace.fit import fit_mgf_envelope, token_bucket_frontier
    from federation.trace.schema import read_trace

    if args.thetas < 1:
        raise InputError(f"--thetas(={args.thetas}) must be >= 1")
    trace = read_trace(args.file)
    env = fit_mgf_envelope(trace)
    frontier = token_bucket_frontier(trace, args.rho_bps)
    rows = list(zip(env.theta, env.kappa_values, env.beta_values))
    if args.json:
        doc = {
            "schema": "trefed.trace-fit/1",
            "file": str(args.file),
            "packets": len(trace),
            "duration_s": trace.duration_s,
            "mean_rate_bps": trace.mean_rate_bps,
            "peak_bps": env.peak_rate,
            "mean_size_bits": trace.mean_size_bits,
            "max_size_bits": trace.max_size_bits,
            "token_buckets": [{"rho_bps": r, "sigma_bits": s} for s, r in frontier],
            "mgf_envelope": [{"theta_per_bit": t, "kappa_per_s": k, "beta": b} for t, k, b in rows],
        }
        print(json.dumps(_finite(doc), indent=2, allow_nan=False))
        return 0
    print(f"{args.file}: {len(trace)} packets over {trace.duration_s:g} s")
    print(f"  mean rate {trace.mean_rate_bps:.4g} bits/s, peak {env.peak_rate:.4g} bits/s, "
          f"packets {trace.mean_size_bits:.4g} bits on average, {trace.max_size_bits:.4g} at most")
    print("token buckets (the trace's worst burst at each rate; the trace looped):")
    print(f"  {'rho bits/s':>12} {'x mean':>7} {'sigma bits':>12}")
    for s, r in frontier:
        print(f"  {r:12.4g} {r / trace.mean_rate_bps:7.3g} {s:12.4g}")
    print("MGF envelope (log E exp(theta A(t)) <= kappa t + beta; rho = kappa/theta, sigma = beta/theta):")
    print(f"  {'theta 1/bit':>12} {'rho bits/s':>12} {'sigma bits':>12}")
    k = len(rows)
    picks = sorted({round(i * (k - 1) / max(1, args.thetas - 1)) for i in range(min(args.thetas, k))})
    for i in picks:
        t, kap, b = rows[i]
        print(f"  {t:12.4g} {kap / t:12.4g} {b / t:12.4g}")
    return 0


def _finite(x: object) -> object:
    """``x`` with every infinite float as None (JSON has no inf: a sigma below the mean rate, a peak
    of packets arriving together)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and math.isinf(x):
        return None
    return x
