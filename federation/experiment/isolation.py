"""``isolation``: a victim's tail beside an aggressor of growing burstiness, per scheduler.

The claim is about the data plane, so the arms run the data plane only
(:func:`federation.experiment.plane.simulate_run`, in the pure core): no broker, no audit. Each of
the two tenants reserves a fixed share (``experiment.shares``) of every domain's rate on its path
(the first path to the first model of its task); ``partition`` gives each that rate as its own
server, ``wfq`` weighs them by it (work-conserving), ``fifo`` ignores it.

The arms (:func:`arms`): per scheduler of ``experiment.schedulers``, the victim alone
(``SCHED-alone``) and, for every burstiness ``b``, the victim beside the aggressor whose mean on and
off times are both multiplied by ``b`` (``tenants[A].intent.traffic.mean_on_s``/``mean_off_s``:
the same mean rate, ``b`` times longer bursts; ``SCHED-bB``). Every arm has the same seed, so the
victim sends the same packets in every arm.

Metric: the victim's ``quantile`` delay (p99.9 by default, s, with its interval from
:func:`federation.stats.tail_quantile`), and its ratio to the victim's value alone under the same
scheduler. The claim: under ``wfq`` and ``partition`` the ratio stays within ``1 +- within`` at
every burstiness; under ``fifo`` it reaches at least ``fifo_factor`` at the highest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import FieldError
from federation.experiment.arms import Arm, make_arm, route
from federation.experiment.plane import ActiveTenant, PlaneRun, simulate_run
from federation.experiment.results import ArmResult, Check, Outcome, save_figure
from federation.experiments_spec import IsolationSpec

__all__ = ["arms", "plane", "evaluate", "figure"]


def arms(base: dict[str, Any], spec: IsolationSpec, base_dir: Path | None = None) -> list[Arm]:
    """``SCHED-alone`` and ``SCHED-bB`` per scheduler and burstiness (see the module docstring)."""
    a = spec.aggressor
    traffic = base["tenants"][a]["intent"]["traffic"]
    if traffic.get("kind") != "mmoo":
        raise FieldError(f"tenants[{a}].intent.traffic.kind", f"(={traffic.get('kind')!r}) must be 'mmoo': "
                         "the aggressor of experiment.aggressor sends on-off bursts")
    on, off = float(traffic["mean_on_s"]), float(traffic["mean_off_s"])
    out = []
    common = {"victim": spec.victim, "shares": list(spec.shares)}
    for s in spec.schedulers:
        out.append(make_arm(base, f"{s}-alone", {"run.scheduler": s},
                            params={**common, "scheduler": s, "aggressor": None, "burstiness": 0.0},
                            mode="plane", base_dir=base_dir))
        for b in spec.burstiness:
            key = f"tenants[{a}].intent.traffic"
            out.append(make_arm(base, f"{s}-b{b:g}", {"run.scheduler": s, f"{key}.mean_on_s": on * b,
                                                      f"{key}.mean_off_s": off * b},
                                params={**common, "scheduler": s, "aggressor": a, "burstiness": b},
                                mode="plane", base_dir=base_dir))
    return out


def plane(arm: Arm) -> PlaneRun:
    """Simulate one arm's data plane: the victim (and the aggressor) with their shares reserved."""
    cfg = arm.config
    p = arm.params
    who = [(p["victim"], p["shares"][0])]
    if p["aggressor"] is not None:
        who.append((p["aggressor"], p["shares"][1]))
    active = []
    for index, share in who:
        t = cfg.tenants[index]
        model, path = route(cfg, t)
        rates = tuple(share * cfg.domain(d).model.rate_bps for d in path)
        active.append(ActiveTenant(t.id, index, path, model, rates, 0.0, cfg.run.horizon_s))
    return simulate_run(cfg, active)


def _quantile(r: ArmResult, q: float) -> tuple[float, float, float, int]:
    from federation.stats import tail_quantile

    assert r.plane is not None
    d = r.plane.tenant_delays(int(r.arm.params["victim"]))
    if len(d) == 0:
        return math.nan, math.nan, math.nan, 0
    est = tail_quantile(d, q)
    iv = est.interval(0.95)
    return float(est.value), float(iv.low), float(iv.high), len(d)


