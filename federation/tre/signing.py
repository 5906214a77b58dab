"""Ed25519 signing of trefed.v1 objects over their canonical encoding.

Every signed object of the protocol has the shape ``{bytes body; Signature signature}``: ``body``
holds the *canonical encoding* of a body message (``EnvelopeBody``, ``GrantBody``,
``TelemetryBatchBody``, ``AccountabilityReportBody``) and ``signature`` an Ed25519 signature
(RFC 8032) over exactly those bytes. Verifiers check the bytes that were signed, never a
re-encoding of them; :mod:`federation.tre.trust` additionally requires the bytes to *be* canonical,
so one body has exactly one signed form.

The canonical encoding is the deterministic protobuf serialization
(``SerializeToString(deterministic=True)``): fields in field-number order, map entries sorted by
key, default-valued scalars omitted (proto3 implicit presence).

Key ids are ``DOMAIN-FINGERPRINT`` where FINGERPRINT is the first 16 hex digits (64 bits) of the SHA-256 of
the raw 32-byte public key (:func:`key_id_for`), so a verifier that holds only the public key file
of a domain derives the same id the signer put on the wire.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import Message
from trefed.v1 import envelope_pb2, reservation_pb2

from federation.errors import InputError
from federation.tre.validate import check_domain_id, validate_body, validate_grant

__all__ = [
    "Reason",
    "SigningKey",
    "canonical_bytes",
    "key_id_field",
    "key_id_for",
    "load_public_key",
    "public_key_raw",
    "sign",
    "sign_envelope",
    "sign_grant",
]

M = TypeVar("M", bound=Message)


class Reason(enum.StrEnum):
    """Stable machine-readable codes of :class:`~federation.errors.VerificationError` ``.reason``."""

    BAD_SIGNATURE = "bad-signature"
    """The signature does not verify under the key named by ``signature.key_id``."""
    UNKNOWN_KEY = "unknown-key"
    """``signature.key_id`` is not in the trust store."""
    KEY_DOMAIN_MISMATCH = "key-not-bound-to-domain"
    """The key is trusted, but for another domain than the one the body claims."""
    NOT_YET_VALID = "not-yet-valid"
    """``now`` is before ``not_before`` (envelopes) or ``granted_at`` (grants)."""
    EXPIRED = "expired"
    """``now`` is at or after ``not_after``."""
    REPLAY = "replay-or-rollback"
    """The sequence number is not above the last accepted one for the same object."""
    MALFORMED = "malformed"
    """Undecodable bytes, a non-canonical body, a missing part or inconsistent key ids."""
    OUT_OF_RANGE = "out-of-range"
    """A parameter is outside its valid range; the detail names the field."""
    NOT_BOUND = "not-bound-to-party"
    """A valid grant, but not of the tenant or the reservation the verifier expected."""
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    """``signature.algorithm`` is not ED25519."""


def public_key_raw(public_key: Ed25519PublicKey) -> bytes:
    """The raw 32-byte encoding (RFC 8032) of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_for(domain_id: str, public_key: bytes | Ed25519PublicKey) -> str:
    """The default key id of a domain's key: ``DOMAIN-`` + first 16 hex digits (64 bits) of SHA-256(raw key).

    Parameters
    ----------
    domain_id
        The domain the key belongs to.
    public_key
        Raw 32-byte public key or an :class:`Ed25519PublicKey`.
    """
    raw = public_key if isinstance(public_key, bytes) else public_key_raw(public_key)
    return f"{domain_id}-{hashlib.sha256(raw).hexdigest()[:16]}"


