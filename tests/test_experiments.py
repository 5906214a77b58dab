"""The experiments whose arms run in the pure core (no Ray), each at a small scale checking its
claim: ``isolation`` (the data plane) and ``budget-split`` (the calculus); their outputs and the exit
codes of ``trefed run`` with an ``experiment:`` section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agents.cli.main import main as trefed
from federation.config import parse_config
from federation.experiment.kinds import build_arms
from federation.experiment.results import SCHEMA, Check, summary_lines

ROOT = Path(__file__).resolve().parents[1]


def _small_isolation(**experiment: object) -> dict:
    data = yaml.safe_load((ROOT / "configs" / "isolation.yaml").read_text())
    data["run"]["duration_s"] = 8.0
    data["experiment"] = {**data["experiment"], "burstiness": [1, 8], **experiment}
    return data


def _run(tmp_path: Path, data: dict, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    code = trefed(["run", str(path), "--out", str(tmp_path / "out"), *extra])
    return code, capsys.readouterr().out


def test_a_check_with_nan_does_not_hold():
    assert Check("x", 1.0, "<=", 1.0).holds and not Check("x", float("nan"), "<=", 1.0).holds
    assert Check("x", 0.0, "==", 0.0).holds and not Check("x", 2.0, "<", 2.0).holds


def test_isolation_wfq_and_partition_keep_the_victims_tail_fifo_does_not(tmp_path, capsys):
    code, out = _run(tmp_path, _small_isolation(), capsys, "--json")
    doc = json.loads(out)
    assert code == 0 == doc["claim"]["exit_code"] and doc["claim"]["holds"]
    assert doc["schema"] == SCHEMA and doc["kind"] == "isolation" and doc["method"] == "plane"
    m = {a["name"]: a["metrics"] for a in doc["arms"]}
    assert set(m) == {f"{s}-{v}" for s in ("fifo", "wfq", "partition") for v in ("alone", "b1", "b8")}
    for s in ("wfq", "partition"):
        for b in ("b1", "b8"):
            assert abs(m[f"{s}-{b}"]["ratio_to_alone"] - 1.0) <= 0.05, (s, b, m[f"{s}-{b}"])
    # the partition is exact: the victim sends the same packets and has its own server in every arm
    assert m["partition-b8"]["victim_quantile_s"] == m["partition-alone"]["victim_quantile_s"]
    assert m["fifo-b8"]["ratio_to_alone"] >= 2.0
    assert m["fifo-b8"]["victim_quantile_s"] > m["fifo-b1"]["victim_quantile_s"]  # burstier, worse
    out_dir = tmp_path / "out"
    assert (out_dir / "isolation.png").stat().st_size > 0
    assert json.loads((out_dir / "arms" / "fifo-b8" / "arm.json").read_text())["metrics"]["burstiness"] == 8
    md = (out_dir / "report.md").read_text()
    assert "## Reading" in md and "Data plane only" in md
    assert f"{m['fifo-b8']['ratio_to_alone']:.2f}x" in md  # the reading quotes the measured numbers
    assert all(len(line) <= 80 for line in summary_lines(doc))


def test_trefed_run_prints_the_experiments_summary_and_exits_1_when_the_claim_fails(tmp_path, capsys):
    code, out = _run(tmp_path, _small_isolation(fifo_factor=1000.0, schedulers=["fifo"]), capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "trefed experiment: isolation (isolation) -- claim DOES NOT hold"
    assert any(line.startswith("NO  fifo: victim p99.9 / alone") for line in lines)
    assert lines[-1].startswith("report: ") and all(len(line) <= 80 for line in lines[:-1])
    doc = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert "does NOT hold" in doc["reading"] and doc["claim"]["exit_code"] == 1


def test_bad_experiment_input_exits_2_naming_the_field(tmp_path, capsys):
    data = _small_isolation(burstiness=[1, 0.5])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert trefed(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "experiment.burstiness[1]: must be >= 1" in capsys.readouterr().err
    data = _small_isolation()
    data["tenants"][1]["intent"]["traffic"] = {"kind": "poisson", "rate_pps": 10.0, "mean_size_bits": 1e3}
    path.write_text(yaml.safe_dump(data))
    assert trefed(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "tenants[1].intent.traffic.kind(='poisson') must be 'mmoo'" in capsys.readouterr().err


def test_the_isolation_arms_vary_only_the_scheduler_and_the_aggressors_bursts():
    data = _small_isolation()
    arms = {a.name: a for a in build_arms(data, parse_config(data).experiment)}
    base = parse_config(data).tenants[1].intent.traffic
    b8 = arms["wfq-b8"].config
    assert b8.run.scheduler == "wfq"
    t = b8.tenants[1].intent.traffic
    assert (t.mean_on_s, t.mean_off_s) == pytest.approx((8 * base.mean_on_s, 8 * base.mean_off_s))
    # the same mean rate: on / (on + off) unchanged
    assert t.mean_on_s / (t.mean_on_s + t.mean_off_s) == pytest.approx(base.mean_on_s / (base.mean_on_s + base.mean_off_s))
    assert arms["wfq-alone"].params["aggressor"] is None


def test_the_optimised_split_is_cheaper_and_admits_more_than_an_equal_split(tmp_path, capsys):
    data = yaml.safe_load((ROOT / "configs" / "budget-split.yaml").read_text())
    data["experiment"] = {**data["experiment"], "epsilons": [1e-2, 1e-3], "deadlines": [0.04, 0.08]}
    code, out = _run(tmp_path, data, capsys, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["claim"]["holds"] and doc["method"] == "core"
    m = {a["name"]: a["metrics"] for a in doc["arms"]}
    for eps in ("0.01", "0.001"):
        loose, tight = m[f"d80ms-eps{eps}"], m[f"d40ms-eps{eps}"]
        opt, eq = loose["optimised"], loose["equal"]
        # both feasible at 80 ms: the optimised rates cost less and more tenants fit the capacity
        assert opt["cost_per_hour"] < eq["cost_per_hour"] and opt["admitted"] > eq["admitted"] > 0
        # the equal split's sub-budgets add up to the same end-to-end risk
        assert sum(b["delay_s"] for b in loose["equal_budgets"]) == pytest.approx(0.08)
        assert sum(b["epsilon"] for b in loose["equal_budgets"]) == pytest.approx(loose["eps_delay"])
        # at 40 ms only the optimised split fits: the edge cannot absorb the burst the others pass on
        assert tight["equal"] is None and tight["optimised"]["admitted"] > 0
    # a tighter risk costs more
    assert m["d80ms-eps0.001"]["optimised"]["cost_per_hour"] > m["d80ms-eps0.01"]["optimised"]["cost_per_hour"]
    assert (tmp_path / "out" / "budget-split.png").stat().st_size > 0
    assert "less per hour" in doc["reading"]


def test_the_experiment_document_is_plain_json_and_its_summary_fits_80_columns():
    from federation.experiment.results import Outcome, experiment_document, jsonable

    assert jsonable({"a": (1, float("nan"), float("inf")), "b": True}) == {"a": [1, None, None], "b": True}
    data = _small_isolation()
    spec = parse_config(data).experiment
    long_row = ("x" * 50, "y" * 50)
    outcome = Outcome("s", (Check("c", float("nan"), "<=", 1.0),), "r", {}, ("h1", "h2"), (long_row,), "plane")
    doc = experiment_document(spec, "f", [], outcome)
    json.dumps(doc, allow_nan=False)  # no NaN, no tuples
    assert doc["claim"] == {"statement": "s", "holds": False, "exit_code": 1,
                            "checks": [{"name": "c", "value": None, "relation": "<=", "target": 1.0, "holds": False}]}
    assert doc["experiment"]["burstiness"] == [1.0, 8.0] and doc["schema"] == SCHEMA
    assert all(len(line) <= 80 for line in summary_lines(doc))
