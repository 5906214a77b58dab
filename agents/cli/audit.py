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

Exit code 0: no violation found (every verdict COMPLIANT or, for lack of evidence alone,
INCONCLUSIVE, which is printed; no finding but reorders and replays); 1: a violation found and
attributed (a VIOLATING verdict, or a finding naming a domain: missing telemetry, a gap, a tampered
or wrongly signed batch, an equivocation, a broken chain, vanished packets, a domain contradicted
by its neighbour); 2: bad input.

``trefed audit-demo OUT [--impair DOMAIN=SECONDS] [--lie DOMAIN=SECONDS] [--packets N] [--seed S]``
writes something to audit: a simulated path of three M/M/1 domains (``access``, ``transport``,
``cloud``; service rate 1 packet/s, Poisson 0.5 packets/s), one signed contract holding each domain to
``(d_i, eps_i) = (ln 400 / 0.5 s, 0.01)`` (true exceedance ``eps_i / 4``), and each domain's signed,
hash-chained telemetry: ``OUT/telemetry/``, ``OUT/contracts.json``, ``OUT/keys/NAME.pub``. ``--impair``
makes a domain delay every packet by SECONDS more; ``--lie`` makes it report its egress SECONDS early.
It prints the ``trefed audit`` command that audits it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.cli.text import plain

__all__ = ["register", "run_audit", "run_audit_demo"]


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

    demo = subparsers.add_parser(
        "audit-demo",
        help="write a simulated, signed run to audit (telemetry, contract, keys), impaired or lying if asked",
        description=plain((__doc__ or "").rsplit("\n\n", 1)[1]),
    )
    demo.add_argument("out", metavar="OUT", type=Path, help="directory to write (created)")
    demo.add_argument("--impair", metavar="DOMAIN=SECONDS", help="a domain that delays every packet by SECONDS")
    demo.add_argument("--lie", metavar="DOMAIN=SECONDS", help="a domain that reports its egress SECONDS early")
    demo.add_argument("--packets", type=int, default=20_000, help="packets of the tenant (default 20000)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.set_defaults(func=run_audit_demo)


_DEMO_DOMAINS = ("access", "transport", "cloud")


def _domain_and_seconds(flag: str, value: str | None) -> tuple[int, float] | None:
    """``DOMAIN=SECONDS`` as (index of the domain on the demo path, seconds > 0)."""
    import math

    from federation.errors import InputError

    if value is None:
        return None
    name, sep, seconds = value.partition("=")
    if not sep or name not in _DEMO_DOMAINS:
        raise InputError(f"{flag}(={value!r}): must be DOMAIN=SECONDS with DOMAIN one of {', '.join(_DEMO_DOMAINS)}")
    try:
        x = float(seconds)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        raise InputError(f"{flag}(={value!r}): SECONDS must be a finite number > 0")
    return _DEMO_DOMAINS.index(name), x


def run_audit_demo(args: argparse.Namespace) -> int:
    """Write the demo run of the module docstring to ``args.out``; print how to audit it."""
    from federation.audit.offline import dump_contracts
    from federation.audit.parquet import write_batches
    from federation.audit.scenario import audited_run
    from federation.errors import InputError
    from federation.tre.keys import write_atomic

    impair = _domain_and_seconds("--impair", args.impair)
    lie = _domain_and_seconds("--lie", args.lie)
    if not 1_000 <= args.packets <= 10_000_000:
        raise InputError(f"--packets(={args.packets}) must be in [1000, 10000000]")
    run = audited_run(domain_ids=_DEMO_DOMAINS, packets=args.packets, seed=args.seed, extra_delay=impair, liar=lie)
    out: Path = args.out
    try:
        (out / "keys").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create ({exc.strerror or exc})") from exc
    write_batches(run.all_batches(), out / "telemetry")
    for k in run.keys:
        write_atomic(out / "keys" / f"{k.domain_id}.pub", k.public_pem(), mode=0o644, overwrite=True)
    write_atomic(out / "contracts.json", dump_contracts([run.contract]).encode(), mode=0o644, overwrite=True)
    print(f"wrote {out / 'telemetry'}, {out / 'contracts.json'} and {out / 'keys'}; audit it with:\n"
          f"  trefed audit {out / 'telemetry'} --contracts {out / 'contracts.json'} --trust {out / 'keys'} "
          f"--out {out / 'audit'}")
    return 0


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
        unsure = [d.domain_id for d in body.domains if d.verdict == telemetry_pb2.INCONCLUSIVE]
        print(f"{body.contract_id}: end to end {verdict}; violating: {', '.join(blamed) or 'none'}; "
              f"inconclusive: {', '.join(unsure) or 'none'}; {len(body.finding_details)} findings")
        for f in body.findings:
            print(f"  {f}")
    write_atomic(out / "report.json", (json.dumps({"violation": result.violation, "rejected_batches": result.rejected,
                                                   "reports": docs}, indent=2) + "\n").encode(),
                 mode=0o644, overwrite=True)
    write_atomic(out / "report.md", "\n".join(md).encode(), mode=0o644, overwrite=True)
    write_atomic(out / f"{key.domain_id}.pub", key.public_pem(), mode=0o644, overwrite=True)
    print(f"wrote {out / 'report.json'}, {out / 'report.md'} and the signed reports; verify them with "
          f"{out / (key.domain_id + '.pub')}")
    return 1 if result.violation else 0
