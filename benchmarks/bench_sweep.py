"""Sweep throughput: (point, seed) tasks per second of ``trefed sweep`` on 1 and 2 Ray nodes, same run.

Run ``python benchmarks/bench_sweep.py [--tasks N] [--duration S]``. Prints a table and writes
``benchmarks/out/sweep.json``.

What is measured, in turn, on the same machine and the same sweep (a 3-domain federation with 3
tenants, ``--duration`` s of simulated traffic per task, 2 grid points x N/2 seeds):

* ``serial``: every task one after another in this process, no Ray (the baseline);
* ``1 node``: a Ray cluster of one node with 1 CPU (``ray.cluster_utils.Cluster`` on loopback,
  private ``RAY_TMPDIR``), the driver of :func:`agents.sweep.run_sweep` in this process;
* ``2 nodes``: the same cluster after a second node (1 CPU) joined.

Each configuration first runs a warm-up sweep of one task per CPU (worker processes start,
imports, numba's compilation), not counted; then the measured sweep into a fresh directory. Reported:
wall time, tasks/s, the tasks' own mean wall time, tasks per node (from the node id of each row) and
the speed-up against the serial baseline and against 1 node. The machine's load average is recorded:
the cores are shared, so the figures are what this machine gave at that moment.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "tests"))


def _plan(duration_s: float, seeds: int, tmp: Path, tag: str) -> Any:
    import yaml
    from conftest import FAST_CONFIG

    from federation.experiment.sweep import parse_grid, plan_sweep

    data = copy.deepcopy(FAST_CONFIG)
    data["tenants"] = data["tenants"][:3]
    data["run"] = {"duration_s": duration_s, "seed": 1}
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(data))
    grid = parse_grid(["domains[2].guardrails.reservable_capacity_bps=5e7,1e8",
                       "domains[2].guardrails.max_tenant_rate_bps=5e7"])
    # the tag is part of the config's hash: every measured sweep has tasks of its own
    return plan_sweep(data, grid, seeds, config_sha256=tag, config_path=str(path))


def _measure(name: str, plan: Any, out: Path, runtime: Any) -> dict[str, Any]:
    from agents.sweep import run_sweep

    t0 = time.perf_counter()
    doc = run_sweep(plan, out, runtime, figures=False, progress_stream=open(os.devnull, "w"))
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines() if x.strip()]
    assert doc["tasks"]["ok"] == len(plan.tasks), doc["tasks"]
    task_wall = sum(r["wall_s"] for r in rows) / len(rows)
    per_node = {}
    for r in rows:
        per_node[r["node_id"][:12]] = per_node.get(r["node_id"][:12], 0) + 1
    return {"name": name, "tasks": len(plan.tasks), "wall_s": wall, "tasks_per_s": len(plan.tasks) / wall,
            "task_mean_wall_s": task_wall, "per_node": per_node, "aggregate": doc["aggregate"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=16, help="measured tasks per configuration (even; default 16)")
    ap.add_argument("--duration", type=float, default=2.0, help="simulated traffic per task, s (default 2)")
    args = ap.parse_args(argv)
    seeds = max(1, args.tasks // 2)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.pop("RAY_ADDRESS", None)
    tmp = Path(tempfile.mkdtemp(prefix="ray-bs-"))
    os.environ["RAY_TMPDIR"] = str(tmp)
    results: list[dict[str, Any]] = []
    load = os.getloadavg()
    try:
        _measure("warm-up", _plan(args.duration, 1, tmp, "warm0"), tmp / "warm0", None)
        results.append(_measure("serial", _plan(args.duration, seeds, tmp, "serial"), tmp / "serial", None))
        from ray.cluster_utils import Cluster

        from agents.runtime import Runtime

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                 "node_ip_address": "127.0.0.1"})
        runtime = Runtime(cluster.address)
        try:
            runtime.start()
            for nodes in (1, 2):
                if nodes == 2:
                    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
                    cluster.wait_for_nodes()
                _measure("warm-up", _plan(args.duration, nodes, tmp, f"warm{nodes}"), tmp / f"warm{nodes}", runtime)
                results.append(_measure(f"{nodes} node{'s' if nodes > 1 else ''}",
                                        _plan(args.duration, seeds, tmp, f"n{nodes}"), tmp / f"n{nodes}", runtime))
        finally:
            runtime.shutdown()
            cluster.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    serial, one, two = results
    metrics = [[p["metrics"] for p in r["aggregate"]] for r in results]  # (the ids differ by the tag)
    same = metrics[0] == metrics[1] == metrics[2]
    for r in results:
        r["speedup_vs_serial"] = r["tasks_per_s"] / serial["tasks_per_s"]
        r["speedup_vs_1_node"] = r["tasks_per_s"] / one["tasks_per_s"]
        del r["aggregate"]
    from importlib.metadata import version

    doc = {"benchmark": "sweep", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_before": list(load),
                       "loadavg_after": list(os.getloadavg())},
           "ray_version": version("ray"), "tasks": 2 * seeds, "duration_s": args.duration,
           "aggregates_identical": same, "results": results}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"sweep throughput: {2 * seeds} tasks of {args.duration:g} s simulated traffic each "
          f"(load {load[0]:.2f} before)")
    print(f"{'configuration':<14}{'wall s':>8}{'tasks/s':>9}{'task s':>8}{'vs serial':>11}{'vs 1 node':>11}  per node")
    for r in results:
        print(f"{r['name']:<14}{r['wall_s']:>8.1f}{r['tasks_per_s']:>9.2f}{r['task_mean_wall_s']:>8.2f}"
              f"{r['speedup_vs_serial']:>10.2f}x{r['speedup_vs_1_node']:>10.2f}x  {r['per_node']}")
    print(f"aggregates identical across serial, 1 node, 2 nodes: {same}")
    print(f"wrote {OUT / 'sweep.json'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
