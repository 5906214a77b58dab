"""Clients around the auditor: its client of the broker (contracts by id, ``Broker.GetContract``) and
a domain's client of the auditor (``Auditor.SubmitTelemetry``).

Both speak mutual TLS when given credentials (:func:`agents.server.open_channel`): the auditor's
(role auditor) towards the broker, a domain's (``trefed://domain/ID``) towards the auditor, which
accepts a domain's own telemetry only (:mod:`agents.access`).
"""

from __future__ import annotations

import grpc
from trefed.v1 import services_pb2, services_pb2_grpc, telemetry_pb2

from agents.access import AUDITOR, BROKER
from agents.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from agents.server import open_channel
from federation.tre.ca import Credentials

__all__ = ["GrpcAuditorClient", "GrpcContractSource"]


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


class GrpcAuditorClient:
    """A domain's client of the auditor (grpc.aio): ``submit_telemetry`` over ``Auditor.SubmitTelemetry``.

    The channel is made lazily on first use, on the running event loop; every call has deadline
    ``timeout_s`` and waits for the channel to be ready within it. The auditor's
    INVALID_ARGUMENT becomes :class:`~agents.errors.InvalidArgument`, PERMISSION_DENIED and
    UNAUTHENTICATED the matching :mod:`agents.errors` class, anything else
    :class:`~agents.errors.Unavailable` naming the address and the status code. A batch the
    auditor refuses on its merits (a gap, a bad signature) is an answer, not an error:
    ``accepted=False`` with its ``reason``.

    Parameters
    ----------
    address : str
        ``host:port`` of the auditor.
    timeout_s : float
        Deadline of each call, s.
    credentials : Credentials, optional
        The domain's mTLS credentials (the auditor must present ``trefed://auditor/auditor``);
        None: plain TCP.
    """

    def __init__(self, address: str, *, timeout_s: float = 5.0, credentials: Credentials | None = None) -> None:
        self.address = address
        self.timeout_s = float(timeout_s)
        self.credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._stub: services_pb2_grpc.AuditorStub | None = None

    async def submit_telemetry(self, batch: telemetry_pb2.SignedTelemetryBatch) -> services_pb2.SubmitTelemetryResponse:
        """Submit one signed batch; the auditor's answer (accepted, or why not)."""
        if self._stub is None:
            self._channel = open_channel(self.address, self.credentials, AUDITOR)
            self._stub = services_pb2_grpc.AuditorStub(self._channel)
        try:
            return await self._stub.SubmitTelemetry(batch, timeout=self.timeout_s, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        for status, cls in ((grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
                            (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
                            (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated)):
            if code == status:
                raise cls(f"auditor at {self.address}: SubmitTelemetry: {details}")
        raise Unavailable(f"auditor at {self.address}: SubmitTelemetry {code.name}: {details}")

    async def close(self) -> None:
        """Close the channel (a later call opens a new one)."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None
