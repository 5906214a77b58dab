"""The auditor's state: committed contracts, every domain's verified telemetry chain, the findings;
and the signed accountability report of a contract over what it has received.

:class:`AuditLedger` is the pure core the auditor agent (``agents/auditor``) serves over gRPC
and ``trefed audit`` runs offline over Parquet files. It never raises for a bad batch: a
rejected batch is answered ``accepted=False`` with the finding as the reason, and the finding is
kept for the reports.

Checks of a submitted batch, in order: the signature and the key's binding to the domain the
body claims (:meth:`federation.tre.trust.TrustStore.verify`; a bad signature is a *tampered*
batch, an unknown key or one bound to another domain a *wrong-key* batch), the body's rules
(:func:`federation.audit.batches.validate_batch`), then the domain's hash chain
(:class:`federation.audit.chain.DomainChain`: replay, equivocation, broken chain, reorder, gap).
The report runs :func:`federation.audit.analysis.analyse` on the contract's path. A tenant may
report its own receipts as a chain under its own id (its key trusted for the tenant id; rows:
``ingress_s`` = arrival at the tenant): they witness the last domain's egress.

Findings are bounded per domain and kind (:class:`federation.audit.chain.FindingLog`: the first
20 in full, the rest counted in one summary finding), so a flood of bad batches costs the
auditor a counter and its reports stay small; the verdicts see every kind found.

Thread-safe: one lock guards the state (the agent may serve calls from several threads).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from trefed.v1 import reservation_pb2, services_pb2, telemetry_pb2

from federation.audit.analysis import Analysis, ContractTerms, DomainTerms, analyse, check_level, observe
from federation.audit.batches import claimed_domain, validate_batch
from federation.audit.chain import DomainChain, Finding, FindingKind, FindingLog
from federation.audit.report import report_body, sign_report
from federation.errors import InputError, NotFoundError, VerificationError
from federation.tre.signing import Reason, SigningKey
from federation.tre.trust import TrustStore
from federation.tre.validate import validate_grant

__all__ = ["AuditLedger", "contract_terms"]

_KIND_OF_REASON: dict[str, FindingKind] = {
    Reason.BAD_SIGNATURE: FindingKind.TAMPERED,
    Reason.UNKNOWN_KEY: FindingKind.WRONG_KEY,
    Reason.KEY_DOMAIN_MISMATCH: FindingKind.WRONG_KEY,
}

#: Relative tolerance between a grant's sub-budget and the offer's.
_REL = 1e-9


def contract_terms(contract: services_pb2.ServiceContract, trust: TrustStore) -> ContractTerms:
    """The terms of ``contract``, from its grants, each verified against ``trust``.

    A grant is checked like any signed object (signature, canonical body, key bound to the
    granting domain, ranges) but not against the clock: an audit may come after the grant
    lapsed, and the grant was the domain's word while it held. Each grant must come from its
    path position's domain, for the contract's tenant, with the offer's ``(d_i, eps_i)``.

    Raises
    ------
    InputError
        A missing id, a path and grants that do not match, a bound without a deadline.
    VerificationError
        A grant fails verification.
    """
    if not contract.contract_id:
        raise InputError("contract_id must be set")
    if not contract.tenant_id:
        raise InputError(f"contract {contract.contract_id!r}: tenant_id must be set")
    offer = contract.offer
    path = list(offer.path)
    where = f"contract {contract.contract_id!r}"
    if not path:
        raise InputError(f"{where}: offer.path is empty")
    if len(contract.grants) != len(path) or len(offer.budgets) != len(path):
        raise InputError(f"{where}: {len(contract.grants)} grants and {len(offer.budgets)} budgets for a path of "
                         f"{len(path)} domains")
    b = offer.bound
    if not (b.delay_s > 0 and math.isfinite(b.delay_s)):
        raise InputError(f"{where}: offer.bound.delay_s(={b.delay_s!r}) must be > 0")
    for name in ("epsilon_delay", "loss_probability", "error_probability", "epsilon_total"):
        v = getattr(b, name)
        if not 0.0 <= v <= 1.0:
            raise InputError(f"{where}: offer.bound.{name}(={v!r}) must be in [0, 1]")
    domains = []
    for i, (d, grant, budget) in enumerate(zip(path, contract.grants, offer.budgets)):
        try:
            g = trust.verify(grant, reservation_pb2.GrantBody, domain_of=lambda x: x.domain_id, validate=validate_grant)
        except VerificationError as exc:
            raise VerificationError(exc.reason, f"{where}: grants[{i}] ({d!r}): {exc.detail}") from exc
        if g.domain_id != d:
            raise InputError(f"{where}: grants[{i}] is from {g.domain_id!r}, offer.path[{i}] is {d!r}")
        if g.tenant_id != contract.tenant_id:
            raise InputError(f"{where}: grants[{i}].tenant_id(={g.tenant_id!r}) is not the contract's "
                             f"{contract.tenant_id!r}")
        for gn, bn in (("delay_budget_s", "delay_s"), ("epsilon", "epsilon")):
            gv, bv = getattr(g, gn), getattr(budget, bn)
            if not math.isclose(gv, bv, rel_tol=_REL, abs_tol=0.0):
                raise InputError(f"{where}: grants[{i}].{gn}(={gv!r}) differs from offer.budgets[{i}].{bn}(={bv!r})")
        domains.append(DomainTerms(d, float(g.delay_budget_s), float(g.epsilon)))
    return ContractTerms(contract.contract_id, contract.tenant_id, tuple(domains), float(b.delay_s),
                         float(b.epsilon_delay), float(b.loss_probability), float(b.error_probability),
                         float(b.epsilon_total))


class AuditLedger:
    """Contracts, verified telemetry chains and findings; signs accountability reports.

    Parameters
    ----------
    trust
        The domains' public keys (telemetry and grants are verified against it).
    key
        The auditor's signing key; its ``domain_id`` must be ``auditor_id``.
    auditor_id
        The auditor's identity, put in every report (verifiers trust ``key`` for it).
    clock
        Unix time, s (``issued_at`` of the reports).
    link_delay_s
        Optional delay of the link between two adjacent domains, s, keyed ``(upstream, downstream)``;
        default 0 (the data plane counts propagation inside each domain's sojourn).
    tolerance_s
        Largest disagreement between adjacent domains' times that is not a contradiction, s, >= 0.

    Raises
    ------
    InputError
        ``key`` signs for another identity than ``auditor_id``, or a bad tolerance.
    """

    def __init__(self, trust: TrustStore, key: SigningKey, *, auditor_id: str,
                 clock: Callable[[], float] = time.time,
                 link_delay_s: dict[tuple[str, str], float] | None = None, tolerance_s: float = 1e-6) -> None:
        if key.domain_id != auditor_id:
            raise InputError(f"auditor_id(={auditor_id!r}) is not the signing key's identity {key.domain_id!r}")
        if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
            raise InputError(f"tolerance_s(={tolerance_s!r}) must be finite and >= 0")
        self.trust = trust
        self.key = key
        self.auditor_id = auditor_id
        self.clock = clock
        self.link_delay_s = dict(link_delay_s or {})
        self.tolerance_s = float(tolerance_s)
        self._lock = threading.Lock()
        self._contracts: dict[str, ContractTerms] = {}
        self._chains: dict[str, DomainChain] = {}
        self._rejected: dict[str, FindingLog] = {}  # claimed domain -> batches rejected before the chain
        self._reports: dict[str, int] = {}

    # ------------------------------------------------------------------ inputs

    def add_contract(self, contract: services_pb2.ServiceContract) -> None:
        """Audit ``contract`` (re-adding the same id replaces it); its grants are verified.

        Raises
        ------
        InputError, VerificationError
            See :func:`contract_terms`.
        """
        terms = contract_terms(contract, self.trust)
        with self._lock:
            self._contracts[terms.contract_id] = terms

    def submit(self, signed: telemetry_pb2.SignedTelemetryBatch) -> services_pb2.SubmitTelemetryResponse:
        """Take a signed telemetry batch; never raises for a bad one (``accepted=False``, the finding as reason)."""
        try:
            body = self.trust.verify(signed, telemetry_pb2.TelemetryBatchBody,
                                     domain_of=lambda b: b.domain_id, validate=validate_batch)
        except VerificationError as exc:
            claimed, seq = claimed_domain(signed) if isinstance(signed, telemetry_pb2.SignedTelemetryBatch) else ("", 0)
            finding = Finding(_KIND_OF_REASON.get(exc.reason, FindingKind.MALFORMED), claimed,
                              f"batch {seq} rejected: {exc}", seq)
            with self._lock:
                log = self._rejected.get(claimed)
                if log is None:
                    log = self._rejected[claimed] = FindingLog(claimed)
                log.append(finding)
                total = self._chains[claimed].packets if claimed in self._chains else 0
            return services_pb2.SubmitTelemetryResponse(accepted=False, reason=finding.sentence(), packets_total=total)
        with self._lock:
            chain = self._chains.setdefault(body.domain_id, DomainChain(body.domain_id))
            ok, reason = chain.offer(body, signed.body)
            return services_pb2.SubmitTelemetryResponse(accepted=ok, reason=reason, packets_total=chain.packets)

    def submit_all(self, batches: Sequence[telemetry_pb2.SignedTelemetryBatch]) -> list[services_pb2.SubmitTelemetryResponse]:
        """:meth:`submit` each batch in order."""
        return [self.submit(b) for b in batches]

    # ------------------------------------------------------------------ outputs

    def contract_ids(self) -> list[str]:
        """The contracts under audit, sorted."""
        with self._lock:
            return sorted(self._contracts)

    def findings(self, domain_id: str) -> list[Finding]:
        """Every finding about ``domain_id``'s telemetry so far (rejections, chain, gaps; beyond 20 of a
        kind, one summary finding with the count: :class:`~federation.audit.chain.FindingLog`)."""
        with self._lock:
            chain = self._chains.get(domain_id)
            out = list(self._rejected.get(domain_id, ()))
            if chain is not None:
                out += [*chain.findings, *chain.gaps()]
        return out

    def analysis(self, contract_id: str, confidence: float = 0.95) -> Analysis:
        """The analysis behind :meth:`report` (unsigned values).

        Raises
        ------
        NotFoundError
            ``contract_id`` was never added.
        InputError
            ``confidence`` not in (0, 1).
        """
        level = check_level(confidence)
        with self._lock:
            terms = self._contracts.get(contract_id)
            if terms is None:
                raise NotFoundError(f"contract {contract_id!r} is not under audit")
            ids = [d.domain_id for d in terms.domains]
            observed = []
            for d in ids:
                chain = self._chains.get(d)
                observed.append(observe(chain.batches(), terms.tenant_id) if chain is not None else None)
            receipts = self._chains.get(terms.tenant_id)
            receiver = observe(receipts.batches(), terms.tenant_id) if receipts is not None else None
        chain_findings = [f for d in [*ids, terms.tenant_id] for f in self.findings(d)]
        links = [self.link_delay_s.get((a, b), 0.0) for a, b in zip(ids, ids[1:])]
        return analyse(terms, observed, level, receiver=receiver, chain_findings=chain_findings, link_delay_s=links,
                       tolerance_s=self.tolerance_s)

    def report(self, contract_id: str, confidence: float = 0.95) -> telemetry_pb2.SignedAccountabilityReport:
        """The signed accountability report of ``contract_id`` over the telemetry received so far.

        ``report_id`` is ``CONTRACT_ID/N`` for the ``N``-th report of the contract; the errors are
        :meth:`analysis`'s (:class:`NotFoundError` for an unknown contract).
        """
        analysis = self.analysis(contract_id, confidence)
        with self._lock:
            n = self._reports[contract_id] = self._reports.get(contract_id, 0) + 1
        body = report_body(analysis, report_id=f"{contract_id}/{n}", auditor_id=self.auditor_id,
                           issued_at=self.clock())
        return sign_report(body, self.key)
