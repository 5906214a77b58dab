"""Where the FIFO tandem bounds lose: depth by depth, how far the bound's probability is off.

For every tandem with cross traffic of ``bench_tightness.py --section fifo`` (slotted and continuous
time) and every depth ``k`` (the tandem of its first ``k`` hops, simulated as there), this measures

* ``d_sim`` (the simulated delay at ``1e-3``), the smallest valid bound ``d_bound`` at ``1e-3`` and
  their ratio;
* the **overstatement** of the bound's probability at the true quantile, ``log(P_bound(D > d_sim)
  / P_sim(D > d_sim))`` in nats, with its 99 % interval (batch means on ``P_sim``), the bound *not
  clipped at 1* (:func:`log_bound_at`); its growth from depth to depth is what each hop adds;
* a **moment-method reference**: Chernoff's bound ``inf_theta E[e^{theta D}] e^{-theta d}`` with
  the *simulated* moment of the delay itself (exact moments, no union bound: what any bound that
  ends in Chernoff's inequality on a moment could reach at best), ``d_chernoff / d_sim``. It is an
  estimate: theta stops where the sample's top ``1e-4`` carries a quarter of the moment. For whole
  slots, ``P(D > j) = P(D >= j + 1)``, one slot below the real-valued inverse.

At ``eps = 1e-3``, ``log(1/eps) = 6.9`` nats: a bound that overstates the probability by ``x`` nats
at the optimal ``theta`` is ``1 + x / 6.9`` times too long, roughly. Writes
benchmarks/out/fifo_losses.json and the figure benchmarks/out/fifo_losses.png.

Run: python benchmarks/bench_fifo_losses.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_tightness import SortedSim, discrete_fifo_scenarios, fifo_scenarios  # noqa: E402

from federation.calculus.arrivals import PoissonArrival  # noqa: E402
from federation.calculus.bound import BoundMethod  # noqa: E402
from federation.calculus.compose import delay_bound, violation_bound  # noqa: E402
from federation.calculus.fifo_recursion import recursion_log_coefficient, recursion_model  # noqa: E402
from federation.calculus.fifo_slotted import slotted_log_coefficient, slotted_model  # noqa: E402
from federation.calculus.reference import exceedance, slot_samples, slotted_fifo_tandem_delays  # noqa: E402
from federation.calculus.services import ConstantRate, FifoLeftover  # noqa: E402
from federation.compare.run import fifo_tandem_departures  # noqa: E402

D = "discrete"
EPS = 1e-3
LEVEL = 0.99


def chernoff_delay(s: np.ndarray, eps: float, whole_slots: bool) -> float:
    """``min_theta (log mean(e^{theta s}) - log eps) / theta`` for a *sorted* sample ``s``, over the
    thetas whose empirical moment is not carried by the sample's top ``1e-4`` (a quarter at most);
    minus one for whole slots."""
    n = len(s)
    cut = int(n * (1 - 1e-4))
    best = math.inf
    for th in np.linspace(0.01, 40.0, 2000) / max(float(np.mean(s)), 1e-9):
        e = np.exp(th * (s - s[-1]))
        tot = float(e.sum())
        if float(e[cut:].sum()) > 0.25 * tot:
            break
        best = min(best, (math.log(tot / n) + th * s[-1] - math.log(eps)) / th)
    return best - 1.0 if whole_slots else best


def log_bound_at(method: str, theta0: float, flow, services, d: float) -> float:
    """``log`` of the bound on ``P(D > d)``, *not clipped at 1*: for the two busy-period methods the
    minimum over theta of ``log beta(theta) - theta x`` (``x = d`` in s; ``j + 1`` for whole slots
    ``j = floor(d)``) on the grid ``theta0 2^(i/8)`` up to where the coefficient is infinite; for
    the others the bound itself (below 1 where they win here: single hops)."""
    if method in (BoundMethod.FIFO_RECURSION, BoundMethod.FIFO_SLOTTED):
        if method == BoundMethod.FIFO_SLOTTED:
            model, coef, x = slotted_model(flow, services), slotted_log_coefficient, math.floor(d + 1e-9) + 1.0
        else:
            model, coef, x = recursion_model(flow, services), recursion_log_coefficient, d
        assert model is not None and model.latency == 0.0  # the benchmark's hops have no latency
        best = math.inf
        for i in range(-24, 64):
            v = coef(model, theta0 * 2.0 ** (i / 8))  # type: ignore[arg-type]
            if not math.isfinite(v) and i > 0:
                break
            best = min(best, v - theta0 * 2.0 ** (i / 8) * x)
        return best
    return math.log(violation_bound(flow, services, d).epsilon)


def depth_row(k: int, series: np.ndarray, flow, services, whole_slots: bool) -> dict:
    """The measurements of one depth (module docstring)."""
    sim = SortedSim(series)
    d_sim = sim.quantile(EPS)
    t0 = time.time()
    b = delay_bound(flow, services, EPS)
    log_p = log_bound_at(b.method, b.theta, flow, services, d_sim)
    t_b = time.time() - t0
    est = exceedance(series, d_sim)
    ci = est.interval(LEVEL)
    over = log_p - math.log(est.p) if est.p > 0 else math.inf
    return {
        "depth": k, "sim_delay": d_sim, "bound_delay": b.delay, "method": b.method, "theta": b.theta,
        "delay_ratio": b.delay / d_sim, "log_bound_p_at_sim": log_p, "sim_p": est.p,
        "overstatement_nats": over,
        "overstatement_nats_ci99": [log_p - math.log(ci.high) if ci.high > 0 else math.inf,
                                    log_p - math.log(ci.low) if ci.low > 0 else math.inf],
        "chernoff_exact_moment_delay": (c := chernoff_delay(sim.sorted, EPS, whole_slots)),
        "chernoff_ratio": c / d_sim, "bound_seconds": t_b,
    }


def slotted_rows(quick: bool) -> list[dict]:
    t = 400_000 if quick else 4_000_000
    rng = np.random.default_rng(1313)
    out = []
    for name, flow, crosses in discrete_fifo_scenarios():
        if len(crosses) < 2:
            continue
        a = slot_samples(flow, t, rng)
        xs = [slot_samples(x, t, rng) for x in crosses]
        fifo = [FifoLeftover(ConstantRate(1.0, time=D), x) for x in crosses]
        depths = []
        for k in range(1, len(crosses) + 1):
            dl = slotted_fifo_tandem_delays(a, [1.0] * k, xs[:k])[1000:]
            depths.append(depth_row(k, dl, flow, fifo[:k], True))
            _print(name, depths[-1])
        out.append({"name": name, "time": D, "hops": len(crosses), "depths": depths})
    return out


def continuous_rows(quick: bool) -> list[dict]:
    n = 200_000 if quick else 2_000_000
    out = []
    for i, (name, lam, size, hops) in enumerate(fifo_scenarios()):
        if len(hops) < 2:
            continue
        flow = PoissonArrival(lam, 1.0, size)
        fifo = [FifoLeftover(ConstantRate(c), PoissonArrival(lc, 1.0, kc)) if lc else ConstantRate(c)
                for c, lc, kc in hops]
        depths = []
        for k in range(1, len(hops) + 1):
            a, f = fifo_tandem_departures(lam, size, hops[:k], n, 1300 + i)
            depths.append(depth_row(k, (f - a)[n // 100:], flow, fifo[:k], False))
            _print(name, depths[-1])
        out.append({"name": name, "time": "continuous", "hops": len(hops), "depths": depths})
    return out


def _print(name: str, r: dict) -> None:
    lo, hi = r["overstatement_nats_ci99"]
    print(f"{name:30s} depth {r['depth']}: d {r['bound_delay']:7.3g} / {r['sim_delay']:<7.3g} = {r['delay_ratio']:.2f}"
          f" ({r['method']}); P overstated {r['overstatement_nats']:5.2f} nats [{lo:.2f}, {hi:.2f}];"
          f" Chernoff, exact moment: {r['chernoff_ratio']:.2f}", flush=True)


def figure(rows: list[dict]) -> Path:
    """Overstatement (nats) and delay ratio against depth, one line per tandem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.6))
    colors = plt.get_cmap("tab20").colors
    for i, r in enumerate(rows):
        k = [d["depth"] for d in r["depths"]]
        style = "--" if r["time"] == D else "-"
        label = r["name"] if r["time"] == D else f"continuous {r['name']}"
        c = colors[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20]
        ax1.plot(k, [d["overstatement_nats"] for d in r["depths"]], style, marker="o", ms=3, color=c, label=label)
        ax2.plot(k, [d["delay_ratio"] for d in r["depths"]], style, marker="o", ms=3, color=c)
        ax2.plot(k[-1] + 0.08, r["depths"][-1]["chernoff_ratio"], marker="x", color=c)
    ax1.axhline(math.log(1 / EPS), color="grey", lw=0.8, ls=":")
    ax1.text(4.1, math.log(1 / EPS) - 0.9, "log(1/eps) = 6.9", fontsize=7, color="grey")
    ax1.set_ylabel("log(P_bound / P_sim) at the simulated 1e-3 quantile (nats)", fontsize=8)
    ax1.set_title("how far the bound's probability is off, by depth", fontsize=9)
    for y, txt in ((2.5, "target: max 2.5"), (1.5, "target: median 1.5")):
        ax2.axhline(y, color="grey", lw=0.8, ls=":")
        ax2.text(4.3, y + 0.04, txt, fontsize=7, color="grey")
    ax2.set_ylabel("d_bound / d_sim at 1e-3", fontsize=8)
    ax2.set_title("delay ratio (x: Chernoff with the simulated moment, full depth)", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("depth (the tandem's first k hops)", fontsize=8)
        ax.set_xticks(range(1, 6))
        ax.grid(alpha=0.3)
    fig.legend(*ax1.get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    path = ROOT / "benchmarks" / "out" / "fifo_losses.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10x shorter simulations")
    args = ap.parse_args()
    t0 = time.time()
    print("slotted tandems (4e6 slots each)" if not args.quick else "slotted tandems (quick)", flush=True)
    rows = slotted_rows(args.quick)
    print("continuous-time tandems (2e6 flow packets each)" if not args.quick else "continuous (quick)", flush=True)
    rows += continuous_rows(args.quick)
    out = {"epsilon": EPS, "quick": args.quick, "rows": rows, "load_average": os.getloadavg(),
           "seconds": time.time() - t0}
    path = ROOT / "benchmarks" / "out" / "fifo_losses.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {path} and {figure(rows)} in {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
