"""Attribution accuracy of the audit core on randomised data-plane runs (issue 9, item 7).

Run ``python benchmarks/bench_attribution.py [--trials 200] [--lying 100] [--packets 50000] [--quick]``.
Prints a table and writes ``benchmarks/out/attribution.json``.

Each trial draws a path of 3-5 M/M/1 domains (Poisson arrivals of 1 packet/s, exponential service
at rates giving loads in [0.3, 0.8]), per-domain sub-budgets ``eps_i`` in [0.005, 0.02] with
``d_i`` at which the clean domain's true exceedance is ``eps_i / 4``, and one impairment of a
random kind (extra delay, delay spikes, capacity degradation, outage, loss) in one random domain,
or none. The impairment recurs (a window of each period of 1000 s), so the impaired domain is
stationary over period multiples. The run is audited: each domain signs its telemetry, an
:class:`~federation.audit.ledger.AuditLedger` verifies it and judges each domain against its grant.

Truth is taken from the data plane, not from the auditor: each domain's exceedance rate of ``d_i``
(lost packets count) in a run 10 times longer with another seed (``--truth-factor``).

* recall: of the impaired domains whose true rate is at least ``2 eps_i``, the fraction judged
  VIOLATING (target >= 0.99);
* false blame: of the domains whose true rate is at most ``eps_i``, the fraction judged VIOLATING
  (target <= 0.01); the inconclusive rate is reported for every class of truth;
* lying: in ``--lying`` further trials (the tenant reporting its receipts), one random domain
  reports its egress earlier (all packets by a constant, or only its late packets pulled back within
  ``d_i``); caught when an ``inconsistent`` finding names it (target >= 0.99), and no honest domain
  may be named.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "protos")]

import numpy as np  # noqa: E402
from trefed.v1 import telemetry_pb2  # noqa: E402

from federation.audit.batches import build_batches  # noqa: E402
from federation.audit.ledger import AuditLedger  # noqa: E402
from federation.audit.scenario import receipts_log, signed_contract  # noqa: E402
from federation.dataplane.engine import Simulation  # noqa: E402
from federation.dataplane.impairments import Impairment  # noqa: E402
from federation.dataplane.path import Domain, ServiceTimes, Source  # noqa: E402
from federation.dataplane.telemetry import DomainLog  # noqa: E402
from federation.dataplane.traffic import Poisson  # noqa: E402
from federation.tre.signing import SigningKey  # noqa: E402
from federation.tre.trust import TrustStore  # noqa: E402

LAMBDA = 1.0  # packets/s
PERIOD = 1000.0  # s, the impairments' period
KINDS = ("none", "delay", "spikes", "degrade", "outage", "loss")
NAMES = ("access", "metro", "core", "edge", "cloud")


def draw(rng: np.random.Generator, kind: str | None = None) -> dict:
    """A random trial: loads, budgets and one impairment."""
    n = int(rng.integers(3, 6))
    loads = rng.uniform(0.3, 0.8, n)
    mus = LAMBDA / loads
    eps = rng.uniform(0.005, 0.02, n)
    d = np.log(4.0 / eps) / (mus - LAMBDA)  # P(D_i > d_i) = eps_i / 4 for M/M/1 sojourns
    kind = kind or str(rng.choice(KINDS))
    j = int(rng.integers(0, n))
    imp: dict = {"kind": kind, "domain": j}
    if kind == "delay":
        imp.update(duty=rng.uniform(0.05, 0.5), value=float(d[j] * rng.uniform(0.3, 1.5)))
    elif kind == "spikes":
        imp.update(duty=rng.uniform(0.2, 1.0), value=float(d[j] * rng.uniform(0.3, 1.5)), prob=rng.uniform(0.02, 0.3))
    elif kind == "degrade":
        imp.update(duty=rng.uniform(0.05, 0.3), value=float(rng.uniform(loads[j] + 0.02, 1.0)))
    elif kind == "outage":
        imp.update(duty=rng.uniform(0.005, 0.05))
    elif kind == "loss":
        imp.update(duty=rng.uniform(0.2, 1.0), value=float(rng.uniform(0.002, 0.06)))
    return {"n": n, "loads": loads.tolist(), "mus": mus.tolist(), "eps": eps.tolist(), "d": d.tolist(),
            "impairment": imp}


def impairments(trial: dict, horizon: float) -> list[Impairment]:
    imp = trial["impairment"]
    if imp["kind"] == "none":
        return []
    out = []
    for k in range(int(horizon // PERIOD) + 1):
        start = k * PERIOD
        out.append(Impairment(imp["domain"], imp["kind"], start, start + imp["duty"] * PERIOD,
                              imp.get("value", 0.0), imp.get("prob", 1.0)))
    return out


def simulation(trial: dict, packets: int, seed: int, **kw) -> Simulation:
    doms = [Domain(rate=1.0, service=ServiceTimes("exp", 1.0 / mu), name=NAMES[i]) for i, mu in enumerate(trial["mus"])]
    return Simulation(doms, [Source(0, Poisson(LAMBDA))], seed=seed, packets=packets,
                      impairments=impairments(trial, 1.2 * packets / LAMBDA), **kw)


def truth(trial: dict, packets: int, seed: int) -> list[float]:
    """Each domain's exceedance rate of d_i in a long run, streamed chunk by chunk."""
    n = trial["n"]
    count, total = np.zeros(n), np.zeros(n)
    for chunk in simulation(trial, packets, seed, chunk_packets=1 << 17).chunks():
        assert chunk.domains is not None
        for i, log in enumerate(chunk.domains):
            ex = log.lost | ((log.egress - log.ingress) > trial["d"][i])
            count[i] += np.count_nonzero(ex)
            total[i] += len(ex)
    return (count / np.maximum(total, 1)).tolist()


