"""Federation configs: the quickstart loads, errors name the field path, conversions to the wire are valid."""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from conftest import FAST_CONFIG
from trefed.v1 import envelope_pb2, services_pb2

import federation.config as fc
from agents.runner import load_domain_keys
from federation.config import load_config, parse_config
from federation.errors import ConfigError, InputError
from federation.tre.signing import SigningKey, sign_envelope
from federation.tre.trust import TrustStore

QUICKSTART = "configs/quickstart.yaml"


def test_public_names():
    assert set(fc.__all__) >= {"FederationConfig", "load_config", "parse_config", "intent_from_proto"}
    assert all(hasattr(fc, n) for n in fc.__all__)


def test_quickstart_loads_and_has_three_domains_two_models():
    cfg = load_config(QUICKSTART)
    assert [d.kind for d in cfg.domains] == ["network", "network", "compute"]
    assert len([m for m in cfg.models if m.compute_domain == "edge"]) == 2
    assert len(cfg.tenants) >= 4
    assert cfg.paths("access", "edge") == [("access", "transport", "edge")]
    assert cfg.keys_dir is None


def _err(mutate) -> str:
    data = copy.deepcopy(FAST_CONFIG)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["tenants"][2]["intent"].__setitem__("deadline_s", 0), "tenants[2].intent.deadline_s: must be > 0"),
        (lambda d: d["tenants"][0]["intent"].__setitem__("epsilon", 1.5), "tenants[0].intent.epsilon: must be < 1"),
        (lambda d: d["tenants"][1]["intent"]["traffic"].__setitem__("rho_bps", -1),
         "tenants[1].intent.traffic.rho_bps: must be > 0"),
        (lambda d: d["tenants"][1]["intent"]["traffic"].__setitem__("kind", "pareto"), "tenants[1].intent.traffic"),
        (lambda d: d["domains"][0]["guardrails"].__setitem__("max_tenant_rate_bps", 1e12),
         "domains[0].guardrails.max_tenant_rate_bps: must be <= reservable_capacity_bps"),
        (lambda d: d["domains"][1]["model"].__setitem__("loss_probability", 0.5),
         "domains[1].model.loss_probability: must be <= guardrails.loss_ceiling"),
        (lambda d: d["domains"][0].__setitem__("kind", "storage"), "domains[0].kind"),
        (lambda d: d["domains"][0].__setitem__("colour", "red"), "domains[0].colour: unknown field"),
        (lambda d: d["domains"][2].pop("guardrails"), "domains[2].guardrails: field required"),
        (lambda d: d["domains"][1].__setitem__("id", "access"), "domains[1].id: duplicate id 'access'"),
        (lambda d: d["models"][0].__setitem__("compute_domain", "access"),
         "models[0].compute_domain: not a compute domain 'access'"),
        (lambda d: d["models"][1].__setitem__("compute_domain", "mars"), "models[1].compute_domain: unknown domain"),
        (lambda d: d["links"].append(["edge", "nowhere"]), "links[2][1]: unknown domain 'nowhere'"),
        (lambda d: d["tenants"][3].__setitem__("access", "moon"), "tenants[3].access: unknown domain 'moon'"),
        (lambda d: d["tenants"][4].__setitem__("id", "t1"), "tenants[4].id: duplicate id 't1'"),
        (lambda d: d["domains"][2]["model"]["inference"].__setitem__("distribution", "lognormal"),
         "domains[2].model.inference.sigma_log: must be > 0"),
        (lambda d: d["broker"].__setitem__("hold_timeout_s", -1), "broker.hold_timeout_s: must be > 0"),
    ],
)
def test_errors_name_the_field_path(mutate, expected):
    assert expected in _err(mutate)


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    assert issubclass(ConfigError, InputError)


