"""Durable state of a domain controller: the reservation table, the idempotency log and the
envelope sequence, in one SQLite file in WAL mode.

Tables::

    meta          key -> value           envelope sequence (strictly increasing across restarts)
    reservations  reservation_id -> row  every active reservation, and finished ones (ABORTED,
                                         EXPIRED, RELEASED) until the retention horizon
    requests      (method, request_id)   successful responses, for idempotent retries

Retention. The owner deletes finished rows last updated before a horizon
(:meth:`ReservationStore.prune_finished`) and logged responses past theirs
(:meth:`ReservationStore.prune_responses`), each in chunks of at most ``limit`` rows per call so no
sweep holds the write lock for long. PREPARED and COMMITTED rows are never deleted. SQLite puts the
freed pages on its freelist and reuses them for new rows, so at a steady admission rate the file
stays flat without ``VACUUM`` (``auto_vacuum`` stays off: shrinking the file would only make it
grow again).

Durability: WAL with ``synchronous=NORMAL`` -- a committed transaction survives the death of
the process (the WAL is written before ``COMMIT`` returns); only an operating-system crash or
power loss can lose the last transactions. Pass ``synchronous="FULL"`` to fsync every commit.

Checkpoints. By default SQLite copies the WAL back into the database file (and syncs it)
inside whichever ``COMMIT`` crosses 1000 WAL pages, stalling that call. With
``background_checkpoint=True`` the owner instead calls :meth:`ReservationStore.checkpoint`
periodically from a worker thread (a PASSIVE checkpoint on a second connection, which never
blocks the writer); automatic checkpoints then only start past 20 000 pages, as a backstop.
Durability is the same either way.

The store is not thread-safe and does no locking of its own beyond SQLite's (only
:meth:`ReservationStore.checkpoint` may run in another thread): the controller uses it from one
event loop, and groups the writes of one call in :meth:`ReservationStore.transaction`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trefed.v1 import reservation_pb2

from federation.errors import InputError

__all__ = ["ReservationRecord", "ReservationStore", "StoredResponse"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    tre_id         TEXT NOT NULL,
    rate_bps       REAL NOT NULL,
    burst_bits     REAL NOT NULL,
    delay_budget_s REAL NOT NULL,
    epsilon        REAL NOT NULL,
    state          INTEGER NOT NULL,
    created_at     REAL NOT NULL,
    expires_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    prepare_fingerprint BLOB NOT NULL,
    grant_sequence INTEGER NOT NULL DEFAULT 0,
    grant_blob     BLOB
);
CREATE INDEX IF NOT EXISTS reservations_state ON reservations (state, expires_at);
CREATE TABLE IF NOT EXISTS requests (
    method      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    response    BLOB NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (method, request_id)
);
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at);
"""

_BACKSTOP_CHECKPOINT_PAGES = 20_000  # automatic checkpoints with background_checkpoint (80 MB of WAL)

_PREPARED = reservation_pb2.PREPARED
_COMMITTED = reservation_pb2.COMMITTED
_EXPIRED = reservation_pb2.EXPIRED
_ABORTED = reservation_pb2.ABORTED


@dataclass(frozen=True)
class ReservationRecord:
    """One row of the reservation table.

    Attributes
    ----------
    reservation_id, tenant_id, tre_id : str
        Identity: chosen by the coordinator, the tenant, and the service class reserved against.
    rate_bps : float
        Reserved rate, bits/s.
    burst_bits : float
        Accepted token-bucket burst, bits.
    delay_budget_s : float
        Per-domain delay sub-budget d_i, s.
    epsilon : float
        Per-domain violation sub-budget eps_i, in (0, 1).
    state : int
        A ``trefed.v1.ReservationState`` value.
    created_at, expires_at, updated_at : float
        Unix times, s. ``expires_at`` is when a PREPARED hold lapses.
    prepare_fingerprint : bytes
        Digest of the ReservationRequest that created it (to tell a retry from a clash).
    grant_sequence : int
        Sequence of the latest signed grant (0 before commit).
    grant : bytes or None
        The latest ``SignedGrant``, serialized (COMMITTED and RELEASED rows).
    """

    reservation_id: str
    tenant_id: str
    tre_id: str
    rate_bps: float
    burst_bits: float
    delay_budget_s: float
    epsilon: float
    state: int
    created_at: float
    expires_at: float
    updated_at: float
    prepare_fingerprint: bytes
    grant_sequence: int = 0
    grant: bytes | None = None

    def with_state(self, state: int, now: float, **changes: Any) -> ReservationRecord:
        """A copy in ``state``, updated at ``now`` (s), with further field ``changes``."""
        return replace(self, state=state, updated_at=now, **changes)

    def to_request(self) -> reservation_pb2.ReservationRequest:
        """The reservation as the protocol's ``ReservationRequest``."""
        return reservation_pb2.ReservationRequest(
            reservation_id=self.reservation_id,
            tenant_id=self.tenant_id,
            tre_id=self.tre_id,
            rate_bps=self.rate_bps,
            burst_bits=self.burst_bits,
            delay_budget_s=self.delay_budget_s,
            epsilon=self.epsilon,
        )


