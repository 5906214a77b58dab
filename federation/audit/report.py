"""The accountability report: an :class:`~federation.audit.analysis.Analysis` as a signed protobuf,
as JSON and as markdown, and its offline verification.

The report body (``AccountabilityReportBody``) is signed by the auditor's key with
:func:`federation.tre.signing.sign`; its ``auditor_id`` is the identity the key is trusted for,
so anyone holding the auditor's public key verifies it with :func:`verify_report` (e.g. a
trust directory with ``AUDITOR_ID.pub``, :meth:`~federation.tre.trust.TrustStore.from_dir`).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from trefed.v1 import envelope_pb2, telemetry_pb2

from federation.audit.analysis import Analysis, Quantile, RateResult
from federation.audit.chain import BLAMING
from federation.errors import InputError, VerificationError
from federation.tre.signing import Reason, SigningKey, sign
from federation.tre.trust import TrustStore
from federation.tre.validate import timestamp_from_seconds

__all__ = [
    "report_body",
    "sign_report",
    "verify_report",
    "report_to_dict",
    "report_to_json",
    "report_document",
    "report_from_document",
    "report_to_markdown",
    "violation_found",
]


def _verdict(name: str) -> telemetry_pb2.Verdict:
    return cast(telemetry_pb2.Verdict, telemetry_pb2.Verdict.Value(str(name)))


def _quantile(q: Quantile, level: float) -> telemetry_pb2.QuantileEstimate:
    return telemetry_pb2.QuantileEstimate(level=q.p, value_s=q.value_s, ci_low_s=q.low_s, ci_high_s=q.high_s,
                                          confidence=level, method=q.method)


def _budget(r: RateResult) -> telemetry_pb2.BudgetVerdict:
    return telemetry_pb2.BudgetVerdict(name=r.name, budget=r.budget, events=r.events,
                                       rate=r.rate if r.n else 0.0, ci_low=r.low, ci_high=r.high,
                                       verdict=_verdict(r.verdict), method=r.method)


def report_body(analysis: Analysis, *, report_id: str, auditor_id: str, issued_at: float) -> telemetry_pb2.AccountabilityReportBody:
    """The report body of ``analysis`` (unsigned); ``issued_at`` Unix time, s."""
    t = analysis.terms
    total = analysis.budgets[-1]
    body = telemetry_pb2.AccountabilityReportBody(
        report_id=report_id, contract_id=t.contract_id, tenant_id=t.tenant_id,
        window_start_s=analysis.window[0], window_end_s=analysis.window[1], packets=analysis.packets,
        end_to_end_deadline_s=t.deadline_s, end_to_end_epsilon=t.epsilon_total,
        end_to_end_violation_rate=total.rate if total.n else 0.0, violation_ci_low=total.low,
        violation_ci_high=total.high, end_to_end_verdict=_verdict(total.verdict),
        delay_quantiles=[_quantile(q, analysis.level) for q in analysis.quantiles],
        findings=[f.sentence() for f in analysis.findings], auditor_id=auditor_id,
        budgets=[_budget(b) for b in analysis.budgets], unattributed_share=analysis.unattributed,
        finding_details=[f.to_proto() for f in analysis.findings],
        confidence_method=total.method, confidence=analysis.level,
    )
    for d in analysis.domains:
        ex = d.exceedance
        body.domains.append(telemetry_pb2.DomainVerdict(
            domain_id=d.terms.domain_id, verdict=_verdict(ex.verdict), delay_budget_s=d.terms.delay_budget_s,
            epsilon=d.terms.epsilon, packets=ex.n, exceedances=ex.events, exceedance_rate=ex.rate if ex.n else 0.0,
            exceedance_ci_low=ex.low, exceedance_ci_high=ex.high, tail_risk_share=d.share,
            delay_quantiles=[_quantile(q, analysis.level) for q in d.quantiles],
            findings=[f.sentence() for f in d.findings], method=ex.method, effective_samples=ex.n_eff,
            violations_attributed=d.attributed,
        ))
    body.issued_at.CopyFrom(timestamp_from_seconds(issued_at, "issued_at"))
    return body


def sign_report(body: telemetry_pb2.AccountabilityReportBody, key: SigningKey) -> telemetry_pb2.SignedAccountabilityReport:
    """Sign a report body with the auditor's key (sets ``key_id``)."""
    return sign(body, key, telemetry_pb2.SignedAccountabilityReport)


def verify_report(signed: telemetry_pb2.SignedAccountabilityReport | bytes, trust: TrustStore) -> telemetry_pb2.AccountabilityReportBody:
    """Verify a signed report offline: signature, canonical body, key bound to ``auditor_id``.

    Raises
    ------
    VerificationError
        With a stable ``reason`` (see :meth:`federation.tre.trust.TrustStore.verify`).
    """
    if isinstance(signed, (bytes, bytearray)):
        try:
            signed = telemetry_pb2.SignedAccountabilityReport.FromString(bytes(signed))
        except DecodeError as exc:
            raise VerificationError(Reason.MALFORMED, f"cannot decode SignedAccountabilityReport: {exc}") from exc
    return trust.verify(signed, telemetry_pb2.AccountabilityReportBody, domain_of=lambda b: b.auditor_id)


