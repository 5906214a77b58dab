"""Telemetry batches: columnar, sequence-numbered, hash-chained, signed; Parquet files and back, bit for bit."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from trefed.v1 import telemetry_pb2

from federation.audit.batches import (
    FLOW_SHIFT,
    batches_from_telemetry,
    body_sha256,
    build_batches,
    packet_ids,
    validate_batch,
)
from federation.audit.parquet import BATCHES_FILE, PACKETS_FILE, SCHEMA_VERSION, read_batches, write_batches
from federation.audit.scenario import audited_run
from federation.dataplane.telemetry import DomainLog
from federation.errors import FieldError, InputError, VerificationError
from federation.tre.signing import Reason, SigningKey
from federation.tre.trust import TrustStore

CLOCK = 1_767_225_600.0


@pytest.fixture(scope="module")
def run():
    return audited_run(packets=3000, batch_packets=1000, seed=3)


def _verify(trust: TrustStore, signed: telemetry_pb2.SignedTelemetryBatch) -> telemetry_pb2.TelemetryBatchBody:
    return trust.verify(signed, telemetry_pb2.TelemetryBatchBody, domain_of=lambda b: b.domain_id,
                        validate=validate_batch)


def test_batches_are_columnar_numbered_chained_and_signed(run):
    for key in run.keys:
        chain = run.batches[key.domain_id]
        assert len(chain) == 3
        prev = b""
        for k, signed in enumerate(chain, start=1):
            body = _verify(run.trust, signed)
            assert body.domain_id == key.domain_id and body.batch_sequence == k
            assert body.previous_batch_sha256 == prev
            assert body.key_id == key.key_id == signed.signature.key_id
            assert len(body.packets.packet_id) == len(body.packets.egress_s) == 1000
            assert list(body.tenants) == ["tenant-a"]
            prev = body_sha256(signed.body)


def test_the_rows_are_the_domain_log_and_windows_tile_time(run):
    log = run.telemetry.domains[1]
    bodies = [telemetry_pb2.TelemetryBatchBody.FromString(b.body) for b in run.batches["transport"]]
    ids = np.concatenate([np.asarray(b.packets.packet_id, np.uint64) for b in bodies])
    ingress = np.concatenate([np.asarray(b.packets.ingress_s) for b in bodies])
    order = np.argsort(log.ingress, kind="stable")
    assert np.array_equal(ids, packet_ids(log.flow, log.seq)[order])
    assert np.array_equal(ingress, log.ingress[order])
    assert bodies[0].window_start_s == 0.0
    for a, b in zip(bodies, bodies[1:]):
        assert a.window_end_s == b.window_start_s == b.packets.ingress_s[0]
    for b in bodies:
        assert all(b.window_start_s <= t < b.window_end_s for t in b.packets.ingress_s)


def test_packet_ids_pack_flow_and_sequence():
    ids = packet_ids(np.array([0, 3]), np.array([7, 9]))
    assert ids.dtype == np.uint64 and list(ids) == [7, (3 << FLOW_SHIFT) | 9]


def test_equal_ingress_times_stay_in_one_batch():
    t = np.array([0.0, 1.0, 1.0, 1.0, 2.0])
    log = DomainLog(0, np.zeros(5, np.int16), np.arange(5), np.zeros(5, np.int32), t, t + 0.5,
                    np.zeros(5, bool), np.zeros(5, bool))
    key = SigningKey.generate("access")
    chain = build_batches(log, "access", key, tenant_ids={0: "t"}, batch_packets=2, clock=lambda: CLOCK)
    sizes = [len(telemetry_pb2.TelemetryBatchBody.FromString(b.body).packets.packet_id) for b in chain]
    assert sizes == [4, 1]  # the boundary after row 2 moves past the tied times 1.0


def test_build_refuses_a_foreign_key_and_unknown_tenants(run):
    log = run.telemetry.domains[0]
    with pytest.raises(InputError, match="signing key's domain"):
        build_batches(log, "access", run.keys[1], tenant_ids={0: "t"})
    with pytest.raises(InputError, match="tenant_ids"):
        build_batches(log, "access", run.keys[0], tenant_ids={})
    with pytest.raises(InputError, match="keys: 1 given for 3"):
        batches_from_telemetry(run.telemetry, run.keys[:1], tenant_ids={0: "t"})


@pytest.mark.parametrize("mutate, field", [
    (lambda b: setattr(b, "batch_sequence", 0), "batch_sequence"),
    (lambda b: setattr(b, "previous_batch_sha256", b"x"), "previous_batch_sha256"),
    (lambda b: b.packets.lost.append(True), "packets.lost"),
    (lambda b: b.packets.tenant_index.__setitem__(0, 5), "packets.tenant_index"),
    (lambda b: b.packets.egress_s.__setitem__(0, float("nan")), "packets.egress_s"),
    (lambda b: b.packets.egress_s.__setitem__(0, -1.0), "packets.egress_s[0]"),
    (lambda b: setattr(b, "window_end_s", -1.0), "window_end_s"),
])
def test_validate_batch_names_the_field(run, mutate, field):
    body = telemetry_pb2.TelemetryBatchBody.FromString(run.batches["access"][0].body)
    mutate(body)
    with pytest.raises(FieldError) as err:
        validate_batch(body)
    assert err.value.field == field


def test_parquet_round_trip_is_bit_for_bit_and_reverifies(run, tmp_path):
    batches = run.all_batches()
    write_batches(batches, tmp_path)
    back = read_batches(tmp_path)
    assert [b.SerializeToString() for b in back] == [b.SerializeToString() for b in batches]
    fresh = TrustStore()  # an offline verifier with only the public keys
    for k in run.keys:
        fresh.add(k.key_id, k.domain_id, k.public_key_bytes())
    for b in back:
        _verify(fresh, b)


def test_parquet_files_are_plain_tables_with_the_documented_schema(run, tmp_path):
    write_batches(run.all_batches(), tmp_path)
    packets = pq.read_table(tmp_path / PACKETS_FILE)
    batches = pq.read_table(tmp_path / BATCHES_FILE)
    assert packets.schema.metadata[b"trefed.schema"] == SCHEMA_VERSION.encode()
    assert packets.num_rows == 3 * 3000 and batches.num_rows == 9
    assert packets.column_names == ["batch_index", "domain_id", "batch_sequence", "row", "packet_id", "tenant",
                                    "tenant_index", "ingress_s", "egress_s", "lost", "error"]
    transport = packets.filter(pc.equal(packets["domain_id"], "transport"))
    delay = pc.subtract(transport["egress_s"], transport["ingress_s"]).to_numpy()
    log = run.telemetry.domains[1]
    assert np.allclose(np.sort(delay), np.sort(log.sojourn))
    assert batches["body_sha256"].to_pylist()[0] == body_sha256(run.all_batches()[0].body)


def test_a_row_changed_in_the_file_fails_its_signature(run, tmp_path):
    write_batches(run.all_batches(), tmp_path)
    table = pq.read_table(tmp_path / PACKETS_FILE)
    eg = table["egress_s"].to_numpy().copy()
    eg[1500] -= 1.0  # row 1500: access's batch 2 (batch_index 1)
    pq.write_table(table.set_column(table.column_names.index("egress_s"), "egress_s", [eg]), tmp_path / PACKETS_FILE)
    back = read_batches(tmp_path)
    with pytest.raises(VerificationError) as err:
        _verify(run.trust, back[1])
    assert err.value.reason == Reason.BAD_SIGNATURE
    _verify(run.trust, back[0])


def test_reading_bad_files_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such telemetry file"):
        read_batches(tmp_path)
    (tmp_path / PACKETS_FILE).write_bytes(b"not parquet")
    (tmp_path / BATCHES_FILE).write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a Parquet file"):
        read_batches(tmp_path)


def test_an_empty_log_is_one_empty_signed_batch_and_files_may_be_empty(tmp_path):
    key = SigningKey.generate("access")
    empty = DomainLog(0, *(np.empty(0, t) for t in (np.int16, np.int64, np.int32, float, float, bool, bool)))
    (signed,) = build_batches(empty, "access", key, tenant_ids={}, window_start_s=5.0, clock=lambda: CLOCK)
    trust = TrustStore()
    trust.add_key(key)
    body = _verify(trust, signed)
    assert body.window_start_s == body.window_end_s == 5.0 and not body.packets.packet_id
    write_batches([signed], tmp_path / "one")
    assert [b.SerializeToString() for b in read_batches(tmp_path / "one")] == [signed.SerializeToString()]
    write_batches([], tmp_path / "none")
    assert read_batches(tmp_path / "none") == []


def test_parquet_round_trip_keeps_a_wall_clock_stamp_with_nanoseconds(tmp_path):
    """A batch stamped by a real clock (not a whole microsecond) reads back bit for bit (it used to
    fail: pyarrow cannot turn a nanosecond timestamp into a datetime)."""
    key = SigningKey.generate("access")
    log = DomainLog(0, np.zeros(3, np.int16), np.arange(3), np.zeros(3, np.int32), np.array([0.0, 1.0, 2.0]),
                    np.array([0.5, 1.5, 2.5]), np.zeros(3, bool), np.zeros(3, bool))
    batches = build_batches(log, "access", key, tenant_ids={0: "t"}, clock=lambda: 1_796_164_777.827029761)
    write_batches(batches, tmp_path)
    assert [b.SerializeToString() for b in read_batches(tmp_path)] == [b.SerializeToString() for b in batches]
