"""The retention rule: finished state is deleted past ``broker.retention_s``, active state never.

Domains (``agents/domain/store.py``, the sweep of ``agents/domain/logic.py``) delete finished
reservations and logged responses past the horizon in bounded chunks; the broker
(``agents/broker/store.py``) deletes released contracts and answered request ids. In-process, on a
fake clock, no sockets (``tests/inprocess.py``).
"""

from __future__ import annotations

import copy
import sqlite3

import pytest
import yaml
from conftest import FAST_CONFIG
from inprocess import FakeClock, in_process_federation
from test_domain_store import prepare_req
from trefed.v1 import reservation_pb2, services_pb2

from agents.broker.store import BrokerStore
from agents.cli import main as trefed
from agents.domain.logic import DomainService
from agents.domain.servicer import DomainControllerAgent
from agents.domain.store import ReservationRecord, ReservationStore
from agents.errors import NotFound, Unavailable
from federation.errors import ConfigError

DOMAINS = ("access", "transport", "edge")
RETENTION_S = 60.0
HOLD_S = 5.0


def _record(rid: str, state: int, updated_at: float) -> ReservationRecord:
    return ReservationRecord(rid, "t", "c", 1e6, 1e4, 0.01, 1e-3, state, updated_at - 1, updated_at + 5, updated_at,
                             b"fp")


def test_store_deletes_finished_rows_in_chunks_and_never_active_ones(tmp_path):
    store = ReservationStore(tmp_path / "d.db")
    try:
        with store.transaction():
            for i in range(1200):
                state = (reservation_pb2.RELEASED, reservation_pb2.EXPIRED, reservation_pb2.ABORTED)[i % 3]
                store.put(_record(f"old{i}", state, 100.0 + i))
            store.put(_record("prep", reservation_pb2.PREPARED, 1.0))  # old, but active: never deleted
            store.put(_record("comm", reservation_pb2.COMMITTED, 1.0))
            store.put(_record("new", reservation_pb2.RELEASED, 5000.0))  # finished, within the horizon
            for i in range(700):
                store.put_response("Prepare", f"r{i}", b"f", b"x", now=100.0 + i)
            store.put_response("Prepare", "recent", b"f", b"x", now=5000.0)
        with store.transaction():
            assert [store.prune_finished(4000.0, 500) for _ in range(4)] == [500, 500, 200, 0]
            assert [store.prune_responses(4000.0, 500) for _ in range(3)] == [500, 200, 0]
        assert sorted(r.reservation_id for r in store.all()) == ["comm", "new", "prep"]
        assert store.get("old1199") is None and store.get("prep").state == reservation_pb2.PREPARED
        assert store.count_responses() == 1 and store.get_response("Prepare", "recent") is not None
    finally:
        store.close()


def test_a_steady_state_reuses_freed_pages_so_the_file_stays_flat(tmp_path):
    """Insert 3 000 finished rows and delete as many per round: after the first rounds the file
    neither grows nor needs VACUUM (SQLite's freelist)."""
    store = ReservationStore(tmp_path / "d.db")
    sizes = []
    try:
        for rnd in range(8):
            with store.transaction():
                for i in range(3000):
                    store.put(_record(f"{rnd}-{i}", reservation_pb2.RELEASED, 1000.0 * rnd + i / 10))
                    store.put_response("Release", f"{rnd}-{i}", b"f" * 32, b"x" * 200, now=1000.0 * rnd + i / 10)
            with store.transaction():  # keep only the latest round
                while store.prune_finished(1000.0 * rnd, 500) or store.prune_responses(1000.0 * rnd, 500):
                    pass
            store.checkpoint()
            sizes.append((tmp_path / "d.db").stat().st_size)
        assert store.count_reservations() == 3000 and store.count_responses() == 3000
        assert sizes[-1] <= sizes[2] * 1.05, sizes  # flat after two rounds
    finally:
        store.close()


