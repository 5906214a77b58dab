"""The broker's client of the domains: the :class:`DomainClient` interface and its gRPC implementation.

:class:`~agents.broker.logic.Broker` is written against :class:`DomainClient`, a small async
interface (one object per domain) whose calls raise :class:`DomainCallError` carrying the gRPC
status code. :class:`GrpcDomainClient` speaks ``trefed.v1.DomainController`` over gRPC (grpc.aio)
and shares ``Batch`` rpcs among concurrent calls under load (group commit); tests implement the
interface in-process (``tests/inprocess.py``), so the broker's logic runs with no socket.

:data:`DEFINITE_REFUSALS` is the protocol's one rule about outcomes: a call that failed with one
of these codes held nothing at the domain (there is nothing to abort); any other failure leaves
the outcome unknown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

import grpc
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2, services_pb2_grpc

from agents.server import STREAM_OPTIONS, open_channel
from federation.errors import InputError, TrefedError
from federation.tre.ca import Credentials, PeerIdentity, Role

__all__ = ["DEFINITE_REFUSALS", "DomainCallError", "DomainClient", "GrpcDomainClient"]

_log = logging.getLogger(__name__)

#: Status codes of a failed domain call that are a definite "no": the domain held nothing for it.
DEFINITE_REFUSALS: frozenset[grpc.StatusCode] = frozenset({
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
})


class DomainCallError(TrefedError):
    """A call to a domain failed; ``code`` is the gRPC status, ``details`` the domain's message.

    Pickles with its fields, as every :class:`~federation.errors.TrefedError` does.
    """

    def __init__(self, domain_id: str, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"domain {domain_id!r} {method}: {code.name}: {details}")
        self.domain_id = domain_id
        self.method = method
        self.code = code
        self.details = details


class DomainClient(Protocol):
    """What the broker needs of a domain (async; every call raises :class:`DomainCallError`)."""

    domain_id: str

    async def get_envelope(self, tre_id: str) -> envelope_pb2.TailRiskEnvelope: ...
    # The reservation calls return an awaitable (a coroutine, or a future: no task to wrap it in).
    def prepare(self, request: reservation_pb2.PrepareRequest) -> Awaitable[reservation_pb2.PrepareResponse]: ...
    def commit(self, request: reservation_pb2.CommitRequest) -> Awaitable[reservation_pb2.SignedGrant]: ...
    def abort(self, request: reservation_pb2.AbortRequest) -> Awaitable[reservation_pb2.AbortResponse]: ...
    def release(self, request: reservation_pb2.ReleaseRequest) -> Awaitable[reservation_pb2.ReleaseResponse]: ...
    async def status(self, include_reservations: bool = False) -> services_pb2.DomainStatus: ...
    async def close(self) -> None: ...


# A restarted domain must be reachable again quickly: short reconnect back-off.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    *STREAM_OPTIONS,  # the channel carries the BatchStream
)


_COALESCE_S = 0.0005  # s: how long a domain's next batch waits after an answer for the calls it wakes

_STATUS_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


class GrpcDomainClient:
    """A :class:`DomainClient` over gRPC (grpc.aio); every call has deadline ``timeout_s``.

    Calls wait for the channel to be ready (within the deadline) rather than failing at once
    while a domain reconnects; an unreachable domain ends in ``DEADLINE_EXCEEDED`` or
    ``UNAVAILABLE``. The channel is created lazily on first use, on the running event loop.

    Group commit. Prepare, Commit, Abort and Release calls are queued and sent at the next turn
    of the event loop; while ``batches_in_flight`` calls to the domain are outstanding, further
    calls wait and leave together as one batch (at most ``max_batch`` items), which the domain
    persists in one transaction. Under light load every call leaves at once, alone (on the
    stream as a batch of one, else as its single rpc); under load the per-call gRPC and SQLite
    costs are shared. When a batch is answered while calls wait, the next batch leaves
    ``_COALESCE_S`` (0.5 ms) later, so the calls that the answer itself sets off (an admission's
    Commit after its Prepares) travel with the waiting ones: about a third fewer batches at 8
    admissions in flight; with nothing waiting there is no such delay. Each item keeps its
    own request id, checks and status; if a batch fails as a whole, every item in it fails with
    that status (outcome unknown, as for a single call). Batches travel as messages of one
    long-lived ``BatchStream`` call (opened on first use, re-opened after it fails): a message
    each way costs a fraction of a unary call's client and server CPU. Each batch has deadline
    ``timeout_s``; one that passes it fails with ``DEADLINE_EXCEEDED``, and the stream is reset
    (the batches behind it on the stream fail too, outcome unknown). A domain that does not
    implement ``BatchStream`` (UNIMPLEMENTED) gets ``Batch`` calls from then on, one that does not
    implement ``Batch`` single calls. ``batch=False``: single calls only; ``stream=False``:
    ``Batch`` calls, no stream.

    With ``credentials`` (the broker's) the channel is mutual TLS and the server must present the
    certificate of ``trefed://domain/DOMAIN_ID``; without, plain TCP.
    """

    def __init__(self, domain_id: str, address: str, *, timeout_s: float = 2.0, batch: bool = True,
                 max_batch: int = 64, batches_in_flight: int = 1, credentials: Credentials | None = None,
                 stream: bool = True) -> None:
        if not 1 <= int(max_batch) <= 256:
            raise InputError(f"max_batch(={max_batch!r}) must be in [1, 256]")
        if int(batches_in_flight) < 1:
            raise InputError(f"batches_in_flight(={batches_in_flight!r}) must be >= 1")
        self.domain_id = domain_id
        self.address = address
        self.timeout_s = float(timeout_s)
        self.batch = bool(batch)
        self.max_batch = int(max_batch)
        self.batches_in_flight = int(batches_in_flight)
        self.stream = bool(stream)
        self.credentials = credentials
        self._stream: _BatchStream | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: services_pb2_grpc.DomainControllerStub | None = None
        self._queue: list[tuple[str, str, object, asyncio.Future]] = []
        self._in_flight = 0
        self._flush_scheduled = False
        self._senders: set[asyncio.Task] = set()
        self.calls_sent = 0  # rpcs sent for reservation calls (single or Batch, refused ones included)
        self.items_sent = 0  # reservation calls sent

    def _get_stub(self) -> services_pb2_grpc.DomainControllerStub:
        if self._stub is None:
            self._channel = open_channel(self.address, self.credentials, PeerIdentity(Role.DOMAIN, self.domain_id),
                                         options=_CHANNEL_OPTIONS)
            self._stub = services_pb2_grpc.DomainControllerStub(self._channel)
        return self._stub

    async def _call(self, method: str, request):  # noqa: ANN001, ANN202 - generic over messages
        try:
            return await getattr(self._get_stub(), method)(request, timeout=self.timeout_s, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            raise DomainCallError(self.domain_id, method, exc.code(), exc.details() or "") from None

    # ------------------------------------------------------------------ group commit

    def _submit(self, kind: str, method: str, request) -> Awaitable[Any]:  # noqa: ANN001
        """Queue a reservation call; the future of its answer (the call itself when not batching)."""
        if not self.batch:
            self.calls_sent += 1
            self.items_sent += 1
            return self._call(method, request)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((kind, method, request, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue and self._in_flight < self.batches_in_flight:
            items = [it for it in self._queue[: self.max_batch] if not it[3].done()]  # skip cancelled callers
            del self._queue[: self.max_batch]
            if not items:
                continue
            self._in_flight += 1
            task = asyncio.ensure_future(self._send(items))
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _send(self, items: list[tuple[str, str, object, asyncio.Future]]) -> None:
        try:
            self.items_sent += len(items)
            if self.batch and (len(items) > 1 or self.stream):  # on the stream, one call alone is a batch of one
                await self._send_batch(items)
            else:
                await asyncio.gather(*(self._send_one(it) for it in items))
        except BaseException as exc:  # cancelled (closing) or a bug: no caller waits forever
            for _, method, _, future in items:
                if not future.done():
                    future.set_exception(
                        DomainCallError(self.domain_id, method, grpc.StatusCode.UNAVAILABLE, f"not sent: {exc!r}")
                    )
            raise
        finally:
            self._in_flight -= 1
            if self._queue and not self._flush_scheduled:
                # Under load (calls waited for this batch), let the callers this answer wakes queue
                # their next calls first (they resume a few turns of the event loop later), so those
                # leave in the next batch too. Without waiting calls the next call leaves at once.
                self._flush_scheduled = True
                asyncio.get_running_loop().call_later(_COALESCE_S, self._flush)

    async def _send_one(self, item: tuple[str, str, object, asyncio.Future]) -> None:
        _, method, request, future = item
        self.calls_sent += 1
        try:
            result = await self._call(method, request)
        except DomainCallError as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    async def _round_trip(self, request: services_pb2.BatchRequest) -> services_pb2.BatchResponse:
        """One batch to the domain and its answer: on the stream, else as a ``Batch`` call.

        Raises ``grpc.aio.AioRpcError`` or :class:`_StreamError` (both carry ``code()``/``details()``).
        """
        if self.stream:
            if self._stream is None or self._stream.failed is not None:
                self._get_stub()
                assert self._channel is not None
                self._stream = _BatchStream(self._channel)
            try:
                return await self._stream.exchange(request, self.timeout_s)
            except _StreamError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                # An older domain: nothing ran (the method was not found); Batch calls from now on.
                _log.info("domain %r does not implement BatchStream; using Batch calls", self.domain_id)
                self.stream, self._stream = False, None  # (the refused stream has ended)
        return await self._get_stub().Batch(request, timeout=self.timeout_s, wait_for_ready=True)

    async def _send_batch(self, items: list[tuple[str, str, object, asyncio.Future]]) -> None:
        request = services_pb2.BatchRequest()
        for kind, _, message, _ in items:
            getattr(request.items.add(), kind).CopyFrom(message)
        self.calls_sent += 1
        try:
            response = await self._round_trip(request)
        except (grpc.aio.AioRpcError, _StreamError) as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # an older domain: single calls from now on
                _log.info("domain %r does not implement Batch; using single calls", self.domain_id)
                self.batch = False
                await asyncio.gather(*(self._send_one(it) for it in items))
                return
            for _, method, _, future in items:
                if not future.done():
                    future.set_exception(DomainCallError(self.domain_id, method, exc.code(), exc.details() or ""))
            return
        if len(response.results) != len(items):
            for _, method, _, future in items:
                if not future.done():
                    future.set_exception(DomainCallError(
                        self.domain_id, method, grpc.StatusCode.INTERNAL,
                        f"Batch answered {len(response.results)} results for {len(items)} items"))
            return
        for (kind, method, _, future), result in zip(items, response.results):
            if future.done():
                continue
            if result.code:
                code = _STATUS_BY_VALUE.get(result.code, grpc.StatusCode.UNKNOWN)
                future.set_exception(DomainCallError(self.domain_id, method, code, result.message))
            elif result.WhichOneof("response") != kind:
                future.set_exception(DomainCallError(
                    self.domain_id, method, grpc.StatusCode.INTERNAL,
                    f"Batch answered {result.WhichOneof('response')!r} for a {kind!r} item"))
            else:
                future.set_result(getattr(result, kind))

    # ------------------------------------------------------------------ calls

    async def get_envelope(self, tre_id: str) -> envelope_pb2.TailRiskEnvelope:
        return await self._call("GetEnvelope", services_pb2.GetEnvelopeRequest(tre_id=tre_id))

    def prepare(self, request: reservation_pb2.PrepareRequest) -> Awaitable[reservation_pb2.PrepareResponse]:
        return self._submit("prepare", "Prepare", request)

    def commit(self, request: reservation_pb2.CommitRequest) -> Awaitable[reservation_pb2.SignedGrant]:
        return self._submit("commit", "Commit", request)

    def abort(self, request: reservation_pb2.AbortRequest) -> Awaitable[reservation_pb2.AbortResponse]:
        return self._submit("abort", "Abort", request)

    def release(self, request: reservation_pb2.ReleaseRequest) -> Awaitable[reservation_pb2.ReleaseResponse]:
        return self._submit("release", "Release", request)

    async def status(self, include_reservations: bool = False) -> services_pb2.DomainStatus:
        return await self._call("GetStatus", services_pb2.GetStatusRequest(include_reservations=include_reservations))

    async def close(self) -> None:
        for task in list(self._senders):
            task.cancel()
        for task in list(self._senders):
            with contextlib.suppress(BaseException):
                await task
        for _, method, _, future in self._queue:
            if not future.done():
                future.set_exception(DomainCallError(self.domain_id, method, grpc.StatusCode.UNAVAILABLE, "closed"))
        self._queue.clear()
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None


class _StreamError(Exception):
    """A batch the stream could not answer: the status, as ``grpc.aio.AioRpcError`` carries it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


_BATCH_STREAM = "/" + services_pb2.DESCRIPTOR.services_by_name["DomainController"].full_name + "/BatchStream"


class _BatchStream:
    """One ``BatchStream`` call to a domain: batches written in order, answered in order.

    :meth:`exchange` queues a batch for the stream's writer and waits for its answer (at most
    ``timeout_s``; the write itself may wait while the channel connects). The first failure --
    the call ends (the domain died, refused the stream, or answered a batch with an error
    status), a write fails, a batch passes its deadline, or :meth:`close` -- fails every batch
    not yet answered with that status and ends the stream for good (``failed``); the client then
    opens a new one for the next batch.
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        method = channel.stream_stream(
            _BATCH_STREAM,
            request_serializer=services_pb2.BatchRequest.SerializeToString,
            response_deserializer=services_pb2.BatchResponse.FromString,
        )
        self._call = method(wait_for_ready=True)
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._outbox: asyncio.Queue[services_pb2.BatchRequest] = asyncio.Queue()
        self.failed: _StreamError | None = None
        self._reader = asyncio.ensure_future(self._read())
        self._writer = asyncio.ensure_future(self._write())

    def _fail(self, code: grpc.StatusCode, details: str) -> None:
        if self.failed is None:
            self.failed = _StreamError(code, details)
        for future in self._waiting:
            if not future.done():
                future.set_exception(self.failed)
        self._waiting.clear()
        self._call.cancel()
        current = asyncio.current_task()
        for task in (self._reader, self._writer):
            if task is not current:
                task.cancel()

    @staticmethod
    def _cancelled_from_outside() -> bool:
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    async def _read(self) -> None:
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    self._fail(grpc.StatusCode.UNAVAILABLE, "the domain ended the batch stream")
                    return
                if self._waiting:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(response)
        except grpc.aio.AioRpcError as exc:
            self._fail(exc.code(), exc.details() or "")
        except asyncio.CancelledError:
            if self._cancelled_from_outside():  # _fail or close stopped this reader
                raise
            self._fail(grpc.StatusCode.CANCELLED, "batch stream cancelled")  # the call was cancelled

    async def _write(self) -> None:
        try:
            while True:
                request = await self._outbox.get()
                await self._call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNAVAILABLE
            self._fail(code, f"batch stream write failed: {exc}")
        except asyncio.CancelledError:
            if self._cancelled_from_outside():
                raise
            self._fail(grpc.StatusCode.CANCELLED, "batch stream cancelled")

    def _expire(self, future: asyncio.Future, timeout_s: float) -> None:
        if not future.done():
            self._fail(grpc.StatusCode.DEADLINE_EXCEEDED, f"Deadline Exceeded (batch unanswered after {timeout_s:g} s)")

    async def exchange(self, request: services_pb2.BatchRequest, timeout_s: float) -> services_pb2.BatchResponse:
        """Send ``request`` on the stream and return its answer. Raises :class:`_StreamError`."""
        if self.failed is not None:
            raise self.failed
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append(future)  # answers come in the order of the writes
        self._outbox.put_nowait(request)
        timer = loop.call_later(timeout_s, self._expire, future, timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    async def close(self) -> None:
        """Fail what is unanswered, cancel the call and stop its tasks. Idempotent."""
        self._fail(grpc.StatusCode.UNAVAILABLE, "closed")
        for task in (self._reader, self._writer):
            with contextlib.suppress(asyncio.CancelledError):
                await task
