"""``admission-vs-dnc``: tenants admitted per admission policy, and their p99.9 compliance.

The value of a stochastic admission controller is counted in tenants: how many more it packs onto
the same capacity than a worst-case controller while every admitted tenant still meets its p99.9
(SNC-Meister, Zhu, Berger, Harchol-Balter, SoCC 2016: 75 % more tenants than the deterministic
network calculus systems of its time).

The arms (:func:`arms`): one per policy of ``experiment.policies`` (``broker.admission``: ``snc``,
``dnc``, ``peak-rate``, see ``agents.broker.plan``), each the whole loop with the template tenant
``experiment.tenant`` replicated ``experiment.offered`` times: identical tenants arriving one by one
(``replica_interval_s`` apart), each admitted while the domains' reservable capacity lasts under
that policy's sizing, the rest refused (and not served). Then (:func:`follow`, built once the
``snc`` arm has run) the arm ``none``: the policy that checks no delay and reserves the mean rate,
with as many tenants as ``snc`` admitted -- the same load, without the calculus.

Compliance (:func:`evaluate`): each admitted tenant's ``P(D > d or lost)`` is measured in the
data plane with the auditor's estimator (:func:`federation.stats.tail_probability_of`: batch
means over its packets in order of arrival, the clustering of rare exceedances borrowed from lower
levels; :func:`federation.experiment.results.compliance`), with its ``run.confidence`` interval,
against ``eps = 1 - quantile``. A tenant is

* *shown compliant* when the interval lies below ``eps`` (its upper limit at most ``eps``);
* *shown violating* when it lies above (its lower limit above ``eps``);
* *compliant* when it is not shown violating: the data do not refute its ``P(D > d) <= eps``.

Showing compliance takes many independent clusters of late packets' worth of traffic: with no
late packet at all the interval's upper limit is about ``3 psi / n`` (``psi`` the packets per
cluster), and bursty on-off tenants cluster heavily -- one burst of a hundred late packets in a
minute's 19 000 is an estimate of 5e-3 whose interval reaches down to almost 0 --, so at the
default size (60 s) neither a point estimate above ``eps`` nor an upper limit above it says
anything; ``run.scale`` lengthens the runs. Capacity reserved: the sum of
the admitted tenants' rates at each domain (bits/s).

The claim: ``snc`` admits at least ``ratio`` times the tenants ``dnc`` admits, ``snc >= dnc >=
peak-rate`` in tenants admitted, every tenant ``snc`` admits is compliant (none shown violating),
and ``none`` at the same tenant count has fewer than ``none_below`` of its tenants compliant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from federation.errors import FieldError
from federation.experiment.arms import Arm, make_arm
from federation.experiment.results import ArmResult, Check, Outcome, compliance, save_figure
from federation.experiments_spec import AdmissionVsDncSpec

__all__ = ["arms", "follow", "evaluate", "figure"]

#: The order of the policies in the tables and figures.
_ORDER = ("snc", "dnc", "peak-rate", "none")


def _arm(base: dict[str, Any], spec: AdmissionVsDncSpec, policy: str, n: int, base_dir: Path | None) -> Arm:
    return make_arm(base, policy, {"broker.admission": policy, f"tenants[{spec.tenant}].replicas": n},
                    params={"policy": policy, "offered": n}, base_dir=base_dir)


def arms(base: dict[str, Any], spec: AdmissionVsDncSpec, base_dir: Path | None = None) -> list[Arm]:
    """One loop arm per policy of ``experiment.policies`` (see the module docstring)."""
    tenant = base["tenants"][spec.tenant]
    if "replicas" in tenant:
        raise FieldError(f"tenants[{spec.tenant}].replicas",
                         "is set by the experiment (experiment.offered); leave it out")
    return [_arm(base, spec, p, spec.offered, base_dir) for p in spec.policies]


def follow(spec: AdmissionVsDncSpec, base: dict[str, Any], results: Sequence[ArmResult],
           base_dir: Path | None = None) -> list[Arm]:
    """The arm ``none`` with as many tenants as the ``snc`` arm admitted (none if it admitted none)."""
    snc = next(r for r in results if r.arm.params["policy"] == "snc")
    assert snc.record is not None
    n = sum(t.admitted for t in snc.record.tenants)
    return [_arm(base, spec, "none", n, base_dir)] if n > 0 else []


def _metrics(r: ArmResult, spec: AdmissionVsDncSpec) -> dict[str, Any]:
    rec = r.record
    assert rec is not None
    eps = 1.0 - spec.quantile
    reserved: dict[str, float] = {d.id: 0.0 for d in rec.config.domains}
    for t in rec.tenants:
        for b in t.budgets:
            reserved[b.domain_id] += b.rate_bps
    reservable = {d.id: d.guardrails.reservable_capacity_bps for d in rec.config.domains}
    tc = [t for t in compliance(rec, spec.quantile) if t.admitted]
    shown = [t for t in tc if t.ci_high <= eps]
    violating = [t for t in tc if t.ci_low > eps]
    ok = [t for t in tc if not t.ci_low > eps]
    verdicts: dict[str, int] = {}
    for c in tc:
        verdicts[c.verdict] = verdicts.get(c.verdict, 0) + 1
    first = next((t for t in rec.tenants if t.admitted), None)
    return {
        "policy": r.arm.params["policy"], "offered": r.arm.params["offered"],
        "admitted": sum(t.admitted for t in rec.tenants), "served": sum(t.served for t in rec.tenants),
        "rate_bps": {b.domain_id: b.rate_bps for b in first.budgets} if first else {},
        "reserved_bps": reserved,
        "reserved_fraction": {d: reserved[d] / reservable[d] for d in reserved},
        "compliant": len(ok), "shown_compliant": len(shown), "shown_violating": len(violating),
        "compliance": len(ok) / len(tc) if tc else math.nan,
        "worst_rate": max((t.rate for t in tc), default=math.nan),
        "worst_ci_high": max((t.ci_high for t in tc), default=math.nan),
        "auditor_verdicts": verdicts,
        "tenants_detail": [{"tenant_id": t.tenant_id, "rate": t.rate, "ci_low": t.ci_low, "ci_high": t.ci_high,
                            "packets": t.packets, "verdict": t.verdict,
                            "compliant": not t.ci_low > eps, "shown_compliant": t.ci_high <= eps,
                            "shown_violating": t.ci_low > eps}
                           for t in tc],
    }


def evaluate(spec: AdmissionVsDncSpec, results: Sequence[ArmResult]) -> Outcome:
    """Tenants admitted, capacity reserved and compliance per policy; the claim (module docstring).

    The table, per policy: tenants offered and admitted, the rate reserved per tenant at the
    bottleneck (the domain of least reservable capacity; Mb/s), the capacity reserved there (Mb/s
    and share), tenants compliant (``ok``), shown compliant (``shown``) and shown violating
    (``late``), and the highest estimate of ``P(D > d or lost)``.
    """
    by = {r.arm.params["policy"]: _metrics(r, spec) for r in results}
    metrics = {r.arm.name: by[r.arm.params["policy"]] for r in results}
    eps = 1.0 - spec.quantile
    first = results[0].record
    assert first is not None
    bottleneck = min(first.config.domains, key=lambda d: d.guardrails.reservable_capacity_bps).id
    rows = []
    for p in _ORDER:
        if p in by:
            m = by[p]
            rate = m["rate_bps"].get(bottleneck, math.nan)
            rows.append((p, m["offered"], m["admitted"], f"{rate / 1e6:.2f}",
                         f"{m['reserved_bps'][bottleneck] / 1e6:.1f} ({m['reserved_fraction'][bottleneck]:.0%})",
                         f"{m['compliant']}/{m['admitted']}", m["shown_compliant"], m["shown_violating"],
                         f"{m['worst_rate']:.1e}"))
    snc, dnc = by["snc"], by["dnc"]
    checks = [Check("tenants admitted, snc / dnc", snc["admitted"] / dnc["admitted"] if dnc["admitted"] else math.inf,
                    ">=", spec.ratio),
              Check("tenants admitted, snc - dnc", float(snc["admitted"] - dnc["admitted"]), ">=", 0.0)]
    if "peak-rate" in by:
        checks.append(Check("tenants admitted, dnc - peak-rate", float(dnc["admitted"] - by["peak-rate"]["admitted"]),
                            ">=", 0.0))
    checks.append(Check("snc: admitted tenants compliant", snc["compliance"], ">=", 1.0))
    if spec.require_shown:
        checks.append(Check("snc: tenants shown compliant (interval below eps)",
                            snc["shown_compliant"] / snc["admitted"] if snc["admitted"] else 0.0, ">=", 1.0))
    none = by.get("none")
    checks.append(Check("none: tenants, as many as snc admitted",
                        float(none["admitted"]) if none else math.nan, "==", float(snc["admitted"])))
    checks.append(Check("none: tenants compliant", none["compliance"] if none else math.nan, "<", spec.none_below))
    holds = all(c.holds for c in checks)
    q = f"p{spec.quantile * 100:g}"
    ratio = snc["admitted"] / dnc["admitted"] if dnc["admitted"] else math.inf
    rest = f"{dnc['admitted']} ({dnc['compliant']} compliant)" + (
        f", peak-rate {by['peak-rate']['admitted']} ({by['peak-rate']['compliant']} compliant)" if "peak-rate" in by else "")
    none_text = (f"The policy none (no delay check, the mean rate {none['rate_bps'].get(bottleneck, math.nan) / 1e6:.2f} "
                 f"Mb/s reserved) at snc's {none['admitted']} tenants: {none['compliant']} compliant, "
                 f"{none['shown_violating']} shown violating (interval above eps), the worst at P(late) = "
                 f"{none['worst_rate']:.2g}. " if none else "The arm none did not run (snc admitted no tenant). ")
    shown = (f"Shown compliant by the interval (its upper limit at most eps): snc {snc['shown_compliant']} of "
             f"{snc['admitted']} (the largest upper limit {snc['worst_ci_high']:.2g})"
             + (". " if snc["shown_compliant"] == snc["admitted"] else
                "; showing it for every tenant needs longer runs (run.duration_s, run.scale), as clustered late "
                "packets make the interval wide. "))
    reading = (
        f"Whole loop on Ray, every arm a fresh federation: {snc['offered']} identical tenants arrive one by one and "
        f"each policy admits while the bottleneck {bottleneck!r} ({first.config.domain(bottleneck).guardrails.reservable_capacity_bps / 1e6:g} "
        f"Mb/s reservable) lasts. A tenant is compliant when the {first.config.run.confidence:.0%} interval of its "
        f"P(D > d or lost), measured in the data plane with the auditor's batch-means estimator, is not shown "
        f"above eps = {eps:.1e} (its {q} within d: the interval does not lie above eps). snc reserved "
        f"{snc['rate_bps'].get(bottleneck, math.nan) / 1e6:.2f} Mb/s per tenant and admitted {snc['admitted']} "
        f"({snc['compliant']} compliant; the highest estimate, P(late) = {snc['worst_rate']:.2g}, with its interval reaching "
        f"below eps); dnc reserved {dnc['rate_bps'].get(bottleneck, math.nan) / 1e6:.2f} Mb/s (the "
        f"worst case) and admitted {rest}: snc admits {ratio:.2f}x the tenants of dnc. " + none_text + shown
        + f"The claim (snc >= {spec.ratio:g}x dnc, snc >= dnc >= peak-rate, snc's tenants "
          f"{'shown compliant' if spec.require_shown else 'compliant'}, none at the "
          f"same count below {spec.none_below:.0%} compliant) {'holds' if holds else 'does NOT hold'}.")
    return Outcome(f"snc admits >= {spec.ratio:g}x the tenants dnc admits with every admitted tenant's {q} "
                   f"compliant; none at the same count is not", tuple(checks), reading, metrics,
                   ("policy", "offered", "admitted", "Mb/s", f"at {bottleneck}", "ok", "shown", "late",
                    "max P(late)"), tuple(rows), "loop",
                   extra={"eps": eps, "bottleneck": bottleneck})


def figure(outcome: Outcome, results: Sequence[ArmResult], out: Path) -> list[str]:
    """``admission-vs-dnc.png``: tenants admitted per policy; each admitted tenant's P(D > d or lost)
    with its interval against eps, per policy."""
    import numpy as np

    from federation.experiment.figures import _plt

    plt = _plt()
    ms = sorted(outcome.metrics.values(), key=lambda m: _ORDER.index(m["policy"]))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    names = [m["policy"] for m in ms]
    xs = np.arange(len(ms))
    ax.bar(xs, [m["admitted"] for m in ms], color=[f"C{_ORDER.index(n)}" for n in names])
    ax.bar(xs, [m["compliant"] for m in ms], fill=False, hatch="//", edgecolor="k", linewidth=0.0,
           label="of them compliant")
    ax.bar(xs, [m["shown_compliant"] for m in ms], fill=False, hatch="xx", edgecolor="w", linewidth=0.0,
           label="shown compliant (interval)")
    ax.axhline(ms[0]["offered"], color="grey", ls=":", label="tenants offered")
    ax.set_xticks(xs, names)
    ax.set_ylabel("tenants admitted")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    floor = 1e-6
    for i, m in enumerate(ms):
        det = m["tenants_detail"]
        if not det:
            continue
        jit = i + np.linspace(-0.3, 0.3, len(det))
        val = np.array([max(t["rate"], floor) if math.isfinite(t["rate"]) else 1.0 for t in det])
        lo = np.array([max(t["ci_low"], floor) for t in det])
        hi = np.array([max(t["ci_high"], floor) for t in det])
        bx.errorbar(jit, val, yerr=[np.maximum(val - lo, 0), np.maximum(hi - val, 0)], fmt="o", ms=3,
                    color=f"C{_ORDER.index(m['policy'])}", elinewidth=0.8)
    eps = float(outcome.extra["eps"])
    bx.axhline(eps, color="k", ls="--", lw=0.8, label=f"eps = {eps:g}")
    bx.set_yscale("log")
    bx.set_xticks(xs, names)
    bx.set_ylabel(f"P(D > d or lost), 95 % interval (floor {floor:g})")
    bx.legend(fontsize=7)
    bx.grid(alpha=0.3, which="both", axis="y")
    return save_figure(fig, out, "admission-vs-dnc.png")
