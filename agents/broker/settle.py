"""What the broker still owes the domains, settled in the background until every domain confirms.

:class:`Settlement` holds two kinds of debt, each kept in the broker's store
(:mod:`agents.broker.store`) so that a restarted broker still pays it:

* **undo** -- the reservations of a failed admission: abort each (a PREPARED hold), or release it
  once COMMITTED; a domain that cannot be reached is retried every ``period_s`` seconds, and
  given up after ``horizon_s`` (its hold lapses at the domain anyway);
* **release** -- a contract released by its tenant whose release some domain has not confirmed:
  retried until it does, never given up; the contract reads ``releasing`` meanwhile, then
  ``released``.

After a restart, :meth:`Settlement.recover` turns every admission the previous run left in flight
into undo debt (abort, or release what was committed: no tenant holds that contract) and resumes
the releases in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from trefed.v1 import reservation_pb2, services_pb2

from agents.broker.client import DomainCallError, DomainClient
from agents.broker.store import BrokerStore

__all__ = ["Settlement"]


class Settlement:
    """The broker's undelivered aborts and releases (see the module docstring).

    Parameters
    ----------
    domains : mapping of domain id -> DomainClient
        The broker's clients.
    store : BrokerStore
        Where the debts are kept across restarts.
    stats : object with a ``cleanups_pending`` attribute
        Kept up to date with :attr:`pending` (the broker's :class:`~agents.broker.logic.BrokerStats`).
    contract_of : callable
        ``contract_of(contract_id) -> ServiceContract | None``: the broker's contract (updated in
        place when its release completes).
    monotonic : callable
        Monotonic time, s (default :func:`time.monotonic`).
    period_s : float
        Period of the background retries, s.
    """

    def __init__(self, domains: Mapping[str, DomainClient], store: BrokerStore, stats: Any,
                 contract_of: Callable[[str], services_pb2.ServiceContract | None], *,
                 monotonic: Callable[[], float] = time.monotonic, period_s: float = 0.5) -> None:
        self.domains = domains
        self.store = store
        self.stats = stats
        self.contract_of = contract_of
        self.monotonic = monotonic
        self.period_s = float(period_s)
        self.cleanup: dict[tuple[str, str], float] = {}  # (domain, reservation) -> first attempt
        self.releasing: dict[str, set[str]] = {}  # contract id -> domains yet to confirm its release
        self._task: asyncio.Task | None = None

    @property
    def pending(self) -> int:
        """Reservations whose abort/release could not be delivered yet."""
        return len(self.cleanup) + sum(len(v) for v in self.releasing.values())

    async def undo_one(self, domain_id: str, rid: str) -> bool:
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

    async def undo(self, items: Sequence[tuple[str, str]]) -> None:
        """Undo ``(domain, reservation)`` items now; what cannot be delivered is retried in the background."""
        done = await asyncio.gather(*(self.undo_one(d, rid) for d, rid in items))
        for (d, rid), ok in zip(items, done):
            if not ok:
                self.cleanup.setdefault((d, rid), self.monotonic())
        self.store.put_cleanups({k: self.cleanup[k] for (k, ok) in zip(items, done) if not ok})
        self.start()

    async def release(self, contract: services_pb2.ServiceContract) -> list[tuple[str, BaseException]]:
        """Release ``contract`` at every domain not yet confirmed; return the failures (none: released).

        Marks the contract ``releasing`` (failures) or ``released`` and stores it so.
        """
        cid = contract.contract_id
        path = sorted(self.releasing.get(cid, set(contract.offer.path)))
        results = await asyncio.gather(
            *(self.domains[d].release(reservation_pb2.ReleaseRequest(request_id=f"{cid}.{d}:release",
                                                                     reservation_id=f"{cid}.{d}"))
              for d in path),
            return_exceptions=True,
        )
        # NOT_FOUND is settled too: a domain never deletes a COMMITTED reservation, so a granted one
        # it no longer has was released and then dropped past its retention horizon.
        failed = [
            (d, r) for d, r in zip(path, results)
            if isinstance(r, BaseException)
            and not (isinstance(r, DomainCallError)
                     and r.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND))
        ]
        if failed:
            self.releasing[cid] = {d for d, _ in failed}
            contract.releasing = True
        else:
            self.releasing.pop(cid, None)
            contract.released, contract.releasing = True, False
        if contract.tenant_id:  # (a stand-in for a contract the store lost is not stored)
            self.store.put_contract(contract, self.releasing.get(cid))
        self.stats.cleanups_pending = self.pending
        return failed

    async def retry(self, horizon_s: float = 600.0) -> int:
        """Retry every debt once, now; return how many reservations are still pending.

        The background task calls this every ``period_s`` while debts remain; an undo
        undelivered for longer than ``horizon_s`` (monotonic s) is given up, a release never.
        """
        items = list(self.cleanup.items())
        settled = await asyncio.gather(*(self.undo_one(d, rid) for (d, rid), _ in items))
        done = []
        for ((d, rid), first), ok in zip(items, settled):
            if ok or self.monotonic() - first > horizon_s:
                self.cleanup.pop((d, rid), None)
                done.append((d, rid))
        self.store.drop_cleanups(done)
        for contract_id in list(self.releasing):
            contract = self.contract_of(contract_id)
            await self.release(contract or services_pb2.ServiceContract(contract_id=contract_id))
        self.stats.cleanups_pending = self.pending
        return self.pending

    def recover(self) -> int:
        """After a restart on the same store: resume the releases in progress, undo every admission
        the previous run left in flight, retry its undelivered clean-ups (in the background, on the
        running event loop); return how many reservations are to be settled."""
        now = self.monotonic()
        self.releasing.update({cid: {d for d in ds if d in self.domains} for cid, ds in self.store.releasing().items()})
        items: dict[tuple[str, str], float] = {}
        inflight = self.store.inflight()
        for cid, path in inflight.items():
            items.update({(d, f"{cid}.{d}"): now for d in path if d in self.domains})
        items.update({(d, rid): now for d, rid in self.store.cleanups() if d in self.domains})
        for key, t in items.items():
            self.cleanup.setdefault(key, t)
        self.store.put_cleanups(items)
        for cid in inflight:
            self.store.end_admission(cid)
        self.start()
        return self.pending

    def start(self) -> None:
        """Start the background retries if debts remain (on the running event loop)."""
        self.stats.cleanups_pending = self.pending
        if self.pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while self.cleanup or self.releasing:
            await asyncio.sleep(self.period_s)
            await self.retry()

    async def close(self) -> None:
        """Stop the background retries (the debts stay in the store)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
