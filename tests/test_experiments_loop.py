"""The experiments whose arms run the whole loop on Ray, each at a small scale, checking its claim:
``overload-admission``, ``accountability``, ``bound-validity`` and ``inference``.

One Ray for the module (the session's ``ray_runtime``: ``trefed run`` joins it and leaves it
running); every arm is a fresh federation (domain controllers, broker, auditor, tenants as actors
over gRPC on loopback).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agents.cli.main import main as trefed
from federation.experiment.results import summary_lines

ROOT = Path(__file__).resolve().parents[1]


def _config(name: str, run: dict | None = None, **experiment: object) -> dict:
    data = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    data["run"] = {**data["run"], **(run or {})}
    data["experiment"] = {**data["experiment"], **experiment}
    return data


def _run(tmp_path: Path, data: dict, capsys: pytest.CaptureFixture, name: str) -> tuple[int, dict]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    code = trefed(["run", str(path), "--out", str(tmp_path / name), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert all(len(line) <= 80 for line in summary_lines(doc))
    return code, doc


def test_admission_control_keeps_compliance_at_twice_the_load_and_without_it_falls(ray_runtime, tmp_path, capsys):
    code, doc = _run(tmp_path, _config("overload-admission", {"duration_s": 15.0}, loads=[2.0]), capsys, "ov")
    m = {a["name"]: a["metrics"] for a in doc["arms"]}
    on, off = m["load-2-on"], m["load-2-off"]
    assert on["tenants"] == off["tenants"] == 8 and on["offered"] == pytest.approx(2.0)
    assert 0 < on["admitted"] < 8 and on["served"] == on["admitted"]  # refusals are not served
    assert on["compliance"] >= 0.99
    assert off["served"] == 8 and off["admitted"] == on["admitted"]  # everyone let in, the same reservations
    assert off["compliance"] < 0.5
    # the admitted tenants stay compliant either way; the unreserved ones are the late ones
    assert all(t["compliant"] == t["admitted"] for t in off["tenants_detail"])
    assert code == 0 and doc["claim"]["holds"]
    assert (tmp_path / "ov" / "arms" / "load-2-off" / "report.json").stat().st_size > 0
    assert (tmp_path / "ov" / "overload.png").stat().st_size > 0
    assert f"{off['compliant']} of {off['served']}" in doc["reading"]


def test_the_audit_blames_exactly_the_impaired_domain_and_catches_the_liar(ray_runtime, tmp_path, capsys):
    data = _config("accountability", {"duration_s": 60.0},
                   impairment={"kind": "spikes", "start_s": 10.0, "end_s": 50.0, "value": 0.010, "prob": 0.05})
    data["tenants"] = data["tenants"][:2]
    code, doc = _run(tmp_path, data, capsys, "acc")
    m = {a["name"]: a["metrics"] for a in doc["arms"]}
    assert m["clean"]["blamed"] == [] and not m["clean"]["violation_found"]
    assert m["impaired"]["blamed"] == ["transport"]
    assert m["impaired"]["domains"]["transport"]["verdicts"].get("VIOLATING", 0) == m["impaired"]["contracts"] == 2
    assert m["liar"]["caught"] and "access" in m["liar"]["blamed"]
    assert code == 0 and doc["claim"]["holds"]
    report = json.loads((tmp_path / "acc" / "arms" / "impaired" / "report.json").read_text())
    assert report["verdict"]["blamed"] == ["transport"]


def test_the_composed_bounds_hold_through_one_to_five_domains(ray_runtime, tmp_path, capsys):
    code, doc = _run(tmp_path, _config("bound-validity", {"duration_s": 20.0}), capsys, "bv")
    tenants = doc["arms"][0]["metrics"]["tenants"]
    assert sorted(t["hops"] for t in tenants.values()) == [1, 2, 3, 4, 5]
    assert all(t["points"] and t["contradicted"] == 0 for t in tenants.values())
    assert all(p["measured"] <= p["bound"] or p["ci_low"] <= p["bound"] for t in tenants.values() for p in t["points"])
    assert code == 0 and doc["claim"]["holds"]
    assert (tmp_path / "bv" / "bound-validity.png").stat().st_size > 0


def test_the_fast_model_wins_tight_deadlines_and_the_accurate_one_tight_epsilons(ray_runtime, tmp_path, capsys):
    code, doc = _run(tmp_path, _config("inference", {"duration_s": 20.0}), capsys, "inf")
    tenants = doc["arms"][0]["metrics"]["tenants"]
    assert tenants["d25ms-eps0.01"]["model_id"] == "fast-int8"  # the accurate model's 10 ms do not fit
    assert tenants["d25ms-eps0.01"]["alternatives"]["accurate-large"] is None
    assert tenants["d50ms-eps0.002"]["model_id"] == "accurate-large"  # the fast model's error alone is > eps
    assert tenants["d50ms-eps0.002"]["alternatives"]["fast-int8"] is None
    assert not tenants["d25ms-eps0.002"]["admitted"]  # neither fits both
    # the budget's shares: the model's error of eps, its inference latency of d
    assert tenants["d50ms-eps0.002"]["error_share"] == pytest.approx(0.0005 / 0.002)
    assert tenants["d25ms-eps0.01"]["inference_share"] == pytest.approx(0.002 / 0.025)
    assert all(t["verdict"] != "VIOLATING" for t in tenants.values())
    assert code == 0 and doc["claim"]["holds"]
    assert (tmp_path / "inf" / "inference.png").stat().st_size > 0
