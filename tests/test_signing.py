"""Signing: keys, key ids, the canonical encoding, and sign_* helpers."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from trefed.v1 import envelope_pb2, reservation_pb2, telemetry_pb2

from federation.errors import FieldError, InputError
from federation.tre.signing import (
    Reason,
    SigningKey,
    canonical_bytes,
    key_id_for,
    load_public_key,
    sign,
    sign_envelope,
    sign_grant,
)
from federation.tre.yaml import example_body

NOW = 1_800_000_000.0

# RFC 8032 section 7.1, TEST 1 (empty message).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def grant_body(domain: str = "access") -> reservation_pb2.GrantBody:
    g = reservation_pb2.GrantBody(
        reservation_id="r-1", domain_id=domain, tenant_id="t-1", tre_id=f"{domain}/gold", tre_sequence=1,
        rate_bps=1e7, burst_bits=1e5, delay_budget_s=0.01, epsilon=1e-3, sequence=1,
    )
    g.granted_at.FromSeconds(int(NOW))
    g.not_after.FromSeconds(int(NOW) + 3600)
    return g


def test_reason_codes_are_stable_strings():
    assert {r.value for r in Reason} == {
        "bad-signature", "unknown-key", "key-not-bound-to-domain", "not-yet-valid", "expired",
        "replay-or-rollback", "malformed", "out-of-range", "unsupported-algorithm", "not-bound-to-party",
    }
    assert Reason.EXPIRED == "expired" and isinstance(Reason.EXPIRED, str)


def test_rfc8032_known_answer():
    key = SigningKey("k", "access", Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET))
    assert key.public_key_bytes() == RFC8032_PUBLIC
    assert key.sign_bytes(b"") == RFC8032_SIG


def test_generate_default_key_id_and_pem_round_trip():
    key = SigningKey.generate("access")
    raw = key.public_key_bytes()
    assert len(raw) == 32
    assert key.key_id == "access-" + hashlib.sha256(raw).hexdigest()[:16] == key_id_for("access", raw)
    assert SigningKey.generate("access", key_id="custom").key_id == "custom"
    again = SigningKey.from_pem(key.private_pem(), "access")
    assert again.key_id == key.key_id and again.public_key_bytes() == raw
    assert load_public_key(key.public_pem()) is not None
    assert load_public_key(key.public_pem()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw
    assert b"PRIVATE KEY" in key.private_pem() and b"PUBLIC KEY" in key.public_pem()
    assert "PRIVATE" not in repr(key) and key.key_id in repr(key)


@pytest.mark.parametrize("bad", ["", "-x", "a b", "a/b", "x" * 65, "é"])
def test_bad_domain_ids_rejected(bad):
    with pytest.raises(InputError, match="domain id"):
        SigningKey.generate(bad)


def test_from_pem_rejects_garbage_and_foreign_keys():
    with pytest.raises(InputError, match="PEM private key"):
        SigningKey.from_pem(b"not a key", "access")
    x = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(InputError, match="not an Ed25519"):
        SigningKey.from_pem(x, "access")
    with pytest.raises(InputError, match="public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "x.pub")


def test_sign_envelope_writes_canonical_bytes_and_a_valid_signature():
    key = SigningKey.generate("access")
    body = example_body("access", now=NOW)
    assert body.header.key_id == ""
    env = sign_envelope(body, key)
    assert body.header.key_id == "", "the caller's body is not modified"
    signed = envelope_pb2.EnvelopeBody.FromString(env.body)
    assert signed.header.key_id == key.key_id
    expected = envelope_pb2.EnvelopeBody()
    expected.CopyFrom(body)
    expected.header.key_id = key.key_id
    assert env.body == expected.SerializeToString(deterministic=True) == canonical_bytes(signed)
    assert env.signature.algorithm == envelope_pb2.ED25519
    assert env.signature.key_id == key.key_id
    assert len(env.signature.signature) == 64
    key.public_key.verify(env.signature.signature, env.body)  # raises if wrong
    # Ed25519 is deterministic: signing the same body twice gives the same bytes.
    assert sign_envelope(body, key).SerializeToString() == env.SerializeToString()


def test_canonical_encoding_does_not_depend_on_map_insertion_order():
    a = example_body("access", now=NOW)
    b = envelope_pb2.EnvelopeBody()
    b.CopyFrom(a)
    a.labels.clear()
    b.labels.clear()
    for k in ("zeta", "alpha", "mid"):
        a.labels[k] = k.upper()
    for k in ("mid", "alpha", "zeta"):
        b.labels[k] = k.upper()
    assert canonical_bytes(a) == canonical_bytes(b)


def test_sign_envelope_checks_domain_and_ranges_unless_told_not_to():
    key = SigningKey.generate("access")
    other = example_body("transport", now=NOW)
    with pytest.raises(InputError, match="signing key's domain"):
        sign_envelope(other, key)
    bad = example_body("access", now=NOW)
    bad.model.rate_bps = -1.0
    with pytest.raises(FieldError) as info:
        sign_envelope(bad, key)
    assert info.value.field == "model.rate_bps"
    assert sign_envelope(bad, key, check=False).signature.key_id == key.key_id


def test_sign_grant_sets_key_id_and_validates():
    key = SigningKey.generate("access")
    signed = sign_grant(grant_body(), key)
    body = reservation_pb2.GrantBody.FromString(signed.body)
    assert body.key_id == key.key_id == signed.signature.key_id
    key.public_key.verify(signed.signature.signature, signed.body)
    bad = grant_body()
    bad.epsilon = 0.0
    with pytest.raises(FieldError, match="epsilon"):
        sign_grant(bad, key)
    with pytest.raises(InputError, match="signing key's domain"):
        sign_grant(grant_body("edge"), key)


def test_generic_sign_sets_top_level_key_id_and_leaves_other_messages_alone():
    key = SigningKey.generate("access")
    batch = telemetry_pb2.TelemetryBatchBody(domain_id="access", batch_sequence=1)
    signed = sign(batch, key, telemetry_pb2.SignedTelemetryBatch)
    assert telemetry_pb2.TelemetryBatchBody.FromString(signed.body).key_id == key.key_id
    point = envelope_pb2.MgfPoint(theta=1e-6, rate_bps=1e9, sigma_bits=10.0)
    wrapped = sign(point, key, envelope_pb2.TailRiskEnvelope)  # any {body, signature} wrapper
    assert wrapped.body == point.SerializeToString(deterministic=True)
