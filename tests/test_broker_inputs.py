"""Inputs that used to get through: in-range doubles that crashed planning, and huge fields echoed
in error details (from the fuzz campaign of issue 12).

Planning is checked on the broker's logic without a socket (``tests/inprocess.py``); the echo over
real gRPC on 127.0.0.1, because the failure was gRPC's metadata limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import grpc
import pytest
from inprocess import in_process_federation
from test_broker import federation as broker_federation
from trefed.v1 import reservation_pb2, services_pb2, services_pb2_grpc

from agents.broker.plan import PHYSICAL_RANGES
from agents.errors import InvalidArgument
from agents.server import MAX_DETAILS_CHARS


def _poisson(intent: services_pb2.Intent, rate_pps: float, mean_size_bits: float) -> services_pb2.Intent:
    intent.traffic.poisson.CopyFrom(services_pb2.PoissonTraffic(rate_pps=rate_pps, mean_size_bits=mean_size_bits,
                                                                exponential_sizes=True))
    return intent


@pytest.mark.parametrize("change, field", [
    (lambda i: _poisson(i, 1e3, 5e-324), "intent.traffic.poisson.mean_size_bits"),  # was ZeroDivisionError
    (lambda i: setattr(i, "deadline_s", 1e300) or i, "intent.deadline_s"),         # was OverflowError
    (lambda i: _poisson(i, 1e300, 1e3), "intent.traffic.poisson.rate_pps"),       # was a math domain error
    (lambda i: i.traffic.token_bucket.__setattr__("rho_bps", 1e300) or i, "intent.traffic.token_bucket.rho_bps"),
])
async def test_intents_that_crashed_planning_are_invalid_arguments(tmp_path, fast_config, change, field):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        intent = change(fed.intent("t1"))
        for call in (fed.broker.resolve(intent),
                     fed.broker.request_service(services_pb2.ServiceRequest(request_id="x", intent=intent))):
            with pytest.raises(InvalidArgument, match=field.replace(".", r"\.")):
                await call
        assert field in PHYSICAL_RANGES
        # nothing was held anywhere
        assert all(fed.status(d).prepared_bps == 0 and fed.status(d).committed_bps == 0 for d in fed.services)


async def test_a_numeric_failure_inside_planning_is_an_invalid_argument(tmp_path, fast_config, monkeypatch):
    """The safety net: whatever in-range input the calculus still cannot handle is the input's fault."""
    import agents.broker.logic

    def overflow(*args, **kwargs):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(agents.broker.logic, "plan_offer", overflow)
    async with in_process_federation(fast_config(), tmp_path) as fed:
        with pytest.raises(InvalidArgument, match=r"intent: the calculus cannot plan model .* \(OverflowError"):
            await fed.broker.resolve(fed.intent("t1"))