async def test_finished_state_is_deleted_past_the_horizon_and_active_state_survives(tmp_path, fast_config):
    clock = FakeClock()
    config = fast_config(broker={"retention_s": RETENTION_S})
    async with in_process_federation(config, tmp_path, clock=clock, max_hold_s=HOLD_S,
                                     retention_s=RETENTION_S) as fed:
        b = fed.broker
        keep = await b.request_service(fed.request("r-keep", "t1"))
        gone = await b.request_service(fed.request("r-gone", "t2"))
        await b.release_service(services_pb2.ReleaseServiceRequest(request_id="x", contract_id=gone.contract_id))
        edge = fed.services["edge"]
        edge.prepare(prepare_req("p-lapse", "lapse", tenant="t3", hold=HOLD_S))  # never committed: expires
        clock.advance(HOLD_S + 1)
        assert edge.sweep() == 1  # EXPIRED now, 6 s in: its horizon starts here

        clock.advance(RETENTION_S - HOLD_S - 2)  # 59 s in
        for d in DOMAINS:
            fed.services[d].sweep()
        assert b.prune(force=True) == 0
        assert fed.states("edge") == {f"{keep.contract_id}.edge": reservation_pb2.COMMITTED,
                                      f"{gone.contract_id}.edge": reservation_pb2.RELEASED,
                                      "lapse": reservation_pb2.EXPIRED}
        n = sum(c.calls.count("Prepare") for c in fed.clients.values())
        assert await b.request_service(fed.request("r-gone", "t2")) == gone  # a retry within the window
        assert sum(c.calls.count("Prepare") for c in fed.clients.values()) == n
        assert b.get_contract(services_pb2.GetContractRequest(contract_id=gone.contract_id)).released

        clock.advance(8.0)  # 67 s in: past the horizon of the release (0 s) and of the expiry (6 s)
        for d in DOMAINS:
            fed.services[d].sweep()
        assert b.prune(force=True) == 3  # the released contract and both request ids
        for d in DOMAINS:
            assert fed.states(d) == {f"{keep.contract_id}.{d}": reservation_pb2.COMMITTED}, d
            assert fed.services[d]._store.count_reservations() == 1
            assert fed.services[d]._store.count_responses() == 0
            assert fed.status(d).committed_bps > 0
        assert b.store.count_contracts() == 1 and b.store.count_requests() == 0
        with pytest.raises(NotFound):
            b.get_contract(services_pb2.GetContractRequest(contract_id=gone.contract_id))
        assert not b.get_contract(services_pb2.GetContractRequest(contract_id=keep.contract_id)).released

        # The active contract outlived the horizon and still releases; then it goes too.
        await b.release_service(services_pb2.ReleaseServiceRequest(request_id="y", contract_id=keep.contract_id))
        for d in DOMAINS:
            assert fed.status(d).committed_bps == 0
        clock.advance(RETENTION_S + 1)
        for d in DOMAINS:
            fed.services[d].sweep()
        assert b.prune(force=True) == 1
        assert all(fed.services[d]._store.count_reservations() == 0 for d in DOMAINS)
        assert b.store.count_contracts() == 0


