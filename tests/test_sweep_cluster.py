"""``trefed sweep`` against a real multi-node Ray cluster on loopback (Ray's own test harness).

One :class:`ray.cluster_utils.Cluster` for the module: a head and a worker node, one CPU each, every
listener on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` before Ray starts), a private
``RAY_TMPDIR``, no dashboard. ``trefed sweep --address`` runs as its own process (the driver), as a
user runs it. Where the tasks ran is read from the node id each row records, never from timings.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FAST_CONFIG

from agents.cli.main import main as trefed

BIN = Path(sys.executable).parent

#: The grid of the tests: the edge's reservable capacity admits 2 of the 3 tenants at 50 Mb/s and
#: all 3 at 100 Mb/s (each reserves about 20.2 Mb/s there), so the points differ.
GRID = ["--grid", "domains[2].guardrails.reservable_capacity_bps=5e7,1e8",
        "--grid", "domains[2].guardrails.max_tenant_rate_bps=5e7"]

#: Ray's authentication mode of the module's cluster (set by the fixture; see there).
AUTH_MODE = "token"

#: Columns that say where and when a task ran, not what it measured.
WHERE = {"node_id", "node_ip", "wall_s", "finished_at"}


def small_config(path: Path, duration_s: float = 2.0) -> Path:
    """FAST_CONFIG with 3 tenants and ``duration_s`` s of traffic, written to ``path``."""
    data = copy.deepcopy(FAST_CONFIG)
    data["tenants"] = data["tenants"][:3]
    data["run"] = {"duration_s": duration_s, "seed": 7}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and one worker node on loopback (1 CPU each), private RAY_TMPDIR; shut down at the end."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray starts: every listener on 127.0.0.1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray._private.authentication.authentication_token_setup import ensure_token_if_auth_enabled
    from ray._private.authentication.authentication_utils import get_authentication_mode_name
    from ray._raylet import get_authentication_mode
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="ray-sw-")  # short: Ray's socket paths must fit 107 bytes
    old = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE")}
    os.environ["RAY_TMPDIR"] = tmp
    # Ray 2.60's token authentication: this process checks the nodes it starts in the mode its Ray was
    # configured with ("disabled" on import; "token" once a local Ray of the session started here), so
    # the nodes and the drivers (_env) get that mode; a token is Ray's default file ~/.ray/auth_token.
    global AUTH_MODE
    AUTH_MODE = get_authentication_mode_name(get_authentication_mode())
    os.environ["RAY_AUTH_MODE"] = AUTH_MODE
    c = None
    try:
        ensure_token_if_auth_enabled()
        # A killed node is declared dead after 3 failed health checks 1 s apart (Ray's default: 5 checks
        # 3 s apart), so the node-death test waits ~3 s, not ~15 s, for its tasks to be retried.
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1",
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
        c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        c.wait_for_nodes()
        yield c
    finally:
        if c is not None:
            c.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


def _env() -> dict[str, str]:
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE=AUTH_MODE)
    env.pop("RAY_ADDRESS", None)  # the address is given explicitly
    return env


def _sweep(cluster: Any, config: Path, out: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "trefed"), "sweep", str(config), *GRID, "--address", cluster.address,
                           "--out", str(out), "--no-figures", *args],
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line.strip()]


def _measured(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in WHERE}


def test_a_sweep_spreads_over_both_nodes_matches_a_serial_run_and_resumes(cluster, tmp_path):
    config = small_config(tmp_path / "small.yaml")
    out = tmp_path / "cluster"
    r = _sweep(cluster, config, out, "--seeds", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["tasks"] == {"total": 6, "ok": 6, "failed": 0, "skipped": 0, "ran": 6, "not_run": 0,
                            "per_node": doc["tasks"]["per_node"]}
    nodes = {n.node_id for n in cluster.list_all_nodes()}
    assert {n["node_id"] for n in doc["environment"]["nodes"]} == nodes
    rows = _rows(out)
    assert len(rows) == 6 and all(row["status"] == "ok" for row in rows)
    assert {row["node_id"] for row in rows} == nodes  # tasks ran on both nodes
    assert "ETA" in r.stderr and "tasks done" in r.stderr

    # the same points and seeds one after another in this process, without Ray
    serial = tmp_path / "serial"
    assert trefed(["sweep", str(config), *GRID, "--seeds", "3", "--serial", "--out", str(serial),
                   "--no-figures"]) == 0
    ref = json.loads((serial / "sweep.json").read_text())
    assert doc["aggregate"] == ref["aggregate"]  # bit for bit: the seeds make the runs, not the nodes
    by_task = {row["task_id"]: _measured(row) for row in _rows(serial)}
    assert {row["task_id"]: _measured(row) for row in rows} == by_task
    admitted = [p["metrics"]["admitted"]["mean"] for p in doc["aggregate"]]
    assert admitted == [2.0, 3.0]  # the grid changed what ran

    # a rerun into the same directory runs nothing
    again = _sweep(cluster, config, out, "--seeds", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    doc2 = json.loads((out / "sweep.json").read_text())
    assert doc2["tasks"]["skipped"] == 6 and doc2["tasks"]["ran"] == 0
    assert len(_rows(out)) == 6 and doc2["aggregate"] == ref["aggregate"]

    # an interrupted sweep: 2 rows survived, the third was cut while being written; one more seed asked for
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    kept = [json.loads(line) for line in lines[:2]]
    (out / "rows.jsonl").write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    resumed = _sweep(cluster, config, out, "--seeds", "4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    doc3 = json.loads((out / "sweep.json").read_text())
    assert doc3["tasks"]["skipped"] == 2 and doc3["tasks"]["ran"] == 6 and doc3["tasks"]["ok"] == 8
    after = {row["task_id"]: row for row in _rows(out)}
    assert all(after[k["task_id"]] == k for k in kept)  # finished tasks were not run again
    assert "resuming: 2 of 8 tasks already done" in resumed.stderr
    four = tmp_path / "serial4"
    assert trefed(["sweep", str(config), *GRID, "--seeds", "4", "--serial", "--out", str(four),
                   "--no-figures"]) == 0
    assert doc3["aggregate"] == json.loads((four / "sweep.json").read_text())["aggregate"]


def test_a_worker_node_killed_mid_sweep_has_its_tasks_retried_elsewhere(cluster, tmp_path):
    """A third node joins, takes tasks, and is killed (no graceful shutdown) while the sweep runs: Ray
    retries its tasks on the nodes left and every task ends ok."""
    victim = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    config = small_config(tmp_path / "small.yaml", duration_s=3.0)
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "trefed"), "sweep", str(config), *GRID, "--seeds", "6", "--address",
                             cluster.address, "--out", str(out), "--no-figures", "--max-retries", "5"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # until the victim has finished a task: it is then running the next one
            rows = _rows(out) if (out / "rows.jsonl").exists() else []
            if any(row["node_id"] == victim.node_id for row in rows):
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no task ran on the third node"
            time.sleep(0.1)
        done_before = len(rows)
        cluster.remove_node(victim, allow_graceful=False)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cluster.wait_for_nodes()  # until Ray has declared the victim dead: the module's next tests start from two nodes
    assert proc.returncode == 0, stderr[-3000:]
    assert done_before < 12  # it died mid-sweep
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["tasks"]["ok"] == 12 and doc["tasks"]["failed"] == 0
    rows = _rows(out)
    assert sorted((row["point"], row["seed"]) for row in rows) == sorted(
        (p, s) for p in (0, 1) for s in range(7, 13))  # every point and seed, once each
    assert all(row["status"] == "ok" for row in rows)
    assert victim.node_id in {row["node_id"] for row in rows}
    assert "12/12 tasks done" in stderr


def test_the_readme_sweep_runs_on_the_cluster(cluster, tmp_path):
    """The README's ``trefed sweep`` command, with ``--address`` of the cluster and ``--out`` here."""
    import shlex

    from test_readme import readme_commands

    [command] = [c for c in readme_commands() if c.startswith("trefed sweep ")]
    argv = shlex.split(command)
    argv[argv.index("--out") + 1] = str(tmp_path / "readme")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([str(BIN / "trefed"), *argv[1:], "--address", cluster.address], cwd=root, env=_env(),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path / "readme" / "sweep.json").read_text())
    assert doc["tasks"]["ok"] == 9 and len(doc["environment"]["nodes"]) == 2
    worst = [p["metrics"]["worst_violation_rate"]["mean"] for p in doc["aggregate"]]
    assert worst == sorted(worst) and worst[0] < worst[-1]  # more spikes, more violations
    assert doc["figures"] == ["worst_violation_rate-vs-run.impairments_0_.prob.png",
                              "domain.transport.blamed-vs-run.impairments_0_.prob.png"]


def test_run_on_the_cluster_spreads_the_agents_over_its_nodes(cluster, tmp_path):
    """``trefed run --address``: the agents are spread over the nodes, and the output says where."""
    config = small_config(tmp_path / "small.yaml")
    r = subprocess.run([str(BIN / "trefed"), "run", str(config), "--address", cluster.address, "--admissions-only",
                        "--json"], env=_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [t["admitted"] for t in json.loads(r.stdout)["tenants"]] == [True, True, True]
    [line] = [ln for ln in r.stderr.splitlines() if "placement over" in ln]
    nodes = {n.node_id[:12] for n in cluster.list_all_nodes()}
    assert "placement over 2 node(s)" in line, line
    placed = dict(part.split(" on ") for part in line.split(": ", 1)[1].split(", "))
    assert set(placed) == {"domain access", "domain transport", "domain edge", "broker", "auditor"}
    assert set(placed.values()) == nodes
