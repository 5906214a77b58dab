"""Domain controller logic without sockets: the SQLite store and DomainService with a fake clock."""

from __future__ import annotations

import math
import sqlite3

import grpc
import numpy as np
import pytest
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2

from agents.domain import books
from agents.domain.logic import DomainService
from agents.domain.store import ReservationRecord, ReservationStore
from agents.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from federation.errors import ConfigError, InputError
from federation.tre.signing import SigningKey
from federation.tre.trust import TrustStore

PREPARED, COMMITTED, ABORTED, EXPIRED, RELEASED = (
    reservation_pb2.PREPARED, reservation_pb2.COMMITTED, reservation_pb2.ABORTED,
    reservation_pb2.EXPIRED, reservation_pb2.RELEASED,
)
T0 = 1_800_000_000.0  # a fixed Unix time, s


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def make_template(domain_id: str = "transport", *, capacity: float = 1e8, min_rate: float = 1e5,
                  max_rate: float = 5e7, max_burst: float = 1e6) -> envelope_pb2.EnvelopeBody:
    body = envelope_pb2.EnvelopeBody()
    body.header.domain_id = domain_id
    body.header.tre_id = f"{domain_id}/gold"
    body.header.kind = envelope_pb2.NETWORK
    g = body.guardrails
    g.reservable_capacity_bps = capacity
    g.min_tenant_rate_bps = min_rate
    g.max_tenant_rate_bps = max_rate
    g.max_burst_bits = max_burst
    g.latency_ceiling_s = 0.05
    g.loss_ceiling = 0.01
    m = body.model
    m.service = envelope_pb2.RATE_LATENCY
    m.rate_bps = capacity
    m.latency_s = 0.001
    m.propagation_delay_s = 0.002
    m.loss_probability = 0.001
    return body


def prepare_req(request_id: str, reservation_id: str, *, tenant: str = "t1", rate: float = 1e7,
                burst: float = 1e4, delay: float = 0.01, eps: float = 1e-3, hold: float = 5.0,
                tre_id: str = "") -> reservation_pb2.PrepareRequest:
    return reservation_pb2.PrepareRequest(
        request_id=request_id,
        hold_timeout_s=hold,
        reservation=reservation_pb2.ReservationRequest(
            reservation_id=reservation_id, tenant_id=tenant, tre_id=tre_id, rate_bps=rate,
            burst_bits=burst, delay_budget_s=delay, epsilon=eps,
        ),
    )


def commit_req(request_id: str, reservation_id: str) -> reservation_pb2.CommitRequest:
    return reservation_pb2.CommitRequest(request_id=request_id, reservation_id=reservation_id)


def abort_req(request_id: str, reservation_id: str) -> reservation_pb2.AbortRequest:
    return reservation_pb2.AbortRequest(request_id=request_id, reservation_id=reservation_id, reason="test")


def release_req(request_id: str, reservation_id: str) -> reservation_pb2.ReleaseRequest:
    return reservation_pb2.ReleaseRequest(request_id=request_id, reservation_id=reservation_id)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("transport")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "transport.db")


@pytest.fixture
def svc(key, clock, db_path):
    store = ReservationStore(db_path)
    yield DomainService(make_template(), key, store, clock=clock)
    store.close()


def reopen(svc: DomainService, key: SigningKey, clock: FakeClock, db_path: str, **kw) -> DomainService:
    svc._store.close()
    return DomainService(make_template(**kw), key, ReservationStore(db_path), clock=clock)


# ---------------------------------------------------------------------------------- the store


def record(rid: str, state: int, *, rate: float = 1.0, expires: float = T0 + 1) -> ReservationRecord:
    return ReservationRecord(rid, "t", "x/gold", rate, 0.0, 0.01, 0.1, state, T0, expires, T0, b"fp")


def test_store_is_wal_and_survives_reopen(db_path):
    store = ReservationStore(db_path)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with store.transaction():
        store.put(record("a", COMMITTED, rate=3.0))
        store.put(record("b", PREPARED, expires=T0 + 10))
        store.put(record("c", RELEASED))
        store.put_response("Prepare", "p1", b"digest", b"resp", T0)
    assert store.next_sequence("seq") == 1
    assert store.next_sequence("seq") == 2
    store.close()
    store.close()  # idempotent
    again = ReservationStore(db_path)
    assert [r.reservation_id for r in again.active()] == ["a", "b"]
    assert again.get("a") == record("a", COMMITTED, rate=3.0)
    assert again.get("zzz") is None
    assert again.get_response("Prepare", "p1").response == b"resp"
    assert again.get_response("Commit", "p1") is None
    assert again.next_sequence("seq") == 3
    assert again.expire_prepared(T0 + 9.999) == []
    assert again.expire_prepared(T0 + 10) == ["b"]
    assert again.get("b").state == EXPIRED
    assert again.prune_responses(T0 + 1) == 1 and again.count_responses() == 0
    again.close()


