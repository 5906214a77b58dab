"""``trefed audit``: the auditor, offline, over telemetry files.

``trefed audit TELEMETRY_DIR --contracts FILE --trust KEYS_DIR [--out DIR] [--key AUDITOR.key]``
verifies every telemetry batch in ``TELEMETRY_DIR`` (``packets.parquet`` and ``batches.parquet``,
see :mod:`federation.audit.parquet`) against the domains' public keys in ``KEYS_DIR``
(``NAME.pub``, trusted for domain ``NAME``), checks the hash chains and the agreement of adjacent
domains, and judges each contract of ``FILE`` (JSON: ``trefed.v1.ServiceContract`` objects in the
protobuf JSON mapping, one, a list, or ``{"contracts": [...]}``; the grants are verified too).

It writes to ``--out`` (default ``./audit``): ``report.json`` (every report, with the signed
bytes in base64), ``report.md``, and the signed reports as protobuf (``report.pb`` for one
contract; ``report-CONTRACT_ID.pb`` each when there are several), plus the auditor's public key
``AUDITOR.pub`` to verify them with. The auditor's key is ``--key`` (a ``NAME.key`` file from
``trefed keys new``; ``NAME`` is the auditor's id), or a fresh key of id ``auditor`` whose
private half is not kept.

Exit code 0: no violation found (every verdict COMPLIANT or, for lack of evidence, INCONCLUSIVE;
no finding against a domain); 1: a violation found and attributed (a VIOLATING verdict, or a
domain contradicted by its neighbour, an equivocation, a broken chain, vanished packets);
2: bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.cli.text import plain

__all__ = ["register", "run_audit"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``audit`` to the ``trefed`` parser."""
    parser = subparsers.add_parser(
        "audit",
        help="audit telemetry files against contracts: signed accountability reports",
        description=plain((__doc__ or "").split("\n\n", 1)[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("telemetry", metavar="TELEMETRY_DIR", type=Path, help="directory of packets/batches.parquet")
    parser.add_argument("--contracts", required=True, metavar="FILE", type=Path, help="contracts (JSON)")
    parser.add_argument("--trust", required=True, metavar="KEYS_DIR", type=Path, help="domains' NAME.pub files")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("audit"), help="where reports go (./audit)")
    parser.add_argument("--key", metavar="AUDITOR.key", type=Path, help="the auditor's key (default: a fresh one)")
    parser.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (0.95)")
    parser.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    """Run the offline audit, write the reports, print one line per contract; 0/1 as documented."""
    import json
    import re

    from trefed.v1 import telemetry_pb2

    from federation.audit.analysis import check_level
    from federation.audit.offline import audit_directory, load_contracts
    from federation.audit.report import report_document, report_to_markdown
    from federation.errors import InputError
    from federation.tre.keys import load_key_file, write_atomic
    from federation.tre.signing import SigningKey
    from federation.tre.trust import TrustStore

    level = check_level(args.confidence)
    if not args.telemetry.is_dir():
        raise InputError(f"{args.telemetry}: telemetry directory does not exist")
    contracts = load_contracts(args.contracts)
    trust = TrustStore.from_dir(args.trust)
    key = load_key_file(args.key) if args.key is not None else SigningKey.generate("auditor")
    result = audit_directory(args.telemetry, contracts, trust, key, confidence=level)
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create ({exc.strerror or exc})") from exc
    docs, md = [], []
    for signed in result.reports:
        body = telemetry_pb2.AccountabilityReportBody.FromString(signed.body)
        docs.append(report_document(signed))
        md.append(report_to_markdown(body))
        name = "report.pb" if len(result.reports) == 1 else f"report-{re.sub(r'[^A-Za-z0-9._-]', '_', body.contract_id)}.pb"
        write_atomic(out / name, signed.SerializeToString(), mode=0o644, overwrite=True)
        verdict = telemetry_pb2.Verdict.Name(body.end_to_end_verdict)
        blamed = [d.domain_id for d in body.domains if d.verdict == telemetry_pb2.VIOLATING]
        print(f"{body.contract_id}: end to end {verdict}; violating: {', '.join(blamed) or 'none'}; "
              f"{len(body.finding_details)} findings")
    write_atomic(out / "report.json", (json.dumps({"violation": result.violation, "rejected_batches": result.rejected,
                                                   "reports": docs}, indent=2) + "\n").encode(),
                 mode=0o644, overwrite=True)
    write_atomic(out / "report.md", "\n".join(md).encode(), mode=0o644, overwrite=True)
    write_atomic(out / f"{key.domain_id}.pub", key.public_pem(), mode=0o644, overwrite=True)
    print(f"wrote {out / 'report.json'}, {out / 'report.md'} and the signed reports; verify them with "
          f"{out / (key.domain_id + '.pub')}")
    return 1 if result.violation else 0
