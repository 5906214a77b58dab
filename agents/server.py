"""Shared gRPC server plumbing of every trefed agent: start a grpc.aio server, serve the standard
health and reflection services beside the agent's own, and translate errors into status codes.

Errors are translated into status codes by :func:`agents.errors.status_code_for` (the tree is
drawn in :mod:`agents.errors`).

Servicers are registered with :func:`add_servicer` rather than the generated
``add_*Servicer_to_server``: it builds the method handlers from the service descriptor with a
*tolerant* deserializer, so bytes that do not parse as the request message reach the handler as
a :class:`MalformedRequest` and are answered with INVALID_ARGUMENT (the generated handlers would
answer INTERNAL), and every method is wrapped in the error translation above. Servicer methods
are plain ``(request, context) -> response`` callables, sync or async (a sync one may return an
awaitable, which is awaited); they raise :class:`ServiceError` subclasses instead of calling
``context.abort`` themselves. A bidirectional streaming method is served by the same kind of
callable, applied to each request message of the stream in order: each message is handled as it
arrives (a method that awaits after doing its work holds up only its own answer, not the
handling of the messages behind it), answers leave in the messages' order, and the first message
that fails ends the stream with its status. Before a method
runs, the caller is authorised against the table of :mod:`agents.access` (UNAUTHENTICATED /
PERMISSION_DENIED); error details are cut to :data:`MAX_DETAILS_CHARS` characters, so an error
that quotes a huge request field stays an error of its own kind (gRPC answers a status whose
details overflow the metadata limit with RESOURCE_EXHAUSTED, which in this API means "no capacity").

Security. :func:`start_grpc_server` serves mutual TLS when given
:class:`~federation.tre.ca.Credentials` (client certificates required and verified against the
federation CA) and plain TCP only without them, which it allows on a loopback interface alone.
:func:`open_channel` is the one way an agent opens a channel to another: with credentials it
presents the agent's certificate and checks that the server's names the peer it meant to reach
(``peer.tls_name``, see :mod:`federation.tre.ca`), e.g.::

    channel = open_channel(auditor_address, self.credentials, AUDITOR)   # grpc.aio channel
"""

from __future__ import annotations

import asyncio
import collections
import gc
import inspect
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agents.access import authorize
from agents.errors import status_code_for
from federation.errors import InputError, TrefedError
from federation.tre.ca import Credentials, PeerIdentity

__all__ = [
    "MAX_DETAILS_CHARS",
    "MalformedRequest",
    "STREAM_OPTIONS",
    "add_servicer",
    "channel_credentials",
    "freeze_heap",
    "is_loopback_host",
    "open_channel",
    "server_credentials",
    "start_grpc_server",
    "HEALTH_SERVICE_NAME",
    "REFLECTION_SERVICE_NAME",
]

_log = logging.getLogger(__name__)

HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_SERVICE_NAME: str = reflection.SERVICE_NAME

#: Channel and server options of a connection that carries a long-lived stream of small messages
#: (the broker's batches to a domain): no HTTP/2 BDP probing, whose pings on every burst of data
#: frames cost a third of the CPU of a small message's round trip on the stream, and buy nothing
#: when each message is far below the default flow-control window (64 KiB).
STREAM_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.http2.bdp_probe", 0),)

#: Longest error details an RPC answers with, characters (longer ones are cut, saying so).
MAX_DETAILS_CHARS = 1024


def _bounded(details: str) -> str:
    if len(details) <= MAX_DETAILS_CHARS:
        return details
    return details[: MAX_DETAILS_CHARS - 40] + f"... [{len(details) - MAX_DETAILS_CHARS + 40} chars cut]"


class MalformedRequest:
    """What a tolerant deserializer hands the handler when the request bytes do not parse."""

    __slots__ = ("message_type", "error")

    def __init__(self, message_type: str, error: str) -> None:
        self.message_type = message_type
        self.error = error

    def __repr__(self) -> str:
        return f"MalformedRequest({self.message_type!r}, {self.error!r})"


def _tolerant_deserializer(cls: Any) -> Callable[[bytes], Any]:
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's fault
            return MalformedRequest(name, f"{type(exc).__name__}: {exc}")

    return deserialize


class _Failed:
    """A stream message's failure: the status that ends the stream."""

    __slots__ = ("code", "details")

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details


def _failure(method_name: str, exc: BaseException) -> _Failed:
    """The status a method's exception is answered with (as :func:`_wrap` answers it)."""
    if isinstance(exc, TrefedError):
        return _Failed(status_code_for(exc), str(exc))
    _log.error("unexpected error in %s", method_name, exc_info=exc)
    return _Failed(grpc.StatusCode.INTERNAL, f"{method_name}: internal error: {type(exc).__name__}: {exc}")


