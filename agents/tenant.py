"""The tenant agent: states its intent to the broker, requests service, holds and releases its contract.

:class:`TenantAgent` is a plain class with async methods (a Ray async actor in a federation, an
in-process object in tests). It talks to the broker only over gRPC (``trefed.v1.Broker``). What
happened is summarised in a :class:`TenantOutcome` (a frozen, picklable value).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import grpc
from trefed.v1 import services_pb2, services_pb2_grpc

from agents.access import BROKER
from agents.server import open_channel
from federation.config import TenantConfig
from federation.tre.ca import Credentials

__all__ = ["BudgetSummary", "TenantOutcome", "TenantAgent", "outcome_from_contract"]


@dataclass(frozen=True)
class BudgetSummary:
    """One domain's share of a contract: ``P(D_i > delay_s) <= epsilon`` at reserved ``rate_bps``."""

    domain_id: str
    delay_s: float
    epsilon: float
    rate_bps: float


@dataclass(frozen=True)
class TenantOutcome:
    """What a tenant's request came to.

    Attributes
    ----------
    tenant_id : the tenant.
    admitted : True when a contract was granted.
    code : ``"OK"`` or the gRPC status name of the rejection (e.g. ``"RESOURCE_EXHAUSTED"``).
    reason : the broker's rejection message (names the domain and the limit); empty when admitted.
    offers : how many offers ResolveIntent returned.
    contract_id, model_id, path : the contract, when admitted.
    delay_bound_s, epsilon_delay : ``P(end-to-end delay > delay_bound_s) <= epsilon_delay``.
    loss_probability, error_probability, epsilon_total : the fidelity budget.
    price_per_hour : model price plus reservation cost.
    budgets : per-domain budget, path order.
    grants : how many signed grants the contract carries (one per domain).
    released : True once released.
    admission : the broker's admission policy that planned the contract (``snc``, ``dnc``,
        ``peak-rate``, ``none``; empty when not admitted).
    """

    tenant_id: str
    admitted: bool
    code: str = "OK"
    reason: str = ""
    offers: int = 0
    contract_id: str = ""
    model_id: str = ""
    path: tuple[str, ...] = ()
    delay_bound_s: float = math.nan
    epsilon_delay: float = math.nan
    loss_probability: float = math.nan
    error_probability: float = math.nan
    epsilon_total: float = math.nan
    price_per_hour: float = math.nan
    budgets: tuple[BudgetSummary, ...] = field(default_factory=tuple)
    grants: int = 0
    released: bool = False
    admission: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN becomes None)."""
        out = asdict(self)
        out["path"] = list(self.path)
        out["budgets"] = [asdict(b) for b in self.budgets]
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def outcome_from_contract(contract: services_pb2.ServiceContract, offers: int = 0) -> TenantOutcome:
    """The outcome of an admitted request, from its contract."""
    o, b = contract.offer, contract.offer.bound
    return TenantOutcome(
        tenant_id=contract.tenant_id,
        admitted=True,
        offers=offers,
        contract_id=contract.contract_id,
        model_id=o.model_id,
        path=tuple(o.path),
        delay_bound_s=b.delay_s,
        epsilon_delay=b.epsilon_delay,
        loss_probability=b.loss_probability,
        error_probability=b.error_probability,
        epsilon_total=b.epsilon_total,
        price_per_hour=o.price_per_hour,
        budgets=tuple(BudgetSummary(x.domain_id, x.delay_s, x.epsilon, x.rate_bps) for x in o.budgets),
        grants=len(contract.grants),
        released=contract.released,
        admission=o.admission,
    )


class TenantAgent:
    """A tenant of the federation.

    Parameters
    ----------
    tenant : TenantConfig
        Its id and intent.
    broker_address : str
        ``host:port`` of the broker.
    timeout_s : float
        Deadline of each broker call, s (a first resolution runs the calculus: seconds).
    credentials : Credentials, optional
        The tenant's mTLS credentials (``trefed://tenant/ID``): the broker knows the tenant by
        them. None: plain TCP (an insecure, loopback federation).
    """

    def __init__(self, tenant: TenantConfig, broker_address: str, *, timeout_s: float = 120.0,
                 credentials: Credentials | None = None) -> None:
        self.tenant = tenant
        self.credentials = credentials
        self.broker_address = broker_address
        self.timeout_s = float(timeout_s)
        self.contract: services_pb2.ServiceContract | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: services_pb2_grpc.BrokerStub | None = None
        self._attempt = 0

    def _broker(self) -> services_pb2_grpc.BrokerStub:
        if self._stub is None:
            self._channel = open_channel(self.broker_address, self.credentials, BROKER)
            self._stub = services_pb2_grpc.BrokerStub(self._channel)
        return self._stub

    def intent(self) -> services_pb2.Intent:
        """The tenant's intent as sent on the wire (naming the tenant's configured access domain)."""
        msg = self.tenant.intent.to_proto(self.tenant.id)
        msg.access_domain = self.tenant.access
        return msg

    async def request(self) -> TenantOutcome:
        """Resolve the intent, then request the best offer; the outcome says what happened."""
        stub = self._broker()
        intent = self.intent()
        offers = 0
        try:
            resolved = await stub.ResolveIntent(intent, timeout=self.timeout_s)
            offers = len(resolved.offers)
            if not resolved.offers:
                reason = "no offer meets the intent: " + "; ".join(resolved.rejections or ["no candidate"])
                return TenantOutcome(self.tenant.id, False, "FAILED_PRECONDITION", reason, offers=0)
            self._attempt += 1
            request = services_pb2.ServiceRequest(
                request_id=f"{self.tenant.id}:{self._attempt}", intent=intent
            )
            contract = await stub.RequestService(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            return TenantOutcome(self.tenant.id, False, exc.code().name, exc.details() or "", offers=offers)
        self.contract = contract
        return outcome_from_contract(contract, offers)

    async def release(self) -> bool:
        """Release the held contract (idempotent); True when released (or nothing was held)."""
        if self.contract is None:
            return True
        response = await self._broker().ReleaseService(
            services_pb2.ReleaseServiceRequest(
                request_id=f"{self.contract.contract_id}:release", contract_id=self.contract.contract_id
            ),
            timeout=self.timeout_s,
        )
        self.contract.released = response.released
        return response.released

    async def contract_bytes(self) -> bytes:
        """The held contract, serialized (empty when none)."""
        return b"" if self.contract is None else self.contract.SerializeToString()

    async def close(self) -> None:
        """Close the broker channel."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None
