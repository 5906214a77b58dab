"""The broker as a gRPC service (``trefed.v1.Broker``) and as an agent (a future Ray actor).

:class:`BrokerServicer` is thin: each rpc converts nothing and calls :class:`agents.broker.logic.Broker`.
Errors become status codes in :func:`agents.server.add_servicer`: INVALID_ARGUMENT for malformed
requests (bytes that do not parse, fields out of range), RESOURCE_EXHAUSTED / FAILED_PRECONDITION
for rejections (the message names the domain and the limit), NOT_FOUND for unknown contracts,
UNAVAILABLE when a domain cannot be reached. A failing call never stops the server.

Who may call what is the table of :mod:`agents.access`; the servicer adds the per-contract rules:
a tenant's identity is its certificate's (``intent.tenant_id`` must be empty or that name, and
becomes it), and a tenant reads and releases its own contracts only. ``ListDomainKeys`` publishes
the domains' public keys the broker trusts.

:class:`BrokerAgent` is a plain class with async methods (so Ray makes it an async actor whose
event loop runs the gRPC server): it builds the broker from a config, the domains' addresses and
the trusted keys, and serves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import grpc
from trefed.v1 import envelope_pb2, services_pb2

from agents.access import caller, require_owner
from agents.broker.client import GrpcDomainClient
from agents.broker.logic import Broker, TrustEntry
from agents.broker.store import BrokerStore
from agents.errors import PermissionDenied
from agents.server import add_servicer, freeze_heap, start_grpc_server
from federation.config import FederationConfig
from federation.errors import ConfigError
from federation.tre.ca import Credentials, PeerIdentity, Role

__all__ = ["BROKER_SERVICE", "BrokerServicer", "BrokerAgent", "domain_keys"]

_log = logging.getLogger(__name__)

BROKER_SERVICE: str = services_pb2.DESCRIPTOR.services_by_name["Broker"].full_name


def _as_caller(who: PeerIdentity | None, intent: services_pb2.Intent) -> None:
    """A tenant's intent is its own: ``tenant_id`` empty or the certificate's name, then that name."""
    if who is None or who.role is not Role.TENANT:
        return
    if intent.tenant_id and intent.tenant_id != who.name:
        raise PermissionDenied(f"intent.tenant_id(={intent.tenant_id[:64]!r}) is not the caller {who.uri}")
    intent.tenant_id = who.name


def domain_keys(trust: Sequence[TrustEntry], domain_id: str = "") -> services_pb2.ListDomainKeysResponse:
    """The published keys: ``trust`` (those of ``domain_id`` only, when given), sorted."""
    return services_pb2.ListDomainKeysResponse(keys=[
        services_pb2.DomainKey(domain_id=e.domain_id, key_id=e.key_id, public_key=e.public_key,
                               algorithm=envelope_pb2.ED25519)
        for e in sorted(trust, key=lambda e: (e.domain_id, e.key_id)) if not domain_id or e.domain_id == domain_id
    ])


class BrokerServicer:
    """``trefed.v1.Broker`` over a :class:`Broker`; ``keys`` are the domain keys it publishes."""

    def __init__(self, broker: Broker, keys: Sequence[TrustEntry] = ()) -> None:
        self.broker = broker
        self.keys = list(keys)

    def ListModels(self, request: services_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
                   ) -> services_pb2.ListModelsResponse:
        return self.broker.list_models(request)

    def ListDomainKeys(self, request: services_pb2.ListDomainKeysRequest, context: grpc.aio.ServicerContext
                       ) -> services_pb2.ListDomainKeysResponse:
        return domain_keys(self.keys, request.domain_id)

    async def ResolveIntent(self, request: services_pb2.Intent, context: grpc.aio.ServicerContext
                            ) -> services_pb2.ResolveIntentResponse:
        _as_caller(caller(context), request)
        return await self.broker.resolve(request)

    async def RequestService(self, request: services_pb2.ServiceRequest, context: grpc.aio.ServicerContext
                             ) -> services_pb2.ServiceContract:
        _as_caller(caller(context), request.intent)
        return await self.broker.request_service(request)

    async def ReleaseService(self, request: services_pb2.ReleaseServiceRequest, context: grpc.aio.ServicerContext
                             ) -> services_pb2.ReleaseServiceResponse:
        self._check_owner(caller(context), request.contract_id)
        return await self.broker.release_service(request)

    def GetContract(self, request: services_pb2.GetContractRequest, context: grpc.aio.ServicerContext
                    ) -> services_pb2.ServiceContract:
        contract = self.broker.get_contract(request)
        require_owner(caller(context), contract.tenant_id, f"contract {contract.contract_id!r}")
        return contract

    def _check_owner(self, who: PeerIdentity | None, contract_id: str) -> None:
        if who is not None and who.role is Role.TENANT:
            contract = self.broker.get_contract(services_pb2.GetContractRequest(contract_id=contract_id))
            require_owner(who, contract.tenant_id, f"contract {contract.contract_id!r}")


class BrokerAgent:
    """The broker agent: serves ``trefed.v1.Broker`` on ``host:port``.

    Parameters
    ----------
    config : FederationConfig
        The federation (catalogue, graph, broker settings).
    domain_addresses : mapping of domain id -> "host:port"
        Where each domain controller serves.
    trust : sequence of TrustEntry
        The domains' public keys (key id, domain id, raw 32-byte Ed25519 key).
    host, port : str, int
        Interface and port of the broker's gRPC server (port 0: a free one).
    clock : callable
        Unix time, s (default :func:`time.time`); injectable for tests.
    credentials : Credentials, optional
        The broker's mTLS credentials (``trefed://broker/broker``): it serves mutual TLS and
        talks to the domains with them. None: plain TCP, loopback only.
    state_path : str, optional
        The broker's SQLite file (:mod:`agents.broker.store`): a broker restarted on it recovers
        its contracts, undoes the admissions it left unfinished and resumes its releases. None:
        in memory (nothing survives the broker).

    Raises
    ------
    ConfigError
        If the credentials are not the broker's.
    """

    def __init__(
        self,
        config: FederationConfig,
        domain_addresses: Mapping[str, str],
        trust: Sequence[TrustEntry],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        credentials: Credentials | None = None,
        state_path: str | None = None,
    ) -> None:
        if credentials is not None and credentials.identity.role is not Role.BROKER:
            raise ConfigError(f"broker: credentials are those of {credentials.identity.uri}")
        self.credentials = credentials
        self.state_path = state_path
        self.config = config
        self._clock = clock
        self._addresses = dict(domain_addresses)
        self._trust = list(trust)
        self._host = host
        self._port = int(port)
        self._server: grpc.aio.Server | None = None
        self._bound = 0
        self.broker: Broker | None = None

    async def start(self) -> int:
        """Start serving; return the bound port. Idempotent."""
        if self._server is not None:
            return self._bound
        timeout = self.config.broker.rpc_timeout_s
        clients = {d: GrpcDomainClient(d, a, timeout_s=timeout, credentials=self.credentials)
                   for d, a in self._addresses.items()}
        store = BrokerStore(self.state_path or ":memory:", clock=self._clock)
        self.broker = Broker(self.config, clients, self._trust, clock=self._clock, store=store)
        recovering = self.broker.recover()
        if recovering:
            _log.info("broker: %d reservations of a previous run to settle", recovering)
        servicer = BrokerServicer(self.broker, self._trust)
        self._server, self._bound = await start_grpc_server(
            lambda s: add_servicer(s, servicer, BROKER_SERVICE), [BROKER_SERVICE], host=self._host, port=self._port,
            credentials=self.credentials,
        )
        _log.info("broker serving on %s:%d", self._host, self._bound)
        freeze_heap()  # start-up objects are not traversed by every full collection again
        return self._bound

    async def address(self) -> str:
        """``host:port`` of the broker's gRPC server."""
        return f"{self._host}:{self._bound}"

    async def stats(self) -> dict:
        """Counters: admitted, rejected, plans computed, plan-cache hits, envelopes verified, ..."""
        b = self.broker
        if b is None:
            return {}
        s = b.stats
        return {
            "admitted": s.admitted,
            "rejected": s.rejected,
            "plans_computed": s.plans_computed,
            "plan_cache_hits": s.plan_cache_hits,
            "envelopes_verified": b.envelopes.verified,
            "cleanups_pending": b.pending_cleanups,
            # reservation calls to the domains and the rpcs that carried them (group commit)
            "domain_items_sent": sum(getattr(c, "items_sent", 0) for c in b.domains.values()),
            "domain_rpcs_sent": sum(getattr(c, "calls_sent", 0) for c in b.domains.values()),
        }

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop serving and close the domain channels. Idempotent."""
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        if self.broker is not None:
            await self.broker.close()
            self.broker.store.close()
