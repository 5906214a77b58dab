"""Envelope YAML: the example is complete and valid, conversions round-trip, errors name the field."""

from __future__ import annotations

import pytest
import yaml
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from trefed.v1 import envelope_pb2

from federation.errors import ConfigError, FieldError, InputError
from federation.tre.codec import body_from_dict, body_to_dict
from federation.tre.validate import parse_rfc3339, validate_body
from federation.tre.yaml import (
    body_from_yaml,
    body_to_yaml,
    example_body,
    example_envelope_yaml,
    load_envelope_yaml,
)

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z


def _field_names(desc, prefix: str = "") -> set[str]:
    """Dotted paths of every field of a message type, recursively (timestamps and maps are leaves)."""
    out: set[str] = set()
    for f in desc.fields:
        path = f"{prefix}{f.name}"
        out.add(path)
        mt = f.message_type
        if (f.type == FieldDescriptor.TYPE_MESSAGE and mt.full_name != "google.protobuf.Timestamp"
                and not mt.GetOptions().map_entry):
            out |= _field_names(mt, path + ("[]." if f.is_repeated else "."))
    return out


def _dict_paths(data, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        path = f"{prefix}{k}"
        out.add(path)
        if isinstance(v, dict) and k != "labels":
            out |= _dict_paths(v, path + ".")
    return out


def test_example_is_valid_and_has_the_requested_identity():
    text = example_envelope_yaml("access", now=NOW, valid_for_s=3600, sequence=7)
    body = body_from_yaml(text)
    h = body.header
    assert (h.domain_id, h.tre_id, h.sequence, h.kind) == ("access", "access/gold", 7, envelope_pb2.NETWORK)
    assert h.issued_at.seconds == h.not_before.seconds == NOW and h.not_after.seconds == NOW + 3600
    assert '"2027-01-15T08:00:00Z"' in text  # RFC 3339, quoted
    compute = example_body("edge", kind="compute", now=NOW)
    assert compute.header.kind == envelope_pb2.COMPUTE
    assert compute.model.inference.mean_s > 0


def test_compute_example_spells_out_every_field_and_network_example_mentions_them():
    all_fields = _field_names(envelope_pb2.EnvelopeBody.DESCRIPTOR)
    compute = yaml.safe_load(example_envelope_yaml("edge", kind="compute", now=NOW))
    present = _dict_paths(compute)
    # every field is a live key, except the items of the (empty) MGF table, which a comment describes
    assert all_fields - present == {"model.mgf[].theta", "model.mgf[].rate_bps", "model.mgf[].sigma_bits"}
    network_text = example_envelope_yaml("access", now=NOW)
    for path in all_fields:
        assert path.rsplit(".", 1)[-1] + ":" in network_text, path


def test_example_comments_state_units():
    text = example_envelope_yaml("edge", kind="compute", now=NOW)
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lstrip("# ")
        if key.endswith("_bps"):
            assert "bits/s" in line, line
        elif key.endswith("_s"):
            assert ", s" in line or " s:" in line or "s," in line, line
        elif key.endswith("_bits"):
            assert "bits" in line, line


def test_example_rejects_bad_domain_and_kind():
    with pytest.raises(InputError, match="--domain"):
        example_envelope_yaml("no spaces please")
    with pytest.raises(ConfigError, match="kind"):
        example_envelope_yaml("access", kind="storage")


def _rich_body() -> envelope_pb2.EnvelopeBody:
    b = example_body("edge", kind="compute", now=NOW)
    b.header.key_id = "edge-0123abcd"
    b.header.not_after.nanos = 123456789
    b.model.service = envelope_pb2.TABULATED_MGF
    b.model.mgf.add(theta=1e-6, rate_bps=3.9e8, sigma_bits=100.5)
    b.model.mgf.add(theta=2.5e-6, rate_bps=3.7e8, sigma_bits=260.0)
    b.model.inference.distribution = envelope_pb2.InferenceModel.EMPIRICAL
    b.model.inference.sigma_log = 0.0
    b.model.inference.quantiles_s.extend([0.001, 0.003, 0.003, 0.04])
    b.labels["z"] = "last"
    b.labels["a"] = "first: with colon"
    validate_body(b)
    return b


def test_round_trip_body_yaml_body():
    b = _rich_body()
    assert body_from_yaml(body_to_yaml(b)) == b
    assert body_from_dict(body_to_dict(b)) == b


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=1.0, max_value=1e12, allow_nan=False),
    frac=st.floats(min_value=1e-9, max_value=1.0),
    latency=st.floats(min_value=0.0, max_value=1.0),
    loss=st.floats(min_value=0.0, max_value=0.5),
    seq=st.integers(min_value=1, max_value=2**64 - 1),
    label=st.text(min_size=0, max_size=20),
)
def test_property_yaml_round_trip_is_exact(rate, frac, latency, loss, seq, label):
    b = example_body("access", now=NOW)
    b.model.rate_bps = rate
    b.guardrails.reservable_capacity_bps = rate * frac
    b.guardrails.max_tenant_rate_bps = rate * frac
    b.guardrails.min_tenant_rate_bps = 0.0
    b.model.latency_s = latency
    b.model.propagation_delay_s = 0.0
    b.guardrails.latency_ceiling_s = latency + 1.0
    b.model.loss_probability = loss
    b.guardrails.loss_ceiling = max(loss, 0.5)
    b.header.sequence = seq
    b.labels["note"] = label
    validate_body(b)
    assert body_from_yaml(body_to_yaml(b)) == b


