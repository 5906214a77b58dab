"""The broker's transactions without a socket: :class:`agents.broker.logic.Broker` over in-process
domain clients that call real :class:`agents.domain.logic.DomainService` objects (real signing,
SQLite stores in tmp_path, one fake clock). No gRPC, no Ray: see ``tests/inprocess.py``.

The same behaviour over real gRPC is in test_broker.py, between Ray actors in test_federation_e2e.py.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import math
import pickle
import socket
import subprocess
import sys

import grpc
import pytest
from conftest import FAST_CONFIG
from inprocess import in_process_federation
from trefed.v1 import reservation_pb2, services_pb2

import federation.calculus.compose as compose
from agents.broker.client import DEFINITE_REFUSALS, DomainCallError
from agents.broker.plan import Infeasible, plan_key, plan_offer
from agents.errors import AlreadyExists, FailedPrecondition, ResourceExhausted, Unavailable
from federation.config import parse_config
from federation.errors import VerificationError
from federation.tre.signing import Reason
from federation.tre.trust import TrustStore

DOMAINS = ("access", "transport", "edge")
PREPARED, COMMITTED, ABORTED, EXPIRED, RELEASED = (
    reservation_pb2.PREPARED, reservation_pb2.COMMITTED, reservation_pb2.ABORTED, reservation_pb2.EXPIRED,
    reservation_pb2.RELEASED,
)


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch):
    """Any attempt at a gRPC channel or server, or a socket connection, fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a socket-free test opened a connection")

    for module, name in ((grpc.aio, "insecure_channel"), (grpc.aio, "server"), (grpc, "insecure_channel"),
                         (grpc, "server"), (socket, "create_connection")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def reservation_calls(fed, domain: str) -> list[str]:
    return [c for c in fed.clients[domain].calls if c not in ("GetEnvelope", "GetStatus")]


def rids(contract_id: str) -> dict[str, str]:
    return {d: f"{contract_id}.{d}" for d in DOMAINS}


async def test_admission_reserves_every_domain_and_is_idempotent(tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        contract = await fed.broker.request_service(fed.request("r1"))
        assert list(contract.offer.path) == list(DOMAINS) and contract.offer.model_id == "small"
        assert contract.offer.bound.delay_s <= 0.0175
        store = TrustStore()
        for k in fed.keys.values():
            store.add(k.key_id, k.domain_id, k.public_key_bytes())
        for d, g, b in zip(DOMAINS, contract.grants, contract.offer.budgets):
            body = store.verify_grant(g, now=fed.clock(), expected_domain=d)
            assert body.reservation_id == rids(contract.contract_id)[d] and body.rate_bps == b.rate_bps
            st = fed.status(d)
            assert st.committed_bps == b.rate_bps and st.prepared_bps == 0
            assert reservation_calls(fed, d) == ["Prepare", "Commit"]
        assert fed.broker.stats.admitted == 1 and fed.broker.stats.rejected == 0

        again = await fed.broker.request_service(fed.request("r1"))  # a retry: the same contract, no call
        assert again.contract_id == contract.contract_id
        assert all(reservation_calls(fed, d) == ["Prepare", "Commit"] for d in DOMAINS)
        with pytest.raises(AlreadyExists, match="'r1'"):
            await fed.broker.request_service(fed.request("r1", deadline_s=0.02))


async def test_capacity_rejection_names_the_domain_and_the_limit_and_aborts_the_other_holds(tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        admitted = []
        while True:
            try:
                admitted.append(await fed.broker.request_service(fed.request(f"r{len(admitted)}", f"t{len(admitted)}")))
            except ResourceExhausted as exc:
                message = str(exc)
                break
        assert len(admitted) == math.floor(1e8 / admitted[0].offer.budgets[2].rate_bps) == 4
        assert "domain 'edge'" in message and "reservable capacity 1e+08 bps exceeded" in message
        # both offers (small, then large) were refused by the edge at Prepare, a definite "no":
        # their holds in access and transport were aborted, the edge got no Abort
        assert "offer small" in message and "offer large" in message
        for d in ("access", "transport"):
            assert reservation_calls(fed, d)[-4:] == ["Prepare", "Abort", "Prepare", "Abort"]
            assert sorted(fed.states(d).values()).count(ABORTED) == 2
        assert "Abort" not in reservation_calls(fed, "edge")
        for d in DOMAINS:
            st = fed.status(d)
            assert st.prepared_bps == 0
            assert st.committed_bps == math.fsum(c.offer.budgets[DOMAINS.index(d)].rate_bps for c in admitted)
        assert fed.broker.stats.rejected == 1 and fed.broker.pending_cleanups == 0


async def test_a_guardrail_refusal_is_failed_precondition_and_the_other_holds_are_aborted(tmp_path):
    data = copy.deepcopy(FAST_CONFIG)
    data["domains"][2]["guardrails"]["max_tenant_rate_bps"] = 3e7
    async with in_process_federation(parse_config(data), tmp_path) as fed:
        first = await fed.broker.request_service(fed.request("a", "t1"))
        with pytest.raises(FailedPrecondition) as info:
            await fed.broker.request_service(fed.request("b", "t1"))
        assert "domain 'edge'" in str(info.value) and "guardrail max_tenant_rate_bps 3e+07" in str(info.value)
        for d in ("access", "transport"):
            states = fed.states(d)
            assert states.pop(rids(first.contract_id)[d]) == COMMITTED
            assert set(states.values()) == {ABORTED}  # every hold of the refused request
            assert fed.status(d).prepared_bps == 0


async def test_an_unreachable_domain_is_unavailable_and_its_abort_is_retried_until_delivered(tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        fed.clients["transport"].faults.update(Prepare="down", Abort="down")
        with pytest.raises(Unavailable) as info:
            await fed.broker.request_service(fed.request("r1"))
        assert "domain 'transport'" in str(info.value) and "failed to connect" in str(info.value)
        for d in ("access", "edge"):
            assert set(fed.states(d).values()) == {ABORTED} and fed.status(d).prepared_bps == 0
        # transport's outcome is unknown to the broker: its aborts wait for the domain to be back
        assert fed.broker.pending_cleanups == 2  # one per offer tried
        assert fed.states("transport") == {}
        assert await fed.broker.retry_cleanups() == 2  # still unreachable
        fed.clients["transport"].faults.clear()
        assert await fed.broker.retry_cleanups() == 0
        # presumed abort: the domain keeps a tombstone, so the lost Prepare, if it ever came, is refused
        tombstones = fed.states("transport")
        assert len(tombstones) == 2 and set(tombstones.values()) == {ABORTED}
        assert fed.broker.stats.cleanups_pending == 0


async def test_a_commit_whose_answer_is_lost_is_released_with_the_others(tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        fed.clients["transport"].faults["Commit"] = "lose"  # the domain commits, the answer is lost
        with pytest.raises(Unavailable, match="domain 'transport'"):
            await fed.broker.request_service(fed.request("r1"))
        for d in DOMAINS:
            assert set(fed.states(d).values()) == {RELEASED}, d  # committed, then released again
            st = fed.status(d)
            assert st.committed_bps == 0 and st.prepared_bps == 0
        assert fed.broker.pending_cleanups == 0


async def test_release_returns_every_domains_capacity_once(tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        contract = await fed.broker.request_service(fed.request("r1"))
        request = services_pb2.ReleaseServiceRequest(contract_id=contract.contract_id)
        assert (await fed.broker.release_service(request)).released
        for d in DOMAINS:
            assert fed.states(d) == {rids(contract.contract_id)[d]: RELEASED}
            assert fed.status(d).committed_bps == 0
        assert (await fed.broker.release_service(request)).released  # idempotent: no call sent
        assert all(reservation_calls(fed, d) == ["Prepare", "Commit", "Release"] for d in DOMAINS)
        got = fed.broker.get_contract(services_pb2.GetContractRequest(contract_id=contract.contract_id))
        assert got.released


async def test_an_undelivered_abort_is_settled_by_the_domains_hold_expiry(tmp_path, fast_config):
    """The edge goes away after Prepare: its holds lapse by the injected clock (no real waiting)."""
    async with in_process_federation(fast_config(), tmp_path) as fed:
        fed.clients["edge"].faults.update(Commit="down", Abort="down")
        with pytest.raises(Unavailable, match="domain 'edge'"):
            await fed.broker.request_service(fed.request("r1"))
        for d in ("access", "transport"):  # they had committed: released again
            assert set(fed.states(d).values()) == {RELEASED}
        held = fed.status("edge")
        assert held.prepared_bps > 0 and set(fed.states("edge").values()) == {PREPARED}
        assert fed.broker.pending_cleanups == 2

        fed.clock.advance(fast_config().broker.hold_timeout_s - 0.01)
        assert fed.status("edge").prepared_bps == held.prepared_bps  # not yet
        fed.clock.advance(0.02)
        assert fed.status("edge").prepared_bps == 0
        assert set(fed.states("edge").values()) == {EXPIRED}
        fed.clients["edge"].faults.clear()
        assert await fed.broker.retry_cleanups() == 0  # an abort of an expired hold settles it


async def test_an_admission_in_flight_holds_nothing_it_does_not_finish(tmp_path, fast_config):
    """Held at the transport's gate, an admission has prepared access and edge only; let go, it completes."""
    async with in_process_federation(fast_config(), tmp_path) as fed:
        await fed.broker.resolve(fed.intent())  # plan cached: the admission goes straight to Prepare
        gate = fed.clients["transport"].gate = asyncio.Event()
        task = asyncio.ensure_future(fed.broker.request_service(fed.request("r1")))
        for _ in range(100):
            if fed.clients["transport"].waiting:
                break
            await asyncio.sleep(0)
        assert fed.clients["transport"].waiting == 1 and not task.done()
        assert fed.status("access").prepared_bps > 0 and fed.status("edge").prepared_bps > 0
        assert fed.status("transport").prepared_bps == 0
        gate.set()
        contract = await task
        assert [fed.status(d).committed_bps for d in DOMAINS] == [b.rate_bps for b in contract.offer.budgets]


async def test_an_envelope_served_for_another_domain_is_malformed_and_does_not_lock_that_domain_out(
        tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        honest = fed.clients["transport"].get_envelope

        async def access_envelope(tre_id: str):  # validly signed, by the wrong domain
            return await fed.clients["access"].get_envelope("")

        fed.clients["transport"].get_envelope = access_envelope
        with pytest.raises(VerificationError) as info:
            await fed.broker.envelope("transport")
        assert info.value.reason is Reason.MALFORMED
        assert "envelope of domain 'access' served by 'transport'" in str(info.value)
        resolved = await fed.broker.resolve(fed.intent())
        assert not resolved.offers
        # only transport is refused: access's own envelope (the one transport relayed) is accepted
        assert [r.split(": envelope refused")[0].rsplit(": ", 1)[1] for r in resolved.rejections] == [
            "domain 'transport'"] * len(resolved.rejections)
        assert all("(malformed: envelope of domain 'access'" in r for r in resolved.rejections)
        fed.clients["transport"].get_envelope = honest
        assert (await fed.broker.resolve(fed.intent())).offers


async def test_a_grant_that_does_not_match_its_reservation_is_refused(tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        edge = fed.clients["edge"]
        honest = edge.service.commit

        def wrong_grant(request):  # commits the asked reservation, answers with another one's grant
            honest(request)
            rid = request.reservation_id + "-other"
            other = reservation_pb2.CommitRequest(request_id=f"{rid}:commit", reservation_id=rid)
            edge.service.prepare(reservation_pb2.PrepareRequest(
                request_id=f"{rid}:prepare", hold_timeout_s=1.0, reservation=reservation_pb2.ReservationRequest(
                    reservation_id=other.reservation_id, tenant_id="t1", rate_bps=1e6, burst_bits=0.0,
                    delay_budget_s=0.01, epsilon=1e-3)))
            return honest(other)

        edge.service.commit = wrong_grant
        with pytest.raises(FailedPrecondition) as info:
            await fed.broker.request_service(fed.request("r1"))
        message = str(info.value)
        assert message.count("domain 'edge': grant refused (malformed: grant does not match reservation") == 2
        for d in ("access", "transport"):
            assert set(fed.states(d).values()) == {RELEASED}


def test_domain_call_errors_survive_pickling():
    exc = DomainCallError("edge", "Prepare", grpc.StatusCode.RESOURCE_EXHAUSTED, "domain 'edge': capacity")
    back = pickle.loads(pickle.dumps(exc))
    assert (back.domain_id, back.method, back.code, back.details) == ("edge", "Prepare", exc.code, exc.details)
    assert str(back) == str(exc)
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in DEFINITE_REFUSALS and grpc.StatusCode.UNAVAILABLE not in DEFINITE_REFUSALS
    assert grpc.StatusCode.DEADLINE_EXCEEDED not in DEFINITE_REFUSALS  # outcome unknown: must be aborted


# ---------------------------------------------------------------------------- plan_offer (pure)


def _candidate(cfg, model_id: str = "small"):
    model = next(m for m in cfg.models if m.id == model_id)
    path = cfg.paths(cfg.tenants[0].access, model.compute_domain)[0]
    bodies = [cfg.domain(d).envelope_body("k") for d in path]
    prices = [cfg.domain(d).price_per_mbps_hour for d in path]
    return model, path, bodies, prices


@pytest.mark.parametrize("deadline, epsilon", [(0.0175, 0.01), (0.012, 0.01), (0.03, 0.006), (0.1, 0.05)])
def test_offers_meet_the_deadline_at_the_reserved_rates(fast_config, deadline, epsilon):
    """plan_rates guarantees compose_path(...).delay <= deadline at its rates: the offer relies on it."""
    cfg = fast_config()
    model, path, bodies, prices = _candidate(cfg)
    intent = cfg.tenants[0].intent.model_copy(update={"deadline_s": deadline, "epsilon": epsilon})
    offer = plan_offer(model, path, bodies, intent, prices)
    assert offer.bound.delay_s <= deadline
    # the domains' budgets share the deadline (each backed by its domain's own bound where they fit)
    assert sum(b.delay_s for b in offer.budgets) <= deadline * (1 + 1e-9)
    assert sum(b.epsilon for b in offer.budgets) <= offer.bound.epsilon_delay * (1 + 1e-9)
    assert offer.offer_id == plan_offer(model, path, bodies, intent, prices).offer_id  # a digest of plan_key
    assert plan_key(model, path, bodies, intent) == plan_key(model, tuple(path), bodies, intent)


def test_rates_are_raised_to_the_guardrail_minimum_and_the_bound_stays_within_the_deadline(fast_config):
    cfg = fast_config()
    model, path, bodies, prices = _candidate(cfg)
    intent = cfg.tenants[0].intent
    planned = plan_offer(model, path, bodies, intent, prices)
    bodies[2].guardrails.min_tenant_rate_bps = 5e7  # above the ~20 Mb/s the edge needs
    raised = plan_offer(model, path, bodies, intent, prices)
    assert raised.budgets[2].rate_bps == 5e7
    assert [b.rate_bps for b in raised.budgets[:2]] == [b.rate_bps for b in planned.budgets[:2]]
    assert raised.bound.delay_s <= planned.bound.delay_s <= intent.deadline_s
    assert raised.price_per_hour > planned.price_per_hour


def test_a_raised_rate_never_yields_a_bound_above_the_deadline(fast_config, monkeypatch):
    """Should the bound at the raised rates come out above the deadline (optimiser tolerance), the
    offer carries the bound at the planned rates, which holds for the faster service too."""
    cfg = fast_config()
    model, path, bodies, prices = _candidate(cfg)
    intent = cfg.tenants[0].intent
    bodies[2].guardrails.min_tenant_rate_bps = 5e7
    real = compose.compose_path

    def sloppy(slices, traffic, **kw):
        env = real(slices, traffic, **kw)
        return dataclasses.replace(env, delay=2 * intent.deadline_s) if slices[2].rate == 5e7 else env

    monkeypatch.setattr(compose, "compose_path", sloppy)
    offer = plan_offer(model, path, bodies, intent, prices)
    assert offer.budgets[2].rate_bps == 5e7 and offer.bound.delay_s <= intent.deadline_s


def test_infeasible_candidates_name_the_domain_and_the_limit(fast_config):
    cfg = fast_config()
    model, path, bodies, prices = _candidate(cfg)
    intent = cfg.tenants[0].intent
    with pytest.raises(Infeasible, match="no delay budget"):
        plan_offer(model, path, bodies, intent.model_copy(update={"epsilon": 0.001}), prices)
    bodies[0].guardrails.max_burst_bits = 1e5
    with pytest.raises(Infeasible, match="domain 'access': burst 200000 bits exceeds guardrail max_burst_bits"):
        plan_offer(model, path, bodies, intent, prices)


def test_the_planning_is_pure():
    """agents.broker.plan imports no gRPC, no event loop, no Ray (checked in a fresh interpreter)."""
    code = "import sys, agents.broker.plan; print(sorted(m for m in ('grpc', 'asyncio', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_no_offer_because_a_domain_is_unreachable_is_unavailable_not_an_answer(tmp_path, fast_config):
    """A candidate lost only to an unreachable domain (its envelope cannot be fetched) makes "no offer"
    a temporary state: UNAVAILABLE (retry), not FAILED_PRECONDITION (the intent cannot be met)."""
    async with in_process_federation(fast_config(), tmp_path) as fed:
        fed.broker.forget_envelope("transport")
        fed.clients["transport"].faults.update(GetEnvelope="down")
        with pytest.raises(Unavailable, match=r"domain 'transport': unreachable"):
            await fed.broker.request_service(fed.request("r1"))
        fed.clients["transport"].faults.clear()
        contract = await fed.broker.request_service(fed.request("r2"))
        assert len(contract.grants) == 3
