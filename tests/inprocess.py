"""In-process stand-ins for the wire and for Ray, so agent logic is tested with no gRPC and no Ray.

The httpx mock-transport habit: the broker is written against the small
:class:`agents.broker.client.DomainClient` interface; :class:`InProcessDomainClient` implements it
by calling a real :class:`agents.domain.logic.DomainService` (real signing, a real SQLite store,
an injected clock) directly, with the wire's behaviour where it matters: every request and
response is copied through its bytes, every domain error becomes a
:class:`~agents.broker.client.DomainCallError` with the gRPC status code the servicer would
answer, and each call yields to the event loop once. Faults are injected per method:
``"down"`` fails a call before it reaches the domain (unreachable), ``"lose"`` applies it and
loses the answer (the domain crashed before replying). ``gate`` holds calls before they reach
the domain, so a test can see an admission half-way.

It lives under ``tests/`` rather than in :mod:`agents.broker.client` because it imports the
domain's logic, and the architecture keeps ``agents.broker`` and ``agents.domain`` independent
(import-linter, ``pyproject.toml``).

:class:`InProcessRuntime` (from :mod:`agents.inprocess`, where ``trefed sweep`` runs each point on
it) is the :class:`agents.runtime.Runtime` interface without Ray: actors are the plain agent classes,
their async methods run on one event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from trefed.v1 import reservation_pb2, services_pb2

from agents.broker.client import DomainCallError
from agents.broker.logic import Broker, TrustEntry
from agents.domain.logic import DomainService
from agents.domain.store import ReservationStore
from agents.errors import status_code_for
from agents.inprocess import InProcessRuntime
from federation.config import FederationConfig
from federation.errors import TrefedError
from federation.tre.signing import SigningKey

__all__ = ["FakeClock", "InProcessDomainClient", "InProcessFederation", "InProcessRuntime", "in_process_federation"]

#: A fixed start for fake clocks (Unix s, 2025-06-15): runs reproduce, and signed times look real.
T0 = 1_750_000_000.0


class FakeClock:
    """A clock that moves only when told (``advance``); callable like :func:`time.time`, s."""

    def __init__(self, start: float = T0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


class InProcessDomainClient:
    """A :class:`~agents.broker.client.DomainClient` over a :class:`DomainService`, in-process.

    Attributes
    ----------
    service : DomainService
        The domain's logic.
    faults : dict of method name -> "down" or "lose"
        Injected faults (``"Prepare"``, ``"Commit"``, ``"Abort"``, ``"Release"``, ``"GetEnvelope"``,
        ``"GetStatus"``); see the module docstring.
    gate : asyncio.Event or None
        When set to an unset event, calls wait for it before reaching the domain.
    calls : list of str
        The method of every call, in order (faulty ones included).
    waiting : int
        Calls waiting at the gate now.
    """

    def __init__(self, service: DomainService) -> None:
        self.service = service
        self.domain_id = service.domain_id
        self.faults: dict[str, str] = {}
        self.gate: asyncio.Event | None = None
        self.calls: list[str] = []
        self.waiting = 0

    async def _call(self, method: str, handler: Any, request: Any) -> Any:
        self.calls.append(method)
        await asyncio.sleep(0)  # a remote call yields to the event loop
        if self.gate is not None and not self.gate.is_set():
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        fault = self.faults.get(method)
        if fault == "down":
            raise DomainCallError(self.domain_id, method, grpc.StatusCode.UNAVAILABLE,
                                  "failed to connect (in-process fault)")
        wire = type(request).FromString(request.SerializeToString())
        try:
            response = handler(wire)
        except TrefedError as exc:
            raise DomainCallError(self.domain_id, method, status_code_for(exc), str(exc)) from None
        if fault == "lose":
            raise DomainCallError(self.domain_id, method, grpc.StatusCode.UNAVAILABLE,
                                  "connection reset before the answer (in-process fault)")
        return type(response).FromString(response.SerializeToString())

    async def get_envelope(self, tre_id: str) -> Any:
        return await self._call("GetEnvelope", self.service.get_envelope, services_pb2.GetEnvelopeRequest(tre_id=tre_id))

    async def prepare(self, request: reservation_pb2.PrepareRequest) -> reservation_pb2.PrepareResponse:
        return await self._call("Prepare", self.service.prepare, request)

    async def commit(self, request: reservation_pb2.CommitRequest) -> reservation_pb2.SignedGrant:
        return await self._call("Commit", self.service.commit, request)

    async def abort(self, request: reservation_pb2.AbortRequest) -> reservation_pb2.AbortResponse:
        return await self._call("Abort", self.service.abort, request)

    async def release(self, request: reservation_pb2.ReleaseRequest) -> reservation_pb2.ReleaseResponse:
        return await self._call("Release", self.service.release, request)

    async def status(self, include_reservations: bool = False) -> services_pb2.DomainStatus:
        request = services_pb2.GetStatusRequest(include_reservations=include_reservations)
        return await self._call("GetStatus", self.service.status, request)

    async def close(self) -> None:
        pass


@dataclass
class InProcessFederation:
    """A broker over in-process domains (see :func:`in_process_federation`)."""

    config: FederationConfig
    clock: FakeClock
    keys: dict[str, SigningKey]
    services: dict[str, DomainService]
    clients: dict[str, InProcessDomainClient]
    broker: Broker
    stores: list[ReservationStore] = field(default_factory=list)

    def intent(self, tenant: str = "t1", **changes: Any) -> services_pb2.Intent:
        """The first tenant's intent of the config for ``tenant``, with ``changes``."""
        return self.config.tenants[0].intent.model_copy(update=changes).to_proto(tenant)

    def request(self, request_id: str, tenant: str = "t1", **changes: Any) -> services_pb2.ServiceRequest:
        return services_pb2.ServiceRequest(request_id=request_id, intent=self.intent(tenant, **changes))

    def status(self, domain_id: str) -> services_pb2.DomainStatus:
        """The domain's ``GetStatus`` with its reservations (straight from its logic)."""
        return self.services[domain_id].status(services_pb2.GetStatusRequest(include_reservations=True))

    def states(self, domain_id: str) -> dict[str, int]:
        """reservation id -> state of every row the domain lists."""
        return {r.request.reservation_id: r.state for r in self.status(domain_id).reservations}

    def broker_on(self, db: Path) -> Broker:
        """A broker over these domains (fresh clients) persisting to ``db``: open it again with the
        same ``db`` to restart it. The caller closes it and its store."""
        from agents.broker.store import BrokerStore

        trust = [TrustEntry(k.key_id, k.domain_id, k.public_key_bytes()) for k in self.keys.values()]
        clients = {d: InProcessDomainClient(svc) for d, svc in self.services.items()}
        return Broker(self.config, clients, trust, clock=self.clock, monotonic=self.clock, store=BrokerStore(db))


