"""Federation configs: the quickstart loads, errors name the field path, conversions to the wire are valid."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FAST_CONFIG
from trefed.v1 import envelope_pb2, services_pb2

import federation.config as fc
from agents.runner import load_domain_keys
from federation.config import load_config, parse_config
from federation.errors import ConfigError, FieldError, InputError
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
         "domains[0].guardrails.max_tenant_rate_bps(=1000000000000.0) must be <= reservable_capacity_bps"),
        (lambda d: d["domains"][1]["model"].__setitem__("loss_probability", 0.5),
         "domains[1].model.loss_probability(=0.5) must be <= guardrails.loss_ceiling"),
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
         "domains[2].model.inference.sigma_log(=0.0) must be > 0"),
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


# ------------------------------------------------------------------ configs that loaded but crashed `trefed run`


def _set(path: str, value):
    """A mutation of FAST_CONFIG setting the dotted ``path`` (list items as ``domains.0``)."""

    def apply(data):
        *parents, leaf = path.split(".")
        target = data
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value

    return apply


_DELETE = object()

REFUSED = [
    # the domain's envelope could not be signed (FieldError, not picklable: Ray's UnserializableException)
    (_set("domains.0.validity_s", 1e-9), "domains[0].validity_s(=1e-09) must be between 1 s and"),
    (_set("domains.0.validity_s", 0.5), "domains[0].validity_s(=0.5) must be between 1 s and"),
    # not_after overflows a Timestamp (OverflowError)
    (_set("domains.1.validity_s", 1e300), "domains[1].validity_s(=1e+300) must be between 1 s and"),
    # loaded, exited 0, every tenant rejected by the domains' 3 600 s hold cap
    (_set("broker.hold_timeout_s", 1e6), "broker.hold_timeout_s(=1000000.0) must be <= 3600 s"),
    # gRPC deadlines of ~1e10 s and more expire at once: every call DEADLINE_EXCEEDED
    (_set("broker.rpc_timeout_s", 1e300), "broker.rpc_timeout_s(=1e+300) must be <= hold_timeout_s(=5.0)"),
    # envelope rules the config did not check: the domain could not sign its envelope
    (_set("domains.2.model.inference", _DELETE), "domains[2].model.inference: must be set for a COMPUTE domain"),
    (_set("domains.0.guardrails.latency_ceiling_s", 0.001),
     "domains[0].guardrails.latency_ceiling_s(=0.001) must exceed model.latency_s + model.propagation_delay_s"),
    (_set("domains.2.model.inference.sigma_log", 0.5),
     "domains[2].model.inference.sigma_log(=0.5) must be 0 unless distribution is LOGNORMAL"),
    (_set("domains.0.labels", {"": "x"}), "domains[0].labels: keys must not be empty"),
    # offered at price inf: `trefed run --json` failed (JSON has no inf)
    (_set("domains.1.price_per_mbps_hour", 1e308), "domains[1].price_per_mbps_hour(=1e+308) makes the price"),
]

#: Refused before too, now by the envelope's own rule (:mod:`federation.tre.validate`), not a copy.
SHARED_RULES = [
    (_set("domains.1.validity_s", math.inf), "domains[1].validity_s(=inf) must be between 1 s and"),
    (_set("domains.1.validity_s", math.nan), "domains[1].validity_s(=nan) must be between 1 s and"),
    (_set("domains.0.guardrails.max_burst_bits", math.nan), "domains[0].guardrails.max_burst_bits(=nan) must be finite"),
    (_set("domains.1.model.latency_s", math.inf), "domains[1].model.latency_s(=inf) must be finite"),
    (_set("domains.0.id", "bad id"), "domains[0].id(='bad id') must be 1-64 characters"),
    (_set("models.0.latency", {"distribution": "empirical", "mean_s": 0.002, "quantiles_s": [0.001]}),
     "models[0].latency.quantiles_s: must hold at least 2 values"),
]


@pytest.mark.parametrize(("mutate", "expected"), REFUSED, ids=[e.split("(")[0].split(":")[0] for _, e in REFUSED])
def test_configs_that_crashed_trefed_run_are_refused_at_load_naming_the_field(mutate, expected):
    assert expected in _err(mutate)


@pytest.mark.parametrize(("mutate", "expected"), SHARED_RULES, ids=[e.split("(")[0] for _, e in SHARED_RULES])
def test_fields_shared_with_the_envelope_are_checked_by_its_rules(mutate, expected):
    assert expected in _err(mutate)


def test_the_config_refuses_with_the_envelopes_own_rule(fast_config):
    """One rule, one message: the config's error is the envelope validator's, under the config's path."""
    from federation.tre.validate import validate_body

    data = copy.deepcopy(FAST_CONFIG)
    data["domains"][0]["guardrails"]["latency_ceiling_s"] = 0.001
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    body = fast_config().domain("access").envelope_body("k", now=1_800_000_000.0)
    body.guardrails.latency_ceiling_s = 0.001
    with pytest.raises(FieldError) as envelope_error:
        validate_body(body)
    assert str(info.value) == f"domains[0].{envelope_error.value}"


