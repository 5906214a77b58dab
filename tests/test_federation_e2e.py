"""End to end over real gRPC between real Ray actors: three domain controllers and a broker on the
session's Ray (``fast_federation``), driven by a gRPC client in the test.

Every test leaves the federation as it found it (no reservation held).
"""

from __future__ import annotations

import asyncio
import json
import math
import time

import grpc
import pytest
import pytest_asyncio
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2, services_pb2_grpc

import agents.cli.run
import agents.runner
import agents.tenant
from agents.access import BROKER
from agents.broker.logic import TrustEntry
from agents.broker.servicer import BrokerAgent
from agents.cli import main as trefed
from agents.cli.run import render_outcomes
from agents.domain.servicer import DOMAIN_CONTROLLER_SERVICE
from agents.server import add_servicer, open_channel, start_grpc_server
from agents.tenant import BudgetSummary, TenantOutcome
from federation.config import TokenBucketConfig
from federation.tre.ca import PeerIdentity
from federation.tre.signing import sign_envelope

DOMAINS = ("access", "transport", "edge")


def intent(fed, tenant: str, **changes) -> services_pb2.Intent:
    return fed.config.tenants[0].intent.model_copy(update=changes).to_proto(tenant)


async def attempt(stub, request_id: str, msg: services_pb2.Intent):
    """(contract or None, status code, details)."""
    try:
        c = await stub.RequestService(services_pb2.ServiceRequest(request_id=request_id, intent=msg), timeout=30)
        return c, grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return None, exc.code(), exc.details() or ""


async def release_all(stub, contracts) -> None:
    """Release contracts; UNAVAILABLE (a domain still reconnecting) is retried, as the broker asks."""
    for c in contracts:
        req = services_pb2.ReleaseServiceRequest(request_id=f"rel-{c.contract_id}", contract_id=c.contract_id)
        for attempt_no in range(20):
            try:
                r = await stub.ReleaseService(req, timeout=30)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt_no == 19:
                    raise
                await asyncio.sleep(0.25)
        assert r.released


def committed_rows(fed, domain: str) -> dict[str, float]:
    st = fed.domain_status(domain, include_reservations=True)
    return {r.request.reservation_id: r.request.rate_bps for r in st.reservations
            if r.state == reservation_pb2.COMMITTED}


async def edge_fit(stub, fed) -> tuple[float, int]:
    """The edge rate of a default tenant's best offer, and how many such tenants the edge holds."""
    offer = (await stub.ResolveIntent(intent(fed, "probe"), timeout=60)).offers[0]
    rate = offer.budgets[2].rate_bps
    fit = math.floor(fed.config.domain("edge").guardrails.reservable_capacity_bps / rate)
    assert 2 <= fit <= 5
    return rate, fit


def assert_clean(fed) -> None:
    for d in DOMAINS:
        st = fed.domain_status(d)
        assert st.committed_bps == 0 and st.prepared_bps == 0, (d, st)


@pytest_asyncio.fixture(loop_scope="function")
async def broker(fast_federation):
    channel = open_channel(fast_federation.broker_address, fast_federation.credentials("operator", "tests"), BROKER)
    try:
        yield services_pb2_grpc.BrokerStub(channel)
    finally:
        await channel.close()


def test_public_names():
    for mod in (agents.cli.run, agents.runner, agents.tenant):
        assert all(hasattr(mod, n) for n in mod.__all__)


async def test_admit_until_capacity_then_rejection_naming_the_domain(fast_federation, broker):
    fed = fast_federation
    rate, fit = await edge_fit(broker, fed)
    contracts = []
    for i in range(fit):
        c, code, details = await attempt(broker, f"cap-{i}", intent(fed, f"cap{i}"))
        assert code == grpc.StatusCode.OK, details
        contracts.append(c)
    c, code, details = await attempt(broker, "cap-x", intent(fed, "capx"))
    assert c is None and code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "domain 'edge'" in details and "reservable capacity" in details
    edge = fed.domain_status("edge")
    assert math.isclose(edge.committed_bps, fit * rate, rel_tol=1e-9)
    assert edge.committed_bps <= edge.reservable_capacity_bps
    for d in DOMAINS:
        assert fed.domain_status(d).prepared_bps == 0
    await release_all(broker, contracts)
    assert_clean(fed)
    # capacity is back: a new tenant is admitted
    c, code, details = await attempt(broker, "cap-6", intent(fed, "cap6"))
    assert code == grpc.StatusCode.OK, details
    await release_all(broker, [c])
    assert_clean(fed)


