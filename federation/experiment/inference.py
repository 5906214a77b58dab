"""``inference``: two models of one task share the end-to-end budget with the network.

A tenant's budget is one: ``P(D > d) + loss + error <= eps``, where ``D`` includes the model's
inference latency and ``error`` is the model's error probability. A fast model leaves the network
more of ``d`` but eats more of ``eps``; an accurate, slower one the reverse. One arm (the whole
loop): one tenant per ``(d, eps)`` of ``experiment.deadlines x experiment.epsilons``, each a copy
of the template tenant (same access, traffic and task) with that deadline and epsilon
(``tenants`` overridden); the broker offers every (model, path) candidate that fits and the
tenant takes the first (the broker's ranking).

Per tenant: the model the broker picked, its share of the budget (``error / eps``, the delay
budget ``eps_delay / eps``, the mean inference latency over ``d``), the reserved rates, and -- for
each model of the task -- whether the calculus finds a reservation at all and at what cost
(:func:`federation.experiment.budget.pure`'s planning, the broker's own calculus), and the
auditor's end-to-end violation rate (late, lost or wrong) with its interval. The claim: at the
tightest deadline (with the loosest epsilon) the fastest model is picked, at the tightest epsilon
(with the loosest deadline) the most accurate one, and no admitted tenant is judged VIOLATING.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from federation.experiment.arms import Arm, make_arm
from federation.experiment.results import ArmResult, Check, Outcome, save_figure
from federation.experiments_spec import InferenceSpec

__all__ = ["tenant_id", "arms", "evaluate", "figure"]


def tenant_id(deadline_s: float, epsilon: float) -> str:
    """The id of the grid's tenant of ``(deadline_s, epsilon)``: ``d12ms-eps0.01``."""
    return f"d{deadline_s * 1e3:g}ms-eps{epsilon:g}"


def arms(base: dict[str, Any], spec: InferenceSpec, base_dir: Path | None = None) -> list[Arm]:
    """The one arm ``grid`` (see the module docstring)."""
    t = base["tenants"][spec.template]
    grid = [{**t, "id": tenant_id(d, e), "intent": {**t["intent"], "deadline_s": d, "epsilon": e}}
            for d in spec.deadlines for e in spec.epsilons]
    return [make_arm(base, "grid", {"tenants": grid}, params={"deadlines": list(spec.deadlines),
                                                             "epsilons": list(spec.epsilons)}, base_dir=base_dir)]


def _alternatives(arm: Arm, index: int) -> dict[str, Any]:
    """For each model of the tenant's task: the cheapest reservation the calculus finds, or None."""
    from federation.calculus.arrivals import TokenBucket
    from federation.config import TokenBucketConfig
    from federation.experiment.budget import cheapest_rates, slices

    cfg = arm.config
    t = cfg.tenants[index]
    out: dict[str, Any] = {}
    for m in cfg.models:
        if m.task != t.intent.task:
            continue
        paths = cfg.paths(t.access, m.compute_domain)
        if not paths or not isinstance(t.intent.traffic, TokenBucketConfig):
            out[m.id] = None
            continue
        doms = [cfg.domain(d) for d in paths[0]]
        loss = 1.0 - math.prod(1.0 - d.model.loss_probability for d in doms)
        eps_delay = t.intent.epsilon - loss - m.error_probability
        caps = [d.guardrails.max_tenant_rate_bps for d in doms]
        rates = None
        if eps_delay > 0:
            tb = t.intent.traffic
            rates = cheapest_rates(slices(cfg, m, paths[0], caps), TokenBucket(tb.sigma_bits, tb.rho_bps,
                                                                       packet_size=m.request_size_bits),
                          t.intent.deadline_s, eps_delay, [max(d.price_per_mbps_hour / 1e6, 1e-15) for d in doms], caps)
        out[m.id] = None if rates is None else {
            "eps_delay": eps_delay, "rates_bps": rates,
            "price_per_hour": m.price_per_hour + sum(r / 1e6 * d.price_per_mbps_hour for r, d in zip(rates, doms))}
    return out


