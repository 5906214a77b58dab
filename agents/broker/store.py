"""The broker's durable state: contracts, admissions in flight, and the clean-ups it still owes.

A broker killed at any moment and restarted on the same file (:class:`BrokerStore`, SQLite in WAL
mode) recovers what it must not forget (:meth:`agents.broker.logic.Broker.recover`):

* **contracts** -- every contract it granted and has not released, and released ones until the
  retention horizon (so ``GetContract``, ``ReleaseService`` and the auditor still find them), whether
  released, and the domains that have not yet confirmed a release in progress;
* **admissions in flight** -- a contract id and its path, written before the first Prepare and
  deleted when the contract is stored or the admission's undo is scheduled: a restarted broker
  aborts (or releases) every reservation of an admission it never finished, so a killed broker
  leaves no capacity held for a contract nobody has;
* **clean-ups** -- aborts and releases of failed admissions not yet delivered to a domain;
* **requests** -- each ``RequestService`` that ended with a contract: its request id, the digest
  of the request and the contract id, so a retry gets its contract (also after a restart) and
  the broker holds only the admissions in flight in memory.

Retention (:meth:`BrokerStore.prune`): a released contract is deleted ``retention_s`` after its
release (``released_at``), an answered request id ``retention_s`` after its answer
(``created_at``: the request-dedup window), in chunks of at most ``limit`` rows per call.
Unreleased contracts (and those still releasing) are never deleted. SQLite reuses the freed
pages, so at a steady rate the file stays flat without ``VACUUM``. A file written before these
columns existed gets them on open (its rows read as answered / released now).

Tables::

    contracts(contract_id PK, tenant_id, contract BLOB, releasing TEXT,    -- releasing: JSON list
              released_at REAL)                                            -- NULL until released
    inflight(contract_id PK, path TEXT, created_at REAL)                   -- path: JSON list
    cleanups(domain_id, reservation_id, first_attempt REAL, PK(domain_id, reservation_id))
    requests(request_id PK, fingerprint BLOB, contract_id, created_at REAL)

Times are Unix times, s, from the store's ``clock``.

``":memory:"`` keeps it in memory (a broker with nothing to recover: tests, ``path=None``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from trefed.v1 import services_pb2

__all__ = ["BrokerStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contracts (
    contract_id TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    contract    BLOB NOT NULL,
    releasing   TEXT NOT NULL DEFAULT '[]',
    released_at REAL
);
CREATE TABLE IF NOT EXISTS inflight (
    contract_id TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id  TEXT PRIMARY KEY,
    fingerprint BLOB NOT NULL,
    contract_id TEXT NOT NULL,
    created_at  REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cleanups (
    domain_id      TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    first_attempt  REAL NOT NULL,
    PRIMARY KEY (domain_id, reservation_id)
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS contracts_released ON contracts (released_at) WHERE released_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at);
"""