def test_lenient_scalars_numeric_strings_unquoted_timestamps_lowercase_enums():
    data = yaml.safe_load(example_envelope_yaml("access", now=NOW))
    text = example_envelope_yaml("access", now=NOW)
    text = text.replace("rate_bps: 1.0e+9", "rate_bps: 1e9")  # YAML 1.1 reads 1e9 as a string
    text = text.replace('not_after: "2027-02-14T08:00:00Z"', "not_after: 2027-02-14T08:00:00+01:00")
    text = text.replace("kind: NETWORK", "kind: network")
    b = body_from_yaml(text)
    assert b.model.rate_bps == 1e9 == data["model"]["rate_bps"]
    assert b.header.not_after.seconds == NOW + 30 * 86400 - 3600
    assert b.header.kind == envelope_pb2.NETWORK


def _edit(path: str, value):
    data = yaml.safe_load(example_envelope_yaml("access", now=NOW))
    *parents, leaf = path.split(".")
    target = data
    for p in parents:
        target = target[p]
    target[leaf] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field", "match"),
    [
        ("model.rte_bps", 1.0, "model.rte_bps", "unknown field"),
        ("model.rate_bps", "fast", "model.rate_bps", "must be a number"),
        ("model.rate_bps", True, "model.rate_bps", "must be a number"),
        ("model.rate_bps", -3.0, "model.rate_bps", "must be > 0"),
        ("model.loss_probability", 1.5, "model.loss_probability", r"\[0, 1\)"),
        ("header.sequence", 1.5, "header.sequence", "integer"),
        ("header.sequence", -1, "header.sequence", "integer in"),
        ("header.sequence", 0, "header.sequence", ">= 1"),
        ("header.tre_id", 42, "header.tre_id", "must be a string"),
        ("header.kind", "STORAGE", "header.kind", "NETWORK, COMPUTE"),
        ("header.not_before", "2027-01-15T08:00:00", "header.not_before", "RFC 3339"),
        ("header.not_before", "2027-02-30T08:00:00Z", "header.not_before", "not a valid timestamp"),
        ("header.not_before", "2030-01-01T00:00:00Z", "header.not_before", "must be before header.not_after"),
        ("guardrails", [1, 2], "guardrails", "mapping"),
        ("model.mgf", {"theta": 1}, "model.mgf", "must be a list"),
        ("labels", {"n": 3}, "labels.n", "strings"),
        ("guardrails.latency_ceiling_s", None, "guardrails.latency_ceiling_s", "must have a value"),
    ],
)
def test_errors_name_the_field(path, value, field, match):
    with pytest.raises(FieldError, match=match) as info:
        body_from_dict(_edit(path, value))
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_nested_list_item_errors_carry_the_index():
    data = _edit("model.service", "TABULATED_MGF")
    data["model"]["mgf"] = [{"theta": 1e-6, "rate_bps": 1e9, "sigma_bits": 1.0}, {"theta": "x"}]
    with pytest.raises(FieldError) as info:
        body_from_dict(data)
    assert info.value.field == "model.mgf[1].theta"


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_envelope_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("header: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line 2"):
        load_envelope_yaml(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("header:\n  sequence: 1\n  sequence: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'sequence'"):
        load_envelope_yaml(dup)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="empty.yaml: empty file"):
        load_envelope_yaml(empty)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="bin.yaml: cannot read"):
        load_envelope_yaml(binary)
    oor = tmp_path / "oor.yaml"
    oor.write_text(example_envelope_yaml("access", now=NOW).replace("loss_ceiling: 1.0e-3", "loss_ceiling: 2"))
    with pytest.raises(FieldError) as info:
        load_envelope_yaml(oor)
    assert str(info.value).startswith(f"{oor}: guardrails.loss_ceiling(=2.0)")
    good = tmp_path / "good.yaml"
    good.write_text(example_envelope_yaml("access", now=NOW))
    assert load_envelope_yaml(good) == example_body("access", now=NOW)


def test_parse_rfc3339_offsets_and_nanoseconds():
    ts = parse_rfc3339("2027-01-15T09:00:00.000000001+01:00")
    assert (ts.seconds, ts.nanos) == (NOW, 1)
    assert parse_rfc3339("2027-01-15t08:00:00z").seconds == NOW
    for bad in ("2027-01-15", "yesterday", "2027-01-15T08:00:00.1234567890Z", 17):
        with pytest.raises(FieldError):
            parse_rfc3339(bad)


def test_validate_body_rejects_nonfinite_everywhere():
    for path in ("guardrails.max_burst_bits", "model.latency_s", "model.propagation_delay_s"):
        data = _edit(path, float("nan"))
        with pytest.raises(FieldError) as info:
            body_from_dict(data)
        assert info.value.field == path
        assert "must be finite" in str(info.value)
