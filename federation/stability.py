"""Is a tandem model stable? The load of every hop, and the check that refuses an unstable model.

The loads come from :func:`federation.calculus.model.tandem_loads` (the calculus' flow and
services) and :func:`federation.dataplane.path.path_loads` (the data plane's sources and domains);
``trefed bound`` and ``trefed simulate`` check them here.

A hop whose long-run offered work is at least its long-run service rate (load ``rho >= 1``) has
no stationary delay: the calculus has no finite bound and a simulation's delays grow with its
length (a run of ``poisson:rate=1.2`` into a rate-1 hop reports whatever delay its length makes).
Both commands refuse such a model with exit code 2 and this message, counting hops from 1 as the
command line does; ``trefed simulate --allow-unstable`` runs it anyway (a transient study) with
a warning on stderr.

Notes
-----
The load of hop ``i`` is

.. math:: \\rho_i = \\frac{\\sum_f \\bar a_f}{\\bar c_i},

the sum over the flows crossing the hop of their mean offered work (bits/s, or bits/slot in
discrete time) over the hop's mean service rate (the reserved rate of a tenant's partition under
the ``partition`` scheduler, where each tenant is served alone). A stationary regime needs
``rho_i < 1`` (Loynes); a deterministic token bucket through a constant-rate hop is bounded at
``rho_i = 1`` as well (the worst-case delay ``sigma / R``). A load within ``1e-12`` of 1 counts
as 1: the mean rates carry rounding (ten on-off sources of mean 0.5 sum to 4.999999999999997).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from federation.errors import InputError

__all__ = ["HopLoad", "require_stable"]

_ONE = 1.0 - 1e-12  # loads at least this count as 1 (rounding of the mean rates)


@dataclass(frozen=True)
class HopLoad:
    """The long-run load of one hop (or of one tenant's partition of it).

    Attributes
    ----------
    hop : int
        The hop, counted from 1 (as on the command line).
    offered : float
        Mean offered work of the flows crossing it, bits/s (bits/slot in discrete time).
    capacity : float
        Mean service rate available to them, bits/s (bits/slot), > 0.
    bounded_at_one : bool
        True when ``rho = 1`` still has a bounded delay (a token bucket through a constant rate).
    who : str
        Whose load it is, when not the whole hop's (e.g. ``"tenant 1's partition"``).
    cross : float
        The part of ``offered`` that is one-hop cross traffic, bits/s (bits/slot).
    rate_name : str
        What ``capacity`` is, for the message (``"service rate"``, ``"reserved rate"``, ...).
    """

    hop: int
    offered: float
    capacity: float
    bounded_at_one: bool = False
    who: str = ""
    cross: float = 0.0
    rate_name: str = "service rate"

    @property
    def rho(self) -> float:
        """The load ``offered / capacity`` (dimensionless)."""
        return self.offered / self.capacity

    @property
    def stable(self) -> bool:
        """True when the hop has a stationary (finite) delay."""
        return self.rho < _ONE or (self.bounded_at_one and self.rho <= 1.0 + 1e-12)

    def warning(self, unit: str) -> str:
        """The warning for a run that goes on although this hop is unstable (a transient study)."""
        return (f"warning: unstable model: {self.describe(unit)}: the delays grow with the length of the run "
                "(a transient study, not a stationary one)")

    def describe(self, unit: str) -> str:
        """``load rho = 1.2 >= 1 at hop 1 (mean arrival rate 1.2 bits/s >= service rate 1 bits/s)``."""
        where = f"hop {self.hop}" + (f", {self.who}" if self.who else "")
        cross = f", {self.cross:g} of it cross traffic" if self.cross else ""
        op = ">" if self.bounded_at_one else ">="
        return (f"load rho = {self.rho:.6g} {op} 1 at {where} (mean arrival rate {self.offered:g} {unit}{cross}, "
                f"{self.rate_name} {self.capacity:g} {unit})")


def require_stable(loads: Iterable[HopLoad], unit: str, *, allow: bool = False, what: str = "") -> list[HopLoad]:
    """Raise :class:`~federation.errors.InputError` naming the first unstable hop, unless ``allow``.

    Parameters
    ----------
    loads
        Every hop's load (and every partition's, where tenants are served apart).
    unit
        Unit of the rates in the message (``"bits/s"`` or ``"bits/slot"``).
    allow
        Do not raise: return the unstable hops (the caller warns, e.g. with :meth:`HopLoad.warning`).
    what
        What the caller can do about it, appended to the message.

    Returns
    -------
    list of HopLoad
        The unstable ones (empty when the model is stable).
    """
    bad = [x for x in loads if not x.stable]
    if bad and not allow:
        raise InputError(f"unstable model: {bad[0].describe(unit)}: no stationary delay exists; lower the arrival "
                         f"rate or raise the hop's rate" + (f" ({what})" if what else ""))
    return bad

