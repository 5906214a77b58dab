"""Telemetry batches as Parquet files, readable with pandas, polars or DuckDB, and back.

A telemetry directory holds two files (schema version ``trefed.telemetry/1``, in each file's
key-value metadata under ``trefed.schema``):

``packets.parquet``, one row per packet per domain per batch:

=================  ===============  ==========================================================
column             type             meaning
=================  ===============  ==========================================================
batch_index        int64            the batch's row in ``batches.parquet`` (arrival order)
domain_id          string           the reporting domain
batch_sequence     uint64           the batch's sequence number in the domain's chain
row                uint32           the packet's position in its batch
packet_id          uint64           the packet (same id in every domain: flow * 2^40 + seq)
tenant             string           the tenant id
tenant_index       uint32           index of ``tenant`` in the batch's ``tenants``
ingress_s          float64          arrival at the domain, s since the run's epoch
egress_s           float64          departure, s; NaN when lost
lost               bool             dropped in this domain
error              bool             wrong inference answer in this domain
=================  ===============  ==========================================================

``batches.parquet``, one row per batch, everything else a verifier needs: ``batch_index``
(int64), ``domain_id``, ``batch_sequence``, ``previous_batch_sha256`` (binary, empty for the first
batch), ``body_sha256`` (binary, SHA-256 of the signed body bytes, for the chain),
``tenants`` (list of string), ``window_start_s``, ``window_end_s`` (float64, s),
``reported_at`` (timestamp, ns, UTC; null if unset), ``key_id`` (string), ``signature_algorithm``
(int32, 1 = Ed25519), ``signature_key_id`` (string), ``signature`` (binary, 64 bytes),
``packets`` (int64, rows of the batch).

Offline verification: :func:`read_batches` rebuilds each ``TelemetryBatchBody`` from its rows and
serializes it deterministically, which gives the signed bytes back exactly (floats and ids are
stored bit for bit), so the signature, the hash chain and every check of the live auditor run
on the files as they would on the wire. A row changed in a file makes its batch fail its
signature. Example (DuckDB): ``SELECT domain_id, quantile_cont(egress_s - ingress_s, 0.999)
FROM 'packets.parquet' WHERE NOT lost GROUP BY domain_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError
from trefed.v1 import telemetry_pb2

from federation.audit.batches import body_sha256
from federation.errors import InputError

__all__ = ["SCHEMA_VERSION", "PACKETS_FILE", "BATCHES_FILE", "write_batches", "read_batches"]

SCHEMA_VERSION = "trefed.telemetry/1"
PACKETS_FILE = "packets.parquet"
BATCHES_FILE = "batches.parquet"


def _schemas():  # noqa: ANN202 - pyarrow is imported lazily
    import pyarrow as pa

    meta = {b"trefed.schema": SCHEMA_VERSION.encode()}
    packets = pa.schema([
        ("batch_index", pa.int64()), ("domain_id", pa.string()), ("batch_sequence", pa.uint64()),
        ("row", pa.uint32()), ("packet_id", pa.uint64()), ("tenant", pa.string()),
        ("tenant_index", pa.uint32()), ("ingress_s", pa.float64()), ("egress_s", pa.float64()),
        ("lost", pa.bool_()), ("error", pa.bool_()),
    ], metadata=meta)
    batches = pa.schema([
        ("batch_index", pa.int64()), ("domain_id", pa.string()), ("batch_sequence", pa.uint64()),
        ("previous_batch_sha256", pa.binary()), ("body_sha256", pa.binary()), ("tenants", pa.list_(pa.string())),
        ("window_start_s", pa.float64()), ("window_end_s", pa.float64()),
        ("reported_at", pa.timestamp("ns", tz="UTC")), ("key_id", pa.string()),
        ("signature_algorithm", pa.int32()), ("signature_key_id", pa.string()), ("signature", pa.binary()),
        ("packets", pa.int64()),
    ], metadata=meta)
    return packets, batches


def write_batches(batches: Iterable[telemetry_pb2.SignedTelemetryBatch], directory: str | Path) -> Path:
    """Write signed batches (in the order given) to ``directory`` as the two files above.

    Returns
    -------
    Path
        ``directory``.

    Raises
    ------
    InputError
        A batch body does not decode (the message gives its position).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    packets_schema, batches_schema = _schemas()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list] = {f.name: [] for f in batches_schema}
    pcols: dict[str, list[np.ndarray]] = {f.name: [] for f in packets_schema}
    for i, signed in enumerate(batches):
        try:
            body = telemetry_pb2.TelemetryBatchBody.FromString(signed.body)
        except DecodeError as exc:
            raise InputError(f"batch {i}: body does not decode ({exc})") from exc
        p = body.packets
        n = len(p.packet_id)
        ts = (body.reported_at.seconds * 1_000_000_000 + body.reported_at.nanos) if body.HasField("reported_at") else None
        for k, v in (("batch_index", i), ("domain_id", body.domain_id), ("batch_sequence", body.batch_sequence),
                     ("previous_batch_sha256", body.previous_batch_sha256), ("body_sha256", body_sha256(signed.body)),
                     ("tenants", list(body.tenants)), ("window_start_s", body.window_start_s),
                     ("window_end_s", body.window_end_s), ("reported_at", ts), ("key_id", body.key_id),
                     ("signature_algorithm", signed.signature.algorithm),
                     ("signature_key_id", signed.signature.key_id), ("signature", signed.signature.signature),
                     ("packets", n)):
            cols[k].append(v)
        ti = np.asarray(p.tenant_index, np.uint32)
        names = np.asarray(list(body.tenants) or [""], dtype=object)
        pcols["batch_index"].append(np.full(n, i, np.int64))
        pcols["domain_id"].append(np.full(n, body.domain_id, dtype=object))
        pcols["batch_sequence"].append(np.full(n, body.batch_sequence, np.uint64))
        pcols["row"].append(np.arange(n, dtype=np.uint32))
        pcols["packet_id"].append(np.asarray(p.packet_id, np.uint64))
        pcols["tenant"].append(names[np.minimum(ti, len(names) - 1)] if n else np.empty(0, object))
        pcols["tenant_index"].append(ti)
        pcols["ingress_s"].append(np.asarray(p.ingress_s, np.float64))
        pcols["egress_s"].append(np.asarray(p.egress_s, np.float64))
        pcols["lost"].append(np.asarray(p.lost, bool))
        pcols["error"].append(np.asarray(p.error, bool))
    cols["reported_at"] = pa.array(cols["reported_at"], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table(cols, schema=batches_schema), out / BATCHES_FILE)
    ptable = pa.table(
        {f.name: pa.array(np.concatenate(pcols[f.name]) if pcols[f.name] else [], f.type) for f in packets_schema},
        schema=packets_schema,
    )
    pq.write_table(ptable, out / PACKETS_FILE)
    return out


