"""``overload-admission``: offered load against capacity, admission control on and off.

The arms (:func:`arms`): for every load ``L`` of ``experiment.loads`` and admission control on and
off, the template tenant ``experiment.tenant`` replicated ``n = max(1, round(L * C / r))`` times
(``tenants[T].replicas``), ``C`` the bottleneck domain's model ``rate_bps`` and ``r`` the template's
mean rate (bits/s), so the offered load is ``n * r / C`` (reported as ``offered``). Each arm runs
the whole loop: with admission control the broker admits while the domains' reservable capacity
lasts and refuses the rest; without, a refused tenant is let in all the same, unreserved (it
shares what the reservations leave of each domain), the admitted ones keep their reservations.

Compliance (:func:`evaluate`): a served tenant -- admitted, or let in -- is compliant when its
measured ``P(D > d or lost)`` (the data plane's, batch means over its packets in order of
arrival; :func:`federation.experiment.results.compliance`) is at most ``1 - quantile``, i.e. its
``quantile`` delay (p99.9 by default) is within its deadline ``d``. An arm's compliance is the
fraction of its served tenants that are compliant. The claim: with admission control, compliance
is at least ``on_at_least`` at every load; without, it is below ``off_below`` at the highest load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from federation.errors import FieldError
from federation.experiment.arms import Arm, make_arm
from federation.experiment.results import ArmResult, Check, Outcome, compliance, save_figure
from federation.experiments_spec import OverloadAdmissionSpec

__all__ = ["mean_rate_bps", "arms", "evaluate", "figure"]


def mean_rate_bps(traffic: dict[str, Any]) -> float:
    """The long-run mean rate (bits/s) of a tenant's declared traffic (a config mapping).

    ``token-bucket``: ``rho_bps``; ``poisson``: ``rate_pps * mean_size_bits``; ``mmoo``:
    ``sources * peak_bps * mean_on_s / (mean_on_s + mean_off_s)``.
    """
    kind = traffic.get("kind", "token-bucket")
    if kind == "token-bucket":
        return float(traffic["rho_bps"])
    if kind == "poisson":
        return float(traffic["rate_pps"]) * float(traffic["mean_size_bits"])
    on, off = float(traffic["mean_on_s"]), float(traffic["mean_off_s"])
    return float(traffic.get("sources", 1)) * float(traffic["peak_bps"]) * on / (on + off)


def arms(base: dict[str, Any], spec: OverloadAdmissionSpec, base_dir: Path | None = None) -> list[Arm]:
    """Two arms per load, ``load-L-on`` and ``load-L-off`` (see the module docstring)."""
    tenant = base["tenants"][spec.tenant]
    if "replicas" in tenant:
        raise FieldError(f"tenants[{spec.tenant}].replicas", "is set by the experiment (experiment.loads); leave it out")
    capacity = next(float(d["model"]["rate_bps"]) for d in base["domains"] if d["id"] == spec.bottleneck)
    rate = mean_rate_bps(tenant["intent"]["traffic"])
    out = []
    for i, load in enumerate(spec.loads):
        n = max(1, round(load * capacity / rate))
        if n > 1000:
            raise FieldError(f"experiment.loads[{i}]", f"(={load:g}) needs {n} tenants (at most 1000)")
        for on in (True, False):
            out.append(make_arm(base, f"load-{load:g}-{'on' if on else 'off'}",
                                {f"tenants[{spec.tenant}].replicas": n, "run.admission_control": on},
                                params={"load": load, "control": on, "replicas": n,
                                        "offered": n * rate / capacity}, base_dir=base_dir))
    return out


def evaluate(spec: OverloadAdmissionSpec, results: Sequence[ArmResult]) -> Outcome:
    """Compliance per arm and the claim (see the module docstring)."""
    metrics: dict[str, dict[str, Any]] = {}
    rows = []
    by: dict[tuple[float, bool], dict[str, Any]] = {}
    for r in results:
        assert r.record is not None
        p = r.arm.params
        tc = compliance(r.record, spec.quantile)
        ok = sum(t.compliant for t in tc)
        verdicts: dict[str, int] = {}
        for t in tc:
            if t.admitted:
                verdicts[t.verdict] = verdicts.get(t.verdict, 0) + 1
        m = {"load": p["load"], "offered": p["offered"], "admission_control": p["control"],
             "tenants": p["replicas"], "admitted": sum(t.admitted for t in r.record.tenants),
             "served": len(tc), "compliant": ok, "compliance": ok / len(tc) if tc else math.nan,
             "worst_rate": max((t.rate for t in tc), default=math.nan),
             "auditor_verdicts": verdicts,
             "tenants_detail": [{"tenant_id": t.tenant_id, "admitted": t.admitted, "rate": t.rate, "ci_low": t.ci_low,
                                 "ci_high": t.ci_high, "packets": t.packets, "verdict": t.verdict,
                                 "compliant": t.compliant} for t in tc]}
        metrics[r.arm.name] = m
        by[(p["load"], p["control"])] = m
        rows.append((f"{p['offered']:.2f}x", "on" if p["control"] else "off", p["replicas"], m["admitted"],
                     m["served"], f"{m['compliance']:.0%}", f"{m['worst_rate']:.1e}"))
    loads = sorted({k[0] for k in by})
    top = loads[-1]
    on = [by[(L, True)]["compliance"] for L in loads]
    checks = [Check(f"compliance, control on, load {L:g}", by[(L, True)]["compliance"], ">=", spec.on_at_least)
              for L in loads]
    checks.append(Check(f"compliance, control off, load {top:g}", by[(top, False)]["compliance"], "<",
                        spec.off_below))
    q = f"p{spec.quantile * 100:g}"
    hi_on, hi_off = by[(top, True)], by[(top, False)]
    holds = all(c.holds for c in checks)
    offered = ", ".join(f"{by[(L, True)]['offered']:.2f}x" for L in loads)
    verdict_text = ", ".join(f"{n} {v}" for v, n in sorted(hi_on["auditor_verdicts"].items())) or "none"
    reading = (
        f"Whole loop on Ray, every arm a fresh federation. A served tenant is compliant when its measured "
        f"P(D > d or lost) is at most {1 - spec.quantile:.1e}, i.e. its {q} delay is within its deadline d "
        f"(data-plane batch-means estimate over its packets; the auditor's verdicts are in experiment.json). "
        f"With admission control on, compliance was {min(on):.0%} at worst over offered loads "
        f"{offered} of the bottleneck's capacity: at "
        f"{hi_on['offered']:.2f}x the broker admitted {hi_on['admitted']} of {hi_on['tenants']} tenants and "
        f"{hi_on['compliant']} of them met their {q} (the auditor's verdicts on their contracts: {verdict_text}; "
        f"with few or no late packets its interval cannot confirm a budget this small). With admission control off every tenant was let in "
        f"({hi_off['admitted']} with a reservation, {hi_off['served'] - hi_off['admitted']} without) and only "
        f"{hi_off['compliant']} of {hi_off['served']} ({hi_off['compliance']:.0%}) met it, the worst at "
        f"P(late) = {hi_off['worst_rate']:.2g}. The claim (on >= {spec.on_at_least:.0%} at every load, off < "
        f"{spec.off_below:.0%} at the highest) {'holds' if holds else 'does NOT hold'}.")
    return Outcome(f"admission control keeps admitted tenants' {q} compliance >= {spec.on_at_least:.0%} up to "
                   f"{top:g}x load; without it compliance falls below {spec.off_below:.0%}",
                   tuple(checks), reading, metrics,
                   ("load", "control", "tenants", "admitted", "served", "compliant", "worst P(late)"),
                   tuple(rows), "loop")


def figure(outcome: Outcome, results: Sequence[ArmResult], out: Path) -> list[str]:
    """``overload.png``: compliance against offered load, admission control on and off."""
    from federation.experiment.figures import _plt

    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for on, style in ((True, "o-"), (False, "s--")):
        ms = sorted((m for m in outcome.metrics.values() if m["admission_control"] == on), key=lambda m: m["offered"])
        xs = [m["offered"] for m in ms]
        ax.plot(xs, [m["compliance"] * 100 for m in ms], style, label=f"admission control {'on' if on else 'off'}")
        bx.plot(xs, [m["worst_rate"] for m in ms], style, label=f"{'on' if on else 'off'}")
    ax.set_xlabel("offered load (x capacity)")
    ax.set_ylabel("compliant served tenants (%)")
    ax.set_ylim(-5, 105)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bx.set_yscale("symlog", linthresh=1e-4)
    bx.set_xlabel("offered load (x capacity)")
    bx.set_ylabel("worst tenant's P(D > d or lost)")
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3)
    return save_figure(fig, out, "overload.png")
