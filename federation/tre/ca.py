"""The federation's certificate authority: X.509 certificates that say who an agent is.

Every agent of a federation (the broker, each domain controller, the auditor, each tenant, an
operator) holds a certificate issued by the federation CA; agents talk mutual TLS and learn who is
calling from the peer's certificate, never from a field of the request.

Identity. A certificate names exactly one :class:`PeerIdentity` in its subjectAltName:

* a URI ``trefed://ROLE/NAME`` (e.g. ``trefed://domain/edge``): what servers authorise on;
* a DNS name ``NAME.ROLE.trefed`` (the *TLS name*, :attr:`PeerIdentity.tls_name`): what a client
  checks the server's certificate against (gRPC's ``grpc.ssl_target_name_override``), so a
  broker talking to ``127.0.0.1:PORT`` knows it reached domain ``edge`` and not any holder of a
  federation certificate. Names that are no valid DNS label (``_`` or upper case) are carried
  hex-encoded in the TLS name (``x-<hex>.ROLE.trefed``); the URI always carries the name as is.

Keys are ECDSA P-256 (every TLS stack speaks it); the CA certificate is self-signed with
``BasicConstraints(ca=True, path_length=0)``; leaf certificates carry
``BasicConstraints(ca=False)``, ``ExtendedKeyUsage(serverAuth, clientAuth)`` (every agent is
both) and the SAN above.

Files. ``trefed keys ca --out DIR`` writes ``DIR/ca.crt`` and ``DIR/ca.key`` (0600);
``trefed keys issue --role R --id NAME`` writes ``DIR/ROLE-NAME.crt`` and ``DIR/ROLE-NAME.key``
(0600), see :func:`write_credentials` and :func:`load_credentials`.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import InputError
from federation.tre.keys import write_atomic
from federation.tre.validate import DOMAIN_ID_PATTERN

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "DEFAULT_VALIDITY_DAYS",
    "CertificateAuthority",
    "Credentials",
    "PeerIdentity",
    "Role",
    "identity_from_certificate",
    "load_ca",
    "load_credentials",
    "load_or_create_ca",
    "load_or_issue",
    "write_credentials",
]

_CA_STEM = "ca"
CA_CERT_FILE = f"{_CA_STEM}.crt"
CA_KEY_FILE = f"{_CA_STEM}.key"
_URI_SCHEME = "trefed://"
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
#: Default lifetime of an issued certificate, days; of the CA, ten times that.
DEFAULT_VALIDITY_DAYS = 365


class Role(enum.StrEnum):
    """What an agent is in the federation (the ``ROLE`` of ``trefed://ROLE/NAME``)."""

    BROKER = "broker"
    DOMAIN = "domain"
    TENANT = "tenant"
    AUDITOR = "auditor"
    OPERATOR = "operator"


@dataclass(frozen=True)
class PeerIdentity:
    """Who a certificate says its holder is: ``trefed://ROLE/NAME``.

    Attributes
    ----------
    role : Role
        The agent's role.
    name : str
        Its id (a domain id, a tenant id, ...), matching ``DOMAIN_ID_PATTERN``.
    """

    role: Role
    name: str

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "role", Role(self.role))
        except ValueError:
            raise InputError(f"role(={self.role!r}) must be one of {', '.join(r.value for r in Role)}") from None
        if not isinstance(self.name, str) or not DOMAIN_ID_PATTERN.fullmatch(self.name):
            raise InputError(f"id(={self.name!r}) must match {DOMAIN_ID_PATTERN.pattern}")

    @property
    def uri(self) -> str:
        """``trefed://ROLE/NAME``: the certificate's URI subjectAltName."""
        return f"{_URI_SCHEME}{self.role.value}/{self.name}"

    @property
    def tls_name(self) -> str:
        """The DNS subjectAltName a client checks the server against (see the module docstring)."""
        label = self.name if _DNS_LABEL.fullmatch(self.name) else "x-" + self.name.encode().hex()
        return f"{label}.{self.role.value}.trefed"

    @classmethod
    def from_uri(cls, uri: str) -> PeerIdentity:
        """Parse ``trefed://ROLE/NAME``.

        Raises
        ------
        InputError
            If ``uri`` is not of that form, naming it.
        """
        if not uri.startswith(_URI_SCHEME) or uri[len(_URI_SCHEME):].count("/") != 1:
            raise InputError(f"identity {uri!r} is not of the form trefed://ROLE/NAME")
        role, name = uri[len(_URI_SCHEME):].split("/")
        return cls(Role(role) if role in Role._value2member_map_ else role, name)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class Credentials:
    """What an agent needs to talk mutual TLS: the CA to trust, its certificate and key (PEM).

    Attributes
    ----------
    identity : PeerIdentity
        Who the certificate names.
    ca_pem : bytes
        The federation CA certificate: peers are trusted when it issued theirs.
    cert_pem : bytes
        The agent's certificate.
    key_pem : bytes
        The agent's private key, unencrypted PKCS#8 PEM (keep it secret).
    """

    identity: PeerIdentity
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:  # never print key material
        return f"Credentials({self.identity.uri})"


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class CertificateAuthority:
    """The federation CA: a self-signed certificate and its private key; issues agents' certificates.

    Attributes
    ----------
    certificate : x509.Certificate
        The CA certificate (what every agent trusts).
    private_key : ec.EllipticCurvePrivateKey
        Its key (signs the agents' certificates; stays with whoever issues them).
    """

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "trefed federation CA", *, validity_days: int = 10 * DEFAULT_VALIDITY_DAYS
               ) -> CertificateAuthority:
        """A fresh CA named ``name`` valid for ``validity_days`` days from now."""
        if not 1 <= int(validity_days) <= 100 * 366:
            raise InputError(f"validity_days(={validity_days!r}) must be in [1, 36600]")
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=int(validity_days)))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, role: Role | str, name: str, *, validity_days: int = DEFAULT_VALIDITY_DAYS) -> Credentials:
        """A fresh key and a certificate for ``trefed://ROLE/NAME``, signed by this CA.

        Parameters
        ----------
        role : Role or str
            ``broker``, ``domain``, ``tenant``, ``auditor`` or ``operator``.
        name : str
            The agent's id.
        validity_days : int
            Lifetime, days, in [1, 36600]; never past the CA's own expiry.

        Raises
        ------
        InputError
            For an unknown role, an invalid id or an out-of-range lifetime (naming the field).
        """
        identity = PeerIdentity(role, name)  # type: ignore[arg-type]
        if not 1 <= int(validity_days) <= 100 * 366:
            raise InputError(f"validity_days(={validity_days!r}) must be in [1, 36600]")
        key = _new_key()
        now = _now()
        not_after = min(now + _dt.timedelta(days=int(validity_days)), self.certificate.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.uri)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier(identity.uri), x509.DNSName(identity.tls_name)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                           critical=False)
            .sign(self.private_key, hashes.SHA256())
        )
        return Credentials(identity, self.cert_pem, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def write(self, directory: str | Path, *, force: bool = False) -> tuple[Path, Path]:
        """Write ``DIR/ca.crt`` and ``DIR/ca.key`` (0600); return their paths.

        Raises
        ------
        InputError
            If a file exists and not ``force``, or cannot be written.
        """
        return _write_pair(Path(directory), _CA_STEM, self.cert_pem, _key_pem(self.private_key), force)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _load_cert(data: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{source}: not a PEM certificate ({exc})") from exc


def _load_ec_key(data: bytes, source: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{source}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"{source}: not an ECDSA key (got {type(key).__name__})")
    return key


def load_ca(directory: str | Path) -> CertificateAuthority:
    """The CA written by :meth:`CertificateAuthority.write` into ``directory``.

    Raises
    ------
    InputError
        If a file is missing or unreadable, or the key does not match the certificate.
    """
    d = Path(directory)
    cert = _load_cert(_read(d / CA_CERT_FILE), str(d / CA_CERT_FILE))
    key = _load_ec_key(_read(d / CA_KEY_FILE), str(d / CA_KEY_FILE))
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise InputError(f"{d / CA_KEY_FILE}: does not match {d / CA_CERT_FILE}")
    return CertificateAuthority(cert, key)


def identity_from_certificate(cert: x509.Certificate | bytes) -> PeerIdentity:
    """The identity a certificate (object or PEM) names in its URI subjectAltName.

    Raises
    ------
    InputError
        If it names none, or more than one ``trefed://`` URI, or an invalid one.
    """
    if isinstance(cert, bytes):
        cert = _load_cert(cert, "certificate")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise InputError("certificate: no subjectAltName (no trefed:// identity)") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(_URI_SCHEME)]
    if len(uris) != 1:
        raise InputError(f"certificate: {len(uris)} trefed:// identities in its subjectAltName (need exactly 1)")
    return PeerIdentity.from_uri(uris[0])


def _stem(identity: PeerIdentity) -> str:
    return f"{identity.role.value}-{identity.name}"


def write_credentials(credentials: Credentials, directory: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``DIR/ROLE-NAME.crt`` and ``DIR/ROLE-NAME.key`` (0600); return their paths.

    Raises
    ------
    InputError
        If a file exists and not ``force``, or cannot be written.
    """
    return _write_pair(Path(directory), _stem(credentials.identity), credentials.cert_pem, credentials.key_pem, force)


def _write_pair(d: Path, stem: str, cert_pem: bytes, key_pem: bytes, force: bool) -> tuple[Path, Path]:
    """Write ``d/STEM.crt`` (0644) and ``d/STEM.key`` (0600), refusing to replace either unless ``force``."""
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / f"{stem}.crt", d / f"{stem}.key"
    if not force:
        for p in (cert_path, key_path):
            if p.exists():
                raise InputError(f"{p}: already exists (use --force to replace it)")
    write_atomic(key_path, key_pem, mode=0o600, overwrite=True)
    write_atomic(cert_path, cert_pem, mode=0o644, overwrite=True)
    return cert_path, key_path


def load_credentials(directory: str | Path, role: Role | str, name: str) -> Credentials:
    """The credentials of ``trefed://ROLE/NAME`` from ``directory`` (with ``ca.crt`` beside them).

    Raises
    ------
    InputError
        If a file is missing or unreadable, or the certificate names another identity.
    """
    identity = PeerIdentity(role, name)  # type: ignore[arg-type]
    d = Path(directory)
    stem = _stem(identity)
    cert_pem = _read(d / f"{stem}.crt")
    key_pem = _read(d / f"{stem}.key")
    _load_ec_key(key_pem, str(d / f"{stem}.key"))
    named = identity_from_certificate(_load_cert(cert_pem, str(d / f"{stem}.crt")))
    if named != identity:
        raise InputError(f"{d / f'{stem}.crt'}: names {named.uri}, not {identity.uri}")
    return Credentials(identity, _read(d / CA_CERT_FILE), cert_pem, key_pem)


def load_or_create_ca(directory: str | Path | None) -> CertificateAuthority:
    """The CA of ``directory`` (``ca.crt``, ``ca.key``); a fresh one, written there, when it has none.

    Without a directory: a fresh CA held in memory only.

    Raises
    ------
    InputError
        If only one of the two files exists, or they do not load.
    """
    if directory is None:
        return CertificateAuthority.create()
    d = Path(directory)
    present = [(d / f).exists() for f in (CA_CERT_FILE, CA_KEY_FILE)]
    if all(present):
        return load_ca(d)
    if any(present):
        missing = CA_KEY_FILE if present[0] else CA_CERT_FILE
        raise InputError(f"{d}: has {CA_KEY_FILE if present[1] else CA_CERT_FILE} but no {missing}")
    ca = CertificateAuthority.create()
    ca.write(d)
    return ca


def load_or_issue(ca: CertificateAuthority, directory: str | Path | None, role: Role | str, name: str
                  ) -> Credentials:
    """``trefed://ROLE/NAME``'s credentials from ``directory`` when there and issued by ``ca``; else
    freshly issued (and written there, replacing certificates of another CA or expired ones).

    Without a directory: freshly issued, in memory only.
    """
    if directory is None:
        return ca.issue(role, name)
    identity = PeerIdentity(role, name)  # type: ignore[arg-type]
    d = Path(directory)
    if (d / f"{_stem(identity)}.crt").exists():
        creds = load_credentials(d, identity.role, identity.name)
        cert = x509.load_pem_x509_certificate(creds.cert_pem)
        if cert.issuer == ca.certificate.subject and creds.ca_pem == ca.cert_pem and cert.not_valid_after_utc > _now():
            try:
                cert.verify_directly_issued_by(ca.certificate)
                return creds
            except (ValueError, TypeError, InvalidSignature):
                pass
    creds = ca.issue(identity.role, identity.name)
    write_credentials(creds, d, force=True)
    return creds