def read_batches(directory: str | Path) -> list[telemetry_pb2.SignedTelemetryBatch]:
    """The signed batches of a telemetry directory, rebuilt bit for bit, in ``batch_index`` order.

    Nothing is verified here: pass the batches to :class:`~federation.audit.ledger.AuditLedger`.

    Raises
    ------
    InputError
        A file is missing, is not Parquet, lacks a column, or has another schema version.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = Path(directory)
    tables = {}
    for name, schema in zip((PACKETS_FILE, BATCHES_FILE), _schemas()):
        path = src / name
        if not path.is_file():
            raise InputError(f"{path}: no such telemetry file")
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: not a Parquet file ({exc})") from exc
        version = (table.schema.metadata or {}).get(b"trefed.schema", b"").decode()
        if version != SCHEMA_VERSION:
            raise InputError(f"{path}: schema {version!r}, expected {SCHEMA_VERSION!r}")
        missing = [f.name for f in schema if f.name not in table.column_names]
        if missing:
            raise InputError(f"{path}: missing columns {missing}")
        try:
            tables[name] = table.select([f.name for f in schema]).cast(schema)
        except (pa.ArrowException, ValueError) as exc:
            raise InputError(f"{path}: a column has the wrong type ({exc})") from exc
    # reported_at as integer ns: a wall-clock stamp with nanoseconds has no datetime (microseconds)
    batches = tables[BATCHES_FILE]
    b = batches.drop_columns(["reported_at"]).to_pydict()
    b["reported_at"] = batches.column("reported_at").cast(pa.int64()).to_pylist()
    pt = tables[PACKETS_FILE]
    col = {k: pt.column(k).to_numpy(zero_copy_only=False) for k in
           ("batch_index", "row", "packet_id", "tenant_index", "ingress_s", "egress_s", "lost", "error")}
    order = np.lexsort((col["row"], col["batch_index"]))
    col = {k: v[order] for k, v in col.items()}
    out = []
    for j, i in enumerate(b["batch_index"]):
        lo, hi = np.searchsorted(col["batch_index"], [i, i + 1])
        if hi - lo != b["packets"][j]:
            raise InputError(f"{src / PACKETS_FILE}: batch {i} has {hi - lo} rows, {BATCHES_FILE} says {b['packets'][j]}")
        body = telemetry_pb2.TelemetryBatchBody(
            domain_id=b["domain_id"][j], batch_sequence=b["batch_sequence"][j],
            previous_batch_sha256=b["previous_batch_sha256"][j], tenants=b["tenants"][j],
            window_start_s=b["window_start_s"][j], window_end_s=b["window_end_s"][j], key_id=b["key_id"][j],
            packets=telemetry_pb2.PacketColumns(
                packet_id=col["packet_id"][lo:hi].tolist(), tenant_index=col["tenant_index"][lo:hi].tolist(),
                ingress_s=col["ingress_s"][lo:hi].tolist(), egress_s=col["egress_s"][lo:hi].tolist(),
                lost=col["lost"][lo:hi].tolist(), error=col["error"][lo:hi].tolist()),
        )
        ns = b["reported_at"][j]
        if ns is not None:
            body.reported_at.seconds, body.reported_at.nanos = divmod(int(ns), 1_000_000_000)
        signed = telemetry_pb2.SignedTelemetryBatch(body=body.SerializeToString(deterministic=True))
        signed.signature.algorithm = b["signature_algorithm"][j]
        signed.signature.key_id = b["signature_key_id"][j]
        signed.signature.signature = b["signature"][j]
        out.append(signed)
    return out
