"""Signed, hash-chained, columnar telemetry batches built from the data plane's per-domain logs.

A domain reports the packets it saw as a sequence of :class:`~trefed.v1.telemetry_pb2.SignedTelemetryBatch`:
each body (``TelemetryBatchBody``) holds up to ``batch_packets`` rows as packed columns
(``PacketColumns``), its ``batch_sequence`` (1, 2, 3, ...), the SHA-256 of the previous batch's
body bytes (empty for the first), the ingress-time window it covers, and is signed with the
domain's Ed25519 key by :func:`federation.tre.signing.sign` (verified by
:meth:`federation.tre.trust.TrustStore.verify` with :func:`validate_batch`).

Packet identity: the data plane names a packet by its flow and its number within the flow; on the
wire it is ``packet_id = flow * 2**40 + seq`` (:func:`packet_ids`), the same in every domain the
packet crosses, which is what lets the auditor match one domain's egress with the next one's
ingress.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from google.protobuf.message import DecodeError
from trefed.v1 import telemetry_pb2

from federation.dataplane.telemetry import DomainLog, Telemetry
from federation.errors import FieldError, InputError
from federation.tre.signing import SigningKey, sign
from federation.tre.validate import timestamp_from_seconds

__all__ = [
    "FLOW_SHIFT",
    "packet_ids",
    "body_sha256",
    "build_batches",
    "batches_from_telemetry",
    "validate_batch",
    "claimed_domain",
]

#: ``packet_id = flow << FLOW_SHIFT | seq``: room for 2**40 packets per flow.
FLOW_SHIFT = 40


def packet_ids(flow: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """The wire ids (uint64) of packets ``(flow, seq)`` of the data plane."""
    return (np.asarray(flow, np.uint64) << np.uint64(FLOW_SHIFT)) | np.asarray(seq, np.uint64)


def body_sha256(body_bytes: bytes) -> bytes:
    """SHA-256 of a batch's body bytes: what the next batch carries as ``previous_batch_sha256``."""
    return hashlib.sha256(body_bytes).digest()


def _splits(ingress: np.ndarray, batch_packets: int) -> list[int]:
    """Row indices where batches start: every ``batch_packets`` rows, moved forward past equal
    ingress times so that the half-open windows ``[start, end)`` hold every row of their batch."""
    out = [0]
    i = batch_packets
    n = len(ingress)
    while i < n:
        while i < n and ingress[i] == ingress[i - 1]:
            i += 1
        if i < n:
            out.append(i)
        i += batch_packets
    return out


def build_batches(
    log: DomainLog,
    domain_id: str,
    key: SigningKey,
    *,
    tenant_ids: Mapping[int, str],
    batch_packets: int = 10_000,
    start_sequence: int = 1,
    previous_sha256: bytes = b"",
    window_start_s: float = 0.0,
    window_end_s: float | None = None,
    clock: Callable[[], float] = time.time,
) -> list[telemetry_pb2.SignedTelemetryBatch]:
    """Sign ``log`` as a hash chain of columnar batches.

    Parameters
    ----------
    log
        One domain's packets (any order; rows are reported in ingress-time order, ties kept).
    domain_id
        The domain's id; must be ``key.domain_id``.
    key
        The domain's signing key.
    tenant_ids
        Tenant id of each data-plane tenant index in ``log.tenant``.
    batch_packets
        Rows per batch, >= 1 (more when equal ingress times straddle a boundary). 10 000 rows are
        about 300 kB, well below the verifier's 1 MiB cap.
    start_sequence, previous_sha256
        Continue an earlier chain: the next sequence and the SHA-256 of the last body sent.
    window_start_s, window_end_s
        Ingress-time window of the whole log, s since the run's epoch; ``window_end_s`` defaults
        to just after the last ingress. Batches tile it: ``[start_k, start_{k+1})``.
    clock
        Unix time, s, stamped as ``reported_at``.

    Returns
    -------
    list of SignedTelemetryBatch
        In sequence order; an empty log gives one empty batch (the domain says it saw nothing).

    Raises
    ------
    InputError
        ``domain_id`` differs from the key's, a tenant index has no id, or a bad parameter.
    """
    if domain_id != key.domain_id:
        raise InputError(f"domain_id(={domain_id!r}) is not the signing key's domain {key.domain_id!r}")
    if batch_packets < 1:
        raise InputError(f"batch_packets(={batch_packets}) must be >= 1")
    if start_sequence < 1:
        raise InputError(f"start_sequence(={start_sequence}) must be >= 1")
    order = np.argsort(log.ingress, kind="stable")
    ingress = np.asarray(log.ingress, np.float64)[order]
    egress = np.asarray(log.egress, np.float64)[order]
    lost = np.asarray(log.lost, bool)[order]
    error = np.asarray(log.error, bool)[order]
    tenant = np.asarray(log.tenant)[order]
    ids = packet_ids(np.asarray(log.flow)[order], np.asarray(log.seq)[order])
    known = sorted({int(t) for t in np.unique(tenant)})
    missing = [t for t in known if t not in tenant_ids]
    if missing:
        raise InputError(f"tenant_ids: no id for data-plane tenant(s) {missing}")
    end = window_end_s
    if end is None:
        end = float(np.nextafter(ingress[-1], math.inf)) if len(ingress) else float(window_start_s)
    starts = _splits(ingress, batch_packets) if len(ingress) else [0]
    bounds = starts + [len(ingress)]
    out = []
    prev = previous_sha256
    for k in range(len(starts)):
        a, b = bounds[k], bounds[k + 1]
        w0 = float(window_start_s) if k == 0 else float(ingress[a])
        w1 = float(end) if k == len(starts) - 1 else float(ingress[b])
        t = tenant[a:b]
        names = sorted({tenant_ids[int(x)] for x in np.unique(t)})
        index = {n: i for i, n in enumerate(names)}
        lut = np.array([index.get(tenant_ids.get(int(x), ""), 0) for x in range(int(t.max()) + 1)] if len(t) else [],
                       np.uint32)
        body = telemetry_pb2.TelemetryBatchBody(
            domain_id=domain_id,
            batch_sequence=start_sequence + k,
            previous_batch_sha256=prev,
            tenants=names,
            window_start_s=w0,
            window_end_s=w1,
            packets=telemetry_pb2.PacketColumns(
                packet_id=ids[a:b].tolist(),
                tenant_index=lut[t].tolist() if len(t) else [],
                ingress_s=ingress[a:b].tolist(),
                egress_s=egress[a:b].tolist(),
                lost=lost[a:b].tolist(),
                error=error[a:b].tolist(),
            ),
        )
        body.reported_at.CopyFrom(timestamp_from_seconds(clock(), "reported_at"))
        signed = sign(body, key, telemetry_pb2.SignedTelemetryBatch)
        prev = body_sha256(signed.body)
        out.append(signed)
    return out