def test_store_transaction_rolls_back_on_error(db_path):
    store = ReservationStore(db_path)
    with pytest.raises(RuntimeError), store.transaction():
        store.put(record("a", COMMITTED))
        with store.transaction():  # nested joins the outer transaction
            store.put(record("b", COMMITTED))
        raise RuntimeError("boom")
    assert store.all() == []
    store.close()


def test_store_refuses_garbage_file(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a sqlite database at all" * 100)
    with pytest.raises(InputError, match="cannot open reservation database"):
        ReservationStore(path)
    with pytest.raises(InputError, match="synchronous"):
        ReservationStore(tmp_path / "x.db", synchronous="OFF")


# ---------------------------------------------------------------------------------- envelope


def test_envelope_is_signed_filled_and_refreshed(svc, key, clock):
    env = svc.get_envelope(services_pb2.GetEnvelopeRequest())
    body = envelope_pb2.EnvelopeBody.FromString(env.body)
    assert body.header.sequence == 1 and body.header.key_id == key.key_id == env.signature.key_id
    assert body.header.issued_at.seconds == int(T0)
    assert body.header.not_after.seconds == int(T0 + 3600)
    key.public_key.verify(env.signature.signature, env.body)  # raises if the signature is wrong
    assert svc.get_envelope(services_pb2.GetEnvelopeRequest(tre_id="transport/gold")) == env
    with pytest.raises(NotFound, match="no service class 'transport/silver'"):
        svc.get_envelope(services_pb2.GetEnvelopeRequest(tre_id="transport/silver"))
    clock.advance(1799)
    assert svc.get_envelope(services_pb2.GetEnvelopeRequest()) == env
    clock.advance(1)  # half the validity is left: re-signed with the next sequence
    fresh = envelope_pb2.EnvelopeBody.FromString(svc.get_envelope(services_pb2.GetEnvelopeRequest()).body)
    assert fresh.header.sequence == 2 and fresh.header.not_after.seconds == int(T0 + 1800 + 3600)


def test_bad_templates_are_config_errors(key, db_path):
    store = ReservationStore(db_path)
    with pytest.raises(ConfigError, match="not the key's domain"):
        DomainService(make_template("access"), key, store)
    with pytest.raises(ConfigError, match="reservable_capacity_bps"):
        DomainService(make_template(capacity=0.0), key, store)
    with pytest.raises(ConfigError, match="max_tenant_rate_bps"):
        DomainService(make_template(max_rate=2e8), key, store)
    with pytest.raises(ConfigError, match="validity_s"):
        DomainService(make_template(), key, store, validity_s=0.0)
    store.close()


# ---------------------------------------------------------------------------------- reservations


def test_prepare_commit_release_cycle(svc, key, clock):
    resp = svc.prepare(prepare_req("p1", "r1", rate=3e7, hold=2.0))
    assert resp.state == PREPARED and resp.available_after_bps == 7e7
    assert resp.expires_at.seconds == int(T0 + 2)
    assert svc.usage() == books.CapacityUsage(1e8, 0.0, 3e7)
    clock.advance(1.0)
    grant = svc.commit(commit_req("c1", "r1"))
    key.public_key.verify(grant.signature.signature, grant.body)
    body = reservation_pb2.GrantBody.FromString(grant.body)
    assert (body.reservation_id, body.domain_id, body.tenant_id, body.tre_id) == ("r1", "transport", "t1", "transport/gold")
    assert (body.rate_bps, body.burst_bits, body.delay_budget_s, body.epsilon) == (3e7, 1e4, 0.01, 1e-3)
    assert body.tre_sequence == svc.envelope_sequence == 1 and body.sequence == 1 and body.key_id == key.key_id
    assert body.granted_at.seconds == int(T0 + 1)
    assert body.not_after == envelope_pb2.EnvelopeBody.FromString(svc.envelope.body).header.not_after
    assert svc.usage() == books.CapacityUsage(1e8, 3e7, 0.0)
    clock.advance(100.0)  # a committed reservation does not expire
    assert svc.usage().committed_bps == 3e7
    rel = svc.release(release_req("x1", "r1"))
    assert rel.state == RELEASED and rel.available_after_bps == 1e8
    assert svc.reservation("r1").state == RELEASED
    status = svc.status(services_pb2.GetStatusRequest(include_reservations=True))
    assert (status.committed_bps, status.prepared_bps, status.available_bps) == (0.0, 0.0, 1e8)
    assert [r.state for r in status.reservations] == [RELEASED]


def test_capacity_rejection_names_domain_and_limit(svc):
    for i in range(3):
        svc.commit(commit_req(f"c{i}", svc.prepare(prepare_req(f"p{i}", f"r{i}", tenant=f"t{i}", rate=3e7)).reservation_id))
    with pytest.raises(ResourceExhausted) as err:
        svc.prepare(prepare_req("p9", "r9", tenant="t9", rate=2e7))
    assert str(err.value) == (
        "domain 'transport': reservable capacity 1e+08 bps exceeded (committed 9e+07, prepared 0, asked 2e+07)"
    )
    assert svc.reservation("r9") is None
    svc.prepare(prepare_req("p10", "r10", tenant="t9", rate=1e7))  # exactly fills the capacity
    assert svc.usage().available_bps == 0.0


def test_per_tenant_guardrails(svc):
    with pytest.raises(FailedPrecondition, match="below guardrail min_tenant_rate_bps 100000"):
        svc.prepare(prepare_req("p1", "r1", rate=5e4))
    with pytest.raises(FailedPrecondition, match="exceeds guardrail max_burst_bits 1e\\+06"):
        svc.prepare(prepare_req("p1", "r1", burst=2e6))
    with pytest.raises(FailedPrecondition, match=r"max_tenant_rate_bps 5e\+07 exceeded for tenant 't1' \(held 0, asked 6e\+07\)"):
        svc.prepare(prepare_req("p1", "r1", rate=6e7))
    svc.prepare(prepare_req("p1", "r1", rate=3e7))
    # the per-tenant maximum counts what the tenant already holds (prepared or committed)
    with pytest.raises(FailedPrecondition, match=r"held 3e\+07, asked 3e\+07"):
        svc.prepare(prepare_req("p2", "r2", rate=3e7))
    svc.prepare(prepare_req("p2", "r2", rate=3e7, tenant="t2"))  # another tenant is fine


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rate": 0.0}, "reservation.rate_bps"),
        ({"rate": -1.0}, "reservation.rate_bps"),
        ({"rate": math.nan}, "reservation.rate_bps"),
        ({"rate": math.inf}, "reservation.rate_bps"),
        ({"burst": -1.0}, "reservation.burst_bits"),
        ({"delay": 0.0}, "reservation.delay_budget_s"),
        ({"eps": 0.0}, "reservation.epsilon"),
        ({"eps": 1.0}, "reservation.epsilon"),
        ({"hold": 0.0}, "hold_timeout_s"),
        ({"hold": 1e9}, "hold_timeout_s"),
        ({"tenant": ""}, "reservation.tenant_id"),
    ],
)
def test_malformed_prepare_is_invalid_argument(svc, change, field):
    with pytest.raises(InvalidArgument, match=f"^{field}"):
        svc.prepare(prepare_req("p1", "r1", **change))
    assert svc.reservation("r1") is None
    assert svc.prepare(prepare_req("p1", "r1")).state == PREPARED  # the request id was not consumed


