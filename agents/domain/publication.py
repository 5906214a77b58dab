"""A domain's envelope publication: sign its Tail-Risk Envelope with a persisted, increasing sequence.

:class:`EnvelopePublisher` signs the domain's envelope template with the next persisted sequence
(strictly increasing across restarts: the sequence is stored in the reservation store's meta
table under :data:`ENVELOPE_SEQUENCE_KEY` before the envelope is served), valid for
``validity_s`` from the time of signing; :meth:`~EnvelopePublisher.refresh` re-signs it with the
next sequence once less than half its validity is left.

The operator may change its offer while it serves: :meth:`~EnvelopePublisher.republish` signs a
new template (e.g. other guardrails) with the next sequence, :meth:`~EnvelopePublisher.revoke`
withdraws the envelope until the next republication. Both persist (meta keys
:data:`ENVELOPE_TEMPLATE_KEY`, :data:`ENVELOPE_REVOKED_KEY`): a restarted controller serves
what it last published, not its start-up template.
"""

from __future__ import annotations

import base64
import math

from trefed.v1 import envelope_pb2

from agents.domain.store import ReservationStore
from federation.errors import ConfigError
from federation.tre.signing import SigningKey, sign_envelope
from federation.tre.validate import timestamp_from_seconds

__all__ = ["ENVELOPE_SEQUENCE_KEY", "ENVELOPE_TEMPLATE_KEY", "ENVELOPE_REVOKED_KEY", "EnvelopePublisher"]

#: Meta key of the last envelope sequence signed (a decimal integer).
ENVELOPE_SEQUENCE_KEY = "envelope_sequence"
#: Meta key of the last republished template (base64 of the serialized EnvelopeBody).
ENVELOPE_TEMPLATE_KEY = "envelope_template"
#: Meta key set ("1") while the envelope is revoked.
ENVELOPE_REVOKED_KEY = "envelope_revoked"


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
        self._key = key
        self._store = store
        self._template = envelope_pb2.EnvelopeBody()
        self._template.CopyFrom(template)
        stored = store.get_meta(ENVELOPE_TEMPLATE_KEY)
        if stored:  # what the operator last republished survives a restart
            self._template = self._checked(envelope_pb2.EnvelopeBody.FromString(base64.b64decode(stored)))
        self.revoked = store.get_meta(ENVELOPE_REVOKED_KEY) == "1"
        """Whether the envelope is withdrawn (:meth:`revoke`) until the next :meth:`republish`."""
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

    @property
    def template(self) -> envelope_pb2.EnvelopeBody:
        """The template the envelope is signed from (a copy)."""
        out = envelope_pb2.EnvelopeBody()
        out.CopyFrom(self._template)
        return out

    def _checked(self, template: envelope_pb2.EnvelopeBody) -> envelope_pb2.EnvelopeBody:
        if template.header.domain_id != self._key.domain_id:
            raise ConfigError(
                f"envelope.header.domain_id(={template.header.domain_id!r}) is not the key's domain "
                f"{self._key.domain_id!r}"
            )
        if self._template.header.tre_id and template.header.tre_id != self._template.header.tre_id:
            raise ConfigError(f"envelope.header.tre_id(={template.header.tre_id!r}) is not the service class "
                              f"{self._template.header.tre_id!r} this domain publishes")
        return template

    def republish(self, template: envelope_pb2.EnvelopeBody, now: float) -> None:
        """Sign ``template`` (same domain and service class) with the next sequence at ``now`` (Unix s)
        and serve it; lifts a revocation. ``ConfigError`` (naming the field) for a bad template,
        the current envelope unchanged."""
        new = envelope_pb2.EnvelopeBody()
        new.CopyFrom(self._checked(template))
        old, was_revoked = self._template, self.revoked
        self._template = new
        try:
            with self._store.transaction():
                self._store.set_meta(ENVELOPE_TEMPLATE_KEY, base64.b64encode(new.SerializeToString()).decode())
                self._store.set_meta(ENVELOPE_REVOKED_KEY, "0")
                self.issue(now)
        except Exception:
            self._template, self.revoked = old, was_revoked
            raise
        self.revoked = False

    def revoke(self) -> None:
        """Withdraw the envelope until the next :meth:`republish` (persisted)."""
        with self._store.transaction():
            self._store.set_meta(ENVELOPE_REVOKED_KEY, "1")
        self.revoked = True

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
        with self._store.transaction():  # a savepoint inside republish's transaction
            self._store.set_meta(ENVELOPE_SEQUENCE_KEY, str(sequence))
        self.envelope = envelope
        self.body = envelope_pb2.EnvelopeBody.FromString(envelope.body)

    def refresh(self, now: float) -> None:
        """Re-sign once less than half the validity is left at ``now`` (Unix s).

        Not inside a store transaction (a batch): the new sequence must be durable before any
        grant names it, so re-signing waits for the next call (a batch refreshes before it begins).
        """
        if self._store.in_transaction or self.revoked:
            return
        na = self.body.header.not_after
        if now >= na.seconds + na.nanos * 1e-9 - 0.5 * self.validity_s:
            self.issue(now)
