"""Speed, consistency and cost of ``federation.calculus.plan.plan_rates`` (the broker's rate sizing).

For every traffic kind the broker uses (token bucket, Poisson with exponential and fixed sizes,
MMOO, correlated MMOO) on the quickstart's 3-hop path (access and transport rate-latency hops, an
exponential-service edge GPU) with its prices and guardrails, it measures the time per call, the
plan's cost, and whether ``compose_path`` at the planned rates meets the deadline. The previous
implementation (``git archive REV federation``, ``--old-rev``, default 0eeb2a2, the search the
fixed-theta planner replaced; any revision works, flat ``federation/`` layout or subpackages;
read-only) is run in a subprocess on the same cases for the before/after comparison, and
(without ``--quick``) a slow fine-grid reference optimisation gives the cost-optimality gap.

Run: python benchmarks/bench_plan.py [--quick] [--no-old] [--old-rev REV]
Writes benchmarks/out/plan.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("BENCH_PLAN_OLD"):  # the old-version subprocess brings its own federation
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from federation.errors import NoFiniteBound  # noqa: E402

try:  # this tree, or (run_old) a revision with the calculus in federation/calculus/
    from federation.calculus import arrivals as _arrivals  # noqa: E402
    from federation.calculus import compose as _compose  # noqa: E402
except ImportError:  # a revision before the subpackages (flat federation/)
    from federation import arrivals as _arrivals  # type: ignore[no-redef]  # noqa: E402
    from federation import compose as _compose  # type: ignore[no-redef]  # noqa: E402
try:
    from federation.calculus.plan import plan_rates  # noqa: E402
except ImportError:  # before plan_rates had its own module
    plan_rates = _compose.plan_rates

MMOO, CorrelatedMMOO, PoissonArrival, TokenBucket = (
    _arrivals.MMOO, _arrivals.CorrelatedMMOO, _arrivals.PoissonArrival, _arrivals.TokenBucket)
DomainSlice, compose_path, path_violation_probability = (
    _compose.DomainSlice, _compose.compose_path, _compose.path_violation_probability)

COSTS = (0.002e-6, 0.001e-6, 0.01e-6)  # price per bit/s and hour (quickstart: per Mb/s and hour / 1e6)
CAPS = (200e6, 400e6, 120e6)  # guardrails max_tenant_rate_bps


def path(model_latency: float = 0.002) -> list[DomainSlice]:
    return [
        DomainSlice("access", 1.0, latency=0.002, propagation_delay=0.001, loss_probability=1e-4),
        DomainSlice("transport", 1.0, latency=0.0005, propagation_delay=0.004, loss_probability=1e-5),
        DomainSlice("edge", 1.0, latency=0.001 + model_latency, service="exp"),
    ]


# (traffic, deadline s, epsilon_delay): the quickstart tenants' intents (epsilon minus loss and model error)
CASES = {
    "token-bucket": (lambda: TokenBucket(400e3, 20e6, packet_size=100e3), 0.030, 0.01 - 1.1e-4 - 0.004),
    "poisson-exp": (lambda: PoissonArrival(100.0, 100e3, "exp"), 0.050, 0.01 - 1.1e-4 - 0.001),
    "poisson-det": (lambda: PoissonArrival(200.0, 50e3, "det"), 0.040, 0.02 - 1.1e-4 - 0.004),
    "mmoo": (lambda: MMOO(peak=4e6, on=0.2, off=0.8, n=10), 0.040, 0.02 - 1.1e-4 - 0.004),
    "correlated-mmoo": (lambda: CorrelatedMMOO(peak=4e6, on=0.2, off=0.8, n=10), 0.040, 0.02 - 1.1e-4 - 0.004),
}


def run_cases(kinds: list[str], reps: int) -> dict:
    """Time plan_rates (this interpreter's ``federation``) and check it against compose_path."""
    out = {}
    for kind in kinds:
        make, delay, eps = CASES[kind]
        traffic = make()
        times, rates = [], None
        try:
            for _ in range(reps):
                t = time.perf_counter()
                rates = plan_rates(path(), traffic, delay=delay, epsilon=eps, costs=COSTS, max_rates=CAPS)
                times.append(time.perf_counter() - t)
        except NoFiniteBound as exc:
            out[kind] = {"error": str(exc)}
            continue
        planned = [dataclasses.replace(s, rate=r) for s, r in zip(path(), rates)]
        env = compose_path(planned, traffic, epsilon=eps)
        out[kind] = {
            "ms_median": 1e3 * statistics.median(times),
            "ms_max": 1e3 * max(times),
            "calls": len(times),
            "rates_bps": list(rates),
            "cost": float(np.dot(rates, COSTS)),
            "composed_delay_s": env.delay,
            "deadline_s": delay,
            "meets_deadline": bool(env.delay <= delay),
            "method": env.method,
        }
    return out


def reference_cost(kind: str, n_dir: int = 61) -> float:
    """Fine-grid reference: each direction's cheapest scale by bisection on the optimised violation bound."""
    make, delay, eps = CASES[kind]
    traffic = make()
    rho = traffic.mean_rate
    best = math.inf
    for u in np.linspace(-3.0, 3.0, n_dir):
        w = np.array([1.0, 1.0, math.exp(u)])
        smax = min((c - rho) / wi for c, wi in zip(CAPS, w))

        def ok(sc: float, w=w) -> bool:
            planned = [dataclasses.replace(s, rate=float(r)) for s, r in zip(path(), rho + sc * w)]
            try:
                return path_violation_probability(planned, traffic, delay=delay) <= eps
            except NoFiniteBound:
                return False

        if not ok(smax):
            continue
        lo, hi = 0.0, smax
        while hi - lo > 1e-4 * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        best = min(best, float(np.dot(rho + hi * w, COSTS)))
    return best


def run_old(kinds: list[str], reps: int, rev: str = "0eeb2a2") -> dict:
    """The ``federation`` package of git revision ``rev``, extracted with ``git archive`` to a temp dir."""
    with tempfile.TemporaryDirectory() as tmp:
        arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "federation"], check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, str(ROOT / "protos")]), BENCH_PLAN_OLD="1")
        code = (
            "import json, sys; sys.path.insert(0, %r); sys.path.insert(1, %r)\n"
            "import bench_plan as b\n"
            "import federation, os; assert os.path.dirname(federation.__file__).startswith(%r)\n"
            "print(json.dumps(b.run_cases(%r, %d)))\n"
        ) % (tmp, str(Path(__file__).parent), tmp, kinds, reps)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800,
                             cwd=tmp)
        if res.returncode != 0:
            return {"error": res.stderr[-2000:]}
        return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no reference optimisation")
    ap.add_argument("--no-old", action="store_true", help="skip the previous implementation")
    ap.add_argument("--old-rev", default="0eeb2a2",
                    help="git revision holding the previous plan_rates (default 0eeb2a2: the search it replaced)")
    args = ap.parse_args()
    kinds = list(CASES)
    reps = 5 if args.quick else 30
    new = run_cases(kinds, 1)  # warm-up (imports, first-call caches)
    new = run_cases(kinds, reps)
    old = {} if args.no_old else run_old(kinds, 1 if args.quick else 3, args.old_rev)
    ref = {} if args.quick else {k: reference_cost(k) for k in kinds}
    load = os.getloadavg()
    print(f"plan_rates on the quickstart 3-hop path (load average {load[0]:.2f}); median of {reps} calls")
    print(f"{'traffic':16s} {'new ms':>8s} {'old ms':>9s} {'new cost':>9s} {'old cost':>9s} {'ref cost':>9s} "
          f"{'new e2e/deadline':>16s} {'old e2e/deadline':>16s}")
    for k in kinds:
        n, o = new.get(k, {}), old.get(k, {}) if isinstance(old, dict) else {}
        print(f"{k:16s} {n.get('ms_median', math.nan):8.1f} {o.get('ms_median', math.nan):9.1f} "
              f"{n.get('cost', math.nan):9.4f} {o.get('cost', math.nan):9.4f} {ref.get(k, math.nan):9.4f} "
              f"{n.get('composed_delay_s', math.nan) / CASES[k][1]:16.5f} "
              f"{o.get('composed_delay_s', math.nan) / CASES[k][1]:16.5f}")
    out = {"load_average": load, "reps": reps, "new": new, "old": old, "old_rev": args.old_rev, "reference_cost": ref,
           "costs_per_bps": COSTS, "max_rates_bps": CAPS}
    dest = ROOT / "benchmarks" / "out"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "plan.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {dest / 'plan.json'}")


if __name__ == "__main__":
    main()
