"""The AIaaS broker's transactions: catalogue, intent resolution, admission, two-phase reservations.

:class:`Broker` holds the logic as a plain class written against the small async
:class:`~agents.broker.client.DomainClient` interface (one per domain;
:class:`~agents.broker.client.GrpcDomainClient` speaks ``trefed.v1.DomainController`` over gRPC,
tests call real domain logic in-process). The planning it calls is pure
(:mod:`agents.broker.plan`), its envelopes come from :mod:`agents.broker.envelopes`;
:mod:`agents.broker.servicer` serves the broker as ``trefed.v1.Broker``; what it still owes the
domains (aborts of failed admissions, releases not yet confirmed) is settled by
:mod:`agents.broker.settle`, and what must survive a restart is kept in :mod:`agents.broker.store`.
What is left here (about 600 lines) is one transaction manager: resolution, admission and the
two-phase reservation share the plan cache and the request and contract books.

Resolution (``ResolveIntent``). For each catalogue model of the intent's task whose error
probability is within the intent and each path of the domain graph from the tenant's access
domain (the intent's ``access_domain``; if empty, the tenant's configured one, else the broker's
default; an unknown domain is INVALID_ARGUMENT) to the model's compute domain:

1. fetch every domain's Tail-Risk Envelope and verify it against the trust store (signature,
   key bound to the domain, ranges, validity window, monotone sequence). Verified envelopes are
   cached per domain and re-fetched every ``broker.envelope_refresh_s``; a byte-identical
   re-delivery is re-checked as such (validity window), a new sequence is verified afresh. The
   calculus only ever sees verified bodies;
2. plan the candidate (:func:`agents.broker.plan.plan_offer`): the fidelity budget split, the
   cost-minimising reserved rates meeting the deadline within the guardrails, the composed
   bound, the per-domain budgets and the price. Offers are ranked by price, then by bound.

A plan is cached per (model, path, envelope sequences, intent without tenant)
(:func:`agents.broker.plan.plan_key`): an admission that hits the cache costs no calculus.

Admission (``RequestService``): the best offer (or the one named) is reserved in every domain
of its path by a two-phase transaction: ``Prepare`` everywhere concurrently (each with
``broker.rpc_timeout_s`` and a hold of ``broker.hold_timeout_s``); any failure aborts every hold
whose outcome is not a definite refusal (:data:`~agents.broker.client.DEFINITE_REFUSALS`); then
``Commit`` everywhere, whose signed grants are verified against the trust store. A failed commit
releases (or aborts) everything again. Clean-up calls that cannot reach a domain are retried in
the background until they succeed (a crashed domain's holds expire by themselves; a commit that
landed before a crash is released once the domain is back). Every admission is recorded in the
store before its first Prepare, so a broker killed half-way undoes it when restarted
(:meth:`Broker.recover`). If the best offer is refused the
next offers are tried, at most ``broker.max_offers``. Rejections name the domain and the limit:
capacity is ``RESOURCE_EXHAUSTED``, guardrails and unmet intents ``FAILED_PRECONDITION``,
unreachable domains ``UNAVAILABLE``, malformed requests ``INVALID_ARGUMENT``.

Retention. Released contracts and answered request ids are deleted ``broker.retention_s`` after
their release / answer (:meth:`agents.broker.store.BrokerStore.prune`), at most
``RETENTION_CHUNK`` of each at a time, at most once per ``PRUNE_PERIOD_S`` of monotonic time,
after an admission or a release (an idle broker writes nothing, so it has nothing to prune).

Units: seconds, bits, bits/s; prices per hour.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import grpc
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2

from agents.broker.client import DEFINITE_REFUSALS, DomainCallError, DomainClient
from agents.broker.envelopes import EnvelopeCache
from agents.broker.plan import Infeasible, burst_of, check_physical, plan_key, plan_offer
from agents.broker.settle import Settlement
from agents.broker.store import BrokerStore
from agents.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from federation.config import FederationConfig, IntentConfig, ModelConfig, intent_from_proto
from federation.errors import InputError, VerificationError
from federation.tre.signing import Reason
from federation.tre.trust import TrustStore
from federation.tre.validate import timestamp_from_seconds

__all__ = ["Broker", "BrokerStats", "TrustEntry"]

_log = logging.getLogger(__name__)

_PLAN_CACHE_SIZE = 4096
#: Contracts kept in memory, the most recently used (every contract is in the store): about 8 kB
#: of RSS each (a ServiceContract with its grants), so 4096 is ~30 MB.
_CONTRACT_CACHE = 4096
RETENTION_CHUNK = 500  # most contracts (and request ids) one prune deletes
PRUNE_PERIOD_S = 0.5  # least monotonic time between two prunes, s (at most 1 000 rows/s of each)
_INTENT_CACHE_SIZE = 1024
#: Fields of the wire Intent that ``intent_from_proto`` does not read (the intent cache's key omits them).
_NOT_INTENT_FIELDS = tuple(f.name for f in services_pb2.Intent.DESCRIPTOR.fields if f.name not in IntentConfig.model_fields)


@dataclass(frozen=True)
class TrustEntry:
    """One trusted public key: ``key_id`` signs for ``domain_id`` (raw 32-byte Ed25519 key)."""

    key_id: str
    domain_id: str
    public_key: bytes


# ---------------------------------------------------------------------------- helpers


@dataclass
class _Pending:
    """A ``RequestService`` in flight (one that ended with a contract is in the store's requests)."""

    fingerprint: bytes
    future: asyncio.Future


@dataclass
class BrokerStats:
    """The broker's running counters (:attr:`Broker.stats`; live, updated as the broker works)."""

    admitted: int = 0  # admissions that ended with a contract
    rejected: int = 0  # admissions that ended without one
    plans_computed: int = 0  # plan cache misses (calculus runs)
    plan_cache_hits: int = 0
    cleanups_pending: int = 0  # undelivered aborts/releases, retried in the background


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
        Unix time, s: validity windows of envelopes and grants, contract times.
    monotonic : callable
        Monotonic time, s: envelope refresh, clean-up retries. Both injectable for tests.
    """

    def __init__(
        self,
        config: FederationConfig,
        domains: Mapping[str, DomainClient],
        trust: TrustStore | Iterable[TrustEntry],
        *,
        default_access: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        store: BrokerStore | None = None,
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
        self._monotonic = monotonic
        self._access = {t.id: t.access for t in config.tenants}
        if default_access is None:
            if config.tenants:
                default_access = config.tenants[0].access
            else:
                default_access = next((d.id for d in config.domains if d.kind == "network"), config.domains[0].id)
        self.default_access = default_access
        self._domain_cfg = {d.id: d for d in config.domains}
        self.envelopes = EnvelopeCache(
            self.domains, {d.id: d.service_class for d in config.domains}, self.trust,
            refresh_s=self.settings.envelope_refresh_s, clock=clock, monotonic=monotonic,
        )
        self._path_cache: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        self._plans: OrderedDict[tuple, services_pb2.Offer | Infeasible] = OrderedDict()
        self._intents: OrderedDict[bytes, IntentConfig] = OrderedDict()  # checked intents (frozen)
        self._planning: dict[tuple, asyncio.Future] = {}
        self._contracts: OrderedDict[str, services_pb2.ServiceContract] = OrderedDict()
        self._requests: dict[str, _Pending] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self.store = store if store is not None else BrokerStore(clock=clock)
        self.stats = BrokerStats()
        self._pruned_at = -math.inf  # monotonic s of the last prune
        self.settle = Settlement(self.domains, self.store, self.stats, self._stored_contract, monotonic=monotonic)

    # ------------------------------------------------------------------ catalogue

    def list_models(self, request: services_pb2.ListModelsRequest) -> services_pb2.ListModelsResponse:
        """The catalogue, optionally filtered by task."""
        models = [m.to_proto() for m in self.config.models if not request.task or m.task == request.task]
        return services_pb2.ListModelsResponse(models=models)

    # ------------------------------------------------------------------ envelopes

    async def envelope(self, domain_id: str) -> envelope_pb2.EnvelopeBody:
        """The verified envelope body of a domain (cached; see :mod:`agents.broker.envelopes`).

        Raises
        ------
        VerificationError
            The envelope was refused (the cache entry is dropped).
        DomainCallError
            The domain cannot be reached.
        """
        return await self.envelopes.get(domain_id)

    def _paths(self, source: str, target: str) -> list[tuple[str, ...]]:
        key = (source, target)
        paths = self._path_cache.get(key)
        if paths is None:
            paths = self._path_cache[key] = self.config.paths(source, target)
        return paths

    def forget_envelope(self, domain_id: str) -> None:
        """Drop a domain's cached envelope (the next use re-fetches and re-verifies it)."""
        self.envelopes.forget(domain_id)

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
        # The checked intent is cached by the bytes of the fields it is made of (not the tenant's
        # id nor its access domain), so a repeated intent is not validated again.
        key_msg = services_pb2.Intent()
        key_msg.CopyFrom(msg)
        for name in _NOT_INTENT_FIELDS:
            key_msg.ClearField(name)
        key = key_msg.SerializeToString(deterministic=True)
        intent = self._intents.get(key)
        if intent is not None:
            self._intents.move_to_end(key)
            return intent
        try:
            intent = intent_from_proto(msg)
            check_physical(intent)
        except InputError as exc:
            raise InvalidArgument(str(exc)) from None
        self._intents[key] = intent
        if len(self._intents) > _INTENT_CACHE_SIZE:
            self._intents.popitem(last=False)
        return intent

    async def resolve(self, msg: services_pb2.Intent) -> services_pb2.ResolveIntentResponse:
        """``ResolveIntent``: ranked offers and the reasons other candidates failed. Reserves nothing."""
        intent = self._parse_intent(msg)
        offers, rejections, _ = await self._offers(msg.tenant_id, intent, msg.access_domain)
        return services_pb2.ResolveIntentResponse(offers=offers[: self.settings.max_offers], rejections=rejections)

    async def _offers(
        self, tenant_id: str, intent: IntentConfig, access_domain: str = ""
    ) -> tuple[list[services_pb2.Offer], list[str], bool]:
        """(ranked offers, why the other candidates failed, whether a candidate failed only because
        a domain could not be reached -- then "no offer" is not an answer, the domain may be back)."""
        offers: list[services_pb2.Offer] = []
        rejections: list[str] = []
        unreachable = False
        models = [m for m in self.config.models if m.task == intent.task]
        if not models:
            tasks = sorted({m.task for m in self.config.models})
            return [], [f"no model in the catalogue for task {intent.task!r} (tasks: {', '.join(tasks)})"], False
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
                results: Sequence[envelope_pb2.EnvelopeBody | BaseException] | None = self.envelopes.fresh(path)
                if results is None:
                    results = await asyncio.gather(*(self.envelope(d) for d in path), return_exceptions=True)
                refused = next(((d, r) for d, r in zip(path, results) if isinstance(r, BaseException)), None)
                if refused is not None:
                    d, exc = refused
                    if isinstance(exc, VerificationError):
                        why = f"envelope refused ({exc.reason}{': ' + exc.detail if exc.detail else ''})"
                    elif isinstance(exc, DomainCallError):
                        why = f"unreachable ({exc.code.name}: {exc.details})"
                        unreachable = True
                    else:
                        raise exc
                    rejections.append(f"model {m.id!r} via {_fmt_path(path)}: domain {d!r}: {why}")
                    continue
                bodies = cast(list[envelope_pb2.EnvelopeBody], list(results))  # none refused: all bodies
                plan = await self._plan(m, path, bodies, intent)
                if isinstance(plan, Infeasible):
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
        return offers, rejections, unreachable

    async def _plan(
        self,
        model: ModelConfig,
        path: tuple[str, ...],
        bodies: Sequence[envelope_pb2.EnvelopeBody],
        intent: IntentConfig,
    ) -> services_pb2.Offer | Infeasible:
        """The offer of one (model, path) for an intent, or why there is none (cached).

        A cache miss runs the calculus in a worker thread, so the event loop keeps serving;
        concurrent misses on the same key share one computation.
        """
        key = plan_key(model, path, bodies, intent)
        hit = self._plans.get(key)
        if hit is not None:
            self._plans.move_to_end(key)
            self.stats.plan_cache_hits += 1
            return hit
        running = self._planning.get(key)
        if running is not None:
            return await asyncio.shield(running)

        prices = [self._domain_cfg[d].price_per_mbps_hour for d in path]

        def compute() -> services_pb2.Offer | Infeasible:
            try:
                return plan_offer(model, path, bodies, intent, prices, self.settings.admission)
            except Infeasible as exc:
                return exc
            except (ArithmeticError, ValueError) as exc:  # a numeric failure on in-range input: its input's fault
                raise InvalidArgument(f"intent: the calculus cannot plan model {model.id!r} on path "
                                      f"{_fmt_path(path)} for it ({type(exc).__name__}: {exc})") from exc

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
        answered = self.store.request(request_id)
        if answered is not None:
            if answered[0] != fingerprint:
                raise AlreadyExists(f"request_id {request_id!r} was used for a different request")
            return self._contract(answered[1])
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
        entry = self._requests.pop(request_id, None)  # from now on a retry is answered from the store
        if entry is not None:
            self.store.put_request(request_id, entry.fingerprint, contract.contract_id)
        self.prune()
        return contract

    def prune(self, *, force: bool = False) -> int:
        """Delete released contracts and answered request ids past ``broker.retention_s`` (at most
        ``RETENTION_CHUNK`` of each), unless the last prune was less than ``PRUNE_PERIOD_S`` ago
        (``force``: regardless); return the number of rows deleted."""
        now = self._monotonic()
        if not force and now - self._pruned_at < PRUNE_PERIOD_S:
            return 0
        self._pruned_at = now
        gone, requests = self.store.prune(self.settings.retention_s, RETENTION_CHUNK)
        for cid in gone:
            self._contracts.pop(cid, None)
        return len(gone) + requests

    async def _admit(
        self, tenant_id: str, intent: IntentConfig, offer_id: str, access_domain: str = ""
    ) -> services_pb2.ServiceContract:
        offers, rejections, unreachable = await self._offers(tenant_id, intent, access_domain)
        if offer_id:
            offers = [o for o in offers if o.offer_id == offer_id]
            if not offers:
                raise FailedPrecondition(
                    f"tenant {tenant_id!r}: offer {offer_id!r} is not (or no longer) available for this intent"
                )
        if not offers:
            # A candidate lost to an unreachable domain is no answer: UNAVAILABLE, retry later.
            error = Unavailable if unreachable else FailedPrecondition
            raise error(
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
        self.store.begin_admission(contract_id, path, self._clock())  # a restarted broker undoes it
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
                if not (isinstance(r, DomainCallError) and r.code in DEFINITE_REFUSALS)
            ]
            await self.settle.undo(undo)
            self.store.end_admission(contract_id)
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
                    body = self.trust.verify_grant(g, now=now, expected_domain=d, expected_tenant=tenant_id)
                    if body.reservation_id != rid or abs(body.rate_bps - budget.rate_bps) > 1e-6 * budget.rate_bps:
                        raise VerificationError(Reason.MALFORMED, f"grant does not match reservation {rid!r}")
                except VerificationError as exc:
                    failed.append((d, exc))
                grants.append(g)
        if failed:
            await self.settle.undo(list(zip(path, rids)))
            self.store.end_admission(contract_id)
            raise self._rejection(failed, "commit")
        contract = services_pb2.ServiceContract(
            contract_id=contract_id,
            tenant_id=tenant_id,
            offer=offer,
            grants=grants,
            created_at=timestamp_from_seconds(self._clock()),
        )
        self.store.put_contract(contract)
        self._contracts[contract_id] = contract
        if len(self._contracts) > _CONTRACT_CACHE:
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
        if codes <= DEFINITE_REFUSALS:  # refusals other than capacity
            return FailedPrecondition(message)
        return Unavailable(f"{phase}: {message}")

    # ------------------------------------------------------------------ clean-up (agents.broker.settle)

    async def retry_cleanups(self, horizon_s: float = 600.0) -> int:
        """Retry every undelivered abort/release once, now; return how many are still pending
        (see :meth:`agents.broker.settle.Settlement.retry`)."""
        return await self.settle.retry(horizon_s)

    @property
    def pending_cleanups(self) -> int:
        """Reservations whose abort/release could not be delivered yet (retried in the background)."""
        return self.settle.pending

    def recover(self) -> int:
        """After a restart on the same store: see :meth:`agents.broker.settle.Settlement.recover`."""
        return self.settle.recover()

    # ------------------------------------------------------------------ contracts

    def _contract(self, contract_id: str) -> services_pb2.ServiceContract:
        if not contract_id:
            raise InvalidArgument("contract_id: must not be empty")
        contract = self._contracts.get(contract_id)
        if contract is None:
            contract = self.store.contract(contract_id)  # an older one, or one from before a restart
            if contract is None:
                raise NotFound(f"no contract {contract_id!r}")
            self._contracts[contract_id] = contract
            if len(self._contracts) > _CONTRACT_CACHE:
                self._contracts.popitem(last=False)
        return contract

    def _stored_contract(self, contract_id: str) -> services_pb2.ServiceContract | None:
        return self._contracts.get(contract_id) or self.store.contract(contract_id)

    def get_contract(self, request: services_pb2.GetContractRequest) -> services_pb2.ServiceContract:
        """``GetContract``."""
        return self._contract(request.contract_id)

    async def release_service(self, request: services_pb2.ReleaseServiceRequest) -> services_pb2.ReleaseServiceResponse:
        """``ReleaseService``: release the contract's reservation in every domain. Idempotent.

        A domain that cannot be reached is retried in the background until it confirms; until
        then the contract reads ``releasing`` and the call answers UNAVAILABLE naming it.
        """
        contract = self._contract(request.contract_id)
        if not contract.released:
            failed = await self.settle.release(contract)
            if failed:
                self.settle.start()
                raise Unavailable(
                    f"contract {contract.contract_id!r} not fully released: "
                    + "; ".join(f"domain {d!r}: {e}" for d, e in failed)
                    + " (retried in the background; the contract reads releasing until every domain confirms)"
                )
        self.prune()
        return services_pb2.ReleaseServiceResponse(contract_id=contract.contract_id, released=True)

    async def domain_status(self, domain_id: str, include_reservations: bool = False) -> services_pb2.DomainStatus:
        """A domain's ``GetStatus`` (for tests and the runner)."""
        return await self.domains[domain_id].status(include_reservations)

    async def close(self) -> None:
        """Stop background clean-up and close every domain channel."""
        await self.settle.close()
        for c in self.domains.values():
            await c.close()
