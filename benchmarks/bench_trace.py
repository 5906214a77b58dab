"""Fitting and replaying traces: how long a tenant's trace takes to fit, how fast the data plane replays it.

``python benchmarks/bench_trace.py [--quick]``

Traces: synthetic Pareto on-off traffic (``federation.trace.synth``, fixed 12000-bit packets) of
about 1e4, 1e5 and 1e6 packets, and the same times with i.i.d. uniform sizes (every window content
distinct: the fit's worst case). Measured (median of repeats, wall clock):

* ``fit_s``: :func:`federation.trace.fit.fit_trace` (peak rate, token bucket, MGF envelope with
  16 thetas, 8 windows per octave) -- what loading a config with that trace costs;
* ``replay_pps``: packets per second handed out by :class:`~federation.dataplane.traffic.TraceReplay`
  (looped, windows of 1 s of trace time), against the data plane's Poisson generator of the same
  mean packet rate measured in the same run (``poisson_pps``, the baseline);
* ``sort_s``: ``np.sort`` of as many random float64 as the trace has packets, a machine-speed
  baseline measured in the same run (``fit_s / sort_s`` compares machines).

Targets: a 1e5-packet trace fits in under 2 s; the replay is at least as fast as the Poisson
generator. JSON goes to ``benchmarks/out/trace.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from federation.dataplane.traffic import PacketSizes, Poisson, TraceReplay  # noqa: E402
from federation.trace import Trace, fit_trace, synthetic_trace  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "trace.json"


def _median_time(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _replay_pps(model, horizon: float) -> float:  # noqa: ANN001
    gen = model.generator(np.random.SeedSequence(0))
    t0 = time.perf_counter()
    n = 0
    for u in np.arange(1.0, horizon + 1.0):
        n += len(gen.take(float(u))[0])
    return n / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two smaller traces, one repeat")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    durations = (500.0, 5000.0) if args.quick else (500.0, 5000.0, 50_000.0)
    repeats = 1 if args.quick else 3
    rows = []
    load = os.getloadavg()
    for duration in durations:
        syn = synthetic_trace(duration, seed=1)
        rng = np.random.default_rng(0)
        mixed = Trace(syn.times_s, rng.uniform(400.0, 12_000.0, len(syn)), syn.duration_s)
        for name, tr in (("fixed sizes", syn), ("uniform sizes", mixed)):
            n = len(tr)
            fit_s = _median_time(lambda tr=tr: fit_trace(tr), repeats)
            sort_s = _median_time(lambda n=n: np.sort(np.random.default_rng(1).random(n)), repeats)
            horizon = min(3 * duration, 2e6 / (n / duration))  # about 2e6 packets replayed
            replay = TraceReplay(tr.times_s, tr.sizes_bits, tr.duration_s)
            poisson = Poisson(n / duration, PacketSizes("fixed", 12_000.0))
            row = {"trace": name, "packets": n, "duration_s": duration, "fit_s": fit_s, "sort_s": sort_s,
                   "fit_over_sort": fit_s / sort_s, "replay_pps": _replay_pps(replay, horizon),
                   "poisson_pps": _replay_pps(poisson, horizon)}
            rows.append(row)
            print(f"{name:>13} {n:>9} packets: fit {fit_s:7.3f} s ({fit_s / sort_s:6.0f} x sort), replay "
                  f"{row['replay_pps'] / 1e6:6.1f} M/s (Poisson {row['poisson_pps'] / 1e6:5.1f} M/s)")
    report = {"benchmark": "trace", "quick": args.quick, "load_before": list(load), "load_after": list(os.getloadavg()),
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"load {load[0]:.2f} -> {os.getloadavg()[0]:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
