"""The trust store: which public key may sign for which domain, and verification of signed objects.

A :class:`TrustStore` binds key ids to (domain id, Ed25519 public key). Verification of a signed
object (``{bytes body; Signature signature}``) runs these checks in this order, each failure
raising :class:`~federation.errors.VerificationError` with a stable
:class:`~federation.tre.signing.Reason`:

1. the wrapper decodes and carries a signature (``MALFORMED``);
2. the algorithm is ED25519 (``UNSUPPORTED_ALGORITHM``);
3. ``signature.key_id`` is in the store (``UNKNOWN_KEY``);
4. the signature verifies over the body bytes (``BAD_SIGNATURE``) -- before any byte of the body
   is parsed;
5. the body decodes, its bytes are canonical (re-serialising the parsed body gives the signed bytes
   back) and the key id inside the body equals ``signature.key_id`` (``MALFORMED``);
6. the key is bound to the domain the body claims (``KEY_DOMAIN_MISMATCH``);
7. every parameter is in range (``OUT_OF_RANGE``, naming the field);
8. ``now`` lies in the validity window (``NOT_YET_VALID``, ``EXPIRED``);
9. (envelopes) the sequence number is strictly above the last one accepted for the same
   ``(domain_id, tre_id)`` (``REPLAY``); a re-delivery of the very envelope last accepted passes
   when ``accept_redelivery`` is set (brokers re-fetch).

The store is thread-safe: key bindings and the replay state are guarded by one lock, signature
checks run outside it.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError, Message
from trefed.v1 import envelope_pb2, reservation_pb2

from federation.errors import FieldError, InputError, VerificationError
from federation.tre.signing import (
    Reason,
    SigningKey,
    canonical_bytes,
    key_id_field,
    key_id_for,
    load_public_key,
    public_key_raw,
)
from federation.tre.validate import (
    DOMAIN_ID_PATTERN,
    check_domain_id,
    timestamp_from_seconds,
    timestamp_ns,
    validate_body,
    validate_grant,
)

__all__ = ["MAX_BODY_BYTES", "TrustStore", "TrustedKey"]

#: Largest body accepted, bytes (1 MiB): bigger objects are rejected as MALFORMED before any work.
MAX_BODY_BYTES = 1 << 20

B = TypeVar("B", bound=Message)


@dataclass(frozen=True)
class TrustedKey:
    """A public key and the one domain it may sign for.

    Attributes
    ----------
    key_id
        The id signatures name it by.
    domain_id
        The only domain it may sign for.
    public_key
        The Ed25519 public key.
    raw
        Its raw 32 bytes.
    """

    key_id: str
    domain_id: str
    public_key: Ed25519PublicKey
    raw: bytes


def _now_ns(now: float | None) -> int:
    return timestamp_ns(timestamp_from_seconds(time.time() if now is None else float(now), "now"), "now")


class TrustStore:
    """Public keys bound to domains, and the replay state of accepted envelopes.

    Parameters
    ----------
    clock_skew_s
        Tolerance, s, >= 0, applied to both ends of validity windows (default 0: exact).
    """

    def __init__(self, *, clock_skew_s: float = 0.0) -> None:
        if not (math.isfinite(clock_skew_s) and clock_skew_s >= 0):
            raise InputError(f"clock_skew_s(={clock_skew_s!r}) must be finite and >= 0")
        self._skew_ns = round(clock_skew_s * 1e9)
        self._lock = threading.Lock()
        self._keys: dict[str, TrustedKey] = {}
        # (object kind, domain id, object id) -> (last accepted sequence, SHA-256 of its body bytes)
        self._accepted: dict[tuple[str, str, str], tuple[int, bytes]] = {}

    # ---------------------------------------------------------------- keys

    def add(self, key_id: str, domain_id: str, public_key: bytes | Ed25519PublicKey) -> None:
        """Trust ``public_key`` under ``key_id`` for signatures of domain ``domain_id`` only.

        Re-adding the identical binding is a no-op.

        Raises
        ------
        InputError
            Empty key id, bad domain id, a key that is not Ed25519 (raw 32 bytes or PEM), or a
            ``key_id`` already bound to another key or domain.
        """
        if not isinstance(key_id, str) or not key_id:
            raise InputError(f"key_id(={key_id!r}) must be a non-empty string")
        check_domain_id(domain_id)
        if isinstance(public_key, bytes):
            key = load_public_key(public_key, f"public key of {key_id!r}")
        elif isinstance(public_key, Ed25519PublicKey):
            key = public_key
        else:
            raise InputError(f"public key of {key_id!r}: expected bytes or Ed25519PublicKey, got {type(public_key).__name__}")
        entry = TrustedKey(key_id, domain_id, key, public_key_raw(key))
        with self._lock:
            old = self._keys.get(key_id)
            if old is not None and (old.domain_id != domain_id or old.raw != entry.raw):
                raise InputError(f"key id {key_id!r} is already bound to another key or to domain {old.domain_id!r}")
            self._keys[key_id] = entry

    def add_key(self, key: SigningKey) -> None:
        """Trust the public half of ``key`` for ``key.domain_id`` under ``key.key_id``."""
        self.add(key.key_id, key.domain_id, key.public_key)

    @classmethod
    def from_dir(cls, path: str | Path, *, clock_skew_s: float = 0.0) -> TrustStore:
        """Load every ``NAME.pub`` (PEM) in ``path``; each is trusted for domain ``NAME`` only.

        The key id of ``NAME.pub`` is :func:`~federation.tre.signing.key_id_for` ``(NAME, key)``, the
        id ``trefed keys new`` / :meth:`SigningKey.from_pem` give the matching private key.

        Raises
        ------
        InputError
            If ``path`` is not a directory, holds no ``*.pub`` file, or a file is not an Ed25519
            public key or has a name that is not a valid domain id (the message names the file).
        """
        directory = Path(path)
        if not directory.is_dir():
            raise InputError(f"{directory}: trust directory does not exist")
        files = sorted(directory.glob("*.pub"))
        if not files:
            raise InputError(f"{directory}: no NAME.pub files in the trust directory")
        store = cls(clock_skew_s=clock_skew_s)
        for file in files:
            name = file.name[: -len(".pub")]
            if not DOMAIN_ID_PATTERN.fullmatch(name):
                raise InputError(f"{file}: file name {name!r} is not a valid domain id")
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise InputError(f"{file}: cannot read ({exc})") from exc
            key = load_public_key(data, str(file))
            store.add(key_id_for(name, key), name, key)
        return store

    def key(self, key_id: str) -> TrustedKey | None:
        """The binding of ``key_id``, or None."""
        with self._lock:
            return self._keys.get(key_id)

    def key_ids(self) -> list[str]:
        """All trusted key ids, sorted."""
        with self._lock:
            return sorted(self._keys)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def last_accepted(self, domain_id: str, tre_id: str) -> int | None:
        """The sequence of the last envelope accepted for ``(domain_id, tre_id)``, or None."""
        with self._lock:
            entry = self._accepted.get(("tre", domain_id, tre_id))
        return None if entry is None else entry[0]

    # ---------------------------------------------------------------- generic verification

    def _parse_wrapper(self, signed: Message | bytes, wrapper_cls: type[Message]) -> Message:
        if isinstance(signed, (bytes, bytearray, memoryview)):
            try:
                return wrapper_cls.FromString(bytes(signed))
            except DecodeError as exc:
                raise VerificationError(Reason.MALFORMED, f"cannot decode {wrapper_cls.DESCRIPTOR.name}: {exc}") from exc
        if not isinstance(signed, wrapper_cls):
            raise VerificationError(
                Reason.MALFORMED, f"expected {wrapper_cls.DESCRIPTOR.name}, got {type(signed).__name__}"
            )
        return signed

    def verify(
        self,
        signed: Message,
        body_cls: type[B],
        *,
        domain_of: Callable[[B], str],
        validate: Callable[[B], None] | None = None,
    ) -> B:
        """Verify any signed object ``{bytes body; Signature signature}`` and return its body.

        Runs checks 1-7 of the module docstring (no validity window, no replay state): use it
        for telemetry batches (``domain_of=lambda b: b.domain_id``) and accountability reports.

        Parameters
        ----------
        signed
            The signed wrapper message (e.g. ``SignedTelemetryBatch``).
        body_cls
            The body message type (e.g. ``TelemetryBatchBody``).
        domain_of
            The domain the body claims; the signing key must be bound to it.
        validate
            Optional range check raising :class:`~federation.errors.FieldError`
            (reported as ``OUT_OF_RANGE``).

        Raises
        ------
        VerificationError
            With ``.reason`` one of :class:`~federation.tre.signing.Reason`.
        """
        if not isinstance(signed, Message) or "body" not in signed.DESCRIPTOR.fields_by_name:
            raise VerificationError(Reason.MALFORMED, f"not a signed message: {type(signed).__name__}")
        data: bytes = signed.body
        if len(data) > MAX_BODY_BYTES:
            raise VerificationError(Reason.MALFORMED, f"body of {len(data)} bytes exceeds {MAX_BODY_BYTES}")
        if not signed.HasField("signature"):
            raise VerificationError(Reason.MALFORMED, "no signature")
        sig = signed.signature
        if sig.algorithm != envelope_pb2.ED25519:
            name = envelope_pb2.SignatureAlgorithm.Name(sig.algorithm) if sig.algorithm in (0, 1) else str(sig.algorithm)
            raise VerificationError(Reason.UNSUPPORTED_ALGORITHM, f"algorithm {name}; only ED25519 is accepted")
        entry = self.key(sig.key_id)
        if entry is None:
            raise VerificationError(Reason.UNKNOWN_KEY, f"key id {sig.key_id!r} is not in the trust store")
        try:
            entry.public_key.verify(sig.signature, data)
        except InvalidSignature:
            raise VerificationError(
                Reason.BAD_SIGNATURE, f"signature does not verify under key {sig.key_id!r}"
            ) from None
        try:
            body = body_cls.FromString(data)
        except DecodeError as exc:
            raise VerificationError(Reason.MALFORMED, f"cannot decode {body_cls.DESCRIPTOR.name}: {exc}") from exc
        if canonical_bytes(body) != data:
            raise VerificationError(Reason.MALFORMED, "body bytes are not the canonical (deterministic) encoding")
        where = key_id_field(body_cls.DESCRIPTOR)
        if where is not None:
            inner = body.key_id if where == "key_id" else body.header.key_id
            if inner != sig.key_id:
                raise VerificationError(
                    Reason.MALFORMED, f"{where}(={inner!r}) differs from signature.key_id(={sig.key_id!r})"
                )
        claimed = domain_of(body)
        if claimed != entry.domain_id:
            raise VerificationError(
                Reason.KEY_DOMAIN_MISMATCH,
                f"key {sig.key_id!r} is trusted for domain {entry.domain_id!r}, not {claimed!r}",
            )
        if validate is not None:
            try:
                validate(body)
            except FieldError as exc:
                raise VerificationError(Reason.OUT_OF_RANGE, str(exc)) from exc
        return body

    def _check_window(self, start_ns: int, end_ns: int, now: float | None, start_name: str, end_name: str) -> None:
        t = _now_ns(now)
        if t < start_ns - self._skew_ns:
            raise VerificationError(
                Reason.NOT_YET_VALID, f"{start_name} is {(start_ns - t) / 1e9:.3f} s after now"
            )
        if t >= end_ns + self._skew_ns:
            raise VerificationError(Reason.EXPIRED, f"{end_name} was {(t - end_ns) / 1e9:.3f} s before now")

    def replay_state(self) -> list[dict[str, object]]:
        """The replay state as JSON-able rows, for persisting across restarts.

        Each row: ``kind`` (``"tre"`` or ``"grant"``), ``domain_id``, ``object_id`` (TRE id or
        reservation id), ``sequence`` (last accepted) and ``body_sha256`` (hex digest of its body
        bytes, for re-delivery checks).
        """
        with self._lock:
            items = sorted(self._accepted.items())
        return [
            {"kind": k, "domain_id": d, "object_id": o, "sequence": seq, "body_sha256": digest.hex()}
            for (k, d, o), (seq, digest) in items
        ]

    def restore_replay_state(self, rows: list[dict[str, object]]) -> None:
        """Merge rows of :meth:`replay_state` (e.g. read back after a restart); the higher sequence wins.

        Raises
        ------
        InputError
            A row lacks a field or has a wrong type (names the row index).
        """
        parsed = []
        for i, row in enumerate(rows):
            try:
                key = (str(row["kind"]), str(row["domain_id"]), str(row["object_id"]))
                seq = row["sequence"]
                digest = bytes.fromhex(str(row["body_sha256"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"replay state row {i}: {exc!r}") from exc
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or len(digest) != 32:
                raise InputError(f"replay state row {i}: sequence must be an integer >= 0 and body_sha256 32 bytes")
            parsed.append((key, (seq, digest)))
        with self._lock:
            for key, value in parsed:
                old = self._accepted.get(key)
                if old is None or value[0] > old[0]:
                    self._accepted[key] = value

    def _check_sequence(
        self, key: tuple[str, str, str], sequence: int, body_bytes: bytes, accept_redelivery: bool, what: str
    ) -> None:
        data = hashlib.sha256(body_bytes).digest()
        with self._lock:
            last = self._accepted.get(key)
            if last is not None:
                last_seq, last_data = last
                if accept_redelivery and sequence == last_seq and data == last_data:
                    return
                if sequence <= last_seq:
                    same = " (a different body with the same sequence)" if sequence == last_seq and data != last_data else ""
                    raise VerificationError(
                        Reason.REPLAY,
                        f"{what} sequence {sequence} is not above the last accepted {last_seq}{same}",
                    )
            self._accepted[key] = (sequence, data)

    # ---------------------------------------------------------------- envelopes and grants

    def verify_envelope(
        self,
        env: envelope_pb2.TailRiskEnvelope | bytes,
        *,
        now: float | None = None,
        accept_redelivery: bool = False,
    ) -> envelope_pb2.EnvelopeBody:
        """Verify a signed Tail-Risk Envelope, record its sequence, and return its body.

        Parameters
        ----------
        env
            The envelope, or its serialized bytes (undecodable bytes: ``MALFORMED``).
        now
            Unix time, s (default ``time.time()``); valid when ``not_before <= now < not_after``.
        accept_redelivery
            Accept the byte-identical envelope last accepted for the same ``(domain_id, tre_id)``.

        Returns
        -------
        envelope_pb2.EnvelopeBody
            The verified body.

        Raises
        ------
        VerificationError
            ``.reason`` is a :class:`~federation.tre.signing.Reason`; on failure nothing is recorded.
        """
        wrapper = self._parse_wrapper(env, envelope_pb2.TailRiskEnvelope)
        body = self.verify(
            wrapper,
            envelope_pb2.EnvelopeBody,
            domain_of=lambda b: b.header.domain_id,
            validate=validate_body,
        )
        h = body.header
        self._check_window(timestamp_ns(h.not_before), timestamp_ns(h.not_after), now, "header.not_before", "header.not_after")
        self._check_sequence(("tre", h.domain_id, h.tre_id), h.sequence, wrapper.body, accept_redelivery, "envelope")
        return body

    def verify_grant(
        self,
        signed: reservation_pb2.SignedGrant | bytes,
        *,
        now: float | None = None,
        expected_domain: str | None = None,
        expected_tenant: str | None = None,
        expected_reservation: str | None = None,
        track_sequence: bool = False,
    ) -> reservation_pb2.GrantBody:
        """Verify a signed reservation grant and return its body.

        Parameters
        ----------
        signed
            The grant, or its serialized bytes.
        now
            Unix time, s (default ``time.time()``); valid when ``granted_at <= now < not_after``.
        expected_domain
            If given, the grant must come from this domain (else ``KEY_DOMAIN_MISMATCH``).
        expected_tenant, expected_reservation
            If given, the grant must be this tenant's, for this reservation (else ``NOT_BOUND``):
            a valid grant replayed by another tenant, or for another reservation, is refused here
            rather than by each caller remembering to compare.
        track_sequence
            Also enforce a strictly growing ``sequence`` per ``(domain_id, reservation_id)``
            (``REPLAY``); the grant last accepted may be re-delivered. Off by default: grants are
            re-read idempotently.

        Raises
        ------
        VerificationError
            ``.reason`` is a :class:`~federation.tre.signing.Reason`.
        """
        wrapper = self._parse_wrapper(signed, reservation_pb2.SignedGrant)
        body = self.verify(
            wrapper, reservation_pb2.GrantBody, domain_of=lambda b: b.domain_id, validate=validate_grant
        )
        if expected_domain is not None and body.domain_id != expected_domain:
            raise VerificationError(
                Reason.KEY_DOMAIN_MISMATCH, f"grant is signed by domain {body.domain_id!r}, expected {expected_domain!r}"
            )
        for field, expected in (("tenant_id", expected_tenant), ("reservation_id", expected_reservation)):
            if expected is not None and getattr(body, field) != expected:
                raise VerificationError(
                    Reason.NOT_BOUND, f"grant {field} is {getattr(body, field)[:64]!r}, expected {expected[:64]!r}")
        self._check_window(timestamp_ns(body.granted_at), timestamp_ns(body.not_after), now, "granted_at", "not_after")
        if track_sequence:
            self._check_sequence(
                ("grant", body.domain_id, body.reservation_id), body.sequence, wrapper.body, True, "grant"
            )
        return body
