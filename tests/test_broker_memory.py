"""The broker's memory per admission is bounded: a soak of admit/release (``benchmarks/bench_soak.py``)
grew its RSS by ~8 kB per admission, toward 100 000 contracts held twice (the contract cache and
each done request's future). Now a few recent contracts are cached and only the admissions in
flight are held; an answered request id is in the store, so a retry gets its contract from there,
also from a broker restarted on the same store.

In-process (``tests/inprocess.py``): real domain logic, SQLite, signing; no sockets.
"""

from __future__ import annotations

import pytest
from inprocess import in_process_federation
from trefed.v1 import reservation_pb2, services_pb2

import agents.broker.logic as broker_logic
from agents.broker.logic import Broker
from agents.errors import AlreadyExists

DOMAINS = ("access", "transport", "edge")


def prepares(fed) -> int:
    return sum(fed.clients[d].calls.count("Prepare") for d in DOMAINS)


async def test_old_contracts_and_requests_are_served_from_the_store_not_held_in_memory(
        tmp_path, fast_config, monkeypatch):
    monkeypatch.setattr(broker_logic, "_CONTRACT_CACHE", 4, raising=False)
    async with in_process_federation(fast_config(), tmp_path) as fed:
        b = fed.broker
        first = await b.request_service(fed.request("r0", "t0"))
        for i in range(1, 10):
            c = await b.request_service(fed.request(f"r{i}", f"t{i}"))
            await b.release_service(services_pb2.ReleaseServiceRequest(request_id=f"x{i}", contract_id=c.contract_id))
        assert len(b._contracts) <= 4 and first.contract_id not in b._contracts
        assert not b._requests  # nothing in flight

        n = prepares(fed)
        again = await b.request_service(fed.request("r0", "t0"))  # a retry: the same contract, from the store
        assert again == first and prepares(fed) == n
        with pytest.raises(AlreadyExists, match="'r0' was used for a different request"):
            await b.request_service(fed.request("r0", "t9"))
        assert b.get_contract(services_pb2.GetContractRequest(contract_id=first.contract_id)) == first

        await b.release_service(services_pb2.ReleaseServiceRequest(request_id="x0", contract_id=first.contract_id))
        assert b.get_contract(services_pb2.GetContractRequest(contract_id=first.contract_id)).released
        for d in DOMAINS:
            assert fed.states(d)[f"{first.contract_id}.{d}"] == reservation_pb2.RELEASED
            assert fed.status(d).committed_bps == 0


async def test_a_retry_after_a_broker_restart_gets_its_contract_not_a_second_one(tmp_path, fast_config):
    async with in_process_federation(fast_config(), tmp_path) as fed:
        def new_broker() -> Broker:
            return fed.broker_on(tmp_path / "broker.db")

        first = new_broker()
        contract = await first.request_service(fed.request("r1"))
        await first.close()
        first.store.close()
        second = new_broker()
        assert second.recover() == 0
        again = await second.request_service(fed.request("r1"))
        assert again == contract
        assert all(list(fed.states(d)) == [f"{contract.contract_id}.{d}"] for d in DOMAINS)  # no second admission
        await second.close()
        second.store.close()
