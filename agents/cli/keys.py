"""``trefed keys``: Ed25519 key files of a domain.

``trefed keys new --domain NAME --out DIR`` writes ``DIR/NAME.key`` (private, PEM, mode 0600) and
``DIR/NAME.pub`` (public, PEM). Copy ``NAME.pub`` into the trust directory of every verifier;
there it is trusted for domain ``NAME`` only. ``trefed keys id FILE`` prints the key id of a
``NAME.key`` or ``NAME.pub`` file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.cli.text import plain
from federation.errors import InputError

__all__ = ["register", "run_id", "run_new"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``keys new`` and ``keys id`` to the ``trefed`` parser."""
    parser = subparsers.add_parser(
        "keys",
        help="create and inspect Ed25519 key files of a domain",
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
