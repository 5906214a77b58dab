"""Findings, and one domain's hash chain of telemetry batches as the auditor receives it.

:class:`DomainChain` takes the domain's *verified* batch bodies in arrival order and keeps the
chain: batch ``k`` is linked when batch ``k - 1`` is and its ``previous_batch_sha256`` is the
SHA-256 of batch ``k - 1``'s body bytes. What arrives out of order is held until the batches
before it arrive (a *reorder*); what never arrives leaves a *gap*; a body seen before is a
*replay*; a second, different body with a sequence already taken is an *equivocation* (both are
signed: the domain said two things); a body whose link hash is wrong is a *broken chain*.
Held and linked batches are both the domain's signed statements, and both are audited; a
domain with a gap or a broken chain is never judged COMPLIANT (see
:mod:`federation.audit.analysis`).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from trefed.v1 import telemetry_pb2

from federation.audit.batches import body_sha256

__all__ = ["FindingKind", "Finding", "HARMLESS", "FINDINGS_KEPT", "FindingLog", "Batch", "DomainChain"]


class FindingKind(enum.StrEnum):
    """What the auditor found (the ``kind`` of a ``Finding`` message)."""

    GAP = "gap"
    """Batches of a domain never arrived (sequence numbers skipped)."""
    REORDER = "reorder"
    """A batch arrived after a later one of the same domain (held, then linked)."""
    REPLAY = "replay"
    """A batch body that was already received (rejected)."""
    EQUIVOCATION = "equivocation"
    """Two different signed bodies with the same sequence number (the second rejected)."""
    BROKEN_CHAIN = "broken-chain"
    """``previous_batch_sha256`` is not the SHA-256 of the previous body (rejected)."""
    TAMPERED = "tampered"
    """The signature does not verify over the body bytes: they were changed after signing."""
    WRONG_KEY = "wrong-key"
    """Signed by an unknown key, or by a key trusted for another domain than the one claimed."""
    MALFORMED = "malformed"
    """Undecodable, non-canonical or out-of-range (the detail names the field)."""
    MISSING_TELEMETRY = "missing-telemetry"
    """A domain of a committed contract reported nothing for the tenant."""
    MISSING_PACKETS = "missing-packets"
    """Packets a domain says it delivered to its neighbour, inside the neighbour's reported
    windows, that the neighbour never reported."""
    INCONSISTENT = "inconsistent"
    """A domain's egress times contradict its neighbour's ingress times (plus the link delay)."""


#: Findings that lose nothing (the data all arrived): every other finding makes the domain it names
#: not COMPLIANT, and is a violation found (exit code 1 of ``trefed audit``): never compliant by silence.
HARMLESS = frozenset({FindingKind.REORDER, FindingKind.REPLAY})


@dataclass(frozen=True)
class Finding:
    """One finding: its kind, the domain it names, the batch (0: none), a sentence, packets concerned."""

    kind: FindingKind
    domain_id: str
    detail: str
    batch_sequence: int = 0
    packets: int = 0

    def sentence(self) -> str:
        """``kind[domain]: detail``."""
        return f"{self.kind.value}[{self.domain_id or '?'}]: {self.detail}"

    def to_proto(self) -> telemetry_pb2.Finding:
        """As a ``trefed.v1.Finding``."""
        return telemetry_pb2.Finding(kind=self.kind.value, domain_id=self.domain_id, detail=self.detail,
                                     batch_sequence=self.batch_sequence, packets=self.packets)


#: Findings of one kind about one domain kept in full; beyond, they are counted (:class:`FindingLog`).
FINDINGS_KEPT = 20


@dataclass
class FindingLog:
    """The findings about one domain, bounded: the first ``keep`` of each kind in full, the rest counted.

    Iterating gives the kept findings in arrival order, then one summary finding per kind that
    overflowed (``... N more ...``, batch 0). A domain that sends 10^4 bad batches costs the
    auditor ``keep`` findings per kind and a counter, and its contracts' reports stay a few kB:
    kept in full, 10 000 rejected batches made every such report 3.35 MB (2 kB without them),
    near gRPC's default 4 MB message limit, and the auditor's RSS rose by ~100 MB answering
    them. What the verdicts depend on -- which kinds were found about which domain -- is kept
    exactly; ``len`` and :meth:`count` are the true totals.
    """

    domain_id: str
    keep: int = FINDINGS_KEPT
    kept: list[Finding] = field(default_factory=list)
    more: Counter[FindingKind] = field(default_factory=Counter)
    _per_kind: Counter[FindingKind] = field(default_factory=Counter)

    def append(self, finding: Finding) -> None:
        """Record ``finding`` (in full while its kind has fewer than ``keep``, else only counted)."""
        if self._per_kind[finding.kind] < self.keep:
            self._per_kind[finding.kind] += 1
            self.kept.append(finding)
        else:
            self.more[finding.kind] += 1

    def count(self, kind: FindingKind) -> int:
        """Findings of ``kind`` recorded, kept or not."""
        return self._per_kind[kind] + self.more[kind]

    def __len__(self) -> int:
        return len(self.kept) + sum(self.more.values())

    def __iter__(self) -> Iterator[Finding]:
        yield from self.kept
        for kind, n in self.more.items():
            yield Finding(kind, self.domain_id, f"{n} more {kind.value} finding{'s' if n > 1 else ''} not listed "
                          f"(the first {self.keep} are)")


@dataclass(frozen=True, eq=False)
class Batch:
    """A verified batch body as columns (times in s since the run's epoch)."""

    sequence: int
    window: tuple[float, float]
    tenants: tuple[str, ...]
    packet_id: np.ndarray
    tenant_index: np.ndarray
    ingress: np.ndarray
    egress: np.ndarray
    lost: np.ndarray
    error: np.ndarray

    @classmethod
    def from_body(cls, body: telemetry_pb2.TelemetryBatchBody) -> Batch:
        p = body.packets
        return cls(int(body.batch_sequence), (body.window_start_s, body.window_end_s), tuple(body.tenants),
                   np.asarray(p.packet_id, np.uint64), np.asarray(p.tenant_index, np.int64),
                   np.asarray(p.ingress_s, np.float64), np.asarray(p.egress_s, np.float64),
                   np.asarray(p.lost, bool), np.asarray(p.error, bool))

    def __len__(self) -> int:
        return len(self.packet_id)


@dataclass
class DomainChain:
    """The batches of one domain, linked or held, and what was found about them."""

    domain_id: str
    linked: list[Batch] = field(default_factory=list)
    held: dict[int, tuple[Batch, bytes, bytes]] = field(default_factory=dict)  # seq -> (batch, prev, digest)
    last_sequence: int = 0
    last_sha256: bytes = b""
    seen: dict[bytes, int] = field(default_factory=dict)  # body digest -> sequence
    findings: FindingLog = field(init=False)

    def __post_init__(self) -> None:
        self.findings = FindingLog(self.domain_id)

    @property
    def packets(self) -> int:
        """Rows received (linked and held)."""
        return sum(len(b) for b in self.linked) + sum(len(b) for b, _, _ in self.held.values())

    def batches(self) -> list[Batch]:
        """Every batch received and kept, in sequence order."""
        return sorted(self.linked + [b for b, _, _ in self.held.values()], key=lambda b: b.sequence)

    def offer(self, body: telemetry_pb2.TelemetryBatchBody, data: bytes) -> tuple[bool, str]:
        """Take a verified body (``data``: its signed bytes); returns ``(accepted, reason)``.

        A rejection is also recorded as a finding.
        """
        seq = int(body.batch_sequence)
        digest = body_sha256(data)
        if digest in self.seen:
            return self._reject(FindingKind.REPLAY, seq, f"batch {seq} was already received")
        taken = seq <= self.last_sequence or seq in self.held
        if taken:
            return self._reject(FindingKind.EQUIVOCATION, seq,
                                f"a second, different signed batch with sequence {seq}")
        batch = Batch.from_body(body)
        prev = bytes(body.previous_batch_sha256)
        if seq == self.last_sequence + 1:
            if prev != self.last_sha256:
                return self._reject(FindingKind.BROKEN_CHAIN, seq,
                                    f"batch {seq} does not carry the SHA-256 of batch {seq - 1}")
            self.seen[digest] = seq
            self._link(batch, digest)
            later = [s for s in self.held if s > seq]
            if later:
                self.findings.append(Finding(FindingKind.REORDER, self.domain_id,
                                             f"batch {seq} arrived after batch {max(later)}", seq))
            self._drain()
            return True, ""
        self.seen[digest] = seq
        self.held[seq] = (batch, prev, digest)
        return True, f"held: batch {self.last_sequence + 1} not yet received"

    def _link(self, batch: Batch, digest: bytes) -> None:
        self.linked.append(batch)
        self.last_sequence = batch.sequence
        self.last_sha256 = digest

    def _drain(self) -> None:
        while self.last_sequence + 1 in self.held:
            batch, prev, digest = self.held.pop(self.last_sequence + 1)
            if prev != self.last_sha256:
                self.findings.append(Finding(FindingKind.BROKEN_CHAIN, self.domain_id,
                                             f"batch {batch.sequence} does not carry the SHA-256 of batch "
                                             f"{batch.sequence - 1}", batch.sequence))
                del self.seen[digest]
                continue
            self._link(batch, digest)

    def _reject(self, kind: FindingKind, seq: int, detail: str) -> tuple[bool, str]:
        f = Finding(kind, self.domain_id, detail, seq)
        self.findings.append(f)
        return False, f.sentence()

    def gaps(self) -> list[Finding]:
        """The runs of sequence numbers missing below the highest one received, as findings.

        Computed from the sequences held (never by walking the missing numbers: a batch numbered
        10^15 costs one finding, not 10^15 steps).
        """
        out = []
        below = self.last_sequence
        for s in sorted(self.held):
            if s > below + 1:
                a, b = below + 1, s - 1
                what = f"batch {a}" if a == b else f"batches {a}-{b}"
                out.append(Finding(FindingKind.GAP, self.domain_id, f"{what} never arrived (batch {s} did)", a))
            below = s
        return out
