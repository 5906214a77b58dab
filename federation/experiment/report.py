"""A federation run written out: ``report.json`` (schema :data:`SCHEMA`), ``report.md``, the signed
artefacts (contracts, telemetry as Parquet, accountability reports, public keys) and the figures.

:func:`write_run` writes everything of a :class:`~federation.experiment.record.RunRecord` into a
directory; :func:`run_document` is the JSON document; :func:`summary_lines` the 80-column summary
the CLI prints.

``report.json``, schema ``trefed.run/1`` (times in s, rates in bits/s, probabilities in [0, 1];
non-finite numbers as ``null`` / ``"inf"``):

* ``schema``, ``federation``, ``created_at`` (ISO 8601 UTC), ``trefed_version``;
* ``run``: the ``run:`` section as it ran (``horizon_s`` = ``duration_s * scale``);
* ``admission``: the broker's admission policy (``broker.admission``: ``snc``, ``dnc``, ``peak-rate``, ``none``);
* ``verdict``: ``violation_found``, ``exit_code`` (1 iff a violation was found, as the CLI exits),
  ``blamed`` (domain ids), counts of tenants per verdict;
* ``tenants``: per tenant -- outcome (``admitted``, ``served``, ``code``, ``reason``), contract
  (``contract_id``, ``model_id``, ``path``, bound ``delay_bound_s`` / ``epsilon_delay`` /
  ``epsilon_total``; ``admission``: the broker's policy that planned it), intent (``deadline_s``, ``epsilon``), window, ``verdict``; ``violation``
  (rate and interval of the end-to-end violation, the auditor's for a contract, the data plane's
  for a tenant served without one, with ``source``); ``quantiles`` (p50/p99/p99.9, s); ``budgets``
  (per domain: ``d_i``, ``eps_i``, rate, ``bound_epsilon`` -- the calculus' own bound on
  ``P(D_i > d_i)`` for the traffic as it reaches the domain --, ``alone_epsilon`` -- the bound of
  the declared traffic through the domain alone -- and ``backed`` (either is at most ``eps_i``),
  and the auditor's verdict, exceedance
  rate and interval, tail-risk share); ``findings``;
* ``domains``: per domain -- telemetry rows, batches sent and accepted, the auditor's refusals,
  ``under_report_s`` (a liar of the config), verdict counts over the contracts, ``blamed``;
* ``events``: ``[t_s, sentence]`` of the control plane;
* ``data_plane``: packets, packet-hops, wall time, packet-hops/s, domains on several paths;
* ``timings``: wall seconds per phase; ``files``: what else the directory holds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from trefed.v1 import telemetry_pb2

from federation.errors import InputError
from federation.experiment.record import RunRecord, TenantRecord

__all__ = ["SCHEMA", "run_document", "summary_lines", "run_markdown", "write_run"]

#: The ``schema`` of ``report.json``.
SCHEMA = "trefed.run/1"

_V = telemetry_pb2.Verdict


def _num(x: float) -> float | str | None:
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _violation(t: TenantRecord, record: RunRecord) -> dict[str, Any]:
    if t.report is not None:
        b = t.report
        return {"rate": _num(b.end_to_end_violation_rate), "ci_low": _num(b.violation_ci_low),
                "ci_high": _num(b.violation_ci_high), "budget": _num(b.end_to_end_epsilon),
                "packets": int(b.packets), "source": "auditor", "method": b.confidence_method}
    if not t.served:
        return {}
    est = t.measured(record.plane, errors=True)  # late, lost or wrong: against the intent's whole epsilon
    if est is None:
        return {"rate": None, "ci_low": 0.0, "ci_high": 1.0, "budget": _num(t.epsilon), "packets": 0,
                "source": "data plane (no contract, not audited)", "method": ""}
    iv = est.interval(record.config.run.confidence)
    return {"rate": _num(est.value), "ci_low": _num(iv.low), "ci_high": _num(iv.high), "budget": _num(t.epsilon),
            "packets": est.n, "source": "data plane (no contract, not audited)", "method": est.method}


def _quantiles(t: TenantRecord, record: RunRecord) -> dict[str, float | str | None]:
    if not t.served:
        return {}
    d = record.plane.tenant_delays(t.index)
    if len(d) == 0:
        return {}
    return {f"p{p * 100:g}": _num(float(np.quantile(d, p))) for p in (0.5, 0.99, 0.999)}


def _budgets(t: TenantRecord) -> list[dict[str, Any]]:
    verdicts = {d.domain_id: d for d in t.report.domains} if t.report is not None else {}
    out = []
    for b in t.budgets:
        row: dict[str, Any] = {"domain_id": b.domain_id, "delay_s": _num(b.delay_s), "epsilon": _num(b.epsilon),
                               "rate_bps": _num(b.rate_bps), "bound_epsilon": _num(b.bound_epsilon),
                               "alone_epsilon": _num(b.alone_epsilon), "backed": bool(b.backed)}
        v = verdicts.get(b.domain_id)
        if v is not None:
            row.update(verdict=_V.Name(v.verdict), packets=int(v.packets), exceedance_rate=_num(v.exceedance_rate),
                       ci_low=_num(v.exceedance_ci_low), ci_high=_num(v.exceedance_ci_high),
                       tail_risk_share=_num(v.tail_risk_share), method=v.method)
        out.append(row)
    return out


def run_document(record: RunRecord, files: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``report.json`` document of ``record`` (see the module docstring)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("trefed")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        ver = "unknown"
    cfg = record.config
    run = cfg.run
    blamed = record.blamed()
    tenants = []
    counts: dict[str, int] = {}
    for t in record.tenants:
        counts[t.verdict] = counts.get(t.verdict, 0) + 1
        tenants.append({
            "tenant_id": t.tenant_id, "admitted": t.admitted, "served": t.served, "code": t.code,
            "reason": t.reason[:500], "contract_id": t.contract_id, "model_id": t.model_id, "path": list(t.path),
            "deadline_s": _num(t.deadline_s), "epsilon": _num(t.epsilon), "delay_bound_s": _num(t.delay_bound_s),
            "epsilon_delay": _num(t.epsilon_delay), "epsilon_total": _num(t.epsilon_total),
            "admission": t.admission, "start_s": _num(t.start_s), "end_s": _num(t.end_s), "verdict": t.verdict,
            "generated": record.plane.generated.get(t.index, 0), "lost": record.plane.lost.get(t.index, 0),
            "violation": _violation(t, record), "quantiles": _quantiles(t, record), "budgets": _budgets(t),
            "findings": list(t.report.findings) if t.report is not None else [],
        })
    domains = []
    for d in cfg.domains:
        tel = record.telemetry.get(d.id)
        per: dict[str, int] = {}
        for t in record.tenants:
            for v in (t.report.domains if t.report is not None else ()):
                if v.domain_id == d.id:
                    per[_V.Name(v.verdict)] = per.get(_V.Name(v.verdict), 0) + 1
        domains.append({
            "domain_id": d.id, "kind": d.kind, "scheduler": run.scheduler_of(d.id),
            "packets": tel.packets if tel else 0, "batches": tel.batches if tel else 0,
            "accepted": tel.accepted if tel else 0, "refused": list(tel.reasons)[:20] if tel else [],
            "under_report_s": tel.under_report_s if tel else 0.0, "verdicts": per, "blamed": d.id in blamed,
        })
    p = record.plane
    found = record.violation_found()
    return {
        "schema": SCHEMA,
        "federation": cfg.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trefed_version": ver,
        "run": {**json.loads(run.model_dump_json()), "horizon_s": run.horizon_s},
        "admission": cfg.broker.admission,
        "verdict": {"violation_found": found, "exit_code": 1 if found else 0, "blamed": blamed, "tenants": counts},
        "tenants": tenants,
        "domains": domains,
        "events": [[_num(t), s] for t, s in record.events],
        "data_plane": {"packets": int(sum(p.generated.values())), "packet_hops": int(p.packet_hops),
                       "wall_s": _num(p.wall_s), "packet_hops_per_s": _num(p.packet_hops / max(p.wall_s, 1e-9)),
                       "shared_domains": list(p.shared)},
        "timings": {k: _num(v) for k, v in record.timings.items()},
        "files": dict(files or {}),
    }


def _pct(x: float | str | None) -> str:
    return "-" if not isinstance(x, float) else f"{x:.1e}"


#: What a refusal's status code means, in the summary's last column (report.md has the reason).
_REFUSALS = {
    "RESOURCE_EXHAUSTED": "(no capacity)",
    "FAILED_PRECONDITION": "(no offer fits)",
    "UNAVAILABLE": "(unreachable)",
    "INVALID_ARGUMENT": "(bad intent)",
    "DEADLINE_EXCEEDED": "(timed out)",
}


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The run's summary as lines of at most 80 characters (what ``trefed run`` prints)."""
    v = doc["verdict"]
    lines = [f"trefed run: {doc['federation']} -- "
             + ("VIOLATION: blamed " + (", ".join(v["blamed"]) or "no domain (end to end only)")
                if v["violation_found"] else "no violation found")]
    lines.append(f"{'tenant':<16} {'verdict':<12} {'P(viol)':>7} {'interval':>17} {'budget':>7} blamed")
    for t in doc["tenants"]:
        viol = t["violation"]
        blamed = [b["domain_id"] for b in t["budgets"] if b.get("verdict") == "VIOLATING"]
        ci = f"[{_pct(viol.get('ci_low'))}, {_pct(viol.get('ci_high'))}]" if viol else ""
        verdict = t["verdict"] if t["served"] else "REFUSED"
        last = ",".join(blamed) if t["served"] else _REFUSALS.get(t["code"], t["code"].lower())
        lines.append(f"{t['tenant_id'][:16]:<16} {verdict[:12]:<12} {_pct(viol.get('rate')):>7} {ci:>17} "
                     f"{_pct(viol.get('budget')):>7} {last}")
    return [ln[:80] for ln in lines]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _ms(x: Any) -> str:
    return "-" if not isinstance(x, float) else f"{x * 1e3:.2f}"