def test_missing_ids_are_invalid_argument(svc):
    with pytest.raises(InvalidArgument, match="^request_id"):
        svc.prepare(prepare_req("", "r1"))
    with pytest.raises(InvalidArgument, match="^reservation.reservation_id"):
        svc.prepare(prepare_req("p1", ""))
    with pytest.raises(InvalidArgument, match="^reservation\\(=None\\) must be set"):
        svc.prepare(reservation_pb2.PrepareRequest(request_id="p1", hold_timeout_s=1.0))
    with pytest.raises(InvalidArgument, match="at most 256"):
        svc.prepare(prepare_req("p" * 300, "r1"))
    for call, req in ((svc.commit, commit_req), (svc.abort, abort_req), (svc.release, release_req)):
        with pytest.raises(InvalidArgument, match="^request_id"):
            call(req("", "r1"))
        with pytest.raises(InvalidArgument, match="^reservation_id"):
            call(req("x", ""))
    with pytest.raises(NotFound, match="no service class"):
        svc.prepare(prepare_req("p1", "r1", tre_id="other/gold"))


def test_idempotent_retries_return_the_same_response(svc, clock):
    first = svc.prepare(prepare_req("p1", "r1", rate=2e7))
    grant = svc.commit(commit_req("c1", "r1"))
    clock.advance(10.0)
    # retries return the logged responses verbatim, even though the state moved on
    assert svc.prepare(prepare_req("p1", "r1", rate=2e7)) == first
    assert svc.commit(commit_req("c1", "r1")) == grant
    assert svc.usage().committed_bps == 2e7  # counted once
    # the same reservation under a new request id: its current state, no second hold
    again = svc.prepare(prepare_req("p1-retry", "r1", rate=2e7))
    assert again.state == COMMITTED and not again.HasField("expires_at")
    assert svc.usage().used_bps == 2e7
    # a committed reservation committed again under a new request id: the same grant
    assert svc.commit(commit_req("c2", "r1")) == grant
    # one request id may serve different methods
    rel = svc.release(release_req("c1", "r1"))
    assert svc.release(release_req("c1", "r1")) == rel
    assert svc.release(release_req("c3", "r1")).state == RELEASED


