"""federation.tre.validate: a leaf module with every rule once; the time helpers the agents use."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from trefed.v1 import envelope_pb2

from federation.errors import FieldError, InputError
from federation.tre import validate as v
from federation.tre.yaml import example_body, example_envelope_yaml, load_envelope_yaml

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z


def test_validate_is_a_leaf():
    code = (
        "import json, sys; import federation.tre.validate; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('federation', 'agents', 'yaml', 'cryptography', 'pydantic', 'numpy', 'grpc', 'ray'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == ["federation", "federation.errors", "federation.tre", "federation.tre.validate"]


# ------------------------------------------------------------------ time


def _agents_ts(t: float) -> Timestamp:
    """What agents.broker.logic._ts and agents.domain.logic._timestamp compute (their bodies, copied)."""
    out = Timestamp()
    out.FromNanoseconds(int(round(t * 1e9)))
    return out


@pytest.mark.parametrize("t", [0.0, 1.5, NOW + 0.123456789, 1_700_000_000.000_000_5, -1.25, 253402300799.0])
def test_timestamp_from_seconds_is_what_the_agents_compute(t):
    ts = v.timestamp_from_seconds(t)
    assert ts == _agents_ts(t)
    assert v.seconds_from_timestamp(ts) == ts.seconds + ts.nanos * 1e-9  # agents' _seconds
    assert v.timestamp_ns(ts) == ts.seconds * 10**9 + ts.nanos


@pytest.mark.parametrize("t", [math.inf, -math.inf, math.nan, 1e300, -1e300, 253402300800.0, -62135596801.0])
def test_times_a_timestamp_cannot_hold_are_field_errors(t):
    with pytest.raises(FieldError) as info:
        v.timestamp_from_seconds(t, "not_after")
    assert info.value.field == "not_after" and "between years 0001 and 9999" in str(info.value)
    with pytest.raises(FieldError):
        v.format_rfc3339(t)


def test_timestamp_ns_refuses_an_invalid_message():
    with pytest.raises(FieldError, match=r"header.not_after: \(seconds=253402300800, nanos=0\) is not a valid timestamp"):
        v.timestamp_ns(Timestamp(seconds=253402300800), "header.not_after")
    with pytest.raises(FieldError, match="nanos=-1"):
        v.timestamp_ns(Timestamp(seconds=0, nanos=-1), "t")


def test_rfc3339_formatting_round_trips_through_parsing():
    assert v.format_rfc3339(NOW) == "2027-01-15T08:00:00Z"  # as Timestamp.ToJsonString
    assert v.format_rfc3339(NOW + 0.25, timespec="milliseconds") == "2027-01-15T08:00:00.250Z"
    assert v.format_rfc3339(NOW, timespec="milliseconds") == "2027-01-15T08:00:00.000Z"
    assert v.parse_rfc3339(v.format_rfc3339(NOW + 0.5)) == v.timestamp_from_seconds(NOW + 0.5)
    assert v.format_rfc3339(v.TIMESTAMP_MAX_S) == "9999-12-31T23:59:59Z"
    assert v.format_rfc3339(v.TIMESTAMP_MIN_S) == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize("ok", [v.MIN_VALIDITY_S, 3600.0, v.MAX_VALIDITY_S])
def test_validity_range(ok):
    assert v.check_validity(ok) == ok


@pytest.mark.parametrize("bad", [1e-9, 0.999, 0.0, -1.0, math.nan, math.inf, 1e300, v.MAX_VALIDITY_S * 1.01])
def test_validity_out_of_range_names_the_field(bad):
    with pytest.raises(FieldError) as info:
        v.check_validity(bad, "domains[0].validity_s")
    assert str(info.value).startswith(f"domains[0].validity_s(={bad!r}) must be between 1 s and")


def test_the_longest_validity_fits_a_timestamp_for_centuries():
    assert v.timestamp_from_seconds(v.TIMESTAMP_MAX_S - 7000 * 365.25 * 86400 + v.MAX_VALIDITY_S)


def test_the_hold_cap_is_the_domain_logic_default():
    import inspect

    from agents.domain.logic import DomainService

    assert inspect.signature(DomainService).parameters["max_hold_s"].default == v.MAX_HOLD_S == 3600.0


# ------------------------------------------------------------------ ids and ranges


def test_domain_id_errors_are_field_errors_and_input_errors():
    assert v.check_domain_id("edge-1.eu_west") == "edge-1.eu_west"
    for bad in ("", "-x", "a b", "x" * 65, 7):
        with pytest.raises(FieldError) as info:
            v.check_domain_id(bad, "--domain")
        assert isinstance(info.value, InputError) and info.value.field == "--domain"
    with pytest.raises(FieldError, match="tre_id: must not be empty"):
        v.check_tre_id("")


def test_check_functions_report_under_the_callers_path():
    g = envelope_pb2.Guardrails(reservable_capacity_bps=1e9, max_tenant_rate_bps=2e9, latency_ceiling_s=0.1)
    with pytest.raises(FieldError) as info:
        v.check_guardrails(g, path="")
    assert str(info.value) == "max_tenant_rate_bps(=2000000000.0) must be <= reservable_capacity_bps(=1000000000.0)"
    with pytest.raises(FieldError) as info:
        v.check_guardrails(g)
    assert info.value.field == "guardrails.max_tenant_rate_bps"
    assert "guardrails.reservable_capacity_bps" in info.value.problem


def test_empirical_inference_needs_two_quantiles():
    """The proto spaces n quantiles at levels i/(n-1): one value is no distribution (was accepted)."""
    b = example_body("edge", kind="compute", now=NOW)
    b.model.inference.distribution = envelope_pb2.InferenceModel.EMPIRICAL
    b.model.inference.sigma_log = 0.0
    b.model.inference.quantiles_s.append(0.01)
    with pytest.raises(FieldError, match=r"model.inference.quantiles_s: must hold at least 2 values"):
        v.validate_body(b)
    b.model.inference.quantiles_s.append(0.02)
    v.validate_body(b)


# ------------------------------------------------------------------ the example and YAML files


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"valid_for_s": 0.5}, "valid_for_s"),  # printed an envelope with not_after == not_before
        ({"valid_for_s": 1e-9}, "valid_for_s"),
        ({"valid_for_s": math.nan}, "valid_for_s"),
        ({"valid_for_s": 1e300}, "valid_for_s"),  # ValueError traceback from protobuf
        ({"valid_for_s": 9e12}, "valid_for_s"),  # past year 9999
        ({"now": math.inf}, "now"),  # OverflowError
    ],
)
def test_example_refuses_what_it_cannot_write_as_a_valid_envelope(kw, field):
    with pytest.raises(FieldError) as info:
        example_envelope_yaml("access", **{"now": NOW, **kw})
    assert info.value.field == field


def test_example_at_the_shortest_validity_is_valid():
    b = example_body("access", now=NOW, valid_for_s=1.0)
    assert b.header.not_after.seconds - b.header.not_before.seconds == 1


def test_cli_example_with_a_huge_validity_exits_2_without_traceback():
    done = subprocess.run([sys.executable, "-m", "agents.cli", "tre", "example", "--domain", "a", "--valid-for", "1e300"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "error: valid_for_s(=1e+300)" in done.stderr and "Traceback" not in done.stderr


def test_deeply_nested_envelope_yaml_is_a_config_error(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("header: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(InputError, match="deep.yaml: not an envelope: YAML nested too deeply"):
        load_envelope_yaml(deep)
