"""The auditor as a gRPC service (``trefed.v1.Auditor``) and as an agent (a Ray actor in a federation).

:class:`AuditorServicer` is thin: each rpc calls :class:`agents.auditor.logic.Auditor`. Errors
become status codes in :func:`agents.server.add_servicer` (INVALID_ARGUMENT for a malformed
request, NOT_FOUND for an unknown contract, FAILED_PRECONDITION for a contract that fails
verification, UNAVAILABLE when the broker cannot be reached; the rules are in
:mod:`agents.auditor.logic`). A failing call never stops the server. Who may call what is the
table of :mod:`agents.access`; here: a domain submits its own telemetry only (the batch's
``domain_id`` is its certificate's), a tenant gets the reports of its own contracts only.

:class:`AuditorAgent` is a plain class with async methods (so Ray makes it an async actor whose
event loop runs the gRPC server): it loads its Ed25519 key, trusts the domains' public keys,
builds the ledger (:class:`federation.audit.ledger.AuditLedger`) and serves it, learning
contracts from the broker at ``broker_address``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import grpc
from google.protobuf.message import DecodeError
from trefed.v1 import services_pb2, telemetry_pb2

from agents.access import caller, require_owner
from agents.auditor.client import GrpcContractSource
from agents.auditor.logic import Auditor
from agents.errors import PermissionDenied
from agents.server import add_servicer, start_grpc_server
from federation.audit.ledger import AuditLedger
from federation.errors import ConfigError
from federation.tre.ca import Credentials, Role
from federation.tre.signing import SigningKey
from federation.tre.trust import TrustStore

__all__ = ["AUDITOR_SERVICE", "AuditorServicer", "AuditorAgent"]

_log = logging.getLogger(__name__)

AUDITOR_SERVICE: str = services_pb2.DESCRIPTOR.services_by_name["Auditor"].full_name


class AuditorServicer:
    """``trefed.v1.Auditor`` over an :class:`Auditor`."""

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor

    def SubmitTelemetry(self, request: telemetry_pb2.SignedTelemetryBatch, context: grpc.aio.ServicerContext
                        ) -> services_pb2.SubmitTelemetryResponse:
        who = caller(context)
        if who is not None:
            try:
                claimed = telemetry_pb2.TelemetryBatchBody.FromString(request.body).domain_id
            except DecodeError:
                claimed = None  # undecodable: the ledger rejects it with its reason
            if claimed is not None and claimed != who.name:
                raise PermissionDenied(f"SubmitTelemetry: a batch of domain {claimed[:64]!r} from {who.uri} "
                                       "(a domain submits its own telemetry only)")
        return self.auditor.submit(request)

    async def GetReport(self, request: services_pb2.ReportRequest, context: grpc.aio.ServicerContext
                        ) -> telemetry_pb2.SignedAccountabilityReport:
        who = caller(context)
        if who is not None and who.role is Role.TENANT:
            contract = await self.auditor.contracts.get_contract(request.contract_id)
            require_owner(who, contract.tenant_id, f"contract {request.contract_id[:64]!r}")
        return await self.auditor.report(request)


class AuditorAgent:
    """The auditor agent: serves ``trefed.v1.Auditor`` on ``host:port``.

    Parameters
    ----------
    key_pem : bytes
        The auditor's Ed25519 private key, unencrypted PKCS#8 PEM; it signs the reports.
    trust : sequence of (key_id, domain_id, raw 32-byte Ed25519 public key)
        The domains' keys: telemetry and grants are accepted only under these.
    broker_address : str
        ``host:port`` of the broker, where contracts are fetched.
    auditor_id : str
        The auditor's identity (``AccountabilityReportBody.auditor_id``; the name of its key
        files, ``auditor_id.key`` / ``auditor_id.pub``).
    host, port : str, int
        Interface and port of the gRPC server (port 0: a free one).
    rpc_timeout_s : float
        Deadline of each call to the broker, s, finite and > 0.
    clock : callable
        Unix time, s (default :func:`time.time`); injectable for tests.
    credentials : Credentials, optional
        The auditor's mTLS credentials (role auditor): it serves mutual TLS and fetches contracts
        from the broker with them. None: plain TCP, loopback only.

    Raises
    ------
    ConfigError
        If the key does not load, a trusted key is refused, a parameter is out of range, or the
        credentials are not an auditor's.
    """

    def __init__(
        self,
        key_pem: bytes,
        trust: Sequence[tuple[str, str, bytes]],
        broker_address: str,
        *,
        auditor_id: str = "auditor",
        host: str = "127.0.0.1",
        port: int = 0,
        rpc_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        credentials: Credentials | None = None,
    ) -> None:
        if credentials is not None and credentials.identity.role is not Role.AUDITOR:
            raise ConfigError(f"auditor {auditor_id!r}: credentials are those of {credentials.identity.uri}")
        self.credentials = credentials
        try:
            self._key = SigningKey.from_pem(key_pem, auditor_id)
        except Exception as exc:
            raise ConfigError(f"auditor {auditor_id!r}: key_pem: {exc}") from exc
        self._trust = TrustStore()
        for key_id, domain_id, raw in trust:
            try:
                self._trust.add(key_id, domain_id, raw)
            except Exception as exc:
                raise ConfigError(f"auditor {auditor_id!r}: trusted key {key_id!r}: {exc}") from exc
        if not 0 <= int(port) <= 65535:
            raise ConfigError(f"port(={port!r}) must be in [0, 65535]")
        if not (math.isfinite(rpc_timeout_s) and rpc_timeout_s > 0):
            raise ConfigError(f"rpc_timeout_s(={rpc_timeout_s!r}) must be finite and > 0")
        self.auditor_id = auditor_id
        self._broker_address = broker_address
        self._host = host
        self._port = int(port)
        self._rpc_timeout_s = float(rpc_timeout_s)
        self._clock = clock
        self._server: grpc.aio.Server | None = None
        self._bound = 0
        self.auditor: Auditor | None = None

    async def start(self) -> int:
        """Start serving; return the bound port. Idempotent."""
        if self._server is not None:
            return self._bound
        ledger = AuditLedger(self._trust, self._key, auditor_id=self.auditor_id, clock=self._clock)
        contracts = GrpcContractSource(self._broker_address, timeout_s=self._rpc_timeout_s,
                                       credentials=self.credentials)
        self.auditor = Auditor(ledger, contracts)
        servicer = AuditorServicer(self.auditor)
        self._server, self._bound = await start_grpc_server(
            lambda s: add_servicer(s, servicer, AUDITOR_SERVICE), [AUDITOR_SERVICE], host=self._host, port=self._port,
            credentials=self.credentials,
        )
        _log.info("auditor %r serving on %s:%d", self.auditor_id, self._host, self._bound)
        return self._bound

    async def address(self) -> str:
        """``host:port`` of the gRPC server (port 0 before :meth:`start`)."""
        host = f"[{self._host}]" if ":" in self._host and not self._host.startswith("[") else self._host
        return f"{host}:{self._bound}"

    async def public_key(self) -> tuple[str, str, bytes]:
        """``(key_id, auditor_id, raw 32-byte Ed25519 public key)``: what verifies its reports."""
        return self._key.key_id, self._key.domain_id, self._key.public_key_bytes()

    async def stats(self) -> dict:
        """Counters: batches accepted and rejected, contracts learnt, reports signed."""
        a = self.auditor
        if a is None:
            return {}
        return {"batches_accepted": a.batches_accepted, "batches_rejected": a.batches_rejected,
                "contracts": len(a.known), "reports_signed": a.reports_signed}

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop serving and close the broker channel. Idempotent."""
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        if self.auditor is not None:
            await self.auditor.contracts.close()
