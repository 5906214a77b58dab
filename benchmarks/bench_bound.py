"""Speed of the optimised end-to-end bounds (5-hop tandems). Writes benchmarks/out/bound.json.

Run: python benchmarks/bench_bound.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from federation.calculus.arrivals import MMOO, PoissonArrival  # noqa: E402
from federation.calculus.baseline import baseline_tandem_violation  # noqa: E402
from federation.calculus.compose import delay_bound, violation_bound  # noqa: E402
from federation.calculus.services import ConstantRate, ExpService, Leftover  # noqa: E402
from federation.calculus.tandem import tandem_violation  # noqa: E402

D = "discrete"


def scenarios():
    x = PoissonArrival(0.3, 1.0, "exp", time=D)
    yield (
        "discrete 5 hops, 5 MMOO sources, Poisson cross at every hop",
        MMOO.discrete(0.9, 0.9, 1.0, n=5),
        [Leftover(ConstantRate(4.0 + 0.1 * h, time=D), x) for h in range(5)],
        40.0,
    )
    yield (
        "discrete 5 hops, 5 MMOO sources, exp-capacity hop 3, no cross",
        MMOO.discrete(0.9, 0.9, 1.0, n=5),
        [ConstantRate(4.0, time=D), ConstantRate(4.5, time=D), ExpService(4.0, time=D), ConstantRate(5.0, time=D),
         ConstantRate(4.2, time=D)],
        30.0,
    )
    yield (
        "continuous 5 hops, Poisson packets, exponential servers",
        PoissonArrival(100.0, 1000.0),
        [ExpService(2e5 + 1e4 * h, 1000.0) for h in range(5)],
        0.2,
    )
    yield (
        "continuous 5 hops, MMOO, MMOO cross at hops 2 and 4",
        MMOO(peak=1e6, on=0.01, off=0.03, n=4),
        [Leftover(ConstantRate(3e6), MMOO(peak=1e6, on=0.01, off=0.03, n=2)) if h in (1, 3) else ConstantRate(3e6)
         for h in range(5)],
        0.1,
    )


def timeit(fn, reps: int) -> dict:
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return {"median_ms": 1e3 * statistics.median(ts), "p90_ms": 1e3 * ts[int(0.9 * (len(ts) - 1))], "reps": reps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 10 if args.quick else 60
    out = {"load_average": os.getloadavg(), "cpu_count": os.cpu_count(), "scenarios": []}
    for name, flow, services, d in scenarios():
        row = {
            "scenario": name,
            "delay": d,
            "epsilon_at_delay": violation_bound(flow, services, d).epsilon,
            "method": violation_bound(flow, services, d).method,
            "mgf_tandem_violation": timeit(lambda: tandem_violation(flow, services, d), reps),
            "best_violation": timeit(lambda: violation_bound(flow, services, d), reps),
            "delay_at_1e-3": timeit(lambda: delay_bound(flow, services, 1e-3), max(3, reps // 10)),
        }
        if flow.time == D:
            row["baseline_violation"] = timeit(lambda: baseline_tandem_violation(flow, services, d), max(3, reps // 10))
        out["scenarios"].append(row)
        print(f"{name}\n  P(D > {d:g}) <= {row['epsilon_at_delay']:.3g} [{row['method']}]")
        for k in ("mgf_tandem_violation", "best_violation", "delay_at_1e-3", "baseline_violation"):
            if k in row:
                print(f"  {k:22s} median {row[k]['median_ms']:8.2f} ms   p90 {row[k]['p90_ms']:8.2f} ms")
    print(f"load average {out['load_average']}")
    path = ROOT / "benchmarks" / "out" / "bound.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