def test_request_id_reuse_with_different_arguments(svc):
    svc.prepare(prepare_req("p1", "r1", rate=2e7))
    with pytest.raises(FailedPrecondition, match="request_id 'p1' was already used for a different Prepare request"):
        svc.prepare(prepare_req("p1", "r1", rate=3e7))
    with pytest.raises(AlreadyExists, match="reservation 'r1' exists with different parameters"):
        svc.prepare(prepare_req("p2", "r1", rate=3e7))
    svc.commit(commit_req("c1", "r1"))
    with pytest.raises(FailedPrecondition, match="different Commit request"):
        svc.commit(commit_req("c1", "r2"))
    assert svc.usage().used_bps == 2e7


def test_failed_calls_are_not_logged(svc):
    svc.prepare(prepare_req("p0", "r0", tenant="big", rate=5e7))
    svc.prepare(prepare_req("p00", "r00", tenant="big2", rate=5e7))
    with pytest.raises(ResourceExhausted):
        svc.prepare(prepare_req("p1", "r1", rate=1e7))
    svc.abort(abort_req("a0", "r0"))
    # the retry is evaluated afresh and now fits
    assert svc.prepare(prepare_req("p1", "r1", rate=1e7)).state == PREPARED


def test_expiry_is_lazy_and_swept(svc, clock):
    svc.prepare(prepare_req("p1", "r1", rate=4e7, hold=2.0))
    svc.prepare(prepare_req("p2", "r2", tenant="t2", rate=4e7, hold=5.0))
    clock.advance(1.999)
    assert svc.usage().prepared_bps == 8e7
    clock.advance(0.001)  # r1's hold lapses exactly at expires_at
    assert svc.sweep() == 1
    assert svc._store.get("r1").state == EXPIRED
    assert svc.usage().prepared_bps == 4e7
    with pytest.raises(FailedPrecondition, match=r"reservation 'r1' expired at .* \(hold timeout 2 s elapsed before commit\)"):
        svc.commit(commit_req("c1", "r1"))
    clock.advance(3.0)  # lazily, without a sweep: the next call sees r2 expired and has its capacity
    assert svc.prepare(prepare_req("p3", "r3", tenant="t3", rate=5e7)).available_after_bps == 5e7
    assert svc.reservation("r2").state == EXPIRED
    with pytest.raises(FailedPrecondition, match="already EXPIRED"):
        svc.prepare(prepare_req("p4", "r2", tenant="t2", rate=4e7))


def test_abort_and_release_rules(svc):
    svc.prepare(prepare_req("p1", "r1"))
    assert svc.abort(abort_req("a1", "r1")).state == ABORTED
    assert svc.abort(abort_req("a2", "r1")).state == ABORTED  # idempotent on the reservation too
    assert svc.usage().used_bps == 0.0
    with pytest.raises(FailedPrecondition, match="reservation 'r1' was ABORTED; cannot commit"):
        svc.commit(commit_req("c1", "r1"))
    with pytest.raises(FailedPrecondition, match="is ABORTED, not committed"):
        svc.release(release_req("x1", "r1"))
    # presumed abort: an abort that overtakes its prepare leaves a tombstone
    assert svc.abort(abort_req("a3", "late")).state == ABORTED
    with pytest.raises(FailedPrecondition, match="reservation 'late' is already ABORTED"):
        svc.prepare(prepare_req("p2", "late"))
    svc.prepare(prepare_req("p3", "r3"))
    with pytest.raises(FailedPrecondition, match="is PREPARED, not committed; abort it instead"):
        svc.release(release_req("x3", "r3"))
    svc.commit(commit_req("c3", "r3"))
    with pytest.raises(FailedPrecondition, match="is COMMITTED; release it"):
        svc.abort(abort_req("a4", "r3"))
    svc.release(release_req("x4", "r3"))
    with pytest.raises(FailedPrecondition, match="was RELEASED; cannot commit"):
        svc.commit(commit_req("c4", "r3"))
    with pytest.raises(NotFound, match="domain 'transport': no reservation 'nope'"):
        svc.commit(commit_req("c5", "nope"))
    with pytest.raises(NotFound, match="no reservation 'nope'"):
        svc.release(release_req("x5", "nope"))


def test_restart_recovers_the_table(svc, key, clock, db_path):
    svc.prepare(prepare_req("p1", "r1", rate=2e7))
    grant = svc.commit(commit_req("c1", "r1"))
    svc.prepare(prepare_req("p2", "r2", tenant="t2", rate=3e7, hold=5.0))
    svc.prepare(prepare_req("p3", "r3", tenant="t3", rate=1e7, hold=50.0))
    before = svc.status(services_pb2.GetStatusRequest(include_reservations=True))
    clock.advance(10.0)  # r2's hold lapses while the controller is down
    svc2 = reopen(svc, key, clock, db_path)
    assert svc2.envelope_sequence == 2
    status = svc2.status(services_pb2.GetStatusRequest(include_reservations=True))
    assert (status.committed_bps, status.prepared_bps) == (2e7, 1e7)
    states = {r.request.reservation_id: r.state for r in status.reservations}
    assert states == {"r1": COMMITTED, "r2": EXPIRED, "r3": PREPARED}
    assert status.reservations[0] == before.reservations[0]  # the committed row, grant bytes included
    assert svc2.commit(commit_req("c1", "r1")) == grant  # the idempotency log survives too
    assert svc2.commit(commit_req("c3", "r3")).body  # r3 is still committable
    svc3 = reopen(svc2, key, clock, db_path)
    assert svc3.envelope_sequence == 3 and svc3.usage().committed_bps == 3e7
    svc3._store.close()


