"""The auditor's client of the broker: contracts by id over gRPC (``Broker.GetContract``)."""

from __future__ import annotations

import grpc
from trefed.v1 import services_pb2, services_pb2_grpc

from agents.access import BROKER
from agents.errors import InvalidArgument, NotFound, Unavailable
from agents.server import open_channel
from federation.tre.ca import Credentials

__all__ = ["GrpcContractSource"]


class GrpcContractSource:
    """A :class:`~agents.auditor.logic.ContractSource` over the broker's gRPC API (grpc.aio).

    The channel is made lazily on first use, on the running event loop; every call has deadline
    ``timeout_s`` and waits for the channel to be ready within it. The broker's NOT_FOUND becomes
    :class:`~agents.errors.NotFound`, its INVALID_ARGUMENT :class:`~agents.errors.InvalidArgument`,
    anything else (unreachable, deadline exceeded, ...) :class:`~agents.errors.Unavailable`
    naming the broker's address and its status code.

    Parameters
    ----------
    address : str
        ``host:port`` of the broker.
    timeout_s : float
        Deadline of each call, s.
    credentials : Credentials, optional
        The auditor's mTLS credentials (the broker must present ``trefed://broker/broker``);
        None: plain TCP.
    """

    def __init__(self, address: str, *, timeout_s: float = 5.0, credentials: Credentials | None = None) -> None:
        self.address = address
        self.credentials = credentials
        self.timeout_s = float(timeout_s)
        self._channel: grpc.aio.Channel | None = None
        self._stub: services_pb2_grpc.BrokerStub | None = None

    def _get_stub(self) -> services_pb2_grpc.BrokerStub:
        if self._stub is None:
            self._channel = open_channel(self.address, self.credentials, BROKER)
            self._stub = services_pb2_grpc.BrokerStub(self._channel)
        return self._stub

    async def get_contract(self, contract_id: str) -> services_pb2.ServiceContract:
        """The broker's contract ``contract_id``."""
        try:
            return await self._get_stub().GetContract(
                services_pb2.GetContractRequest(contract_id=contract_id), timeout=self.timeout_s,
                wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.NOT_FOUND:
            raise NotFound(f"the broker has no contract {contract_id!r} ({details})")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidArgument(f"the broker refuses contract id {contract_id!r}: {details}")
        raise Unavailable(f"broker at {self.address}: GetContract {code.name}: {details}")

    async def close(self) -> None:
        """Close the channel (a later call opens a new one)."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None