def batches_from_telemetry(
    telemetry: Telemetry,
    keys: Sequence[SigningKey],
    *,
    tenant_ids: Mapping[int, str],
    batch_packets: int = 10_000,
    clock: Callable[[], float] = time.time,
) -> dict[str, list[telemetry_pb2.SignedTelemetryBatch]]:
    """Every domain's chain of a data-plane run: ``keys[i]`` signs domain ``i``'s log.

    Raises
    ------
    InputError
        The run kept no per-domain logs (``record_domains=False``) or ``keys`` does not have one
        key per domain.
    """
    if telemetry.domains is None:
        raise InputError("the run kept no per-domain logs (simulate with record_domains=True)")
    if len(keys) != len(telemetry.domains):
        raise InputError(f"keys: {len(keys)} given for {len(telemetry.domains)} domains")
    return {
        key.domain_id: build_batches(log, key.domain_id, key, tenant_ids=tenant_ids,
                                     batch_packets=batch_packets, clock=clock)
        for log, key in zip(telemetry.domains, keys)
    }


def validate_batch(body: telemetry_pb2.TelemetryBatchBody) -> None:
    """The rules of a batch body, raising :class:`~federation.errors.FieldError` naming the field.

    ``batch_sequence >= 1``; ``previous_batch_sha256`` empty or 32 bytes (empty only for batch 1);
    a finite window with ``start <= end``; every column as long as ``packet_id``; every
    ``tenant_index`` below ``len(tenants)``; finite ingress times; ``egress_s`` NaN exactly where
    ``lost`` and otherwise ``>= ingress_s``.
    """
    if body.batch_sequence < 1:
        raise FieldError("batch_sequence", f"(={body.batch_sequence}) must be >= 1")
    h = body.previous_batch_sha256
    if len(h) not in (0, 32) or (len(h) == 0) != (body.batch_sequence == 1):
        raise FieldError("previous_batch_sha256", f"has {len(h)} bytes; 32 expected (none for batch 1 only)")
    w0, w1 = body.window_start_s, body.window_end_s
    if not (math.isfinite(w0) and math.isfinite(w1) and w0 <= w1):
        raise FieldError("window_end_s", f"(={w1!r}) must be finite and >= window_start_s(={w0!r})")
    p = body.packets
    n = len(p.packet_id)
    for name in ("tenant_index", "ingress_s", "egress_s", "lost", "error"):
        if len(getattr(p, name)) != n:
            raise FieldError(f"packets.{name}", f"has {len(getattr(p, name))} rows, packet_id has {n}")
    if n == 0:
        return
    ti = np.asarray(p.tenant_index)
    if int(ti.max()) >= len(body.tenants):
        raise FieldError("packets.tenant_index", f"(={int(ti.max())}) must be < len(tenants)(={len(body.tenants)})")
    ing = np.asarray(p.ingress_s)
    eg = np.asarray(p.egress_s)
    lost = np.asarray(p.lost, bool)
    if not np.isfinite(ing).all():
        raise FieldError("packets.ingress_s", "must be finite")
    if not np.array_equal(np.isnan(eg), lost):
        raise FieldError("packets.egress_s", "must be NaN exactly where lost")
    kept = ~lost
    if (eg[kept] < ing[kept]).any():
        i = int(np.flatnonzero(kept & (eg < ing))[0])
        raise FieldError(f"packets.egress_s[{i}]", f"(={eg[i]!r}) must be >= ingress_s(={ing[i]!r})")


def claimed_domain(signed: telemetry_pb2.SignedTelemetryBatch) -> tuple[str, int]:
    """The ``(domain_id, batch_sequence)`` a batch *claims*, without verifying it ('', 0 if undecodable)."""
    try:
        body = telemetry_pb2.TelemetryBatchBody.FromString(signed.body)
    except (DecodeError, TypeError, AttributeError):
        return "", 0
    return body.domain_id, int(body.batch_sequence)