async def test_huge_fields_are_not_echoed_past_the_metadata_limit(tmp_path, fast_config):
    """A 20 kB contract id is NOT_FOUND (not RESOURCE_EXHAUSTED, gRPC's answer to oversized details)."""
    async with broker_federation(fast_config(), tmp_path) as fed:
        huge = "c" * 20_000
        for call, code in (
            (fed.stub.GetContract(services_pb2.GetContractRequest(contract_id=huge), timeout=10),
             grpc.StatusCode.NOT_FOUND),
            (fed.stub.ReleaseService(services_pb2.ReleaseServiceRequest(request_id="r", contract_id=huge), timeout=10),
             grpc.StatusCode.NOT_FOUND),
            (fed.stub.ResolveIntent(services_pb2.Intent(tenant_id="t1", task="x" * 20_000), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == code, info.value.details()[:200]
            assert len(info.value.details()) <= MAX_DETAILS_CHARS
        async with grpc.aio.insecure_channel(await fed.domains["edge"].address()) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await services_pb2_grpc.DomainControllerStub(channel).GetEnvelope(
                    services_pb2.GetEnvelopeRequest(tre_id="t" * 20_000), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "chars cut" in info.value.details()


async def test_a_release_a_domain_missed_is_retried_in_the_background(tmp_path, fast_config):
    """ReleaseService with one domain down: UNAVAILABLE, the contract reads releasing, and the broker
    retries there until the domain confirms; then the contract reads released everywhere."""
    from agents.errors import Unavailable

    async with in_process_federation(fast_config(), tmp_path) as fed:
        contract = await fed.broker.request_service(fed.request("r1"))
        cid = contract.contract_id
        fed.clients["transport"].faults["Release"] = "down"
        with pytest.raises(Unavailable, match="domain 'transport'.*retried in the background"):
            await fed.broker.release_service(services_pb2.ReleaseServiceRequest(request_id="rel", contract_id=cid))
        now = fed.broker.get_contract(services_pb2.GetContractRequest(contract_id=cid))
        assert now.releasing and not now.released
        assert fed.broker.pending_cleanups == 1
        assert fed.status("access").committed_bps == 0 and fed.status("edge").committed_bps == 0
        assert fed.status("transport").committed_bps > 0
        assert await fed.broker.retry_cleanups() == 1  # still down
        fed.clients["transport"].faults.clear()
        assert await fed.broker.retry_cleanups() == 0
        now = fed.broker.get_contract(services_pb2.GetContractRequest(contract_id=cid))
        assert now.released and not now.releasing
        assert all(fed.status(d).committed_bps == 0 for d in fed.services)
        # the background task does the same on its own
        contract = await fed.broker.request_service(fed.request("r2"))
        fed.clients["edge"].faults["Release"] = "down"
        with pytest.raises(Unavailable):
            await fed.broker.release_service(services_pb2.ReleaseServiceRequest(request_id="rel2",
                                                                                contract_id=contract.contract_id))
        fed.clients["edge"].faults.clear()
        for _ in range(100):
            if fed.broker.pending_cleanups == 0:
                break
            await asyncio.sleep(0.05)
        assert fed.broker.get_contract(services_pb2.GetContractRequest(contract_id=contract.contract_id)).released
        assert fed.status("edge").committed_bps == 0


async def test_a_grant_of_another_tenant_is_refused(tmp_path, fast_config):
    """The broker binds every grant to the contract's tenant (verify_grant(expected_tenant=...))."""
    from trefed.v1 import reservation_pb2

    from agents.errors import FailedPrecondition

    async with in_process_federation(fast_config(), tmp_path) as fed:
        edge = fed.clients["edge"]
        honest_prepare = edge.service.prepare

        def as_someone_else(request):  # a domain that books the reservation for another tenant
            changed = reservation_pb2.PrepareRequest()
            changed.CopyFrom(request)
            changed.reservation.tenant_id = "mallory"
            return honest_prepare(changed)

        edge.service.prepare = as_someone_else
        with pytest.raises(FailedPrecondition, match="domain 'edge': grant refused \\(not-bound-to-party: grant "
                                                     "tenant_id is 'mallory', expected 't1'"):
            await fed.broker.request_service(fed.request("r1"))


async def test_a_restarted_broker_recovers_contracts_releases_and_unfinished_admissions(tmp_path, fast_config):
    """The broker's state survives it (agents.broker.store): its contracts, a release in progress, and
    an admission it died in the middle of -- after every domain committed, before the contract was
    stored -- whose reservations a restarted broker releases."""

    from agents.broker.logic import Broker
    from agents.errors import Unavailable

    async with in_process_federation(fast_config(), tmp_path) as fed:
        def new_broker() -> Broker:
            return fed.broker_on(tmp_path / "broker.db")

        first = new_broker()
        kept = await first.request_service(fed.request("r1"))
        releasing = await first.request_service(fed.request("r2", "t2"))
        first.domains["edge"].faults["Release"] = "down"
        with pytest.raises(Unavailable):
            await first.release_service(services_pb2.ReleaseServiceRequest(request_id="x",
                                                                           contract_id=releasing.contract_id))
        # the broker "dies" after its commits reached the domains: their answers never come back
        never = asyncio.Event()
        for client in first.domains.values():
            real = client.commit

            async def commit_then_hang(request, real=real):
                await real(request)
                await never.wait()

            client.commit = commit_then_hang
        admission = asyncio.ensure_future(first.request_service(fed.request("r3", "t3")))
        lost: dict[str, str] = {}
        for _ in range(10_000):
            inflight = first.store.inflight()  # the admission in flight, as the store recorded it
            if inflight:
                [(cid, path)] = inflight.items()
                lost = {d: f"{cid}.{d}" for d in path}
                if all(fed.states(d).get(rid) == reservation_pb2.COMMITTED for d, rid in lost.items()):
                    break
            await asyncio.sleep(0)
        assert len(lost) == 3 and all(fed.states(d)[rid] == reservation_pb2.COMMITTED for d, rid in lost.items())
        first._requests["r3"].future.cancel()  # what is left of the dead broker goes
        with contextlib.suppress(asyncio.CancelledError):
            await admission
        await first.close()
        first.store.close()

        second = new_broker()
        assert second.recover() == 4  # r3 in three domains, r2's release at the edge
        assert await second.retry_cleanups() == 0
        got = second.get_contract(services_pb2.GetContractRequest(contract_id=kept.contract_id))
        assert got == kept and not got.released
        again = second.get_contract(services_pb2.GetContractRequest(contract_id=releasing.contract_id))
        assert again.released and not again.releasing
        for d in fed.services:
            assert fed.states(d)[lost[d]] == reservation_pb2.RELEASED
            st = fed.status(d)
            assert st.prepared_bps == 0
            assert math.isclose(st.committed_bps, kept.offer.budgets[list(kept.offer.path).index(d)].rate_bps), d
        await second.release_service(services_pb2.ReleaseServiceRequest(request_id="y", contract_id=kept.contract_id))
        assert all(fed.status(d).committed_bps == 0 for d in fed.services)
        await second.close()
        second.store.close()
