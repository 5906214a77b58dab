"""``trefed tre``: write, sign, verify and show Tail-Risk Envelopes.

::

    trefed tre example --domain NAME [--kind network|compute] > NAME.yaml   # every field, units in comments
    trefed tre sign NAME.yaml --key KEYDIR/NAME.key --out NAME.tre         # binary protobuf
    trefed tre verify NAME.tre --trust TRUSTDIR [--json] [--now T]         # exit 0 valid, 1 invalid
    trefed tre show NAME.tre                                               # JSON

Exit codes: 0 success (``verify``: valid), 1 ``verify``: invalid (``invalid: REASON: detail``),
2 bad input (missing file, bad YAML, out-of-range field, key/domain mismatch), with a message
naming the file and the field. A trust directory holds ``NAME.pub`` files, each trusted for domain
``NAME`` only. ``verify`` keeps no replay state between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.cli.text import plain
from federation.errors import InputError, VerificationError

if TYPE_CHECKING:  # protobuf, yaml and cryptography are imported when a command runs
    from trefed.v1 import envelope_pb2

__all__ = ["parse_now", "register", "run_example", "run_show", "run_sign", "run_verify", "summary"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tre example|sign|verify|show`` to the ``trefed`` parser."""
    parser = subparsers.add_parser(
        "tre",
        help="write, sign, verify and show Tail-Risk Envelopes",
        description=plain((__doc__ or "").split("\n\n", 1)[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="tre_command", metavar="ACTION", required=True)

    ex = sub.add_parser("example", help="print a complete, valid envelope as commented YAML")
    ex.add_argument("--domain", required=True, metavar="NAME", help="the publishing domain id")
    ex.add_argument("--kind", choices=("network", "compute"), default="network",
                    help="network (link/slice) or compute (hosts models; adds model.inference); default network")
    ex.add_argument("--sequence", type=int, default=1, metavar="N", help="header.sequence, >= 1 (default 1)")
    ex.add_argument("--valid-for", type=float, default=30 * 86400.0, metavar="SECONDS",
                    help="validity from now, s (default 30 days)")
    ex.set_defaults(func=run_example)

    sg = sub.add_parser("sign", help="sign an envelope YAML file into binary protobuf")
    sg.add_argument("envelope", metavar="ENVELOPE.yaml", type=Path)
    sg.add_argument("--key", required=True, metavar="DIR/NAME.key", type=Path,
                    help="private key of domain NAME; the YAML's header.domain_id must be NAME")
    sg.add_argument("--out", required=True, metavar="FILE.tre", type=Path)
    sg.set_defaults(func=run_sign)

    vf = sub.add_parser("verify", help="verify a signed envelope against a trust directory")
    vf.add_argument("file", metavar="FILE.tre", type=Path)
    vf.add_argument("--trust", required=True, metavar="DIR", type=Path, help="directory of NAME.pub files")
    vf.add_argument("--json", action="store_true", help="print a JSON object instead of a line")
    vf.add_argument("--now", metavar="T", help="check validity at T: unix seconds or RFC 3339 (default: now)")
    vf.set_defaults(func=run_verify)

    sh = sub.add_parser("show", help="print a signed envelope as JSON (body decoded, not verified)")
    sh.add_argument("file", metavar="FILE.tre", type=Path)
    sh.set_defaults(func=run_show)


def parse_now(text: str | None) -> float | None:
    """``--now``: None, unix seconds (``1800000000.5``) or an RFC 3339 timestamp; returns unix seconds."""
    from federation.errors import FieldError
    from federation.tre.validate import parse_rfc3339

    if text is None:
        return None
    if re.fullmatch(r"[+-]?\d+(\.\d*)?", text.strip()):
        return float(text)
    try:
        ts = parse_rfc3339(text, "--now")
    except FieldError as exc:
        raise InputError(f"--now(={text!r}) must be unix seconds or an RFC 3339 timestamp") from exc
    return ts.seconds + ts.nanos / 1e9


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory ({what})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def summary(body: envelope_pb2.EnvelopeBody) -> str:
    """One line describing a verified envelope."""
    from trefed.v1 import envelope_pb2

    h, g, m = body.header, body.guardrails, body.model
    return (
        f"domain={h.domain_id} tre={h.tre_id} sequence={h.sequence} kind={envelope_pb2.DomainKind.Name(h.kind)} "
        f"key={h.key_id} valid {h.not_before.ToJsonString()} .. {h.not_after.ToJsonString()} "
        f"rate={m.rate_bps:g}bps capacity={g.reservable_capacity_bps:g}bps latency={m.latency_s:g}s "
        f"loss={m.loss_probability:g}"
    )


def run_example(args: argparse.Namespace) -> int:
    """Print the example envelope."""
    from federation.tre.yaml import example_envelope_yaml

    if args.sequence < 1:
        raise InputError(f"--sequence(={args.sequence}) must be >= 1")
    if not args.valid_for > 0:
        raise InputError(f"--valid-for(={args.valid_for}) must be > 0 seconds")
    print(example_envelope_yaml(args.domain, kind=args.kind, valid_for_s=args.valid_for, sequence=args.sequence), end="")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    """Sign ENVELOPE.yaml with NAME.key into FILE.tre."""
    from federation.tre.keys import load_key_file, write_atomic
    from federation.tre.signing import sign_envelope
    from federation.tre.yaml import load_envelope_yaml

    key = load_key_file(args.key)
    body = load_envelope_yaml(args.envelope)
    if body.header.domain_id != key.domain_id:
        raise InputError(
            f"{args.envelope}: header.domain_id(={body.header.domain_id!r}) does not match the key file "
            f"{args.key.name} (domain {key.domain_id!r})"
        )
    env = sign_envelope(body, key)
    write_atomic(args.out, env.SerializeToString(), mode=0o644, overwrite=True)
    h = body.header
    print(f"signed {h.domain_id} {h.tre_id} sequence {h.sequence} with key {key.key_id} -> {args.out}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify FILE.tre; exit 0 valid, 1 invalid."""
    from trefed.v1 import envelope_pb2

    from federation.tre.trust import TrustStore

    now = parse_now(args.now)
    data = _read(args.file, "signed envelope")
    store = TrustStore.from_dir(args.trust)
    try:
        body = store.verify_envelope(data, now=now)
    except VerificationError as exc:
        if args.json:
            print(json.dumps({"file": str(args.file), "valid": False, "reason": str(exc.reason), "detail": exc.detail}))
        else:
            print(f"invalid: {exc.reason}: {exc.detail}" if exc.detail else f"invalid: {exc.reason}")
        return 1
    if args.json:
        h = body.header
        print(json.dumps({
            "file": str(args.file),
            "valid": True,
            "reason": None,
            "detail": "",
            "domain_id": h.domain_id,
            "tre_id": h.tre_id,
            "sequence": h.sequence,
            "kind": envelope_pb2.DomainKind.Name(h.kind),
            "key_id": h.key_id,
            "issued_at": h.issued_at.ToJsonString(),
            "not_before": h.not_before.ToJsonString(),
            "not_after": h.not_after.ToJsonString(),
            "body_sha256": hashlib.sha256(envelope_pb2.TailRiskEnvelope.FromString(data).body).hexdigest(),
        }))
    else:
        print(f"valid: {summary(body)}")
    return 0


def _to_json(msg: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def run_show(args: argparse.Namespace) -> int:
    """Print FILE.tre as JSON with the body decoded (no verification)."""
    from google.protobuf.message import DecodeError
    from trefed.v1 import envelope_pb2

    data = _read(args.file, "signed envelope")
    try:
        env = envelope_pb2.TailRiskEnvelope.FromString(data)
        body = envelope_pb2.EnvelopeBody.FromString(env.body)
    except DecodeError as exc:
        raise InputError(f"{args.file}: not a signed envelope (trefed.v1.TailRiskEnvelope): {exc}") from exc
    out = {
        "body": _to_json(body),
        "body_sha256": hashlib.sha256(env.body).hexdigest(),
        "signature": _to_json(env.signature),
    }
    print(json.dumps(out, indent=2))
    return 0