def violation_found(body: telemetry_pb2.AccountabilityReportBody) -> bool:
    """Whether the report holds a domain or the contract to account: a VIOLATING verdict, or a
    finding that blames a domain (equivocation, broken chain, missing packets, inconsistency).

    ``trefed audit`` exits 1 when it does for any contract.
    """
    if body.end_to_end_verdict == telemetry_pb2.VIOLATING or any(b.verdict == telemetry_pb2.VIOLATING for b in body.budgets):
        return True
    if any(d.verdict == telemetry_pb2.VIOLATING for d in body.domains):
        return True
    return any(f.kind in BLAMING for f in body.finding_details)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def report_to_dict(body: telemetry_pb2.AccountabilityReportBody) -> dict[str, Any]:
    """The report as JSON-able data (protobuf JSON names; every field, defaults included)."""
    d = json_format.MessageToDict(body, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _clean(d)


def report_document(signed: telemetry_pb2.SignedAccountabilityReport) -> dict[str, Any]:
    """The signed report as JSON-able data: ``{"report": body, "signature": {...}, "body_b64": ...}``.

    ``body_b64`` is the exact signed bytes, so the JSON alone re-verifies
    (:func:`report_from_document`).
    """
    body = telemetry_pb2.AccountabilityReportBody.FromString(signed.body)
    return {
        "report": report_to_dict(body),
        "signature": {"algorithm": "ED25519", "key_id": signed.signature.key_id,
                      "signature_b64": base64.b64encode(signed.signature.signature).decode()},
        "body_b64": base64.b64encode(signed.body).decode(),
    }


def report_from_document(doc: dict[str, Any]) -> telemetry_pb2.SignedAccountabilityReport:
    """The signed report back from :func:`report_document`'s data (verify it with :func:`verify_report`).

    Raises
    ------
    InputError
        A missing key or bad base64 (names it).
    """
    try:
        signed = telemetry_pb2.SignedAccountabilityReport(body=base64.b64decode(doc["body_b64"], validate=True))
        signed.signature.algorithm = envelope_pb2.ED25519
        signed.signature.key_id = str(doc["signature"]["key_id"])
        signed.signature.signature = base64.b64decode(doc["signature"]["signature_b64"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a signed report document: {exc!r}") from exc
    return signed


def report_to_json(signed: telemetry_pb2.SignedAccountabilityReport) -> str:
    """:func:`report_document` as indented JSON text."""
    return json.dumps(report_document(signed), indent=2)


def _fmt(x: float, unit: str = "") -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}{unit}"


def report_to_markdown(body: telemetry_pb2.AccountabilityReportBody) -> str:
    """The report as markdown: the end-to-end budgets, the domains' verdicts and shares, the findings."""
    V = telemetry_pb2.Verdict.Name
    lvl = f"{body.confidence:.0%}" if body.confidence else "95%"
    out = [
        f"# Accountability report {body.report_id}",
        "",
        f"Contract `{body.contract_id}`, tenant `{body.tenant_id}`; auditor `{body.auditor_id}` (key `{body.key_id}`).",
        f"Window {_fmt(body.window_start_s, ' s')} to {_fmt(body.window_end_s, ' s')}, {body.packets} packets; "
        f"intervals at {lvl} ({body.confidence_method or 'n/a'}).",
        "",
        f"**End to end: {V(body.end_to_end_verdict)}** (deadline {_fmt(body.end_to_end_deadline_s, ' s')}, "
        f"budget {_fmt(body.end_to_end_epsilon)}).",
        "",
        "| budget | contracted | events | rate | interval | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for b in body.budgets:
        out.append(f"| {b.name} | {_fmt(b.budget)} | {b.events} | {_fmt(b.rate)} | [{_fmt(b.ci_low)}, {_fmt(b.ci_high)}] "
                   f"| {V(b.verdict)} |")
    q = ", ".join(f"p{100 * x.level:g} {_fmt(x.value_s, ' s')} [{_fmt(x.ci_low_s)}, {_fmt(x.ci_high_s)}]"
                  for x in body.delay_quantiles)
    out += ["", f"End-to-end delay quantiles: {q or '-'}.", "",
            "| domain | d_i (s) | eps_i | packets | exceedances | rate | interval | verdict | share of violations |",
            "|---|---|---|---|---|---|---|---|---|"]
    for d in body.domains:
        out.append(f"| {d.domain_id} | {_fmt(d.delay_budget_s)} | {_fmt(d.epsilon)} | {d.packets} | {d.exceedances} | "
                   f"{_fmt(d.exceedance_rate)} | [{_fmt(d.exceedance_ci_low)}, {_fmt(d.exceedance_ci_high)}] | "
                   f"{V(d.verdict)} | {_fmt(d.tail_risk_share)} |")
    if body.unattributed_share:
        out.append(f"\nUnattributed share of the violations: {_fmt(body.unattributed_share)}.")
    out += ["", "## Findings", ""]
    out += [f"- {f}" for f in body.findings] or ["None."]
    return "\n".join(out) + "\n"
