"""The whole loop of a federation run: admissions over time, traffic, telemetry, audit.

:func:`run_scenario` drives a started :class:`~agents.runner.Federation` through its config's
``run:`` section and returns a :class:`~federation.experiment.record.RunRecord`:

1. **Control plane, in simulated-time order** (wall time as fast as the agents answer): each
   tenant's agent requests service at its ``start_s`` (resolution, admission, two-phase
   reservation, signed grants) and releases its contract after ``hold_s``; a ``crash`` event
   kills a domain controller and restarts it ``down_s`` later on its reservation table (requests
   in between that need it fail); a ``republish`` event has the domain's operator sign a new
   envelope with other guardrails, a ``revoke`` event withdraws it (the domain refuses new
   reservations; granted ones stand), and the run then waits ``broker.envelope_refresh_s`` of
   wall time, the broker's cache refresh, so the requests after it see the change. With ``admission_control: false``
   (or ``broker.admission: none``) a tenant the broker refuses is let in all the same,
   unreserved, on the first path to a model of its task.
2. **Data plane**: the tenants let in send their traffic for ``run.horizon_s`` s through their
   paths' domains, each domain scheduling by its reservations, under the config's impairments
   (:func:`federation.experiment.plane.simulate_run`).
3. **Telemetry**: every domain's agent signs what its meters saw with its own key and submits it to
   the auditor over gRPC (:meth:`agents.runner.Federation.report_telemetry`); a liar under-reports.
4. **Audit**: for each contract the auditor, which learns the contract from the broker and sees only
   what the domains reported, signs an accountability report (``Auditor.GetReport``); the runner
   checks its signature against the auditor's public key.

Each admitted tenant also gets the composed bound curve ``x -> P(D > x)`` at its reserved rates, the
calculus the broker admitted it on, and each of its sub-budgets the calculus' own per-domain bound
(:mod:`federation.experiment.backing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from agents.broker.plan import arrival_of, path_slices
from agents.runner import Federation
from agents.tenant import TenantOutcome
from federation.audit.report import verify_report
from federation.calculus.arrivals import Arrival
from federation.calculus.compose import DomainSlice
from federation.config import FederationConfig, TenantConfig
from federation.experiment.backing import alone_bounds, bound_curve, domain_bounds
from federation.experiment.plane import ActiveTenant, simulate_run
from federation.experiment.record import BudgetRecord, RunRecord, TelemetryRecord, TenantRecord
from federation.timeline import CrashEvent, RepublishEvent
from federation.tre.trust import TrustStore

__all__ = ["run_scenario", "unreserved_route"]

def unreserved_route(config: FederationConfig, tenant: TenantConfig) -> tuple[str, tuple[str, ...]] | None:
    """``(model id, path)`` a tenant without a contract is served on: the first catalogue model of its
    task within its error bound (else of its task) and the fewest-hop path to it; None if none."""
    task = [m for m in config.models if m.task == tenant.intent.task]
    fit = [m for m in task if m.error_probability <= tenant.intent.max_error_probability] or task
    for m in fit:
        paths = config.paths(tenant.access, m.compute_domain)
        if paths:
            return m.id, paths[0]
    return None


def _calculus(config: FederationConfig, tenant: TenantConfig, outcome: TenantOutcome
              ) -> tuple[list[DomainSlice], Arrival]:
    """The calculus' view of an admitted tenant: its path's slices at its reserved rates, its traffic."""
    model = config.model(outcome.model_id)
    bodies = [config.domain(d).envelope_body("k") for d in outcome.path]
    slices = path_slices(model, bodies, [b.rate_bps for b in outcome.budgets])
    return slices, arrival_of(tenant.intent.traffic, request_size_bits=model.request_size_bits)


def _record(t: TenantConfig, index: int, outcome: TenantOutcome | None, served: ActiveTenant | None) -> TenantRecord:
    rec = TenantRecord(tenant_id=t.id, index=index, admitted=False, served=served is not None,
                       deadline_s=t.intent.deadline_s, epsilon=t.intent.epsilon)
    if served is not None:
        rec = replace(rec, model_id=served.model_id, path=served.path, start_s=served.start_s, end_s=served.end_s)
    if outcome is None:
        return replace(rec, code="NOT_REQUESTED", reason="arrives after the end of the run")
    if not outcome.admitted:
        return replace(rec, code=outcome.code, reason=outcome.reason)
    return replace(
        rec, admitted=True, contract_id=outcome.contract_id, delay_bound_s=outcome.delay_bound_s,
        epsilon_delay=outcome.epsilon_delay, epsilon_total=outcome.epsilon_total, admission=outcome.admission,
        budgets=tuple(BudgetRecord(b.domain_id, b.delay_s, b.epsilon, b.rate_bps) for b in outcome.budgets))


def run_scenario(fed: Federation, *, on_phase: Callable[[str], None] | None = None,
                 on_progress: Callable[[float, int], None] | None = None) -> RunRecord:
    """Run the loop of the module docstring on a started federation; return what happened.

    Parameters
    ----------
    fed
        A started federation (its config's ``run:`` section is what runs).
    on_phase
        Called with a sentence as each phase (and each control-plane event) begins.
    on_progress
        Called during the simulation with (fraction of simulated time done, packets so far).
    """
    say = on_phase or (lambda s: None)
    config = fed.config
    run = config.run
    horizon = run.horizon_s
    timings: dict[str, float] = {}
    index = {t.id: i for i, t in enumerate(config.tenants)}
    # whom the broker refuses is let in unreserved: the overload baseline, either way
    let_in = ("admission control off" if not run.admission_control
              else "admission policy none" if config.broker.admission == "none" else "")

    # 1. the control plane's timeline: (time, order, kind, subject, the guardrails a republish changes)
    timeline: list[tuple[float, int, str, str, dict[str, float]]] = []
    for t in config.tenants:
        start = run.scaled(t.start_s)
        if start < horizon:
            timeline.append((start, 2, "arrive", t.id, {}))
        if t.hold_s is not None and start + run.scaled(t.hold_s) < horizon:
            timeline.append((start + run.scaled(t.hold_s), 1, "leave", t.id, {}))
    for ev in run.events:
        if isinstance(ev, CrashEvent):
            timeline.append((run.scaled(ev.at_s), 0, "crash", ev.domain, {}))
            timeline.append((run.scaled(ev.at_s + ev.down_s), 0, "restart", ev.domain, {}))
        elif isinstance(ev, RepublishEvent):
            timeline.append((run.scaled(ev.at_s), 0, "republish", ev.domain, ev.guardrails))
        else:
            timeline.append((run.scaled(ev.at_s), 0, "revoke", ev.domain, {}))
    timeline.sort(key=lambda e: (e[0], e[1]))
    events: list[tuple[float, str]] = []
    outcomes: dict[str, TenantOutcome] = {}
    served: dict[str, ActiveTenant] = {}
    down: set[str] = set()
    t0 = time.perf_counter()
    say(f"admissions: {len(config.tenants)} tenants over {horizon:g} s of simulated time")
    for at, _, kind, who, changes in timeline:
        if kind in ("republish", "revoke"):
            if who in down:  # its operator acts on a controller that is down: nothing to sign with
                events.append((at, f"domain {who} could not {kind} its envelope (controller down)"))
                continue
            if kind == "republish":
                seq = fed.republish_domain(who, changes)
                what = ", ".join(f"{k} {v:g}" for k, v in changes.items()) or "unchanged guardrails"
                events.append((at, f"domain {who} republished its envelope (sequence {seq}: {what})"))
            else:
                fed.revoke_domain(who)
                events.append((at, f"domain {who} revoked its envelope"))
            say(f"[t={at:7.2f} s] {events[-1][1]}; the broker sees it at its next refresh")
            time.sleep(config.broker.envelope_refresh_s)  # wall time: the broker's cache refresh
        elif kind == "crash":
            fed.kill_domain(who)
            down.add(who)
            events.append((at, f"domain {who} controller crashed"))
        elif kind == "restart":
            if who in down:
                fed.restart_domain(who)
                down.discard(who)
                events.append((at, f"domain {who} controller restarted"))
        elif kind == "arrive":
            t = config.tenants[index[who]]
            say(f"[t={at:7.2f} s] tenant {who} requests {t.intent.task} within {t.intent.deadline_s * 1e3:g} ms "
                f"at epsilon {t.intent.epsilon:g}")
            out = fed.request_tenant(who)
            outcomes[who] = out
            if out.admitted:
                served[who] = ActiveTenant(who, index[who], out.path, out.model_id,
                                           tuple(b.rate_bps for b in out.budgets), at, horizon)
                events.append((at, f"tenant {who} admitted ({out.model_id} via {' > '.join(out.path)})"))
            else:
                events.append((at, f"tenant {who} refused ({out.code})"))
                route = unreserved_route(config, t) if let_in else None
                if route is not None:
                    served[who] = ActiveTenant(who, index[who], route[1], route[0], None, at, horizon)
                    events.append((at, f"tenant {who} let in unreserved ({let_in})"))
        elif kind == "leave" and who in outcomes:
            if who in served:
                s = served[who]
                served[who] = ActiveTenant(s.tenant_id, s.index, s.path, s.model_id, s.rates_bps, s.start_s, at)
            if outcomes[who].admitted:
                released = fed.release_tenant(who)
                events.append((at, f"tenant {who} left ({'released' if released else 'release pending'})"))
    for who in sorted(down):  # a restart due after the end of the run
        fed.restart_domain(who)
        events.append((horizon, f"domain {who} controller restarted"))
    timings["admissions_s"] = time.perf_counter() - t0

    # 2. the data plane
    t0 = time.perf_counter()
    active = [served[t.id] for t in config.tenants if t.id in served]
    say(f"data plane: {len(active)} tenants' traffic for {horizon:g} s (seed {run.seed})")
    plane = simulate_run(config, active, on_progress=on_progress)
    timings["data_plane_s"] = time.perf_counter() - t0

    # 3. telemetry, by each domain's agent
    t0 = time.perf_counter()
    lies = {liar.domain: liar.under_report_s for liar in run.liars}
    say(f"telemetry: {len(plane.logs)} domains sign and report {sum(len(x) for x in plane.logs.values())} rows")
    names = {a.index: a.tenant_id for a in active}
    # the windows tile [0, end): packets reach the later domains after the last arrival at the first
    last = max((float(log.ingress.max()) for log in plane.logs.values() if len(log)), default=0.0)
    end = max(horizon, float(np.nextafter(last, np.inf)))
    receipts = fed.report_telemetry(plane.logs, names, window_start_s=0.0, window_end_s=end,
                                    under_report_s=lies, batch_packets=run.telemetry_batch_packets)
    telemetry = {d: TelemetryRecord(d, r.batches, r.accepted, r.packets, r.reasons, lies.get(d, 0.0))
                 for d, r in receipts.items()}
    timings["telemetry_s"] = time.perf_counter() - t0

    # 4. the audit
    t0 = time.perf_counter()
    assert fed.auditor_key is not None
    trust = TrustStore()
    trust.add_key(fed.auditor_key)
    admitted = [o for o in outcomes.values() if o.admitted]
    say(f"audit: {len(admitted)} contracts")
    contracts = [fed.contract(o.contract_id) for o in admitted]
    signed: dict[str, bytes] = {}
    records = []
    for i, t in enumerate(config.tenants):
        got = outcomes.get(t.id)
        rec = _record(t, i, got, served.get(t.id))
        if got is not None and got.admitted:
            report = fed.report(got.contract_id, run.confidence)
            signed[got.contract_id] = report.SerializeToString()
            slices, arrival = _calculus(config, t, got)
            xs, ps = bound_curve(slices, arrival, got.delay_bound_s)
            delays = [b.delay_s for b in rec.budgets]
            backing = domain_bounds(slices, arrival, delays)
            alone = alone_bounds(slices, arrival, delays)
            budgets = tuple(replace(b, bound_epsilon=e, alone_epsilon=a)
                            for b, e, a in zip(rec.budgets, backing, alone))
            rec = replace(rec, report=verify_report(report, trust), bound_x_s=xs, bound_p=ps, budgets=budgets)
        records.append(rec)
    timings["audit_s"] = time.perf_counter() - t0
    k = fed.auditor_key
    pems = {d: key.public_pem() for d, key in fed.keys.items()}
    pems[k.domain_id] = k.public_pem()
    return RunRecord(config, tuple(records), plane, telemetry, tuple(events), timings,
                     (k.key_id, k.domain_id, k.public_key_bytes()), contracts=tuple(contracts),
                     signed_reports=signed, batches=tuple(b for r in receipts.values() for b in r.signed),
                     public_pems=pems)

