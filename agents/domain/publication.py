"""A domain's envelope publication: sign its Tail-Risk Envelope with a persisted, increasing sequence.

:class:`EnvelopePublisher` signs the domain's envelope template with the next persisted sequence
(strictly increasing across restarts: the sequence is stored in the reservation store's meta
table under :data:`ENVELOPE_SEQUENCE_KEY` before the envelope is served), valid for
``validity_s`` from the time of signing; :meth:`~EnvelopePublisher.refresh` re-signs it with the
next sequence once less than half its validity is left.
"""

from __future__ import annotations

import math

from trefed.v1 import envelope_pb2

from agents.domain.store import ReservationStore
from federation.errors import ConfigError
from federation.tre.signing import SigningKey, sign_envelope
from federation.tre.validate import timestamp_from_seconds

__all__ = ["ENVELOPE_SEQUENCE_KEY", "EnvelopePublisher"]

#: Meta key of the last envelope sequence signed (a decimal integer).
ENVELOPE_SEQUENCE_KEY = "envelope_sequence"


class EnvelopePublisher:
    """The signed envelope of one domain (see the module docstring).

    Parameters
    ----------
    template : EnvelopeBody
        The envelope without sequence, times and key id; ``header.domain_id`` must be the key's.
    key : SigningKey
        The domain's signing key.
    store : ReservationStore
        Where the sequence persists.
    validity_s : float
        Validity window of each signed envelope, s, > 0 and finite.
    now : float
        Unix time of the first signing, s.

    Raises
    ------
    ConfigError
        If the template is out of range (naming the field) or names another domain, or
        ``validity_s`` is out of range.
    """

    def __init__(
        self, template: envelope_pb2.EnvelopeBody, key: SigningKey, store: ReservationStore, *,
        validity_s: float, now: float,
    ) -> None:
        if not (math.isfinite(validity_s) and validity_s > 0):
            raise ConfigError(f"validity_s(={validity_s!r}) must be finite and > 0")
        if template.header.domain_id != key.domain_id:
            raise ConfigError(
                f"envelope.header.domain_id(={template.header.domain_id!r}) is not the key's domain {key.domain_id!r}"
            )
        self._template = envelope_pb2.EnvelopeBody()
        self._template.CopyFrom(template)
        self._key = key
        self._store = store
        self.validity_s = float(validity_s)
        self.envelope: envelope_pb2.TailRiskEnvelope
        """The current signed envelope."""
        self.body: envelope_pb2.EnvelopeBody
        """The current envelope's body (what the grants name: sequence, ``not_after``)."""
        self.issue(now)

    @property
    def sequence(self) -> int:
        """Sequence number of the current envelope."""
        return int(self.body.header.sequence)

    def issue(self, now: float) -> None:
        """Sign the template with the next sequence, valid from ``now`` (Unix s) for ``validity_s``."""
        sequence = int(self._store.get_meta(ENVELOPE_SEQUENCE_KEY) or 0) + 1
        body = envelope_pb2.EnvelopeBody()
        body.CopyFrom(self._template)
        h = body.header
        h.sequence = sequence
        h.issued_at.CopyFrom(timestamp_from_seconds(now))
        h.not_before.CopyFrom(timestamp_from_seconds(now))
        h.not_after.CopyFrom(timestamp_from_seconds(now + self.validity_s))
        h.key_id = self._key.key_id
        envelope = sign_envelope(body, self._key)  # validates the body (ConfigError naming the field)
        with self._store.transaction():
            self._store.set_meta(ENVELOPE_SEQUENCE_KEY, str(sequence))
        self.envelope = envelope
        self.body = envelope_pb2.EnvelopeBody.FromString(envelope.body)

    def refresh(self, now: float) -> None:
        """Re-sign once less than half the validity is left at ``now`` (Unix s).

        Not inside a store transaction (a batch): the new sequence must be durable before any
        grant names it, so re-signing waits for the next call (a batch refreshes before it begins).
        """
        if self._store.in_transaction:
            return
        na = self.body.header.not_after
        if now >= na.seconds + na.nanos * 1e-9 - 0.5 * self.validity_s:
            self.issue(now)