def test_every_loaded_domain_publishes_an_envelope_that_validates(fast_config):
    from federation.tre.validate import MAX_VALIDITY_S, MIN_VALIDITY_S, validate_body

    for validity in (MIN_VALIDITY_S, 3600.0, MAX_VALIDITY_S):
        data = copy.deepcopy(FAST_CONFIG)
        for d in data["domains"]:
            d["validity_s"] = validity
        for d in parse_config(data).domains:
            validate_body(d.envelope_body("k", now=1_800_000_000.0))


def test_the_longest_hold_and_rpc_deadline_load():
    data = copy.deepcopy(FAST_CONFIG)
    data["broker"].update({"hold_timeout_s": 3600.0, "rpc_timeout_s": 3600.0})
    assert parse_config(data).broker.hold_timeout_s == 3600.0


def test_keys_dir_that_cannot_hold_keys_is_refused(tmp_path):
    file = tmp_path / "keys"
    file.write_text("not a directory")
    data = copy.deepcopy(FAST_CONFIG)
    data["keys_dir"] = str(file)
    with pytest.raises(ConfigError, match=rf"^keys_dir\(='{file}'\) is not a directory$"):
        parse_config(data)  # FileExistsError from the runner's mkdir before
    data["keys_dir"] = str(file / "sub")
    with pytest.raises(ConfigError, match=rf"keys_dir\(='{file}/sub'\) cannot be created: {file} is not a directory"):
        parse_config(data)
    keys = tmp_path / "dir"
    (keys / "edge.key").mkdir(parents=True)
    data["keys_dir"] = str(keys)
    with pytest.raises(ConfigError, match=r"keys_dir\(=.*\): edge.key is not a file"):
        parse_config(data)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_keys_dir_is_refused_when_keys_are_missing(tmp_path):
    keys = tmp_path / "ro"
    keys.mkdir(mode=0o500)
    data = copy.deepcopy(FAST_CONFIG)
    data["keys_dir"] = str(keys)
    with pytest.raises(ConfigError, match=r"is not writable, so the keys of access, transport, edge cannot be created"):
        parse_config(data)


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def test_binary_and_pathological_files_are_config_errors_naming_the_file(tmp_path):
    png = tmp_path / "logo.png"
    png.write_bytes(PNG)
    with pytest.raises(ConfigError, match=rf"^{png}: not a YAML config: not UTF-8 text \(byte 0 is 0x89\)$"):
        load_config(png)  # UnicodeDecodeError traceback before
    with pytest.raises(ConfigError, match=r"^/bin/ls: not a YAML config: not UTF-8 text"):
        load_config("/bin/ls")
    deep = tmp_path / "deep.yaml"
    deep.write_text("domains: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: not a YAML config: nested too deeply"):
        load_config(deep)  # RecursionError before


def _bad_files(tmp_path) -> dict[str, tuple[str, str]]:
    """name -> (path, what the error must name)."""
    out = {}
    png = tmp_path / "logo.png"
    png.write_bytes(PNG)
    out["png"] = (str(png), f"{png}: not a YAML config")
    out["elf"] = ("/bin/ls", "/bin/ls: not a YAML config")
    for name, mutate, field in [
        ("validity-tiny", _set("domains.0.validity_s", 1e-9), "domains[0].validity_s(=1e-09)"),
        ("validity-huge", _set("domains.0.validity_s", 1e300), "domains[0].validity_s(=1e+300)"),
        ("hold", _set("broker.hold_timeout_s", 1e6), "broker.hold_timeout_s(=1000000.0)"),
        ("keys-file", _set("keys_dir", str(png)), f"keys_dir(='{png}') is not a directory"),
    ]:
        data = copy.deepcopy(FAST_CONFIG)
        mutate(data)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        out[name] = (str(path), field)
    return out


def test_trefed_run_and_serve_refuse_bad_files_before_ray_starts(tmp_path):
    """Exit 2, ``error:`` naming the file or field, no traceback; a Ray that cannot be imported
    proves the config was refused before the federation (and Ray) started."""
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('ray was imported before the config was checked')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    trefed = Path(sys.executable).with_name("trefed")
    assert trefed.exists(), "the trefed console script is not installed next to the interpreter"
    for name, (path, named) in _bad_files(tmp_path).items():
        for cmd in (("run",) if name != "png" else ("run", "serve")):
            done = subprocess.run([str(trefed), cmd, path], capture_output=True, text=True, timeout=60, env=env)
            assert done.returncode == 2, (name, done.stderr)
            assert f"trefed {cmd}: error: " in done.stderr and named in done.stderr, (name, done.stderr)
            assert "Traceback" not in done.stderr, (name, done.stderr)