def lie(log: DomainLog, d_i: float, rng: np.random.Generator) -> tuple[DomainLog, str]:
    """The lying domain's report: every egress earlier by a constant, or only the late ones pulled back."""
    if rng.random() < 0.5:
        by = float(rng.uniform(0.01, 2.0))
        eg = np.where(log.lost, np.nan, np.maximum(log.egress - by, log.ingress))
        how = f"all packets {by:.3g} s earlier"
    else:
        late = ~log.lost & ((log.egress - log.ingress) > d_i)
        eg = log.egress.copy()
        eg[late] = log.ingress[late] + d_i * rng.uniform(0.5, 1.0, int(late.sum()))
        how = f"{int(late.sum())} late packets pulled back within d_i"
    return DomainLog(log.domain, log.flow, log.seq, log.tenant, log.ingress, eg, log.lost, log.error), how


def audit(trial: dict, packets: int, seed: int, liar: int | None = None, rng: np.random.Generator | None = None,
          level: float = 0.95) -> tuple[telemetry_pb2.AccountabilityReportBody, str]:
    n = trial["n"]
    tel = simulation(trial, packets, seed).run()
    assert tel.domains is not None
    keys = [SigningKey.generate(NAMES[i]) for i in range(n)]
    tenant = SigningKey.generate("tenant-a")
    trust = TrustStore()
    for k in [*keys, tenant]:
        trust.add_key(k)
    auditor = SigningKey.generate("auditor")
    led = AuditLedger(trust, auditor, auditor_id="auditor", clock=lambda: 1.8e9)
    led.add_contract(signed_contract("ct", "tenant-a", keys, list(zip(trial["d"], trial["eps"]))))
    how = ""
    for i, (log, k) in enumerate(zip(tel.domains, keys)):
        if liar == i:
            assert rng is not None
            log, how = lie(log, trial["d"][i], rng)
        led.submit_all(build_batches(log, k.domain_id, k, tenant_ids={0: "tenant-a"}, clock=lambda: 1.8e9))
    if liar is not None:
        led.submit_all(build_batches(receipts_log(tel), "tenant-a", tenant, tenant_ids={0: "tenant-a"},
                                     clock=lambda: 1.8e9))
    return telemetry_pb2.AccountabilityReportBody.FromString(led.report("ct", level).body), how


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--lying", type=int, default=100)
    ap.add_argument("--packets", type=int, default=50_000, help="packets per audited run")
    ap.add_argument("--truth-factor", type=int, default=10, help="truth run length / audited run length")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--quick", action="store_true", help="20 + 10 trials of 20 000 packets")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "attribution.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.lying, args.packets = 20, 10, 20_000
    t0 = time.perf_counter()
    rows = []
    for t in range(args.trials):
        rng = np.random.default_rng([args.seed, t])
        trial = draw(rng)
        true = truth(trial, args.truth_factor * args.packets, seed=10_000 + t)
        body, _ = audit(trial, args.packets, seed=t)
        verdicts = [telemetry_pb2.Verdict.Name(d.verdict) for d in body.domains]
        rows.append({"trial": t, **trial, "truth": true, "verdicts": verdicts,
                     "shares": [d.tail_risk_share for d in body.domains],
                     "intervals": [[d.exceedance_ci_low, d.exceedance_ci_high] for d in body.domains],
                     "findings": [f.kind for f in body.finding_details]})
        print(f"trial {t:3d} n={trial['n']} {trial['impairment']['kind']:8s} on {trial['impairment']['domain'] + 1}: "
              f"truth/eps {[round(x / e, 2) for x, e in zip(true, trial['eps'])]} -> {verdicts}", flush=True)
    lying = []
    for t in range(args.lying):
        rng = np.random.default_rng([args.seed, 1_000_000 + t])
        trial = draw(rng)
        liar = int(rng.integers(0, trial["n"]))
        body, how = audit(trial, args.packets, seed=500_000 + t, liar=liar, rng=rng)
        named = sorted({f.domain_id for f in body.finding_details if f.kind == "inconsistent"})
        lying.append({"trial": t, "n": trial["n"], "liar": NAMES[liar], "how": how, "named": named,
                      "caught": NAMES[liar] in named, "false": [x for x in named if x != NAMES[liar]]})
    # ---- summary
    impaired = [(r, r["impairment"]["domain"]) for r in rows if r["impairment"]["kind"] != "none"]
    strong = [(r, j) for r, j in impaired if r["truth"][j] >= 2 * r["eps"][j]]
    recall = sum(r["verdicts"][j] == "VIOLATING" for r, j in strong) / max(len(strong), 1)
    clean = [(r, i) for r in rows for i in range(r["n"]) if r["truth"][i] <= r["eps"][i]]
    false_blame = sum(r["verdicts"][i] == "VIOLATING" for r, i in clean) / max(len(clean), 1)
    mid = [(r, i) for r in rows for i in range(r["n"]) if r["eps"][i] < r["truth"][i] < 2 * r["eps"][i]]

    def rate(cells, v):
        return sum(r["verdicts"][i] == v for r, i in cells) / max(len(cells), 1)

    summary = {
        "trials": len(rows), "packets": args.packets, "truth_factor": args.truth_factor,
        "recall": {"n": len(strong), "violating": recall, "inconclusive": rate(strong, "INCONCLUSIVE"),
                   "target": ">= 0.99"},
        "false_blame": {"n": len(clean), "violating": false_blame, "inconclusive": rate(clean, "INCONCLUSIVE"),
                        "compliant": rate(clean, "COMPLIANT"), "target": "<= 0.01"},
        "between_eps_and_2eps": {"n": len(mid), "violating": rate(mid, "VIOLATING"),
                                 "inconclusive": rate(mid, "INCONCLUSIVE")},
        "by_kind": {k: {"n": sum(r["impairment"]["kind"] == k for r, _ in strong),
                        "recall": sum(r["verdicts"][j] == "VIOLATING" for r, j in strong if r["impairment"]["kind"] == k)
                        / max(sum(r["impairment"]["kind"] == k for r, _ in strong), 1)} for k in KINDS[1:]},
        "lying": {"n": len(lying), "caught": sum(x["caught"] for x in lying) / max(len(lying), 1),
                  "false_accusations": sum(len(x["false"]) for x in lying), "target": ">= 0.99"},
        "seconds": time.perf_counter() - t0,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print()
    print(f"{'measure':44s} {'n':>6s} {'value':>8s}  target")
    print(f"{'recall (truth >= 2 eps_i): VIOLATING':44s} {len(strong):6d} {recall:8.3f}  >= 0.99")
    print(f"{'  ... INCONCLUSIVE':44s} {'':6s} {summary['recall']['inconclusive']:8.3f}")
    print(f"{'false blame (truth <= eps_i): VIOLATING':44s} {len(clean):6d} {false_blame:8.4f}  <= 0.01")
    print(f"{'  ... INCONCLUSIVE':44s} {'':6s} {summary['false_blame']['inconclusive']:8.3f}")
    print(f"{'eps_i < truth < 2 eps_i: VIOLATING':44s} {len(mid):6d} {summary['between_eps_and_2eps']['violating']:8.3f}")
    print(f"{'lying domain caught':44s} {len(lying):6d} {summary['lying']['caught']:8.3f}  >= 0.99")
    print(f"{'honest domains named as liars':44s} {'':6s} {summary['lying']['false_accusations']:8d}")
    print(f"({summary['seconds']:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "trials": rows, "lying_trials": lying}, indent=1,
                                   default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))
    print(f"wrote {args.out}")
    ok = recall >= 0.99 and false_blame <= 0.01 and summary["lying"]["caught"] >= 0.99
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
