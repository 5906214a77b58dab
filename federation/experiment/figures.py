"""The figures of a federation run (matplotlib, Agg; PNG files).

* ``ccdf.png`` -- per served tenant, the end-to-end delay CCDF ``P(D > x)`` measured in the data
  plane, the contract point ``(d, eps_delay)`` and the composed bound curve the broker admitted it
  on (log scale);
* ``domains.png`` -- per domain and tenant, the observed exceedance of ``d_i`` with its interval
  against the sub-budget ``eps_i`` (log scale), violators in red;
* ``timeline.png`` -- per domain, the p99 of the sojourn (ms) in consecutive windows of simulated
  time, impairment windows shaded and control-plane events marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from trefed.v1 import telemetry_pb2

from federation.experiment.record import RunRecord

__all__ = ["draw_run", "ccdf_figure", "domains_figure", "timeline_figure"]


def _plt():  # noqa: ANN202 - matplotlib is imported where drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, plt, width: float = 4.2, height: float = 3.2):  # noqa: ANN001, ANN202
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def ccdf_figure(record: RunRecord, path: Path) -> Path:
    """``ccdf.png`` (see the module docstring)."""
    plt = _plt()
    served = [t for t in record.tenants if t.served]
    fig, axes = _grid(max(1, len(served)), plt)
    for ax, t in zip(axes, served):
        d = np.sort(record.plane.tenant_delays(t.index))
        n = len(d)
        if n:
            p = 1.0 - np.arange(1, n + 1) / n
            keep = p > 0
            ax.step(d[keep] * 1e3, p[keep], where="post", label=f"measured ({n} packets)", color="C0")
        if len(t.bound_x_s):
            ax.plot(t.bound_x_s * 1e3, t.bound_p, "--", color="C1", label="composed bound")
        eps = t.epsilon_delay if t.admitted else t.epsilon
        ax.plot([t.deadline_s * 1e3], [eps], "o", color="C3", label=f"contract (d, eps) = ({t.deadline_s * 1e3:g} ms, "
                f"{eps:.1e})")
        ax.axvline(t.deadline_s * 1e3, color="C3", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(max(1.0 / max(n, 10), 1e-6) / 2, 1.2)
        ax.set_xlabel("end-to-end delay x (ms)")
        ax.set_ylabel("P(D > x)")
        ax.set_title(f"{t.tenant_id}: {t.verdict}" + ("" if t.admitted else " (unreserved)"), fontsize=9)
        ax.legend(fontsize=6, loc="lower left")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Delay CCDF per tenant against its contract and its composed bound", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def domains_figure(record: RunRecord, path: Path) -> Path:
    """``domains.png`` (see the module docstring)."""
    plt = _plt()
    doms = [d.id for d in record.config.domains]
    fig, axes = _grid(max(1, len(doms)), plt)
    for ax, dom in zip(axes, doms):
        xs, labels = 0, []
        for t in record.tenants:
            if t.report is None:
                continue
            for v in t.report.domains:
                if v.domain_id != dom:
                    continue
                color = "C3" if v.verdict == telemetry_pb2.VIOLATING else "C0"
                if v.exceedances == 0:  # nothing observed: only the interval's upper limit says something
                    ax.plot([xs], [v.exceedance_ci_high], "v", color=color, ms=7)
                    ax.vlines(xs, v.exceedance_ci_high / 30, v.exceedance_ci_high, color=color, lw=1, ls=":")
                else:
                    rate, lo = v.exceedance_rate, max(v.exceedance_ci_low, v.exceedance_rate / 1e3)
                    ax.errorbar([xs], [rate], yerr=[[rate - lo], [v.exceedance_ci_high - rate]], fmt="o", capsize=3,
                                color=color)
                ax.plot([xs - 0.3, xs + 0.3], [v.epsilon, v.epsilon], color="k", lw=1.5)
                labels.append(t.tenant_id)
                xs += 1
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("P(D_i > d_i): observed, interval;\nbar: eps_i; v: none seen, upper limit", fontsize=7)
        blamed = dom in record.blamed()
        ax.set_title(f"{dom}" + (" -- blamed" if blamed else ""), fontsize=9, color="C3" if blamed else "k")
        ax.grid(alpha=0.3, which="both", axis="y")
    fig.suptitle("Per-domain exceedance of its sub-budget d_i against eps_i (red: violating)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timeline_figure(record: RunRecord, path: Path, bins: int = 120) -> Path:
    """``timeline.png`` (see the module docstring)."""
    plt = _plt()
    run = record.config.run
    horizon = record.plane.horizon_s
    edges = np.linspace(0.0, horizon, bins + 1)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for k, (dom, log) in enumerate(record.plane.logs.items()):
        so = log.sojourn
        ok = ~np.isnan(so)
        idx = np.clip(np.searchsorted(edges, log.ingress[ok], side="right") - 1, 0, bins - 1)
        vals = so[ok]
        p99 = np.full(bins, np.nan)
        order = np.argsort(idx, kind="stable")
        idx, vals = idx[order], vals[order]
        cuts = np.searchsorted(idx, np.arange(bins + 1))
        for b in range(bins):
            seg = vals[cuts[b]:cuts[b + 1]]
            if len(seg) >= 5:
                p99[b] = np.quantile(seg, 0.99)
        ax.plot(0.5 * (edges[1:] + edges[:-1]), p99 * 1e3, label=dom, color=f"C{k}")
    for imp in run.impairments:
        ax.axvspan(run.scaled(imp.start_s), run.scaled(imp.end_s), color="C3", alpha=0.12)
        ax.text(run.scaled(imp.start_s), ax.get_ylim()[1] * 0.95, f" {imp.kind} @ {imp.domain}", fontsize=7,
                va="top", color="C3")
    for t, sentence in record.events:
        if "crashed" in sentence or "restarted" in sentence:
            ax.axvline(t, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("p99 sojourn per window (ms)")
    ax.set_title("Per-domain delay over time (shaded: impairment windows; dashed: controller crash/restart)",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_run(record: RunRecord, out: Path) -> list[str]:
    """Draw the three figures into ``out``; return their file names (relative to ``out``)."""
    out = Path(out)
    names = []
    for name, draw in (("ccdf.png", ccdf_figure), ("domains.png", domains_figure), ("timeline.png", timeline_figure)):
        draw(record, out / name)
        names.append(name)
    return names