class BrokerStore:
    """The broker's SQLite file (see the module docstring); every write commits at once.

    Parameters
    ----------
    path : str or Path
        The database file (created with its directory when absent), or ``":memory:"``.
    clock : callable
        Unix time, s (default :func:`time.time`): when a contract was released, a request answered.
    """

    def __init__(self, path: str | Path = ":memory:", *, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._clock = clock
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._db.executescript(_INDEXES)

    def _migrate(self) -> None:
        """Add the retention columns to a file created before them."""
        now = self._clock()
        for table, column, kind in (("contracts", "released_at", "REAL"),
                                    ("requests", "created_at", "REAL NOT NULL DEFAULT 0")):
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                with self._db:  # one transaction: a crash half-way leaves the file as it was
                    self._db.execute("BEGIN")
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    if table == "requests":
                        self._db.execute("UPDATE requests SET created_at = ?", (now,))
                    else:
                        released = [(now, cid) for cid, blob in self._db.execute("SELECT contract_id, contract "
                                                                                 "FROM contracts")
                                    if services_pb2.ServiceContract.FromString(blob).released]
                        self._db.executemany("UPDATE contracts SET released_at = ? WHERE contract_id = ?", released)

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._db.close()

    # ------------------------------------------------------------------ contracts

    def put_contract(self, contract: services_pb2.ServiceContract, releasing: set[str] | None = None) -> None:
        """Store (or update) a contract and the domains yet to confirm its release; ends its admission.
        A contract stored ``released`` for the first time is stamped released now."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO contracts (contract_id, tenant_id, contract, releasing, released_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (contract_id) DO UPDATE SET tenant_id = excluded.tenant_id, "
                "contract = excluded.contract, releasing = excluded.releasing, "
                "released_at = CASE WHEN excluded.released_at IS NULL THEN NULL "
                "ELSE COALESCE(contracts.released_at, excluded.released_at) END",
                (contract.contract_id, contract.tenant_id, contract.SerializeToString(),
                 json.dumps(sorted(releasing or ())), self._clock() if contract.released else None))
            self._db.execute("DELETE FROM inflight WHERE contract_id = ?", (contract.contract_id,))

    def contract(self, contract_id: str) -> services_pb2.ServiceContract | None:
        """The stored contract, or None."""
        row = self._db.execute("SELECT contract FROM contracts WHERE contract_id = ?", (contract_id,)).fetchone()
        return None if row is None else services_pb2.ServiceContract.FromString(row[0])

    def releasing(self) -> dict[str, set[str]]:
        """Contract id -> the domains that have not confirmed its release yet (non-empty only)."""
        rows = self._db.execute("SELECT contract_id, releasing FROM contracts WHERE releasing != '[]'").fetchall()
        return {cid: set(json.loads(pending)) for cid, pending in rows}

    def count_contracts(self) -> int:
        """Number of stored contracts (released or not)."""
        return int(self._db.execute("SELECT COUNT(*) FROM contracts").fetchone()[0])

    # ------------------------------------------------------------------ requests answered

    def put_request(self, request_id: str, fingerprint: bytes, contract_id: str) -> None:
        """Remember that ``RequestService`` ``request_id`` (request digest ``fingerprint``) got ``contract_id``."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO requests (request_id, fingerprint, contract_id, created_at) "
                             "VALUES (?, ?, ?, ?)", (request_id, fingerprint, contract_id, self._clock()))

    def request(self, request_id: str) -> tuple[bytes, str] | None:
        """``(fingerprint, contract_id)`` of an answered ``RequestService``, or None."""
        row = self._db.execute("SELECT fingerprint, contract_id FROM requests WHERE request_id = ?",
                               (request_id,)).fetchone()
        return None if row is None else (bytes(row[0]), str(row[1]))

    def count_requests(self) -> int:
        """Number of answered request ids kept."""
        return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    # ------------------------------------------------------------------ retention

    def prune(self, retention_s: float, limit: int = 1000) -> tuple[list[str], int]:
        """Delete at most ``limit`` contracts released more than ``retention_s`` (s) ago and at most
        ``limit`` request ids answered more than ``retention_s`` ago, oldest first, in one
        transaction; return the deleted contract ids and the number of request ids."""
        before = self._clock() - retention_s
        with self._db:
            self._db.execute("BEGIN")
            gone = [r[0] for r in self._db.execute(
                "DELETE FROM contracts WHERE contract_id IN (SELECT contract_id FROM contracts "
                "WHERE released_at IS NOT NULL AND released_at < ? AND releasing = '[]' "
                "ORDER BY released_at LIMIT ?) RETURNING contract_id", (before, int(limit))).fetchall()]
            requests = self._db.execute(
                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests WHERE created_at < ? "
                "ORDER BY created_at LIMIT ?)", (before, int(limit))).rowcount
        return gone, requests

    # ------------------------------------------------------------------ admissions in flight

    def begin_admission(self, contract_id: str, path: list[str], now: float) -> None:
        """Record an admission about to prepare ``path`` (Unix time ``now``, s)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO inflight (contract_id, path, created_at) VALUES (?, ?, ?)",
                             (contract_id, json.dumps(path), now))

    def end_admission(self, contract_id: str) -> None:
        """Forget an admission (its undo is scheduled, or its contract stored)."""
        with self._db:
            self._db.execute("DELETE FROM inflight WHERE contract_id = ?", (contract_id,))

    def inflight(self) -> dict[str, list[str]]:
        """Contract id -> path of every admission a previous run did not finish."""
        return {cid: json.loads(path) for cid, path in self._db.execute("SELECT contract_id, path FROM inflight")}

    # ------------------------------------------------------------------ clean-ups

    def put_cleanups(self, items: dict[tuple[str, str], float]) -> None:
        """Record undelivered aborts/releases: ``(domain, reservation) -> first attempt`` (monotonic s)."""
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO cleanups (domain_id, reservation_id, first_attempt) VALUES (?, ?, ?)",
                [(d, r, t) for (d, r), t in items.items()])

    def drop_cleanups(self, items: list[tuple[str, str]]) -> None:
        """Forget delivered (or given-up) clean-ups."""
        with self._db:
            self._db.executemany("DELETE FROM cleanups WHERE domain_id = ? AND reservation_id = ?", items)

    def cleanups(self) -> list[tuple[str, str]]:
        """Every undelivered clean-up ``(domain, reservation)``."""
        return [(d, r) for d, r in self._db.execute("SELECT domain_id, reservation_id FROM cleanups")]
