"""A domain's telemetry: what its meters saw, signed with its own key, submitted to the auditor.

:class:`TelemetryReporter` keeps the domain's hash chain (next ``batch_sequence``, SHA-256 of the last
body sent) across reports, signs each report's packet log as columnar batches
(:func:`federation.audit.batches.build_batches`) and submits them in order to the auditor's
``SubmitTelemetry`` over gRPC. A domain told to lie (``under_report_s``, the emulation of a
dishonest operator) reports every egress that much earlier (never before the ingress,
:func:`federation.audit.scenario.shift_egress`): its own delays look smaller, and the next domain's
ingress times contradict them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc
from trefed.v1 import services_pb2_grpc, telemetry_pb2

from federation.audit.batches import body_sha256, build_batches
from federation.audit.scenario import shift_egress
from federation.dataplane.telemetry import DomainLog
from federation.errors import InputError
from federation.tre.signing import SigningKey

__all__ = ["TelemetryReceipt", "TelemetryReporter"]


@dataclass(frozen=True)
class TelemetryReceipt:
    """What the auditor answered to one report.

    Attributes
    ----------
    domain_id : str
    batches, accepted : int
        Batches sent, and accepted by the auditor.
    packets : int
        Rows reported.
    packets_total : int
        Rows the auditor holds from this domain after the report.
    reasons : tuple of str
        The auditor's reason for each refused batch.
    signed : tuple of bytes
        Every batch sent, serialized (``SignedTelemetryBatch``): what the run keeps as Parquet.
    """

    domain_id: str
    batches: int
    accepted: int
    packets: int
    packets_total: int
    reasons: tuple[str, ...]
    signed: tuple[bytes, ...]


class TelemetryReporter:
    """One domain's telemetry chain (see the module docstring).

    Parameters
    ----------
    key : SigningKey
        The domain's key; its ``domain_id`` names the reports.
    batch_packets : int
        Rows per batch (>= 1).
    clock : callable
        Unix time, s (``reported_at``).
    """

    def __init__(self, key: SigningKey, *, batch_packets: int = 20_000, clock: Callable[[], float] = time.time) -> None:
        if batch_packets < 1:
            raise InputError(f"batch_packets(={batch_packets}) must be >= 1")
        self.key = key
        self.batch_packets = int(batch_packets)
        self.clock = clock
        self.next_sequence = 1
        self.previous_sha256 = b""

    def sign(self, log: DomainLog, tenant_ids: Mapping[int, str], *, window_start_s: float, window_end_s: float,
             under_report_s: float = 0.0) -> list[telemetry_pb2.SignedTelemetryBatch]:
        """The batches of ``log`` (ingress times in ``[window_start_s, window_end_s)``), continuing the chain."""
        if not (math.isfinite(under_report_s) and under_report_s >= 0):
            raise InputError(f"under_report_s(={under_report_s!r}) must be finite and >= 0")
        if under_report_s > 0:
            log = shift_egress(log, under_report_s)
        batches = build_batches(log, self.key.domain_id, self.key, tenant_ids=tenant_ids,
                                batch_packets=self.batch_packets, start_sequence=self.next_sequence,
                                previous_sha256=self.previous_sha256, window_start_s=window_start_s,
                                window_end_s=window_end_s, clock=self.clock)
        self.next_sequence += len(batches)
        self.previous_sha256 = body_sha256(batches[-1].body)
        return batches

    async def submit(self, batches: list[telemetry_pb2.SignedTelemetryBatch], channel: grpc.aio.Channel, *,
                     timeout_s: float, packets: int) -> TelemetryReceipt:
        """Send ``batches`` (holding ``packets`` rows) in order to the auditor behind ``channel``."""
        stub = services_pb2_grpc.AuditorStub(channel)
        accepted, total, reasons = 0, 0, []
        for b in batches:
            r = await stub.SubmitTelemetry(b, timeout=timeout_s)
            if r.accepted:
                accepted += 1
            else:
                reasons.append(r.reason)
            total = int(r.packets_total)
        return TelemetryReceipt(self.key.domain_id, len(batches), accepted, packets, total, tuple(reasons),
                                tuple(b.SerializeToString() for b in batches))
