"""The auditor agent without Ray: its logic (:class:`agents.auditor.logic.Auditor`) against a ledger
and a contract source in-process, and its servicer over real gRPC on 127.0.0.1 (the status codes
of every kind of bad request: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, never
INTERNAL). The auditor inside a running federation is tests/test_auditor_federation.py.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from trefed.v1 import services_pb2, services_pb2_grpc, telemetry_pb2

from agents.auditor.client import GrpcContractSource
from agents.auditor.logic import Auditor
from agents.auditor.servicer import AUDITOR_SERVICE, AuditorAgent, AuditorServicer
from agents.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from agents.server import add_servicer, start_grpc_server
from federation.errors import NotFoundError, VerificationError
from federation.tre.signing import SigningKey


class StubLedger:
    """The ledger's interface, in memory: batches whose body is b"bad" are refused; a contract
    without grants fails verification; a report names its contract and confidence."""

    def __init__(self) -> None:
        self.contracts: dict[str, services_pb2.ServiceContract] = {}
        self.batches: list[bytes] = []
        self.reports: list[tuple[str, float]] = []

    def add_contract(self, contract: services_pb2.ServiceContract) -> None:
        if not contract.grants:
            raise VerificationError("malformed", "the contract carries no grant")
        self.contracts[contract.contract_id] = contract

    def submit(self, signed: telemetry_pb2.SignedTelemetryBatch) -> services_pb2.SubmitTelemetryResponse:
        if signed.body == b"bad":
            return services_pb2.SubmitTelemetryResponse(accepted=False, reason="tampered: bad-signature")
        self.batches.append(signed.body)
        return services_pb2.SubmitTelemetryResponse(accepted=True, packets_total=len(self.batches))

    def report(self, contract_id: str, confidence: float = 0.95) -> telemetry_pb2.SignedAccountabilityReport:
        if contract_id not in self.contracts:
            raise NotFoundError(f"no contract {contract_id!r}")
        self.reports.append((contract_id, confidence))
        return telemetry_pb2.SignedAccountabilityReport(body=f"{contract_id}@{confidence:g}".encode())


class StubBroker:
    """A contract source: ``contracts`` by id; ``down`` makes every call fail UNAVAILABLE."""

    def __init__(self, *contracts: services_pb2.ServiceContract) -> None:
        self.contracts = {c.contract_id: c for c in contracts}
        self.calls: list[str] = []
        self.down = False

    async def get_contract(self, contract_id: str) -> services_pb2.ServiceContract:
        self.calls.append(contract_id)
        await asyncio.sleep(0)
        if self.down:
            raise Unavailable("broker at 127.0.0.1:1: GetContract UNAVAILABLE: connection refused")
        if contract_id not in self.contracts:
            raise NotFound(f"the broker has no contract {contract_id!r}")
        return self.contracts[contract_id]

    async def close(self) -> None:
        pass


def contract(contract_id: str, grants: int = 1) -> services_pb2.ServiceContract:
    c = services_pb2.ServiceContract(contract_id=contract_id, tenant_id="t1")
    for _ in range(grants):
        c.grants.add()
    return c


@pytest.fixture
def auditor() -> Auditor:
    return Auditor(StubLedger(), StubBroker(contract("c1"), contract("nogrants", grants=0), contract("c3")))


async def test_submit_answers_with_the_ledger_and_counts(auditor):
    ok = auditor.submit(telemetry_pb2.SignedTelemetryBatch(body=b"batch-1"))
    bad = auditor.submit(telemetry_pb2.SignedTelemetryBatch(body=b"bad"))
    assert ok.accepted and ok.packets_total == 1
    assert not bad.accepted and bad.reason == "tampered: bad-signature"
    assert (auditor.batches_accepted, auditor.batches_rejected) == (1, 1)


async def test_report_learns_the_contract_from_the_broker_once(auditor):
    first = await auditor.report(services_pb2.ReportRequest(contract_id="c1"))
    second = await auditor.report(services_pb2.ReportRequest(contract_id="c1", confidence=0.99))
    assert first.body == b"c1@0.95" and second.body == b"c1@0.99"  # confidence 0 means 0.95
    assert auditor.contracts.calls == ["c1"] and auditor.known == {"c1"}
    assert auditor.reports_signed == 2


async def test_concurrent_first_reports_hand_the_contract_to_the_ledger_once(auditor):
    added: list[str] = []
    real = auditor.ledger.add_contract
    auditor.ledger.add_contract = lambda c: (added.append(c.contract_id), real(c))
    reports = await asyncio.gather(*(auditor.report(services_pb2.ReportRequest(contract_id="c3")) for _ in range(3)))
    assert [r.body for r in reports] == [b"c3@0.95"] * 3
    assert added == ["c3"]


@pytest.mark.parametrize(("request_", "field"), [
    (services_pb2.ReportRequest(contract_id=""), "contract_id"),
    (services_pb2.ReportRequest(contract_id="c1", confidence=1.0), "confidence"),
    (services_pb2.ReportRequest(contract_id="c1", confidence=-0.5), "confidence"),
    (services_pb2.ReportRequest(contract_id="c1", confidence=float("nan")), "confidence"),
])
async def test_a_malformed_report_request_is_invalid_argument_naming_the_field(auditor, request_, field):
    with pytest.raises(InvalidArgument, match=rf"^{field}\(="):
        await auditor.report(request_)
    assert auditor.contracts.calls == []  # refused before the broker is asked


async def test_unknown_refused_and_unreachable_contracts(auditor):
    with pytest.raises(NotFound, match="no contract 'nope'"):
        await auditor.report(services_pb2.ReportRequest(contract_id="nope"))
    with pytest.raises(FailedPrecondition, match="contract 'nogrants' from the broker is refused: malformed"):
        await auditor.report(services_pb2.ReportRequest(contract_id="nogrants"))
    auditor.contracts.contracts["other"] = contract("c1")
    with pytest.raises(FailedPrecondition, match="the broker answered contract 'c1'"):
        await auditor.report(services_pb2.ReportRequest(contract_id="other"))
    auditor.contracts.down = True
    with pytest.raises(Unavailable):
        await auditor.report(services_pb2.ReportRequest(contract_id="c1"))
    assert auditor.known == set()


# ---------------------------------------------------------------------------- over gRPC


class _Served:
    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self.server, self.address = server, f"127.0.0.1:{port}"
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = services_pb2_grpc.AuditorStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        await self.server.stop(0)


async def serve(auditor: Auditor) -> _Served:
    servicer = AuditorServicer(auditor)
    server, port = await start_grpc_server(lambda s: add_servicer(s, servicer, AUDITOR_SERVICE), [AUDITOR_SERVICE])
    return _Served(server, port)


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_status_codes_over_grpc_and_never_internal(auditor):
    served = await serve(auditor)
    try:
        stub = served.stub
        ok = await stub.SubmitTelemetry(telemetry_pb2.SignedTelemetryBatch(body=b"b"), timeout=5)
        refused = await stub.SubmitTelemetry(telemetry_pb2.SignedTelemetryBatch(body=b"bad"), timeout=5)
        assert ok.accepted and not refused.accepted and "tampered" in refused.reason
        report = await stub.GetReport(services_pb2.ReportRequest(contract_id="c1", confidence=0.9), timeout=5)
        assert report.body == b"c1@0.9"
        codes = {
            "empty id": await code_of(stub.GetReport(services_pb2.ReportRequest(), timeout=5)),
            "confidence": await code_of(stub.GetReport(services_pb2.ReportRequest(contract_id="c1", confidence=2),
                                                       timeout=5)),
            "unknown": await code_of(stub.GetReport(services_pb2.ReportRequest(contract_id="nope"), timeout=5)),
            "refused": await code_of(stub.GetReport(services_pb2.ReportRequest(contract_id="nogrants"), timeout=5)),
        }
        raw = served.channel.unary_unary(f"/{AUDITOR_SERVICE}/SubmitTelemetry")
        codes["bytes"] = await code_of(raw(b"\xff\xff\xff", timeout=5))
        # the ledger itself not knowing a contract the auditor asks it for: NOT_FOUND
        auditor.known.add("forgotten")
        codes["ledger"] = await code_of(stub.GetReport(services_pb2.ReportRequest(contract_id="forgotten"), timeout=5))
        auditor.contracts.down = True
        codes["down"] = await code_of(stub.GetReport(services_pb2.ReportRequest(contract_id="c3"), timeout=5))
        assert codes == {
            "empty id": grpc.StatusCode.INVALID_ARGUMENT, "confidence": grpc.StatusCode.INVALID_ARGUMENT,
            "unknown": grpc.StatusCode.NOT_FOUND, "refused": grpc.StatusCode.FAILED_PRECONDITION,
            "bytes": grpc.StatusCode.INVALID_ARGUMENT, "ledger": grpc.StatusCode.NOT_FOUND,
            "down": grpc.StatusCode.UNAVAILABLE,
        }
        # and it still serves
        assert (await stub.SubmitTelemetry(telemetry_pb2.SignedTelemetryBatch(body=b"c"), timeout=5)).accepted
    finally:
        await served.close()


class _FakeBroker:
    """``Broker.GetContract`` only: c1 exists; "bad id" is refused INVALID_ARGUMENT."""

    def GetContract(self, request, context):  # noqa: ANN001, ANN201, N802
        if request.contract_id == "c1":
            return contract("c1")
        if request.contract_id == "bad id":
            raise InvalidArgument("contract_id: malformed")
        raise NotFound(f"no contract {request.contract_id!r}")


async def test_the_grpc_contract_source_translates_the_brokers_codes():
    name = services_pb2.DESCRIPTOR.services_by_name["Broker"].full_name
    server, port = await start_grpc_server(lambda s: add_servicer(s, _FakeBroker(), name), [name])
    source = GrpcContractSource(f"127.0.0.1:{port}", timeout_s=5)
    try:
        assert (await source.get_contract("c1")).contract_id == "c1"
        with pytest.raises(NotFound, match="no contract 'c2'"):
            await source.get_contract("c2")
        with pytest.raises(InvalidArgument, match="malformed"):
            await source.get_contract("bad id")
    finally:
        await source.close()
        await server.stop(0)
    gone = GrpcContractSource(f"127.0.0.1:{port}", timeout_s=0.3)  # nothing listens there now
    try:
        with pytest.raises(Unavailable, match=rf"broker at 127\.0\.0\.1:{port}: GetContract DEADLINE_EXCEEDED"):
            await gone.get_contract("c1")
    finally:
        await gone.close()


def test_the_agent_refuses_a_bad_key_or_trust_entry_naming_it():
    from federation.errors import ConfigError

    key = SigningKey.generate("auditor")
    with pytest.raises(ConfigError, match="auditor 'auditor': key_pem"):
        AuditorAgent(b"not a key", [], "127.0.0.1:1")
    with pytest.raises(ConfigError, match="trusted key 'access-1'"):
        AuditorAgent(key.private_pem(), [("access-1", "access", b"short")], "127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"port\(=70000\)"):
        AuditorAgent(key.private_pem(), [], "127.0.0.1:1", port=70000)
    with pytest.raises(ConfigError, match=r"rpc_timeout_s\(=nan\)"):
        AuditorAgent(key.private_pem(), [], "127.0.0.1:1", rpc_timeout_s=float("nan"))


def test_the_cores_not_found_error_is_answered_not_found():
    from agents.errors import status_code_for

    assert status_code_for(NotFoundError("no contract 'c9'")) is grpc.StatusCode.NOT_FOUND
    assert issubclass(NotFoundError, LookupError)


# ---------------------------------------------------------------------------- against the real ledger


def real_auditor(run, *contracts):
    from federation.audit.ledger import AuditLedger

    key = SigningKey.generate("auditor")
    ledger = AuditLedger(run.trust, key, auditor_id="auditor")
    return Auditor(ledger, StubBroker(*(contracts or (run.contract,)))), key


def verify_report(signed, key) -> telemetry_pb2.AccountabilityReportBody:
    from federation.tre.trust import TrustStore

    trust = TrustStore()
    trust.add_key(key)
    return trust.verify(signed, telemetry_pb2.AccountabilityReportBody, domain_of=lambda b: b.auditor_id)


async def test_the_servicer_over_the_ledger_in_process_signed_report_tamper_and_liar():
    """Socket-free: the servicer's methods called directly, the real ledger behind them."""
    from federation.audit.scenario import audited_run

    run = audited_run(packets=4_000, batch_packets=1_000)
    auditor, key = real_auditor(run)
    servicer = AuditorServicer(auditor)
    first = run.batches["access"][0]
    tampered = telemetry_pb2.SignedTelemetryBatch()
    tampered.CopyFrom(first)
    tampered.body = first.body[:-1] + bytes([first.body[-1] ^ 1])
    r = servicer.SubmitTelemetry(tampered, None)
    assert not r.accepted and r.reason.startswith("tampered[access]"), r.reason
    for b in run.all_batches():
        assert servicer.SubmitTelemetry(b, None).accepted
    body = verify_report(await servicer.GetReport(services_pb2.ReportRequest(contract_id="ct-1"), None), key)
    assert body.contract_id == "ct-1" and body.auditor_id == "auditor" and body.confidence == 0.95
    assert [d.domain_id for d in body.domains] == ["access", "transport", "cloud"]
    assert [f.kind for f in body.finding_details] == ["tampered"]

    liar = audited_run(packets=4_000, batch_packets=1_000, liar=(1, 2.0), keys=run.keys, contract_id="ct-2")
    auditor, key = real_auditor(liar)
    servicer = AuditorServicer(auditor)
    assert all(servicer.SubmitTelemetry(b, None).accepted for b in liar.all_batches())
    body = verify_report(await servicer.GetReport(services_pb2.ReportRequest(contract_id="ct-2"), None), key)
    assert {f.domain_id for f in body.finding_details if f.kind == "inconsistent"} == {"transport"}


