"""Run an experiment's arms: loop arms on Ray (a fresh federation each, one shared runtime), data-plane
arms in the pure core; then judge, draw and write (:mod:`federation.experiment.kinds`).

:func:`run_experiment` is what ``trefed run CONFIG`` does when the config has an ``experiment:``
section. Output directory::

    DIR/experiment.json        schema trefed.experiment/1 (federation.experiment.results)
    DIR/report.md              the claim, the reading paragraph, the results table, the checks
    DIR/*.png                  the experiment's figure(s)
    DIR/arms/NAME/             per loop arm: the loop's report.json, report.md, telemetry, ...
    DIR/arms/NAME/arm.json     per arm of the pure core (data plane or calculus): overrides, metrics
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.runtime import Runtime
from federation.experiment.arms import Arm
from federation.experiment.kinds import kind_of, run_pure
from federation.experiment.results import ArmResult, experiment_document, jsonable, write_experiment

__all__ = ["run_arm", "run_experiment"]


def run_arm(arm: Arm, runtime: Runtime | None, *, out: Path | None = None,
            on_phase: Callable[[str], None] | None = None, state_dir: str | Path | None = None,
            federation_kw: dict[str, Any] | None = None) -> ArmResult:
    """Run a loop arm: the whole loop (:func:`agents.scenario.run_scenario`) on a fresh federation on
    ``runtime`` (``federation_kw``: further keyword arguments of :class:`~agents.runner.Federation`);
    write its run (``report.json``, ``report.md``, telemetry, ...; no figures) into ``out``."""
    say = on_phase or (lambda s: None)
    t0 = time.perf_counter()
    if arm.mode != "loop":
        raise ValueError(f"arm {arm.name}: a {arm.mode!r} arm runs in the pure core (its kind's plane())")
    from agents.runner import Federation
    from agents.scenario import run_scenario
    from federation.experiment.report import write_run

    if runtime is None:
        raise ValueError(f"arm {arm.name}: a loop arm needs a Ray runtime")
    sub = None if state_dir is None else Path(state_dir) / arm.name
    with Federation(arm.config, runtime=runtime, state_dir=sub, on_phase=None, **(federation_kw or {})) as fed:
        record = run_scenario(fed, on_phase=lambda s: say(f"  {s}"))
    doc = write_run(record, out, figures=False) if out is not None else None
    return ArmResult(arm, record.plane, record, doc, time.perf_counter() - t0)


def run_experiment(config: Any, arms: Sequence[Arm], out: str | Path, *, runtime: Runtime | None = None,
                   on_phase: Callable[[str], None] | None = None, figures: bool = True,
                   state_dir: str | Path | None = None, federation_kw: dict[str, Any] | None = None,
                   base_data: dict[str, Any] | None = None, base_dir: Path | None = None) -> dict[str, Any]:
    """Run every arm of ``config.experiment`` (built by :func:`federation.experiment.kinds.build_arms`),
    judge the claim, write the outputs of the module docstring into ``out``; return ``experiment.json``.

    Parameters
    ----------
    config
        The base config (its ``experiment:`` section says the kind and the knobs).
    arms
        Its arms, validated.
    out
        Output directory.
    runtime
        The Ray runtime the loop arms share (started here if it is not; not shut down here).
        Unused, and may be None, when every arm is a data-plane arm.
    on_phase
        Called with a sentence as each arm (and each phase of a loop arm) begins.
    figures
        Draw the experiment's figure(s).
    state_dir, federation_kw
        The domains' state directory (one sub-directory per arm) and further keyword arguments of
        every loop arm's :class:`~agents.runner.Federation`.
    base_data, base_dir
        The config document the arms were built from and its directory: a kind with ``follow``
        builds its further arms from them once the first arms have run (default: the first
        arm's document, without its overrides' effect on what ``follow`` sets anew).
    """
    say = on_phase or (lambda s: None)
    spec = config.experiment
    kind = kind_of(spec)
    out = Path(out)
    t_all = time.perf_counter()
    results: list[ArmResult] = []
    timings: dict[str, float] = {}
    if any(a.mode == "loop" for a in arms):
        if runtime is None:
            raise ValueError("loop arms need a Ray runtime")
        runtime.start()
    todo = list(arms)
    followed = kind.follow is None
    while todo:
        total = len(results) + len(todo)
        for i, arm in enumerate(todo, len(results) + 1):
            sets = ", ".join(f"{k}={json.dumps(v)[:40]}" for k, v in arm.overrides) or "the base config"
            say(f"arm {i}/{total} {arm.name} ({arm.mode}): {sets}")
            if arm.mode != "loop":
                r = run_pure(kind, arm)
            else:
                r = run_arm(arm, runtime, out=out / "arms" / arm.name, on_phase=say, state_dir=state_dir,
                            federation_kw=federation_kw)
            results.append(r)
            timings[arm.name] = r.wall_s
        todo = []
        if not followed and kind.follow is not None:  # once: the arms that depend on the first ones
            followed = True
            todo = kind.follow(spec, base_data if base_data is not None else arms[0].data, results, base_dir)
    say(f"judging the claim of {spec.kind} over {len(results)} arms")
    outcome = kind.evaluate(spec, results)
    for r in results:
        if r.record is None:
            d = out / "arms" / r.arm.name
            d.mkdir(parents=True, exist_ok=True)
            (d / "arm.json").write_text(json.dumps(jsonable({
                "name": r.arm.name, "mode": r.arm.mode, "overrides": [[k, v] for k, v in r.arm.overrides],
                "params": dict(r.arm.params), "metrics": outcome.metrics.get(r.arm.name, {})}),
                indent=2, allow_nan=False) + "\n")
    drawn = kind.figure(outcome, results, out) if figures else []
    timings["total_s"] = time.perf_counter() - t_all
    doc = experiment_document(spec, config.name, results, outcome, drawn, timings)
    write_experiment(doc, out)
    return doc
