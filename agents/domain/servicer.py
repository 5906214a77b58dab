"""The DomainController agent: serves ``trefed.v1.DomainController`` over gRPC (grpc.aio) on a
port it reports, backed by :class:`agents.domain.logic.DomainService` and a SQLite store.

:class:`DomainControllerAgent` is a plain class; the federation runner makes it a Ray actor with
``ray.remote(DomainControllerAgent)`` (its methods are async, so it becomes an async actor whose
event loop also runs the gRPC server and the expiry sweep). In tests it runs in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2

from agents.access import AUDITOR, RESERVATION_READERS, caller
from agents.domain.logic import RETENTION_S, DomainService, check_retention
from agents.domain.store import ReservationStore
from agents.domain.telemetry import TelemetryReceipt, TelemetryReporter
from agents.errors import PermissionDenied
from agents.server import STREAM_OPTIONS, add_servicer, freeze_heap, open_channel, start_grpc_server
from federation.dataplane.telemetry import DomainLog
from federation.errors import ConfigError
from federation.tre.ca import Credentials, PeerIdentity, Role
from federation.tre.signing import SigningKey
from federation.tre.validate import MAX_HOLD_S

__all__ = ["DOMAIN_CONTROLLER_SERVICE", "DomainControllerAgent", "DomainControllerServicer"]

_log = logging.getLogger(__name__)

DOMAIN_CONTROLLER_SERVICE: str = services_pb2.DESCRIPTOR.services_by_name["DomainController"].full_name


class DomainControllerServicer:
    """Thin gRPC servicer: forwards each rpc to a :class:`DomainService`.

    Errors raised by the service become status codes in :func:`agents.server.add_servicer`, which
    also admits only the broker to the reservation calls (:mod:`agents.access`); reservation
    details in ``GetStatus`` are for the broker, the auditor and an operator.
    """

    def __init__(self, service: DomainService) -> None:
        self.service = service

    def GetEnvelope(self, request: services_pb2.GetEnvelopeRequest, context: grpc.aio.ServicerContext
                    ) -> envelope_pb2.TailRiskEnvelope:
        return self.service.get_envelope(request)

    def Prepare(self, request: reservation_pb2.PrepareRequest, context: grpc.aio.ServicerContext
                ) -> reservation_pb2.PrepareResponse:
        return self.service.prepare(request)

    def Commit(self, request: reservation_pb2.CommitRequest, context: grpc.aio.ServicerContext
               ) -> reservation_pb2.SignedGrant:
        return self.service.commit(request)

    def Abort(self, request: reservation_pb2.AbortRequest, context: grpc.aio.ServicerContext
              ) -> reservation_pb2.AbortResponse:
        return self.service.abort(request)

    def Release(self, request: reservation_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
                ) -> reservation_pb2.ReleaseResponse:
        return self.service.release(request)

    def GetStatus(self, request: services_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
                  ) -> services_pb2.DomainStatus:
        who = caller(context)
        if request.include_reservations and who is not None and who.role not in RESERVATION_READERS:
            raise PermissionDenied(f"GetStatus(include_reservations) is for the roles broker, auditor, operator; "
                                   f"the caller is {who.uri}")
        return self.service.status(request)

    def Batch(self, request: services_pb2.BatchRequest, context: grpc.aio.ServicerContext
              ) -> services_pb2.BatchResponse:
        return self.service.batch(request)

    def BatchStream(self, request: services_pb2.BatchRequest, context: grpc.aio.ServicerContext
                    ) -> services_pb2.BatchResponse:
        """One message of the ``BatchStream`` rpc: answered exactly as a ``Batch`` call
        (:func:`agents.server.add_servicer` applies it to each message of the stream in order)."""
        return self.service.batch(request)


class _Stallable:
    """A servicer whose reservation answers can be held back (see :meth:`DomainControllerAgent.stall`).

    Every other rpc, and every call while not stalled, goes straight to the wrapped servicer; a
    held call has run (and persisted its change) before it waits. (A held ``BatchStream``
    message holds its answer and those behind it on the stream, whose messages still run.)
    """

    _HELD = frozenset({"Prepare", "Commit", "Abort", "Release", "Batch", "BatchStream"})

    def __init__(self, servicer: DomainControllerServicer) -> None:
        self._servicer = servicer
        self.released = asyncio.Event()
        self.released.set()
        self.held = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)
        if name not in self._HELD:
            return method

        def answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
            response = method(request, context)
            if self.released.is_set():
                return response  # no stall: answered at once, without an await
            return self._hold(response)

        return answer

    async def _hold(self, response: Any) -> Any:
        self.held += 1
        try:
            await self.released.wait()
        finally:
            self.held -= 1
        return response


class DomainControllerAgent:
    """One domain's controller: key, signed envelope, reservation table, gRPC server.

    Parameters
    ----------
    envelope_body : bytes
        A serialized ``EnvelopeBody`` template: ``header.domain_id``, ``header.tre_id``,
        ``header.kind``, ``guardrails`` and ``model`` filled. The agent fills ``header.sequence``
        (persisted, strictly increasing across restarts), ``issued_at`` / ``not_before`` /
        ``not_after`` and ``key_id``, and signs it.
    key_pem : bytes
        The domain's Ed25519 private key, unencrypted PKCS#8 PEM.
    db_path : str
        SQLite file (WAL mode) holding the reservation table, the idempotency log and the
        envelope sequence; created if absent. Restarting on the same file recovers the table.
    host : str
        Interface the gRPC server binds.
    port : int
        TCP port; 0 picks a free one (see :meth:`start`).
    validity_s : float
        Validity window of each signed envelope, s, > 0.
    sweep_interval_s : float
        Period of the background expiry sweep, s, > 0.
    clock : callable
        Unix time, s (default :func:`time.time`); injectable for tests.
    max_hold_s : float
        Longest ``hold_timeout_s`` a Prepare may ask for, s, in (0, 3600]: the federation passes
        its broker's hold timeout, so no hold outlasts what the broker asks for.
    retention_s : float
        How long finished reservations are kept, s, >= ``max_hold_s`` (the federation passes
        ``broker.retention_s``; see :class:`~agents.domain.logic.DomainService`).
    credentials : Credentials, optional
        The controller's mTLS credentials (``trefed://domain/DOMAIN``): it serves mutual TLS
        and opens its channels to other agents with them (:meth:`open_channel`). None: plain
        TCP, allowed on loopback only.

    Raises
    ------
    ConfigError
        If the template does not parse, the key does not load, a parameter is out of range, or
        the credentials name another identity (the envelope itself is range-checked by
        :meth:`start`, which signs it).
    """

    def __init__(
        self,
        envelope_body: bytes,
        key_pem: bytes,
        db_path: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        validity_s: float = 3600.0,
        sweep_interval_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        max_hold_s: float = MAX_HOLD_S,
        retention_s: float = RETENTION_S,
        credentials: Credentials | None = None,
    ) -> None:
        try:
            template = envelope_pb2.EnvelopeBody.FromString(envelope_body)
        except DecodeError as exc:
            raise ConfigError(f"envelope_body: not a serialized EnvelopeBody ({exc})") from exc
        domain_id = template.header.domain_id
        try:
            self._key = SigningKey.from_pem(key_pem, domain_id)
        except Exception as exc:
            raise ConfigError(f"domain {domain_id!r}: key_pem: {exc}") from exc
        if not (math.isfinite(sweep_interval_s) and sweep_interval_s > 0):
            raise ConfigError(f"sweep_interval_s(={sweep_interval_s!r}) must be finite and > 0")
        if not (math.isfinite(validity_s) and validity_s > 0):
            raise ConfigError(f"validity_s(={validity_s!r}) must be finite and > 0")
        if not (math.isfinite(max_hold_s) and 0 < max_hold_s <= MAX_HOLD_S):
            raise ConfigError(f"max_hold_s(={max_hold_s!r}) must be in (0, {MAX_HOLD_S:g}]")
        self._max_hold_s = float(max_hold_s)
        check_retention(retention_s, max_hold_s)
        self._retention_s = float(retention_s)
        if not 0 <= int(port) <= 65535:
            raise ConfigError(f"port(={port!r}) must be in [0, 65535]")
        if credentials is not None and credentials.identity != PeerIdentity(Role.DOMAIN, domain_id):
            raise ConfigError(f"domain {domain_id!r}: credentials are those of {credentials.identity.uri}")
        self.credentials = credentials
        """The controller's mTLS credentials (None: insecure, loopback only)."""
        self._template = template
        self._db_path = str(db_path)
        self._host = host
        self._port = int(port)
        self._validity_s = float(validity_s)
        self._sweep_interval_s = float(sweep_interval_s)
        self._clock = clock
        self.domain_id = domain_id
        self._store: ReservationStore | None = None
        self._service: DomainService | None = None
        self._server: grpc.aio.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self._stallable: _Stallable | None = None
        self._bound_port = 0
        self._reporter: TelemetryReporter | None = None

    @property
    def service(self) -> DomainService:
        """The in-process logic (after :meth:`start`); for tests and in-process callers."""
        if self._service is None:
            raise RuntimeError(f"domain {self.domain_id!r}: controller not started")
        return self._service

    async def start(self) -> int:
        """Open the store, sign the envelope, start serving; return the bound port. Idempotent."""
        if self._server is not None:
            return self._bound_port
        if self._db_path != ":memory:":
            Path(self._db_path).parent.mkdir(parents=True, exist_ok=True)
        store = ReservationStore(self._db_path, background_checkpoint=True)
        try:
            service = DomainService(self._template, self._key, store, validity_s=self._validity_s, clock=self._clock,
                                    max_hold_s=self._max_hold_s, retention_s=self._retention_s)
            servicer = _Stallable(DomainControllerServicer(service))
            server, port = await start_grpc_server(
                lambda s: add_servicer(s, servicer, DOMAIN_CONTROLLER_SERVICE),
                [DOMAIN_CONTROLLER_SERVICE],
                host=self._host,
                port=self._port,
                credentials=self.credentials,
                options=STREAM_OPTIONS,  # the broker's BatchStream
            )
        except BaseException:
            store.close()
            raise
        self._store, self._service, self._server, self._bound_port = store, service, server, port
        self._stallable = servicer
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(service, store))
        _log.info("domain %r serving DomainController on %s:%d", self.domain_id, self._host, port)
        freeze_heap()  # start-up objects are not traversed by every full collection again
        return port

    async def _sweep_forever(self, service: DomainService, store: ReservationStore) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                service.sweep()
            except Exception:  # noqa: BLE001 - keep sweeping; the next call retries lazily anyway
                _log.exception("domain %r: expiry sweep failed", self.domain_id)
            try:
                # The WAL is copied into the database file off the event loop (see agents.domain.store).
                await asyncio.to_thread(store.checkpoint)
            except Exception:  # noqa: BLE001 - SQLite's backstop checkpoint still bounds the WAL
                _log.exception("domain %r: checkpoint failed", self.domain_id)

    async def stall(self, on: bool = True) -> None:
        """Fault injection: while stalled, every Prepare, Commit, Abort, Release and Batch call runs
        (its change is persisted) but its answer is held until ``stall(False)``: a controller that
        hangs after writing. Killed then (``Federation.kill_domain``), it leaves changes its callers
        never heard of, for their recovery to settle. After :meth:`start`."""
        if self._stallable is None:
            raise RuntimeError(f"domain {self.domain_id!r}: controller not started")
        if on:
            self._stallable.released.clear()
        else:
            self._stallable.released.set()

    async def republish(self, envelope_body: bytes) -> int:
        """The operator publishes a new envelope (a serialized EnvelopeBody template of this domain
        and service class, e.g. with other guardrails): see :meth:`DomainService.republish`.
        Returns the new sequence. After :meth:`start`."""
        try:
            template = envelope_pb2.EnvelopeBody.FromString(envelope_body)
        except DecodeError as exc:
            raise ConfigError(f"envelope_body: not a serialized EnvelopeBody ({exc})") from exc
        return self.service.republish(template)

    async def revoke(self) -> None:
        """The operator withdraws the envelope: see :meth:`DomainService.revoke`. After :meth:`start`."""
        self.service.revoke()

    async def held_answers(self) -> int:
        """How many answers :meth:`stall` holds now (each of a call that already ran)."""
        return 0 if self._stallable is None else self._stallable.held

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop serving (in-flight calls get ``grace_s`` seconds; held answers are let go), stop the
        sweep, close the db. Idempotent."""
        if self._stallable is not None:
            self._stallable.released.set()
            self._stallable = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self._service = None

    async def address(self) -> str:
        """``host:port`` of the gRPC server (port 0 before :meth:`start`)."""
        host = f"[{self._host}]" if ":" in self._host and not self._host.startswith("[") else self._host
        return f"{host}:{self._bound_port}"

    def open_channel(self, address: str, peer: PeerIdentity) -> grpc.aio.Channel:
        """A grpc.aio channel to the agent ``peer`` at ``address`` (e.g. the auditor,
        :data:`agents.access.AUDITOR`), authenticated with this controller's credentials (plain
        TCP when it has none). Call it on the event loop that will use the channel."""
        return open_channel(address, self.credentials, peer)

    async def public_key(self) -> tuple[str, str, bytes]:
        """``(key_id, domain_id, raw 32-byte Ed25519 public key)``, for trust stores."""
        return self._key.key_id, self._key.domain_id, self._key.public_key_bytes()

    async def report_telemetry(self, log: DomainLog, tenant_ids: dict[int, str], auditor_address: str, *,
                               window_start_s: float, window_end_s: float, under_report_s: float = 0.0,
                               batch_packets: int = 20_000, timeout_s: float = 30.0) -> TelemetryReceipt:
        """Sign what this domain's meters saw (``log``) and submit it to the auditor at ``auditor_address``.

        The chain continues from this agent's previous report (:mod:`agents.domain.telemetry`);
        ``under_report_s`` > 0 makes the domain lie (every egress reported that much early).
        """
        if self._reporter is None:
            self._reporter = TelemetryReporter(self._key, batch_packets=batch_packets, clock=self._clock)
        batches = self._reporter.sign(log, tenant_ids, window_start_s=window_start_s, window_end_s=window_end_s,
                                      under_report_s=under_report_s)
        async with self.open_channel(auditor_address, AUDITOR) as channel:  # mTLS as this domain
            return await self._reporter.submit(batches, channel, timeout_s=timeout_s, packets=len(log))
