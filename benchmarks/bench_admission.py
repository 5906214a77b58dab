"""Admission throughput and latency through the broker over gRPC (three domains, Ray actors).

``python benchmarks/bench_admission.py [--quick] [--requests N] [--concurrency C]``

A federation of three domain controllers (access -> transport -> edge) and a broker runs on a
local Ray (127.0.0.1), each agent in its own actor process serving gRPC. A client in this
process issues ``RequestService`` calls with at most ``C`` in flight; each admission is a full
two-phase reservation (Prepare x3, Commit x3 to the domains, each persisted in SQLite; under load
the broker's group commit carries concurrent admissions' calls to one domain in one batch, a
message of the broker's long-lived ``BatchStream`` to that domain, each call still checked,
logged and answered on its own), with the domains' envelopes
verified against the trust store (once per sequence, then cached) and the three signed grants
verified on every admission. Capacity is ample: every request is admitted.
Every ``--batch`` admissions the contracts are released with the clock stopped, so the domains'
reservation tables stay at a realistic size (``--batch 0``: never, the tables grow with the run).

Reported: admissions/s over the measured phase, p50 / p99 / max latency of one admission (client
side, ms), CPU per admission of the broker, the domains and the client (this run's processes
only), and an unloaded baseline (one request at a time) measured in the same run. JSON goes
to ``benchmarks/out/admission.json``. Targets on a 2-core machine: >= 300 admissions/s with p99
< 50 ms; and (issue 13) CPU per admission of the broker and the 3 domains <= 4.4 ms with p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trefed.v1 import services_pb2, services_pb2_grpc  # noqa: E402

from agents.access import BROKER  # noqa: E402
from agents.runner import Federation  # noqa: E402
from agents.runtime import Runtime  # noqa: E402
from agents.server import open_channel  # noqa: E402
from federation.config import parse_config  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "admission.json"

_NET = {"min_tenant_rate_bps": 1e6, "max_burst_bits": 1e7, "latency_ceiling_s": 0.05, "loss_ceiling": 1e-3}
CONFIG = {
    "name": "bench",
    "broker": {"hold_timeout_s": 5.0, "rpc_timeout_s": 2.0, "max_offers": 1, "max_in_flight": 64,
               "envelope_refresh_s": 1.0},
    "domains": [
        {"id": "access", "kind": "network", "tre_id": "access/gold", "price_per_mbps_hour": 0.002,
         "guardrails": {"reservable_capacity_bps": 1e13, "max_tenant_rate_bps": 1e9, **_NET},
         "model": {"rate_bps": 1e13, "latency_s": 0.001, "propagation_delay_s": 0.001, "loss_probability": 1e-4}},
        {"id": "transport", "kind": "network", "tre_id": "transport/gold", "price_per_mbps_hour": 0.001,
         "guardrails": {"reservable_capacity_bps": 1e13, "max_tenant_rate_bps": 1e9, **_NET},
         "model": {"rate_bps": 1e13, "latency_s": 0.0005, "propagation_delay_s": 0.002, "loss_probability": 1e-5}},
        {"id": "edge", "kind": "compute", "tre_id": "edge/gpu", "price_per_mbps_hour": 0.01,
         "guardrails": {"reservable_capacity_bps": 1e13, "max_tenant_rate_bps": 1e9, **_NET},
         "model": {"rate_bps": 1e13, "latency_s": 0.001,
                   "inference": {"distribution": "exponential", "mean_s": 0.002}}},
    ],
    "links": [["access", "transport"], ["transport", "edge"]],
    "models": [{"id": "small", "task": "classify", "error_probability": 0.004,
                "latency": {"distribution": "exponential", "mean_s": 0.002}, "compute_domain": "edge",
                "price_per_hour": 0.4}],
    "tenants": [{"id": "bench", "access": "access",
                 "intent": {"task": "classify", "max_error_probability": 0.005, "deadline_s": 0.0175,
                            "epsilon": 0.01, "traffic": {"kind": "token-bucket", "sigma_bits": 2e5, "rho_bps": 1e7}}}],
}


async def _phase(address: str, credentials, intent: services_pb2.Intent, n: int, concurrency: int, tag: str,
                 batch: int | None = None):
    """Issue n admissions with at most `concurrency` in flight.

    Returns (latencies s, admission wall time s, CPU seconds of each agent process and of this
    client during the timed windows).

    With ``batch``, every ``batch`` admissions the contracts are released (untimed: the clock
    stops while releasing), so the domains' tables stay at a steady size instead of growing
    with the run.
    """
    channels = [open_channel(address, credentials, BROKER) for _ in range(min(4, concurrency))]
    stubs = [services_pb2_grpc.BrokerStub(c) for c in channels]
    latencies = np.empty(n)
    wall = 0.0
    cpu: dict[str, float] = {}
    batch = batch or n
    for start in range(0, n, batch):
        counter = iter(range(start, min(n, start + batch)))
        contracts: list[str] = []

        async def worker(w: int) -> None:
            stub = stubs[w % len(stubs)]
            for i in counter:
                req = services_pb2.ServiceRequest(request_id=f"{tag}-{i}", intent=intent)
                req.intent.tenant_id = f"{tag}-{i}"  # one tenant each: per-tenant limits never bind
                t0 = time.perf_counter()
                contract = await stub.RequestService(req, timeout=30)
                latencies[i] = time.perf_counter() - t0
                assert len(contract.grants) == 3
                contracts.append(contract.contract_id)

        c0, t0 = _agent_cpu(), time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall += time.perf_counter() - t0
        c1 = _agent_cpu()
        for k in c1.keys() & c0.keys():
            cpu[k] = cpu.get(k, 0.0) + c1[k] - c0[k]
        if batch < n:
            for k in range(0, len(contracts), 64):
                await asyncio.gather(*(
                    stubs[0].ReleaseService(services_pb2.ReleaseServiceRequest(request_id=f"rel-{c}", contract_id=c),
                                            timeout=30)
                    for c in contracts[k:k + 64]))
    for c in channels:
        await c.close()
    return latencies, wall, cpu


def _agent_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's Ray agent processes, by title (Linux /proc).

    Only descendants of this process count (the local Ray it started), not the agents of other
    Ray sessions that may run on the same machine at the same time.
    """
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    parent: dict[int, int] = {}
    agents: dict[int, tuple[str, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            title = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d.name)] = int(stat[1])
        for agent in ("BrokerAgent", "DomainControllerAgent"):
            if title.startswith(f"ray::{agent}"):
                agents[int(d.name)] = (agent, (int(stat[11]) + int(stat[12])) / tick)
    me = os.getpid()
    for pid, (agent, cpu) in agents.items():
        p, hops = pid, 0
        while p > 1 and p != me and hops < 16:
            p, hops = parent.get(p, 0), hops + 1
        if p == me:
            out[f"{agent}:{pid}"] = cpu
    out["client"] = time.process_time()
    return out