def evaluate(spec: IsolationSpec, results: Sequence[ArmResult]) -> Outcome:
    """The victim's quantile per arm, its ratio to alone, the claim (see the module docstring)."""
    metrics: dict[str, dict[str, Any]] = {}
    alone: dict[str, float] = {}
    for r in results:
        p = r.arm.params
        v, lo, hi, n = _quantile(r, spec.quantile)
        metrics[r.arm.name] = {"scheduler": p["scheduler"], "burstiness": p["burstiness"],
                               "with_aggressor": p["aggressor"] is not None, "victim_quantile_s": v,
                               "ci_low_s": lo, "ci_high_s": hi, "victim_packets": n}
        if p["aggressor"] is None:
            alone[p["scheduler"]] = v
    for m in metrics.values():
        m["ratio_to_alone"] = m["victim_quantile_s"] / alone[m["scheduler"]]
    top = max(spec.burstiness)
    q = f"p{spec.quantile * 100:g}"
    checks = []
    worst: dict[str, float] = {}
    for s in spec.schedulers:
        ms = [m for m in metrics.values() if m["scheduler"] == s and m["with_aggressor"]]
        if s == "fifo":
            at_top = next(m for m in ms if m["burstiness"] == top)
            checks.append(Check(f"fifo: victim {q} / alone at burstiness {top:g}", at_top["ratio_to_alone"], ">=",
                                spec.fifo_factor))
            worst[s] = at_top["ratio_to_alone"]
        else:
            dev = max(abs(m["ratio_to_alone"] - 1.0) for m in ms)
            checks.append(Check(f"{s}: max |victim {q} / alone - 1|", dev, "<=", spec.within))
            worst[s] = dev
    rows = []
    for b in sorted(spec.burstiness):
        row: list[Any] = [f"{b:g}"]
        for s in spec.schedulers:
            m = metrics[f"{s}-b{b:g}"]
            row.append(f"{m['victim_quantile_s'] * 1e3:.2f} ({m['ratio_to_alone']:.2f}x)")
        rows.append(tuple(row))
    rows.append(("alone",) + tuple(f"{alone[s] * 1e3:.2f}" for s in spec.schedulers))
    holds = all(c.holds for c in checks)
    parts = []
    for s in spec.schedulers:
        m = metrics[f"{s}-b{top:g}"]
        parts.append(f"{s} {m['victim_quantile_s'] * 1e3:.2f} ms ({m['ratio_to_alone']:.2f}x its "
                     f"{alone[s] * 1e3:.2f} ms alone)")
    reading = (
        f"Data plane only (simulate_run in the pure core; no broker, no audit): the victim and the aggressor "
        f"reserve {spec.shares[0]:.0%} and {spec.shares[1]:.0%} of every domain's rate (WFQ weighs them by it); the aggressor's on and off "
        f"times grow by the burstiness factor at the same mean rate; every arm sends the victim the same packets. "
        f"At burstiness {top:g} the victim's {q} end-to-end delay was: {'; '.join(parts)}. "
        + "".join(f"Under {s} it moved by at most {worst[s]:.1%} from alone at any burstiness. "
                  for s in spec.schedulers if s != "fifo")
        + f"The claim (wfq and partition within {spec.within:.0%} of alone at every burstiness, fifo at least "
        f"{spec.fifo_factor:g}x at the highest) {'holds' if holds else 'does NOT hold'}.")
    return Outcome(f"reservations isolate the victim's {q}: within {spec.within:.0%} of alone under wfq and "
                   f"partition, at least {spec.fifo_factor:g}x under fifo at burstiness {top:g}",
                   tuple(checks), reading, metrics,
                   ("burstiness",) + tuple(f"{s} {q} ms" for s in spec.schedulers), tuple(rows), "plane")


def figure(outcome: Outcome, results: Sequence[ArmResult], out: Path) -> list[str]:
    """``isolation.png``: the victim's quantile against the aggressor's burstiness, per scheduler, with
    its value alone (dotted) and the 95 % intervals."""
    from federation.experiment.figures import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    scheds = list(dict.fromkeys(m["scheduler"] for m in outcome.metrics.values()))
    for i, s in enumerate(scheds):
        ms = sorted((m for m in outcome.metrics.values() if m["scheduler"] == s and m["with_aggressor"]),
                    key=lambda m: m["burstiness"])
        xs = np.array([m["burstiness"] for m in ms])
        ys = np.array([m["victim_quantile_s"] for m in ms]) * 1e3
        lo = np.array([m["ci_low_s"] for m in ms]) * 1e3
        hi = np.array([m["ci_high_s"] if math.isfinite(m["ci_high_s"]) else m["victim_quantile_s"] for m in ms]) * 1e3
        ax.errorbar(xs, ys, yerr=[np.maximum(ys - lo, 0), np.maximum(hi - ys, 0)], fmt="o-", color=f"C{i}",
                    capsize=3, label=s)
        a = next(m for m in outcome.metrics.values() if m["scheduler"] == s and not m["with_aggressor"])
        ax.axhline(a["victim_quantile_s"] * 1e3, color=f"C{i}", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("aggressor burstiness (x mean on/off times)")
    ax.set_ylabel("victim's tail delay (ms); dotted: alone")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, out, "isolation.png")
