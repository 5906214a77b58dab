"""``trefed sweep`` without Ray: the grid (parsing, validation before anything runs), the aggregate
across seeds (a Student-t interval on data with a known answer), the journal and what a rerun skips,
a failing point. The sweep on a real multi-node cluster is tests/test_sweep_cluster.py."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_sweep_cluster import GRID, small_config

from agents.cli.main import main as trefed
from federation.errors import InputError
from federation.experiment.sweep import (
    GridAxis,
    MeanEstimate,
    aggregate,
    parse_grid,
    pending,
    plan_sweep,
    read_journal,
)

BIN = Path(sys.executable).parent


def _plan(tmp_path: Path, grid: list[str], seeds: int = 2):
    import yaml

    path = small_config(tmp_path / "small.yaml")
    return plan_sweep(yaml.safe_load(path.read_text()), parse_grid(grid), seeds, config_sha256="0" * 64,
                      config_path=str(path))


# ---------------------------------------------------------------------------- the grid


def test_grid_values_are_yaml_and_5e7_is_a_number():
    axes = parse_grid(["run.scheduler=fifo,wfq", "tenants[0].intent.epsilon=1e-3,0.01",
                       "tenants[1].intent.traffic=[1,2],{a: 3}", "run.admission_control=true,false"])
    assert axes == (GridAxis("run.scheduler", ("fifo", "wfq")), GridAxis("tenants[0].intent.epsilon", (1e-3, 0.01)),
                    GridAxis("tenants[1].intent.traffic", ([1, 2], {"a": 3})),
                    GridAxis("run.admission_control", (True, False)))
    assert parse_grid(["domains[1].model.rate_bps=5e7,2"])[0].values == (5e7, 2)


@pytest.mark.parametrize("spec, message", [
    ("run.scheduler", "--grid 'run.scheduler': expected KEY=V1,V2"),
    ("=1,2", "expected KEY=V1,V2"),
    ("run..x=1", "--grid run..x: is not a dotted path"),
    ("tenants[a]=1", "--grid tenants[a]: is not a dotted path"),
    ("run.scheduler=", "--grid run.scheduler: no values"),
    ("run.scheduler=fifo,,wfq", "--grid run.scheduler: values 'fifo,,wfq' must be comma-separated, none empty"),
    ("run.scheduler=fifo,", "--grid run.scheduler: values 'fifo,' must be comma-separated, none empty"),
    ("run.scheduler=fifo,fifo", "--grid run.scheduler: value 'fifo' is given twice"),
    ("run.scheduler=[fifo", "--grid run.scheduler: values '[fifo' are not YAML"),
    ("run.seed=1,2", "--grid run.seed: the seeds are set by --seeds N"),
])
def test_a_bad_grid_option_names_the_key(spec, message):
    with pytest.raises(InputError) as err:
        parse_grid([spec])
    assert message in str(err.value)


def test_a_key_given_twice_is_refused():
    with pytest.raises(InputError, match=r"--grid run.scheduler: the key is given twice"):
        parse_grid(["run.scheduler=fifo", "run.scheduler=wfq"])


@pytest.mark.parametrize("grid, message", [
    (["tenants[9].intent.epsilon=0.01"], "--grid tenants[9].intent.epsilon: tenants[9] does not exist (tenants has 3 items)"),
    (["domains[2].nonsense.x=1"], "--grid domains[2].nonsense.x: domains[2].nonsense does not exist"),
    (["run.scheduler=fifo,lottery"], "--grid run.scheduler=\"lottery\": run.scheduler"),
    (["tenants[0].intent.epsilon=0.01,2"], "--grid tenants[0].intent.epsilon=2: tenants[0].intent.epsilon"),
    (["domains[2].guardrails.reservable_capacity_bps=2e8"],
     "reservable_capacity_bps(=200000000.0) must be <= model.rate_bps(=100000000.0)"),
])
def test_every_point_is_validated_before_anything_runs(tmp_path, grid, message):
    with pytest.raises(InputError) as err:
        _plan(tmp_path, grid)
    assert message in str(err.value)


def test_the_cli_exits_2_naming_the_key_before_ray_starts(tmp_path, capsys):
    config = small_config(tmp_path / "small.yaml")
    started = time.monotonic()
    assert trefed(["sweep", str(config), "--grid", "tenants[0].intent.epsilonn=0.01", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "trefed sweep: error: --grid tenants[0].intent.epsilonn" in err and "epsilonn" in err
    assert "Traceback" not in err and "starting Ray" not in err
    assert trefed(["sweep", str(config), "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--seeds(=0) must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and time.monotonic() - started < 30


def test_an_unreachable_address_fails_fast_with_exit_2(tmp_path):
    config = small_config(tmp_path / "small.yaml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    r = subprocess.run([str(BIN / "trefed"), "sweep", str(config), *GRID, "--address", f"127.0.0.1:{port}",
                        "--out", str(tmp_path / "o")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in r.stderr
    assert "Traceback" not in r.stderr and time.monotonic() - started < 60


def test_points_and_tasks_have_stable_ids_and_seeds(tmp_path):
    plan = _plan(tmp_path, GRID[1::2], seeds=3)
    again = _plan(tmp_path, GRID[1::2], seeds=3)
    assert len(plan.points) == 2 and len(plan.tasks) == 6
    assert [t.task_id for t in plan.tasks] == [t.task_id for t in again.tasks]
    assert len({t.task_id for t in plan.tasks}) == 6
    assert [(t.point.index, t.seed) for t in plan.tasks] == [(p, s) for p in (0, 1) for s in (7, 8, 9)]
    assert plan.tasks[4].config_data()["run"]["seed"] == 8
    assert plan.points[1].data["domains"][2]["guardrails"]["reservable_capacity_bps"] == 1e8
    assert "keys_dir" not in plan.points[0].data
    other = plan_sweep(plan.points[0].data, parse_grid(GRID[1::2]), 3, config_sha256="1" * 64)
    assert not {t.task_id for t in other.tasks} & {t.task_id for t in plan.tasks}  # another config's ids


# ---------------------------------------------------------------------------- the aggregate


def test_the_student_t_interval_has_its_textbook_value():
    est = MeanEstimate.of([1, 2, 3, 4, 5])
    # mean 3, s = sqrt(2.5), t_{0.975, 4} = 2.7764451 (Student-t table): half-width 2.7764451 * s / sqrt(5)
    assert est.value == 3.0 and est.n == 5 and math.isclose(est.sd, math.sqrt(2.5))
    iv = est.interval(0.95)
    half = 2.7764451052 * math.sqrt(2.5) / math.sqrt(5)
    assert math.isclose(iv.low, 3 - half, rel_tol=1e-9) and math.isclose(iv.high, 3 + half, rel_tol=1e-9)
    assert est.interval(0.99).high > iv.high


def test_degenerate_aggregates():
    assert math.isnan(MeanEstimate.of([]).value) and math.isnan(MeanEstimate.of([]).interval().low)
    one = MeanEstimate.of([0.5, None, "inf", float("nan")])
    assert one.n == 1 and one.dropped == 3 and one.interval().low == -math.inf and one.interval().high == math.inf
    same = MeanEstimate.of([2.0, 2.0, 2.0]).interval()
    assert (same.low, same.high) == (2.0, 2.0)
    with pytest.raises(InputError, match="level"):
        MeanEstimate.of([1, 2]).interval(1.0)


def test_the_interval_covers_a_known_mean_at_its_level():
    """4000 replications of 5 normal seeds with mean 1: the 95 % interval covers 1 in 95 % of them
    (binomial sd of the coverage 0.34 %; the band is 6 sd wide each side)."""
    rng = np.random.default_rng(2024)
    data = rng.normal(1.0, 0.3, size=(4000, 5))
    hits = 0
    for xs in data:
        iv = MeanEstimate.of(xs.tolist()).interval(0.95)
        hits += iv.low <= 1.0 <= iv.high
    assert abs(hits / 4000 - 0.95) < 0.02


def _row(task, status="ok", **metrics):
    return {"task_id": task.task_id, "point_id": task.point.point_id, "point": task.point.index,
            "replicate": task.replicate, "seed": task.seed, "status": status, "error": "" if status == "ok" else "boom",
            "node_id": "n", "node_ip": "127.0.0.1", "wall_s": 1.0, "finished_at": "", **metrics}


def test_the_aggregate_is_in_seed_order_whatever_order_the_rows_came(tmp_path):
    plan = _plan(tmp_path, GRID[1::2], seeds=3)
    values = [0.1, 0.2, 0.3000001, 1.0, 3.0, 7.0]
    rows = [_row(t, admitted=v, blamed="edge") for t, v in zip(plan.tasks, values)]
    a = aggregate(plan, rows)
    b = aggregate(plan, list(reversed(rows)))
    assert [s.metrics["admitted"].values for s in a] == [(0.1, 0.2, 0.3000001), (1.0, 3.0, 7.0)]
    assert [s.metrics["admitted"].value for s in a] == [s.metrics["admitted"].value for s in b]
    assert "blamed" not in a[0].metrics and "seed" not in a[0].metrics  # text and bookkeeping are no metrics
    failed = aggregate(plan, rows[:2] + [_row(plan.tasks[2], "error")] + rows[3:])
    assert (failed[0].ok, failed[0].failed, failed[0].errors) == (2, 1, ((9, "boom"),))


# ---------------------------------------------------------------------------- the journal, resuming


def test_the_journal_skips_a_torn_last_line_and_refuses_damage(tmp_path):
    plan = _plan(tmp_path, GRID[1::2], seeds=2)
    path = tmp_path / "rows.jsonl"
    assert read_journal(path) == []
    lines = [json.dumps(_row(t)) for t in plan.tasks[:2]]
    path.write_text("\n".join(lines) + "\n" + lines[0][:20])
    assert [r["task_id"] for r in read_journal(path)] == [t.task_id for t in plan.tasks[:2]]
    path.write_text(lines[0][:20] + "\n" + lines[1] + "\n")
    with pytest.raises(InputError, match=r"rows.jsonl:1: not a JSON row"):
        read_journal(path)


def test_a_rerun_skips_ok_tasks_and_reruns_failed_ones(tmp_path):
    plan = _plan(tmp_path, GRID[1::2], seeds=2)
    t = plan.tasks
    rows = [_row(t[0]), _row(t[1], "error"), _row(t[2], "error"), _row(t[2]), _row(t[3]), _row(t[3], "error")]
    assert [x.task_id for x in pending(plan, rows)] == [t[1].task_id]  # an ok row wins over any failure
    assert pending(plan, []) == list(plan.tasks)


def test_a_failing_point_is_reported_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    """A point whose run raises becomes a row with its error; the other points run; exit 1; the
    rerun runs only the failed task (and, fixed, it passes)."""
    import agents.sweep

    real = agents.sweep._run_point
    broken = {"on": True}

    def flaky(spec):  # noqa: ANN001, ANN202
        if broken["on"] and spec.point == 0 and spec.seed == 8:
            raise RuntimeError("the point blew up")
        return real(spec)

    monkeypatch.setattr(agents.sweep, "_run_point", flaky)
    config = small_config(tmp_path / "small.yaml", duration_s=1.0)
    out = tmp_path / "o"
    args = ["sweep", str(config), *GRID, "--seeds", "2", "--serial", "--out", str(out)]
    assert trefed(args) == 1
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["tasks"]["ok"] == 3 and doc["tasks"]["failed"] == 1
    err = doc["aggregate"][0]["errors"]
    assert len(err) == 1 and err[0]["seed"] == 8 and err[0]["error"].startswith("RuntimeError: the point blew up")
    assert "the point blew up" in (out / "sweep.md").read_text()
    assert doc["aggregate"][0]["metrics"]["admitted"]["n"] == 1 and doc["aggregate"][1]["metrics"]["admitted"]["n"] == 2
    assert {"rows.csv", "rows.parquet", "aggregate.csv", "sweep.md"} <= {p.name for p in out.iterdir()}
    assert any(p.suffix == ".png" for p in out.iterdir())
    capsys.readouterr()
    broken["on"] = False
    assert trefed(args) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert (doc["tasks"]["ran"], doc["tasks"]["skipped"], doc["tasks"]["ok"]) == (1, 3, 4)
    import pyarrow.parquet as pq

    table = pq.read_table(out / "rows.parquet")
    assert table.num_rows == 4 and set(table.column("status").to_pylist()) == {"ok"}
    assert table.column("grid.domains[2].guardrails.reservable_capacity_bps").to_pylist() == [5e7, 5e7, 1e8, 1e8]


def test_a_config_with_an_experiment_sweeps_the_experiment(tmp_path, capsys):
    """budget-split (the calculus only): each point runs the whole experiment; the row holds its claim,
    its checks and its arms' metrics."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "exp"
    assert trefed(["sweep", str(root / "configs" / "budget-split.yaml"), "--grid",
                   "experiment.deadlines=[0.04],[0.08]", "--serial", "--out", str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["experiment"] is True and doc["tasks"]["ok"] == 2
    first, second = (p["metrics"] for p in doc["aggregate"])
    assert first["claim_holds"]["mean"] == 1.0 and first["exit_code"]["mean"] == 0.0
    assert any(k.startswith("check.d 40 ms") for k in first) and not any(k.startswith("check.d 40 ms") for k in second)
    assert any(k.startswith("arm.d80ms-") for k in second)


def test_progress_counts_failures_and_its_eta_is_the_rate_so_far():
    import io

    from agents.sweep import Progress

    now = [100.0]
    out = io.StringIO()
    p = Progress(10, 2, stream=out, every_s=0.0, clock=lambda: now[0])  # 2 done before this run
    now[0] = 104.0
    p.update({"status": "ok"}, 3)
    now[0] = 108.0
    p.update({"status": "error"}, 3)  # 2 in 8 s: 0.25 tasks/s, 6 left: 24 s
    lines = out.getvalue().splitlines()
    assert lines[-1] == "[  8.0 s] sweep: 4/10 tasks done (1 failed), 3 in flight, 0.25 tasks/s, ETA 24 s"
    p.update(None, 3, force=True)  # nothing new: no line
    assert len(out.getvalue().splitlines()) == 2
