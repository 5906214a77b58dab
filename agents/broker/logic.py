"""The AIaaS broker: catalogue, intent resolution, admission control, two-phase reservations.

:class:`Broker` holds the logic as a plain class written against the small async
:class:`DomainClient` interface (one per domain; :class:`GrpcDomainClient` speaks
``trefed.v1.DomainController`` over gRPC). :mod:`agents.broker.servicer` serves it as
``trefed.v1.Broker``.

Resolution (``ResolveIntent``). For each catalogue model of the intent's task whose error
probability is within the intent and each path of the domain graph from the tenant's access
domain (the intent's ``access_domain``; if empty, the tenant's configured one, else the broker's
default; an unknown domain is INVALID_ARGUMENT) to the model's compute domain:

1. fetch every domain's Tail-Risk Envelope and verify it against the trust store (signature,
   key bound to the domain, ranges, validity window, monotone sequence). Verified envelopes are
   cached per domain and re-fetched every ``broker.envelope_refresh_s``; a byte-identical
   re-delivery is re-checked as such (validity window), a new sequence is verified afresh. The
   calculus only ever sees verified bodies;
2. split the fidelity budget: ``eps_delay = eps - loss - e_model`` where
   ``loss = 1 - prod(1 - p_loss_i)`` over the path and ``e_model`` is the model's error
   probability; no budget left is a rejection;
3. size the reservation: :func:`federation.calculus.compose.plan_rates` gives the cost-minimising rates
   ``r_i`` (bits/s, cost ``price_per_mbps_hour`` of each domain) meeting
   ``P(D > deadline) <= eps_delay`` with ``r_i <= max_tenant_rate_bps``; rates are raised to
   ``min_tenant_rate_bps``; :func:`federation.calculus.compose.compose_path` then gives the composed
   bound and the per-domain budget ``(d_i, eps_i)``;
4. price it: model price + ``sum_i r_i/1e6 * price_per_mbps_hour_i``. Offers are ranked by
   price, then by bound.

The result of 2-4 is cached per (model, path, envelope sequences, intent without tenant): an
admission that hits the cache costs no calculus.

Domain slices. A network domain serves the tenant's slice as a rate-latency service (rate
``r_i``, latency ``T_i`` of its envelope, plus its propagation delay). The compute domain serves
it with i.i.d. exponential service times at the reserved rate (``EXPONENTIAL_SERVICE``); the
model's mean inference latency (catalogue ``latency.mean_s``) is added to the compute slice's
constant latency.

Admission (``RequestService``): the best offer (or the one named) is reserved in every domain
of its path by a two-phase transaction: ``Prepare`` everywhere concurrently (each with
``broker.rpc_timeout_s`` and a hold of ``broker.hold_timeout_s``); any failure aborts every hold
whose outcome is not a definite refusal; then ``Commit`` everywhere, whose signed grants are
verified against the trust store. A failed commit releases (or aborts) everything again.
Calls to one domain from concurrent admissions share ``Batch`` rpcs under load (group commit,
see :class:`GrpcDomainClient`); each keeps its own request id, checks and outcome.
Clean-up calls that cannot reach a domain are retried in the background until they succeed (a
crashed domain's holds expire by themselves; a commit that landed before a crash is released
once the domain is back). If the best offer is refused the next offers are tried, at most
``broker.max_offers``. Rejections name the domain and the limit: capacity is
``RESOURCE_EXHAUSTED``, guardrails and unmet intents ``FAILED_PRECONDITION``, unreachable
domains ``UNAVAILABLE``, malformed requests ``INVALID_ARGUMENT``.

Units: seconds, bits, bits/s; prices per hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2, services_pb2_grpc

from agents.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from federation.calculus.arrivals import MMOO, Arrival, CorrelatedMMOO, PoissonArrival, TokenBucket
from federation.config import (
    FederationConfig,
    IntentConfig,
    MmooConfig,
    ModelConfig,
    PoissonConfig,
    TokenBucketConfig,
    intent_from_proto,
)
from federation.errors import InputError, NoFiniteBound, VerificationError
from federation.tre.trust import TrustStore

__all__ = [
    "Broker",
    "DomainClient",
    "DomainCallError",
    "GrpcDomainClient",
    "TrustEntry",
    "arrival_of",
    "burst_of",
]

_log = logging.getLogger(__name__)

# Status codes of a domain call that are a definite "no" (nothing was held).
_DEFINITE = {
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
}
_PLAN_CACHE_SIZE = 4096
_SCALE_FIRST = (1.001, 1.01)
_SCALE_GROWTH = 1.25
_SCALE_STEPS = 16
_CONTRACT_HISTORY = 100_000


@dataclass(frozen=True)
class TrustEntry:
    """One trusted public key: ``key_id`` signs for ``domain_id`` (raw 32-byte Ed25519 key)."""

    key_id: str
    domain_id: str
    public_key: bytes


class DomainCallError(Exception):
    """A call to a domain failed; ``code`` is the gRPC status, ``details`` the domain's message."""

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
    async def prepare(self, request: reservation_pb2.PrepareRequest) -> reservation_pb2.PrepareResponse: ...
    async def commit(self, request: reservation_pb2.CommitRequest) -> reservation_pb2.SignedGrant: ...
    async def abort(self, request: reservation_pb2.AbortRequest) -> reservation_pb2.AbortResponse: ...
    async def release(self, request: reservation_pb2.ReleaseRequest) -> reservation_pb2.ReleaseResponse: ...
    async def status(self, include_reservations: bool = False) -> services_pb2.DomainStatus: ...
    async def close(self) -> None: ...