def run_markdown(doc: dict[str, Any], figures: Sequence[str] = (), reading: str = "") -> str:
    """``report.md``: the verdict, the tenants, the per-domain budgets, the domains, the events, the figures."""
    v = doc["verdict"]
    run = doc["run"]
    lines = [f"# trefed run: {doc['federation']}", ""]
    if v["violation_found"]:
        lines.append(f"**Violation found** (exit code 1): blamed {', '.join(v['blamed']) or '(no domain: see findings)'}.")
    else:
        lines.append("**No violation found** (exit code 0).")
    lines += ["", f"{run['horizon_s']:g} s of simulated traffic, seed {run['seed']}, scheduler {run['scheduler']}, "
              f"admission control {'on' if run['admission_control'] else 'off'} "
              f"(policy {doc.get('admission', 'snc')}), intervals at {run['confidence']:g}. "
              f"{len(run['impairments'])} impairments, {len(run['events'])} events, {len(run['liars'])} liars.", ""]
    if reading:
        lines += ["## Reading", "", reading, ""]
    lines += ["## Tenants", ""]
    rows = []
    for t in doc["tenants"]:
        viol = t["violation"]
        rows.append([t["tenant_id"], t["verdict"] if t["served"] else f"refused ({t['code']})", t["model_id"] or "-",
                     _ms(t["deadline_s"]), _pct(t["epsilon"]), _ms(t["delay_bound_s"]), _pct(viol.get("rate")),
                     f"[{_pct(viol.get('ci_low'))}, {_pct(viol.get('ci_high'))}]" if viol else "-",
                     _ms(t["quantiles"].get("p99.9"))])
    lines += _table(["tenant", "verdict", "model", "d (ms)", "eps", "bound (ms)", "P(violation)", "interval",
                     "p99.9 (ms)"], rows)
    refused = [t for t in doc["tenants"] if not t["admitted"]]
    if refused:
        lines += ["", "Refused: " + "; ".join(f"**{t['tenant_id']}** ({t['code']}): {t['reason']}" for t in refused)]
    lines += ["", "## Per-domain budgets: P(D_i > d_i) <= eps_i", ""]
    rows = []
    for t in doc["tenants"]:
        for b in t["budgets"]:
            rows.append([t["tenant_id"], b["domain_id"], _ms(b["delay_s"]), _pct(b["epsilon"]),
                         f"{(b['rate_bps'] or 0) / 1e6:.1f}", _pct(b.get("bound_epsilon")), _pct(b.get("alone_epsilon")),
                         "yes" if b.get("backed") else "**no**", b.get("verdict", "-"), _pct(b.get("exceedance_rate")),
                         f"[{_pct(b.get('ci_low'))}, {_pct(b.get('ci_high'))}]",
                         "-" if b.get("tail_risk_share") is None else f"{b['tail_risk_share']:.2f}"])
    lines += _table(["tenant", "domain", "d_i (ms)", "eps_i", "Mb/s", "bound", "alone", "backed", "verdict",
                     "exceedance", "interval", "share"], rows) if rows else ["(no contract)"]
    if rows:
        backed = sum(1 for t in doc["tenants"] for b in t["budgets"] if b.get("backed"))
        lines += ["", f"{backed} of {len(rows)} sub-budgets are backed by a per-domain bound of the calculus "
                  "(`federation/experiment/backing.py`): *bound*, for the traffic as it reaches the domain, or "
                  "*alone*, for the tenant's declared traffic through the domain alone, at most eps_i. The "
                  "others are a split of the end-to-end bound an honest domain may miss, so read a VIOLATING "
                  "verdict on them with that in mind."]
    lines += ["", "## Domains", ""]
    lines += _table(["domain", "scheduler", "rows reported", "batches accepted", "blamed", "note"],
                    [[d["domain_id"], d["scheduler"], d["packets"], f"{d['accepted']}/{d['batches']}",
                      "**yes**" if d["blamed"] else "no",
                      f"under-reports by {d['under_report_s'] * 1e3:g} ms" if d["under_report_s"] else ""]
                     for d in doc["domains"]])
    findings = [f for t in doc["tenants"] for f in t["findings"]]
    if findings:
        lines += ["", "## Findings", ""] + [f"- {f}" for f in findings[:50]]
    if doc["events"]:
        lines += ["", "## Control-plane events", ""] + [f"- t = {t:.2f} s: {s}" for t, s in doc["events"][:200]]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    dp = doc["data_plane"]
    lines += ["", f"Data plane: {dp['packets']} packets, {dp['packet_hops']} packet-hops in {dp['wall_s']:.2f} s "
              f"({dp['packet_hops_per_s'] / 1e6:.1f} M/s)."
              + (f" Domains on several paths, simulated once per path: {', '.join(dp['shared_domains'])}."
                 if dp["shared_domains"] else ""), ""]
    return "\n".join(lines)


