"""A parameter sweep's pure side: the grid, its points and tasks, the rows, the aggregate across seeds.

``trefed sweep CONFIG --grid KEY=V1,V2 ... --seeds N`` (the driver is :mod:`agents.sweep`) runs every
point of the cartesian product of the grid's axes, each ``N`` times with seeds ``s0, s0 + 1, ...,
s0 + N - 1`` (``s0`` the point's ``run.seed``): one *task* per (point, seed), one *row* per task.

* :func:`parse_grid` reads the ``--grid`` options (``KEY=V1,V2,...``: a dotted path of
  :mod:`federation.experiment.arms` and YAML values, so ``run.scheduler=fifo,wfq``,
  ``tenants[0].intent.epsilon=1e-3,1e-2`` or ``tenants[1].intent.traffic.sources=[1,2],[3,4]``);
  :func:`plan_sweep` expands it into :class:`SweepPoint` s and :class:`SweepTask` s, every point's
  config validated before anything runs (errors name the key).
* Each task has a stable id (a hash of the config's bytes, the point's overrides and the seed), so a
  rerun into the same directory knows what is done: :func:`read_journal` reads the rows written so
  far (``rows.jsonl``, one JSON object per line, appended as tasks finish), :func:`pending` the
  tasks still to run (those with no ``ok`` row; a failed task runs again).
* :func:`run_metrics` / :func:`experiment_metrics` are the numbers a row holds, taken from the run's
  ``report.json`` document (:mod:`federation.experiment.report`) or an experiment's
  ``experiment.json`` (:mod:`federation.experiment.results`).
* :func:`aggregate` summarises every point over its seeds with :class:`MeanEstimate` (Student-t
  interval: the seeds are independent replications).
* :func:`sweep_markdown`, :func:`draw_figures`, :func:`write_tables`: ``sweep.md``, the figures
  (each metric against each grid key, with error bars), ``rows.csv`` / ``rows.parquet`` /
  ``aggregate.csv``.

Pure: numpy and scipy (pyarrow and matplotlib only where they write).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from federation.errors import ConfigError, FieldError, InputError
from federation.experiment.arms import override, parse_key
from federation.stats.base import Estimate, Interval, _check_level

__all__ = [
    "SCHEMA",
    "GridAxis",
    "SweepPoint",
    "SweepTask",
    "SweepPlan",
    "MeanEstimate",
    "PointSummary",
    "parse_grid",
    "plan_sweep",
    "read_journal",
    "latest_rows",
    "pending",
    "run_metrics",
    "experiment_metrics",
    "aggregate",
    "aggregate_document",
    "write_tables",
    "draw_figures",
    "sweep_markdown",
    "DEFAULT_METRICS",
]

#: The ``schema`` of ``sweep.json``.
SCHEMA = "trefed.sweep/1"

#: Metrics drawn and tabulated when none are asked for (those a row has).
DEFAULT_METRICS: tuple[str, ...] = ("admitted", "worst_violation_rate", "violation_found", "claim_holds")

#: Columns of a row that are not metrics.
META_COLUMNS: tuple[str, ...] = ("task_id", "point_id", "point", "replicate", "seed", "status", "error",
                                 "node_id", "node_ip", "wall_s", "finished_at")


# ---------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid KEY=V1,V2,...``: a dotted path into the config and the values it takes, in order."""

    key: str
    values: tuple[Any, ...]


def _canon(x: Any) -> str:
    """Canonical JSON of a value (sorted keys, no spaces): what ids and duplicate checks compare."""
    return json.dumps(x, sort_keys=True, separators=(",", ":"), allow_nan=True)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)")


def _number(v: Any) -> Any:
    """``5e7`` (a string to YAML 1.1, which wants ``5.0e+7``) as the float it means; else ``v``."""
    return float(v) if isinstance(v, str) and _NUMBER.fullmatch(v) else v