def _summary(lat: np.ndarray, wall: float) -> dict:
    return {
        "admissions": int(lat.size),
        "wall_s": wall,
        "admissions_per_s": lat.size / wall,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "max_ms": float(lat.max() * 1e3),
        "mean_ms": float(lat.mean() * 1e3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer admissions (a smoke run)")
    ap.add_argument("--requests", type=int, default=None, help="admissions in the measured phase (default 4000)")
    ap.add_argument("--concurrency", type=int, default=8, help="admissions in flight (default 8)")
    ap.add_argument("--batch", type=int, default=500,
                    help="release all contracts (untimed) every BATCH admissions; 0: never (tables grow)")
    args = ap.parse_args(argv)
    n = args.requests or (600 if args.quick else 4000)
    baseline_n = 100 if args.quick else 300
    config = parse_config(copy.deepcopy(CONFIG))
    intent = config.tenants[0].intent.to_proto("bench")
    load_before = os.getloadavg()
    with Federation(config, runtime=Runtime(num_cpus=2)) as fed:
        address = fed.broker_address
        creds = fed.credentials("operator", "bench")  # the operator acts for any tenant

        async def run() -> dict:
            await _phase(address, creds, intent, 50, 4, "warm")  # first plan, envelope fetch, channels
            base_lat, base_wall, _ = await _phase(address, creds, intent, baseline_n, 1, "base", batch=args.batch or None)
            load0 = os.getloadavg()
            lat, wall, cpu = await _phase(address, creds, intent, n, args.concurrency, "load", batch=args.batch or None)
            load1 = os.getloadavg()
            per = {k: v / n * 1e3 for k, v in cpu.items()}
            cpu_ms = {
                "broker": sum(v for k, v in per.items() if k.startswith("BrokerAgent")),
                "domains": sum(v for k, v in per.items() if k.startswith("DomainControllerAgent")),
                "client": per.get("client", 0.0),
            }
            return {"baseline_sequential": _summary(base_lat, base_wall),
                    "loaded": {**_summary(lat, wall), "concurrency": args.concurrency, "batch": args.batch,
                               "cpu_ms_per_admission": cpu_ms, "loadavg_during": [load0[0], load1[0]]}}

        result = asyncio.run(run())
        stats = fed.broker_stats()
        edge = fed.domain_status("edge")
    result.update({
        "broker_stats": stats,
        "edge_committed_reservations_bps": edge.committed_bps,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "target": {"admissions_per_s": 300, "p99_ms": 50},
    })
    loaded = result["loaded"]
    result["meets_target"] = loaded["admissions_per_s"] >= 300 and loaded["p99_ms"] < 50
    agents_cpu = loaded["cpu_ms_per_admission"]["broker"] + loaded["cpu_ms_per_admission"]["domains"]
    result["target_cpu"] = {"agents_cpu_ms_per_admission_max": 4.4, "p99_ms": 50}
    result["meets_cpu_target"] = agents_cpu <= 4.4 and loaded["p99_ms"] < 50
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    b = result["baseline_sequential"]
    print(f"admission benchmark (3 domains, gRPC between Ray actors, grants verified), {os.cpu_count()} CPUs")
    print(f"  sequential baseline: {b['admissions_per_s']:7.1f} adm/s  p50 {b['p50_ms']:6.2f} ms  "
          f"p99 {b['p99_ms']:6.2f} ms  ({b['admissions']} admissions)")
    print(f"  {args.concurrency:3d} in flight:       {loaded['admissions_per_s']:7.1f} adm/s  p50 {loaded['p50_ms']:6.2f} ms  "
          f"p99 {loaded['p99_ms']:6.2f} ms  max {loaded['max_ms']:.1f} ms  ({loaded['admissions']} admissions)")
    cpu = loaded["cpu_ms_per_admission"]
    print(f"  CPU per admission: broker {cpu['broker']:.2f} ms, 3 domains "
          f"{cpu['domains']:.2f} ms (together {agents_cpu:.2f} ms), client {cpu['client']:.2f} ms")
    print(f"  broker: {stats}")
    print(f"  target >= 300 adm/s and p99 < 50 ms: {'met' if result['meets_target'] else 'NOT met'}; "
          f"broker + domains <= 4.4 ms CPU per admission and p99 < 50 ms: "
          f"{'met' if result['meets_cpu_target'] else 'NOT met'}")
    print(f"  load average before/after: {load_before[0]:.2f} / {result['loadavg_after'][0]:.2f}; wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