def load_public_key(data: bytes, source: str = "public key") -> Ed25519PublicKey:
    """Parse an Ed25519 public key from PEM, or from its raw 32 bytes.

    Raises
    ------
    InputError
        If ``data`` is neither, naming ``source``.
    """
    if len(data) == 32 and not data.startswith(b"-----"):
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{source}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{source}: not an Ed25519 key (got {type(key).__name__})")
    return key


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key held by one domain (or the auditor), with its key id.

    Attributes
    ----------
    key_id
        Identifies the key in verifiers' trust stores; carried in ``Signature.key_id``.
    domain_id
        The domain the key signs for; verifiers accept it for this domain only.
    private_key
        The Ed25519 private key.
    """

    key_id: str
    domain_id: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, domain_id: str, key_id: str | None = None) -> SigningKey:
        """A fresh random key for ``domain_id``; ``key_id`` defaults to :func:`key_id_for`."""
        check_domain_id(domain_id)
        private = Ed25519PrivateKey.generate()
        return cls(key_id or key_id_for(domain_id, private.public_key()), domain_id, private)

    @classmethod
    def from_pem(cls, pem: bytes, domain_id: str, key_id: str | None = None) -> SigningKey:
        """Load a PKCS#8 PEM private key (unencrypted) for ``domain_id``.

        Raises
        ------
        InputError
            If ``pem`` is not an unencrypted Ed25519 private key in PEM.
        """
        check_domain_id(domain_id)
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InputError(f"not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise InputError(f"not an Ed25519 private key (got {type(private).__name__})")
        return cls(key_id or key_id_for(domain_id, private.public_key()), domain_id, private)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return public_key_raw(self.public_key)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (keep it mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_bytes(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self.private_key.sign(data)

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(key_id={self.key_id!r}, domain_id={self.domain_id!r})"


def canonical_bytes(body: Message) -> bytes:
    """The canonical encoding of ``body``: its deterministic protobuf serialization."""
    return body.SerializeToString(deterministic=True)


def key_id_field(descriptor) -> str | None:
    """Where a body message type carries its signer's key id: ``"key_id"``, ``"header.key_id"`` or None."""
    fields = descriptor.fields_by_name
    if "key_id" in fields:
        return "key_id"
    header = fields.get("header")
    if header is not None and header.message_type is not None and "key_id" in header.message_type.fields_by_name:
        return "header.key_id"
    return None


def _with_key_id(body: Message, key_id: str) -> Message:
    """A copy of ``body`` whose key id field (``header.key_id`` or ``key_id``) is ``key_id``."""
    where = key_id_field(body.DESCRIPTOR)
    if where is None:
        return body
    copy = type(body)()
    copy.CopyFrom(body)
    if where == "key_id":
        copy.key_id = key_id
    else:
        copy.header.key_id = key_id
    return copy


def sign(body: Message, key: SigningKey, wrapper_cls: type[M]) -> M:
    """Sign ``body`` with ``key`` into a new ``wrapper_cls`` (``{bytes body; Signature signature}``).

    If the body message has a ``key_id`` field (or ``header.key_id``), it is set to ``key.key_id``
    in the signed copy (``body`` itself is not modified). The body is not range-checked here;
    see :func:`sign_envelope` and :func:`sign_grant`.

    Parameters
    ----------
    body
        The body message (e.g. ``EnvelopeBody``).
    key
        The signing key.
    wrapper_cls
        The signed message type, e.g. ``TailRiskEnvelope``.

    Returns
    -------
    M
        ``wrapper.body`` = canonical encoding of the body, ``wrapper.signature`` = ED25519,
        ``key.key_id`` and the 64-byte signature over ``wrapper.body``.
    """
    data = canonical_bytes(_with_key_id(body, key.key_id))
    wrapper = wrapper_cls()
    wrapper.body = data
    wrapper.signature.algorithm = envelope_pb2.ED25519
    wrapper.signature.key_id = key.key_id
    wrapper.signature.signature = key.sign_bytes(data)
    return wrapper


def sign_envelope(body: envelope_pb2.EnvelopeBody, key: SigningKey, *, check: bool = True) -> envelope_pb2.TailRiskEnvelope:
    """Sign a Tail-Risk Envelope body; sets ``header.key_id`` to ``key.key_id``.

    Parameters
    ----------
    body
        The unsigned envelope body.
    key
        The publishing domain's key.
    check
        If true (default), refuse to sign a body that verifiers would reject anyway: one whose
        ``header.domain_id`` is not ``key.domain_id`` or that fails
        :func:`federation.tre.validate.validate_body`.

    Raises
    ------
    InputError
        (with ``check``) for a domain mismatch; :class:`~federation.errors.FieldError` naming the
        field for an out-of-range parameter.
    """
    if check:
        if body.header.domain_id != key.domain_id:
            raise InputError(
                f"header.domain_id(={body.header.domain_id!r}) is not the signing key's domain {key.domain_id!r}"
            )
        validate_body(body)
    return sign(body, key, envelope_pb2.TailRiskEnvelope)


def sign_grant(body: reservation_pb2.GrantBody, key: SigningKey, *, check: bool = True) -> reservation_pb2.SignedGrant:
    """Sign a reservation grant body; sets ``key_id`` to ``key.key_id``.

    With ``check`` (default), refuse a grant whose ``domain_id`` is not ``key.domain_id`` or that
    fails :func:`federation.tre.validate.validate_grant` (raises :class:`InputError` naming the field;
    a :class:`~federation.errors.FieldError` for a range violation).
    """
    if check:
        if body.domain_id != key.domain_id:
            raise InputError(f"domain_id(={body.domain_id!r}) is not the signing key's domain {key.domain_id!r}")
        validate_grant(body)
    return sign(body, key, reservation_pb2.SignedGrant)