def test_lapsed_grant_is_reissued_with_next_sequence(svc, clock):
    svc.prepare(prepare_req("p1", "r1"))
    first = reservation_pb2.GrantBody.FromString(svc.commit(commit_req("c1", "r1")).body)
    clock.advance(3600.0)  # the envelope (and the grant) lapsed; the envelope was re-signed
    again = reservation_pb2.GrantBody.FromString(svc.commit(commit_req("c2", "r1")).body)
    assert again.sequence == 2 and again.tre_sequence == 2 > first.tre_sequence
    assert again.not_after.seconds > clock.t


def test_random_operations_keep_the_books(svc, key, clock, db_path):
    """Random interleavings of every call: capacity and per-tenant limits hold after each step,
    the in-memory view equals the table, and a restart reproduces it."""
    rng = np.random.default_rng(20261127)
    g = svc.guardrails
    ids: list[str] = []
    calls = {"prepare": 0, "ok": 0}
    for step in range(600):
        op = rng.choice(["prepare", "commit", "abort", "release", "tick"], p=[0.4, 0.25, 0.1, 0.15, 0.1])
        rid = ids[rng.integers(len(ids))] if ids and (op != "prepare" or rng.random() < 0.1) else f"r{step}"
        try:
            if op == "prepare":
                calls["prepare"] += 1
                svc.prepare(prepare_req(f"q{step}", rid, tenant=f"t{rng.integers(4)}",
                                        rate=float(rng.uniform(1e5, 3e7)), hold=float(rng.uniform(0.5, 5.0))))
                ids.append(rid)
                calls["ok"] += 1
            elif op == "commit":
                svc.commit(commit_req(f"q{step}", rid))
            elif op == "abort":
                svc.abort(abort_req(f"q{step}", rid))
            elif op == "release":
                svc.release(release_req(f"q{step}", rid))
            else:
                clock.advance(float(rng.exponential(1.0)))
                svc.sweep()
        except (ResourceExhausted, FailedPrecondition, NotFound, AlreadyExists):
            pass
        clock.advance(float(rng.exponential(0.02)))
        active = {r.reservation_id: r for r in svc._store.active() if r.state == COMMITTED or r.expires_at > clock.t}
        usage = svc.usage()
        assert usage.used_bps <= g.reservable_capacity_bps * (1 + 1e-9)
        assert math.isclose(usage.used_bps, math.fsum(r.rate_bps for r in active.values()), rel_tol=1e-12, abs_tol=1e-6)
        for tenant in {r.tenant_id for r in active.values()}:
            assert math.fsum(r.rate_bps for r in active.values() if r.tenant_id == tenant) <= g.max_tenant_rate_bps * (1 + 1e-9)
    assert 0 < calls["ok"] < calls["prepare"]  # both outcomes were exercised
    table = {r.reservation_id: r for r in svc._store.all()}
    assert {r.state for r in table.values()} >= {COMMITTED, EXPIRED, RELEASED, ABORTED}
    snapshot = svc.usage()
    svc2 = reopen(svc, key, clock, db_path)
    assert svc2.usage() == snapshot
    svc2._store.close()


def test_status_lists_active_rows_and_recent_history(key, clock, db_path):
    store = ReservationStore(db_path)
    svc = DomainService(make_template(), key, store, clock=clock, status_history=3)
    for i in range(6):
        svc.prepare(prepare_req(f"p{i}", f"r{i}", tenant=f"t{i}", rate=1e6, hold=60.0))
        clock.advance(1.0)
    for i in (0, 1, 2, 4):
        svc.abort(abort_req(f"a{i}", f"r{i}"))
        clock.advance(1.0)
    svc.commit(commit_req("c5", "r5"))
    rows = svc.status(services_pb2.GetStatusRequest(include_reservations=True)).reservations
    assert [(r.request.reservation_id, r.state) for r in rows] == [
        ("r1", ABORTED), ("r2", ABORTED), ("r3", PREPARED), ("r4", ABORTED), ("r5", COMMITTED)]
    assert not svc.status(services_pb2.GetStatusRequest()).reservations
    store.close()


# ---------------------------------------------------------------------------------- books, batches


