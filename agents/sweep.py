"""A parameter sweep on Ray: every (grid point, seed) as a Ray task, rows streamed to disk, resumable.

:func:`run_sweep` is ``trefed sweep``. The plan (:func:`federation.experiment.sweep.plan_sweep`: the
grid, every point's config validated, a stable id per task) is made before Ray starts. Then each task
still to run becomes one Ray task (:meth:`agents.runtime.Runtime.map_unordered`: spread over the
cluster's nodes, at most twice the cluster's CPUs in flight, a task whose node or worker dies retried
elsewhere up to ``max_retries`` times). A task runs :func:`run_task`: the point's config with its seed,
through exactly the code of ``trefed run`` -- a :class:`~agents.runner.Federation` (domain controllers,
broker, auditor, tenants; real gRPC with mutual TLS on 127.0.0.1) on an
:class:`~agents.inprocess.InProcessRuntime` inside the task's worker process, driven by
:func:`agents.scenario.run_scenario` (admissions over time, the data plane, signed telemetry, the
auditor's signed reports), its ``report.json`` document reduced to a row by
:func:`federation.experiment.sweep.run_metrics`. A config with an ``experiment:`` section runs the
whole experiment per task (:func:`agents.experiments.run_experiment`, its loop arms on the same
in-process runtime) and the row holds :func:`~federation.experiment.sweep.experiment_metrics`.

Each row (the metrics, the node id and IP the task ran on, its wall time, ``status`` ``ok`` or
``error`` with the error) is appended to ``DIR/rows.jsonl`` and flushed as its task finishes; a task
that raises is a row with ``status: error`` and the sweep goes on. A rerun into the same ``DIR`` reads
that journal and runs only the tasks without an ``ok`` row. At the end (also when some tasks failed)::

    DIR/rows.jsonl      the journal: every row written, in the order the tasks finished
    DIR/rows.csv        one row per task, plan order (grid values in grid.KEY columns)
    DIR/rows.parquet    the same, columnar
    DIR/aggregate.csv   per point and metric: mean, sd, n, Student-t interval across the seeds
    DIR/sweep.json      schema trefed.sweep/1: the command, the grid, counts, the environment (trefed
                        and Ray versions, nodes, tasks per node), wall time, the serial estimate (the
                        sum of the tasks' wall times: tasks sharing cores run slower, so it overstates
                        a serial run) and the speed-up against it, the aggregate, the figures
    DIR/sweep.md        the same, short, with a table of the points
    DIR/METRIC-vs-KEY.png   each metric against each grid key, with error bars
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federation.experiment.sweep import (
    DEFAULT_METRICS,
    SCHEMA,
    SweepPlan,
    SweepTask,
    aggregate,
    aggregate_document,
    draw_figures,
    pending,
    read_journal,
    sweep_markdown,
    write_tables,
)

if TYPE_CHECKING:
    from agents.runtime import Runtime

__all__ = ["TaskSpec", "run_task", "run_sweep", "Progress"]


@dataclass(frozen=True)
class TaskSpec:
    """What a Ray task receives: the task's ids, its config document (seed set) and how to run it.

    Attributes
    ----------
    task_id, point_id, point, replicate, seed
        As in :class:`~federation.experiment.sweep.SweepTask`.
    data
        The config document to run (the point's, ``run.seed`` = ``seed``).
    base_dir
        The config file's directory (relative paths of the config resolve against it).
    experiment
        The document has an ``experiment:`` section: run the experiment.
    insecure
        Run the federation without TLS (faster; loopback only, as everything of a task is).
    """

    task_id: str
    point_id: str
    point: int
    replicate: int
    seed: int
    data: dict
    base_dir: str | None = None
    experiment: bool = False
    insecure: bool = False

    @classmethod
    def of(cls, task: SweepTask, base_dir: Path | None, experiment: bool, insecure: bool) -> TaskSpec:
        return cls(task.task_id, task.point.point_id, task.point.index, task.replicate, task.seed,
                   task.config_data(), None if base_dir is None else str(base_dir), experiment, insecure)


def _node() -> tuple[str, str]:
    """(node id, node IP) inside a Ray worker; ("local", "127.0.0.1") outside Ray."""
    if "ray" in sys.modules:  # (a serial run need not import Ray to learn it is not in a task)
        from agents.runtime import in_task

        if in_task():
            from agents.runtime import current_node

            return current_node()
    return "local", "127.0.0.1"


def _run_point(spec: TaskSpec) -> dict[str, Any]:
    """The metrics of one run (or experiment) of ``spec.data`` on an in-process runtime."""
    from agents.inprocess import InProcessRuntime
    from federation.config import parse_config
    from federation.experiment.sweep import experiment_metrics, run_metrics

    base_dir = Path(spec.base_dir) if spec.base_dir else None
    config = parse_config(spec.data, source=f"task {spec.task_id}", base_dir=base_dir)
    runtime = InProcessRuntime()
    with tempfile.TemporaryDirectory(prefix="trefed-sweep-") as tmp:
        try:
            if spec.experiment:
                from agents.experiments import run_experiment
                from federation.experiment.kinds import build_arms

                assert config.experiment is not None
                arms = build_arms(spec.data, config.experiment, base_dir)
                doc = run_experiment(config, arms, Path(tmp) / "out", runtime=runtime,  # type: ignore[arg-type]
                                     figures=False, state_dir=Path(tmp) / "state",
                                     federation_kw={"insecure": True} if spec.insecure else None,
                                     base_data=spec.data, base_dir=base_dir)
                return experiment_metrics(doc)
            from agents.runner import Federation
            from agents.scenario import run_scenario
            from federation.experiment.report import run_document

            with Federation(config, runtime=runtime, state_dir=Path(tmp) / "state",  # type: ignore[arg-type]
                            insecure=spec.insecure) as fed:
                record = run_scenario(fed)
            return run_metrics(run_document(record))
        finally:
            runtime.shutdown()


def run_task(spec: TaskSpec) -> dict[str, Any]:
    """Run one task (in a Ray worker, or in this process for a serial sweep); return its row.

    Never raises for the point's own failure: the row then has ``status: error`` and ``error`` (the
    exception's type and message, and the line it came from), so one bad point does not stop a sweep.
    """
    t0 = time.perf_counter()
    row: dict[str, Any] = {"task_id": spec.task_id, "point_id": spec.point_id, "point": spec.point,
                           "replicate": spec.replicate, "seed": spec.seed}
    node_id, node_ip = _node()
    try:
        metrics = _run_point(spec)
        row.update(status="ok", error="")
    except Exception as exc:  # noqa: BLE001 - reported in the row; the sweep goes on
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        metrics = {}
        row.update(status="error", error=f"{type(exc).__name__}: {exc}"[:2000] + where)
    row.update(node_id=node_id, node_ip=node_ip, wall_s=time.perf_counter() - t0,
               finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    row.update(metrics)
    return row


class Progress:
    """Progress lines on a stream (default stderr): done / total, failures, running, rate, ETA.

    At most one line every ``every_s`` s (and always the last); the ETA is the remaining tasks at
    the rate of the tasks finished in this run so far.
    """

    def __init__(self, total: int, already: int, *, stream: Any = None, every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.already, self.done, self.failed = total, already, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.every_s, self.clock = every_s, clock
        self.t0 = clock()
        self._last = -math.inf
        self._state: tuple[int, int] | None = None

    def update(self, row: dict[str, Any] | None, running: int, *, force: bool = False) -> None:
        if row is not None:
            self.done += 1
            self.failed += row.get("status") != "ok"
        now = self.clock()
        state = (self.done, running)
        if (not force and now - self._last < self.every_s) or (force and state == self._state):
            return
        self._last, self._state = now, state
        dt = now - self.t0
        left = self.total - self.already - self.done
        rate = self.done / dt if dt > 0 else 0.0
        eta = f"ETA {left / rate:.0f} s" if rate > 0 and left > 0 else ("done" if left <= 0 else "ETA -")
        print(f"[{dt:5.1f} s] sweep: {self.already + self.done}/{self.total} tasks done"
              f" ({self.failed} failed), {running} in flight, {rate:.2f} tasks/s, {eta}",
              file=self.stream, flush=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("trefed", "ray"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - a source tree
            out[name] = "unknown"
    return out


def run_sweep(plan: SweepPlan, out: str | Path, runtime: Runtime | None, *, base_dir: Path | None = None,
              max_retries: int = 3, max_in_flight: int | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
              figures: bool = True, level: float = 0.95, insecure: bool = False, command: str = "",
              on_phase: Callable[[str], None] | None = None, progress_stream: Any = None) -> dict[str, Any]:
    """Run the tasks of ``plan`` not yet done in ``out``; write the files of the module docstring.

    Parameters
    ----------
    plan
        The validated sweep.
    out
        Its directory (created; a rerun into it resumes).
    runtime
        The Ray runtime (started here if it is not; not shut down here), or None: every task one
        after the other in this process, no Ray (the serial reference).
    base_dir
        The config file's directory.
    max_retries
        Ray's retries of a task whose worker or node died.
    max_in_flight
        Tasks submitted at once (default twice the cluster's CPUs).
    metrics
        The metrics of ``sweep.md``'s table and of the figures.
    figures, level, insecure
        Draw the figures; the intervals' confidence level; run the federations without TLS.
    command
        The command line, for ``sweep.json``.
    on_phase
        Called with a sentence as each phase begins.
    progress_stream
        Where the progress lines go (default stderr).

    Returns
    -------
    dict
        ``sweep.json``.
    """
    say = on_phase or (lambda s: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "rows.jsonl"
    before = read_journal(journal)
    todo = pending(plan, before)
    skipped = len(plan.tasks) - len(todo)
    if skipped:
        say(f"resuming: {skipped} of {len(plan.tasks)} tasks already done in {out}")
    specs = [TaskSpec.of(t, base_dir, plan.experiment, insecure) for t in todo]
    where = "serial, in this process (no Ray)" if runtime is None else "nothing left to run: Ray not started"
    nodes: list[dict[str, Any]] = []
    if runtime is not None and specs:
        say(f"starting Ray: joining the cluster at {runtime.address}" if runtime.address
            else "starting Ray: a local instance on 127.0.0.1")
        runtime.start()
        found = runtime.nodes()
        nodes = [{"node_id": n.node_id, "address": n.address, "cpus": n.cpus} for n in found if n.alive]
        where = f"Ray cluster at {runtime.address}" if runtime.address else "local Ray on 127.0.0.1"
        cpus = sum(n["cpus"] for n in nodes)
        if max_in_flight is None:
            max_in_flight = max(1, int(2 * cpus))
        say(f"{len(nodes)} node(s), {cpus:g} CPUs: {len(specs)} tasks to run, at most {max_in_flight} in flight")
    progress = Progress(len(plan.tasks), skipped, stream=progress_stream)
    t0 = time.perf_counter()
    serial_s = 0.0
    per_node: dict[str, int] = {}
    running = 0
    if journal.exists():  # a last line cut short (the driver was killed writing it) is no row: drop it
        raw = journal.read_bytes()
        if raw and not raw.endswith(b"\n"):
            with open(journal, "r+b") as g:
                g.truncate(raw.rfind(b"\n") + 1)
    with open(journal, "a", encoding="utf-8") as f:

        def record(row: dict[str, Any]) -> None:
            nonlocal serial_s
            f.write(json.dumps(row, allow_nan=True, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
            serial_s += float(row.get("wall_s", 0.0))
            per_node[row["node_id"]] = per_node.get(row["node_id"], 0) + 1
            if row.get("status") != "ok":
                say(f"task {row['task_id']} (point {row['point']}, seed {row['seed']}) failed: {row['error']}")

        if runtime is None or not specs:
            for spec in specs:
                row = run_task(spec)
                record(row)
                progress.update(row, 0)
        else:
            total = len(specs)
            finished = 0
            running = min(total, max_in_flight or total)
            for index, result in runtime.map_unordered(run_task, specs, max_retries=max_retries,
                                                       max_in_flight=max_in_flight):
                if index < 0:
                    progress.update(None, min(total - finished, max_in_flight or total))
                    continue
                finished += 1
                running = min(total - finished, max_in_flight or total)  # submitted, not yet finished
                if not isinstance(result, dict):  # TaskLost: Ray could not finish it
                    s = specs[index]
                    result = {"task_id": s.task_id, "point_id": s.point_id, "point": s.point,
                              "replicate": s.replicate, "seed": s.seed, "status": "error",
                              "error": str(getattr(result, "error", result)), "node_id": "", "node_ip": "",
                              "wall_s": 0.0, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                record(result)
                progress.update(result, running)
    progress.update(None, 0, force=True)
    wall = time.perf_counter() - t0
    say(f"aggregating {len(plan.tasks)} tasks over {len(plan.points)} points")
    rows = read_journal(journal)
    summaries = aggregate(plan, rows)
    files = write_tables(plan, rows, summaries, out, level)
    drawn = draw_figures(plan, summaries, metrics, out, level) if figures else []
    for m in metrics if tuple(metrics) != DEFAULT_METRICS else ():  # (asked for by name)
        if not any(m in s.metrics for s in summaries):
            say(f"metric {m}: no row has it (see rows.csv for the metrics there are)")
    ok = sum(s.ok for s in summaries)
    failed = sum(s.failed for s in summaries)
    versions = _versions()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "config": plan.config_path,
        "config_sha256": plan.config_sha256,
        "experiment": plan.experiment,
        "grid": [{"key": a.key, "values": list(a.values)} for a in plan.axes],
        "seeds": plan.seeds,
        "points": len(plan.points),
        "tasks": {"total": len(plan.tasks), "ok": ok, "failed": failed, "skipped": skipped, "ran": len(specs),
                  "not_run": len(plan.tasks) - ok - failed, "per_node": per_node},
        "environment": {"trefed_version": versions["trefed"], "ray_version": versions["ray"],
                        "python": platform.python_version(), "platform": platform.platform(),
                        "where": where, "address": runtime.address if runtime is not None else None,
                        "nodes": nodes if runtime is not None else [{"node_id": "local", "address": "127.0.0.1",
                                                                     "cpus": 1.0}],
                        "max_retries": max_retries},
        "wall_s": wall,
        "serial_estimate_s": serial_s,
        "speedup": serial_s / wall if wall > 0 and specs else math.nan,
        "level": level,
        "aggregate": aggregate_document(summaries, level),
        "files": [*files, "rows.jsonl", "sweep.json", "sweep.md"],
        "figures": drawn,
    }
    text = json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n"
    (out / "sweep.json").write_text(text, encoding="utf-8")
    (out / "sweep.md").write_text(sweep_markdown(doc, summaries, metrics, level), encoding="utf-8")
    return doc


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