def evaluate(spec: InferenceSpec, results: Sequence[ArmResult]) -> Outcome:
    """Who picked what, the budget's shares, the audit; the claim (see the module docstring)."""
    from trefed.v1 import telemetry_pb2

    (r,) = results
    assert r.record is not None
    cfg = r.arm.config
    models = {m.id: m for m in cfg.models}
    fastest = min(models.values(), key=lambda m: m.latency.mean_s).id
    accurate = min(models.values(), key=lambda m: m.error_probability).id
    tenants: dict[str, dict[str, Any]] = {}
    rows = []
    for t in r.record.tenants:
        m = models.get(t.model_id) if t.admitted else None
        rep = t.report
        tenants[t.tenant_id] = {
            "deadline_s": t.deadline_s, "epsilon": t.epsilon, "admitted": t.admitted, "model_id": t.model_id,
            "code": t.code, "error_share": m.error_probability / t.epsilon if m else math.nan,
            "delay_share": t.epsilon_delay / t.epsilon if m else math.nan,
            "inference_share": m.latency.mean_s / t.deadline_s if m else math.nan,
            "rates_bps": [b.rate_bps for b in t.budgets], "verdict": t.verdict,
            "violation_rate": rep.end_to_end_violation_rate if rep else math.nan,
            "ci_low": rep.violation_ci_low if rep else math.nan, "ci_high": rep.violation_ci_high if rep else math.nan,
            "alternatives": _alternatives(r.arm, t.index)}
        x = tenants[t.tenant_id]
        rows.append((f"{t.deadline_s * 1e3:g}", f"{t.epsilon:g}", t.model_id if t.admitted else f"refused {t.code[:10]}",
                     "-" if not m else f"{x['error_share']:.0%}", "-" if not m else f"{x['inference_share']:.0%}",
                     "-" if not rep else f"{x['violation_rate']:.1e}", t.verdict))
    tight_d = tenants[tenant_id(min(spec.deadlines), max(spec.epsilons))]
    tight_e = tenants[tenant_id(max(spec.deadlines), min(spec.epsilons))]
    violating = [k for k, v in tenants.items() if v["verdict"] == telemetry_pb2.Verdict.Name(telemetry_pb2.VIOLATING)]
    checks = (
        Check(f"tightest deadline ({min(spec.deadlines) * 1e3:g} ms): the fastest model ({fastest}) picked",
              float(tight_d["model_id"] == fastest), "==", 1.0),
        Check(f"tightest epsilon ({min(spec.epsilons):g}): the most accurate model ({accurate}) picked",
              float(tight_e["model_id"] == accurate), "==", 1.0),
        Check("admitted tenants judged VIOLATING", float(len(violating)), "==", 0.0),
    )
    holds = all(c.holds for c in checks)
    refused = [k for k, v in tenants.items() if not v["admitted"]]

    def why(x: dict[str, Any], other: str) -> str:
        alt = x["alternatives"].get(other)
        if alt is None:
            return f"{other} had no reservation meeting it"
        return f"{other} would cost {alt['price_per_hour']:.2f}/h"

    reading = (
        f"Whole loop on Ray, one federation, {len(tenants)} tenants (one per deadline and epsilon); the end-to-end "
        f"budget P(D > d) + loss + error <= eps is shared by the model's error and inference latency and the "
        f"network. At d = {tight_d['deadline_s'] * 1e3:g} ms, eps = {tight_d['epsilon']:g} the broker gave "
        f"{tight_d['model_id'] or 'nothing'} ({why(tight_d, accurate)}): its inference took "
        f"{tight_d['inference_share']:.0%} of d and its error {tight_d['error_share']:.0%} of eps. At "
        f"d = {tight_e['deadline_s'] * 1e3:g} ms, eps = {tight_e['epsilon']:g} it gave {tight_e['model_id'] or 'nothing'} "
        f"({why(tight_e, fastest)}): error {tight_e['error_share']:.0%} of eps, inference "
        f"{tight_e['inference_share']:.0%} of d. "
        + (f"No model fits {', '.join(refused)} (refused). " if refused else "")
        + f"The auditor judged {len(violating)} admitted tenants VIOLATING "
        f"(measured end-to-end violation rates, late, lost or wrong, in experiment.json). The claim (the fastest model "
        f"at the tightest deadline, the most accurate at the tightest epsilon, nobody violating) "
        f"{'holds' if holds else 'does NOT hold'}.")
    return Outcome("one end-to-end budget: the fast model wins tight deadlines, the accurate one tight epsilons",
                   checks, reading, {"grid": {"tenants": tenants, "fastest": fastest, "most_accurate": accurate}},
                   ("d (ms)", "eps", "model", "error/eps", "infer/d", "P(viol)", "verdict"), tuple(rows), "loop")


def figure(outcome: Outcome, results: Sequence[ArmResult], out: Path) -> list[str]:
    """``inference.png``: per tenant (deadline x epsilon), the shares of its budget -- the model's error
    of ``eps`` and its inference latency of ``d`` -- coloured by the model picked."""
    from federation.experiment.figures import _plt

    plt = _plt()
    info = outcome.metrics["grid"]["tenants"]
    names = list(info)
    colours = {m: f"C{i}" for i, m in enumerate(sorted({v["model_id"] for v in info.values() if v["admitted"]}))}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.6), sharex=True)
    xs = range(len(names))
    for a, key, label in ((ax, "error_share", "model error / eps"), (bx, "inference_share", "mean inference latency / d")):
        a.bar(xs, [0 if math.isnan(info[n][key]) else info[n][key] for n in names],
              color=[colours.get(info[n]["model_id"], "0.7") for n in names])
        a.set_ylabel(label)
        a.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=7)
        a.grid(alpha=0.3, axis="y")
    for m, c in colours.items():
        ax.bar([0], [0], color=c, label=m)
    ax.legend(fontsize=7)
    return save_figure(fig, out, "inference.png")
