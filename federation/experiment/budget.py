"""``budget-split``: the broker's optimised split of ``(d, eps)`` against an equal split, by the calculus.

The claim is about the calculus, so the arms run it directly, in the pure core (no Ray, no data
plane): one arm per ``(deadline, epsilon)`` of the experiment (``tenants[T].intent.deadline_s`` and
``.epsilon`` overridden), for the template tenant (a token bucket) on its path (the first path to
the first model of its task).

* **Optimised** (what the broker does, :mod:`agents.broker.plan`): the cost-minimising reserved
  rates whose *composed* end-to-end bound meets ``(d, eps_delay)``
  (:func:`federation.calculus.plan.plan_rates`), the burst paid once along the path.
* **Equal**: every domain ``i`` of the ``H`` gets its fixed latency plus ``1/H`` of the rest of the
  deadline, ``d_i = T_i + (d - sum_j T_j) / H``, and ``eps_i = eps_delay / H``, and reserves alone
  the smallest rate meeting ``P(D_i > d_i) <= eps_i`` for the traffic at its ingress: the token
  bucket ``(sigma + sum_{j<i} (rho d_j + L), rho)`` (the output of a flow delayed at most ``d_j``
  grows by ``rho d_j``, plus one packet ``L`` of store-and-forward per hop), by the same
  :func:`~federation.calculus.plan.plan_rates` on one hop. Both splits meet the same end-to-end
  risk (union bound: ``sum d_i = d``, ``sum eps_i = eps_delay``).

``eps_delay = eps - loss - model error`` as the broker has it. Rates are raised to each domain's
``min_tenant_rate_bps``; a split that needs more than ``max_tenant_rate_bps`` somewhere is infeasible.
Metrics per arm and split: the rates (bits/s), the reservation cost (``sum r_i / 1e6 * price``, per
hour) and the tenants admitted: how many such tenants fit, ``min_i floor(reservable_i / r_i)``.
The claim: at every ``(d, eps)`` the optimised split admits no fewer tenants and, where it is
feasible, costs no more (an infeasible equal split counts as infinitely costly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from federation.config import FederationConfig, ModelConfig, TokenBucketConfig
from federation.errors import FieldError, NoFiniteBound
from federation.experiment.arms import Arm, make_arm, route
from federation.experiment.results import ArmResult, Check, Outcome, save_figure
from federation.experiments_spec import BudgetSplitSpec

__all__ = ["arms", "slices", "cheapest_rates", "pure", "evaluate", "figure"]


def arms(base: dict[str, Any], spec: BudgetSplitSpec, base_dir: Path | None = None) -> list[Arm]:
    """One arm per ``(deadline, epsilon)`` (see the module docstring)."""
    t = base["tenants"][spec.tenant]
    if t["intent"]["traffic"].get("kind", "token-bucket") != "token-bucket":
        raise FieldError(f"tenants[{spec.tenant}].intent.traffic.kind",
                         f"(={t['intent']['traffic'].get('kind')!r}) must be 'token-bucket' for experiment.tenant")
    deadlines = spec.deadlines or (float(t["intent"]["deadline_s"]),)
    key = f"tenants[{spec.tenant}].intent"
    return [make_arm(base, f"d{d * 1e3:g}ms-eps{e:g}", {f"{key}.deadline_s": d, f"{key}.epsilon": e},
                     params={"tenant": spec.tenant, "deadline_s": d, "epsilon": e}, mode="core", base_dir=base_dir)
            for d in deadlines for e in spec.epsilons]


def slices(config: FederationConfig, model: ModelConfig, path: Sequence[str], rates: Sequence[float]) -> list:
    """The calculus' view of ``path`` at ``rates`` (bits/s) for ``model``, from the config's domain
    models: as the broker builds it from their envelopes (``agents.broker.plan.path_slices``)."""
    from federation.calculus.compose import DomainSlice

    out = []
    for d, r in zip(path, rates):
        dom = config.domain(d)
        m = dom.model
        compute = dom.kind == "compute"
        out.append(DomainSlice(domain_id=d, rate=float(r), latency=m.latency_s + (model.latency.mean_s if compute else 0.0),
                               propagation_delay=m.propagation_delay_s,
                               service="exp" if m.service == "exponential" else "size",
                               loss_probability=m.loss_probability,
                               error_probability=model.error_probability if compute else 0.0,
                               work_bits=model.request_size_bits if compute else 0.0))
    return out


def cheapest_rates(sl: list, arrival: Any, delay: float, eps: float, costs: list[float],
                   caps: list[float]) -> list[float] | None:
    """:func:`federation.calculus.plan.plan_rates` (bits/s), or None when no rates within ``caps`` meet
    ``(delay, eps)``."""
    from federation.calculus.plan import plan_rates

    try:
        return [float(r) for r in plan_rates(sl, arrival, delay=delay, epsilon=eps, costs=costs, max_rates=caps)]
    except NoFiniteBound:
        return None


def pure(arm: Arm) -> dict[str, Any]:
    """Both splits of one arm (see the module docstring)."""
    from federation.calculus.arrivals import TokenBucket

    cfg = arm.config
    t = cfg.tenants[int(arm.params["tenant"])]
    model_id, path = route(cfg, t)
    model = cfg.model(model_id)
    tb = t.intent.traffic
    assert isinstance(tb, TokenBucketConfig)
    doms = [cfg.domain(d) for d in path]
    loss = 1.0 - math.prod(1.0 - d.model.loss_probability for d in doms)
    eps_delay = t.intent.epsilon - loss - model.error_probability
    d = t.intent.deadline_s
    L = model.request_size_bits
    costs = [max(x.price_per_mbps_hour / 1e6, 1e-15) for x in doms]
    caps = [x.guardrails.max_tenant_rate_bps for x in doms]
    sl = slices(cfg, model, path, caps)
    out: dict[str, Any] = {"path": list(path), "model_id": model_id, "eps_delay": eps_delay}
    if not eps_delay > 0:
        return {**out, "optimised": None, "equal": None}
    opt = cheapest_rates(sl, TokenBucket(tb.sigma_bits, tb.rho_bps, packet_size=L), d, eps_delay, costs, caps)
    fixed = [s.latency + s.propagation_delay for s in sl]
    share = (d - sum(fixed)) / len(sl)
    equal: list[float] | None = []
    budgets = []
    sigma = tb.sigma_bits
    for i, s in enumerate(sl):
        di = fixed[i] + share
        budgets.append((di, eps_delay / len(sl)))
        r = None if share <= 0 else cheapest_rates([s], TokenBucket(sigma, tb.rho_bps, packet_size=L), di, eps_delay / len(sl),
                                          [costs[i]], [caps[i]])
        if r is None:
            equal = None
            break
        assert equal is not None
        equal.append(r[0])
        sigma += tb.rho_bps * di + L
    for name, rates in (("optimised", opt), ("equal", equal)):
        if rates is None:
            out[name] = None
            continue
        rates = [max(r, x.guardrails.min_tenant_rate_bps) for r, x in zip(rates, doms)]
        fit = min(math.floor(x.guardrails.reservable_capacity_bps / r) for r, x in zip(rates, doms))
        out[name] = {"rates_bps": rates, "cost_per_hour": sum(r / 1e6 * x.price_per_mbps_hour for r, x in zip(rates, doms)),
                     "admitted": fit}
    out["equal_budgets"] = [{"delay_s": a, "epsilon": b} for a, b in budgets]
    return out


def _cost(m: dict[str, Any] | None) -> float:
    return math.inf if m is None else float(m["cost_per_hour"])


def _fit(m: dict[str, Any] | None) -> int:
    return 0 if m is None else int(m["admitted"])


def evaluate(spec: BudgetSplitSpec, results: Sequence[ArmResult]) -> Outcome:
    """Cost and tenants admitted of both splits per arm; the claim (see the module docstring)."""
    metrics: dict[str, dict[str, Any]] = {}
    rows = []
    checks = []
    savings = []
    for r in results:
        v = r.value
        p = r.arm.params
        o, e = v["optimised"], v["equal"]
        metrics[r.arm.name] = {**p, **v}
        label = f"d {p['deadline_s'] * 1e3:g} ms, eps {p['epsilon']:g}"
        if o is not None:  # an infeasible equal split costs infinitely much: the ratio is 0
            checks.append(Check(f"{label}: cost optimised / equal", _cost(o) / _cost(e), "<=", 1.0))
        checks.append(Check(f"{label}: optimised admitted - equal admitted", float(_fit(o) - _fit(e)), ">=", 0.0))
        if o is not None and e is not None:
            savings.append((1.0 - _cost(o) / _cost(e), _fit(o), _fit(e), label))
        rows.append((f"{p['deadline_s'] * 1e3:g}", f"{p['epsilon']:g}",
                     "-" if o is None else f"{_cost(o):.3f}", "-" if e is None else f"{_cost(e):.3f}",
                     _fit(o), _fit(e)))
    holds = all(c.holds for c in checks)
    infeasible = [r.arm.name for r in results if r.value["equal"] is None and r.value["optimised"] is not None]
    best = max(savings, default=None)
    lo, hi = min((x[0] for x in savings), default=0.0), max((x[0] for x in savings), default=0.0)
    span = f"{lo:.0%}" if f"{lo:.0%}" == f"{hi:.0%}" else f"{lo:.0%} to {hi:.0%}"
    reading = (
        f"Calculus only (federation.calculus.plan.plan_rates in the pure core; no Ray, no data plane): for the "
        f"template tenant on {' > '.join(results[0].value['path'])}, at each (d, eps) the broker's optimised split "
        f"(rates whose composed end-to-end bound meets d at eps_delay, the burst paid once) against an equal split "
        f"(every domain its latency plus 1/H of the rest of d and eps_delay/H, each sizing its reservation alone for "
        f"the burst it sees). "
        + (f"Where both are feasible the optimised split cost {span} less per hour; the most at {best[3]}, where "
           f"it admits {best[1]} such tenants against {best[2]}. " if best else "")
        + (f"The equal split is infeasible at {', '.join(infeasible)}. " if infeasible else "")
        + f"The claim (never costlier, never fewer tenants) {'holds' if holds else 'does NOT hold'}.")
    return Outcome("at the same end-to-end risk the optimised split costs no more and admits no fewer tenants "
                   "than an equal split", tuple(checks), reading, metrics,
                   ("d (ms)", "eps", "cost opt /h", "cost equal /h", "admitted opt", "admitted equal"),
                   tuple(rows), "core")


def figure(outcome: Outcome, results: Sequence[ArmResult], out: Path) -> list[str]:
    """``budget-split.png``: reservation cost and tenants admitted against epsilon, both splits, per deadline."""
    from federation.experiment.figures import _plt

    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    deadlines = sorted({m["deadline_s"] for m in outcome.metrics.values()})
    for i, d in enumerate(deadlines):
        ms = sorted((m for m in outcome.metrics.values() if m["deadline_s"] == d), key=lambda m: m["epsilon"])
        eps = [m["epsilon"] for m in ms]
        for split, style in (("optimised", "o-"), ("equal", "s--")):
            ax.plot(eps, [_cost(m[split]) if m[split] else math.nan for m in ms], style, color=f"C{i}",
                    label=f"{split}, d = {d * 1e3:g} ms")
            bx.plot(eps, [_fit(m[split]) for m in ms], style, color=f"C{i}", label=f"{split}, d = {d * 1e3:g} ms")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xlabel("end-to-end epsilon")
        a.grid(alpha=0.3, which="both")
    ax.set_ylabel("reservation cost per tenant (/h)")
    bx.set_ylabel("tenants admitted (capacity / rate)")
    ax.legend(fontsize=7)
    return save_figure(fig, out, "budget-split.png")