def write_run(record: RunRecord, out: str | Path, *, figures: bool = True, reading: str = "") -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``contracts.json``, ``telemetry/`` (Parquet),
    ``accountability/CONTRACT.json`` (signed reports), ``keys/NAME.pub`` and the figures into ``out``;
    return the JSON document.

    ``trefed audit out/telemetry --contracts out/contracts.json --trust out/keys`` re-audits the run
    offline from these files.

    Raises
    ------
    InputError
        ``out`` cannot be created or written.
    """
    from federation.audit.offline import dump_contracts
    from federation.audit.parquet import write_batches
    from federation.audit.report import report_to_json
    from federation.tre.keys import write_atomic

    out = Path(out)
    try:
        for sub in ("keys", "accountability"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output directory ({exc.strerror or exc})") from None
    write_batches([telemetry_pb2.SignedTelemetryBatch.FromString(b) for b in record.batches], out / "telemetry")
    write_atomic(out / "contracts.json", dump_contracts(record.contracts).encode(), mode=0o644, overwrite=True)
    for name, pem in record.public_pems.items():
        write_atomic(out / "keys" / f"{name}.pub", pem, mode=0o644, overwrite=True)
    for cid, signed in record.signed_reports.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cid)
        write_atomic(out / "accountability" / f"{safe}.json",
                     report_to_json(telemetry_pb2.SignedAccountabilityReport.FromString(signed)).encode(),
                     mode=0o644, overwrite=True)
    files = {"report_md": "report.md", "contracts": "contracts.json", "telemetry": "telemetry/",
             "accountability": "accountability/", "keys": "keys/"}
    drawn: list[str] = []
    if figures:
        from federation.experiment.figures import draw_run

        drawn = draw_run(record, out)
        files.update({Path(f).stem: f for f in drawn})
    doc = run_document(record, files)
    write_atomic(out / "report.json", (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode(), mode=0o644,
                 overwrite=True)
    write_atomic(out / "report.md", run_markdown(doc, drawn, reading).encode(), mode=0o644, overwrite=True)
    return doc
