"""The DomainController agent over real gRPC on 127.0.0.1 (in-process asyncio, no Ray)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from inprocess import FakeClock
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2, services_pb2_grpc

import agents.domain.books
import agents.domain.logic
import agents.domain.publication
import agents.domain.servicer
import agents.domain.store
import agents.errors
import agents.server
from agents.domain.servicer import DOMAIN_CONTROLLER_SERVICE, DomainControllerAgent
from agents.server import start_grpc_server
from federation.errors import ConfigError
from federation.tre.signing import SigningKey
from federation.tre.trust import TrustStore

PREPARED, COMMITTED, EXPIRED, RELEASED = (
    reservation_pb2.PREPARED, reservation_pb2.COMMITTED, reservation_pb2.EXPIRED, reservation_pb2.RELEASED,
)
CAPACITY = 1e8


def template(domain_id: str = "transport", *, capacity: float = CAPACITY, max_rate: float = 5e7) -> bytes:
    body = envelope_pb2.EnvelopeBody()
    body.header.domain_id = domain_id
    body.header.tre_id = f"{domain_id}/gold"
    body.header.kind = envelope_pb2.NETWORK
    g = body.guardrails
    g.reservable_capacity_bps = capacity
    g.min_tenant_rate_bps = 1e5
    g.max_tenant_rate_bps = max_rate
    g.max_burst_bits = 1e6
    g.latency_ceiling_s = 0.05
    g.loss_ceiling = 0.01
    m = body.model
    m.service = envelope_pb2.RATE_LATENCY
    m.rate_bps = capacity
    m.latency_s = 0.001
    m.propagation_delay_s = 0.002
    m.loss_probability = 0.001
    return body.SerializeToString()


def prepare_req(request_id: str, reservation_id: str, *, tenant: str = "t1", rate: float = 1e7,
                hold: float = 5.0, **fields) -> reservation_pb2.PrepareRequest:
    res = dict(reservation_id=reservation_id, tenant_id=tenant, rate_bps=rate, burst_bits=1e4,
               delay_budget_s=0.01, epsilon=1e-3)
    res.update(fields)
    return reservation_pb2.PrepareRequest(
        request_id=request_id, hold_timeout_s=hold, reservation=reservation_pb2.ReservationRequest(**res)
    )


@contextlib.asynccontextmanager
async def controller(db_path, key: SigningKey, **kw):
    agent = DomainControllerAgent(template(key.domain_id), key.private_pem(), str(db_path), **kw)
    await agent.start()
    channel = grpc.aio.insecure_channel(await agent.address())
    try:
        yield agent, services_pb2_grpc.DomainControllerStub(channel), channel
    finally:
        await channel.close()
        await agent.stop()


async def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("transport")


def test_public_names():
    assert agents.domain.servicer.__all__ == ["DOMAIN_CONTROLLER_SERVICE", "DomainControllerAgent", "DomainControllerServicer"]
    assert {"start_grpc_server", "add_servicer"} <= set(agents.server.__all__)
    assert {"invalid_argument", "status_code_for", "ServiceError"} <= set(agents.errors.__all__)
    assert set(agents.domain.store.__all__) == {"ReservationRecord", "ReservationStore", "StoredResponse"}
    assert "DomainService" in agents.domain.logic.__all__
    assert {"Books", "CapacityUsage"} <= set(agents.domain.books.__all__)
    assert {"EnvelopePublisher", "ENVELOPE_SEQUENCE_KEY"} <= set(agents.domain.publication.__all__)
    for module in (agents.domain.servicer, agents.server, agents.errors, agents.domain.store, agents.domain.logic,
                   agents.domain.books, agents.domain.publication):
        assert all(hasattr(module, name) for name in module.__all__)


async def test_health_and_reflection(tmp_path, key):
    async with controller(tmp_path / "d.db", key) as (agent, _, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", DOMAIN_CONTROLLER_SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        code, _ = await code_of(health.Check(health_pb2.HealthCheckRequest(service="trefed.v1.Nope")))
        assert code == grpc.StatusCode.NOT_FOUND

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=DOMAIN_CONTROLLER_SERVICE),
        ]
        replies = [r async for r in stub.ServerReflectionInfo(iter(requests))]
        listed = {s.name for s in replies[0].list_services_response.service}
        assert listed == {DOMAIN_CONTROLLER_SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
        assert replies[1].file_descriptor_response.file_descriptor_proto  # a generic client can load the schema
        host, port = (await agent.address()).rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) == agent._bound_port > 0


async def test_full_cycle_with_signatures_verified(tmp_path, key):
    async with controller(tmp_path / "d.db", key) as (agent, stub, _):
        key_id, domain_id, raw = await agent.public_key()
        assert (key_id, domain_id, raw) == (key.key_id, "transport", key.public_key_bytes())
        trust = TrustStore()
        trust.add(key_id, domain_id, raw)
        env = await stub.GetEnvelope(services_pb2.GetEnvelopeRequest(tre_id="transport/gold"))
        body = trust.verify_envelope(env)
        assert body.header.sequence == 1 and body.guardrails.reservable_capacity_bps == CAPACITY
        code, details = await code_of(stub.GetEnvelope(services_pb2.GetEnvelopeRequest(tre_id="access/gold")))
        assert code == grpc.StatusCode.NOT_FOUND and "access/gold" in details

        prep = await stub.Prepare(prepare_req("p1", "r1", rate=3e7))
        assert prep.state == PREPARED and prep.available_after_bps == 7e7
        grant = await stub.Commit(reservation_pb2.CommitRequest(request_id="c1", reservation_id="r1"))
        g = trust.verify_grant(grant, expected_domain="transport")
        assert (g.reservation_id, g.tenant_id, g.tre_sequence, g.rate_bps, g.delay_budget_s, g.epsilon) == (
            "r1", "t1", 1, 3e7, 0.01, 1e-3)
        assert g.not_after == body.header.not_after
        tampered = reservation_pb2.SignedGrant()
        tampered.CopyFrom(grant)
        tampered.body = grant.body.replace(b"t1", b"t2")
        with pytest.raises(Exception, match="bad-signature"):
            trust.verify_grant(tampered)

        status = await stub.GetStatus(services_pb2.GetStatusRequest(include_reservations=True))
        assert (status.domain_id, status.committed_bps, status.available_bps) == ("transport", 3e7, 7e7)
        assert status.reservations[0].grant == grant and status.reservations[0].state == COMMITTED
        rel = await stub.Release(reservation_pb2.ReleaseRequest(request_id="x1", reservation_id="r1"))
        assert rel.state == RELEASED and rel.available_after_bps == CAPACITY
        code, details = await code_of(stub.Commit(reservation_pb2.CommitRequest(request_id="c2", reservation_id="r9")))
        assert code == grpc.StatusCode.NOT_FOUND and details == "domain 'transport': no reservation 'r9'"


async def test_idempotency_over_grpc(tmp_path, key):
    async with controller(tmp_path / "d.db", key) as (_, stub, _):
        first = await stub.Prepare(prepare_req("p1", "r1", rate=2e7))
        assert await stub.Prepare(prepare_req("p1", "r1", rate=2e7)) == first
        commit = reservation_pb2.CommitRequest(request_id="c1", reservation_id="r1")
        grant = await stub.Commit(commit)
        assert await stub.Commit(commit) == grant  # byte-identical: not re-signed
        abort = reservation_pb2.AbortRequest(request_id="a1", reservation_id="r2")
        assert (await stub.Abort(abort)).state == reservation_pb2.ABORTED
        assert (await stub.Abort(abort)).state == reservation_pb2.ABORTED
        code, details = await code_of(stub.Prepare(prepare_req("p1", "r1", rate=4e7)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "request_id 'p1' was already used" in details
        code, _ = await code_of(stub.Prepare(prepare_req("p2", "r1", rate=4e7)))
        assert code == grpc.StatusCode.ALREADY_EXISTS
        status = await stub.GetStatus(services_pb2.GetStatusRequest())
        assert (status.committed_bps, status.prepared_bps) == (2e7, 0.0)


async def test_concurrent_prepares_never_overbook(tmp_path, key):
    """200 concurrent Prepare calls with random rates, then commits racing 200 more prepares."""
    rng = np.random.default_rng(5)
    async with controller(tmp_path / "d.db", key) as (_, stub, _):

        async def attempt(i: int, rate: float):
            try:
                return await stub.Prepare(prepare_req(f"p{i}", f"r{i}", tenant=f"t{i}", rate=rate), timeout=30)
            except grpc.aio.AioRpcError as exc:
                return exc

        async def check(rates: np.ndarray, results: list) -> float:
            granted = [r for r, res in zip(rates, results, strict=True) if not isinstance(res, Exception)]
            refused = [(r, res) for r, res in zip(rates, results, strict=True) if isinstance(res, Exception)]
            for _, exc in refused:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                assert exc.details().startswith("domain 'transport': reservable capacity 1e+08 bps exceeded")
            status = await stub.GetStatus(services_pb2.GetStatusRequest())
            used = status.committed_bps + status.prepared_bps
            assert used <= CAPACITY * (1 + 1e-9)
            # calls are serialized, so every refusal saw at most today's use: it really did not fit
            assert all(r > status.available_bps for r, _ in refused)
            return math.fsum(granted)

        rates = rng.uniform(2e5, 2e6, 200)
        results = await asyncio.gather(*(attempt(i, r) for i, r in enumerate(rates)))
        used = await check(rates, results)
        n_ok = sum(not isinstance(r, Exception) for r in results)
        assert 30 < n_ok < 200  # both outcomes happen: ~90 fit in 1e8 bps
        assert math.isclose(used, (await stub.GetStatus(services_pb2.GetStatusRequest())).prepared_bps, rel_tol=1e-12)

        commits = [stub.Commit(reservation_pb2.CommitRequest(request_id=f"c{i}", reservation_id=f"r{i}"))
                   for i, r in enumerate(results) if not isinstance(r, Exception)]
        aborts = [stub.Abort(reservation_pb2.AbortRequest(request_id=f"a{i}", reservation_id=f"r{i}"))
                  for i in range(0, 200, 7) if not isinstance(results[i], Exception)]
        more = rng.uniform(2e5, 2e6, 200)
        mixed = await asyncio.gather(*commits, *aborts, *(attempt(200 + i, r) for i, r in enumerate(more)),
                                     return_exceptions=True)
        tail = mixed[len(commits) + len(aborts):]
        await check(more, tail)
        status = await stub.GetStatus(services_pb2.GetStatusRequest(include_reservations=True))
        active = [r.request.rate_bps for r in status.reservations if r.state in (PREPARED, COMMITTED)]
        assert math.isclose(math.fsum(active), status.committed_bps + status.prepared_bps, rel_tol=1e-12)
        assert status.available_bps < 2e6  # the domain really filled up


async def test_expired_hold_returns_capacity_without_any_call(tmp_path, key):
    db = tmp_path / "d.db"
    clock = FakeClock()

    def state() -> int:  # the table seen from outside, no rpc
        with contextlib.closing(sqlite3.connect(db)) as peek:
            return peek.execute("SELECT state FROM reservations WHERE reservation_id='r1'").fetchone()[0]

    async with controller(db, key, sweep_interval_s=0.01, clock=clock) as (_, stub, _):
        prep = await stub.Prepare(prepare_req("p1", "r1", rate=5e7, hold=0.3))
        assert prep.available_after_bps == 5e7
        expires_at = prep.expires_at.seconds + prep.expires_at.nanos * 1e-9
        clock.advance(0.29)
        await asyncio.sleep(0.05)  # several sweeps
        assert state() == PREPARED and clock() < expires_at
        clock.advance(0.02)
        deadline = time.monotonic() + 5.0
        while state() == PREPARED and time.monotonic() < deadline:  # the next sweep expires it
            await asyncio.sleep(0.01)
        assert state() == EXPIRED
        assert clock() >= expires_at
        status = await stub.GetStatus(services_pb2.GetStatusRequest())
        assert status.available_bps == CAPACITY and status.prepared_bps == 0.0
        code, details = await code_of(stub.Commit(reservation_pb2.CommitRequest(request_id="c1", reservation_id="r1")))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "expired at" in details


async def test_restart_recovers_committed_reservations(tmp_path, key):
    db = tmp_path / "d.db"
    trust = TrustStore()
    trust.add(key.key_id, key.domain_id, key.public_key_bytes())
    clock = FakeClock()
    async with controller(db, key, sweep_interval_s=10.0, clock=clock) as (_, stub, _):
        seq1 = trust.verify_envelope(await stub.GetEnvelope(services_pb2.GetEnvelopeRequest()),
                                     now=clock()).header.sequence
        await stub.Prepare(prepare_req("p1", "r1", rate=2e7))
        grant = await stub.Commit(reservation_pb2.CommitRequest(request_id="c1", reservation_id="r1"))
        await stub.Prepare(prepare_req("p2", "r2", tenant="t2", rate=3e7, hold=0.2))
        before = await stub.GetStatus(services_pb2.GetStatusRequest(include_reservations=True))
    clock.advance(0.25)  # r2's hold lapses while the controller is down
    async with controller(db, key, clock=clock) as (_, stub, _):
        env = await stub.GetEnvelope(services_pb2.GetEnvelopeRequest())
        assert trust.verify_envelope(env, now=clock()).header.sequence == seq1 + 1  # a newer envelope, not a replay
        status = await stub.GetStatus(services_pb2.GetStatusRequest(include_reservations=True))
        assert (status.committed_bps, status.prepared_bps, status.available_bps) == (2e7, 0.0, 8e7)
        assert {r.request.reservation_id: r.state for r in status.reservations} == {"r1": COMMITTED, "r2": EXPIRED}
        assert status.reservations[0] == before.reservations[0]
        assert await stub.Commit(reservation_pb2.CommitRequest(request_id="c1", reservation_id="r1")) == grant
        trust.verify_grant(grant, now=clock(), expected_domain="transport")
        rel = await stub.Release(reservation_pb2.ReleaseRequest(request_id="x1", reservation_id="r1"))
        assert rel.available_after_bps == CAPACITY


async def test_bad_requests_get_invalid_argument_and_serving_goes_on(tmp_path, key):
    nan, inf = math.nan, math.inf
    async with controller(tmp_path / "d.db", key) as (_, stub, channel):
        raw = {name: channel.unary_unary(f"/{DOMAIN_CONTROLLER_SERVICE}/{name}")
               for name in ("Prepare", "Commit", "Abort", "Release", "GetEnvelope", "GetStatus")}
        cases = [
            ("garbage Prepare", raw["Prepare"](b"\xff\xff\xff\xff")),
            ("garbage Commit", raw["Commit"](b"\x0a\x05ab")),  # truncated string field
            ("garbage Release", raw["Release"](b"\x0a\x02\xc3\x28")),  # invalid UTF-8 in a string field
            ("garbage GetStatus", raw["GetStatus"](b"\x08")),
            ("no request_id", stub.Prepare(prepare_req("", "r1"))),
            ("no reservation", stub.Prepare(reservation_pb2.PrepareRequest(request_id="p", hold_timeout_s=1))),
            ("no reservation_id", stub.Prepare(prepare_req("p", ""))),
            ("no tenant", stub.Prepare(prepare_req("p", "r", tenant=""))),
            ("zero rate", stub.Prepare(prepare_req("p", "r", rate=0.0))),
            ("negative rate", stub.Prepare(prepare_req("p", "r", rate=-5.0))),
            ("nan rate", stub.Prepare(prepare_req("p", "r", rate=nan))),
            ("inf rate", stub.Prepare(prepare_req("p", "r", rate=inf))),
            ("negative burst", stub.Prepare(prepare_req("p", "r", burst_bits=-1.0))),
            ("zero delay", stub.Prepare(prepare_req("p", "r", delay_budget_s=0.0))),
            ("nan delay", stub.Prepare(prepare_req("p", "r", delay_budget_s=nan))),
            ("epsilon 0", stub.Prepare(prepare_req("p", "r", epsilon=0.0))),
            ("epsilon 1", stub.Prepare(prepare_req("p", "r", epsilon=1.0))),
            ("epsilon > 1", stub.Prepare(prepare_req("p", "r", epsilon=3.0))),
            ("zero hold", stub.Prepare(prepare_req("p", "r", hold=0.0))),
            ("negative hold", stub.Prepare(prepare_req("p", "r", hold=-1.0))),
            ("endless hold", stub.Prepare(prepare_req("p", "r", hold=1e12))),
            ("long id", stub.Prepare(prepare_req("p", "r" * 1000))),
            ("commit no id", stub.Commit(reservation_pb2.CommitRequest(request_id="c"))),
            ("commit no request_id", stub.Commit(reservation_pb2.CommitRequest(reservation_id="r"))),
            ("abort no id", stub.Abort(reservation_pb2.AbortRequest(request_id="a"))),
            ("release no id", stub.Release(reservation_pb2.ReleaseRequest(request_id="x"))),
        ]
        for i, (label, call) in enumerate(cases):
            code, details = await code_of(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (label, code, details)
            assert details, label
            ok = await stub.Prepare(prepare_req(f"good{i}", f"good{i}", tenant=f"t{i}", rate=1e6), timeout=5)
            assert ok.state == PREPARED, label
        status = await stub.GetStatus(services_pb2.GetStatusRequest(include_reservations=True))
        assert len(status.reservations) == len(cases) and status.prepared_bps == len(cases) * 1e6


async def test_guardrail_and_capacity_codes(tmp_path, key):
    async with controller(tmp_path / "d.db", key) as (_, stub, _):
        code, details = await code_of(stub.Prepare(prepare_req("p", "r", rate=6e7)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "max_tenant_rate_bps" in details
        code, details = await code_of(stub.Prepare(prepare_req("p", "r", burst_bits=5e6)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "max_burst_bits" in details
        for i in range(3):
            await stub.Prepare(prepare_req(f"p{i}", f"r{i}", tenant=f"t{i}", rate=3e7))
        code, details = await code_of(stub.Prepare(prepare_req("p9", "r9", tenant="t9", rate=2e7)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == "domain 'transport': reservable capacity 1e+08 bps exceeded (committed 0, prepared 9e+07, asked 2e+07)"


async def test_start_errors(tmp_path, key):
    with pytest.raises(ConfigError, match="not a serialized EnvelopeBody"):
        DomainControllerAgent(b"\xff\xff", key.private_pem(), str(tmp_path / "x.db"))
    with pytest.raises(ConfigError, match="key_pem"):
        DomainControllerAgent(template(), b"not a key", str(tmp_path / "x.db"))
    with pytest.raises(ConfigError, match="sweep_interval_s"):
        DomainControllerAgent(template(), key.private_pem(), str(tmp_path / "x.db"), sweep_interval_s=0)
    bad = DomainControllerAgent(template(capacity=1e8, max_rate=2e8), key.private_pem(), str(tmp_path / "x.db"))
    with pytest.raises(ConfigError, match="max_tenant_rate_bps"):
        await bad.start()
    async with controller(tmp_path / "d.db", key) as (agent, _, _):
        port = int((await agent.address()).rsplit(":", 1)[1])
        assert await agent.start() == port  # idempotent
        with pytest.raises(OSError, match="cannot bind"):
            await start_grpc_server(lambda s: None, [], port=port)
        other = DomainControllerAgent(template(), key.private_pem(), str(tmp_path / "e.db"), port=port)
        with pytest.raises(OSError):
            await other.start()
        await other.stop()


async def test_batch_over_grpc_and_malformed_batches(tmp_path, key):
    async with controller(tmp_path / "d.db", key) as (agent, stub, channel):
        batch = services_pb2.BatchRequest()
        for i in range(3):
            batch.items.add().prepare.CopyFrom(prepare_req(f"p{i}", f"r{i}", tenant=f"t{i}", rate=4e7))
        batch.items.add().commit.CopyFrom(reservation_pb2.CommitRequest(request_id="c0", reservation_id="r0"))
        results = (await stub.Batch(batch)).results
        assert [r.code for r in results] == [0, 0, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], 0]
        assert results[2].message.startswith("domain 'transport': reservable capacity")
        trust = TrustStore()
        trust.add(key.key_id, "transport", key.public_key_bytes())
        assert trust.verify_grant(results[3].commit, now=time.time(), expected_domain="transport").rate_bps == 4e7
        status = await stub.GetStatus(services_pb2.GetStatusRequest())
        assert (status.committed_bps, status.prepared_bps) == (4e7, 4e7)
        # the whole call is refused when too big or unparseable; the server keeps serving
        too_big = services_pb2.BatchRequest(items=[services_pb2.BatchItem()] * 257)
        code, details = await code_of(stub.Batch(too_big))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 256 items" in details
        raw = channel.unary_unary("/trefed.v1.DomainController/Batch")
        code, _ = await code_of(raw(b"\xff\xff\xff\xff"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert (await stub.Batch(services_pb2.BatchRequest())).results == []
        assert (await stub.GetStatus(services_pb2.GetStatusRequest())).committed_bps == 4e7


async def test_batch_stream_answers_each_batch_in_order_as_batch_does(tmp_path, key):
    async with controller(tmp_path / "d.db", key) as (agent, stub, channel):
        first = services_pb2.BatchRequest()
        for i in range(3):
            first.items.add().prepare.CopyFrom(prepare_req(f"p{i}", f"r{i}", tenant=f"t{i}", rate=4e7))
        second = services_pb2.BatchRequest()
        second.items.add().commit.CopyFrom(reservation_pb2.CommitRequest(request_id="c0", reservation_id="r0"))
        second.items.add().commit.CopyFrom(reservation_pb2.CommitRequest(request_id="c2", reservation_id="r2"))
        call = stub.BatchStream(timeout=10)
        await call.write(first)
        await call.write(second)  # written before the first answer arrived
        a, b = await call.read(), await call.read()
        exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert [r.code for r in a.results] == [0, 0, exhausted]
        assert a.results[2].message.startswith("domain 'transport': reservable capacity")
        assert [r.code for r in b.results] == [0, grpc.StatusCode.NOT_FOUND.value[0]]
        trust = TrustStore()
        trust.add(key.key_id, "transport", key.public_key_bytes())
        assert trust.verify_grant(b.results[0].commit, now=time.time(), expected_domain="transport").rate_bps == 4e7
        # a retry on the same stream is answered from the idempotency log, byte for byte
        await call.write(second)
        assert (await call.read()).results[0].commit == b.results[0].commit
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert (await call.code()) == grpc.StatusCode.OK
        status = await stub.GetStatus(services_pb2.GetStatusRequest())
        assert (status.committed_bps, status.prepared_bps) == (4e7, 4e7)
        # a batch refused as a whole ends its stream with that status; the server keeps serving
        too_big = services_pb2.BatchRequest(items=[services_pb2.BatchItem()] * 257)
        call = stub.BatchStream(timeout=10)
        await call.write(too_big)
        code, details = await code_of(call.read())
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 256 items" in details
        raw = channel.stream_stream("/trefed.v1.DomainController/BatchStream")
        code, details = await code_of(raw(iter([b"\xff\xff\xff\xff"]), timeout=10).read())
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not parse as trefed.v1.BatchRequest" in details
        assert (await stub.GetStatus(services_pb2.GetStatusRequest())).committed_bps == 4e7


async def test_a_stalled_stream_runs_every_batch_and_holds_the_answers_in_order(tmp_path, key):
    async with controller(tmp_path / "d.db", key) as (agent, stub, _):
        call = stub.BatchStream(timeout=10)
        await agent.stall()
        for i in range(2):
            await call.write(services_pb2.BatchRequest(items=[services_pb2.BatchItem(prepare=prepare_req(f"p{i}", f"r{i}"))]))
        deadline = time.monotonic() + 5.0
        while await agent.held_answers() < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert await agent.held_answers() == 2  # the second batch ran although the first answer is held
        assert [agent.service.reservation(f"r{i}").state for i in range(2)] == [PREPARED, PREPARED]
        await agent.stall(False)
        answers = [await call.read() for _ in range(2)]
        assert [a.results[0].prepare.reservation_id for a in answers] == ["r0", "r1"]
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF


async def test_a_stalled_controller_persists_calls_but_holds_their_answers(tmp_path, key):
    """Fault injection for crash tests: the call has run when its answer is held."""
    db = tmp_path / "d.db"
    async with controller(db, key) as (agent, stub, _):
        await agent.stall()
        call = asyncio.ensure_future(stub.Prepare(prepare_req("p1", "r1", rate=2e7)))
        deadline = time.monotonic() + 5.0
        while await agent.held_answers() == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert await agent.held_answers() == 1 and not call.done()
        assert agent.service.reservation("r1").state == PREPARED  # persisted before the answer
        with contextlib.closing(sqlite3.connect(db)) as peek:
            assert peek.execute("SELECT state FROM reservations WHERE reservation_id='r1'").fetchone()[0] == PREPARED
        status = await stub.GetStatus(services_pb2.GetStatusRequest())  # other rpcs are answered
        assert status.prepared_bps == 2e7
        await agent.stall(False)
        assert (await call).state == PREPARED and await agent.held_answers() == 0
        assert (await stub.Commit(reservation_pb2.CommitRequest(request_id="c1", reservation_id="r1"))).body


async def test_holds_are_capped_at_what_the_broker_asks_for(tmp_path):
    """Issue 12: a Prepare asking a 3 600 s hold blocked capacity for an hour; the federation caps a
    domain's holds at its broker's hold timeout (``max_hold_s``)."""
    key = SigningKey.generate("transport")
    body = template("transport")
    with pytest.raises(ConfigError, match="max_hold_s"):
        DomainControllerAgent(body, key.private_pem(), str(tmp_path / "x.db"), max_hold_s=7200.0)
    agent = DomainControllerAgent(body, key.private_pem(), str(tmp_path / "d.db"), max_hold_s=5.0)
    await agent.start()
    try:
        async with grpc.aio.insecure_channel(await agent.address()) as channel:
            stub = services_pb2_grpc.DomainControllerStub(channel)
            request = prepare_req("p", "r", hold=3600.0)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Prepare(request, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "hold_timeout_s" in info.value.details()
            request.hold_timeout_s = 5.0
            assert (await stub.Prepare(request, timeout=5)).state == reservation_pb2.PREPARED
    finally:
        await agent.stop(0)