def books_from_table(svc: DomainService, now: float) -> tuple[float, float, dict[str, float]]:
    """(committed, prepared, held per tenant) recomputed from the SQLite table with math.fsum."""
    rows = [r for r in svc._store.active() if r.state == COMMITTED or r.expires_at > now]
    committed = math.fsum(r.rate_bps for r in rows if r.state == COMMITTED)
    prepared = math.fsum(r.rate_bps for r in rows if r.state == PREPARED)
    tenants = {t: math.fsum(r.rate_bps for r in rows if r.tenant_id == t) for t in {r.tenant_id for r in rows}}
    return committed, prepared, tenants


def assert_books(svc: DomainService, clock: FakeClock) -> None:
    usage = svc.usage()  # expires lapsed holds first
    committed, prepared, tenants = books_from_table(svc, clock.t)
    # bit for bit: the running sums are exact, fsum is correctly rounded
    assert (usage.committed_bps, usage.prepared_bps) == (committed, prepared)
    for tenant, held in tenants.items():
        assert svc.tenant_held(tenant) == held
    assert set(svc._books.tenants) == set(tenants)  # no leftover entries of tenants that left
    assert svc._books.n_prepared == sum(r.state == PREPARED for r in svc._active.values())


def test_exact_running_sums_helpers():
    rng = np.random.default_rng(3)
    xs = [float(x) for x in rng.uniform(1e5, 3e7, 500)] + [5e-324, 1.7976931348623157e308 / 4, 0.1, 0.2]
    total = 0
    for x in xs:
        total += books.exact(x)
    assert books.inexact(total) == math.fsum(xs)
    for x in xs[::3]:
        total -= books.exact(x)
    assert books.inexact(total) == math.fsum(xs[i] for i in range(len(xs)) if i % 3)
    tiny = [1.0, 1e-16, 1e-16]  # naive left-to-right float sums lose the small terms
    assert books.inexact(sum(books.exact(x) for x in tiny)) == math.fsum(tiny) == 1.0000000000000002 != sum(tiny)


def test_running_sums_equal_a_recompute_after_random_operations(key, clock, db_path):
    """Singles and batches in random order, with expiries and restarts: the O(1) books equal the
    table recomputed with fsum, exactly, after every step."""
    rng = np.random.default_rng(20261127)
    svc = DomainService(make_template(capacity=3e8, max_rate=1e8), key, ReservationStore(db_path), clock=clock)
    ids: list[str] = []

    def call(step: int, k: int):
        op = rng.choice(["prepare", "commit", "abort", "release"], p=[0.45, 0.3, 0.1, 0.15])
        rid = ids[rng.integers(len(ids))] if ids and (op != "prepare" or rng.random() < 0.1) else f"r{step}.{k}"
        if op == "prepare":
            ids.append(rid)
            return "prepare", prepare_req(f"q{step}.{k}", rid, tenant=f"t{rng.integers(5)}",
                                          rate=float(rng.uniform(1e5, 3e7)), hold=float(rng.uniform(0.2, 3.0)))
        return op, {"commit": commit_req, "abort": abort_req, "release": release_req}[op](f"q{step}.{k}", rid)

    outcomes = {"ok": 0, "refused": 0}
    for step in range(500):
        if rng.random() < 0.5:
            kind, req = call(step, 0)
            try:
                getattr(svc, kind)(req)
                outcomes["ok"] += 1
            except (ResourceExhausted, FailedPrecondition, NotFound, AlreadyExists):
                outcomes["refused"] += 1
        else:
            batch = services_pb2.BatchRequest()
            for k in range(int(rng.integers(1, 9))):
                kind, req = call(step, k)
                getattr(batch.items.add(), kind).CopyFrom(req)
            for r in svc.batch(batch).results:
                outcomes["ok" if r.code == 0 else "refused"] += 1
        clock.advance(float(rng.exponential(0.05)))
        if step % 50 == 49:
            svc.sweep()
        if step % 125 == 124:
            svc = reopen(svc, key, clock, db_path, capacity=3e8, max_rate=1e8)
        assert_books(svc, clock)
    assert outcomes["ok"] > 300 and outcomes["refused"] > 50
    assert {r.state for r in svc._store.all()} >= {COMMITTED, EXPIRED, RELEASED, ABORTED}
    svc._store.close()


def test_expiry_heap_order_and_compaction(svc, clock):
    holds = [3.0, 1.0, 2.0, 1.0, 5.0]
    for i, h in enumerate(holds):
        svc.prepare(prepare_req(f"p{i}", f"r{i}", tenant=f"t{i}", rate=1e6, hold=h))
    clock.advance(1.5)
    assert svc.sweep() == 2 and {svc.reservation(f"r{i}").state for i in (1, 3)} == {EXPIRED}
    clock.advance(1.0)
    assert svc.sweep() == 1 and svc.reservation("r2").state == EXPIRED
    assert svc.reservation("r0").state == PREPARED
    # committed holds leave stale heap entries; the heap is rebuilt before they pile up
    for i in range(3000):
        svc.prepare(prepare_req(f"s{i}", f"s{i}", tenant=f"u{i}", rate=1e5, hold=3600.0))
        svc.commit(commit_req(f"c{i}", f"s{i}"))
        svc.release(release_req(f"x{i}", f"s{i}"))
    assert len(svc._deadlines) <= 2 * svc._books.n_prepared + 1024
    clock.advance(1.0)
    assert svc.sweep() == 1 and svc.reservation("r0").state == EXPIRED
    assert_books(svc, clock)


