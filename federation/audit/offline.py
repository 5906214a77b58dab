"""The offline audit: a telemetry directory, a contracts file and a trust store in, signed reports out.

What ``trefed audit`` runs. The **contracts file** is JSON, the protobuf JSON mapping
(``google.protobuf.json_format``) of ``trefed.v1.ServiceContract`` (bytes fields such as the
grants' ``body`` and ``signature`` in base64): one contract object, a list of them, or
``{"contracts": [...]}``. :func:`dump_contracts` writes that format.

The batches of the directory (:func:`federation.audit.parquet.read_batches`) are submitted to an
:class:`~federation.audit.ledger.AuditLedger` in the order of their ``batch_index``, exactly as
the live auditor receives them, and every contract gets its signed report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format
from trefed.v1 import services_pb2, telemetry_pb2

from federation.audit.ledger import AuditLedger
from federation.audit.parquet import read_batches
from federation.audit.report import violation_found
from federation.errors import InputError, VerificationError
from federation.tre.signing import SigningKey
from federation.tre.trust import TrustStore

__all__ = ["load_contracts", "dump_contracts", "OfflineAudit", "audit_directory"]


def load_contracts(path: str | Path) -> list[services_pb2.ServiceContract]:
    """The contracts of a contracts file (see the module docstring).

    Raises
    ------
    InputError
        Unreadable file, not JSON, no contract, or a contract that does not parse (names its index
        and the field).
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p}: no such contracts file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not JSON ({exc})") from exc
    items = doc.get("contracts") if isinstance(doc, dict) and "contracts" in doc else doc
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list) or not items:
        raise InputError(f"{p}: expected a ServiceContract object, a list of them or {{\"contracts\": [...]}}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(json_format.ParseDict(item, services_pb2.ServiceContract()))
        except (json_format.ParseError, TypeError, AttributeError) as exc:
            raise InputError(f"{p}: contracts[{i}]: {exc}") from exc
    return out


def dump_contracts(contracts: Sequence[services_pb2.ServiceContract]) -> str:
    """``{"contracts": [...]}`` in the format :func:`load_contracts` reads."""
    return json.dumps({"contracts": [json_format.MessageToDict(c, preserving_proto_field_name=True)
                                     for c in contracts]}, indent=2)


@dataclass(frozen=True)
class OfflineAudit:
    """The signed reports (contract order of the file) and whether any found a violation."""

    reports: tuple[telemetry_pb2.SignedAccountabilityReport, ...]
    violation: bool
    rejected: int


def audit_directory(
    telemetry_dir: str | Path,
    contracts: Sequence[services_pb2.ServiceContract],
    trust: TrustStore,
    key: SigningKey,
    *,
    confidence: float = 0.95,
    clock: Callable[[], float] = time.time,
) -> OfflineAudit:
    """Audit the batches of ``telemetry_dir`` against ``contracts``; ``key`` signs the reports.

    Raises
    ------
    InputError
        Bad telemetry files, or a contract that does not verify (the message names it).
    """
    ledger = AuditLedger(trust, key, auditor_id=key.domain_id, clock=clock)
    for c in contracts:
        try:
            ledger.add_contract(c)
        except VerificationError as exc:
            raise InputError(f"contract {c.contract_id!r} does not verify: {exc}") from exc
    responses = ledger.submit_all(read_batches(telemetry_dir))
    reports = tuple(ledger.report(c.contract_id, confidence) for c in contracts)
    bodies = [telemetry_pb2.AccountabilityReportBody.FromString(r.body) for r in reports]
    return OfflineAudit(reports, any(violation_found(b) for b in bodies),
                        sum(not r.accepted for r in responses))
