"""The logic of a domain controller, without sockets: the two-phase reservation protocol against
the domain's guardrails, and the calls that serve its signed envelope.

:class:`DomainService` takes and returns ``trefed.v1`` messages and raises the
:mod:`agents.errors` classes, so the gRPC servicer in :mod:`agents.domain.servicer` only forwards
calls; unit tests drive it directly with an injected clock. Its parts live beside it: the exact
capacity books in :mod:`agents.domain.books`, the envelope's signing and re-signing in
:mod:`agents.domain.publication`, the durable table in :mod:`agents.domain.store`. What is left
here (about 600 lines) is one state machine: Prepare, Commit, Abort, Release and Batch share the
in-memory view, the books, the deadline heap and the idempotency log, and each call's checks
and writes must stay together to run atomically.

Reservation life cycle::

    Prepare ──> PREPARED ──Commit──> COMMITTED ──Release──> RELEASED
                   │  └──Abort──> ABORTED
                   └──hold_timeout_s elapses──> EXPIRED

Rules
-----
* **Capacity.** ``committed + prepared(unexpired) <= reservable_capacity_bps`` at all times. The
  check and the write of one call run without yielding to the event loop, so concurrent calls
  are serialized and can never overbook. Lacking capacity -> RESOURCE_EXHAUSTED, e.g.
  ``domain 'transport': reservable capacity 1e+08 bps exceeded (committed 9e+07, prepared 0, asked 2e+07)``.
* **Per-tenant guardrails** -> FAILED_PRECONDITION naming the guardrail: ``rate_bps`` below
  ``min_tenant_rate_bps``; a tenant's held (committed + prepared) rate plus the asked rate above
  ``max_tenant_rate_bps``; ``burst_bits`` above ``max_burst_bits``.
* **Malformed requests** -> INVALID_ARGUMENT naming the field: empty ``request_id``,
  ``reservation_id`` or ``tenant_id``; ``rate_bps`` not finite and > 0; ``burst_bits`` not
  finite and >= 0; ``delay_budget_s`` not finite and > 0; ``epsilon`` not in (0, 1);
  ``hold_timeout_s`` not in (0, max_hold_s]. An unknown ``tre_id`` -> NOT_FOUND (empty: the
  domain's default class).
* **Idempotency.** Each successful response is logged under ``(method, request_id)`` with a
  digest of the request, in the same transaction as the state change. A retry with the same
  request returns the logged response verbatim. Reusing a ``request_id`` of the same method for
  a *different* request -> FAILED_PRECONDITION (the request is well-formed; the server's log
  forbids it). Failed calls are not logged: a retry is evaluated afresh, so it has its effect
  at most once. The same ``request_id`` may be used by different methods (e.g. Prepare and
  Commit of one reservation). Logged responses are pruned after ``idempotency_ttl_s``.
* **Prepare** of a ``reservation_id`` that exists: identical reservation, still PREPARED or
  COMMITTED -> its current state (a retry under a new request id); different reservation ->
  ALREADY_EXISTS; a terminal one (ABORTED, EXPIRED, RELEASED) -> FAILED_PRECONDITION.
* **Commit** of PREPARED -> COMMITTED with a signed grant (``GrantBody``: tre_sequence, d_i,
  eps_i, ``not_after`` = the envelope's); of COMMITTED -> its grant (re-signed with the next
  grant sequence if it lapsed); of EXPIRED / ABORTED / RELEASED -> FAILED_PRECONDITION saying
  so; unknown -> NOT_FOUND.
* **Abort** of PREPARED -> ABORTED; of a terminal reservation -> that state; of COMMITTED ->
  FAILED_PRECONDITION (release it); of an unknown id -> ABORTED, recorded as a tombstone so a
  Prepare that arrives after its coordinator gave up is refused (presumed abort). A tombstone
  lives ``max_hold_s`` (a Prepare later than the longest hold would have lapsed anyway) and is
  then deleted by the sweep, so aborts of unknown ids leave no permanent rows.
* **Retention.** The sweep deletes finished reservations (ABORTED, EXPIRED, RELEASED) last
  updated more than ``retention_s`` ago, and logged responses older than the smaller of
  ``idempotency_ttl_s`` and ``retention_s``, at most ``RETENTION_CHUNK`` rows of each per sweep
  (no long write lock). PREPARED and COMMITTED reservations are never deleted. ``retention_s`` is
  at least ``max_hold_s``: a Prepare retried after its hold lapsed still finds its EXPIRED row and
  is refused. Past the horizon a retried Release of a released reservation answers NOT_FOUND (the
  broker counts that as released) and GetStatus no longer lists it.
* **Release** of COMMITTED -> RELEASED; of RELEASED -> RELEASED; of PREPARED, ABORTED, EXPIRED
  -> FAILED_PRECONDITION; unknown -> NOT_FOUND.
* **Expiry** is applied lazily at the start of every call and by :meth:`DomainService.sweep`,
  which the agent runs periodically, so held capacity returns even if nobody calls.
* **Books.** The capacity in use (committed, prepared) and each tenant's held rate are exact
  running sums (:mod:`agents.domain.books`), updated with every state change, so a call costs
  O(1) whatever the table's size; PREPARED deadlines sit in a heap, so expiry costs O(log n) per
  lapsed hold.
* **Batch** runs Prepare / Commit / Abort / Release items in order, each exactly as its single
  call (its own idempotency and checks; a failing item gets its own status code and changes
  nothing), and persists all of them in one SQLite transaction before answering: one commit
  (one WAL append) for many reservations. More than ``MAX_BATCH`` items -> INVALID_ARGUMENT.
* **Envelope.** The template is signed with the next persisted sequence at start-up (strictly
  increasing across restarts), valid for ``validity_s``; it is re-signed with the next sequence
  once less than half its validity is left (:mod:`agents.domain.publication`).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from google.protobuf.message import Message
from trefed.v1 import envelope_pb2, reservation_pb2, services_pb2

from agents.domain.books import Books, CapacityUsage
from agents.domain.publication import EnvelopePublisher
from agents.domain.store import ReservationRecord, ReservationStore
from agents.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    invalid_argument,
    status_code_for,
)
from federation.errors import ConfigError, TrefedError
from federation.tre.signing import SigningKey, sign_grant
from federation.tre.validate import MAX_HOLD_S, format_rfc3339, seconds_from_timestamp, timestamp_from_seconds

__all__ = ["DomainService", "MAX_BATCH", "RETENTION_CHUNK", "RETENTION_S", "STATE_NAMES", "check_retention"]

PREPARED = reservation_pb2.PREPARED
COMMITTED = reservation_pb2.COMMITTED
ABORTED = reservation_pb2.ABORTED
EXPIRED = reservation_pb2.EXPIRED
RELEASED = reservation_pb2.RELEASED
STATE_NAMES: dict[int, str] = {v: k for k, v in reservation_pb2.ReservationState.items()}
_TERMINAL = (ABORTED, EXPIRED, RELEASED)
_INVALID_ARGUMENT = 3  # grpc.StatusCode.INVALID_ARGUMENT
_INTERNAL = 13  # grpc.StatusCode.INTERNAL

# Relative slack of the capacity comparison, so that reservations summing exactly to the
# capacity are not refused for floating-point rounding (1e-9 of 1e9 bps is 1 bps).
_CAPACITY_RTOL = 1e-9
_MAX_ID_LEN = 256

#: Most items one Batch call may carry.
MAX_BATCH = 256

RETENTION_S = 7 * 86400.0
"""Default retention of finished reservations, s (7 days; ``broker.retention_s`` sets it in a federation)."""

RETENTION_CHUNK = 500
"""Most rows of each table one sweep deletes (4 sweeps/s by default: 2 000 rows/s, far above the
~3 rows per admission a domain writes at a few hundred admissions/s)."""


def check_retention(retention_s: float, max_hold_s: float) -> None:
    """Raise ``ConfigError`` naming ``retention_s`` unless it is finite and >= ``max_hold_s`` (s)."""
    if not (isinstance(retention_s, (int, float)) and math.isfinite(retention_s) and retention_s >= max_hold_s):
        raise ConfigError(f"retention_s(={retention_s!r}) must be finite and >= max_hold_s(={max_hold_s!r}): "
                          "a finished reservation must outlive any retry of its Prepare")


def _digest(message: Message) -> bytes:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).digest()


def _check_id(field: str, value: str) -> None:
    if not value:
        raise invalid_argument(field, value, "must not be empty")
    if len(value) > _MAX_ID_LEN:
        raise invalid_argument(field, value[:32] + "...", f"must be at most {_MAX_ID_LEN} characters")


def _check_finite(field: str, value: float, low: float, *, low_open: bool, high: float = math.inf,
                  high_open: bool = True) -> None:
    ok = math.isfinite(value) and (value > low if low_open else value >= low)
    if ok and math.isfinite(high):
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open or not math.isfinite(high) else "]"
        hi_text = "inf" if not math.isfinite(high) else f"{high:g}"
        raise invalid_argument(field, value, f"must be finite and in {lo}{low:g}, {hi_text}{hi}")


class DomainService:
    """Envelope publication and reservations of one domain (see the module docstring).

    Parameters
    ----------
    template : EnvelopeBody
        The domain's envelope without sequence, times and key id (``header.domain_id``,
        ``tre_id``, ``kind``, ``guardrails``, ``model`` filled). ``header.domain_id`` must be
        ``key.domain_id``.
    key : SigningKey
        The domain's signing key.
    store : ReservationStore
        Durable state; on construction the active reservations are loaded from it and PREPARED
        holds whose timeout passed are marked EXPIRED.
    validity_s : float
        Validity window of each signed envelope, s, > 0.
    clock : callable
        Returns the current Unix time, s (default :func:`time.time`); injectable for tests.
    max_hold_s : float
        Largest ``hold_timeout_s`` a Prepare may ask for, s.
    idempotency_ttl_s : float
        How long successful responses are kept for retries, s.
    retention_s : float
        How long finished reservations (and, at most, logged responses) are kept after their last
        change, s, >= ``max_hold_s`` (default 7 days).
    status_history : int
        How many ended (ABORTED, EXPIRED, RELEASED) reservations GetStatus lists at most.

    Raises
    ------
    InputError
        (``ConfigError`` or a subclass) if the template is out of range or names another domain.
    """

    def __init__(
        self,
        template: envelope_pb2.EnvelopeBody,
        key: SigningKey,
        store: ReservationStore,
        *,
        validity_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        max_hold_s: float = MAX_HOLD_S,
        idempotency_ttl_s: float = 86400.0,
        retention_s: float = RETENTION_S,
        status_history: int = 1000,
    ) -> None:
        if not (math.isfinite(max_hold_s) and max_hold_s > 0):
            raise ConfigError(f"max_hold_s(={max_hold_s!r}) must be finite and > 0")
        check_retention(retention_s, max_hold_s)
        self.retention_s = float(retention_s)
        self._key = key
        self._store = store
        self._clock = clock
        self.max_hold_s = float(max_hold_s)
        self.idempotency_ttl_s = float(idempotency_ttl_s)
        self.status_history = int(status_history)
        self.domain_id = key.domain_id
        self.tre_id = template.header.tre_id
        now = clock()
        self._active: dict[str, ReservationRecord] = {}
        self._books = Books()
        self._deadlines: list[tuple[float, str]] = []  # heap of (expires_at, id) of PREPARED holds
        self._reload()
        self._publisher = EnvelopePublisher(template, key, store, validity_s=validity_s, now=now)
        self.validity_s = self._publisher.validity_s
        self.guardrails = type(template.guardrails)()
        self.guardrails.CopyFrom(self._publisher.template.guardrails)  # a republished one survives restarts
        self._expire(now)

    # ------------------------------------------------------------------ envelope

    @property
    def envelope(self) -> envelope_pb2.TailRiskEnvelope:
        """The current signed envelope."""
        return self._publisher.envelope

    @property
    def envelope_sequence(self) -> int:
        """Sequence number of the current envelope."""
        return self._publisher.sequence

    def get_envelope(self, request: services_pb2.GetEnvelopeRequest) -> envelope_pb2.TailRiskEnvelope:
        """The signed envelope of ``request.tre_id`` (empty: the default class); NOT_FOUND otherwise,
        FAILED_PRECONDITION while it is revoked."""
        now = self._clock()
        self._tick(now)
        self._check_tre(request.tre_id)
        self._check_published()
        return self._publisher.envelope

    @property
    def revoked(self) -> bool:
        """Whether the envelope is revoked (:meth:`revoke`)."""
        return self._publisher.revoked

    def republish(self, template: envelope_pb2.EnvelopeBody) -> int:
        """Publish ``template`` (same domain and service class; e.g. other guardrails) with the next
        sequence and admit new reservations on its guardrails; granted ones keep their rates.
        Lifts a revocation. Returns the new sequence; ``ConfigError`` naming the field otherwise."""
        self._publisher.republish(template, self._clock())
        self.guardrails.CopyFrom(self._publisher.template.guardrails)
        return self._publisher.sequence

    def revoke(self) -> None:
        """Withdraw the envelope: GetEnvelope and Prepare answer FAILED_PRECONDITION until the next
        :meth:`republish`; granted reservations stand (Commit, Release and Abort still work)."""
        self._publisher.revoke()

    def _check_published(self) -> None:
        if self._publisher.revoked:
            raise FailedPrecondition(
                f"domain {self.domain_id!r} has revoked its envelope {self.tre_id!r} (sequence "
                f"{self._publisher.sequence}): it admits no new reservations until it republishes"
            )

    def _check_tre(self, tre_id: str) -> str:
        if tre_id and tre_id != self.tre_id:
            raise NotFound(f"domain {self.domain_id!r} has no service class {tre_id!r} (it serves {self.tre_id!r})")
        return self.tre_id

    # ------------------------------------------------------------------ bookkeeping

    def _tick(self, now: float) -> None:
        self._expire(now)
        self._publisher.refresh(now)

    def _expire(self, now: float) -> list[str]:
        heap = self._deadlines
        if not heap or heap[0][0] > now:
            return []
        due = []
        while heap and heap[0][0] <= now:
            _, rid = heapq.heappop(heap)
            record = self._active.get(rid)
            # Entries of holds that were committed or aborted since are stale: skip them.
            if record is not None and record.state == PREPARED and record.expires_at <= now:
                due.append(rid)
        if not due:
            return []
        with self._write():
            expired = self._store.expire_prepared(now)
        for rid in {*expired, *due}:
            self._deactivate(rid)
        return expired

    def sweep(self) -> int:
        """Expire lapsed holds, refresh the envelope and prune the idempotency log; return the
        number of holds expired. The agent calls it every ``sweep_interval_s``."""
        now = self._clock()
        expired = self._expire(now)
        self._publisher.refresh(now)
        with self._store.transaction():
            self._store.prune_responses(now - min(self.idempotency_ttl_s, self.retention_s), RETENTION_CHUNK)
            self._store.prune_tombstones(now - self.max_hold_s)
            self._store.prune_finished(now - self.retention_s, RETENTION_CHUNK)
        return len(expired)

    def usage(self) -> CapacityUsage:
        """Capacity use now (expiring lapsed holds first)."""
        self._expire(self._clock())
        return self._usage()

    def _usage(self) -> CapacityUsage:
        return self._books.usage(self.guardrails.reservable_capacity_bps)

    def tenant_held(self, tenant_id: str) -> float:
        """Rate held by a tenant now (committed + unexpired prepared), bits/s."""
        self._expire(self._clock())
        return self._books.tenant_held(tenant_id)

    def reservation(self, reservation_id: str) -> ReservationRecord | None:
        """The current row of a reservation, or None."""
        self._expire(self._clock())
        return self._active.get(reservation_id) or self._store.get(reservation_id)

    def _replay(self, method: str, request_id: str, digest: bytes, cls: type[Message]) -> Message | None:
        stored = self._store.get_response(method, request_id)
        if stored is None:
            return None
        if stored.fingerprint != digest:
            raise FailedPrecondition(
                f"domain {self.domain_id!r}: request_id {request_id!r} was already used for a different "
                f"{method} request"
            )
        return cls.FromString(stored.response)

    def _log(self, method: str, request_id: str, digest: bytes, response: Message, now: float) -> None:
        self._store.put_response(method, request_id, digest, response.SerializeToString(), now)

    def _save(self, record: ReservationRecord) -> None:
        self._store.put(record)
        self._deactivate(record.reservation_id)
        if record.state in (PREPARED, COMMITTED):
            self._activate(record)

    @contextmanager
    def _write(self) -> Iterator[None]:
        """A store transaction whose failure also resets the in-memory view and the books from
        the store (which rolled back), so memory never runs ahead of the table."""
        try:
            with self._store.transaction():
                yield
        except BaseException:
            self._reload()
            raise

    def _reload(self) -> None:
        """Rebuild the in-memory view, the books and the deadline heap from the store."""
        self._active = {}
        self._books = Books()
        self._deadlines = []
        for record in self._store.active():
            self._activate(record)

    def _activate(self, record: ReservationRecord) -> None:
        """Enter an active row into the in-memory view and the books."""
        self._active[record.reservation_id] = record
        self._books.add(record)
        if record.state == PREPARED:
            heap = self._deadlines
            heapq.heappush(heap, (record.expires_at, record.reservation_id))
            if len(heap) > 2 * self._books.n_prepared + 1024:  # mostly stale entries: rebuild
                heap[:] = [(r.expires_at, r.reservation_id) for r in self._active.values() if r.state == PREPARED]
                heapq.heapify(heap)

    def _deactivate(self, reservation_id: str) -> None:
        """Drop a row from the in-memory view and the books (no-op if it is not active)."""
        record = self._active.pop(reservation_id, None)
        if record is not None:
            self._books.remove(record)

    def _lookup(self, reservation_id: str) -> ReservationRecord | None:
        return self._active.get(reservation_id) or self._store.get(reservation_id)

    def _not_found(self, reservation_id: str) -> NotFound:
        return NotFound(f"domain {self.domain_id!r}: no reservation {reservation_id!r}")

    def _describe(self, record: ReservationRecord) -> str:
        return f"domain {self.domain_id!r}: reservation {record.reservation_id!r}"

    # ------------------------------------------------------------------ prepare

    def prepare(self, request: reservation_pb2.PrepareRequest) -> reservation_pb2.PrepareResponse:
        """Phase 1: hold capacity for ``request.reservation`` (see the module docstring)."""
        _check_id("request_id", request.request_id)
        digest = _digest(request)
        replay = self._replay("Prepare", request.request_id, digest, reservation_pb2.PrepareResponse)
        if replay is not None:
            return replay
        if not request.HasField("reservation"):
            raise invalid_argument("reservation", None, "must be set")
        res = request.reservation
        _check_id("reservation.reservation_id", res.reservation_id)
        _check_id("reservation.tenant_id", res.tenant_id)
        _check_finite("reservation.rate_bps", res.rate_bps, 0.0, low_open=True)
        _check_finite("reservation.burst_bits", res.burst_bits, 0.0, low_open=False)
        _check_finite("reservation.delay_budget_s", res.delay_budget_s, 0.0, low_open=True)
        _check_finite("reservation.epsilon", res.epsilon, 0.0, low_open=True, high=1.0)
        _check_finite("hold_timeout_s", request.hold_timeout_s, 0.0, low_open=True, high=self.max_hold_s,
                      high_open=False)
        tre_id = self._check_tre(res.tre_id)

        now = self._clock()
        self._tick(now)
        normalized = reservation_pb2.ReservationRequest()
        normalized.CopyFrom(res)
        normalized.tre_id = tre_id
        fingerprint = _digest(normalized)

        existing = self._lookup(res.reservation_id)
        if existing is not None:
            if existing.state in _TERMINAL:
                raise FailedPrecondition(
                    f"{self._describe(existing)} is already {STATE_NAMES[existing.state]}; prepare under a new "
                    "reservation_id"
                )
            if existing.prepare_fingerprint != fingerprint:
                raise AlreadyExists(f"{self._describe(existing)} exists with different parameters")
            response = self._prepare_response(existing)
            with self._write():
                self._log("Prepare", request.request_id, digest, response, now)
            return response

        self._check_published()
        g = self.guardrails
        d = f"domain {self.domain_id!r}"
        if res.rate_bps < g.min_tenant_rate_bps:
            raise FailedPrecondition(
                f"{d}: rate {res.rate_bps:g} bps of tenant {res.tenant_id!r} is below guardrail "
                f"min_tenant_rate_bps {g.min_tenant_rate_bps:g}"
            )
        if res.burst_bits > g.max_burst_bits:
            raise FailedPrecondition(
                f"{d}: burst {res.burst_bits:g} bits of tenant {res.tenant_id!r} exceeds guardrail "
                f"max_burst_bits {g.max_burst_bits:g}"
            )
        held = self._books.tenant_held(res.tenant_id)
        if held + res.rate_bps > g.max_tenant_rate_bps * (1 + _CAPACITY_RTOL):
            raise FailedPrecondition(
                f"{d}: guardrail max_tenant_rate_bps {g.max_tenant_rate_bps:g} exceeded for tenant "
                f"{res.tenant_id!r} (held {held:g}, asked {res.rate_bps:g})"
            )
        usage = self._usage()
        if usage.used_bps + res.rate_bps > g.reservable_capacity_bps * (1 + _CAPACITY_RTOL):
            raise ResourceExhausted(
                f"{d}: reservable capacity {g.reservable_capacity_bps:g} bps exceeded (committed "
                f"{usage.committed_bps:g}, prepared {usage.prepared_bps:g}, asked {res.rate_bps:g})"
            )

        record = ReservationRecord(
            reservation_id=res.reservation_id,
            tenant_id=res.tenant_id,
            tre_id=tre_id,
            rate_bps=res.rate_bps,
            burst_bits=res.burst_bits,
            delay_budget_s=res.delay_budget_s,
            epsilon=res.epsilon,
            state=PREPARED,
            created_at=now,
            expires_at=now + request.hold_timeout_s,
            updated_at=now,
            prepare_fingerprint=fingerprint,
        )
        with self._write():
            self._save(record)
            response = self._prepare_response(record)
            self._log("Prepare", request.request_id, digest, response, now)
        return response

    def _prepare_response(self, record: ReservationRecord) -> reservation_pb2.PrepareResponse:
        response = reservation_pb2.PrepareResponse(
            reservation_id=record.reservation_id,
            state=record.state,  # type: ignore[arg-type]  # protobuf stubs: an enum field takes an int too
            available_after_bps=self._usage().available_bps,
        )
        if record.state == PREPARED:
            response.expires_at.CopyFrom(timestamp_from_seconds(record.expires_at))
        return response

    # ------------------------------------------------------------------ commit

    def _grant(self, record: ReservationRecord, sequence: int, now: float) -> reservation_pb2.SignedGrant:
        header = self._publisher.body.header
        body = reservation_pb2.GrantBody(
            reservation_id=record.reservation_id,
            domain_id=self.domain_id,
            tenant_id=record.tenant_id,
            tre_id=record.tre_id,
            tre_sequence=header.sequence,
            rate_bps=record.rate_bps,
            burst_bits=record.burst_bits,
            delay_budget_s=record.delay_budget_s,
            epsilon=record.epsilon,
            sequence=sequence,
            key_id=self._key.key_id,
        )
        body.granted_at.CopyFrom(timestamp_from_seconds(now))
        body.not_after.CopyFrom(header.not_after)
        return sign_grant(body, self._key)

    def _begin(self, method: str, request, response_cls):
        """Common start of Commit/Abort/Release: validate ids, answer a retry from the idempotency
        log, else run expiry and look the reservation up. Returns ``(digest, replay, now, record)``;
        ``replay`` is the logged response of a retried call (then nothing else is done)."""
        _check_id("request_id", request.request_id)
        digest = _digest(request)
        replay = self._replay(method, request.request_id, digest, response_cls)
        if replay is not None:
            return digest, replay, 0.0, None
        _check_id("reservation_id", request.reservation_id)
        now = self._clock()
        self._tick(now)
        return digest, None, now, self._lookup(request.reservation_id)

    def commit(self, request: reservation_pb2.CommitRequest) -> reservation_pb2.SignedGrant:
        """Phase 2: commit a PREPARED reservation and return its signed grant."""
        digest, replay, now, record = self._begin("Commit", request, reservation_pb2.SignedGrant)
        if replay is not None:
            return replay
        if record is None:
            raise self._not_found(request.reservation_id)
        if record.state == EXPIRED:
            raise FailedPrecondition(
                f"{self._describe(record)} expired at {format_rfc3339(record.expires_at, timespec='milliseconds')} (hold timeout "
                f"{record.expires_at - record.created_at:g} s elapsed before commit); prepare it again"
            )
        if record.state in (ABORTED, RELEASED):
            raise FailedPrecondition(f"{self._describe(record)} was {STATE_NAMES[record.state]}; cannot commit")
        if record.state == COMMITTED:
            grant = reservation_pb2.SignedGrant.FromString(record.grant)
            if seconds_from_timestamp(reservation_pb2.GrantBody.FromString(grant.body).not_after) <= now:
                grant = self._grant(record, record.grant_sequence + 1, now)
                record = record.with_state(COMMITTED, now, grant_sequence=record.grant_sequence + 1,
                                           grant=grant.SerializeToString())
        else:  # PREPARED and unexpired (expiry ran above)
            grant = self._grant(record, 1, now)
            record = record.with_state(COMMITTED, now, grant_sequence=1, grant=grant.SerializeToString())
        with self._write():
            self._save(record)
            self._log("Commit", request.request_id, digest, grant, now)
        return grant

    # ------------------------------------------------------------------ abort / release

    def abort(self, request: reservation_pb2.AbortRequest) -> reservation_pb2.AbortResponse:
        """Abort a PREPARED reservation (an unknown id is recorded as aborted)."""
        digest, replay, now, record = self._begin("Abort", request, reservation_pb2.AbortResponse)
        if replay is not None:
            return replay
        if record is None:  # presumed abort: refuse a Prepare that arrives late
            record = ReservationRecord(
                reservation_id=request.reservation_id, tenant_id="", tre_id=self.tre_id, rate_bps=0.0,
                burst_bits=0.0, delay_budget_s=0.0, epsilon=0.0, state=ABORTED, created_at=now,
                expires_at=now, updated_at=now, prepare_fingerprint=b"",
            )
        elif record.state == COMMITTED:
            raise FailedPrecondition(f"{self._describe(record)} is COMMITTED; release it instead of aborting")
        elif record.state == PREPARED:
            record = record.with_state(ABORTED, now)
        response = reservation_pb2.AbortResponse(reservation_id=record.reservation_id, state=record.state)
        with self._write():
            self._save(record)
            self._log("Abort", request.request_id, digest, response, now)
        return response

    def release(self, request: reservation_pb2.ReleaseRequest) -> reservation_pb2.ReleaseResponse:
        """Release a COMMITTED reservation, returning its capacity."""
        digest, replay, now, record = self._begin("Release", request, reservation_pb2.ReleaseResponse)
        if replay is not None:
            return replay
        if record is None:
            raise self._not_found(request.reservation_id)
        if record.state in (PREPARED, ABORTED, EXPIRED):
            hint = "; abort it instead" if record.state == PREPARED else ""
            raise FailedPrecondition(f"{self._describe(record)} is {STATE_NAMES[record.state]}, not committed{hint}")
        if record.state == COMMITTED:
            record = record.with_state(RELEASED, now)
        with self._write():
            self._save(record)
            response = reservation_pb2.ReleaseResponse(
                reservation_id=record.reservation_id, state=RELEASED, available_after_bps=self._usage().available_bps
            )
            self._log("Release", request.request_id, digest, response, now)
        return response

    # ------------------------------------------------------------------ status

    def status(self, request: services_pb2.GetStatusRequest) -> services_pb2.DomainStatus:
        """Capacity use, and with ``include_reservations`` the table: every PREPARED and COMMITTED
        row plus the ``status_history`` most recently ended ones (oldest first), so the reply stays
        well below gRPC's 4 MB message limit however long the controller runs."""
        now = self._clock()
        self._tick(now)
        usage = self._usage()
        status = services_pb2.DomainStatus(
            domain_id=self.domain_id,
            reservable_capacity_bps=usage.capacity_bps,
            committed_bps=usage.committed_bps,
            prepared_bps=usage.prepared_bps,
            available_bps=usage.available_bps,
        )
        if request.include_reservations:
            rows = sorted([*self._active.values(), *self._store.recent_terminal(self.status_history)],
                          key=lambda r: (r.created_at, r.reservation_id))
            for record in rows:
                row = status.reservations.add(request=record.to_request(), state=record.state)
                if record.state == PREPARED:
                    row.expires_at.CopyFrom(timestamp_from_seconds(record.expires_at))
                elif record.state == COMMITTED and record.grant is not None:
                    row.grant.ParseFromString(record.grant)
        return status

    # ------------------------------------------------------------------ batch

    def batch(self, request: services_pb2.BatchRequest) -> services_pb2.BatchResponse:
        """Several Prepare / Commit / Abort / Release calls, persisted in one transaction (see the
        module docstring). Each item's result carries its status code (0: OK) and response."""
        if len(request.items) > MAX_BATCH:
            raise invalid_argument("items", f"<{len(request.items)} items>", f"must hold at most {MAX_BATCH} items")
        self._tick(self._clock())  # expiry and envelope re-signing, durable before the batch
        response = services_pb2.BatchResponse()
        handlers = {"prepare": self.prepare, "commit": self.commit, "abort": self.abort, "release": self.release}
        with self._write():
            for i, item in enumerate(request.items):
                result = response.results.add()
                kind = item.WhichOneof("call")
                if kind is None:
                    result.code = _INVALID_ARGUMENT
                    result.message = f"items[{i}]: no call set"
                    continue
                try:
                    out = handlers[kind](getattr(item, kind))
                except TrefedError as exc:
                    result.code = status_code_for(exc).value[0]
                    result.message = str(exc)
                except Exception as exc:  # noqa: BLE001 - a bug fails its item, not the batch
                    # The item's savepoint rolled back its writes and the view was reloaded.
                    result.code = _INTERNAL
                    result.message = f"items[{i}] ({kind}): internal error: {type(exc).__name__}: {exc}"
                else:
                    getattr(result, kind).CopyFrom(out)
        return response
