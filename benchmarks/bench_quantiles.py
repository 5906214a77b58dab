"""Speed of the dependent-data quantile intervals (``federation.stats.tail_quantiles``), in one run.

``python benchmarks/bench_quantiles.py [--quick]``

Series: an AR(1) with coefficient 0.99 (a queue-like correlation time of ~100 samples) of
10^6 and 10^7 samples (``--quick``: 10^5 and 10^6). Measured: CPU time of ``tail_quantiles`` at
p = 0.5, 0.99, 0.999, 0.9999 with each quantile's 95 % interval (the inversion of the batch-means
proportion interval: about 2 log2 n threshold evaluations per interval), against a baseline
measured in the same run: one ``np.sort`` of the series, the least any order-statistic interval
costs. ``trefed simulate`` and the auditor pay this on every tenant's delays. Best of three.
JSON to ``benchmarks/out/quantiles.json``.
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

from federation.stats import tail_quantiles  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "quantiles.json"
PS = (0.5, 0.99, 0.999, 0.9999)


def series(n: int, seed: int = 0) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -0.99], np.random.default_rng(seed).standard_normal(n))


def cpu(fn) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def intervals(x: np.ndarray) -> list[tuple[float, float]]:
    q = tail_quantiles(x, PS)
    return [(e.interval(0.95).low, e.interval(0.95).high) for e in q.values()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^5 and 10^6 samples")
    args = ap.parse_args(argv)
    rows = []
    for n in ((10**5, 10**6) if args.quick else (10**6, 10**7)):
        x = series(n)
        base = cpu(lambda: np.sort(x))
        t = cpu(lambda: intervals(x))
        rows.append({"samples": n, "intervals_cpu_s": t, "sort_cpu_s": base, "ratio_to_sort": t / base,
                     "p999_interval": intervals(x)[2]})
        print(f"n={n:>9,}: 4 quantiles with intervals {t:.2f} s CPU, one sort {base:.2f} s "
              f"({t / base:.1f}x a sort)", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "load_average": os.getloadavg()[0]}, indent=2))
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
