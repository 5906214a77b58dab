"""Coverage of trefed's tail intervals on data with a known answer (issue 9).

For every model, ``R`` independent replications of a series of ``n`` samples (in time order), and
per replication the nominal 95 % intervals trefed reports by default (``independent=False``,
:mod:`federation.stats.dependent`):

* ``P(X > q99)`` and ``P(X > q999)`` at the *true* p99 and p99.9 (:func:`tail_probability`);
* the p99.9 itself (:func:`tail_quantile`).

Coverage is the fraction of replications whose interval holds the truth; it must lie in
93-97 %. An inconclusive quantile (upper end inf: too few effective samples beyond it) covers
trivially and is counted apart (``inconclusive``); ``coverage`` counts it as covering and
``coverage_conclusive`` is over the conclusive replications only. For the i.i.d. models the
exact intervals (``independent=True``: Clopper-Pearson, order statistics) are measured too.

Models (truth in brackets): i.i.d. exponential, lognormal(0, 1) and Pareto with xi = 0.25
(closed forms); M/M/1 waiting times at u = 0.9 (``P(W > x) = u e^{-(mu - lambda) x}``); the
3-hop Jackson tandem of exponential servers at u = 0.8, end-to-end sojourn times (Erlang(3,
mu - lambda)); a FIFO exponential server fed by 4 exponential on-off sources (MMOO, Markov-
modulated Poisson, load 0.7; truth from one run 100 times as long as all replications' samples
together would need: ``100 n`` samples). Series are simulated by compiled (numba) recursions, one
replication at a time; the stationary start (M/M/1) or a discarded warm-up (tandem, MMOO) makes
them stationary.

Beyond the data: the p99.99 of the i.i.d. models from ``10^4`` samples (about one sample beyond
it) by peaks over threshold (:func:`pot_quantile`, ``independent=True``; 300 replications, each
fit costs a profile likelihood). On a series ``pot_quantile`` answers inconclusive (its Notes).

Rare and absent exceedances (issue 10, ``--rare``): :func:`tail_probability_of` (the samples, the
clustering measured at lower levels) on M/M/1 waiting times at loads 0.5, 0.7 and 0.9 at the levels
whose true ``P(W > d) = load e^{-(1 - load) d}`` is 1e-2 .. 1e-5, ``n`` = 2e5 and 1e6 samples (so
that zero and few exceedances occur). Per cell: the coverage of the one-sided 95 % upper limit
(``upper_limit(0.95)``, what ``judge`` holds against a budget; nominal 0.95), of the upper end of
the two-sided 95 % interval (nominal 0.975) and of the two-sided interval, the same one-sided
limit for Clopper-Pearson treating the delays as independent and for the indicator alone
(:func:`tail_probability`, before issue 10), how often no or at most 5 exceedances occurred, the
methods used and the median upper limit over the truth; and, where the method's assumption fails
(clusters that grow with the level), M/G/1 waiting times with Pareto(2.5) service, beside the
end-to-end sojourn of the 3-hop Jackson tandem at load 0.5, where it holds (``--heavy``).
And the audit (``--audit``): the packets an M/M/1 tandem of 3 domains (load 0.5, eps_i = 1e-3,
true exceedance eps_i / 4, and eps_i / 100) needs before its domains are judged COMPLIANT, over
10 seeds, now and with the indicator alone.

Writes benchmarks/out/coverage.json (``--rare``, ``--heavy`` and ``--audit`` add their sections
to it) and prints the tables.

Run: python benchmarks/bench_coverage.py [--quick] [--reps R] [--pot-only] [--rare] [--heavy] [--audit]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from federation.stats import (  # noqa: E402
    judge,
    pot_quantile,
    tail_probability,
    tail_probability_of,
    tail_quantile,
)

LEVEL = 0.95
PS = (0.99, 0.999)


# ------------------------------------------------------------------------------------------ kernels


def _kernels() -> dict[str, Callable[..., np.ndarray]]:
    import numba

    @numba.njit(cache=True)
    def lindley(w0: float, s: np.ndarray, a: np.ndarray) -> np.ndarray:  # waiting times W_k
        w = np.empty(len(s))
        x = w0
        for i in range(len(s)):
            w[i] = x
            x = max(0.0, x + s[i] - a[i])
        return w

    @numba.njit(cache=True)
    def tandem(t: np.ndarray, s: np.ndarray) -> np.ndarray:  # sojourn of FIFO hops s[h, k]
        d = t.copy()
        for h in range(s.shape[0]):
            prev = -1e300
            for k in range(len(t)):
                x = max(d[k], prev) + s[h, k]
                d[k] = x
                prev = x
        return d - t

    @numba.njit(cache=True)
    def mmpp(n: int, sources: int, on_rate: float, off_rate: float, peak: float, seed: int) -> np.ndarray:
        """Arrival times of n packets from `sources` on-off sources (Poisson at `peak` when on)."""
        np.random.seed(seed)
        out = np.empty(n)
        k = 0  # sources on; start in the stationary binomial distribution
        for _ in range(sources):
            if np.random.random() < off_rate / (on_rate + off_rate):
                k += 1
        t = 0.0
        i = 0
        while i < n:
            r = (sources - k) * off_rate + k * on_rate + k * peak
            t += np.random.exponential(1.0 / r)
            u = np.random.random() * r
            if u < k * peak:
                out[i] = t
                i += 1
            elif u < k * peak + k * on_rate:
                k -= 1
            else:
                k += 1
        return out

    return {"lindley": lindley, "tandem": tandem, "mmpp": mmpp}


# ------------------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class Model:
    """A series generator ``sample(rng, n)`` and the true quantiles ``q[p]`` (None: from a long run)."""

    name: str
    n: int
    sample: Callable[[np.random.Generator, int], np.ndarray]
    quantile: Callable[[float], float] | None
    iid: bool


def models(n_iid: int, n_queue: int) -> list[Model]:
    from scipy import stats

    k = _kernels()
    lam, mu = 0.9, 1.0

    def mm1(rng: np.random.Generator, n: int) -> np.ndarray:
        w0 = rng.exponential(1 / (mu - lam)) if rng.random() < lam / mu else 0.0
        return k["lindley"](w0, rng.exponential(1 / mu, n), rng.exponential(1 / lam, n))

    lt, mt = 0.8, 1.0

    def jackson(rng: np.random.Generator, n: int) -> np.ndarray:
        warm = n // 20
        t = np.cumsum(rng.exponential(1 / lt, n + warm))
        return k["tandem"](t, rng.exponential(1 / mt, (3, n + warm)))[warm:]

    # MMOO: 4 sources, mean on 10, mean off 10 (rates 0.1), peak 0.35 packets/s -> mean rate 0.7
    def mmoo(rng: np.random.Generator, n: int) -> np.ndarray:
        warm = n // 20
        seed = int(rng.integers(2**31 - 1))
        t = k["mmpp"](n + warm + 1, 4, 0.1, 0.1, 0.35, seed)
        return k["lindley"](0.0, rng.exponential(1.0, n + warm), np.diff(t))[warm:]

    return [
        Model("iid exponential", n_iid, lambda rng, n: rng.exponential(1.0, n), lambda p: -math.log1p(-p), True),
        Model("iid lognormal", n_iid, lambda rng, n: rng.lognormal(0.0, 1.0, n),
              lambda p: float(math.exp(stats.norm.ppf(p))), True),
        Model("iid Pareto xi=0.25", n_iid, lambda rng, n: rng.random(n) ** -0.25, lambda p: (1 - p) ** -0.25, True),
        Model("M/M/1 waiting u=0.9", n_queue, mm1, lambda p: math.log(lam / mu / (1 - p)) / (mu - lam), False),
        Model("3-hop Jackson u=0.8", n_queue, jackson,
              lambda p: float(stats.gamma.isf(1 - p, 3, scale=1 / (mt - lt))), False),
        Model("MMOO -> M queue u=0.7", n_queue, mmoo, None, False),
    ]


# ------------------------------------------------------------------------------------------ coverage


def _truth(m: Model, rng: np.random.Generator) -> dict[float, float]:
    if m.quantile is not None:
        return {p: m.quantile(p) for p in PS}
    long = m.sample(rng, 100 * m.n)  # truth from a run 100 times as long as one replication
    return {p: float(np.quantile(long, p, method="inverted_cdf")) for p in PS}


def coverage(m: Model, reps: int, seed: int, quantile: bool = True) -> dict[str, object]:
    """Coverage of the intervals over ``reps`` replications of ``m`` (see the module notes).

    ``quantile=False`` skips the p99.9 cells (nan), for a cheap check of the probability cells.
    """
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    q = _truth(m, rng)
    modes = [False, True] if m.iid else [False]
    hits = {(ind, what): 0 for ind in modes for what in ("P>q99", "P>q999", "q999")}
    inconclusive = {ind: 0 for ind in modes}
    conclusive_hits = {ind: 0 for ind in modes}
    neff = []
    for _ in range(reps):
        x = m.sample(rng, m.n)
        for ind in modes:
            for p, key in ((0.99, "P>q99"), (0.999, "P>q999")):
                ci = tail_probability(x > q[p], independent=ind).interval(LEVEL)
                hits[(ind, key)] += ci.low <= 1 - p <= ci.high
            if not quantile:
                inconclusive[ind] += 1
                continue
            e = tail_quantile(x, 0.999, independent=ind)
            ci = e.interval(LEVEL)
            ok = ci.low <= q[0.999] <= ci.high
            hits[(ind, "q999")] += ok
            if e.conclusive(LEVEL):
                conclusive_hits[ind] += ok
            else:
                inconclusive[ind] += 1
            if not ind:
                neff.append(e.n_eff)
    out: dict[str, object] = {"model": m.name, "n": m.n, "reps": reps, "truth": {str(p): q[p] for p in PS},
                              "median_n_eff_q999": float(np.median(neff)) if neff else math.nan, "seconds": time.perf_counter() - t0}
    for ind in modes:
        tag = "exact" if ind else "dependent"
        conc = reps - inconclusive[ind]
        out[tag] = {
            "P>q99": hits[(ind, "P>q99")] / reps,
            "P>q999": hits[(ind, "P>q999")] / reps,
            "q999": hits[(ind, "q999")] / reps if quantile else math.nan,
            "q999_conclusive": conclusive_hits[ind] / conc if conc else math.nan,
            "q999_inconclusive": inconclusive[ind] / reps,
        }
    return out


def pot_coverage(m: Model, n: int, reps: int, seed: int, p: float = 0.9999) -> dict[str, object]:
    """Coverage of the peaks-over-threshold interval of the ``p``-quantile (i.i.d. ``m``, ``n`` samples)."""
    assert m.quantile is not None and m.iid
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    truth = m.quantile(p)
    hits = conclusive = stable = 0
    for _ in range(reps):
        e = pot_quantile(m.sample(rng, n), p, independent=True)
        ci = e.interval(LEVEL)
        hits += ci.low <= truth <= ci.high
        conclusive += e.conclusive(LEVEL)
        stable += bool(e.diagnostic["stable"])
    return {"model": m.name, "n": n, "p": p, "reps": reps, "truth": truth, "coverage": hits / reps,
            "conclusive": conclusive / reps, "threshold_stable": stable / reps, "seconds": time.perf_counter() - t0}


def _pot_table(rows: list[dict]) -> str:
    lines = ["| model | n | quantile | POT coverage | conclusive | threshold stable |", "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['n']:,} | p{100 * r['p']:g} | {r['coverage']:.3f} | {r['conclusive']:.2f} | "
                     f"{r['threshold_stable']:.2f} |")
    return "\n".join(lines)


def _table(rows: list[dict]) -> str:
    head = ("model", "n", "method", "P>q99", "P>q99.9", "q99.9", "q99.9 concl.", "inconcl.")
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        for tag in ("dependent", "exact"):
            if tag in r:
                c = r[tag]
                lines.append(f"| {r['model']} | {r['n']:,} | {tag} | {c['P>q99']:.3f} | {c['P>q999']:.3f} | "
                             f"{c['q999']:.3f} | {c['q999_conclusive']:.3f} | {c['q999_inconclusive']:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ rare levels

RARE_PS = (1e-2, 1e-3, 1e-4, 1e-5)
RARE_LOADS = (0.5, 0.7, 0.9)


def _wilson_low(hits: int, reps: int, z: float = 1.96) -> float:
    """Lower end of the Wilson 95 % interval of a coverage ``hits / reps``."""
    p = hits / reps
    c = p + z * z / (2 * reps)
    h = z * math.sqrt(p * (1 - p) / reps + z * z / (4 * reps * reps))
    return (c - h) / (1 + z * z / reps)


def rare_coverage(load: float, n: int, reps: int, seed: int) -> list[dict[str, object]]:
    """Coverage of :func:`tail_probability_of` at the rare levels of M/M/1 waiting times (module notes)."""
    lindley = _kernels()["lindley"]
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    levels = {p: math.log(load / p) / (1 - load) for p in RARE_PS}  # P(W > d) = load e^{-(1-load) d}
    keys = ("upper95", "upper975", "two_sided", "independent95", "indicator95", "zero", "few")
    hits = {p: dict.fromkeys(keys, 0) for p in RARE_PS}
    methods: dict[float, dict[str, int]] = {p: {} for p in RARE_PS}
    ratio: dict[float, list[float]] = {p: [] for p in RARE_PS}
    for _ in range(reps):
        w0 = rng.exponential(1 / (1 - load)) if rng.random() < load else 0.0  # the stationary start
        w = lindley(w0, rng.exponential(1.0, n), rng.exponential(1 / load, n))
        for p, d in levels.items():
            e = tail_probability_of(w, d)
            h, ci = hits[p], e.interval(LEVEL)
            up = e.upper_limit(LEVEL)
            h["upper95"] += up >= p
            h["upper975"] += ci.high >= p
            h["two_sided"] += ci.low <= p <= ci.high
            h["independent95"] += tail_probability_of(w, d, independent=True).upper_limit(LEVEL) >= p
            h["indicator95"] += tail_probability(w > d).upper_limit(LEVEL) >= p
            h["zero"] += e.count == 0
            h["few"] += e.count <= 5
            methods[p][e.method] = methods[p].get(e.method, 0) + 1
            ratio[p].append(up / p)
    secs = time.perf_counter() - t0
    rows = []
    for p in RARE_PS:
        h = hits[p]
        rows.append({
            "load": load, "n": n, "p": p, "level_s": levels[p], "reps": reps,
            "upper95": h["upper95"] / reps, "upper95_wilson_low": _wilson_low(h["upper95"], reps),
            "upper975": h["upper975"] / reps, "two_sided": h["two_sided"] / reps,
            "independent95": h["independent95"] / reps, "indicator95": h["indicator95"] / reps,
            "zero": h["zero"] / reps, "few": h["few"] / reps, "methods": methods[p],
            "median_upper_over_truth": float(np.median(ratio[p])), "seconds": secs / len(RARE_PS),
        })
    return rows


def heavy_coverage(n: int, reps: int, seed: int, alpha: float = 2.5, load: float = 0.5) -> list[dict[str, object]]:
    """Where the assumption fails: M/G/1 waiting times with Pareto(``alpha``) service of mean 1.

    A high level is reached by one long job, so clusters grow with the level (rare.py's Notes).
    Truth: the quantiles of one run of 4e7 waiting times (after a warm-up of 1e6).
    """
    lindley = _kernels()["lindley"]
    rng = np.random.default_rng(seed)
    xm = (alpha - 1) / alpha

    def run(m: int, warm: int) -> np.ndarray:
        return lindley(0.0, xm * (1 + rng.pareto(alpha, m + warm)), rng.exponential(1 / load, m + warm))[warm:]

    long = run(40_000_000, 1_000_000)
    rows = []
    for p in (1e-3, 1e-4):
        d = float(np.quantile(long, 1 - p))
        up = ind = zero = 0
        for _ in range(reps):
            w = run(n, n // 10)
            e = tail_probability_of(w, d)
            up += e.upper_limit(LEVEL) >= p
            ind += tail_probability(w > d).upper_limit(LEVEL) >= p
            zero += e.count == 0
        rows.append({"model": f"M/G/1 Pareto({alpha}) service, load {load}", "n": n, "p": p, "level_s": d,
                     "reps": reps, "upper95": up / reps, "indicator95": ind / reps, "zero": zero / reps})
    return rows


def tandem_coverage(n: int, reps: int, seed: int, load: float = 0.5) -> list[dict[str, object]]:
    """The auditor's end-to-end case: sojourn times through a 3-hop Jackson tandem (exact Erlang(3, 1 - load))."""
    from scipy import stats

    tandem = _kernels()["tandem"]
    rng = np.random.default_rng(seed)
    rows = []
    for p in (1e-3, 1e-4):
        d = float(stats.gamma.isf(p, 3, scale=1 / (1 - load)))
        up = ind = borrowed = zero = 0
        for _ in range(reps):
            warm = n // 20
            t = np.cumsum(rng.exponential(1 / load, n + warm))
            x = tandem(t, rng.exponential(1.0, (3, n + warm)))[warm:]
            e = tail_probability_of(x, d)
            up += e.upper_limit(LEVEL) >= p
            ind += tail_probability(x > d).upper_limit(LEVEL) >= p
            borrowed += "lower levels" in e.method
            zero += e.count == 0
        rows.append({"model": f"3-hop Jackson tandem, end to end, load {load}", "n": n, "p": p, "level_s": d,
                     "reps": reps, "upper95": up / reps, "indicator95": ind / reps, "zero": zero / reps,
                     "borrowed": borrowed / reps})
    return rows


def _rare_table(rows: list[dict]) -> str:
    head = ("load", "n", "true P", "upper 95 %", "2-sided upper", "2-sided", "independent", "indicator alone",
            "no exc.", "<= 5 exc.", "borrowed", "upper / truth")
    lines = ["| " + " | ".join(head) + " |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        borrowed = sum(v for k, v in r["methods"].items() if "lower levels" in k) / r["reps"]
        lines.append(f"| {r['load']} | {r['n']:,} | {r['p']:g} | {r['upper95']:.3f} | {r['upper975']:.3f} | "
                     f"{r['two_sided']:.3f} | {r['independent95']:.3f} | {r['indicator95']:.3f} | {r['zero']:.2f} | "
                     f"{r['few']:.2f} | {borrowed:.2f} | {r['median_upper_over_truth']:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the audit


def audit_packets(sizes: tuple[int, ...], seeds: int, rate: float = 0.5, eps: float = 1e-3,
                  truth: float = 0.25) -> list[dict[str, object]]:
    """How many packets until the domains of an M/M/1 tandem of 3 are COMPLIANT (eps_i, true ``truth eps_i``).

    The auditor's verdicts (``federation.audit``, signed telemetry through the ledger) against the
    same data judged with the indicator alone (``judge(tail_probability(D_i > d_i), eps_i)``).
    """
    from trefed.v1 import telemetry_pb2

    from federation.audit.ledger import AuditLedger
    from federation.audit.scenario import audited_run
    from federation.tre.signing import SigningKey

    d_i = math.log(1.0 / (truth * eps)) / (1.0 - rate)  # P(D_i > d_i) = e^{-(1 - rate) d_i} = truth eps
    out = []
    for n in sizes:
        t0 = time.perf_counter()
        now = old = all_now = all_old = 0
        for seed in range(1, seeds + 1):
            run = audited_run(packets=n, rate=rate, budgets=[(d_i, eps)] * 3, seed=seed, batch_packets=10_000)
            led = AuditLedger(run.trust, SigningKey.generate("auditor"), auditor_id="auditor", clock=lambda: 1.8e9)
            led.add_contract(run.contract)
            led.submit_all(run.all_batches())
            body = telemetry_pb2.AccountabilityReportBody.FromString(led.report(run.contract.contract_id).body)
            v = [telemetry_pb2.Verdict.Name(d.verdict) == "COMPLIANT" for d in body.domains]
            assert run.telemetry.domains is not None
            o = []
            for log in run.telemetry.domains:
                x = np.where(log.lost, math.inf, log.egress - log.ingress)[np.argsort(log.ingress, kind="stable")]
                o.append(str(judge(tail_probability(x > d_i), eps)) == "COMPLIANT")
            now, old = now + sum(v), old + sum(o)
            all_now, all_old = all_now + all(v), all_old + all(o)
        out.append({"packets": n, "seeds": seeds, "rate": rate, "epsilon": eps, "truth": truth * eps,
                    "domains_compliant": now / (3 * seeds), "all_compliant": all_now / seeds,
                    "indicator_domains_compliant": old / (3 * seeds), "indicator_all_compliant": all_old / seeds,
                    "seconds": time.perf_counter() - t0})
    return out


def _audit_table(rows: list[dict]) -> str:
    lines = ["| true P(D_i > d_i) | packets | domains COMPLIANT | all 3 COMPLIANT | indicator alone: domains | all 3 |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['truth']:g} | {r['packets']:,} | {r['domains_compliant']:.2f} | {r['all_compliant']:.2f} | "
                     f"{r['indicator_domains_compliant']:.2f} | {r['indicator_all_compliant']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 replications, shorter series")
    ap.add_argument("--reps", type=int, default=None, help="replications per model (default 1000; quick 100)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "coverage.json"))
    ap.add_argument("--pot-only", action="store_true", help="only the peaks-over-threshold cells (into --out)")
    ap.add_argument("--rare", action="store_true", help="only the rare-level cells of M/M/1 (into --out)")
    ap.add_argument("--audit", action="store_true", help="only the packets-until-COMPLIANT audit (into --out)")
    ap.add_argument("--heavy", action="store_true",
                    help="only the Pareto-service M/G/1 and the Jackson end-to-end cells (into --out)")
    a = ap.parse_args(argv)
    reps = a.reps or (100 if a.quick else 1000)
    if a.rare or a.audit or a.heavy:
        return _extra(a, reps)
    pot_reps = max(20, reps // 10) if a.quick else max(50, reps * 3 // 10)
    n_iid, n_queue = (20_000, 200_000) if a.quick else (100_000, 1_000_000)
    out = Path(a.out)
    data: dict[str, object] = {"level": LEVEL, "reps": reps, "rows": []}
    if a.pot_only and out.exists():
        data = json.loads(out.read_text())
    ms = models(n_iid, n_queue)
    if not a.pot_only:
        rows = []
        for i, m in enumerate(ms):
            r = coverage(m, reps, a.seed + i)
            rows.append(r)
            print(f"{m.name}: {r['seconds']:.0f} s", file=sys.stderr, flush=True)
        data["rows"] = rows
    pots = []
    for i, m in enumerate(x for x in ms if x.iid):
        r = pot_coverage(m, 10_000, pot_reps, a.seed + 100 + i)
        pots.append(r)
        print(f"POT {m.name}: {r['seconds']:.0f} s", file=sys.stderr, flush=True)
    data["pot"] = pots
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(_table(data["rows"]))  # type: ignore[arg-type]
    print()
    print(_pot_table(pots))
    return 0


def _extra(a: argparse.Namespace, reps: int) -> int:
    """``--rare`` / ``--heavy`` / ``--audit``: their sections added to the JSON at ``--out``."""
    out = Path(a.out)
    data: dict[str, object] = json.loads(out.read_text()) if out.exists() else {"level": LEVEL}
    if a.rare:
        sizes = (20_000, 100_000) if a.quick else (200_000, 1_000_000)
        rows: list[dict[str, object]] = []
        for j, n in enumerate(sizes):
            for i, load in enumerate(RARE_LOADS):
                rows += rare_coverage(load, n, reps, a.seed + 200 + 10 * j + i)
                print(f"rare load {load} n {n}: {sum(r['seconds'] for r in rows[-4:]):.0f} s", file=sys.stderr,
                      flush=True)
        data["rare"] = rows
    if a.heavy:
        data["heavy"] = heavy_coverage(200_000, max(20, reps // 5), a.seed + 300)
        data["heavy"] += tandem_coverage(200_000, max(20, reps // 5), a.seed + 400)  # type: ignore[operator]
    if a.audit:
        seeds = 3 if a.quick else 10
        sizes = (20_000, 50_000) if a.quick else (20_000, 50_000, 100_000, 200_000, 500_000)
        data["audit"] = (audit_packets(sizes, seeds)  # the runner issue's case: true exceedance eps_i / 4
                         + audit_packets(sizes[:4], seeds, truth=0.01))  # a domain far inside its budget
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    if a.rare:
        print(_rare_table(data["rare"]))  # type: ignore[arg-type]
    if a.heavy:
        for r in data["heavy"]:  # type: ignore[attr-defined]
            print(f"{r['model']}, n {r['n']:,}, P {r['p']:g}: upper 95 % covers {r['upper95']:.3f} "
                  f"(indicator alone {r['indicator95']:.3f}, no exceedance {r['zero']:.2f})")
    if a.audit:
        print(_audit_table(data["audit"]))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
