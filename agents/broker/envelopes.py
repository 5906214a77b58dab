"""The broker's cache of verified Tail-Risk Envelopes, one per domain.

:class:`EnvelopeCache` fetches a domain's envelope through its
:class:`~agents.broker.client.DomainClient`, verifies it against the trust store (signature,
key bound to the domain, ranges, validity window, monotone sequence; and that it is the envelope
of the domain and service class asked for) and keeps the verified body until it is
``refresh_s`` old (monotonic time) or its validity ends (Unix time). A byte-identical
re-delivery of the last accepted envelope is re-checked as such (validity window); a new sequence
is verified afresh; an older one is refused (replay-or-rollback). A refused envelope drops the entry. Concurrent fetches of one domain share one call. The calculus only
ever sees verified bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from trefed.v1 import envelope_pb2

from agents.broker.client import DomainClient
from federation.errors import VerificationError
from federation.tre.signing import Reason
from federation.tre.trust import TrustStore

__all__ = ["EnvelopeCache"]


@dataclass(frozen=True)
class _Entry:
    body: envelope_pb2.EnvelopeBody
    raw: bytes
    signature: bytes
    fetched_at: float  # monotonic clock, s
    not_after: float  # Unix time, s


class EnvelopeCache:
    """Verified envelope bodies per domain (see the module docstring).

    Parameters
    ----------
    domains : mapping of domain id -> DomainClient
        Where each domain's envelope is fetched.
    service_classes : mapping of domain id -> str
        The ``tre_id`` asked of each domain.
    trust : TrustStore
        The keys envelopes must be signed with.
    refresh_s : float
        Age (s, monotonic) after which an entry is re-fetched.
    clock : callable
        Unix time, s (validity windows).
    monotonic : callable
        Monotonic time, s (entry ages). Both injectable for tests.
    """

    def __init__(
        self,
        domains: Mapping[str, DomainClient],
        service_classes: Mapping[str, str],
        trust: TrustStore,
        *,
        refresh_s: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._domains = domains
        self._classes = dict(service_classes)
        self._trust = trust
        self.refresh_s = float(refresh_s)
        self._clock = clock
        self._monotonic = monotonic
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.verified = 0  # envelopes verified afresh (first fetch or a new sequence)

    def _fresh(self, domain_id: str, now_m: float, now: float) -> envelope_pb2.EnvelopeBody | None:
        entry = self._entries.get(domain_id)
        if entry is not None and now_m - entry.fetched_at < self.refresh_s and now < entry.not_after:
            return entry.body
        return None

    async def get(self, domain_id: str) -> envelope_pb2.EnvelopeBody:
        """The verified envelope body of ``domain_id``, from the cache while it is fresh.

        Raises
        ------
        VerificationError
            The envelope was refused (the entry is dropped).
        DomainCallError
            The domain cannot be reached.
        """
        cached = self._fresh(domain_id, self._monotonic(), self._clock())
        if cached is not None:
            return cached
        async with self._locks.setdefault(domain_id, asyncio.Lock()):
            cached = self._fresh(domain_id, self._monotonic(), self._clock())
            if cached is not None:
                return cached
            entry = self._entries.get(domain_id)
            tre_id = self._classes[domain_id]
            env = await self._domains[domain_id].get_envelope(tre_id)
            same = entry is not None and env.body == entry.raw and env.signature.signature == entry.signature
            try:
                # A byte-identical re-delivery of the envelope the trust store accepted last is
                # re-checked as such, whoever delivered it first: the store records an envelope's
                # sequence before the domain binding below is checked, so a domain that relays
                # another's envelope must not lock that domain out (replay-or-rollback).
                body = self._trust.verify_envelope(env, now=self._clock(), accept_redelivery=True)
                if body.header.domain_id != domain_id:
                    raise VerificationError(
                        Reason.MALFORMED, f"envelope of domain {body.header.domain_id!r} served by {domain_id!r}"
                    )
                if body.header.tre_id != tre_id:
                    raise VerificationError(Reason.MALFORMED, f"asked for {tre_id!r}, got {body.header.tre_id!r}")
            except VerificationError:
                self._entries.pop(domain_id, None)
                raise
            if not same:
                self.verified += 1
            na = body.header.not_after
            self._entries[domain_id] = _Entry(
                body=body,
                raw=env.body,
                signature=env.signature.signature,
                fetched_at=self._monotonic(),
                not_after=na.seconds + na.nanos * 1e-9,
            )
            return body

    def fresh(self, path: Sequence[str]) -> list[envelope_pb2.EnvelopeBody] | None:
        """The cached verified bodies of a path when all are fresh (the common, await-free case), else None."""
        now_m, now = self._monotonic(), self._clock()
        out = []
        for d in path:
            body = self._fresh(d, now_m, now)
            if body is None:
                return None
            out.append(body)
        return out

    def forget(self, domain_id: str) -> None:
        """Drop a domain's entry (the next use re-fetches and re-verifies it)."""
        self._entries.pop(domain_id, None)
