"""The federation CA (federation/tre/ca.py), ``trefed keys ca|issue`` and the security mode of
``trefed serve|run``: no sockets, no Ray."""

from __future__ import annotations

import datetime as dt
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import federation.tre.ca as ca_module
from agents.cli import main
from federation.errors import InputError
from federation.tre.ca import (
    CertificateAuthority,
    Credentials,
    PeerIdentity,
    Role,
    identity_from_certificate,
    load_ca,
    load_credentials,
    load_or_create_ca,
    load_or_issue,
    write_credentials,
)

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


def test_public_names():
    assert all(hasattr(ca_module, n) for n in ca_module.__all__)


def test_issued_certificate_names_one_identity_and_is_signed_by_the_ca():
    ca = CertificateAuthority.create()
    creds = ca.issue("domain", "edge")
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    cert.verify_directly_issued_by(ca.certificate)
    assert identity_from_certificate(cert) == PeerIdentity(Role.DOMAIN, "edge") == creds.identity
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge.domain.trefed"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "PRIVATE" not in repr(creds) and repr(creds) == "Credentials(trefed://domain/edge)"
    assert pickle.loads(pickle.dumps(creds)) == creds  # Ray carries them to the actors
    # never past the CA's own expiry
    short = CertificateAuthority.create(validity_days=2)
    leaf = x509.load_pem_x509_certificate(short.issue("tenant", "t1", validity_days=365).cert_pem)
    assert leaf.not_valid_after_utc <= short.certificate.not_valid_after_utc
    assert leaf.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=3)


@pytest.mark.parametrize("role, name, match", [
    ("king", "x", "role"), ("tenant", "", "id"), ("tenant", "a b", "id"), ("tenant", "x" * 65, "id")])
def test_bad_identities_name_the_field(role, name, match):
    with pytest.raises(InputError, match=match):
        CertificateAuthority.create().issue(role, name)


def test_files_round_trip_with_private_modes(tmp_path):
    ca = CertificateAuthority.create()
    cert_path, key_path = ca.write(tmp_path / "pki")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    again = load_ca(tmp_path / "pki")
    assert again.cert_pem == ca.cert_pem
    with pytest.raises(InputError, match="already exists"):
        ca.write(tmp_path / "pki")
    creds = ca.issue("tenant", "me")
    crt, key = write_credentials(creds, tmp_path / "pki")
    assert crt.name == "tenant-me.crt" and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_credentials(tmp_path / "pki", "tenant", "me") == creds
    with pytest.raises(InputError, match="no such file"):
        load_credentials(tmp_path / "pki", "tenant", "you")
    # a certificate filed under another identity is refused
    (tmp_path / "pki" / "tenant-you.crt").write_bytes(creds.cert_pem)
    (tmp_path / "pki" / "tenant-you.key").write_bytes(creds.key_pem)
    with pytest.raises(InputError, match="names trefed://tenant/me, not trefed://tenant/you"):
        load_credentials(tmp_path / "pki", "tenant", "you")
    # a key that is not the CA's
    (tmp_path / "pki" / "ca.key").write_bytes(creds.key_pem)
    with pytest.raises(InputError, match="does not match"):
        load_ca(tmp_path / "pki")


def test_load_or_create_and_load_or_issue(tmp_path):
    d = tmp_path / "keys"
    ca = load_or_create_ca(d)
    assert load_or_create_ca(d).cert_pem == ca.cert_pem  # created once, then loaded
    first = load_or_issue(ca, d, Role.BROKER, "broker")
    assert load_or_issue(ca, d, Role.BROKER, "broker") == first  # reused
    other = CertificateAuthority.create()
    reissued = load_or_issue(other, d, Role.BROKER, "broker")  # of another CA: issued afresh
    assert reissued != first and reissued.ca_pem == other.cert_pem
    assert isinstance(load_or_issue(ca, None, "tenant", "t1"), Credentials)
    (d / "ca.crt").unlink()
    with pytest.raises(InputError, match="has ca.key but no ca.crt"):
        load_or_create_ca(d)


def test_trefed_keys_ca_and_issue(tmp_path, capsys):
    assert main(["keys", "ca", "--out", str(tmp_path / "pki")]) == 0
    assert main(["keys", "issue", "--ca", str(tmp_path / "pki"), "--role", "tenant", "--id", "me",
                 "--out", str(tmp_path / "me")]) == 0
    out = capsys.readouterr().out
    assert "trefed://tenant/me" in out
    creds = load_credentials(tmp_path / "me", "tenant", "me")  # ca.crt was copied beside it
    assert creds.ca_pem == load_ca(tmp_path / "pki").cert_pem
    assert main(["keys", "issue", "--ca", str(tmp_path / "nothing"), "--role", "tenant", "--id", "me"]) == 2
    assert "nothing/ca.crt: no such file" in capsys.readouterr().err
    assert main(["keys", "issue", "--ca", str(tmp_path / "pki"), "--role", "tenant", "--id", "b@d"]) == 2
    assert "id(='b@d')" in capsys.readouterr().err


def test_serve_insecure_off_loopback_is_refused_before_anything_starts(capsys):
    assert main(["serve", QUICKSTART, "--host", "0.0.0.0", "--insecure"]) == 2
    err = capsys.readouterr().err
    assert "--insecure serves loopback hosts only" in err


def test_run_says_its_security_mode_and_passes_insecure(monkeypatch, capsys):
    import agents.runner
    import agents.runtime

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def federation(config: Any, **kw: Any) -> Any:
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(agents.runner, "Federation", federation)
    monkeypatch.setattr(agents.runtime, "Runtime", lambda address=None: None)
    for flag, expected, line in (([], False, "security: mutual TLS"), (["--insecure"], True, "security: INSECURE")):
        with pytest.raises(Stop):
            main(["run", QUICKSTART, *flag])
        assert seen["insecure"] is expected
        assert line in capsys.readouterr().err
