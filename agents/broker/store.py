"""The broker's durable state: contracts, admissions in flight, and the clean-ups it still owes.

A broker killed at any moment and restarted on the same file (:class:`BrokerStore`, SQLite in WAL
mode) recovers what it must not forget (:meth:`agents.broker.logic.Broker.recover`):

* **contracts** -- every contract it granted (so ``GetContract`` and ``ReleaseService`` still
  work), whether released, and the domains that have not yet confirmed a release in progress;
* **admissions in flight** -- a contract id and its path, written before the first Prepare and
  deleted when the contract is stored or the admission's undo is scheduled: a restarted broker
  aborts (or releases) every reservation of an admission it never finished, so a killed broker
  leaves no capacity held for a contract nobody has;
* **clean-ups** -- aborts and releases of failed admissions not yet delivered to a domain;
* **requests** -- each ``RequestService`` that ended with a contract: its request id, the digest
  of the request and the contract id, so a retry gets its contract (also after a restart) and
  the broker holds only the admissions in flight in memory.

Tables::

    contracts(contract_id PK, tenant_id, contract BLOB, releasing TEXT)   -- releasing: JSON list
    inflight(contract_id PK, path TEXT, created_at REAL)                   -- path: JSON list
    cleanups(domain_id, reservation_id, first_attempt REAL, PK(domain_id, reservation_id))
    requests(request_id PK, fingerprint BLOB, contract_id)

``":memory:"`` keeps it in memory (a broker with nothing to recover: tests, ``path=None``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from trefed.v1 import services_pb2

__all__ = ["BrokerStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contracts (
    contract_id TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    contract    BLOB NOT NULL,
    releasing   TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS inflight (
    contract_id TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id  TEXT PRIMARY KEY,
    fingerprint BLOB NOT NULL,
    contract_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cleanups (
    domain_id      TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    first_attempt  REAL NOT NULL,
    PRIMARY KEY (domain_id, reservation_id)
);
"""


class BrokerStore:
    """The broker's SQLite file (see the module docstring); every write commits at once.

    Parameters
    ----------
    path : str or Path
        The database file (created with its directory when absent), or ``":memory:"``.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._db.close()

    # ------------------------------------------------------------------ contracts

    def put_contract(self, contract: services_pb2.ServiceContract, releasing: set[str] | None = None) -> None:
        """Store (or update) a contract and the domains yet to confirm its release; ends its admission."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO contracts (contract_id, tenant_id, contract, releasing) VALUES (?, ?, ?, ?)",
                (contract.contract_id, contract.tenant_id, contract.SerializeToString(),
                 json.dumps(sorted(releasing or ()))))
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
        return int(self._db.execute("SELECT COUNT(*) FROM contracts").fetchone()[0])

    # ------------------------------------------------------------------ requests answered

    def put_request(self, request_id: str, fingerprint: bytes, contract_id: str) -> None:
        """Remember that ``RequestService`` ``request_id`` (request digest ``fingerprint``) got ``contract_id``."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO requests (request_id, fingerprint, contract_id) VALUES (?, ?, ?)",
                             (request_id, fingerprint, contract_id))

    def request(self, request_id: str) -> tuple[bytes, str] | None:
        """``(fingerprint, contract_id)`` of an answered ``RequestService``, or None."""
        row = self._db.execute("SELECT fingerprint, contract_id FROM requests WHERE request_id = ?",
                               (request_id,)).fetchone()
        return None if row is None else (bytes(row[0]), str(row[1]))

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