async def test_the_real_ledgers_refusals_become_status_codes():
    from federation.audit.scenario import audited_run, signed_contract

    run = audited_run(packets=1_000, batch_packets=1_000)
    # the broker's contract for ct-x carries grants signed by keys the auditor does not trust
    stranger = signed_contract("ct-x", "tenant-a", [SigningKey.generate(k.domain_id) for k in run.keys],
                               [(10.0, 0.01)] * 3)
    auditor, _ = real_auditor(run, run.contract, stranger)
    with pytest.raises(FailedPrecondition, match=r"contract 'ct-x' from the broker is refused: unknown-key"):
        await auditor.report(services_pb2.ReportRequest(contract_id="ct-x"))
    with pytest.raises(NotFound):
        await auditor.report(services_pb2.ReportRequest(contract_id="ct-none"))
    auditor.known.add("ct-forgotten")  # known to the agent, never handed to the ledger
    with pytest.raises(NotFoundError, match="not under audit"):
        await auditor.report(services_pb2.ReportRequest(contract_id="ct-forgotten"))
    # a contract missing for no telemetry: a report still comes, and never says compliant by silence
    body = (await auditor.report(services_pb2.ReportRequest(contract_id="ct-1"))).body
    report = telemetry_pb2.AccountabilityReportBody.FromString(body)
    assert report.end_to_end_verdict != telemetry_pb2.COMPLIANT
    assert any(f.kind == "missing-telemetry" for f in report.finding_details), report.findings


