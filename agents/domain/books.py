"""A domain's capacity books: exact running sums of the reserved rates.

The capacity in use (committed, prepared) and each tenant's held rate are running sums, updated
with every state change of a reservation, so a check costs O(1) whatever the table's size
(:class:`Books`). The sums are exact: a finite float ``x >= 0`` is a multiple of ``2**-1074``,
so ``x * 2**1074`` is an integer (:func:`exact`) and sums of those integers are exact;
:func:`inexact` rounds a sum back correctly. Each reported figure is therefore the correctly
rounded sum of the reservations' rates, bit for bit what :func:`math.fsum` over the table gives,
however many reservations came and went. :class:`CapacityUsage` is the reported value.

Units: bits/s.
"""

from __future__ import annotations

from dataclasses import dataclass

from trefed.v1 import reservation_pb2

from agents.domain.store import ReservationRecord

__all__ = ["Books", "CapacityUsage", "exact", "inexact"]

_EXACT_SHIFT = 1074
_EXACT_ONE = 1 << _EXACT_SHIFT


def exact(x: float) -> int:
    """``x * 2**1074`` as an exact integer (``x`` a finite float >= 0, bits/s)."""
    n, d = x.as_integer_ratio()  # d is a power of two, at most 2**1074
    return n << (_EXACT_SHIFT + 1 - d.bit_length())


def inexact(total: int) -> float:
    """The float nearest ``total * 2**-1074`` (correctly rounded), bits/s."""
    return total / _EXACT_ONE


class Books:
    """Running sums over the active (PREPARED and COMMITTED) reservations, exact.

    ``committed``, ``prepared``: sums of rates by state (in :func:`exact` units);
    ``n_prepared``: the number of PREPARED rows; ``tenants[t] = [sum, count]`` of tenant t's
    active reservations (the entry is dropped when the count reaches zero).
    """

    __slots__ = ("committed", "prepared", "n_prepared", "tenants")

    def __init__(self) -> None:
        self.committed = 0
        self.prepared = 0
        self.n_prepared = 0
        self.tenants: dict[str, list[int]] = {}

    def add(self, record: ReservationRecord) -> None:
        """Enter an active row."""
        x = exact(record.rate_bps)
        if record.state == reservation_pb2.COMMITTED:
            self.committed += x
        else:
            self.prepared += x
            self.n_prepared += 1
        entry = self.tenants.get(record.tenant_id)
        if entry is None:
            self.tenants[record.tenant_id] = [x, 1]
        else:
            entry[0] += x
            entry[1] += 1

    def remove(self, record: ReservationRecord) -> None:
        """Take out a row entered with :meth:`add` (in the same state)."""
        x = exact(record.rate_bps)
        if record.state == reservation_pb2.COMMITTED:
            self.committed -= x
        else:
            self.prepared -= x
            self.n_prepared -= 1
        entry = self.tenants[record.tenant_id]
        entry[1] -= 1
        if entry[1]:
            entry[0] -= x
        else:
            del self.tenants[record.tenant_id]

    def tenant_held(self, tenant_id: str) -> float:
        """A tenant's held (committed + prepared) rate, bits/s."""
        entry = self.tenants.get(tenant_id)
        return 0.0 if entry is None else inexact(entry[0])

    def usage(self, capacity_bps: float) -> CapacityUsage:
        """The capacity use of the books against ``capacity_bps``."""
        return CapacityUsage(capacity_bps, inexact(self.committed), inexact(self.prepared))


@dataclass(frozen=True)
class CapacityUsage:
    """Capacity use of a domain at one instant, bits/s.

    Attributes
    ----------
    capacity_bps : float
        Reservable capacity (guardrail).
    committed_bps : float
        Sum of COMMITTED reservations.
    prepared_bps : float
        Sum of unexpired PREPARED holds.
    """

    capacity_bps: float
    committed_bps: float
    prepared_bps: float

    @property
    def used_bps(self) -> float:
        """committed + prepared, bits/s."""
        return self.committed_bps + self.prepared_bps

    @property
    def available_bps(self) -> float:
        """capacity - committed - prepared, bits/s (never negative)."""
        return max(0.0, self.capacity_bps - self.used_bps)
