"""The experiments by kind: how each builds its arms, runs a data-plane arm, judges and draws.

A :class:`Kind` bundles the functions of one experiment module
(:mod:`~federation.experiment.overload`, :mod:`~federation.experiment.isolation`,
:mod:`~federation.experiment.accountability`, :mod:`~federation.experiment.validity`,
:mod:`~federation.experiment.admission`, ...);
:func:`kind_of` finds the one of a config's ``experiment:`` section and :func:`build_arms` makes
its arms (validated configs, before anything starts); :func:`run_pure` runs an arm of the pure
core. The driver that runs loop arms on Ray is :mod:`agents.experiments`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.errors import InputError
from federation.experiment import accountability, admission, budget, inference, isolation, overload, validity
from federation.experiment.arms import Arm
from federation.experiment.plane import PlaneRun
from federation.experiment.results import ArmResult, Outcome

__all__ = ["Kind", "KINDS", "kind_of", "build_arms", "run_pure"]


@dataclass(frozen=True)
class Kind:
    """One experiment: ``arms(base_data, spec, base_dir)``, ``evaluate(spec, results)``,
    ``figure(outcome, results, out_dir) -> file names`` and, for arms that run in the pure core
    (``mode`` ``"plane"``: the data plane, or ``"core"``: the calculus only), ``pure(arm)`` returning a
    :class:`~federation.experiment.plane.PlaneRun` or the kind's value; ``follow(spec, base_data,
    results, base_dir)``, when set, gives the arms that depend on the first arms' results (run after
    them, e.g. ``admission-vs-dnc``'s ``none`` at the count ``snc`` admitted)."""

    name: str
    arms: Callable[..., list[Arm]]
    evaluate: Callable[[Any, Sequence[ArmResult]], Outcome]
    figure: Callable[[Outcome, Sequence[ArmResult], Path], list[str]]
    pure: Callable[[Arm], PlaneRun | Any] | None = None
    follow: Callable[..., list[Arm]] | None = None


#: Every kind, by the ``experiment.kind`` that selects it.
KINDS: dict[str, Kind] = {
    "overload-admission": Kind("overload-admission", overload.arms, overload.evaluate, overload.figure),
    "isolation": Kind("isolation", isolation.arms, isolation.evaluate, isolation.figure, isolation.plane),
    "accountability": Kind("accountability", accountability.arms, accountability.evaluate, accountability.figure),
    "bound-validity": Kind("bound-validity", validity.arms, validity.evaluate, validity.figure),
    "budget-split": Kind("budget-split", budget.arms, budget.evaluate, budget.figure, budget.pure),
    "inference": Kind("inference", inference.arms, inference.evaluate, inference.figure),
    "admission-vs-dnc": Kind("admission-vs-dnc", admission.arms, admission.evaluate, admission.figure,
                             follow=admission.follow),
}


def kind_of(spec: Any) -> Kind:
    """The :class:`Kind` of an ``experiment:`` section (``InputError`` if none)."""
    if spec is None:
        raise InputError("the config has no experiment: section")
    return KINDS[spec.kind]


def build_arms(base_data: dict, spec: Any, base_dir: Path | None = None) -> list[Arm]:
    """The arms of the experiment ``spec`` on the config document ``base_data``, each validated.

    Raises
    ------
    ConfigError
        An arm's variant does not validate (the message names the arm and the field).
    """
    return kind_of(spec).arms(base_data, spec, base_dir)


def run_pure(kind: Kind, arm: Arm) -> ArmResult:
    """Run an arm of the pure core (``mode`` ``"plane"`` or ``"core"``) with its kind's ``pure``."""
    import time

    if kind.pure is None or arm.mode == "loop":
        raise InputError(f"arm {arm.name}: a loop arm runs on Ray (agents.experiments)")
    t0 = time.perf_counter()
    out = kind.pure(arm)
    wall = time.perf_counter() - t0
    if isinstance(out, PlaneRun):
        return ArmResult(arm, out, wall_s=wall)
    return ArmResult(arm, None, wall_s=wall, value=out)
