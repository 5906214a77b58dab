"""``accountability``: an impaired domain is blamed, and only it; a lying domain is caught.

Three arms (:func:`arms`), each the whole loop (the auditor sees only what every domain signs and
reports): ``clean`` (no impairment, no liar), ``impaired`` (``experiment.impairment`` in the domain
``experiment.impaired``: ``run.impairments``) and ``liar`` (``experiment.liar`` reports every
egress ``under_report_s`` early: ``run.liars``). A domain is *blamed* when the auditor judges it
VIOLATING for some contract or names it in a finding that is not harmless
(:meth:`~federation.experiment.record.RunRecord.blamed`); a liar is *caught* when a finding of the
auditor says its telemetry is inconsistent with its neighbour's.

The claim: nobody is blamed in ``clean``; exactly the impaired domain in ``impaired``; the liar is
blamed and caught in ``liar``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from trefed.v1 import telemetry_pb2

from federation.errors import ConfigError
from federation.experiment.arms import Arm, make_arm
from federation.experiment.results import ArmResult, Check, Outcome, save_figure
from federation.experiments_spec import AccountabilitySpec

__all__ = ["arms", "evaluate", "figure"]


def arms(base: dict[str, Any], spec: AccountabilitySpec, base_dir: Path | None = None) -> list[Arm]:
    """``clean``, ``impaired``, ``liar`` (see the module docstring)."""
    impairment = {"domain": spec.impaired, **spec.impairment}
    liar = {"domain": spec.liar, "under_report_s": spec.under_report_s}
    try:
        impaired = make_arm(base, "impaired", {"run.impairments": [impairment], "run.liars": []},
                            params={"arm": "impaired", "domain": spec.impaired}, base_dir=base_dir)
    except ConfigError as exc:  # the impairment is the experiment's: say so
        raise ConfigError(f"experiment.impairment: {exc}") from None
    return [
        make_arm(base, "clean", {"run.impairments": [], "run.liars": []}, params={"arm": "clean"},
                 base_dir=base_dir),
        impaired,
        make_arm(base, "liar", {"run.impairments": [], "run.liars": [liar]},
                 params={"arm": "liar", "domain": spec.liar}, base_dir=base_dir),
    ]


def _caught(r: ArmResult, domain: str) -> bool:
    """A finding of kind ``inconsistent`` names ``domain`` (the one its neighbour contradicts)."""
    assert r.record is not None
    return any(f.kind == "inconsistent" and f.domain_id == domain
               for t in r.record.tenants if t.report is not None for f in t.report.finding_details)


def _domain_rows(r: ArmResult) -> dict[str, dict[str, Any]]:
    """Per domain: the worst exceedance / eps_i over the contracts, with its interval, and the verdicts."""
    assert r.record is not None
    out: dict[str, dict[str, Any]] = {}
    for t in r.record.tenants:
        if t.report is None:
            continue
        budgets = {b.domain_id: b for b in t.budgets}
        for v in t.report.domains:
            b = budgets.get(v.domain_id)
            if b is None:
                continue
            row = out.setdefault(v.domain_id, {"ratio": 0.0, "ci_low": 0.0, "ci_high": 0.0, "verdicts": {}})
            ratio = v.exceedance_rate / b.epsilon
            if ratio >= row["ratio"]:
                row.update(ratio=ratio, ci_low=v.exceedance_ci_low / b.epsilon, ci_high=v.exceedance_ci_high / b.epsilon)
            name = telemetry_pb2.Verdict.Name(v.verdict)
            row["verdicts"][name] = row["verdicts"].get(name, 0) + 1
    return out


def evaluate(spec: AccountabilitySpec, results: Sequence[ArmResult]) -> Outcome:
    """Who is blamed in each arm, and the claim (see the module docstring)."""
    by = {r.arm.name: r for r in results}
    metrics: dict[str, dict[str, Any]] = {}
    for name, r in by.items():
        assert r.record is not None
        metrics[name] = {"blamed": r.record.blamed(), "violation_found": r.record.violation_found(),
                         "contracts": sum(t.admitted for t in r.record.tenants), "domains": _domain_rows(r),
                         "findings": [s for t in r.record.tenants if t.report is not None for s in t.report.findings]}
    caught = _caught(by["liar"], spec.liar)
    metrics["liar"]["caught"] = caught
    blamed_imp = metrics["impaired"]["blamed"]
    checks = (
        Check("clean: domains blamed", float(len(metrics["clean"]["blamed"])), "==", 0.0),
        Check(f"impaired: blamed is exactly [{spec.impaired}]", float(blamed_imp == [spec.impaired]), "==", 1.0),
        Check(f"liar: {spec.liar} blamed", float(spec.liar in metrics["liar"]["blamed"]), "==", 1.0),
        Check(f"liar: {spec.liar} caught by its neighbour's telemetry", float(caught), "==", 1.0),
    )
    rows = []
    for name in ("clean", "impaired", "liar"):
        m = metrics[name]
        worst = max(m["domains"].items(), key=lambda kv: kv[1]["ratio"], default=(None, {"ratio": 0.0}))
        rows.append((name, m["contracts"], ", ".join(m["blamed"]) or "none",
                     f"{worst[0]} {worst[1]['ratio']:.2g}x" if worst[0] else "-"))
    holds = all(c.holds for c in checks)
    imp = metrics["impaired"]["domains"].get(spec.impaired, {"ratio": float("nan"), "ci_low": float("nan")})
    others = [f"{d} {row['ratio']:.2g}x" for d, row in metrics["impaired"]["domains"].items() if d != spec.impaired]
    kind = spec.impairment.get("kind", "?")
    reading = (
        f"Whole loop on Ray, three fresh federations of {metrics['clean']['contracts']} contracts each; the auditor "
        f"sees only the telemetry each domain signs with its own key. Clean run: blamed "
        f"{', '.join(metrics['clean']['blamed']) or 'no domain'}. With a {kind} impairment in {spec.impaired}, its "
        f"worst observed exceedance of d_i was {imp['ratio']:.3g}x its eps_i (interval from {imp['ci_low']:.3g}x), "
        f"against {', '.join(others) or 'nothing'} for the other domains; blamed: "
        f"{', '.join(blamed_imp) or 'no domain'}. With {spec.liar} reporting every egress "
        f"{spec.under_report_s * 1e3:g} ms early, the auditor {'caught' if caught else 'did NOT catch'} the "
        f"inconsistency with its neighbour's telemetry and blamed {', '.join(metrics['liar']['blamed']) or 'no domain'}. "
        f"The claim (nobody blamed when clean, exactly the impaired domain when impaired, the liar caught) "
        f"{'holds' if holds else 'does NOT hold'}.")
    return Outcome(f"the audit blames exactly the impaired domain ({spec.impaired}) and catches the lying one "
                   f"({spec.liar})", checks, reading, metrics,
                   ("arm", "contracts", "blamed", "worst exceedance/eps_i"), tuple(rows), "loop")


def figure(outcome: Outcome, results: Sequence[ArmResult], out: Path) -> list[str]:
    """``accountability.png``: per arm and domain, the worst observed exceedance of ``d_i`` over
    ``eps_i`` with its interval (log scale); blamed domains in red, the line at 1 the budget."""
    from federation.experiment.figures import _plt

    plt = _plt()
    names = [r.arm.name for r in results]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        m = outcome.metrics[name]
        doms = list(m["domains"])
        ratio = np.array([max(m["domains"][d]["ratio"], 1e-3) for d in doms])
        lo = np.array([max(m["domains"][d]["ci_low"], 1e-3) for d in doms])
        hi = np.array([max(m["domains"][d]["ci_high"], 1e-3) for d in doms])
        colors = ["C3" if d in m["blamed"] else "C0" for d in doms]
        ax.bar(range(len(doms)), ratio, color=colors)
        ax.errorbar(range(len(doms)), ratio, yerr=[ratio - np.minimum(lo, ratio), np.maximum(hi, ratio) - ratio],
                    fmt="none", ecolor="k", capsize=3)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_xticks(range(len(doms)), doms)
        ax.set_yscale("log")
        ax.set_title(f"{name}: blamed {', '.join(m['blamed']) or 'none'}", fontsize=9)
    axes[0][0].set_ylabel("worst exceedance of d_i / eps_i")
    return save_figure(fig, out, "accountability.png")