def parse_grid(specs: Sequence[str]) -> tuple[GridAxis, ...]:
    """The axes of ``--grid`` options ``KEY=V1,V2,...``, in the order given.

    Values are YAML scalars or flow collections separated by commas at the top level (the text
    after ``=`` is read as the YAML sequence ``[V1,V2,...]``): ``0.01,0.02``, ``fifo,wfq``,
    ``true,false``, ``[1,2],[3,4]``; ``5e7`` is the number 5e7 (YAML 1.1 alone would read a string).

    Raises
    ------
    InputError
        ``--grid KEY: ...`` naming the key (or the option) when the option has no ``=``, the key is
        not a dotted path, is given twice or is ``run.seed`` (the seeds come from ``--seeds``), or the
        values are empty, not YAML, or repeat.
    """
    import yaml

    axes: list[GridAxis] = []
    seen: set[str] = set()
    for spec in specs:
        key, sep, text = str(spec).partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--grid {spec!r}: expected KEY=V1,V2,... (a dotted config path such as "
                             "tenants[0].intent.epsilon, then comma-separated values)")
        try:
            parse_key(key)
        except FieldError as exc:
            raise InputError(f"--grid {key}: {exc.problem}") from None
        if key in seen:
            raise InputError(f"--grid {key}: the key is given twice (list all its values in one --grid)")
        if key == "run.seed":
            raise InputError("--grid run.seed: the seeds are set by --seeds N (seeds run.seed .. run.seed+N-1)")
        seen.add(key)
        if not text.strip():
            raise InputError(f"--grid {key}: no values after '='")
        if re.search(r"(^|,)\s*(?=,|$)", text):  # YAML would drop a trailing one silently
            raise InputError(f"--grid {key}: values {text!r} must be comma-separated, none empty")
        try:
            values = yaml.safe_load(f"[{text}]")
        except yaml.YAMLError as exc:
            raise InputError(f"--grid {key}: values {text!r} are not YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(values, list) or not values or any(v is None for v in values):
            raise InputError(f"--grid {key}: values {text!r} must be comma-separated, none empty")
        values = [_number(v) for v in values]
        canon = [_canon(v) for v in values]
        dup = next((v for v, c in zip(values, canon) if canon.count(c) > 1), None)
        if dup is not None:
            raise InputError(f"--grid {key}: value {dup!r} is given twice")
        axes.append(GridAxis(key, tuple(values)))
    return tuple(axes)


@dataclass(frozen=True)
class SweepPoint:
    """One point of the grid.

    Attributes
    ----------
    index
        Its position in the grid's cartesian product (the last axis varies fastest), from 0.
    point_id
        Stable id: 16 hex digits of the SHA-256 of the config's bytes and the overrides.
    overrides
        ``(key, value)`` per axis, in axis order.
    data
        The config document of the point (overrides applied; its own ``run.seed`` is ``base_seed``).
    base_seed
        The point's ``run.seed``: replicate ``j`` runs with ``base_seed + j``.
    """

    index: int
    point_id: str
    overrides: tuple[tuple[str, Any], ...]
    data: dict
    base_seed: int

    def label(self) -> str:
        """``key=value, ...`` (``base config`` for a grid of no axes)."""
        return ", ".join(f"{k}={_canon(v)}" for k, v in self.overrides) or "base config"


@dataclass(frozen=True)
class SweepTask:
    """One (point, seed): what one Ray task runs and one row records.

    Attributes
    ----------
    task_id
        Stable id (16 hex digits): the point's id and the seed.
    point
        Its point.
    replicate
        ``0 .. N-1``.
    seed
        The ``run.seed`` it runs with, ``point.base_seed + replicate``.
    """

    task_id: str
    point: SweepPoint
    replicate: int
    seed: int

    def config_data(self) -> dict:
        """The config document this task runs: the point's, with ``run.seed`` set to :attr:`seed`."""
        return override(self.point.data, "run.seed", self.seed)


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: the grid, its points and every task, before anything runs.

    Attributes
    ----------
    config_path, config_sha256
        The config file and the SHA-256 of its bytes (part of every id).
    axes
        The grid.
    seeds
        Replicates per point.
    points, tasks
        Every point (grid order) and every task (point by point, replicate by replicate).
    experiment
        The config has an ``experiment:`` section: a task runs the experiment, not one run.
    """

    config_path: str
    config_sha256: str
    axes: tuple[GridAxis, ...]
    seeds: int
    points: tuple[SweepPoint, ...]
    tasks: tuple[SweepTask, ...]
    experiment: bool


def _hash(*parts: Any) -> str:
    return hashlib.sha256(_canon(list(parts)).encode()).hexdigest()[:16]


def plan_sweep(base_data: dict, axes: Sequence[GridAxis], seeds: int, *, config_sha256: str,
               config_path: str = "<config>", base_dir: Path | None = None) -> SweepPlan:
    """Every point and task of the sweep, each point's config validated as a whole.

    Parameters
    ----------
    base_data
        The config document (as ``yaml.safe_load`` returns it).
    axes
        The grid (:func:`parse_grid`); no axes: one point, the base config.
    seeds
        Replicates per point, >= 1.
    config_sha256
        SHA-256 (hex) of the config file's bytes.
    config_path, base_dir
        The config file (in messages) and its directory (a relative ``keys_dir`` is resolved against it).

    Notes
    -----
    ``keys_dir`` is dropped from every point: the tasks run concurrently, each with fresh keys and a
    CA in memory, so none writes key files another is reading.

    Raises
    ------
    InputError
        ``--seeds`` below 1, or ``--grid KEY: ...`` naming the key when it does not exist in the config
        or a value makes the config invalid (the message names the field and the value).
    """
    from federation.config import parse_config

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"--seeds(={seeds!r}) must be an integer >= 1")
    base = {k: v for k, v in base_data.items() if k != "keys_dir"}
    if not isinstance(base.get("run", {}), dict):
        raise InputError("run: must be a mapping")
    base.setdefault("run", {})
    for axis in axes:  # a key that does not exist fails on its first value, naming the key
        try:
            override(base, axis.key, axis.values[0])
        except ConfigError as exc:
            problem = exc.problem if isinstance(exc, FieldError) and exc.field == axis.key else str(exc)
            raise InputError(f"--grid {axis.key}: {problem}") from None
    points: list[SweepPoint] = []
    tasks: list[SweepTask] = []
    for index, combo in enumerate(itertools.product(*(a.values for a in axes))):
        overrides = tuple((a.key, v) for a, v in zip(axes, combo))
        data = base
        for key, value in overrides:
            data = override(data, key, value)
        try:
            config = parse_config(data, source=config_path, base_dir=base_dir)
        except ConfigError as exc:
            where = ", ".join(f"--grid {k}={_canon(v)}" for k, v in overrides)
            raise InputError(f"{where}: {exc}") from None
        seed0 = int(config.run.seed)
        if seed0 + seeds - 1 > 2**63 - 1:
            raise InputError(f"--seeds(={seeds}): run.seed(={seed0}) + {seeds - 1} exceeds 2**63 - 1")
        pid = _hash(config_sha256, [[k, v] for k, v in overrides])
        point = SweepPoint(index, pid, overrides, data, seed0)
        points.append(point)
        for j in range(seeds):
            tasks.append(SweepTask(_hash(pid, seed0 + j), point, j, seed0 + j))
    experiment = bool(base.get("experiment"))
    return SweepPlan(config_path, config_sha256, tuple(axes), seeds, tuple(points), tuple(tasks), experiment)


# ---------------------------------------------------------------------------- rows


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """The rows of ``rows.jsonl`` in the order written; [] when the file does not exist.

    A last line cut short (the driver was killed while writing it) is skipped; any other line that is
    not a JSON object is an ``InputError`` naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):  # torn tail: no newline was written after it
                continue
            raise InputError(f"{path}:{i}: not a JSON row (the sweep's journal is damaged)") from None
        if not isinstance(row, dict) or "task_id" not in row:
            raise InputError(f"{path}:{i}: not a row of a sweep")
        rows.append(row)
    return rows


