"""``bound-validity``: the measured end-to-end delay CCDF against the composed bound, 1 to 5 domains.

One arm, the base config, through the whole loop: every tenant the broker admits gets the composed
bound curve ``x -> P(D > x) <= p(x)`` at its reserved rates (the calculus it was admitted on,
:func:`federation.experiment.backing.bound_curve`), and its packets' end-to-end delays are measured in the data
plane. Tenants entering at different access domains of a chain cross different numbers of domains
(``configs/bound-validity.yaml``: 1 to 5).

At every point ``x`` of a tenant's curve where ``min_probability <= p(x) < 1``, the measured
``P(D > x)`` (the tenant's delivered packets in order of arrival, batch means,
:func:`federation.stats.tail_probability`) is an estimate with a ``level`` interval; the bound is
*contradicted* at ``x`` when the interval's lower end exceeds ``p(x)``. The claim: no point of any
tenant contradicts its bound. The reading also gives the tightness: the bound's delay at the
contract's ``eps_delay`` over the measured ``1 - eps_delay`` quantile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from federation.experiment.arms import Arm, make_arm
from federation.experiment.results import ArmResult, Check, Outcome, save_figure
from federation.experiments_spec import BoundValiditySpec

__all__ = ["arms", "evaluate", "figure"]


def arms(base: dict[str, Any], spec: BoundValiditySpec, base_dir: Path | None = None) -> list[Arm]:
    """The one arm ``base`` (the tenants of the config are the variants: one per path length)."""
    return [make_arm(base, "base", {}, params={}, base_dir=base_dir)]


def evaluate(spec: BoundValiditySpec, results: Sequence[ArmResult]) -> Outcome:
    """Every admitted tenant's CCDF against its bound (see the module docstring)."""
    from federation.stats import tail_probability

    (r,) = results
    assert r.record is not None and r.plane is not None
    tenants: dict[str, dict[str, Any]] = {}
    rows = []
    contradicted = 0
    checked = 0
    for t in r.record.tenants:
        if not t.admitted or not len(t.bound_x_s):
            continue
        d = r.plane.tenant_delays(t.index)
        points = []
        for x, p in zip(t.bound_x_s, t.bound_p):
            if not spec.min_probability <= p < 1.0 or len(d) == 0:
                continue
            est = tail_probability(d > x)
            low = float(est.interval(spec.level).low)
            points.append({"x_s": float(x), "bound": float(p), "measured": float(est.value), "ci_low": low,
                           "contradicted": low > p})
        bad = sum(pt["contradicted"] for pt in points)
        contradicted += bad
        checked += len(points)
        eps = t.epsilon_delay
        q = float(np.quantile(d, 1.0 - eps)) if len(d) else math.nan
        ratio = t.delay_bound_s / q if q > 0 else math.nan
        tenants[t.tenant_id] = {"hops": len(t.path), "path": list(t.path), "packets": len(d),
                                "delay_bound_s": t.delay_bound_s, "epsilon_delay": eps, "measured_quantile_s": q,
                                "tightness": ratio, "points": points, "contradicted": bad}
        margin = max((pt["measured"] / pt["bound"] for pt in points), default=math.nan)
        rows.append((t.tenant_id, len(t.path), len(d), f"{t.delay_bound_s * 1e3:.2f}", f"{q * 1e3:.2f}",
                     f"{ratio:.2f}", f"{margin:.2g}", f"{bad}/{len(points)}"))
    checks = (Check("tenants admitted with a bound curve", float(len(tenants)), ">=", 1.0),
              Check("bound points contradicted by the measured CCDF", float(contradicted), "==", 0.0))
    holds = all(c.holds for c in checks)
    hops = sorted({m["hops"] for m in tenants.values()})
    tight = [m["tightness"] for m in tenants.values() if math.isfinite(m["tightness"])]
    worst = max((pt["measured"] / pt["bound"] for m in tenants.values() for pt in m["points"]), default=math.nan)
    reading = (
        f"Whole loop on Ray, one federation: {len(tenants)} admitted tenants crossing "
        f"{', '.join(str(h) for h in hops) or 'no'} domains. At {checked} points of their composed bound curves "
        f"(where {spec.min_probability:g} <= bound < 1) the measured CCDF's {spec.level:.0%} lower limit exceeded "
        f"the bound at {contradicted}; "
        + ("no packet was that late at any of them. " if worst == 0 else
           f"the measured P(D > x) was at most {worst:.2g} times the bound. ")
        + f"At the contract's "
        f"eps_delay the bound's delay was {min(tight, default=math.nan):.2f}x to {max(tight, default=math.nan):.2f}x "
        f"the measured quantile (the price of a guarantee over every traffic the envelope admits). The claim "
        f"(the composed bounds hold at every checked point) {'holds' if holds else 'does NOT hold'}.")
    return Outcome("the composed end-to-end bound holds against the measured CCDF through 1-5 domains", checks,
                   reading, {"base": {"tenants": tenants, "checked": checked, "contradicted": contradicted}},
                   ("tenant", "hops", "packets", "bound (ms)", "meas. (ms)", "bound/meas", "meas/bound", "contra."),
                   tuple(rows), "loop")


def figure(outcome: Outcome, results: Sequence[ArmResult], out: Path) -> list[str]:
    """``bound-validity.png``: per admitted tenant (colour by path length), the measured CCDF (solid)
    and its composed bound (dashed), log scale."""
    from federation.experiment.figures import _plt

    plt = _plt()
    (r,) = results
    assert r.record is not None and r.plane is not None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    info = outcome.metrics["base"]["tenants"]
    for t in r.record.tenants:
        if t.tenant_id not in info:
            continue
        c = f"C{info[t.tenant_id]['hops'] - 1}"
        d = np.sort(r.plane.tenant_delays(t.index))
        n = len(d)
        if n:
            p = 1.0 - np.arange(1, n + 1) / n
            keep = p > 0
            ax.step(d[keep] * 1e3, p[keep], where="post", color=c, label=f"{t.tenant_id} ({len(t.path)} domains)")
        ax.plot(t.bound_x_s * 1e3, t.bound_p, "--", color=c)
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1.5)
    ax.set_xlabel("end-to-end delay x (ms)")
    ax.set_ylabel("P(D > x): measured (solid), bound (dashed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return save_figure(fig, out, "bound-validity.png")
