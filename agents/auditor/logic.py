"""The logic of the auditor agent, without sockets: ``SubmitTelemetry`` and ``GetReport`` over an
audit ledger, with the contracts learnt from the broker.

:class:`Auditor` takes and returns ``trefed.v1`` messages and raises the :mod:`agents.errors`
classes, so the gRPC servicer in :mod:`agents.auditor.servicer` only forwards calls; unit tests
drive it with a ledger and a contract source in-process.

Rules
-----
* **SubmitTelemetry** hands the signed batch to the ledger, which verifies it (signature by the
  reporting domain's key, hash chain, sequence) and answers ``accepted=False`` with the finding
  as ``reason`` for a bad batch: a tampered or replayed batch is an answer, not an error.
* **GetReport** needs the contract. The auditor learns it from the broker on the first report
  asked for it (``Broker.GetContract``), hands it to the ledger, which verifies every grant
  against the domains' keys, and keeps it. Pulling at report time rather than having the
  broker push at admission keeps the broker unaware of the auditor (the admission path gains
  no call that could fail) and telemetry needs no contract: batches name tenants, not
  contracts. A contract is fetched once; a released contract is still reported on.
* **Errors.** Empty ``contract_id``, or ``confidence`` not 0 (meaning 0.95) and not in (0, 1)
  -> INVALID_ARGUMENT naming the field. A contract the broker does not know -> NOT_FOUND; one
  the ledger does not know -> NOT_FOUND (``federation.errors.NotFoundError``). A contract whose
  grants fail verification, or that the ledger refuses -> FAILED_PRECONDITION naming the
  contract. The broker unreachable -> UNAVAILABLE. Never INTERNAL for any of these.
* **Threads.** The analysis behind a report takes about 0.3 s per 10^5 packet rows; it runs in a
  worker thread (the ledger is thread-safe), so batches keep being accepted meanwhile.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

from trefed.v1 import services_pb2, telemetry_pb2

from agents.errors import FailedPrecondition, invalid_argument
from federation.errors import InputError, VerificationError

__all__ = ["DEFAULT_CONFIDENCE", "Auditor", "AuditLedgerLike", "ContractSource"]

#: Confidence level of a report's intervals when the request leaves it 0.
DEFAULT_CONFIDENCE = 0.95


class AuditLedgerLike(Protocol):
    """What the auditor needs of its ledger (:class:`federation.audit.ledger.AuditLedger`); its
    methods must be safe to call from several threads."""

    def add_contract(self, contract: services_pb2.ServiceContract) -> None: ...

    def submit(self, signed: telemetry_pb2.SignedTelemetryBatch) -> services_pb2.SubmitTelemetryResponse: ...

    def report(self, contract_id: str, confidence: float = DEFAULT_CONFIDENCE
               ) -> telemetry_pb2.SignedAccountabilityReport: ...


class ContractSource(Protocol):
    """Where contracts come from (the broker). ``get_contract`` raises
    :class:`~agents.errors.NotFound` for an unknown id and :class:`~agents.errors.Unavailable`
    when the source cannot be reached."""

    async def get_contract(self, contract_id: str) -> services_pb2.ServiceContract: ...

    async def close(self) -> None: ...


class Auditor:
    """``trefed.v1.Auditor`` over a ledger and a contract source (see the module docstring).

    Parameters
    ----------
    ledger : AuditLedgerLike
        Verifies and keeps telemetry and contracts, and signs reports.
    contracts : ContractSource
        Where an unknown contract is fetched from.
    """

    def __init__(self, ledger: AuditLedgerLike, contracts: ContractSource) -> None:
        self.ledger = ledger
        self.contracts = contracts
        self.known: set[str] = set()
        """Ids of the contracts handed to the ledger."""
        self.batches_accepted = 0
        self.batches_rejected = 0
        self.reports_signed = 0

    def submit(self, signed: telemetry_pb2.SignedTelemetryBatch) -> services_pb2.SubmitTelemetryResponse:
        """``SubmitTelemetry``: the ledger's answer (``accepted``, or not with the finding)."""
        response = self.ledger.submit(signed)
        if response.accepted:
            self.batches_accepted += 1
        else:
            self.batches_rejected += 1
        return response

    async def learn(self, contract_id: str) -> None:
        """Fetch ``contract_id`` from the contract source and hand it to the ledger, unless known.

        Raises
        ------
        NotFound, Unavailable
            From the contract source.
        FailedPrecondition
            The contract fails verification or the ledger refuses it (names the contract).
        """
        if contract_id in self.known:
            return
        contract = await self.contracts.get_contract(contract_id)
        if contract.contract_id != contract_id:
            raise FailedPrecondition(
                f"contract {contract_id!r}: the broker answered contract {contract.contract_id!r}")
        if contract_id in self.known:  # learnt by a concurrent call while this one waited
            return
        try:
            self.ledger.add_contract(contract)
        except (VerificationError, InputError) as exc:
            raise FailedPrecondition(f"contract {contract_id!r} from the broker is refused: {exc}") from exc
        self.known.add(contract_id)

    async def report(self, request: services_pb2.ReportRequest) -> telemetry_pb2.SignedAccountabilityReport:
        """``GetReport``: the signed report of ``request.contract_id`` over the telemetry so far."""
        contract_id = request.contract_id
        if not contract_id:
            raise invalid_argument("contract_id", contract_id, "must not be empty")
        confidence = request.confidence or DEFAULT_CONFIDENCE
        if not (math.isfinite(confidence) and 0.0 < confidence < 1.0):
            raise invalid_argument("confidence", request.confidence, "must be 0 (meaning 0.95) or in (0, 1)")
        await self.learn(contract_id)
        report = await asyncio.to_thread(self.ledger.report, contract_id, confidence)
        self.reports_signed += 1
        return report