def test_batch_items_behave_as_single_calls(svc, clock, key, db_path):
    batch = services_pb2.BatchRequest()
    batch.items.add().prepare.CopyFrom(prepare_req("p1", "r1", rate=4e7))
    batch.items.add().prepare.CopyFrom(prepare_req("p2", "r2", tenant="t2", rate=4e7))
    batch.items.add().prepare.CopyFrom(prepare_req("p3", "r3", tenant="t3", rate=4e7))  # over capacity
    batch.items.add().commit.CopyFrom(commit_req("c1", "r1"))  # sees r1 prepared by item 0
    batch.items.add()  # no call set
    batch.items.add().release.CopyFrom(release_req("x9", "nope"))
    batch.items.add().prepare.CopyFrom(prepare_req("p1", "r1", rate=4e7))  # a retry: replayed
    batch.items.add().prepare.CopyFrom(prepare_req("p2", "rX", rate=1.0))  # request id reused
    results = svc.batch(batch).results
    codes = [r.code for r in results]
    assert codes == [0, 0, grpc_code("RESOURCE_EXHAUSTED"), 0, grpc_code("INVALID_ARGUMENT"), grpc_code("NOT_FOUND"),
                     0, grpc_code("FAILED_PRECONDITION")]
    assert results[2].message.startswith("domain 'transport': reservable capacity 1e+08 bps exceeded")
    assert results[4].message == "items[4]: no call set"
    assert results[6].prepare == results[0].prepare and results[0].prepare.state == PREPARED
    grant = results[3].commit
    trust = TrustStore()
    trust.add(key.key_id, "transport", key.public_key_bytes())
    body = trust.verify_grant(grant, now=clock.t, expected_domain="transport")
    assert body.reservation_id == "r1" and body.rate_bps == 4e7
    # the same calls, single, are answered from the idempotency log with the batch's responses
    assert svc.commit(commit_req("c1", "r1")) == grant
    assert svc.prepare(prepare_req("p2", "r2", tenant="t2", rate=4e7)) == results[1].prepare
    assert (svc.usage().committed_bps, svc.usage().prepared_bps) == (4e7, 4e7)
    # one transaction, durable: a restart sees everything
    svc2 = reopen(svc, key, clock, db_path)
    assert (svc2.usage().committed_bps, svc2.usage().prepared_bps) == (4e7, 4e7)
    with pytest.raises(InvalidArgument, match=r"items\(=.* must hold at most 256 items"):
        svc2.batch(services_pb2.BatchRequest(items=[services_pb2.BatchItem()] * 257))
    svc2._store.close()


def grpc_code(name: str) -> int:
    return getattr(grpc.StatusCode, name).value[0]


def test_failed_batch_commit_leaves_memory_equal_to_the_table(svc, clock, monkeypatch):
    svc.prepare(prepare_req("p0", "r0", rate=1e7))
    batch = services_pb2.BatchRequest()
    batch.items.add().prepare.CopyFrom(prepare_req("p1", "r1", tenant="t2", rate=2e7))
    batch.items.add().commit.CopyFrom(commit_req("c0", "r0"))
    real = svc._store._db

    class FailingCommit:  # the transaction's COMMIT fails (e.g. disk full)
        def execute(self, sql, *args):
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(svc._store, "_db", FailingCommit())
    with pytest.raises(sqlite3.OperationalError):
        svc.batch(batch)
    monkeypatch.setattr(svc._store, "_db", real)
    assert not real.in_transaction
    assert svc.reservation("r1") is None and svc.reservation("r0").state == PREPARED
    assert (svc.usage().committed_bps, svc.usage().prepared_bps) == (0.0, 1e7)
    assert_books(svc, clock)
    # and a retry of the same batch now succeeds
    assert [r.code for r in svc.batch(batch).results] == [0, 0]
    assert (svc.usage().committed_bps, svc.usage().prepared_bps) == (1e7, 2e7)


def test_nested_transaction_is_a_savepoint(db_path):
    store = ReservationStore(db_path)
    with store.transaction():
        store.put(record("a", COMMITTED))
        with pytest.raises(RuntimeError), store.transaction():
            store.put(record("b", COMMITTED))
            raise RuntimeError("boom")
        assert store.in_transaction
    assert [r.reservation_id for r in store.all()] == ["a"] and not store.in_transaction
    store.close()


