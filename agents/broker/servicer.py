"""The broker as a gRPC service (``trefed.v1.Broker``) and as an agent (a future Ray actor).

:class:`BrokerServicer` is thin: each rpc converts nothing and calls :class:`agents.broker.logic.Broker`.
Errors become status codes in :func:`agents.server.add_servicer`: INVALID_ARGUMENT for malformed
requests (bytes that do not parse, fields out of range), RESOURCE_EXHAUSTED / FAILED_PRECONDITION
for rejections (the message names the domain and the limit), NOT_FOUND for unknown contracts,
UNAVAILABLE when a domain cannot be reached. A failing call never stops the server.

:class:`BrokerAgent` is a plain class with async methods (so Ray makes it an async actor whose
event loop runs the gRPC server): it builds the broker from a config, the domains' addresses and
the trusted keys, and serves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import grpc
from trefed.v1 import services_pb2

from agents.broker.client import GrpcDomainClient
from agents.broker.logic import Broker, TrustEntry
from agents.server import add_servicer, start_grpc_server
from federation.config import FederationConfig

__all__ = ["BROKER_SERVICE", "BrokerServicer", "BrokerAgent"]

_log = logging.getLogger(__name__)

BROKER_SERVICE: str = services_pb2.DESCRIPTOR.services_by_name["Broker"].full_name


class BrokerServicer:
    """``trefed.v1.Broker`` over a :class:`Broker`."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def ListModels(self, request: services_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
                   ) -> services_pb2.ListModelsResponse:
        return self.broker.list_models(request)

    async def ResolveIntent(self, request: services_pb2.Intent, context: grpc.aio.ServicerContext
                            ) -> services_pb2.ResolveIntentResponse:
        return await self.broker.resolve(request)

    async def RequestService(self, request: services_pb2.ServiceRequest, context: grpc.aio.ServicerContext
                             ) -> services_pb2.ServiceContract:
        return await self.broker.request_service(request)

    async def ReleaseService(self, request: services_pb2.ReleaseServiceRequest, context: grpc.aio.ServicerContext
                             ) -> services_pb2.ReleaseServiceResponse:
        return await self.broker.release_service(request)

    def GetContract(self, request: services_pb2.GetContractRequest, context: grpc.aio.ServicerContext
                    ) -> services_pb2.ServiceContract:
        return self.broker.get_contract(request)


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
    ) -> None:
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
        clients = {d: GrpcDomainClient(d, a, timeout_s=timeout) for d, a in self._addresses.items()}
        self.broker = Broker(self.config, clients, self._trust, clock=self._clock)
        servicer = BrokerServicer(self.broker)
        self._server, self._bound = await start_grpc_server(
            lambda s: add_servicer(s, servicer, BROKER_SERVICE), [BROKER_SERVICE], host=self._host, port=self._port
        )
        _log.info("broker serving on %s:%d", self._host, self._bound)
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