@dataclass(frozen=True)
class StoredResponse:
    """A logged successful response: the request's fingerprint and the serialized response."""

    fingerprint: bytes
    response: bytes


_COLUMNS = (
    "reservation_id, tenant_id, tre_id, rate_bps, burst_bits, delay_budget_s, epsilon, state, "
    "created_at, expires_at, updated_at, prepare_fingerprint, grant_sequence, grant_blob"
)


def _record(row: tuple[Any, ...]) -> ReservationRecord:
    """The record of a row selected as ``_COLUMNS``."""
    return ReservationRecord(
        reservation_id=row[0], tenant_id=row[1], tre_id=row[2], rate_bps=row[3], burst_bits=row[4],
        delay_budget_s=row[5], epsilon=row[6], state=row[7], created_at=row[8], expires_at=row[9],
        updated_at=row[10], prepare_fingerprint=bytes(row[11]), grant_sequence=int(row[12]),
        grant=None if row[13] is None else bytes(row[13]),
    )


class ReservationStore:
    """SQLite-backed reservation table, idempotency log and counters of one domain controller.

    Parameters
    ----------
    path : str or Path
        Database file, created if absent (its directory must exist). ``":memory:"`` works for
        tests but is not durable.
    synchronous : {"NORMAL", "FULL"}
        SQLite ``synchronous`` pragma; see the module docstring.
    background_checkpoint : bool
        The owner runs :meth:`checkpoint` periodically (see the module docstring).

    Raises
    ------
    InputError
        If the file cannot be opened as a database.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", background_checkpoint: bool = False) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise InputError(f"synchronous(={synchronous!r}) must be 'NORMAL' or 'FULL'")
        self.path = str(path)
        try:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db: sqlite3.Connection | None = db  # None once closed
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute("PRAGMA busy_timeout=5000")
            if background_checkpoint:
                db.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_CHECKPOINT_PAGES}")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open reservation database {self.path!r}: {exc}") from exc
        self._synchronous = synchronous
        self._depth = 0
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def checkpoint(self) -> int:
        """Copy committed WAL frames into the database file without blocking the writer
        (``PRAGMA wal_checkpoint(PASSIVE)`` on a second connection); return the number of frames
        copied. May run in a worker thread while the owner keeps writing; a no-op for
        ``:memory:`` and once closed."""
        with self._checkpoint_lock:
            if self._db is None or self.path == ":memory:":
                return 0
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpointer.execute("PRAGMA busy_timeout=5000")
                self._checkpointer.execute(f"PRAGMA synchronous={self._synchronous}")
            row = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return max(0, int(row[2])) if row is not None else 0

    def close(self) -> None:
        """Checkpoint and close the database. Idempotent."""
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        if self._db is None:
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:  # pragma: no cover - a busy checkpoint is harmless
            pass
        self._db.close()
        self._db = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._db is None

    @property
    def _conn(self) -> sqlite3.Connection:
        """The open connection; using a closed store raises ``sqlite3.ProgrammingError`` (as a closed
        connection does)."""
        db = self._db
        if db is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically: ``with store.transaction(): ...``.

        A nested use is a savepoint of the outer transaction: if its block raises, only its own
        writes are rolled back (and the exception propagates); the outer transaction commits or
        rolls back as a whole.
        """
        if self._depth:
            name = f"s{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                raise
            finally:
                self._depth -= 1
                self._conn.execute(f"RELEASE {name}")
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # e.g. an I/O error: leave no transaction open
                self._conn.execute("ROLLBACK")
            raise

    @property
    def in_transaction(self) -> bool:
        """True inside :meth:`transaction`."""
        return self._depth > 0

    # ------------------------------------------------------------------ counters

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key`` in ``meta``, or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in ``meta`` (within the caller's transaction, if any)."""
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def next_sequence(self, key: str) -> int:
        """Increment the counter ``key`` (absent: 0) durably and return its new value (>= 1)."""
        with self.transaction():
            current = int(self.get_meta(key) or 0)
            self.set_meta(key, str(current + 1))
        return current + 1

    # ------------------------------------------------------------------ reservations

    def put(self, record: ReservationRecord) -> None:
        """Insert or overwrite a reservation row."""
        self._conn.execute(
            f"INSERT OR REPLACE INTO reservations ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.reservation_id, record.tenant_id, record.tre_id, record.rate_bps,
                record.burst_bits, record.delay_budget_s, record.epsilon, record.state,
                record.created_at, record.expires_at, record.updated_at, record.prepare_fingerprint,
                record.grant_sequence, record.grant,
            ),
        )

    def get(self, reservation_id: str) -> ReservationRecord | None:
        """The row of ``reservation_id``, or None."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM reservations WHERE reservation_id = ?", (reservation_id,)
        ).fetchone()
        return None if row is None else _record(row)

    def active(self) -> list[ReservationRecord]:
        """PREPARED and COMMITTED rows (whatever their expiry), oldest first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM reservations WHERE state IN (?, ?) ORDER BY created_at, reservation_id",
            (_PREPARED, _COMMITTED),
        ).fetchall()
        return [_record(r) for r in rows]

    def all(self) -> list[ReservationRecord]:
        """Every row, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM reservations ORDER BY created_at, reservation_id"
        ).fetchall()
        return [_record(r) for r in rows]

    def recent_terminal(self, limit: int) -> list[ReservationRecord]:
        """The ``limit`` most recently updated ABORTED, EXPIRED or RELEASED rows, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM reservations WHERE state NOT IN (?, ?) "
            "ORDER BY updated_at DESC, reservation_id DESC LIMIT ?",
            (_PREPARED, _COMMITTED, int(limit)),
        ).fetchall()
        return sorted((_record(r) for r in rows), key=lambda r: (r.created_at, r.reservation_id))

    def expire_prepared(self, now: float) -> list[str]:
        """Mark PREPARED rows with ``expires_at <= now`` (s) EXPIRED; return their ids."""
        rows = self._conn.execute(
            "UPDATE reservations SET state = ?, updated_at = ? WHERE state = ? AND expires_at <= ? "
            "RETURNING reservation_id",
            (_EXPIRED, now, _PREPARED, now),
        ).fetchall()
        return [r[0] for r in rows]

    def prune_finished(self, before: float, limit: int = 1000) -> int:
        """Delete at most ``limit`` finished rows (ABORTED, EXPIRED, RELEASED) last updated before
        ``before`` (Unix time, s), oldest hold first; return how many. PREPARED and COMMITTED rows
        are never deleted, whatever their age."""
        return self._conn.execute(
            "DELETE FROM reservations WHERE rowid IN (SELECT rowid FROM reservations "
            "WHERE state NOT IN (?, ?) AND updated_at < ? LIMIT ?)",
            (_PREPARED, _COMMITTED, before, int(limit))).rowcount

    def count_reservations(self) -> int:
        """Number of reservation rows (active and finished)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM reservations").fetchone()[0])

    def prune_tombstones(self, before: float) -> int:
        """Delete the tombstones (ABORTED rows of an abort of an unknown id: no tenant, no prepare)
        last updated before ``before`` (Unix time, s); return how many."""
        return self._conn.execute(
            "DELETE FROM reservations WHERE state = ? AND tenant_id = '' AND prepare_fingerprint = x'' "
            "AND updated_at < ?", (_ABORTED, before)).rowcount

    # ------------------------------------------------------------------ idempotency log

    def get_response(self, method: str, request_id: str) -> StoredResponse | None:
        """The logged response of ``(method, request_id)``, or None."""
        row = self._conn.execute(
            "SELECT fingerprint, response FROM requests WHERE method = ? AND request_id = ?",
            (method, request_id),
        ).fetchone()
        return None if row is None else StoredResponse(bytes(row[0]), bytes(row[1]))

    def put_response(self, method: str, request_id: str, fingerprint: bytes, response: bytes, now: float) -> None:
        """Log a successful response (serialized) with its request digest, at Unix time ``now`` (s)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO requests (method, request_id, fingerprint, response, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (method, request_id, fingerprint, response, now),
        )

    def prune_responses(self, before: float, limit: int | None = None) -> int:
        """Forget logged responses created before ``before`` (Unix time, s), at most ``limit`` of
        them (None: all), oldest first; return how many."""
        if limit is None:
            return self._conn.execute("DELETE FROM requests WHERE created_at < ?", (before,)).rowcount
        return self._conn.execute(
            "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests WHERE created_at < ? "
            "ORDER BY created_at LIMIT ?)", (before, int(limit))).rowcount

    def count_responses(self) -> int:
        """Number of logged responses."""
        return int(self._conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
