"""Key files of a domain: ``DIR/NAME.key`` (private, PEM, mode 0600) and ``DIR/NAME.pub`` (public, PEM).

The file name is the domain: ``NAME.key`` signs for domain ``NAME`` and ``NAME.pub`` in a trust
directory is trusted for domain ``NAME`` only (:meth:`federation.tre.trust.TrustStore.from_dir`). Key
ids are derived from the key (:func:`federation.tre.signing.key_id_for`), so both sides agree without
storing them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from federation.errors import InputError
from federation.tre.signing import SigningKey, check_domain_id

__all__ = ["KeyFiles", "load_key_file", "write_atomic", "write_key_pair"]


@dataclass(frozen=True)
class KeyFiles:
    """Where :func:`write_key_pair` put a key pair.

    Attributes
    ----------
    key_path
        The private key, PKCS#8 PEM, mode 0600.
    pub_path
        The public key, SubjectPublicKeyInfo PEM.
    key_id
        The key id signatures carry (``NAME-`` + 16 hex digits).
    """

    key_path: Path
    pub_path: Path
    key_id: str


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically, with permission ``mode`` from the first byte on.

    The data go to a temporary file created with ``mode`` in the same directory, which then
    replaces ``path`` atomically.

    Raises
    ------
    InputError
        If ``path`` exists and not ``overwrite``, or it cannot be written (names the file).
    """
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (use --force to replace it)")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits; we want exactly `mode`
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def write_key_pair(domain: str, out_dir: str | Path, *, force: bool = False) -> KeyFiles:
    """Generate an Ed25519 key for ``domain`` and write ``out_dir/NAME.key`` and ``out_dir/NAME.pub``.

    Parameters
    ----------
    domain
        The domain id (the file name ``NAME``).
    out_dir
        Directory, created if missing.
    force
        Replace existing files; otherwise an existing ``NAME.key`` or ``NAME.pub`` is an error.

    Raises
    ------
    InputError
        Bad domain id, existing files, or an unwritable directory.
    """
    check_domain_id(domain, "--domain")
    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{directory}: cannot create directory ({exc.strerror or exc})") from exc
    key_path, pub_path = directory / f"{domain}.key", directory / f"{domain}.pub"
    if not force:
        for p in (key_path, pub_path):
            if p.exists():
                raise InputError(f"{p}: already exists (use --force to replace it)")
    key = SigningKey.generate(domain)
    write_atomic(key_path, key.private_pem(), mode=0o600, overwrite=True)
    write_atomic(pub_path, key.public_pem(), mode=0o644, overwrite=True)
    return KeyFiles(key_path, pub_path, key.key_id)


def load_key_file(path: str | Path) -> SigningKey:
    """Load ``NAME.key``: the signing key of domain ``NAME`` with its default key id.

    Raises
    ------
    InputError
        Missing or unreadable file, a name that is not ``NAME.key`` with a valid domain id, or
        content that is not an unencrypted Ed25519 private key in PEM (names the file).
    """
    p = Path(path)
    if p.suffix != ".key":
        raise InputError(f"{p}: a private key file must be named NAME.key (NAME is the domain)")
    domain = p.name[: -len(".key")]
    try:
        check_domain_id(domain, f"{p}: domain (file name)")
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    try:
        return SigningKey.from_pem(data, domain)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from exc