def test_a_release_in_progress_is_kept_and_an_old_file_gets_the_columns(tmp_path):
    path = tmp_path / "broker.db"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE contracts (contract_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, contract BLOB NOT NULL,
                                releasing TEXT NOT NULL DEFAULT '[]');
        CREATE TABLE requests (request_id TEXT PRIMARY KEY, fingerprint BLOB NOT NULL, contract_id TEXT NOT NULL);
    """)
    old = services_pb2.ServiceContract(contract_id="c-old", tenant_id="t", released=True)
    live = services_pb2.ServiceContract(contract_id="c-live", tenant_id="t")
    con.executemany("INSERT INTO contracts VALUES (?, ?, ?, '[]')",
                    [(c.contract_id, "t", c.SerializeToString()) for c in (old, live)])
    con.execute("INSERT INTO requests VALUES ('r', x'00', 'c-live')")
    con.commit()
    con.close()
    clock = FakeClock()
    store = BrokerStore(path, clock=clock)
    try:
        releasing = services_pb2.ServiceContract(contract_id="c-rel", tenant_id="t", releasing=True)
        store.put_contract(releasing, {"edge"})  # a domain has not confirmed: not released
        clock.advance(100.0)
        assert store.prune(99.0) == (["c-old"], 1)  # stamped at the migration
        assert store.contract("c-live") is not None and store.contract("c-rel") is not None
        releasing.released, releasing.releasing = True, False
        store.put_contract(releasing)  # confirmed now: the horizon starts now
        clock.advance(50.0)
        store.put_contract(releasing)  # stored again later: keeps its release time
        clock.advance(50.0)
        assert store.prune(99.0) == (["c-rel"], 0)
        assert store.prune(99.0) == ([], 0) and store.count_contracts() == 1
    finally:
        store.close()


@pytest.mark.parametrize(("value", "problem"), [(1.0, "must be >= hold_timeout_s"), (-5, "must be > 0"),
                                                ("a week", "valid number")])
def test_a_bad_retention_exits_2_naming_the_field(tmp_path, capsys, value, problem):
    data = copy.deepcopy(FAST_CONFIG)
    data["broker"]["retention_s"] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert trefed(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "broker.retention_s" in err and problem in err and "Traceback" not in err


def test_a_domain_refuses_a_retention_shorter_than_its_longest_hold(tmp_path, key_and_template):
    key, body = key_and_template
    with pytest.raises(ConfigError, match=r"retention_s\(=4.0\) must be finite and >= max_hold_s\(=5.0\)"):
        DomainControllerAgent(body.SerializeToString(), key.private_pem(), str(tmp_path / "d.db"), max_hold_s=5.0,
                              retention_s=4.0)
    store = ReservationStore(":memory:")
    try:
        with pytest.raises(ConfigError, match="retention_s"):
            DomainService(body, key, store, max_hold_s=5.0, retention_s=float("nan"))
    finally:
        store.close()


@pytest.fixture
def key_and_template():
    from test_domain_store import make_template

    from federation.tre.signing import SigningKey

    key = SigningKey.generate("transport")
    return key, make_template("transport")


async def test_a_release_whose_answer_was_lost_settles_after_the_domain_forgot_it(tmp_path, fast_config):
    """The domain released, the answer was lost, and its row was deleted past the horizon before
    the broker's retry: the retry's NOT_FOUND settles the release (the contract is not stuck
    ``releasing`` for ever)."""
    clock = FakeClock()
    config = fast_config(broker={"retention_s": RETENTION_S})
    async with in_process_federation(config, tmp_path, clock=clock, max_hold_s=HOLD_S,
                                     retention_s=RETENTION_S) as fed:
        b = fed.broker
        c = await b.request_service(fed.request("r1"))
        fed.clients["edge"].faults["Release"] = "lose"
        with pytest.raises(Unavailable, match="edge"):
            await b.release_service(services_pb2.ReleaseServiceRequest(request_id="x", contract_id=c.contract_id))
        assert fed.states("edge")[f"{c.contract_id}.edge"] == reservation_pb2.RELEASED  # applied, answer lost
        assert b.get_contract(services_pb2.GetContractRequest(contract_id=c.contract_id)).releasing
        clock.advance(RETENTION_S + 1)
        fed.services["edge"].sweep()
        assert fed.states("edge") == {}
        del fed.clients["edge"].faults["Release"]
        done = await b.release_service(services_pb2.ReleaseServiceRequest(request_id="x", contract_id=c.contract_id))
        assert done.released
        contract = b.get_contract(services_pb2.GetContractRequest(contract_id=c.contract_id))
        assert contract.released and not contract.releasing
        assert b.store.releasing() == {}