def test_background_checkpoint_copies_the_wal(db_path):
    store = ReservationStore(db_path, background_checkpoint=True)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 20_000
    for i in range(50):
        with store.transaction():
            store.put(record(f"r{i}", COMMITTED))
    assert store.checkpoint() > 0
    with store.transaction():
        store.put(record("last", PREPARED))
    store.close()
    assert store.checkpoint() == 0  # closed: a no-op
    again = ReservationStore(db_path)
    assert len(again.all()) == 51
    again.close()
    assert ReservationStore(":memory:", background_checkpoint=True).checkpoint() == 0


def test_tombstones_of_unknown_aborts_are_pruned_after_the_longest_hold(key, clock, db_path):
    """Issue 12: 20 000 aborts of unknown ids made a 17.7 MB table. The presumed-abort tombstone lives
    ``max_hold_s`` and is then deleted by the sweep."""
    store = ReservationStore(db_path)
    try:
        svc = DomainService(make_template(), key, store, clock=clock, max_hold_s=60.0)
        for i in range(200):
            assert svc.abort(abort_req(f"a{i}", f"ghost{i}")).state == ABORTED
        svc.prepare(prepare_req("p1", "real", hold=30.0))
        svc.abort(abort_req("a-real", "real"))  # a real reservation's ABORTED row is no tombstone
        assert len(store.all()) == 201
        clock.advance(59.0)
        svc.sweep()
        assert len(store.all()) == 201  # still within the longest hold: a late Prepare is refused
        clock.advance(2.0)
        svc.sweep()
        assert [r.reservation_id for r in store.all()] == ["real"]
        # the id is usable again (a Prepare this late would have lapsed anyway)
        assert svc.prepare(prepare_req("p-ghost", "ghost0", hold=5.0)).state == PREPARED
    finally:
        store.close()


# ---------------------------------------------------------------------- republish and revoke


def test_revoke_refuses_new_reservations_keeps_granted_ones_and_survives_a_restart(svc, key, clock, db_path):
    svc.prepare(prepare_req("p1", "r1"))
    svc.prepare(prepare_req("p2", "r2"))
    svc.commit(commit_req("c1", "r1"))
    seq = svc.envelope_sequence
    svc.revoke()
    with pytest.raises(FailedPrecondition, match=r"domain 'transport' has revoked its envelope 'transport/gold'"):
        svc.get_envelope(services_pb2.GetEnvelopeRequest())
    with pytest.raises(FailedPrecondition, match="revoked"):
        svc.prepare(prepare_req("p3", "r3"))
    svc.commit(commit_req("c2", "r2"))  # a hold prepared before the revocation still commits
    svc.release(release_req("x1", "r1"))
    clock.advance(3000.0)  # past half the validity: a revoked envelope is not re-signed
    svc.sweep()
    assert svc.envelope_sequence == seq
    again = reopen(svc, key, clock, db_path)
    assert again.revoked
    with pytest.raises(FailedPrecondition, match="revoked"):
        again.prepare(prepare_req("p4", "r4"))


def test_republish_signs_the_next_sequence_admits_on_its_guardrails_and_survives_a_restart(svc, key, clock, db_path):
    svc.prepare(prepare_req("p1", "r1", rate=4e7))
    svc.commit(commit_req("c1", "r1"))
    svc.revoke()
    seq = svc.envelope_sequence
    smaller = make_template(capacity=5e7)
    assert svc.republish(smaller) == seq + 1 and not svc.revoked
    env = svc.get_envelope(services_pb2.GetEnvelopeRequest())
    body = envelope_pb2.EnvelopeBody.FromString(env.body)
    assert body.header.sequence == seq + 1 and body.guardrails.reservable_capacity_bps == 5e7
    trust = TrustStore()
    trust.add_key(key)
    assert trust.verify_envelope(env, now=clock()).header.sequence == seq + 1  # the domain's signature
    with pytest.raises(ResourceExhausted, match="reservable capacity 5e\\+07 bps exceeded"):
        svc.prepare(prepare_req("p2", "r2", tenant="t2", rate=2e7))  # 4e7 held + 2e7 > 5e7; r1 is kept
    svc.prepare(prepare_req("p3", "r3", tenant="t2", rate=1e7))
    again = reopen(svc, key, clock, db_path)  # restarted with the start-up template (capacity 1e8)
    assert again.guardrails.reservable_capacity_bps == 5e7 and again.envelope_sequence == seq + 2
    with pytest.raises(ConfigError, match="domain_id"):
        again.republish(make_template("access"))
    other = make_template()
    other.header.tre_id = "transport/silver"
    with pytest.raises(ConfigError, match="tre_id"):
        again.republish(other)
    bad = make_template(capacity=1e6)  # max_tenant_rate_bps 5e7 > capacity: refused, nothing changed
    with pytest.raises(ConfigError, match="max_tenant_rate_bps"):
        again.republish(bad)
    assert again.guardrails.reservable_capacity_bps == 5e7 and again.envelope_sequence == seq + 2
