"""Matplotlib figures of ``trefed compare`` (Agg backend, PNG out).

* :func:`ccdf_figure`: the simulated delay CCDF ``P(D > d)`` on a log scale with its pointwise 95 %
  band for autocorrelated delays (batch means), the calculus bound overlaid, horizontal lines at the target epsilons and
  the bounded / simulated delay at each of them.
* :func:`delay_vs_load_figure`: bounded delay at each epsilon against the simulated quantile,
  versus the bottleneck utilisation (``--loads``).

Both return the PNG bytes and write them to ``path`` when given. Units: delays in seconds.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from federation.compare.run import CompareResult, LoadRow  # noqa: E402

__all__ = ["ccdf_figure", "delay_vs_load_figure"]

_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


def _finish(fig: plt.Figure, path: str | Path | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _what(result: CompareResult) -> str:
    return ("end-to-end packet delay" if result.notion == "packet"
            else "virtual delay at a random instant")


def ccdf_figure(result: CompareResult, path: str | Path | None = None) -> bytes:
    """The CCDF figure of a :class:`~federation.compare.run.CompareResult` (PNG bytes; written to ``path``)."""
    fig, ax = plt.subplots(figsize=(8.5, 6.0))
    xs = result.sim_delays
    n = len(xs) if xs is not None else result.samples
    floor = min(0.3 / max(n, 1), min(e.epsilon for e in result.epsilons) / 3.0)
    d = np.array([g.delay for g in result.grid])
    if xs is not None and len(xs):
        ccdf = 1.0 - np.arange(1, len(xs) + 1) / len(xs)
        keep = ccdf > 0
        ax.step(xs[keep], ccdf[keep], where="post", color="black", lw=1.4,
                label=f"simulated ({n:,} samples)")
    # the band where there are samples beyond d (and one step further)
    cnt = np.array([g.count for g in result.grid])
    m = int(np.searchsorted(-cnt, 0, side="left")) + 1  # counts are non-increasing in d
    lo = np.array([max(g.ci95_low, floor) for g in result.grid])[:m]
    hi = np.array([max(g.ci95_high, floor) for g in result.grid])[:m]
    ax.fill_between(d[:m], lo, hi, step="post", color="0.6", alpha=0.35, lw=0,
                    label="simulated, pointwise 95 % band (batch means)")
    sl = np.array([g.sim_lower if g.enough else np.nan for g in result.grid])
    if np.any(np.isfinite(sl)):
        ax.step(d, sl, where="post", color="0.35", ls=":", lw=1.2,
                label=f"simultaneous lower limit ({result.confidence:.0%}, Bonferroni over tested points)")
    b = np.array([max(g.bound, floor / 10) for g in result.grid])
    ax.plot(d, b, color="#d62728", lw=2.0, label="calculus bound")
    for i, row in enumerate(result.epsilons):
        c = _COLORS[i % len(_COLORS)]
        txt = f"ε={row.epsilon:g}: bound {row.bound_delay:.3g} s / simulated {row.sim_delay:.3g} s = {row.ratio:.2f}x"
        ax.axhline(row.epsilon, color=c, ls="--", lw=0.9, label=txt)
        if math.isfinite(row.bound_delay):
            ax.plot([row.bound_delay], [row.epsilon], marker="o", color="#d62728", ms=5)
        ax.plot([row.sim_delay], [row.epsilon], marker="s", color="black", ms=4)
    ax.plot([], [], ls="none", marker="o", color="#d62728", ms=5, label="bounded d at ε")
    ax.plot([], [], ls="none", marker="s", color="black", ms=4, label="simulated quantile at ε")
    if not result.valid and math.isfinite(result.worst_delay):
        ax.axvline(result.worst_delay, color="#d62728", ls=":", lw=1.2,
                   label=f"worst violation at d = {result.worst_delay:.3g} s")
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_xlim(left=min(0.0, float(d[0])), right=float(d[-1]))
    ax.set_xlabel(f"delay d (s): {_what(result)}")
    ax.set_ylabel("P(D > d)")
    model = " + ".join(result.arrivals) + " → " + " → ".join(f"[{h}]" for h in result.hops)
    if result.cross:
        model += "   cross: " + ", ".join(result.cross)
    ax.set_title(f"{result.verdict}: bound vs simulation ({result.notion} delay, {result.scheduler}, "
                 f"utilisation {result.utilisation:.2f})\n{model}", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    return _finish(fig, path)


def delay_vs_load_figure(rows: Sequence[LoadRow], path: str | Path | None = None, title: str = "") -> bytes:
    """Bounded delay (solid) and simulated quantile with its 95 % interval (dashed) vs load, per epsilon."""
    if not rows:
        raise ValueError("delay_vs_load_figure needs at least one load")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    loads = np.array([r.load for r in rows])
    eps = [e.epsilon for e in rows[0].epsilons]
    for i, e in enumerate(eps):
        c = _COLORS[i % len(_COLORS)]
        bd = np.array([r.epsilons[i].bound_delay for r in rows])
        sd = np.array([r.epsilons[i].sim_delay for r in rows])
        lo = np.array([r.epsilons[i].sim_ci95_low for r in rows])
        hi = np.array([r.epsilons[i].sim_ci95_high for r in rows])
        hi = np.where(np.isfinite(hi), hi, sd)
        ax.plot(loads, bd, "-o", color=c, label=f"bound, ε={e:g}")
        ax.plot(loads, sd, "--s", color=c, ms=4, label=f"simulated quantile, ε={e:g}")
        ax.fill_between(loads, np.maximum(lo, 0), hi, color=c, alpha=0.15, lw=0)
    bad = [r.load for r in rows if not r.valid]
    for u in bad:
        ax.axvline(u, color="#d62728", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("bottleneck utilisation")
    ax.set_ylabel("delay at violation probability ε (s)")
    ax.set_title(title or "bounded vs simulated delay quantiles", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, path)