async def test_200_concurrent_requests_never_overbook_any_domain(fast_federation, broker):
    fed = fast_federation
    _, fit = await edge_fit(broker, fed)
    before = fed.broker_stats()
    results = await asyncio.gather(*(attempt(broker, f"conc-{i}", intent(fed, f"conc{i}")) for i in range(200)))
    after = fed.broker_stats()
    # the domains' calls travelled in shared Batch rpcs (group commit), each still checked alone
    assert after["domain_rpcs_sent"] - before["domain_rpcs_sent"] < after["domain_items_sent"] - before["domain_items_sent"]
    admitted = [c for c, code, _ in results if code == grpc.StatusCode.OK]
    refused = [(code, d) for c, code, d in results if code != grpc.StatusCode.OK]
    # the edge is the only bottleneck: exactly as many as fit are admitted
    assert len(admitted) == fit, refused[:3]
    assert all(code == grpc.StatusCode.RESOURCE_EXHAUSTED and "domain 'edge'" in d for code, d in refused)
    for d in DOMAINS:
        st = fed.domain_status(d)
        assert st.committed_bps <= st.reservable_capacity_bps * (1 + 1e-9)
        assert st.prepared_bps == 0
        rows = committed_rows(fed, d)
        # exactly the admitted contracts hold capacity: nothing leaked from the 195 refusals
        assert set(rows) == {f"{c.contract_id}.{d}" for c in admitted}
        assert math.isclose(st.committed_bps, sum(rows.values()), rel_tol=1e-9)
    await release_all(broker, admitted)
    assert_clean(fed)


async def test_domain_killed_during_prepare_leaves_nothing_and_restart_recovers_committed(fast_federation, broker):
    fed = fast_federation
    # two committed contracts the transport controller must remember across its crash
    held = []
    for i in range(2):
        c, code, details = await attempt(broker, f"keep-{i}", intent(fed, f"keep{i}"))
        assert code == grpc.StatusCode.OK, details
        held.append(c)
    before = committed_rows(fed, "transport")
    assert set(before) == {f"{c.contract_id}.transport" for c in held}

    # a wave of admissions (smaller rates: capacity is not the limit) meets a transport controller
    # that persists its calls but holds their answers; it is killed with answers held, so with
    # admissions in flight whose Prepare it has written and never answered
    transport = fed.domain_actors["transport"]
    fed.runtime.call(transport, "stall")
    small = intent(fed, "x", traffic=TokenBucketConfig(sigma_bits=1e4, rho_bps=5e5))  # 1 Mb/s a domain
    wave = [asyncio.ensure_future(attempt(broker, f"wave-{i}", small)) for i in range(16)]
    deadline = asyncio.get_running_loop().time() + 30.0
    while fed.runtime.call(transport, "held_answers") == 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    held_at_kill = fed.runtime.call(transport, "held_answers")
    fed.kill_domain("transport")
    try:
        assert held_at_kill > 0  # the domain died with admissions in flight (their answers held, never sent)
        results = await asyncio.gather(*wave)
        ok = [c for c, code, _ in results if code == grpc.StatusCode.OK]
        failed = [(code, d) for c, code, d in results if code != grpc.StatusCode.OK]
        assert ok == [] and len(failed) == 16  # no answer ever left the transport: none could commit
        assert all(code == grpc.StatusCode.UNAVAILABLE and "transport" in d for code, d in failed), [
            (code, d) for code, d in failed if not (code == grpc.StatusCode.UNAVAILABLE and "transport" in d)][:3]

        # the reachable domains hold nothing for the failed attempts (aborted at once)
        for d in ("access", "edge"):
            rows = committed_rows(fed, d)
            assert set(rows) == {f"{c.contract_id}.{d}" for c in held + ok}
            assert fed.domain_status(d).prepared_bps == 0
    finally:  # back up whatever was asserted: the module's other tests share this federation
        fed.restart_domain("transport")
    # the restarted controller recovered exactly its committed reservations, and after the hold
    # timeout (1 s) and the broker's retried clean-up nothing else is held
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        st = fed.domain_status("transport", include_reservations=True)
        rows = committed_rows(fed, "transport")
        expected = {f"{c.contract_id}.transport" for c in held + ok}
        if (st.prepared_bps == 0 and set(rows) == expected) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert st.prepared_bps == 0
    assert set(rows) == expected
    assert {k: v for k, v in rows.items() if k in before} == before
    # the holds the transport wrote before dying were recovered and then settled (aborted or expired)
    wave_rows = [r for r in st.reservations if r.request.tenant_id == "x"]
    assert wave_rows and {r.state for r in wave_rows} <= {reservation_pb2.ABORTED, reservation_pb2.EXPIRED}
    assert math.isclose(st.committed_bps, sum(rows.values()), rel_tol=1e-9)
    # the recovered reservations are still the broker's to release, through the new controller
    await release_all(broker, held + ok)
    assert_clean(fed)
    for _ in range(50):  # the broker's background clean-up settles every call it could not deliver
        if fed.broker_stats()["cleanups_pending"] == 0:
            break
        await asyncio.sleep(0.2)
    assert fed.broker_stats()["cleanups_pending"] == 0


