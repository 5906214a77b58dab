"""TrustStore: every rejection reason, the protobuf round trip, replay state, bit flips."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trefed.v1 import envelope_pb2, reservation_pb2, telemetry_pb2

from federation.errors import InputError, VerificationError
from federation.tre.signing import (
    Reason,
    SigningKey,
    canonical_bytes,
    key_id_for,
    sign,
    sign_envelope,
    sign_grant,
)
from federation.tre.trust import TrustStore
from federation.tre.validate import validate_body
from federation.tre.yaml import example_body

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86400.0

ACCESS = SigningKey.generate("access")
TRANSPORT = SigningKey.generate("transport")
EDGE = SigningKey.generate("edge")
STRANGER = SigningKey.generate("access", key_id="access-stranger")


@pytest.fixture
def store() -> TrustStore:
    s = TrustStore()
    for k in (ACCESS, TRANSPORT, EDGE):
        s.add_key(k)
    return s


def body(domain: str = "access", *, sequence: int = 1, kind: str = "network") -> envelope_pb2.EnvelopeBody:
    return example_body(domain, kind=kind, now=NOW - DAY, valid_for_s=10 * DAY, sequence=sequence)


def envelope(domain: str = "access", key: SigningKey = ACCESS, **kw) -> envelope_pb2.TailRiskEnvelope:
    return sign_envelope(body(domain, **kw), key)


def manual(data: bytes, key: SigningKey = ACCESS) -> envelope_pb2.TailRiskEnvelope:
    """A wrapper around arbitrary body bytes with a valid signature over them."""
    env = envelope_pb2.TailRiskEnvelope(body=data)
    env.signature.algorithm = envelope_pb2.ED25519
    env.signature.key_id = key.key_id
    env.signature.signature = key.sign_bytes(data)
    return env


def rejected(fn: Callable[[], object]) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        fn()
    assert isinstance(info.value.reason, str) and info.value.reason in {r.value for r in Reason}
    return info.value


# ------------------------------------------------------------------ acceptance and round trip


def test_valid_envelope_round_trips_through_protobuf_bytes(store):
    original = body()
    env = sign_envelope(original, ACCESS)
    wire = env.SerializeToString()
    parsed = envelope_pb2.TailRiskEnvelope.FromString(wire)
    got = store.verify_envelope(parsed, now=NOW)
    expected = envelope_pb2.EnvelopeBody()
    expected.CopyFrom(original)
    expected.header.key_id = ACCESS.key_id
    assert got == expected
    assert canonical_bytes(got) == env.body
    # also straight from bytes, for another (domain, tre) and a compute domain
    got2 = store.verify_envelope(sign_envelope(body("edge", kind="compute"), EDGE).SerializeToString(), now=NOW)
    assert got2.model.inference.distribution == envelope_pb2.InferenceModel.LOGNORMAL
    assert store.last_accepted("access", "access/gold") == 1
    assert store.last_accepted("edge", "edge/gold") == 1


# ------------------------------------------------------------------ every reason


def test_malformed_wrapper_bytes(store):
    assert rejected(lambda: store.verify_envelope(b"\xff\xff\xff", now=NOW)).reason == Reason.MALFORMED


def test_malformed_wrong_type(store):
    grant = sign_grant(_grant(), ACCESS)
    assert rejected(lambda: store.verify_envelope(grant, now=NOW)).reason == Reason.MALFORMED


def test_malformed_missing_signature(store):
    env = envelope()
    env.ClearField("signature")
    assert rejected(lambda: store.verify_envelope(env, now=NOW)).reason == Reason.MALFORMED


def test_malformed_signed_but_undecodable_body(store):
    err = rejected(lambda: store.verify_envelope(manual(b"\x0a\x05ab"), now=NOW))
    assert err.reason == Reason.MALFORMED and "decode" in err.detail


def test_malformed_non_canonical_body(store):
    b = body()
    b.header.key_id = ACCESS.key_id
    # Same fields, but guardrails (field 2) encoded before header (field 1): parses, is not canonical.
    parts = [envelope_pb2.EnvelopeBody(guardrails=b.guardrails), envelope_pb2.EnvelopeBody(header=b.header),
             envelope_pb2.EnvelopeBody(model=b.model)]
    data = b"".join(canonical_bytes(p) for p in parts)
    assert envelope_pb2.EnvelopeBody.FromString(data) == envelope_pb2.EnvelopeBody(
        header=b.header, guardrails=b.guardrails, model=b.model)
    err = rejected(lambda: store.verify_envelope(manual(data), now=NOW))
    assert err.reason == Reason.MALFORMED and "canonical" in err.detail


def test_malformed_oversized_body(store):
    b = body()
    b.header.key_id = ACCESS.key_id
    b.labels["padding"] = "x" * (1 << 20)
    err = rejected(lambda: store.verify_envelope(manual(canonical_bytes(b)), now=NOW))
    assert err.reason == Reason.MALFORMED and "exceeds" in err.detail


def test_malformed_inner_key_id_differs_from_signature_key_id(store):
    b = body()
    b.header.key_id = TRANSPORT.key_id  # claims another key than the one that signed
    err = rejected(lambda: store.verify_envelope(manual(canonical_bytes(b)), now=NOW))
    assert err.reason == Reason.MALFORMED and "header.key_id" in err.detail


@pytest.mark.parametrize("algorithm", [envelope_pb2.SIGNATURE_ALGORITHM_UNSPECIFIED, 7])
def test_unsupported_algorithm(store, algorithm):
    env = envelope()
    env.signature.algorithm = algorithm
    assert rejected(lambda: store.verify_envelope(env, now=NOW)).reason == Reason.UNSUPPORTED_ALGORITHM


def test_unknown_key(store):
    env = envelope(key=STRANGER)
    err = rejected(lambda: store.verify_envelope(env, now=NOW))
    assert err.reason == Reason.UNKNOWN_KEY and "access-stranger" in err.detail


def test_key_not_bound_to_claimed_domain(store):
    # transport's (trusted) key signs an envelope that claims to be access's
    env = sign_envelope(body("access"), TRANSPORT, check=False)
    err = rejected(lambda: store.verify_envelope(env, now=NOW))
    assert err.reason == Reason.KEY_DOMAIN_MISMATCH
    assert "'transport'" in err.detail and "'access'" in err.detail


def test_bad_signature_tampered_signature(store):
    env = envelope()
    sig = bytearray(env.signature.signature)
    sig[5] ^= 0x01
    env.signature.signature = bytes(sig)
    assert rejected(lambda: store.verify_envelope(env, now=NOW)).reason == Reason.BAD_SIGNATURE


def test_bad_signature_tampered_body(store):
    env = envelope()
    b = envelope_pb2.EnvelopeBody.FromString(env.body)
    b.guardrails.reservable_capacity_bps *= 1.01  # still in range, still canonical: only the signature catches it
    env.body = canonical_bytes(b)
    assert rejected(lambda: store.verify_envelope(env, now=NOW)).reason == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("sig", [b"", b"\x00" * 63, b"\x00" * 64, b"\x00" * 65])
def test_bad_signature_wrong_length_or_zero(store, sig):
    env = envelope()
    env.signature.signature = sig
    assert rejected(lambda: store.verify_envelope(env, now=NOW)).reason == Reason.BAD_SIGNATURE


def test_bad_signature_other_keys_signature_under_claimed_key_id(store):
    env = envelope()
    env.signature.signature = TRANSPORT.sign_bytes(env.body)
    assert rejected(lambda: store.verify_envelope(env, now=NOW)).reason == Reason.BAD_SIGNATURE


def test_not_yet_valid_and_expired_boundaries(store):
    env = envelope()
    b = envelope_pb2.EnvelopeBody.FromString(env.body)
    nbf = b.header.not_before.seconds
    naf = b.header.not_after.seconds
    assert rejected(lambda: TrustStore_with().verify_envelope(env, now=nbf - 0.001)).reason == Reason.NOT_YET_VALID
    assert TrustStore_with().verify_envelope(env, now=nbf) == b  # inclusive
    assert TrustStore_with().verify_envelope(env, now=naf - 0.001) == b
    assert rejected(lambda: TrustStore_with().verify_envelope(env, now=naf)).reason == Reason.EXPIRED  # exclusive
    assert rejected(lambda: store.verify_envelope(env, now=naf + 1e6)).reason == Reason.EXPIRED
    # with clock skew tolerance, 10 s either side passes
    assert TrustStore_with(clock_skew_s=10).verify_envelope(env, now=nbf - 9.0) == b
    assert TrustStore_with(clock_skew_s=10).verify_envelope(env, now=naf + 9.0) == b
    assert rejected(lambda: TrustStore_with(clock_skew_s=10).verify_envelope(env, now=naf + 11.0)).reason == Reason.EXPIRED


def test_default_now_is_wall_clock():
    current = example_body("access", valid_for_s=3600)  # starts now
    stale = example_body("access", now=1_000_000_000, valid_for_s=3600)
    assert TrustStore_with().verify_envelope(sign_envelope(current, ACCESS)).header.domain_id == "access"
    assert rejected(lambda: TrustStore_with().verify_envelope(sign_envelope(stale, ACCESS))).reason == Reason.EXPIRED


def TrustStore_with(**kw) -> TrustStore:  # noqa: N802 - reads like a constructor
    s = TrustStore(**kw)
    for k in (ACCESS, TRANSPORT, EDGE):
        s.add_key(k)
    return s


def test_replay_and_rollback(store):
    e1, e2, e3 = (envelope(sequence=i) for i in (1, 2, 3))
    store.verify_envelope(e2, now=NOW)
    err = rejected(lambda: store.verify_envelope(e2, now=NOW))
    assert err.reason == Reason.REPLAY and "sequence 2" in err.detail
    assert rejected(lambda: store.verify_envelope(e1, now=NOW)).reason == Reason.REPLAY  # rollback
    assert store.verify_envelope(e2, now=NOW, accept_redelivery=True).header.sequence == 2  # re-fetch
    assert rejected(lambda: store.verify_envelope(e1, now=NOW, accept_redelivery=True)).reason == Reason.REPLAY
    assert store.verify_envelope(e3, now=NOW).header.sequence == 3
    assert store.last_accepted("access", "access/gold") == 3
    # a different body under an already-accepted sequence (equivocation) is never a re-delivery
    b = body(sequence=3)
    b.labels["note"] = "changed"
    err = rejected(lambda: store.verify_envelope(sign_envelope(b, ACCESS), now=NOW, accept_redelivery=True))
    assert err.reason == Reason.REPLAY and "different body" in err.detail


def test_replay_state_is_per_domain_and_tre_id(store):
    store.verify_envelope(envelope(sequence=5), now=NOW)
    store.verify_envelope(envelope("transport", TRANSPORT, sequence=1), now=NOW)  # other domain
    other = body(sequence=1)
    other.header.tre_id = "access/silver"
    store.verify_envelope(sign_envelope(other, ACCESS), now=NOW)  # other service class
    assert store.last_accepted("access", "access/gold") == 5
    assert store.last_accepted("access", "access/silver") == 1
    assert store.last_accepted("nowhere", "x") is None


def test_rejected_envelopes_do_not_advance_the_sequence(store):
    late = example_body("access", now=NOW - 10 * DAY, valid_for_s=DAY, sequence=9)
    assert rejected(lambda: store.verify_envelope(sign_envelope(late, ACCESS), now=NOW)).reason == Reason.EXPIRED
    assert store.last_accepted("access", "access/gold") is None
    assert store.verify_envelope(envelope(sequence=2), now=NOW).header.sequence == 2


def test_concurrent_verification_accepts_exactly_once(store):
    env = envelope(sequence=1)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            store.verify_envelope(env, now=NOW)
            outcomes.append("ok")
        except VerificationError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + [Reason.REPLAY] * 7


def _mutate(path: str, value) -> Callable[[envelope_pb2.EnvelopeBody], None]:
    def apply(b: envelope_pb2.EnvelopeBody) -> None:
        *parents, leaf = path.split(".")
        target = b
        for p in parents:
            target = getattr(target, p)
        setattr(target, leaf, value)

    return apply


def _swap_window(b):
    b.header.not_before.seconds, b.header.not_after.seconds = b.header.not_after.seconds, b.header.not_before.seconds


OUT_OF_RANGE_CASES = [
    ("header.sequence", _mutate("header.sequence", 0)),
    ("header.tre_id", _mutate("header.tre_id", "")),
    ("header.kind", _mutate("header.kind", envelope_pb2.DOMAIN_KIND_UNSPECIFIED)),
    ("header.not_before", _swap_window),
    ("header.not_after", lambda b: b.header.ClearField("not_after")),
    ("guardrails.reservable_capacity_bps", _mutate("guardrails.reservable_capacity_bps", -1.0)),
    ("guardrails.reservable_capacity_bps", _mutate("guardrails.reservable_capacity_bps", 2e9)),  # > model rate
    ("guardrails.min_tenant_rate_bps", _mutate("guardrails.min_tenant_rate_bps", 3e8)),  # > max
    ("guardrails.max_tenant_rate_bps", _mutate("guardrails.max_tenant_rate_bps", 9e8)),  # > capacity
    ("guardrails.max_burst_bits", _mutate("guardrails.max_burst_bits", -1.0)),
    ("guardrails.latency_ceiling_s", _mutate("guardrails.latency_ceiling_s", 0.0)),
    ("guardrails.latency_ceiling_s", _mutate("guardrails.latency_ceiling_s", 0.001)),  # below latency + propagation
    ("guardrails.loss_ceiling", _mutate("guardrails.loss_ceiling", 1.0)),
    ("guardrails", lambda b: b.ClearField("guardrails")),
    ("model", lambda b: b.ClearField("model")),
    ("model.service", _mutate("model.service", envelope_pb2.SERVICE_KIND_UNSPECIFIED)),
    ("model.rate_bps", _mutate("model.rate_bps", -5.0)),
    ("model.rate_bps", _mutate("model.rate_bps", math.inf)),
    ("model.latency_s", _mutate("model.latency_s", math.nan)),
    ("model.propagation_delay_s", _mutate("model.propagation_delay_s", -0.001)),
    ("model.loss_probability", _mutate("model.loss_probability", 1.5)),
    ("model.loss_probability", _mutate("model.loss_probability", -0.1)),
    ("model.loss_probability", _mutate("model.loss_probability", 0.01)),  # above loss ceiling
    ("model.mgf", lambda b: b.model.mgf.add(theta=1e-6, rate_bps=1e9, sigma_bits=1.0)),  # not TABULATED_MGF
    ("model.mgf", _mutate("model.service", envelope_pb2.TABULATED_MGF)),  # TABULATED_MGF without points
    ("model.inference", lambda b: b.model.inference.CopyFrom(envelope_pb2.InferenceModel(
        distribution=envelope_pb2.InferenceModel.EXPONENTIAL, mean_s=0.01))),  # inference on a NETWORK domain
    ("header.domain_id", _mutate("header.domain_id", "bad domain")),
]


@pytest.mark.parametrize(("field", "mutation"), OUT_OF_RANGE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(OUT_OF_RANGE_CASES)])
def test_out_of_range_names_the_field(store, field, mutation):
    b = body()
    mutation(b)
    key = ACCESS
    if field == "header.domain_id":  # a key bound to a bad name cannot exist; bypass the binding check
        s = TrustStore()
        s.add(ACCESS.key_id, "access", ACCESS.public_key)
        err = rejected(lambda: s.verify(sign(b, key, envelope_pb2.TailRiskEnvelope), envelope_pb2.EnvelopeBody,
                                        domain_of=lambda _: "access",
                                        validate=validate_body))
    else:
        err = rejected(lambda: store.verify_envelope(sign_envelope(b, key, check=False), now=NOW))
    assert err.reason == Reason.OUT_OF_RANGE
    assert err.detail.startswith(field), err.detail


def _tabulated(b):
    b.model.service = envelope_pb2.TABULATED_MGF
    b.model.mgf.add(theta=2e-6, rate_bps=1e9, sigma_bits=10.0)
    b.model.mgf.add(theta=1e-6, rate_bps=1e9, sigma_bits=10.0)


def _lognormal_no_sigma(b):
    b.model.inference.sigma_log = 0.0


def _empirical_decreasing(b):
    b.model.inference.distribution = envelope_pb2.InferenceModel.EMPIRICAL
    b.model.inference.sigma_log = 0.0
    b.model.inference.quantiles_s.extend([0.01, 0.005])


def _tabulated_with(i: int, **point):
    def apply(b):
        b.model.service = envelope_pb2.TABULATED_MGF
        for j in range(3):
            values = {"theta": 1e-6 * (j + 1), "rate_bps": 3e8, "sigma_bits": 10.0}
            if j == i:
                values.update(point)
            b.model.mgf.add(**values)

    return apply


def _empirical(*qs):
    def apply(b):
        b.model.inference.distribution = envelope_pb2.InferenceModel.EMPIRICAL
        b.model.inference.sigma_log = 0.0
        b.model.inference.quantiles_s.extend(qs)

    return apply


COMPUTE_CASES = [
    ("model.mgf[1].theta", _tabulated),
    ("model.mgf[0].theta", _tabulated_with(0, theta=0.0)),
    ("model.mgf[2].rate_bps", _tabulated_with(2, rate_bps=-1.0)),
    ("model.mgf[1].sigma_bits", _tabulated_with(1, sigma_bits=math.nan)),
    ("model.mgf[2].theta", _tabulated_with(2, theta=math.inf)),
    ("model.inference.quantiles_s[0]", _empirical(-0.001, 0.01)),
    ("model.inference.quantiles_s[2]", _empirical(0.001, 0.01, math.nan)),
    ("model.inference.quantiles_s", _empirical()),
    ("model.inference.sigma_log", _lognormal_no_sigma),
    ("model.inference.quantiles_s[1]", _empirical_decreasing),
    ("model.inference.error_probability", _mutate("model.inference.error_probability", 1.0)),
    ("model.inference.mean_s", _mutate("model.inference.mean_s", 0.0)),
    ("model.inference.distribution", _mutate("model.inference.distribution", 0)),
    ("model.inference", lambda b: b.model.ClearField("inference")),
]


@pytest.mark.parametrize(("field", "mutation"), COMPUTE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(COMPUTE_CASES)])
def test_out_of_range_compute_domain(store, field, mutation):
    b = body("edge", kind="compute")
    mutation(b)
    err = rejected(lambda: store.verify_envelope(sign_envelope(b, EDGE, check=False), now=NOW))
    assert err.reason == Reason.OUT_OF_RANGE
    assert err.detail.startswith(field), err.detail


def test_valid_tabulated_and_empirical_models_pass(store):
    b = body("edge", kind="compute")
    b.model.service = envelope_pb2.TABULATED_MGF
    b.model.mgf.add(theta=1e-6, rate_bps=3.9e8, sigma_bits=100.0)
    b.model.mgf.add(theta=2e-6, rate_bps=3.8e8, sigma_bits=250.0)
    b.model.inference.distribution = envelope_pb2.InferenceModel.EMPIRICAL
    b.model.inference.sigma_log = 0.0
    b.model.inference.quantiles_s.extend([0.002, 0.004, 0.004, 0.02])
    assert len(store.verify_envelope(sign_envelope(b, EDGE), now=NOW).model.mgf) == 2


# ------------------------------------------------------------------ bit flips


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


WIRE = envelope(sequence=1).SerializeToString()


def test_every_single_bit_flip_is_rejected():
    store = TrustStore_with()
    reasons: set[str] = set()
    for bit in range(len(WIRE) * 8):
        with pytest.raises(VerificationError) as info:
            store.verify_envelope(_flip(WIRE, bit), now=NOW)
        reasons.add(info.value.reason)
    assert store.last_accepted("access", "access/gold") is None
    assert Reason.BAD_SIGNATURE in reasons and Reason.MALFORMED in reasons
    assert TrustStore_with().verify_envelope(WIRE, now=NOW).header.sequence == 1  # the original is fine


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(min_value=0, max_value=len(WIRE) * 8 - 1), extra=st.integers(min_value=0, max_value=255))
def test_property_bit_flip_makes_verification_fail(bit, extra):
    store = TrustStore_with()
    flipped = _flip(WIRE, bit)
    with pytest.raises(VerificationError):
        store.verify_envelope(flipped, now=NOW)
    # flipping further bits in the same byte (any non-zero mask) fails too
    mask = extra or 1
    out = bytearray(WIRE)
    out[bit // 8] ^= mask
    with pytest.raises(VerificationError):
        store.verify_envelope(bytes(out), now=NOW)


# ------------------------------------------------------------------ trust store itself


def test_add_rejects_conflicting_bindings_and_bad_keys():
    s = TrustStore()
    s.add_key(ACCESS)
    s.add(ACCESS.key_id, "access", ACCESS.public_key_bytes())  # identical: no-op
    s.add(ACCESS.key_id, "access", ACCESS.public_pem())  # PEM works too
    assert len(s) == 1 and s.key_ids() == [ACCESS.key_id] and s.key(ACCESS.key_id).domain_id == "access"
    with pytest.raises(InputError, match="already bound"):
        s.add(ACCESS.key_id, "transport", ACCESS.public_key)
    with pytest.raises(InputError, match="already bound"):
        s.add(ACCESS.key_id, "access", TRANSPORT.public_key)
    with pytest.raises(InputError):
        s.add("", "access", ACCESS.public_key)
    with pytest.raises(InputError):
        s.add("k", "access", b"short")
    with pytest.raises(InputError):
        s.add("k", "not a domain", ACCESS.public_key)
    with pytest.raises(InputError):
        TrustStore(clock_skew_s=-1)


def test_from_dir_binds_each_key_to_its_file_name(tmp_path):
    (tmp_path / "access.pub").write_bytes(ACCESS.public_pem())
    (tmp_path / "transport.pub").write_bytes(TRANSPORT.public_pem())
    (tmp_path / "README").write_text("ignored")
    s = TrustStore.from_dir(tmp_path)
    assert s.key_ids() == sorted([ACCESS.key_id, TRANSPORT.key_id])
    assert s.key(key_id_for("access", ACCESS.public_key_bytes())).domain_id == "access"
    assert s.verify_envelope(envelope(), now=NOW).header.domain_id == "access"
    # access.pub holds the key, but a file named after another domain binds it there only
    (tmp_path / "access.pub").unlink()
    (tmp_path / "edge.pub").write_bytes(ACCESS.public_pem())
    s2 = TrustStore.from_dir(tmp_path)
    assert rejected(lambda: s2.verify_envelope(envelope(), now=NOW)).reason == Reason.UNKNOWN_KEY  # id is edge-...


def test_from_dir_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        TrustStore.from_dir(tmp_path / "nope")
    with pytest.raises(InputError, match="no NAME.pub"):
        TrustStore.from_dir(tmp_path)
    (tmp_path / "bad.pub").write_text("garbage")
    with pytest.raises(InputError, match="bad.pub"):
        TrustStore.from_dir(tmp_path)
    (tmp_path / "bad.pub").unlink()
    (tmp_path / "-x.pub").write_bytes(ACCESS.public_pem())
    with pytest.raises(InputError, match="not a valid domain id"):
        TrustStore.from_dir(tmp_path)


# ------------------------------------------------------------------ grants and other signed objects


def _grant(domain: str = "access", sequence: int = 1) -> reservation_pb2.GrantBody:
    g = reservation_pb2.GrantBody(
        reservation_id="r-1", domain_id=domain, tenant_id="t-1", tre_id=f"{domain}/gold", tre_sequence=1,
        rate_bps=1e7, burst_bits=1e5, delay_budget_s=0.01, epsilon=1e-3, sequence=sequence,
    )
    g.granted_at.FromSeconds(int(NOW))
    g.not_after.FromSeconds(int(NOW + DAY))
    return g


def test_a_grant_check_binds_tenant_and_reservation(store):
    """Issue 12: a grant replayed by another tenant verified unless each caller remembered to compare."""
    signed = sign_grant(_grant(), ACCESS)
    assert store.verify_grant(signed, now=NOW, expected_tenant="t-1", expected_reservation="r-1").tenant_id == "t-1"
    err = rejected(lambda: store.verify_grant(signed, now=NOW, expected_tenant="t-2"))
    assert err.reason == Reason.NOT_BOUND and "tenant_id is 't-1', expected 't-2'" in str(err)
    err = rejected(lambda: store.verify_grant(signed, now=NOW, expected_tenant="t-1", expected_reservation="r-9"))
    assert err.reason == Reason.NOT_BOUND and "reservation_id" in str(err)
    with pytest.raises(InputError, match=r"now\(=1e\+300\)"):  # an overflowing time is an input error
        store.verify_grant(signed, now=1e300)


def test_grant_verification(store):
    signed = sign_grant(_grant(), ACCESS)
    got = store.verify_grant(signed, now=NOW, expected_domain="access")
    assert got.rate_bps == 1e7 and got.key_id == ACCESS.key_id
    assert store.verify_grant(signed.SerializeToString(), now=NOW).reservation_id == "r-1"
    assert store.verify_grant(signed, now=NOW).reservation_id == "r-1"  # re-reads are fine by default
    err = rejected(lambda: store.verify_grant(signed, now=NOW, expected_domain="edge"))
    assert err.reason == Reason.KEY_DOMAIN_MISMATCH
    assert rejected(lambda: store.verify_grant(signed, now=NOW - 1)).reason == Reason.NOT_YET_VALID
    assert rejected(lambda: store.verify_grant(signed, now=NOW + DAY)).reason == Reason.EXPIRED
    assert rejected(lambda: store.verify_grant(sign_grant(_grant(), STRANGER), now=NOW)).reason == Reason.UNKNOWN_KEY
    forged = sign_grant(_grant("access"), TRANSPORT, check=False)
    assert rejected(lambda: store.verify_grant(forged, now=NOW)).reason == Reason.KEY_DOMAIN_MISMATCH
    bad = _grant()
    bad.epsilon = 1.0
    err = rejected(lambda: store.verify_grant(sign_grant(bad, ACCESS, check=False), now=NOW))
    assert err.reason == Reason.OUT_OF_RANGE and err.detail.startswith("epsilon")
    tampered = reservation_pb2.SignedGrant()
    tampered.CopyFrom(signed)
    g = reservation_pb2.GrantBody.FromString(signed.body)
    g.rate_bps = 1e9
    tampered.body = canonical_bytes(g)
    assert rejected(lambda: store.verify_grant(tampered, now=NOW)).reason == Reason.BAD_SIGNATURE


def test_grant_sequence_tracking(store):
    g1, g2 = sign_grant(_grant(sequence=1), ACCESS), sign_grant(_grant(sequence=2), ACCESS)
    store.verify_grant(g2, now=NOW, track_sequence=True)
    store.verify_grant(g2, now=NOW, track_sequence=True)  # re-delivery of the last one
    assert rejected(lambda: store.verify_grant(g1, now=NOW, track_sequence=True)).reason == Reason.REPLAY


def test_generic_verify_for_telemetry(store):
    batch = telemetry_pb2.TelemetryBatchBody(domain_id="transport", batch_sequence=3, tenants=["t-1"])
    batch.packets.packet_id.extend([1, 2])
    signed = sign(batch, TRANSPORT, telemetry_pb2.SignedTelemetryBatch)
    got = store.verify(signed, telemetry_pb2.TelemetryBatchBody, domain_of=lambda b: b.domain_id)
    assert list(got.packets.packet_id) == [1, 2] and got.key_id == TRANSPORT.key_id
    lying = sign(telemetry_pb2.TelemetryBatchBody(domain_id="access"), TRANSPORT, telemetry_pb2.SignedTelemetryBatch)
    err = rejected(lambda: store.verify(lying, telemetry_pb2.TelemetryBatchBody, domain_of=lambda b: b.domain_id))
    assert err.reason == Reason.KEY_DOMAIN_MISMATCH


def test_replay_state_survives_a_restart(store):
    store.verify_envelope(envelope(sequence=4), now=NOW)
    store.verify_grant(sign_grant(_grant(sequence=2), ACCESS), now=NOW, track_sequence=True)
    rows = store.replay_state()
    assert [(r["kind"], r["domain_id"], r["object_id"], r["sequence"]) for r in rows] == [
        ("grant", "access", "r-1", 2), ("tre", "access", "access/gold", 4)]
    restarted = TrustStore_with()
    restarted.restore_replay_state(json_round_trip(rows))
    assert rejected(lambda: restarted.verify_envelope(envelope(sequence=3), now=NOW)).reason == Reason.REPLAY
    assert restarted.verify_envelope(envelope(sequence=4), now=NOW, accept_redelivery=True).header.sequence == 4
    assert rejected(lambda: restarted.verify_grant(sign_grant(_grant(sequence=1), ACCESS), now=NOW,
                                                   track_sequence=True)).reason == Reason.REPLAY
    restarted.restore_replay_state([{**rows[1], "sequence": 1}])  # lower sequences never roll the state back
    assert restarted.last_accepted("access", "access/gold") == 4
    with pytest.raises(InputError, match="row 0"):
        restarted.restore_replay_state([{"kind": "tre"}])


def json_round_trip(rows):
    return json.loads(json.dumps(rows))


def test_every_reason_is_reachable():
    """One scenario per Reason: adding a reason without a way to trigger it fails here."""
    def fresh() -> TrustStore:
        return TrustStore_with()

    def replay():
        s = fresh()
        s.verify_envelope(envelope(), now=NOW)
        s.verify_envelope(envelope(), now=NOW)

    def bad_sig():
        env = envelope()
        env.signature.signature = bytes(64)
        fresh().verify_envelope(env, now=NOW)

    def unsupported():
        env = envelope()
        env.signature.algorithm = 0
        fresh().verify_envelope(env, now=NOW)

    def out_of_range():
        b = body()
        b.model.loss_probability = -1.0
        fresh().verify_envelope(sign_envelope(b, ACCESS, check=False), now=NOW)

    scenarios = {
        Reason.BAD_SIGNATURE: bad_sig,
        Reason.UNKNOWN_KEY: lambda: fresh().verify_envelope(envelope(key=STRANGER), now=NOW),
        Reason.KEY_DOMAIN_MISMATCH: lambda: fresh().verify_envelope(
            sign_envelope(body("edge"), ACCESS, check=False), now=NOW),
        Reason.NOT_YET_VALID: lambda: fresh().verify_envelope(envelope(), now=NOW - 2 * DAY),
        Reason.EXPIRED: lambda: fresh().verify_envelope(envelope(), now=NOW + 20 * DAY),
        Reason.REPLAY: replay,
        Reason.MALFORMED: lambda: fresh().verify_envelope(b"\x12", now=NOW),
        Reason.OUT_OF_RANGE: out_of_range,
        Reason.UNSUPPORTED_ALGORITHM: unsupported,
        Reason.NOT_BOUND: lambda: fresh().verify_grant(sign_grant(_grant(), ACCESS), now=NOW, expected_tenant="x"),
    }
    assert set(scenarios) == set(Reason)
    for reason, scenario in scenarios.items():
        assert rejected(scenario).reason == reason