# A restarted domain must be reachable again quickly: short reconnect back-off.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


_STATUS_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


class GrpcDomainClient:
    """A :class:`DomainClient` over gRPC (grpc.aio); every call has deadline ``timeout_s``.

    Calls wait for the channel to be ready (within the deadline) rather than failing at once
    while a domain reconnects; an unreachable domain ends in ``DEADLINE_EXCEEDED`` or
    ``UNAVAILABLE``. The channel is created lazily on first use, on the running event loop.

    Group commit. Prepare, Commit, Abort and Release calls are queued and sent at the next turn
    of the event loop; while ``batches_in_flight`` calls to the domain are outstanding, further
    calls wait and leave together as one ``Batch`` call (at most ``max_batch`` items), which the
    domain persists in one transaction. Under light load every call leaves at once, alone, as
    its single rpc; under load the per-call gRPC and SQLite costs are shared. Each item keeps
    its own request id, checks and status; if a batch fails as a whole, every item in it fails
    with that status (outcome unknown, as for a single call). A domain that does not implement
    ``Batch`` (UNIMPLEMENTED) gets single calls from then on. ``batch=False``: single calls only.
    """

    def __init__(self, domain_id: str, address: str, *, timeout_s: float = 2.0, batch: bool = True,
                 max_batch: int = 64, batches_in_flight: int = 1) -> None:
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
            self._channel = grpc.aio.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
            self._stub = services_pb2_grpc.DomainControllerStub(self._channel)
        return self._stub

    async def _call(self, method: str, request):  # noqa: ANN001, ANN202 - generic over messages
        try:
            return await getattr(self._get_stub(), method)(request, timeout=self.timeout_s, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            raise DomainCallError(self.domain_id, method, exc.code(), exc.details() or "") from None

    # ------------------------------------------------------------------ group commit

    async def _submit(self, kind: str, method: str, request):  # noqa: ANN001, ANN202
        if not self.batch:
            self.calls_sent += 1
            self.items_sent += 1
            return await self._call(method, request)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((kind, method, request, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

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
            if len(items) > 1 and self.batch:
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
                self._flush()

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

    async def _send_batch(self, items: list[tuple[str, str, object, asyncio.Future]]) -> None:
        request = services_pb2.BatchRequest()
        for kind, _, message, _ in items:
            getattr(request.items.add(), kind).CopyFrom(message)
        self.calls_sent += 1
        try:
            response = await self._get_stub().Batch(request, timeout=self.timeout_s, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
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

    async def prepare(self, request: reservation_pb2.PrepareRequest) -> reservation_pb2.PrepareResponse:
        return await self._submit("prepare", "Prepare", request)

    async def commit(self, request: reservation_pb2.CommitRequest) -> reservation_pb2.SignedGrant:
        return await self._submit("commit", "Commit", request)

    async def abort(self, request: reservation_pb2.AbortRequest) -> reservation_pb2.AbortResponse:
        return await self._submit("abort", "Abort", request)

    async def release(self, request: reservation_pb2.ReleaseRequest) -> reservation_pb2.ReleaseResponse:
        return await self._submit("release", "Release", request)

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
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None


# ---------------------------------------------------------------------------- traffic


def arrival_of(
    traffic: TokenBucketConfig | PoissonConfig | MmooConfig, *, request_size_bits: float = 1.0
) -> Arrival:
    """The calculus' arrival model of a validated traffic envelope (continuous time, bits).

    A token bucket's packets are the model's requests (``request_size_bits``: what a compute
    domain with exponential service serves per completion); Poisson requests carry their own
    (mean) size; MMOO sources are fluid.
    """
    if isinstance(traffic, TokenBucketConfig):
        return TokenBucket(traffic.sigma_bits, traffic.rho_bps, packet_size=request_size_bits)
    if isinstance(traffic, PoissonConfig):
        return PoissonArrival(
            rate=traffic.rate_pps,
            mean_size=traffic.mean_size_bits,
            size="exp" if traffic.exponential_sizes else "det",
        )
    cls = CorrelatedMMOO if traffic.correlated else MMOO
    return cls(peak=traffic.peak_bps, on=traffic.mean_on_s, off=traffic.mean_off_s, n=traffic.sources)


def burst_of(traffic: TokenBucketConfig | PoissonConfig | MmooConfig) -> float:
    """The burst (bits) declared to domains for the ``max_burst_bits`` guardrail.

    Token bucket: ``sigma``. Poisson: one request (``mean_size_bits``; the deterministic size,
    or the mean of exponential sizes). MMOO: 0 (a fluid source has no instantaneous burst; its
    burstiness is in the MGF the calculus uses).
    """
    if isinstance(traffic, TokenBucketConfig):
        return traffic.sigma_bits
    if isinstance(traffic, PoissonConfig):
        return traffic.mean_size_bits
    return 0.0


def _traffic_key(traffic: TokenBucketConfig | PoissonConfig | MmooConfig) -> tuple:
    return tuple(traffic.model_dump().items())


# ---------------------------------------------------------------------------- helpers


@dataclass
class _Envelope:
    body: envelope_pb2.EnvelopeBody
    raw: bytes
    signature: bytes
    fetched_at: float  # time.monotonic()
    not_after: float  # Unix time, s


class _Infeasible(Exception):
    """A (model, path) candidate cannot meet the intent; the message names domain and limit."""


@dataclass
class _Pending:
    fingerprint: bytes
    future: asyncio.Future


@dataclass
class _Stats:
    admitted: int = 0
    rejected: int = 0
    plans_computed: int = 0
    plan_cache_hits: int = 0
    envelopes_verified: int = 0
    cleanups_pending: int = 0
    extra: dict = field(default_factory=dict)


def _ts(t: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int(round(t * 1e9)))
    return out


def _seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos * 1e-9


def _fmt_path(path: Sequence[str]) -> str:
    return " -> ".join(path)


# ---------------------------------------------------------------------------- broker


class Broker:
    """The broker's logic (see the module docstring).

    Parameters
    ----------
    config : FederationConfig
        Catalogue, domain graph, broker settings; an intent's ``access_domain`` names where the
        tenant enters; when empty, tenants of the config enter at their configured access
        domain and unknown tenants at ``default_access``.
    domains : mapping of domain id -> DomainClient
        One client per domain of the config.
    trust : TrustStore or iterable of TrustEntry
        The keys the broker accepts envelopes and grants from.
    default_access : str, optional
        Access domain of tenants not in the config; default: the access domain of the first
        tenant of the config, else the first network domain.
    clock : callable
        Unix time, s (injectable for tests).
    """

    def __init__(
        self,
        config: FederationConfig,
        domains: Mapping[str, DomainClient],
        trust: TrustStore | Iterable[TrustEntry],
        *,
        default_access: str | None = None,
        clock=time.time,  # noqa: ANN001
    ) -> None:
        missing = [d.id for d in config.domains if d.id not in domains]
        if missing:
            raise InputError(f"broker: no client for domain(s) {', '.join(missing)}")
        self.config = config
        self.settings = config.broker
        self.domains: dict[str, DomainClient] = dict(domains)
        if isinstance(trust, TrustStore):
            self.trust = trust
        else:
            self.trust = TrustStore()
            for e in trust:
                self.trust.add(e.key_id, e.domain_id, e.public_key)
        self._clock = clock
        self._access = {t.id: t.access for t in config.tenants}
        if default_access is None:
            if config.tenants:
                default_access = config.tenants[0].access
            else:
                default_access = next((d.id for d in config.domains if d.kind == "network"), config.domains[0].id)
        self.default_access = default_access
        self._domain_cfg = {d.id: d for d in config.domains}
        self._envelopes: dict[str, _Envelope] = {}
        self._path_cache: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        self._env_locks: dict[str, asyncio.Lock] = {}
        self._plans: OrderedDict[tuple, services_pb2.Offer | _Infeasible] = OrderedDict()
        self._planning: dict[tuple, asyncio.Future] = {}
        self._contracts: OrderedDict[str, services_pb2.ServiceContract] = OrderedDict()
        self._requests: dict[str, _Pending] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._cleanup: dict[tuple[str, str], float] = {}  # (domain, reservation) -> first attempt
        self._cleanup_task: asyncio.Task | None = None
        self.stats = _Stats()

    # ------------------------------------------------------------------ catalogue

    def list_models(self, request: services_pb2.ListModelsRequest) -> services_pb2.ListModelsResponse:
        """The catalogue, optionally filtered by task."""
        models = [m.to_proto() for m in self.config.models if not request.task or m.task == request.task]
        return services_pb2.ListModelsResponse(models=models)

    # ------------------------------------------------------------------ envelopes

    async def envelope(self, domain_id: str) -> envelope_pb2.EnvelopeBody:
        """The verified envelope body of a domain (cached; see the module docstring).

        Raises
        ------
        VerificationError
            The envelope was refused (the cache entry is dropped).
        DomainCallError
            The domain cannot be reached.
        """
        now_m = time.monotonic()
        cached = self._envelopes.get(domain_id)
        if cached is not None and now_m - cached.fetched_at < self.settings.envelope_refresh_s:
            if self._clock() < cached.not_after:
                return cached.body
        lock = self._env_locks.setdefault(domain_id, asyncio.Lock())
        async with lock:
            cached = self._envelopes.get(domain_id)
            if (
                cached is not None
                and time.monotonic() - cached.fetched_at < self.settings.envelope_refresh_s
                and self._clock() < cached.not_after
            ):
                return cached.body
            tre_id = self._domain_cfg[domain_id].service_class
            env = await self.domains[domain_id].get_envelope(tre_id)
            same = cached is not None and env.body == cached.raw and env.signature.signature == cached.signature
            try:
                body = self.trust.verify_envelope(env, now=self._clock(), accept_redelivery=same)
                if body.header.domain_id != domain_id:
                    raise VerificationError(
                        "malformed", f"envelope of domain {body.header.domain_id!r} served by {domain_id!r}"
                    )
                if body.header.tre_id != tre_id:
                    raise VerificationError("malformed", f"asked for {tre_id!r}, got {body.header.tre_id!r}")
            except VerificationError:
                self._envelopes.pop(domain_id, None)
                raise
            if not same:
                self.stats.envelopes_verified += 1
            self._envelopes[domain_id] = _Envelope(
                body=body,
                raw=env.body,
                signature=env.signature.signature,
                fetched_at=time.monotonic(),
                not_after=_seconds(body.header.not_after),
            )
            return body

    def _fresh_envelopes(self, path: Sequence[str]) -> list[envelope_pb2.EnvelopeBody] | None:
        """The cached verified bodies of a path when all are fresh (the common, await-free case)."""
        now_m, now = time.monotonic(), self._clock()
        out = []
        for d in path:
            c = self._envelopes.get(d)
            if c is None or now_m - c.fetched_at >= self.settings.envelope_refresh_s or now >= c.not_after:
                return None
            out.append(c.body)
        return out

    def _paths(self, source: str, target: str) -> list[tuple[str, ...]]:
        key = (source, target)
        paths = self._path_cache.get(key)
        if paths is None:
            paths = self._path_cache[key] = self.config.paths(source, target)
        return paths

    def forget_envelope(self, domain_id: str) -> None:
        """Drop a domain's cached envelope (the next use re-fetches and re-verifies it)."""
        self._envelopes.pop(domain_id, None)

    # ------------------------------------------------------------------ resolution

    def _access_for(self, tenant_id: str, access_domain: str = "") -> str:
        """The access domain of a request: the intent's ``access_domain`` if set (validated by
        :meth:`_parse_intent`), else the tenant's configured one, else :attr:`default_access`."""
        return access_domain or self._access.get(tenant_id, self.default_access)

    def _parse_intent(self, msg: services_pb2.Intent) -> IntentConfig:
        if not msg.tenant_id:
            raise InvalidArgument("intent.tenant_id: must not be empty")
        if len(msg.tenant_id) > 128:
            raise InvalidArgument("intent.tenant_id: must be at most 128 characters")
        if msg.access_domain and msg.access_domain not in self._domain_cfg:
            shown = msg.access_domain if len(msg.access_domain) <= 64 else msg.access_domain[:64] + "..."
            raise InvalidArgument(
                f"intent.access_domain(={shown!r}): unknown domain (domains: {', '.join(self._domain_cfg)})"
            )
        try:
            return intent_from_proto(msg)
        except InputError as exc:
            raise InvalidArgument(str(exc)) from None

    async def resolve(self, msg: services_pb2.Intent) -> services_pb2.ResolveIntentResponse:
        """``ResolveIntent``: ranked offers and the reasons other candidates failed. Reserves nothing."""
        intent = self._parse_intent(msg)
        offers, rejections = await self._offers(msg.tenant_id, intent, msg.access_domain)
        return services_pb2.ResolveIntentResponse(offers=offers[: self.settings.max_offers], rejections=rejections)

    async def _offers(
        self, tenant_id: str, intent: IntentConfig, access_domain: str = ""
    ) -> tuple[list[services_pb2.Offer], list[str]]:
        offers: list[services_pb2.Offer] = []
        rejections: list[str] = []
        models = [m for m in self.config.models if m.task == intent.task]
        if not models:
            tasks = sorted({m.task for m in self.config.models})
            return [], [f"no model in the catalogue for task {intent.task!r} (tasks: {', '.join(tasks)})"]
        access = self._access_for(tenant_id, access_domain)
        for m in models:
            if m.error_probability > intent.max_error_probability:
                rejections.append(
                    f"model {m.id!r}: error probability {m.error_probability:g} exceeds the intent's "
                    f"max_error_probability {intent.max_error_probability:g}"
                )
                continue
            paths = self._paths(access, m.compute_domain)
            if not paths:
                rejections.append(f"model {m.id!r}: no path from {access!r} to compute domain {m.compute_domain!r}")
                continue
            for path in paths:
                results: Sequence[envelope_pb2.EnvelopeBody | BaseException] | None = self._fresh_envelopes(path)
                if results is None:
                    results = await asyncio.gather(*(self.envelope(d) for d in path), return_exceptions=True)
                refused = next(((d, r) for d, r in zip(path, results) if isinstance(r, BaseException)), None)
                if refused is not None:
                    d, exc = refused
                    if isinstance(exc, VerificationError):
                        why = f"envelope refused ({exc.reason}{': ' + exc.detail if exc.detail else ''})"
                    elif isinstance(exc, DomainCallError):
                        why = f"unreachable ({exc.code.name}: {exc.details})"
                    else:
                        raise exc
                    rejections.append(f"model {m.id!r} via {_fmt_path(path)}: domain {d!r}: {why}")
                    continue
                bodies = cast(list[envelope_pb2.EnvelopeBody], list(results))  # none refused: all bodies
                plan = await self._plan(m, path, bodies, intent)
                if isinstance(plan, _Infeasible):
                    rejections.append(f"model {m.id!r} via {_fmt_path(path)}: {plan}")
                    continue
                if intent.max_price > 0 and plan.price_per_hour > intent.max_price:
                    rejections.append(
                        f"model {m.id!r} via {_fmt_path(path)}: price {plan.price_per_hour:.4g}/h exceeds "
                        f"max_price {intent.max_price:g}/h"
                    )
                    continue
                offers.append(plan)
        offers.sort(key=lambda o: (o.price_per_hour, o.bound.delay_s, o.offer_id))
        return offers, rejections

    async def _plan(
        self,
        model: ModelConfig,
        path: tuple[str, ...],
        bodies: Sequence[envelope_pb2.EnvelopeBody],
        intent: IntentConfig,
    ) -> services_pb2.Offer | _Infeasible:
        """The offer of one (model, path) for an intent, or why there is none (cached).

        A cache miss runs the calculus in a worker thread, so the event loop keeps serving;
        concurrent misses on the same key share one computation.
        """
        key = (
            model.id,
            path,
            tuple(b.header.sequence for b in bodies),
            intent.deadline_s,
            intent.epsilon,
            _traffic_key(intent.traffic),
        )
        hit = self._plans.get(key)
        if hit is not None:
            self._plans.move_to_end(key)
            self.stats.plan_cache_hits += 1
            return hit
        running = self._planning.get(key)
        if running is not None:
            return await asyncio.shield(running)

        def compute() -> services_pb2.Offer | _Infeasible:
            try:
                return self._compute_plan(model, path, bodies, intent, key)
            except _Infeasible as exc:
                return exc

        task = asyncio.ensure_future(asyncio.to_thread(compute))
        self._planning[key] = task
        try:
            result = await asyncio.shield(task)
        finally:
            self._planning.pop(key, None)
        self.stats.plans_computed += 1
        self._plans[key] = result
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return result

    def _compute_plan(
        self,
        model: ModelConfig,
        path: tuple[str, ...],
        bodies: Sequence[envelope_pb2.EnvelopeBody],
        intent: IntentConfig,
        key: tuple,
    ) -> services_pb2.Offer:
        from federation.calculus.compose import DomainSlice, EndToEndEnvelope, compose_path
        from federation.calculus.plan import plan_rates

        arrival = arrival_of(intent.traffic, request_size_bits=model.request_size_bits)
        burst = burst_of(intent.traffic)
        loss_keep = 1.0
        for b in bodies:
            g = b.guardrails
            d = b.header.domain_id
            if burst > g.max_burst_bits:
                raise _Infeasible(
                    f"domain {d!r}: burst {burst:g} bits exceeds guardrail max_burst_bits {g.max_burst_bits:g}"
                )
            loss_keep *= 1.0 - b.model.loss_probability
        loss = 1.0 - loss_keep
        eps_delay = intent.epsilon - loss - model.error_probability
        if not eps_delay > 0:
            raise _Infeasible(
                f"loss {loss:.3g} + model error {model.error_probability:g} leave no delay budget within "
                f"epsilon {intent.epsilon:g}"
            )

        def slices(rates: Sequence[float]) -> list:
            out = []
            for b, r in zip(bodies, rates):
                compute = b.header.kind == envelope_pb2.COMPUTE
                out.append(
                    DomainSlice(
                        domain_id=b.header.domain_id,
                        rate=float(r),
                        latency=b.model.latency_s + (model.latency.mean_s if compute else 0.0),
                        propagation_delay=b.model.propagation_delay_s,
                        service="exp" if b.model.service == envelope_pb2.EXPONENTIAL_SERVICE else "size",
                        loss_probability=b.model.loss_probability,
                        error_probability=model.error_probability if compute else 0.0,
                    )
                )
            return out

        max_rates = [b.guardrails.max_tenant_rate_bps for b in bodies]
        # plan_rates needs positive weights: a free domain weighs (almost) nothing.
        costs = [max(self._domain_cfg[d].price_per_mbps_hour / 1e6, 1e-15) for d in path]
        try:
            rates: Sequence[float] = plan_rates(
                slices(max_rates),
                arrival,
                delay=intent.deadline_s,
                epsilon=eps_delay,
                costs=costs,
                max_rates=max_rates,
            )
        except NoFiniteBound as exc:
            limiting = min(zip(max_rates, path))[1]
            raise _Infeasible(
                f"deadline {intent.deadline_s:g} s at epsilon_delay {eps_delay:.3g} is out of reach within the "
                f"domains' guardrail max_tenant_rate_bps (tightest: domain {limiting!r}, "
                f"{min(max_rates):g} bps): {exc.reason}"
            ) from None
        rates = [
            max(min(float(r), b.guardrails.max_tenant_rate_bps), b.guardrails.min_tenant_rate_bps)
            for r, b in zip(rates, bodies)
        ]
        for r, b in zip(rates, bodies):
            if r > b.guardrails.max_tenant_rate_bps * (1 + 1e-9):
                raise _Infeasible(
                    f"domain {b.header.domain_id!r}: needed rate {r:.4g} bps exceeds guardrail "
                    f"max_tenant_rate_bps {b.guardrails.max_tenant_rate_bps:g}"
                )
        # plan_rates sizes against the violation bound at the deadline; the composed delay bound
        # at epsilon may come out above it (optimiser tolerances, or terms the sizing ignores):
        # then scale the rates up by a common factor (capped at the guardrails), the smallest
        # that meets the deadline (small steps first, then a geometric search and bisection to 0.5 %).
        caps = [b.guardrails.max_tenant_rate_bps for b in bodies]

        def meets(factor: float) -> tuple[list[float], EndToEndEnvelope | None]:
            cand = [min(r * factor, cap) for r, cap in zip(rates, caps)]
            try:
                env = compose_path(slices(cand), arrival, epsilon=eps_delay)
            except NoFiniteBound:
                return cand, None
            return cand, (env if env.delay <= intent.deadline_s else None)

        cand, e2e = meets(1.0)
        if e2e is None:
            lo, hi = 1.0, None
            best: tuple[list[float], EndToEndEnvelope] | None = None
            ladder = [*_SCALE_FIRST, *(_SCALE_FIRST[-1] * _SCALE_GROWTH**k for k in range(1, _SCALE_STEPS + 1))]
            for factor in ladder:
                cand, e2e = meets(factor)
                if e2e is not None:
                    hi, best = factor, (cand, e2e)
                    break
                lo = factor
                if all(c >= cap for c, cap in zip(cand, caps)):
                    break
            if best is None or hi is None:  # set together
                limiting = min(zip(caps, path))[1]
                raise _Infeasible(
                    f"deadline {intent.deadline_s * 1e3:.3g} ms at epsilon_delay {eps_delay:.3g} is out of reach "
                    f"within the domains' guardrail max_tenant_rate_bps (tightest: domain {limiting!r}, "
                    f"{min(caps):g} bps)"
                )
            while hi / lo > 1.005:
                mid = math.sqrt(lo * hi)
                c2, e2 = meets(mid)
                if e2 is not None:
                    hi, best = mid, (c2, e2)
                else:
                    lo = mid
            cand, e2e = best
        rates = cand
        per_domain = {pd.domain_id: pd for pd in e2e.per_domain}
        budgets = []
        cost = model.price_per_hour
        for d, r, b in zip(path, rates, bodies):
            pd = per_domain[d]
            budgets.append(
                services_pb2.DomainBudget(
                    domain_id=d,
                    delay_s=float(pd.delay),
                    epsilon=float(pd.epsilon),
                    rate_bps=float(r),
                    tre_id=b.header.tre_id,
                    tre_sequence=b.header.sequence,
                )
            )
            cost += r / 1e6 * self._domain_cfg[d].price_per_mbps_hour
        theta = float(e2e.theta)
        bound = services_pb2.EndToEndBound(
            delay_s=float(e2e.delay),
            epsilon_delay=float(e2e.epsilon_delay),
            loss_probability=float(e2e.loss_probability),
            error_probability=float(e2e.error_probability),
            epsilon_total=float(e2e.epsilon_total),
            theta=theta,
            method=str(e2e.method),
        )
        offer_id = "of-" + hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        return services_pb2.Offer(
            offer_id=offer_id,
            model_id=model.id,
            compute_domain=model.compute_domain,
            path=list(path),
            bound=bound,
            budgets=budgets,
            price_per_hour=cost,
        )

    # ------------------------------------------------------------------ admission

    def _sem(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.settings.max_in_flight)
        return self._semaphore

    async def request_service(self, request: services_pb2.ServiceRequest) -> services_pb2.ServiceContract:
        """``RequestService``: admission control and a two-phase reservation (idempotent per request_id)."""
        if not request.HasField("intent"):
            raise InvalidArgument("intent: field required")
        intent = self._parse_intent(request.intent)
        if len(request.request_id) > 128:
            raise InvalidArgument("request_id: must be at most 128 characters")
        request_id = request.request_id or uuid.uuid4().hex
        fingerprint = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
        pending = self._requests.get(request_id)
        if pending is not None:
            if pending.fingerprint != fingerprint:
                raise AlreadyExists(f"request_id {request_id!r} was used for a different request")
            return await asyncio.shield(pending.future)
        # The admission runs as its own task: a client that gives up (deadline, disconnect)
        # cancels only its wait, never a two-phase reservation half-way; a retry with the same
        # request_id gets the outcome.
        task = asyncio.ensure_future(
            self._admit_once(request_id, request.intent.tenant_id, intent, request.offer_id, request.intent.access_domain)
        )
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._requests[request_id] = _Pending(fingerprint, task)
        return await asyncio.shield(task)

    async def _admit_once(
        self, request_id: str, tenant_id: str, intent: IntentConfig, offer_id: str, access_domain: str = ""
    ) -> services_pb2.ServiceContract:
        try:
            async with self._sem():
                contract = await self._admit(tenant_id, intent, offer_id, access_domain)
        except BaseException:
            self._requests.pop(request_id, None)  # a refused request may be retried afresh
            self.stats.rejected += 1
            raise
        self.stats.admitted += 1
        if len(self._requests) > _CONTRACT_HISTORY:
            for rid in list(self._requests)[: len(self._requests) // 10]:
                if self._requests[rid].future.done():
                    del self._requests[rid]
        return contract

    async def _admit(
        self, tenant_id: str, intent: IntentConfig, offer_id: str, access_domain: str = ""
    ) -> services_pb2.ServiceContract:
        offers, rejections = await self._offers(tenant_id, intent, access_domain)
        if offer_id:
            offers = [o for o in offers if o.offer_id == offer_id]
            if not offers:
                raise FailedPrecondition(
                    f"tenant {tenant_id!r}: offer {offer_id!r} is not (or no longer) available for this intent"
                )
        if not offers:
            raise FailedPrecondition(
                f"tenant {tenant_id!r}: no offer meets the intent: " + "; ".join(rejections or ["no candidate"])
            )
        failures: list[tuple[services_pb2.Offer, ServiceError]] = []
        for offer in offers[: self.settings.max_offers]:
            try:
                return await self._reserve(tenant_id, offer, burst_of(intent.traffic))
            except ServiceError as exc:
                failures.append((offer, exc))
        parts = [f"offer {o.model_id} via {_fmt_path(o.path)}: {e}" for o, e in failures]
        message = f"tenant {tenant_id!r} rejected: " + "; ".join(parts)
        kinds = {type(e) for _, e in failures}
        if ResourceExhausted in kinds:
            raise ResourceExhausted(message)
        if kinds == {Unavailable}:
            raise Unavailable(message)
        raise FailedPrecondition(message)

    async def _reserve(
        self, tenant_id: str, offer: services_pb2.Offer, burst: float
    ) -> services_pb2.ServiceContract:
        contract_id = "ct-" + uuid.uuid4().hex[:24]
        path = list(offer.path)
        rids = [f"{contract_id}.{d}" for d in path]
        hold = self.settings.hold_timeout_s
        prepares = []
        for d, rid, b in zip(path, rids, offer.budgets):
            req = reservation_pb2.PrepareRequest(
                request_id=f"{rid}:prepare",
                reservation=reservation_pb2.ReservationRequest(
                    reservation_id=rid,
                    tenant_id=tenant_id,
                    tre_id=b.tre_id,
                    rate_bps=b.rate_bps,
                    burst_bits=burst,
                    delay_budget_s=b.delay_s,
                    epsilon=b.epsilon,
                ),
                hold_timeout_s=hold,
            )
            prepares.append(self.domains[d].prepare(req))
        results = await asyncio.gather(*prepares, return_exceptions=True)
        failed = [(d, r) for d, r in zip(path, results) if isinstance(r, BaseException)]
        if failed:
            undo = [
                (d, rid)
                for d, rid, r in zip(path, rids, results)
                if not (isinstance(r, DomainCallError) and r.code in _DEFINITE)
            ]
            await self._undo(undo)
            raise self._rejection(failed, "prepare")
        commits = await asyncio.gather(
            *(
                self.domains[d].commit(reservation_pb2.CommitRequest(request_id=f"{rid}:commit", reservation_id=rid))
                for d, rid in zip(path, rids)
            ),
            return_exceptions=True,
        )
        failed = [(d, r) for d, r in zip(path, commits) if isinstance(r, BaseException)]
        grants: list[reservation_pb2.SignedGrant] = []
        if not failed:
            now = self._clock()
            signed = cast(list[reservation_pb2.SignedGrant], commits)  # none failed: all grants
            for d, rid, g, budget in zip(path, rids, signed, offer.budgets):
                try:
                    body = self.trust.verify_grant(g, now=now, expected_domain=d)
                    if body.reservation_id != rid or abs(body.rate_bps - budget.rate_bps) > 1e-6 * budget.rate_bps:
                        raise VerificationError("malformed", f"grant does not match reservation {rid!r}")
                except VerificationError as exc:
                    failed.append((d, exc))
                grants.append(g)
        if failed:
            await self._undo(list(zip(path, rids)))
            raise self._rejection(failed, "commit")
        contract = services_pb2.ServiceContract(
            contract_id=contract_id,
            tenant_id=tenant_id,
            offer=offer,
            grants=grants,
            created_at=_ts(self._clock()),
        )
        self._contracts[contract_id] = contract
        if len(self._contracts) > _CONTRACT_HISTORY:
            self._contracts.popitem(last=False)
        return contract

    @staticmethod
    def _rejection(failed: Sequence[tuple[str, BaseException]], phase: str) -> ServiceError:
        parts = []
        codes = set()
        for d, e in failed:
            if isinstance(e, DomainCallError):
                codes.add(e.code)
                # Domain messages already name the domain and the limit.
                parts.append(e.details if d in e.details else f"domain {d!r}: {e.details}")
            elif isinstance(e, VerificationError):
                codes.add(grpc.StatusCode.FAILED_PRECONDITION)
                parts.append(f"domain {d!r}: grant refused ({e})")
            else:
                codes.add(grpc.StatusCode.UNAVAILABLE)
                parts.append(f"domain {d!r}: {phase} failed ({type(e).__name__}: {e})")
        message = "; ".join(parts)
        if grpc.StatusCode.RESOURCE_EXHAUSTED in codes:
            return ResourceExhausted(message)
        if codes <= {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
                     grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.NOT_FOUND}:
            return FailedPrecondition(message)
        return Unavailable(f"{phase}: {message}")

    # ------------------------------------------------------------------ clean-up

    async def _undo_one(self, domain_id: str, rid: str) -> bool:
        """Abort (or, once committed, release) one reservation; True when settled."""
        client = self.domains[domain_id]
        try:
            await client.abort(reservation_pb2.AbortRequest(request_id=f"{rid}:abort", reservation_id=rid,
                                                             reason="two-phase reservation failed"))
            return True
        except DomainCallError as exc:
            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                return False
        try:
            await client.release(reservation_pb2.ReleaseRequest(request_id=f"{rid}:release", reservation_id=rid))
            return True
        except DomainCallError as exc:
            return exc.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)

    async def _undo(self, items: Sequence[tuple[str, str]]) -> None:
        done = await asyncio.gather(*(self._undo_one(d, rid) for d, rid in items))
        for (d, rid), ok in zip(items, done):
            if not ok:
                self._cleanup.setdefault((d, rid), time.monotonic())
        self.stats.cleanups_pending = len(self._cleanup)
        if self._cleanup and (self._cleanup_task is None or self._cleanup_task.done()):
            self._cleanup_task = asyncio.get_running_loop().create_task(self._cleanup_loop())

    async def _cleanup_loop(self, period_s: float = 0.5, horizon_s: float = 600.0) -> None:
        while self._cleanup:
            await asyncio.sleep(period_s)
            items = list(self._cleanup.items())
            settled = await asyncio.gather(*(self._undo_one(d, rid) for (d, rid), _ in items))
            for ((d, rid), first), ok in zip(items, settled):
                if ok or time.monotonic() - first > horizon_s:
                    self._cleanup.pop((d, rid), None)
            self.stats.cleanups_pending = len(self._cleanup)

    @property
    def pending_cleanups(self) -> int:
        """Reservations whose abort/release could not be delivered yet (retried in the background)."""
        return len(self._cleanup)

    # ------------------------------------------------------------------ contracts

    def _contract(self, contract_id: str) -> services_pb2.ServiceContract:
        if not contract_id:
            raise InvalidArgument("contract_id: must not be empty")
        contract = self._contracts.get(contract_id)
        if contract is None:
            raise NotFound(f"no contract {contract_id!r}")
        return contract

    def get_contract(self, request: services_pb2.GetContractRequest) -> services_pb2.ServiceContract:
        """``GetContract``."""
        return self._contract(request.contract_id)

    async def release_service(self, request: services_pb2.ReleaseServiceRequest) -> services_pb2.ReleaseServiceResponse:
        """``ReleaseService``: release the contract's reservation in every domain. Idempotent."""
        contract = self._contract(request.contract_id)
        if not contract.released:
            path = list(contract.offer.path)
            rids = [f"{contract.contract_id}.{d}" for d in path]
            results = await asyncio.gather(
                *(
                    self.domains[d].release(
                        reservation_pb2.ReleaseRequest(request_id=f"{rid}:release", reservation_id=rid)
                    )
                    for d, rid in zip(path, rids)
                ),
                return_exceptions=True,
            )
            failed = [
                (d, r) for d, r in zip(path, results)
                if isinstance(r, BaseException)
                and not (isinstance(r, DomainCallError) and r.code == grpc.StatusCode.FAILED_PRECONDITION)
            ]
            if failed:
                raise Unavailable(
                    f"contract {contract.contract_id!r} not fully released: "
                    + "; ".join(f"domain {d!r}: {e}" for d, e in failed)
                    + " (retry ReleaseService)"
                )
            contract.released = True
        return services_pb2.ReleaseServiceResponse(contract_id=contract.contract_id, released=True)

    async def domain_status(self, domain_id: str, include_reservations: bool = False) -> services_pb2.DomainStatus:
        """A domain's ``GetStatus`` (for tests and the runner)."""
        return await self.domains[domain_id].status(include_reservations)

    async def close(self) -> None:
        """Stop background clean-up and close every domain channel."""
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._cleanup_task
        for c in self.domains.values():
            await c.close()