def latest_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """task id -> its row: an ``ok`` row wins over failures; else the last one written."""
    out: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        tid = str(r["task_id"])
        if tid not in out or out[tid].get("status") != "ok":
            out[tid] = r
    return out


def pending(plan: SweepPlan, rows: Iterable[Mapping[str, Any]]) -> list[SweepTask]:
    """The tasks of ``plan`` with no ``ok`` row in ``rows`` (failed ones run again), plan order."""
    done = {tid for tid, r in latest_rows(rows).items() if r.get("status") == "ok"}
    return [t for t in plan.tasks if t.task_id not in done]


def _num(x: Any) -> float:
    """A number of a report document (``None`` -> nan, ``"inf"`` -> inf, bools -> 0/1)."""
    if x is None:
        return math.nan
    if isinstance(x, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(x, math.nan)
    return float(x)


def run_metrics(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of one run's ``report.json`` document (schema ``trefed.run/1``).

    Counts: ``admitted``, ``served``, ``rejected`` (tenants), ``violation_found`` and ``exit_code``
    (0/1, as ``trefed run`` exits), ``blamed_count`` and ``blamed`` (domain ids, comma-separated);
    ``worst_violation_rate`` / ``mean_violation_rate``: the largest and the mean measured end-to-end
    violation rate over the served tenants (the auditor's estimate for a contract, the data plane's
    for a tenant served without one; probability); ``packets``. Per tenant ``ID``:
    ``tenant.ID.admitted`` (0/1), ``tenant.ID.violation_rate``, ``tenant.ID.p99.9_s`` (s; nan when not
    served), ``tenant.ID.verdict`` (text). Per domain: ``domain.ID.blamed`` (0/1).
    """
    out: dict[str, Any] = {}
    tenants = doc.get("tenants", [])
    rates = []
    for t in tenants:
        tid = t["tenant_id"]
        rate = _num(t.get("violation", {}).get("rate")) if t.get("served") else math.nan
        out[f"tenant.{tid}.admitted"] = int(bool(t.get("admitted")))
        out[f"tenant.{tid}.violation_rate"] = rate
        out[f"tenant.{tid}.p99.9_s"] = _num(t.get("quantiles", {}).get("p99.9"))
        out[f"tenant.{tid}.verdict"] = str(t.get("verdict", ""))
        if math.isfinite(rate):
            rates.append(rate)
    verdict = doc.get("verdict", {})
    blamed = list(verdict.get("blamed", []))
    out.update({
        "admitted": sum(1 for t in tenants if t.get("admitted")),
        "served": sum(1 for t in tenants if t.get("served")),
        "rejected": sum(1 for t in tenants if not t.get("admitted")),
        "violation_found": int(bool(verdict.get("violation_found"))),
        "exit_code": int(verdict.get("exit_code", 0)),
        "blamed_count": len(blamed),
        "blamed": ",".join(blamed),
        "worst_violation_rate": max(rates) if rates else math.nan,
        "mean_violation_rate": float(np.mean(rates)) if rates else math.nan,
        "packets": int(doc.get("data_plane", {}).get("packets", 0)),
    })
    for d in doc.get("domains", []):
        out[f"domain.{d['domain_id']}.blamed"] = int(bool(d.get("blamed")))
    return out


def experiment_metrics(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of an ``experiment.json`` document (schema ``trefed.experiment/1``).

    ``claim_holds`` (0/1) and ``exit_code`` (as ``trefed run`` exits on it), ``check.NAME`` (each
    check's value), ``arm.NAME.METRIC`` (each numeric metric of each arm).
    """
    claim = doc.get("claim", {})
    out: dict[str, Any] = {"claim_holds": int(bool(claim.get("holds"))), "exit_code": int(claim.get("exit_code", 0))}
    for c in claim.get("checks", []):
        v = c.get("value")
        if isinstance(v, (int, float)) or v is None or v in ("inf", "-inf"):
            out[f"check.{c['name']}"] = _num(v)
    for arm in doc.get("arms", []):
        for k, v in (arm.get("metrics") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"arm.{arm['name']}.{k}"] = float(v)
            elif isinstance(v, bool):
                out[f"arm.{arm['name']}.{k}"] = int(v)
    return out


# ---------------------------------------------------------------------------- the aggregate


@dataclass(frozen=True)
class MeanEstimate(Estimate):
    r"""The mean of a metric over independent replications (seeds), with a Student-t interval.

    Attributes
    ----------
    values
        The finite per-seed values, in seed order (nan and inf are left out: a tenant not served at
        some seed has no violation rate there).
    dropped
        How many replications had no finite value.

    Notes
    -----
    With :math:`n` values :math:`x_i`, mean :math:`\bar x` and sample standard deviation
    :math:`s = \sqrt{\sum (x_i - \bar x)^2 / (n - 1)}`, the two-sided interval at ``level`` is

    .. math::

        \bar x \pm t_{(1 + \mathrm{level})/2,\, n-1}\, s / \sqrt{n}

    (Student 1908), exact when the :math:`x_i` are independent and normal and asymptotically right
    for any finite variance. The seeds of a sweep give independent replications (every random stream
    of the data plane derives from ``run.seed``), so no dependence correction applies across seeds.
    Degenerate cases: no value: ``value`` nan and the interval ``(nan, nan)``; one value: the interval
    ``(-inf, inf)`` (no spread is known); all values equal: the point ``(x, x)``.
    """

    method: ClassVar[str] = "student-t over seeds"

    values: tuple[float, ...]
    dropped: int = 0

    @classmethod
    def of(cls, values: Iterable[Any]) -> MeanEstimate:
        """From raw values (``None``, nan, inf and non-numbers are dropped and counted)."""
        kept: list[float] = []
        dropped = 0
        for v in values:
            x = _num(v) if (v is None or isinstance(v, (str, bool, int, float, np.number))) else math.nan
            if isinstance(v, str) and v not in ("inf", "-inf"):
                x = math.nan
            if math.isfinite(x):
                kept.append(x)
            else:
                dropped += 1
        return cls(tuple(kept), dropped)

    @property
    def n(self) -> int:
        """Replications with a finite value."""
        return len(self.values)

    @property
    def n_eff(self) -> float:
        return float(self.n)

    @property
    def value(self) -> float:
        """The mean (nan without values)."""
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float:
        """The sample standard deviation (``ddof=1``; nan with fewer than 2 values)."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan

    def interval(self, level: float = 0.95) -> Interval:
        """The Student-t interval of the Notes at ``level`` in (0, 1)."""
        level = _check_level(level)
        if self.n == 0:
            return Interval(math.nan, math.nan)
        if self.n == 1:
            return Interval(-math.inf, math.inf)
        from scipy import stats

        half = float(stats.t.ppf(0.5 + level / 2.0, self.n - 1)) * self.sd / math.sqrt(self.n)
        m = self.value
        return Interval(m - half, m + half)


@dataclass(frozen=True)
class PointSummary:
    """One grid point over its seeds.

    Attributes
    ----------
    point
        The point.
    ok, failed
        Tasks with a row ``ok`` / failed (the rest have not run).
    errors
        ``(seed, error)`` of each failed task.
    metrics
        Metric name -> :class:`MeanEstimate` over the ``ok`` rows (numeric metrics only).
    """

    point: SweepPoint
    ok: int
    failed: int
    errors: tuple[tuple[int, str], ...]
    metrics: dict[str, MeanEstimate]


def _is_metric(name: str, values: Sequence[Any]) -> bool:
    return name not in META_COLUMNS and not name.startswith("grid.") and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) or v in ("inf", "-inf")
        for v in values)


def aggregate(plan: SweepPlan, rows: Iterable[Mapping[str, Any]]) -> list[PointSummary]:
    """Every point of ``plan`` summarised over its seeds, from its tasks' rows (rows of other tasks
    are ignored; of several rows of a task, :func:`latest_rows` decides).

    The values enter each :class:`MeanEstimate` in seed order whatever order the tasks finished in,
    so a sweep on a cluster and the same tasks run one by one give bit-identical aggregates.
    """
    latest = latest_rows(rows)
    out: list[PointSummary] = []
    by_point: dict[str, list[SweepTask]] = {}
    for t in plan.tasks:
        by_point.setdefault(t.point.point_id, []).append(t)
    for p in plan.points:
        tasks = sorted(by_point.get(p.point_id, []), key=lambda t: t.seed)
        got = [(t, latest[t.task_id]) for t in tasks if t.task_id in latest]
        ok = [r for _, r in got if r.get("status") == "ok"]
        errors = tuple((t.seed, str(r.get("error", ""))) for t, r in got if r.get("status") != "ok")
        names: list[str] = []
        for r in ok:
            names += [k for k in r if k not in names]
        metrics = {}
        for name in names:
            values = [r.get(name) for r in ok]
            if _is_metric(name, values):
                metrics[name] = MeanEstimate.of(values)
        out.append(PointSummary(p, len(ok), len(errors), errors, metrics))
    return out


def _json_num(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


def aggregate_document(summaries: Sequence[PointSummary], level: float = 0.95) -> list[dict[str, Any]]:
    """The ``aggregate`` of ``sweep.json``: per point its overrides, counts, errors and per metric
    ``mean``, ``sd``, ``n`` (seeds with a value), ``ci_low``, ``ci_high`` (at ``level``)."""
    out = []
    for s in summaries:
        metrics = {}
        for name, est in s.metrics.items():
            iv = est.interval(level)
            metrics[name] = {"mean": _json_num(est.value), "sd": _json_num(est.sd), "n": est.n,
                             "ci_low": _json_num(iv.low), "ci_high": _json_num(iv.high)}
        out.append({"point": s.point.index, "point_id": s.point.point_id,
                    "overrides": [[k, v] for k, v in s.point.overrides], "ok": s.ok, "failed": s.failed,
                    "errors": [{"seed": seed, "error": e} for seed, e in s.errors], "metrics": metrics})
    return out


# ---------------------------------------------------------------------------- files


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float)):
        return v
    return _canon(v)


def write_tables(plan: SweepPlan, rows: Iterable[Mapping[str, Any]], summaries: Sequence[PointSummary],
                 out: str | Path, level: float = 0.95) -> list[str]:
    """``rows.csv`` and ``rows.parquet`` (one row per task that ran, plan order, the union of the rows'
    columns; grid values in ``grid.KEY``) and ``aggregate.csv`` (per point and metric: mean, sd, n,
    interval at ``level``); returns the file names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    latest = latest_rows(rows)
    table_rows = []
    for t in plan.tasks:
        r = latest.get(t.task_id)
        if r is not None:
            grid = {f"grid.{k}": _cell(v) for k, v in t.point.overrides}
            table_rows.append({**{k: r.get(k) for k in META_COLUMNS if k in r}, **grid,
                               **{k: _cell(v) for k, v in r.items() if k not in META_COLUMNS}})
    columns: list[str] = []
    for r in table_rows:
        columns += [k for k in r if k not in columns]
    with open(out / "rows.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in table_rows:
            w.writerow({k: r.get(k, "") for k in columns})
    arrays = {}
    for c in columns:
        vals = [r.get(c) for r in table_rows]
        kinds = {type(v) for v in vals if v is not None}
        if kinds <= {int, float} and kinds:
            arrays[c] = pa.array([math.nan if v is None else float(v) for v in vals]
                                 if float in kinds else vals, type=pa.float64() if float in kinds else pa.int64())
        else:
            arrays[c] = pa.array([None if v is None else str(v) for v in vals], type=pa.string())
    pq.write_table(pa.table(arrays) if arrays else pa.table({"task_id": pa.array([], pa.string())}),
                   out / "rows.parquet")
    with open(out / "aggregate.csv", "w", newline="", encoding="utf-8") as f:
        agg = csv.writer(f)
        agg.writerow(["point", *(f"grid.{a.key}" for a in plan.axes), "ok", "failed", "metric", "mean", "sd", "n",
                    f"ci_low_{level:g}", f"ci_high_{level:g}"])
        for s in summaries:
            for name, est in s.metrics.items():
                iv = est.interval(level)
                agg.writerow([s.point.index, *(_cell(v) for _, v in s.point.overrides), s.ok, s.failed, name,
                            est.value, est.sd, est.n, iv.low, iv.high])
    return ["rows.csv", "rows.parquet", "aggregate.csv"]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def draw_figures(plan: SweepPlan, summaries: Sequence[PointSummary], metrics: Sequence[str], out: str | Path,
                 level: float = 0.95) -> list[str]:
    """One PNG per (metric, grid key): the metric's mean against the key's values with error bars (the
    interval at ``level``; none where a point has one seed), one line per combination of the other
    keys. Metrics no point has, and keys of one value, are skipped. Returns the file names."""
    if not plan.axes:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    files = []
    for metric in metrics:
        if not any(metric in s.metrics and s.metrics[metric].n for s in summaries):
            continue
        for ai, axis in enumerate(plan.axes):
            if len(axis.values) < 2:  # nothing to plot against
                continue
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis.values)
            xs_of = {_canon(v): (float(v) if numeric else i) for i, v in enumerate(axis.values)}
            lines: dict[str, list[tuple[float, float, float, float]]] = {}
            for s in summaries:
                est = s.metrics.get(metric)
                if est is None or est.n == 0:
                    continue
                rest = ", ".join(f"{k}={_canon(v)}" for j, (k, v) in enumerate(s.point.overrides) if j != ai)
                iv = est.interval(level)
                lo = est.value - iv.low if math.isfinite(iv.low) else 0.0
                hi = iv.high - est.value if math.isfinite(iv.high) else 0.0
                lines.setdefault(rest, []).append((xs_of[_canon(s.point.overrides[ai][1])], est.value, lo, hi))
            fig, ax = plt.subplots(figsize=(6.4, 4.0))
            for label, pts in lines.items():
                pts.sort()
                cols = [np.array(c) for c in zip(*pts)]
                ax.errorbar(cols[0], cols[1], yerr=[cols[2], cols[3]], marker="o", capsize=3, label=label or None)
            if not numeric:
                ax.set_xticks(range(len(axis.values)), [str(v) for v in axis.values])
            ax.set_xlabel(axis.key)
            ax.set_ylabel(metric)
            ax.set_title(f"{metric} vs {axis.key} (mean over {plan.seeds} seeds, {level:.0%} t-interval)",
                         fontsize=9)
            if any(lines) and len(lines) > 1:
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            name = f"{_safe(metric)}-vs-{_safe(axis.key)}.png"
            fig.tight_layout()
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            files.append(name)
    return files


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "-" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.4g}"