async def test_the_agent_in_process_serves_the_ledger_and_learns_contracts_from_a_broker():
    """:class:`AuditorAgent` without Ray: real gRPC, a fake broker serving the scenario's contract."""
    from federation.audit.scenario import audited_run

    run = audited_run(packets=2_000, batch_packets=1_000)
    name = services_pb2.DESCRIPTOR.services_by_name["Broker"].full_name

    class Broker:
        def GetContract(self, request, context):  # noqa: ANN001, ANN201, N802
            if request.contract_id != "ct-1":
                raise NotFound(f"no contract {request.contract_id!r}")
            return run.contract

    broker, port = await start_grpc_server(lambda s: add_servicer(s, Broker(), name), [name])
    key = SigningKey.generate("auditor")
    trust = [(k.key_id, k.domain_id, k.public_key_bytes()) for k in run.keys]
    agent = AuditorAgent(key.private_pem(), trust, f"127.0.0.1:{port}")
    await agent.start()
    assert await agent.start() == int((await agent.address()).rsplit(":", 1)[1])  # idempotent
    channel = grpc.aio.insecure_channel(await agent.address())
    try:
        stub = services_pb2_grpc.AuditorStub(channel)
        for b in run.all_batches():
            assert (await stub.SubmitTelemetry(b, timeout=10)).accepted
        signed = await stub.GetReport(services_pb2.ReportRequest(contract_id="ct-1", confidence=0.9), timeout=30)
        key_id, auditor_id, raw = await agent.public_key()
        assert (key_id, auditor_id, raw) == (key.key_id, "auditor", key.public_key_bytes())
        assert verify_report(signed, key).confidence == 0.9
        assert await code_of(stub.GetReport(services_pb2.ReportRequest(contract_id="ct-2"), timeout=10)) \
            == grpc.StatusCode.NOT_FOUND
        assert await agent.stats() == {"batches_accepted": len(run.all_batches()), "batches_rejected": 0,
                                       "contracts": 1, "reports_signed": 1}
    finally:
        await channel.close()
        await agent.stop()
        await agent.stop()  # idempotent
        await broker.stop(0)


async def test_batches_are_accepted_while_a_report_is_being_made(auditor):
    """The analysis runs in a worker thread: a slow report does not hold the server's event loop."""
    import threading

    entered, release = threading.Event(), threading.Event()
    real = auditor.ledger.report

    def slow_report(contract_id, confidence=0.95):  # noqa: ANN001, ANN202
        entered.set()
        release.wait(10)  # bounded: on the event loop this would hold every other call for 10 s
        return real(contract_id, confidence)

    auditor.ledger.report = slow_report
    served = await serve(auditor)
    try:
        report = asyncio.ensure_future(served.stub.GetReport(services_pb2.ReportRequest(contract_id="c1"), timeout=30))
        assert await asyncio.to_thread(entered.wait, 10)
        ok = await served.stub.SubmitTelemetry(telemetry_pb2.SignedTelemetryBatch(body=b"during"), timeout=2)
        assert ok.accepted and not report.done()
        release.set()
        assert (await report).body == b"c1@0.95"
    finally:
        release.set()
        await served.close()
