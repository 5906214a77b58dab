"""The calculus model of a tandem from parsed specs: the flow of interest and one service per hop.

:func:`build_model` is what ``trefed bound`` bounds and what ``trefed compare`` checks: the
``--arrival`` flows aggregated into the flow of interest, each ``--hop`` turned into its service
(its ``prop`` added to the latency), and the ``--cross`` flows at a hop subtracted from it as a
:class:`~federation.calculus.services.Leftover` (blind multiplexing: any work-conserving
scheduler) or, with ``multiplexing="fifo"``, a
:class:`~federation.calculus.services.FifoLeftover` (the hop serves them FIFO with the flow). Units: continuous time
seconds, bits and bits/s; discrete time slots in place of seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from federation.calculus.arrivals import Arrival, aggregate, arrival_from_spec
from federation.calculus.services import FifoLeftover, Leftover, Service, service_from_hop
from federation.errors import SpecError
from federation.specs import ArrivalSpec, CrossSpec, HopSpec, TimeModel
from federation.stability import HopLoad

__all__ = ["TandemModel", "build_model", "tandem_loads"]


@dataclass(frozen=True)
class TandemModel:
    """The flow of interest and the services it crosses, in path order.

    ``services[i]`` serves hop ``i + 1``: its latency includes the hop's ``prop``, and it is a
    ``Leftover`` of the cross traffic when a ``--cross`` flow enters there.
    """

    flow: Arrival
    services: tuple[Service, ...]


def build_model(
    arrivals: Sequence[ArrivalSpec],
    hops: Sequence[HopSpec],
    cross: Sequence[CrossSpec] = (),
    *,
    time: TimeModel = "continuous",
    dependent: bool = False,
    multiplexing: Literal["blind", "fifo"] = "blind",
) -> TandemModel:
    """The calculus model of the parsed ``--arrival`` / ``--hop`` / ``--cross`` specs.

    Parameters
    ----------
    arrivals
        The flows of interest (at least one), aggregated into one flow.
    hops
        The hops in path order (at least one).
    cross
        One-hop cross flows (``CrossSpec.hop`` counted from 1, at most ``len(hops)``).
    time
        The time model; every arrival spec must be parsed for it.
    dependent
        The ``arrivals`` may be dependent (Hölder's inequality instead of independence).
    multiplexing
        How a hop serves its cross flows with the flow of interest: ``"blind"`` (any
        work-conserving scheduler, :class:`Leftover`) or ``"fifo"`` (:class:`FifoLeftover`).

    Returns
    -------
    TandemModel

    Raises
    ------
    SpecError
        No arrival or no hop, a spec parsed for another time model, a cross flow at a hop
        that is not on the path, or an unknown ``multiplexing``.
    """
    if multiplexing not in ("blind", "fifo"):
        raise SpecError(f"multiplexing(={multiplexing!r}) must be blind or fifo")
    leftover = FifoLeftover if multiplexing == "fifo" else Leftover
    if not arrivals:
        raise SpecError("give at least one arrival")
    if not hops:
        raise SpecError("give at least one hop")
    for a in (*arrivals, *(c.arrival for c in cross)):
        if a.time != time:
            raise SpecError(f"arrival {a.text!r}: parsed for {a.time} time, the model is in {time} time")
    flow = aggregate([arrival_from_spec(a) for a in arrivals], dependent=dependent)
    crosses: dict[int, list[Arrival]] = {}
    for c in cross:
        if not 1 <= c.hop <= len(hops):
            raise SpecError(f"cross {c.arrival.text!r}: hop(={c.hop}) must be between 1 and {len(hops)}")
        crosses.setdefault(c.hop, []).append(arrival_from_spec(c.arrival))
    services: list[Service] = []
    for i, h in enumerate(hops, start=1):
        base = service_from_hop(h, packet_size=flow.packet_size, time=time)
        if h.prop:
            base = replace(base, latency=base.latency + h.prop)
        services.append(leftover(base, aggregate(crosses[i])) if i in crosses else base)
    return TandemModel(flow, tuple(services))


def tandem_loads(flow: Arrival, services: Sequence[Service]) -> list[HopLoad]:
    """The load of every hop (from 1): the flow's and the hop's cross traffic's mean rate over the
    hop's mean rate (see :mod:`federation.stability`)."""
    loads = []
    for i, s in enumerate(services, start=1):
        base, cross = (s.base, s.cross) if isinstance(s, Leftover) else (s, None)
        c = cross.mean_rate if cross is not None else 0.0
        loads.append(HopLoad(i, flow.mean_rate + c, base.mean_rate, bounded_at_one=s.deterministic
                             and flow.deterministic, cross=c))
    return loads