def _wrap(method_name: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
    is_async = inspect.iscoroutinefunction(fn)

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, MalformedRequest):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                _bounded(f"{method_name}: request does not parse as {request.message_type} ({request.error})"),
            )
        try:
            authorize(method_name, context)
            result = await fn(request, context) if is_async else fn(request, context)
            if not is_async and inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            failed = _failure(method_name, exc)
        else:
            return result
        await context.abort(failed.code, _bounded(failed.details))

    handler.__name__ = method_name
    return handler


def _wrap_stream(method_name: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
    """A bidirectional streaming handler applying ``fn`` to each request message (module docstring)."""
    def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        """The answer to one message: a response, a :class:`_Failed`, or a future of either."""
        if isinstance(request, MalformedRequest):
            return _Failed(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{method_name}: request does not parse as {request.message_type} ({request.error})")
        try:
            result = fn(request, context)
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            return _failure(method_name, exc)
        if not inspect.isawaitable(result):
            return result

        async def settle(awaitable: Any) -> Any:
            try:
                return await awaitable
            except Exception as exc:  # noqa: BLE001
                return _failure(method_name, exc)

        return asyncio.ensure_future(settle(result))

    async def handler(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            authorize(method_name, context)
        except TrefedError as exc:
            await context.abort(status_code_for(exc), _bounded(str(exc)))
        # Answers are written as they come; once one is held (an awaitable), it and every answer
        # behind it wait in ``held`` for the drainer, which writes them in order.
        held: collections.deque[Any] = collections.deque()
        failed: list[_Failed] = []
        drainer: asyncio.Task | None = None

        async def drain() -> None:
            while held:
                answer = held[0]
                if isinstance(answer, asyncio.Future):
                    answer = await answer
                if isinstance(answer, _Failed):
                    failed.append(answer)
                    held.clear()
                    return
                await context.write(answer)
                held.popleft()

        try:
            async for request in request_iterator:
                answer = handle(request, context)
                if held or isinstance(answer, asyncio.Future):
                    held.append(answer)
                    if drainer is None or drainer.done():
                        drainer = asyncio.ensure_future(drain())
                    if isinstance(answer, _Failed):
                        break
                    continue
                if isinstance(answer, _Failed):
                    await context.abort(answer.code, _bounded(answer.details))
                await context.write(answer)
                if failed:
                    break
            if drainer is not None:
                await drainer
            if failed:
                await context.abort(failed[0].code, _bounded(failed[0].details))
        finally:
            if drainer is not None and not drainer.done():
                drainer.cancel()

    handler.__name__ = method_name
    return handler


def _unimplemented(details: str) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
    async def unimplemented(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, details)

    return unimplemented


def _unimplemented_stream(details: str) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
    async def unimplemented(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, details)
        yield  # pragma: no cover - an async generator, as a streaming handler must be

    return unimplemented


def add_servicer(
    server: grpc.aio.Server,
    servicer: object,
    service_name: str,
    *,
    pool: descriptor_pool.DescriptorPool | None = None,
) -> None:
    """Register ``servicer`` for every unary and bidirectional streaming method of ``service_name``.

    Parameters
    ----------
    server : grpc.aio.Server
        The server (not yet started).
    servicer : object
        Has one attribute per rpc, named as in the .proto (``Prepare``, ``GetEnvelope``, ...),
        each a sync or async callable ``(request, context) -> response`` that raises
        :class:`ServiceError` (or another ``TrefedError``) to fail the call. Sync methods run
        on the server's event loop (no thread pool), so each runs atomically with respect to
        every other call of the server -- the domain controller relies on this to check and
        book capacity without a lock. Keep them short and non-blocking. A method the servicer
        lacks is answered UNIMPLEMENTED, as the generated base servicers do (so a servicer
        written against an older revision of the service keeps working).
    service_name : str
        Fully qualified service name, e.g. ``"trefed.v1.DomainController"``; its descriptor must be
        in ``pool`` (the default pool holds it once ``trefed.v1.services_pb2`` is imported).
    pool : DescriptorPool, optional
        Where to look the service up; default: the default descriptor pool.

    Raises
    ------
    InputError
        If the service is unknown or a method streams one way only.
    """
    pool = pool or descriptor_pool.Default()
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError as exc:
        raise InputError(f"unknown gRPC service {service_name!r}") from exc
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        if method.client_streaming != method.server_streaming:
            raise InputError(f"{service_name}.{method.name}: one-way streaming methods are not supported")
        stream = method.client_streaming
        fn = getattr(servicer, method.name, None)
        if fn is None:  # as the generated base servicers do: the method exists but is not implemented
            details = f"{type(servicer).__name__} does not implement {service_name}.{method.name}"
            handler = _unimplemented_stream(details) if stream else _unimplemented(details)
        else:
            handler = (_wrap_stream if stream else _wrap)(f"{service.name}.{method.name}", fn)
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        make = grpc.stream_stream_rpc_method_handler if stream else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(
            handler,
            request_deserializer=_tolerant_deserializer(request_cls),
            response_serializer=response_cls.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))


def freeze_heap() -> None:
    """Collect garbage once, then move every object alive to the cyclic GC's permanent generation.

    An agent calls it when it has started serving: what it holds then (imported modules, Ray's
    and gRPC's state, the config, the signed envelope) lives as long as the process, and a full
    collection would otherwise traverse all of it again (tens of ms in an agent process, a
    latency spike for every call in flight then). Frozen objects are still freed by reference
    counting; only the cyclic collector skips them. Process-wide (:func:`gc.freeze`).
    """
    gc.collect()
    gc.freeze()


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def server_credentials(credentials: Credentials) -> grpc.ServerCredentials:
    """Mutual-TLS server credentials: present ``credentials``' certificate, require a client
    certificate issued by its CA."""
    return grpc.ssl_server_credentials(
        [(credentials.key_pem, credentials.cert_pem)], root_certificates=credentials.ca_pem,
        require_client_auth=True)


def channel_credentials(credentials: Credentials) -> grpc.ChannelCredentials:
    """Mutual-TLS channel credentials: trust ``credentials``' CA, present its certificate."""
    return grpc.ssl_channel_credentials(credentials.ca_pem, credentials.key_pem, credentials.cert_pem)


def open_channel(
    address: str,
    credentials: Credentials | None,
    peer: PeerIdentity | None = None,
    *,
    options: Sequence[tuple[str, Any]] = (),
    sync: bool = False,
) -> Any:
    """A channel from one agent to another: mutual TLS with ``credentials``, plain TCP without.

    Parameters
    ----------
    address : str
        ``host:port`` of the peer.
    credentials : Credentials or None
        This agent's credentials; None: an insecure channel (to an insecure, loopback server).
    peer : PeerIdentity
        Who must serve at ``address`` (required with credentials): the server's certificate must
        carry ``peer.tls_name``, or the handshake fails.
    options : sequence of (str, value)
        Further gRPC channel options.
    sync : bool
        A blocking ``grpc.Channel`` instead of a ``grpc.aio.Channel`` (for the runner and scripts).

    Raises
    ------
    InputError
        If ``credentials`` is given without ``peer``.
    """
    opts = list(options)
    mod: Any = grpc if sync else grpc.aio
    if credentials is None:
        return mod.insecure_channel(address, options=opts)
    if peer is None:
        raise InputError(f"open_channel({address!r}): a secure channel needs the peer's identity")
    opts.append(("grpc.ssl_target_name_override", peer.tls_name))
    return mod.secure_channel(address, channel_credentials(credentials), options=opts)


async def start_grpc_server(
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    credentials: Credentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server with the agent's services plus health and reflection.

    Must be awaited on the event loop that will serve the calls (in a Ray async actor: from one
    of its async methods).

    Parameters
    ----------
    register : callable
        ``register(server)`` adds the agent's servicers (e.g. with :func:`add_servicer`).
    service_names : sequence of str
        Fully qualified names of the services ``register`` adds. Each, and the overall server
        (``""``), is reported SERVING by the standard health service
        (``grpc.health.v1.Health``); reflection lists them together with health and reflection.
    host : str
        Interface to bind, default loopback.
    port : int
        TCP port; 0 picks a free ephemeral port.
    credentials : Credentials, optional
        Serve mutual TLS with these (see the module docstring); None: plain TCP, loopback only.
    options : sequence of (str, value)
        Further gRPC server options (e.g. :data:`STREAM_OPTIONS`).

    Returns
    -------
    (grpc.aio.Server, int)
        The started server and the port it is bound to.

    Raises
    ------
    OSError
        If ``host:port`` cannot be bound (e.g. the port is in use).
    InputError
        If the port is out of range, or ``host`` is not loopback and there are no credentials.
    """
    if not 0 <= int(port) <= 65535:
        raise InputError(f"port(={port!r}) must be in [0, 65535]")
    if credentials is None and not is_loopback_host(host):
        raise InputError(f"host(={host!r}) is not loopback: serving there needs mTLS credentials "
                         "(no --insecure off loopback)")
    # so_reuseport off: binding a port another server holds must fail, not silently share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options])
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*service_names, HEALTH_SERVICE_NAME, REFLECTION_SERVICE_NAME), server
    )
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = (server.add_insecure_port(address) if credentials is None
                 else server.add_secure_port(address, server_credentials(credentials)))
    except RuntimeError as exc:
        await server.stop(None)
        raise OSError(f"cannot bind gRPC server to {address}: {exc}") from exc
    if bound == 0:  # pragma: no cover - older grpcio reported a failed bind this way
        await server.stop(None)
        raise OSError(f"cannot bind gRPC server to {address}")
    await server.start()
    return server, bound