@contextlib.asynccontextmanager
async def in_process_federation(
    config: FederationConfig, tmp_path: Path, *, clock: FakeClock | None = None, validity_s: float = 3600.0,
    **service_kw: Any,
) -> AsyncIterator[InProcessFederation]:
    """Every domain of ``config`` as a :class:`DomainService` (fresh key, SQLite store in
    ``tmp_path``, ``clock``, further :class:`DomainService` arguments ``service_kw``) behind an :class:`InProcessDomainClient`, and a :class:`Broker`
    over those clients trusting exactly those keys, on the same clock (wall and monotonic).
    On exit the broker is closed (its background clean-up stops) and the stores too."""
    clock = clock or FakeClock()
    keys, services, clients, stores = {}, {}, {}, []
    broker: Broker | None = None
    try:
        for d in config.domains:
            key = SigningKey.generate(d.id)
            store = ReservationStore(tmp_path / f"{d.id}.db")
            stores.append(store)
            services[d.id] = DomainService(d.envelope_body(key.key_id), key, store, validity_s=validity_s,
                                           clock=clock, **service_kw)
            keys[d.id], clients[d.id] = key, InProcessDomainClient(services[d.id])
        trust = [TrustEntry(k.key_id, k.domain_id, k.public_key_bytes()) for k in keys.values()]
        broker = Broker(config, clients, trust, clock=clock, monotonic=clock)
        yield InProcessFederation(config, clock, keys, services, clients, broker, stores)
    finally:
        if broker is not None:
            await broker.close()
        for store in stores:
            store.close()