async def test_bad_requests_get_invalid_argument_and_serving_goes_on(fast_federation, broker):
    fed = fast_federation
    bad = intent(fed, "bad")
    bad.epsilon = 2.0
    for call in (broker.ResolveIntent(bad), broker.RequestService(services_pb2.ServiceRequest(intent=bad))):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "intent.epsilon" in info.value.details()
    channel = open_channel(fed.broker_address, fed.credentials("operator", "tests"), BROKER)
    try:
        raw = channel.unary_unary("/trefed.v1.Broker/ResolveIntent")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw(b"\x0a\xff\xff", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await channel.close()
    models = await broker.ListModels(services_pb2.ListModelsRequest(), timeout=10)
    assert len(models.models) == 2
    c, code, details = await attempt(broker, "after-bad", intent(fed, "after"))
    assert code == grpc.StatusCode.OK, details
    await release_all(broker, [c])
    assert_clean(fed)


def test_tenant_actors_and_trefed_run_json(fast_config, ray_runtime, capsys, tmp_path):
    """``trefed run --json`` in-process on the session's Ray: 5 tenants admitted, the 6th refused by the edge."""
    import yaml
    from conftest import FAST_CONFIG

    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(FAST_CONFIG))
    assert trefed(["run", str(path), "--admissions-only", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    outcomes = doc["tenants"]
    assert [o["tenant_id"] for o in outcomes] == [f"t{i}" for i in range(1, 7)]
    fit = math.floor(1e8 / outcomes[0]["budgets"][2]["rate_bps"])
    assert 2 <= fit <= 5
    assert [o["admitted"] for o in outcomes] == [True] * fit + [False] * (6 - fit)
    first = outcomes[0]
    assert first["model_id"] == "small" and first["path"] == list(DOMAINS) and first["grants"] == 3
    assert first["delay_bound_s"] <= 0.0175 and first["epsilon_total"] <= 0.01
    assert [b["domain_id"] for b in first["budgets"]] == list(DOMAINS)
    assert outcomes[5]["code"] == "RESOURCE_EXHAUSTED" and "domain 'edge'" in outcomes[5]["reason"]
    edge = next(d for d in doc["domains"] if d["domain_id"] == "edge")
    assert math.isclose(edge["committed_bps"], sum(o["budgets"][2]["rate_bps"] for o in outcomes[:fit]), rel_tol=1e-9)
    # the same outcomes as tables: contract summaries, per-domain budgets, the rejection's reason
    objs = [
        TenantOutcome(**{**o, "path": tuple(o["path"]), "budgets": tuple(BudgetSummary(**b) for b in o["budgets"]),
                         **{k: math.nan for k, v in o.items() if v is None}})
        for o in outcomes
    ]
    statuses = [services_pb2.DomainStatus(**d) for d in doc["domains"]]
    render_outcomes(fast_config(), objs, statuses)
    out = capsys.readouterr().out
    assert f"{fit} of 6 tenants admitted" in out and "rejected" in out
    assert "t6 (RESOURCE_EXHAUSTED): tenant 't6' rejected" in " ".join(out.split())
    assert "per-domain budgets" in out
    flat = " ".join(out.split())
    for o in outcomes[:fit]:
        assert o["tenant_id"] in flat and o["model_id"] in flat
        assert f"{o['budgets'][2]['rate_bps'] / 1e6:.1f}" in flat  # the edge reservation, Mb/s


def test_quickstart_run_admits_then_rejects_for_capacity(ray_runtime, capsys):
    """The README's main job: ``trefed run configs/quickstart.yaml --json`` (on the session's Ray)."""
    assert trefed(["run", "configs/quickstart.yaml", "--admissions-only", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_id = {o["tenant_id"]: o for o in doc["tenants"]}
    admitted = [o for o in doc["tenants"] if o["admitted"]]
    assert len(admitted) >= 2
    for o in admitted:
        assert o["grants"] == 3 and o["path"] == ["access", "transport", "edge"]
        assert sum(b["delay_s"] for b in o["budgets"]) <= o["delay_bound_s"] * (1 + 1e-9)
        assert o["epsilon_total"] <= 0.02 + 1e-12
    capacity = [o for o in doc["tenants"] if o["code"] == "RESOURCE_EXHAUSTED"]
    assert capacity, by_id
    assert all("domain 'edge'" in o["reason"] and "reservable capacity" in o["reason"] for o in capacity)
    assert by_id["medical-imaging"]["code"] == "FAILED_PRECONDITION"
    for d in doc["domains"]:
        assert d["committed_bps"] <= d["reservable_capacity_bps"] and d["prepared_bps"] == 0


class _EnvelopeForger:
    """A DomainController in front of a real one that forwards every call but alters GetEnvelope:
    ``tamper`` flips one byte of the signed body; ``expired`` re-signs it, with the domain's own
    key, as valid until 10 s ago."""

    def __init__(self, target: str, mode: str, key, credentials) -> None:
        self.channel = open_channel(target, credentials, PeerIdentity("domain", "transport"))
        self.stub = services_pb2_grpc.DomainControllerStub(self.channel)
        self.mode, self.key = mode, key

    async def GetEnvelope(self, request, context):
        env = await self.stub.GetEnvelope(request)
        if self.mode == "tamper":
            body = bytearray(env.body)
            body[len(body) // 2] ^= 0x01
            env.body = bytes(body)
            return env
        body = envelope_pb2.EnvelopeBody.FromString(env.body)
        now = int(time.time())
        body.header.issued_at.FromSeconds(now - 20)
        body.header.not_before.FromSeconds(now - 20)
        body.header.not_after.FromSeconds(now - 10)
        return sign_envelope(body, self.key)

    def __getattr__(self, name):
        if name in ("Prepare", "Commit", "Abort", "Release", "GetStatus"):
            async def forward(request, context):
                return await getattr(self.stub, name)(request)
            return forward
        raise AttributeError(name)


@pytest.mark.parametrize("mode", ["tamper", "expired"])
async def test_broker_actor_refuses_a_tampered_or_expired_tre(fast_federation, ray_runtime, mode):
    """A second broker actor reaches the transport domain through a forging proxy (real gRPC)."""
    fed = fast_federation
    forger = _EnvelopeForger(fed.domain_addresses["transport"], mode, fed.keys["transport"],
                             fed.credentials("broker", "broker"))
    server, port = await start_grpc_server(
        lambda s: add_servicer(s, forger, DOMAIN_CONTROLLER_SERVICE), [DOMAIN_CONTROLLER_SERVICE],
        credentials=fed.credentials("domain", "transport"))
    addresses = {**fed.domain_addresses, "transport": f"127.0.0.1:{port}"}
    trust = [TrustEntry(k.key_id, k.domain_id, k.public_key_bytes()) for k in fed.keys.values()]
    actor = ray_runtime.spawn(BrokerAgent, fed.config, addresses, trust, credentials=fed.credentials("broker", "broker"),
                              name=f"forged-broker-{mode}")
    try:
        ray_runtime.call(actor, "start")
        channel = open_channel(ray_runtime.call(actor, "address"), fed.credentials("operator", "tests"), BROKER)
        stub = services_pb2_grpc.BrokerStub(channel)
        c, code, details = await attempt(stub, f"forged-{mode}", intent(fed, "victim"))
        assert c is None and code == grpc.StatusCode.FAILED_PRECONDITION
        assert "domain 'transport'" in details
        assert ("bad-signature" if mode == "tamper" else "expired") in details
        await channel.close()
        assert_clean(fed)  # nothing was prepared anywhere
    finally:
        ray_runtime.call(actor, "stop")
        ray_runtime.kill(actor)
        await server.stop(0)
        await forger.channel.close()
