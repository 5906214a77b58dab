"""Arms of an experiment: dotted-path overrides of a config document, re-validated as a whole config;
and the config's ``experiment:`` section, validated naming the field. No Ray."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from federation.config import parse_config
from federation.errors import ConfigError, FieldError
from federation.experiment.arms import make_arm, override, parse_key
from federation.experiment.kinds import build_arms

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())


def test_parse_key_reads_names_and_indices():
    assert parse_key("tenants[1].intent.traffic.sources") == ["tenants", 1, "intent", "traffic", "sources"]
    assert parse_key("run.admission_control") == ["run", "admission_control"]
    for bad in ("", ".run", "run..x", "tenants[x]", "run.", "a b"):
        with pytest.raises(FieldError):
            parse_key(bad)


def test_override_sets_a_nested_value_on_a_copy():
    base = _load("isolation")
    before = copy.deepcopy(base)
    out = override(base, "tenants[1].intent.traffic.sources", 8)
    assert out["tenants"][1]["intent"]["traffic"]["sources"] == 8
    assert base == before  # the input is not modified
    out = override(out, "run.scheduler", "wfq")
    assert out["run"]["scheduler"] == "wfq" and out["tenants"][1]["intent"]["traffic"]["sources"] == 8
    # the last step may be a key the mapping does not have yet (validation decides)
    assert override(base, "tenants[0].replicas", 3)["tenants"][0]["replicas"] == 3


@pytest.mark.parametrize("key, message", [
    ("tenants[5].id", "tenants[5].id: tenants[5] does not exist (tenants has 2 items)"),
    ("runs.scheduler", "runs.scheduler: runs does not exist"),
    ("run.scheduler.name", "run.scheduler.name: run.scheduler is not a mapping"),
    ("tenants.id", "tenants.id: tenants is not a mapping"),
    ("run[0]", "run[0]: run is not a list"),
])
def test_override_names_the_key_that_does_not_exist(key, message):
    with pytest.raises(FieldError) as err:
        override(_load("isolation"), key, 1)
    assert str(err.value).startswith(message)
    assert err.value.field == key


def test_make_arm_revalidates_the_variant_naming_the_arm_and_the_field():
    base = _load("isolation")
    arm = make_arm(base, "wfq", {"run.scheduler": "wfq", "tenants[1].intent.traffic.sources": 2})
    assert arm.config.run.scheduler == "wfq" and arm.config.tenants[1].intent.traffic.sources == 2
    assert arm.config.experiment is None and "experiment" not in arm.data  # an arm is a plain run
    assert parse_config(arm.data).run.scheduler == "wfq"  # and trefed run could run it on its own
    with pytest.raises(ConfigError, match=r"^arm bad: run\.scheduler"):
        make_arm(base, "bad", {"run.scheduler": "lottery"})
    with pytest.raises(ConfigError, match=r"^arm bad: tenants\[0\]\.colour: unknown field"):
        make_arm(base, "bad", {"tenants[0].colour": "red"})
    with pytest.raises(ConfigError, match=r"arm bad: tenants\[9\]"):
        make_arm(base, "bad", {"tenants[9].id": "x"})
    with pytest.raises(ConfigError, match="arm name"):
        make_arm(base, "../up", {})


def test_overrides_can_replicate_a_tenant():
    arm = make_arm(_load("overload-admission"), "x", {"tenants[0].replicas": 3})
    assert [t.id for t in arm.config.tenants] == ["camera-1", "camera-2", "camera-3"]


@pytest.mark.parametrize("name, change, message", [
    ("overload-admission", {"loads": [0.5, 1.0, -2.0]}, "experiment.loads[2]: must be > 0"),
    ("overload-admission", {"bottleneck": "nowhere"}, "experiment.bottleneck: unknown domain 'nowhere'"),
    ("overload-admission", {"tenant": 3}, "experiment.tenant(=3) must be the index of a tenant"),
    ("overload-admission", {"colour": 1}, "experiment.colour: unknown field"),
    ("overload-admission", {"kind": "nope"}, "experiment: Input tag 'nope'"),
    ("isolation", {"aggressor": 0}, "experiment.aggressor(=0) must differ from victim(=0)"),
    ("isolation", {"shares": [0.7, 0.5]}, "experiment.shares(=[0.7, 0.5]) must sum to at most 1"),
    ("isolation", {"burstiness": [0.5]}, "experiment.burstiness[0]: must be >= 1"),
    ("accountability", {"liar": "mars"}, "experiment.liar: unknown domain 'mars'"),
    ("accountability", {"impairment": {"domain": "edge"}}, "experiment.impairment.domain: is set by"),
    ("bound-validity", {"level": 1.0}, "experiment.level: must be < 1"),
    ("budget-split", {"epsilons": []}, "experiment.epsilons: "),
    ("budget-split", {"tenant": 1}, "experiment.tenant(=1) must be the index of a tenant"),
    ("inference", {"deadlines": [0.01, -1]}, "experiment.deadlines[1]: must be > 0"),
])
def test_the_experiment_section_is_validated_naming_the_field(name, change, message):
    data = _load(name)
    data["experiment"] = {**data["experiment"], **change}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)


def test_every_experiment_config_builds_its_arms():
    for name in ("overload-admission", "isolation", "accountability", "bound-validity", "budget-split", "inference"):
        data = _load(name)
        cfg = parse_config(data)
        arms = build_arms(data, cfg.experiment)
        assert arms and len({a.name for a in arms}) == len(arms), name
    iso = build_arms(_load("isolation"), parse_config(_load("isolation")).experiment)
    assert len(iso) == 3 * (1 + 4) and all(a.mode == "plane" for a in iso)
    b8 = next(a for a in iso if a.name == "fifo-b8")
    assert b8.config.tenants[1].intent.traffic.mean_on_s == pytest.approx(0.16)
    acc = build_arms(_load("accountability"), parse_config(_load("accountability")).experiment)
    assert [a.name for a in acc] == ["clean", "impaired", "liar"]
    assert acc[1].config.run.impairments[0].domain == "transport" and acc[2].config.run.liars[0].domain == "access"


def test_an_arm_the_kind_cannot_build_names_the_field():
    data = _load("isolation")
    data["tenants"][1]["intent"]["traffic"] = {"kind": "poisson", "rate_pps": 10.0, "mean_size_bits": 1e3}
    with pytest.raises(FieldError, match=r"tenants\[1\]\.intent\.traffic\.kind\(='poisson'\) must be 'mmoo'"):
        build_arms(data, parse_config(data).experiment)
    data = _load("overload-admission")
    data["tenants"][0]["replicas"] = 2
    with pytest.raises(FieldError, match=r"tenants\[0\]\.replicas: is set by the experiment"):
        build_arms(data, parse_config(data).experiment)


def test_a_bad_impairment_of_the_accountability_experiment_names_its_field():
    data = _load("accountability")
    data["experiment"]["impairment"] = {"kind": "spikes", "start_s": 30.0, "end_s": 20.0, "value": 0.01}
    with pytest.raises(ConfigError, match=r"^experiment\.impairment: arm impaired: run\.impairments\[0\]\.end_s"
                                          r"\(=20\) must be > start_s\(=30\)"):
        build_arms(data, parse_config(data).experiment)