def sweep_markdown(doc: Mapping[str, Any], summaries: Sequence[PointSummary], metrics: Sequence[str],
                   level: float = 0.95) -> str:
    """``sweep.md``: what ran, where, how long, a table of the points (mean [interval] of ``metrics``),
    the failures, the figures."""
    env = doc["environment"]
    tasks = doc["tasks"]
    lines = [f"# Sweep of {doc['config']}", "",
             f"`{doc['command']}`", "",
             f"{len(summaries)} points x {doc['seeds']} seeds = {tasks['total']} tasks: {tasks['ok']} ok, "
             f"{tasks['failed']} failed, {tasks['skipped']} already done (resumed), {tasks['ran']} run now.", "",
             f"Ran on {len(env['nodes'])} node(s) ({env['where']}); wall time {doc['wall_s']:.1f} s; the wall times "
             f"of the tasks run now sum to {doc['serial_estimate_s']:.1f} s (the serial estimate: speed-up "
             f"{_fmt(doc['speedup'])}x; tasks sharing cores run slower, so it overstates the gain over a serial "
             "run, `--serial` measures that). "
             f"trefed {env['trefed_version']}, Ray {env['ray_version']}, Python {env['python']}.", ""]
    shown = [m for m in metrics if any(m in s.metrics for s in summaries)]
    if shown:
        lines.append(f"Mean over seeds [{level:.0%} Student-t interval]:")
        lines.append("")
        header = ["point", *(a["key"] for a in doc["grid"]), "ok", *shown]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for s in summaries:
            cells = [str(s.point.index), *(_canon(v) for _, v in s.point.overrides), f"{s.ok}/{s.ok + s.failed}"]
            for m in shown:
                est = s.metrics.get(m)
                if est is None or est.n == 0:
                    cells.append("-")
                else:
                    iv = est.interval(level)
                    cells.append(f"{_fmt(est.value)} [{_fmt(iv.low)}, {_fmt(iv.high)}]")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    failures = [(s.point, seed, e) for s in summaries for seed, e in s.errors]
    if failures:
        lines += ["## Failures", ""]
        lines += [f"- point {p.index} ({p.label()}), seed {seed}: {e}" for p, seed, e in failures[:50]]
        lines.append("")
    if doc.get("figures"):
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in doc["figures"]] + [""]
    return "\n".join(lines)