def test_envelope_body_is_a_valid_signed_tre_mirroring_the_config(fast_config):
    cfg = fast_config()
    store = TrustStore()
    for d in cfg.domains:
        key = SigningKey.generate(d.id)
        store.add(key.key_id, d.id, key.public_key_bytes())
        body = d.envelope_body(key.key_id, now=1_800_000_000.0)
        env = sign_envelope(body, key)
        got = store.verify_envelope(env, now=1_800_000_001.0)
        assert got.header.domain_id == d.id and got.header.tre_id == d.service_class
        assert got.header.kind == (envelope_pb2.COMPUTE if d.kind == "compute" else envelope_pb2.NETWORK)
        assert got.guardrails.reservable_capacity_bps == d.guardrails.reservable_capacity_bps
        assert got.model.rate_bps == d.model.rate_bps
        assert got.model.loss_probability == d.model.loss_probability
        assert math.isclose(got.header.not_after.seconds - got.header.not_before.seconds, d.validity_s, abs_tol=1)
    edge = cfg.domain("edge").envelope_body("k", now=0.0)
    assert edge.model.inference.mean_s == 0.002


def test_intent_round_trip_and_wire_validation(fast_config):
    cfg = fast_config()
    msg = cfg.tenants[0].intent.to_proto("t1")
    assert msg.traffic.WhichOneof("model") == "token_bucket"
    assert fc.intent_from_proto(msg) == cfg.tenants[0].intent
    bad = services_pb2.Intent()
    bad.CopyFrom(msg)
    bad.deadline_s = -1.0
    with pytest.raises(ConfigError, match=r"intent\.deadline_s: must be > 0"):
        fc.intent_from_proto(bad)
    bad.CopyFrom(msg)
    bad.ClearField("traffic")
    with pytest.raises(ConfigError, match=r"intent\.traffic"):
        fc.intent_from_proto(bad)
    bad.CopyFrom(msg)
    bad.traffic.mmoo.peak_bps = 1e6  # switches the oneof; on/off times are 0
    with pytest.raises(ConfigError, match=r"intent\.traffic\.mmoo\.mean_on_s: must be > 0"):
        fc.intent_from_proto(bad)
    p = cfg.tenants[0].intent.model_copy(
        update={"traffic": fc.PoissonConfig(rate_pps=10, mean_size_bits=1e4, exponential_sizes=True)}
    )
    assert fc.intent_from_proto(p.to_proto("x")).traffic == p.traffic


def test_paths_only_through_network_domains(fast_config):
    links = [["access", "transport"], ["transport", "edge"], ["access", "edge"], ["edge", "transport2"],
             ["transport2", "access"]]
    data = copy.deepcopy(FAST_CONFIG)
    data["domains"].append({**copy.deepcopy(data["domains"][1]), "id": "transport2", "tre_id": "t2/gold"})
    data["links"] = links
    cfg = parse_config(data)
    assert cfg.paths("access", "edge") == [
        ("access", "edge"), ("access", "transport", "edge"), ("access", "transport2", "edge")
    ]
    assert cfg.paths("access", "nowhere") == []


def test_keys_dir_generated_on_the_fly_then_reused(tmp_path, fast_config):
    cfg = fast_config(keys_dir=str(tmp_path / "keys"))
    first = load_domain_keys(cfg)
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == sorted(
        [f"{d.id}.key" for d in cfg.domains] + [f"{d.id}.pub" for d in cfg.domains]
    )
    again = load_domain_keys(cfg)
    assert {d: k.key_id for d, k in first.items()} == {d: k.key_id for d, k in again.items()}
    store = TrustStore.from_dir(tmp_path / "keys")
    assert sorted(store.key_ids()) == sorted(k.key_id for k in first.values())
    fresh = load_domain_keys(fast_config())
    assert fresh["access"].key_id != first["access"].key_id


def test_relative_keys_dir_resolves_against_the_config_file(tmp_path):
    data = copy.deepcopy(FAST_CONFIG)
    data["keys_dir"] = "keys"
    path = tmp_path / "fed.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).keys_dir == tmp_path / "keys"


def test_cli_reports_config_errors_with_exit_code_2(tmp_path):
    import subprocess
    import sys

    data = copy.deepcopy(FAST_CONFIG)
    data["tenants"][2]["intent"]["deadline_s"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    for cmd in ("run", "serve"):
        done = subprocess.run([sys.executable, "-m", "agents.cli", cmd, str(path)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"trefed {cmd}: error: tenants[2].intent.deadline_s: must be > 0" in done.stderr
        assert "Traceback" not in done.stderr
