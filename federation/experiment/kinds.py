"""The experiments by kind: how each builds its arms, runs a data-plane arm, judges and draws.

A :class:`Kind` bundles the functions of one experiment module
(:mod:`~federation.experiment.overload`, :mod:`~federation.experiment.isolation`,
:mod:`~federation.experiment.accountability`, :mod:`~federation.experiment.validity`);
:func:`kind_of` finds the one of a config's ``experiment:`` section and :func:`build_arms` makes
its arms (validated configs, before anything starts). The driver that runs loop arms on Ray is
:mod:`agents.experiments`; data-plane arms run here, in the pure core (:meth:`Kind.plane`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.errors import InputError
from federation.experiment import accountability, isolation, overload, validity
from federation.experiment.arms import Arm
from federation.experiment.plane import PlaneRun
from federation.experiment.results import ArmResult, Outcome

__all__ = ["Kind", "KINDS", "kind_of", "build_arms"]


@dataclass(frozen=True)
class Kind:
    """One experiment: ``arms(base_data, spec, base_dir)``, ``evaluate(spec, results)``,
    ``figure(outcome, results, out_dir) -> file names`` and, for data-plane arms, ``plane(arm)``."""

    name: str
    arms: Callable[..., list[Arm]]
    evaluate: Callable[[Any, Sequence[ArmResult]], Outcome]
    figure: Callable[[Outcome, Sequence[ArmResult], Path], list[str]]
    plane: Callable[[Arm], PlaneRun] | None = None


#: Every kind, by the ``experiment.kind`` that selects it.
KINDS: dict[str, Kind] = {
    "overload-admission": Kind("overload-admission", overload.arms, overload.evaluate, overload.figure),
    "isolation": Kind("isolation", isolation.arms, isolation.evaluate, isolation.figure, isolation.plane),
    "accountability": Kind("accountability", accountability.arms, accountability.evaluate, accountability.figure),
    "bound-validity": Kind("bound-validity", validity.arms, validity.evaluate, validity.figure),
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
