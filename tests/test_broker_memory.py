"""The broker's memory per admission is bounded: a soak of admit/release (``benchmarks/bench_soak.py``)
grew its RSS by ~8 kB per admission, toward 100 000 contracts held twice (the contract cache and
each done request's future). Now a few recent contracts are cached and a done request keeps its
contract id only; everything older is read back from the store, and still works.

In-process (``tests/inprocess.py``): real domain logic, SQLite, signing; no sockets.
"""

from __future__ import annotations

from inprocess import in_process_federation
from trefed.v1 import reservation_pb2, services_pb2

import agents.broker.logic as broker_logic

DOMAINS = ("access", "transport", "edge")


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
        assert len(b._requests) == 10 and all(p.future is None for p in b._requests.values())
        assert b._requests["r0"].contract_id == first.contract_id

        prepares = sum(fed.clients[d].calls.count("Prepare") for d in DOMAINS)
        again = await b.request_service(fed.request("r0", "t0"))  # a retry: the same contract, from the store
        assert again == first
        assert sum(fed.clients[d].calls.count("Prepare") for d in DOMAINS) == prepares
        assert b.get_contract(services_pb2.GetContractRequest(contract_id=first.contract_id)) == first

        await b.release_service(services_pb2.ReleaseServiceRequest(request_id="x0", contract_id=first.contract_id))
        assert b.get_contract(services_pb2.GetContractRequest(contract_id=first.contract_id)).released
        for d in DOMAINS:
            assert fed.states(d)[f"{first.contract_id}.{d}"] == reservation_pb2.RELEASED
            assert fed.status(d).committed_bps == 0
