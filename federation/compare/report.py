"""The markdown report of ``trefed compare``: the model, a table per epsilon, the verdict, the pictures."""

from __future__ import annotations

import math

from federation.compare.run import CompareResult

__all__ = ["markdown_report"]


def _g(x: float, fmt: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return format(x, fmt)


def markdown_report(result: CompareResult, ccdf_png: str | None = "ccdf.png",
                    loads_png: str | None = None) -> str:
    """A short markdown report of ``result`` linking the figures (paths relative to the report)."""
    r = result
    lines = [
        f"# trefed compare: **{r.verdict}**",
        "",
        "## Model",
        "",
        *(f"* arrival: `{a}`" for a in r.arrivals),
        *(f"* hop {i}: `{h}`" for i, h in enumerate(r.hops, start=1)),
        *(f"* cross: `{c}`" for c in r.cross),
        f"* scheduler: {r.scheduler}; bottleneck utilisation {r.utilisation:.3g}",
        f"* simulation: {r.packets:,} packets of the first flow, seed {r.seed}, {r.samples:,} samples after "
        f"the warm-up ({r.elapsed_sim:.2f} s); bound curve and inversions {r.elapsed_bound:.2f} s",
        f"* compared quantity: **{r.notion} delay** ({r.notion_reason})",
        f"* bound conversion: {r.conversion}",
        "",
        "## Delay at each target violation probability",
        "",
        "| epsilon | bounded d (s) | method | simulated d (s) | 95 % CI (s) | bound / sim |",
        "|---:|---:|---|---:|---|---:|",
    ]
    for e in r.epsilons:
        flag = "" if e.enough else " (few samples)"
        lines.append(f"| {e.epsilon:g} | {_g(e.bound_delay)} | {e.bound_method} | {_g(e.sim_delay)}{flag} | "
                     f"[{_g(e.sim_ci95_low)}, {_g(e.sim_ci95_high)}] | {_g(e.ratio, '.3f')} |")
    used = [g for g in r.grid if g.enough]
    lines += ["", "## Verdict", ""]
    fwe = f"{1 - r.confidence:.2g}"
    if r.valid:
        lines.append(f"**VALID**: at none of the {r.tested} grid points with enough data (this model's "
                     f"{len(used)} and those of the load sweep) is the simulated probability significantly "
                     f"above the bound (Holm, family-wise error {fwe}).")
        if math.isfinite(r.worst_ratio):
            lines.append(f"Closest point: d = {r.worst_delay:.4g} s, simultaneous lower limit / bound = "
                         f"{r.worst_ratio:.3g}.")
        else:
            lines.append("The check is vacuous: wherever the simulation has enough data the bound is 1 "
                         "(the bound is loose there; see the delay table for how loose).")
    elif not math.isfinite(r.worst_delay):
        bad = ", ".join(f"{row.load:g}" for row in r.loads if not row.valid)
        lines.append(f"**VIOLATED** at load(s) {bad} of the sweep (Holm, family-wise error {fwe}).")
    else:
        g = min(r.grid, key=lambda p: abs(p.delay - r.worst_delay))
        lines.append(f"**VIOLATED** (Holm, family-wise error {fwe}): worst at d = {r.worst_delay:.4g} s: bound "
                     f"{g.bound:.3g}, simulated {g.sim:.3g} ({g.count:,} of {r.samples:,}, p-value {g.p_value:.2g}), "
                     f"simultaneous lower limit {g.sim_lower:.3g}; lower limit / bound = {r.worst_ratio:.3g}.")
    lines += [
        "",
        "Intervals are Clopper-Pearson at the effective sample size (batch means over contiguous "
        "samples with a data-chosen batch count: queueing delays are autocorrelated, so the plain "
        "interval would be too narrow). A grid point is tested when it has at least 10 effective "
        "exceedances; all tested points form one family (Holm's step-down procedure), so the "
        "verdict and the exit code are one decision.",
    ]
    if r.loads:
        lines += ["", "## Delay versus load", "",
                  "| load | " + " | ".join(f"bound / sim @ {e.epsilon:g}" for e in r.loads[0].epsilons)
                  + " | verdict |",
                  "|---:|" + "---:|" * len(r.loads[0].epsilons) + "---|"]
        for row in r.loads:
            cells = " | ".join(f"{_g(e.bound_delay)} / {_g(e.sim_delay)} = {_g(e.ratio, '.2f')}" for e in row.epsilons)
            lines.append(f"| {row.load:g} | {cells} | {'VALID' if row.valid else 'VIOLATED'} |")
        if loads_png:
            lines += ["", f"![delay vs load]({loads_png})"]
    if ccdf_png:
        lines += ["", "## Picture", "", f"![CCDF: bound vs simulation]({ccdf_png})"]
    return "\n".join(lines) + "\n"
