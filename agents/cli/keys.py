"""``trefed keys``: Ed25519 key files of a domain, and the federation's TLS certificates.

``trefed keys new --domain NAME --out DIR`` writes ``DIR/NAME.key`` (private, PEM, mode 0600) and
``DIR/NAME.pub`` (public, PEM). Copy ``NAME.pub`` into the trust directory of every verifier;
there it is trusted for domain ``NAME`` only. ``trefed keys id FILE`` prints the key id of a
``NAME.key`` or ``NAME.pub`` file.

``trefed keys ca --out DIR`` makes a federation CA: ``DIR/ca.crt`` and ``DIR/ca.key`` (0600).
``trefed keys issue --ca DIR --role ROLE --id NAME [--out DIR2]`` issues the certificate of
``trefed://ROLE/NAME`` (role broker, domain, tenant, auditor or operator): ``DIR2/ROLE-NAME.crt``
and ``DIR2/ROLE-NAME.key`` (0600), with ``ca.crt`` copied beside them. Agents talk mutual TLS with
these; the identity a server authorises is the certificate's, never a request field.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.cli.text import plain
from federation.errors import InputError

__all__ = ["register", "run_ca", "run_id", "run_issue", "run_new"]

ROLES = ("broker", "domain", "tenant", "auditor", "operator")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``keys new`` and ``keys id`` to the ``trefed`` parser."""
    parser = subparsers.add_parser(
        "keys",
        help="create and inspect Ed25519 key files of a domain; the federation CA and agent certificates",
        description=plain((__doc__ or "").split("\n\n", 1)[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="generate DIR/NAME.key (0600) and DIR/NAME.pub")
    new.add_argument("--domain", required=True, metavar="NAME", help="domain id; also the file name")
    new.add_argument("--out", required=True, metavar="DIR", type=Path, help="directory (created if missing)")
    new.add_argument("--force", action="store_true", help="replace existing key files")
    new.set_defaults(func=run_new)
    ident = sub.add_parser("id", help="print the key id of a NAME.key or NAME.pub file")
    ident.add_argument("file", metavar="FILE", type=Path)
    ident.set_defaults(func=run_id)
    ca = sub.add_parser("ca", help="make a federation CA: DIR/ca.crt and DIR/ca.key (0600)")
    ca.add_argument("--out", required=True, metavar="DIR", type=Path, help="directory (created if missing)")
    ca.add_argument("--force", action="store_true", help="replace an existing CA")
    ca.set_defaults(func=run_ca)
    issue = sub.add_parser("issue", help="issue the TLS certificate of trefed://ROLE/NAME from a CA")
    issue.add_argument("--ca", required=True, metavar="DIR", type=Path, help="directory with ca.crt and ca.key")
    issue.add_argument("--role", required=True, choices=ROLES, help="the agent's role")
    issue.add_argument("--id", required=True, metavar="NAME", help="the agent's id (domain id, tenant id, ...)")
    issue.add_argument("--out", metavar="DIR", type=Path, default=None, help="directory (default: the CA's)")
    issue.add_argument("--days", type=int, default=365, help="validity, days (default 365)")
    issue.add_argument("--force", action="store_true", help="replace existing files")
    issue.set_defaults(func=run_issue)


def run_new(args: argparse.Namespace) -> int:
    """Write the key pair; print where it went and the key id."""
    from federation.tre.keys import write_key_pair

    files = write_key_pair(args.domain, args.out, force=args.force)
    print(f"wrote {files.key_path} (private, mode 0600) and {files.pub_path}")
    print(f"key id {files.key_id}; trust it by copying {files.pub_path.name} into a trust directory")
    return 0


def run_id(args: argparse.Namespace) -> int:
    """Print the key id of a key file."""
    from federation.tre.keys import load_key_file
    from federation.tre.signing import key_id_for, load_public_key
    from federation.tre.validate import DOMAIN_ID_PATTERN

    path: Path = args.file
    if path.suffix == ".key":
        print(load_key_file(path).key_id)
        return 0
    if path.suffix != ".pub":
        raise InputError(f"{path}: expected a NAME.key or NAME.pub file")
    name = path.name[: -len(".pub")]
    if not DOMAIN_ID_PATTERN.fullmatch(name):
        raise InputError(f"{path}: file name {name!r} is not a valid domain id")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    print(key_id_for(name, load_public_key(data, str(path))))
    return 0


def run_ca(args: argparse.Namespace) -> int:
    """Make a federation CA; print where it went."""
    from federation.tre.ca import CertificateAuthority

    cert, key = CertificateAuthority.create().write(args.out, force=args.force)
    print(f"wrote {cert} (the CA every agent trusts) and {key} (private, mode 0600: it issues certificates)")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    """Issue an agent's certificate; print where it went and the identity it names."""
    from federation.tre.ca import CA_CERT_FILE, load_ca, write_credentials
    from federation.tre.keys import write_atomic

    ca = load_ca(args.ca)
    creds = ca.issue(args.role, args.id, validity_days=args.days)
    out: Path = args.out if args.out is not None else args.ca
    cert, key = write_credentials(creds, out, force=args.force)
    if (out / CA_CERT_FILE).resolve() != (args.ca / CA_CERT_FILE).resolve():
        write_atomic(out / CA_CERT_FILE, creds.ca_pem, mode=0o644, overwrite=True)
    print(f"wrote {cert} and {key} (private, mode 0600) for {creds.identity.uri}")
    return 0
