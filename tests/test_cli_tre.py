"""The envelope CLI: trefed keys new, trefed tre example|sign|verify|show (in-process and one subprocess)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trefed.v1 import envelope_pb2

from agents.cli.main import main
from federation.tre.keys import load_key_file
from federation.tre.signing import sign_envelope
from federation.tre.yaml import body_from_yaml, example_envelope_yaml

# Only the modules under test: the in-process tests must not depend on other sub-commands.
MODULES = ("agents.cli.keys", "agents.cli.tre")
ROOT = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z


def trefed(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), MODULES)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def world(tmp_path, capsys):
    """keys/ with access and transport keys, trust/ with access.pub, a signed access.tre."""
    keys, trust = tmp_path / "keys", tmp_path / "trust"
    for domain in ("access", "transport"):
        assert trefed(capsys, "keys", "new", "--domain", domain, "--out", str(keys))[0] == 0
    trust.mkdir()
    (trust / "access.pub").write_bytes((keys / "access.pub").read_bytes())
    yml = tmp_path / "access.yaml"
    yml.write_text(example_envelope_yaml("access", now=NOW, valid_for_s=86400))
    tre = tmp_path / "access.tre"
    assert trefed(capsys, "tre", "sign", str(yml), "--key", str(keys / "access.key"), "--out", str(tre))[0] == 0
    return tmp_path


def test_keys_new_writes_private_0600_and_public(tmp_path, capsys):
    code, out, _ = trefed(capsys, "keys", "new", "--domain", "access", "--out", str(tmp_path / "k"))
    assert code == 0
    key, pub = tmp_path / "k" / "access.key", tmp_path / "k" / "access.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    key_id = load_key_file(key).key_id
    assert key_id in out
    assert trefed(capsys, "keys", "id", str(pub))[1].strip() == key_id
    assert trefed(capsys, "keys", "id", str(key))[1].strip() == key_id
    # no silent overwrite; --force replaces
    code, _, err = trefed(capsys, "keys", "new", "--domain", "access", "--out", str(tmp_path / "k"))
    assert code == 2 and "access.key: already exists" in err
    assert trefed(capsys, "keys", "new", "--domain", "access", "--out", str(tmp_path / "k"), "--force")[0] == 0
    assert load_key_file(key).key_id != key_id
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, _, err = trefed(capsys, "keys", "new", "--domain", "../evil", "--out", str(tmp_path))
    assert code == 2 and "--domain" in err


def test_keys_mode_is_0600_even_with_permissive_umask(tmp_path, capsys):
    old = os.umask(0)
    try:
        assert trefed(capsys, "keys", "new", "--domain", "edge", "--out", str(tmp_path))[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "edge.key").stat().st_mode) == 0o600


def test_example_prints_valid_yaml(capsys):
    code, out, _ = trefed(capsys, "tre", "example", "--domain", "edge", "--kind", "compute", "--sequence", "3")
    assert code == 0
    body = body_from_yaml(out)
    assert body.header.domain_id == "edge" and body.header.sequence == 3
    assert body.header.kind == envelope_pb2.COMPUTE
    assert "# " in out and "bits/s" in out
    assert trefed(capsys, "tre", "example", "--domain", "edge", "--sequence", "0")[0] == 2


def test_sign_verify_show_round_trip(world, capsys):
    tre, trust = world / "access.tre", world / "trust"
    code, out, _ = trefed(capsys, "tre", "verify", str(tre), "--trust", str(trust), "--now", str(NOW + 60))
    assert code == 0
    assert out.startswith("valid: ") and out.count("\n") == 1
    assert "domain=access" in out and "tre=access/gold" in out and "sequence=1" in out

    code, out, _ = trefed(capsys, "tre", "verify", str(tre), "--trust", str(trust), "--json", "--now", "2027-01-15T08:01:00Z")
    report = json.loads(out)
    assert code == 0 and report["valid"] is True and report["reason"] is None
    assert report["domain_id"] == "access" and report["sequence"] == 1
    assert report["not_before"] == "2027-01-15T08:00:00Z" and report["not_after"] == "2027-01-16T08:00:00Z"
    key_id = load_key_file(world / "keys" / "access.key").key_id
    assert report["key_id"] == key_id

    code, out, _ = trefed(capsys, "tre", "show", str(tre))
    shown = json.loads(out)
    assert code == 0
    assert shown["signature"]["algorithm"] == "ED25519" and shown["signature"]["key_id"] == key_id
    assert shown["body"]["header"]["tre_id"] == "access/gold"
    assert shown["body"]["guardrails"]["reservable_capacity_bps"] == 8e8
    assert shown["body_sha256"] == report["body_sha256"]
    # the JSON body is the YAML body
    original = yaml.safe_load((world / "access.yaml").read_text())
    assert shown["body"]["model"]["rate_bps"] == original["model"]["rate_bps"]
    assert shown["body"]["labels"] == original["labels"]


@pytest.mark.parametrize(
    ("now", "reason"),
    [(str(NOW - 1), "not-yet-valid"), (str(NOW + 86400), "expired"), ("2030-01-01T00:00:00Z", "expired")],
)
def test_verify_outside_validity_window(world, capsys, now, reason):
    code, out, _ = trefed(capsys, "tre", "verify", str(world / "access.tre"), "--trust", str(world / "trust"), "--now", now)
    assert code == 1 and out.startswith(f"invalid: {reason}")
    code, out, _ = trefed(capsys, "tre", "verify", str(world / "access.tre"), "--trust", str(world / "trust"),
                          "--now", now, "--json")
    assert code == 1 and json.loads(out) == {"file": str(world / "access.tre"), "valid": False, "reason": reason,
                                             "detail": json.loads(out)["detail"]}


def test_verify_rejections(world, capsys):
    tre, trust, keys = world / "access.tre", world / "trust", world / "keys"
    now = str(NOW + 60)

    other = world / "other-trust"
    other.mkdir()
    (other / "transport.pub").write_bytes((keys / "transport.pub").read_bytes())
    code, out, _ = trefed(capsys, "tre", "verify", str(tre), "--trust", str(other), "--now", now)
    assert code == 1 and out.startswith("invalid: unknown-key")

    # transport's trusted key signs an envelope claiming to be access's
    (trust / "transport.pub").write_bytes((keys / "transport.pub").read_bytes())
    forged = sign_envelope(body_from_yaml((world / "access.yaml").read_text()), load_key_file(keys / "transport.key"),
                           check=False)
    (world / "forged.tre").write_bytes(forged.SerializeToString())
    code, out, _ = trefed(capsys, "tre", "verify", str(world / "forged.tre"), "--trust", str(trust), "--now", now)
    assert code == 1 and out.startswith("invalid: key-not-bound-to-domain")

    data = bytearray(tre.read_bytes())
    data[40] ^= 0x04
    (world / "tampered.tre").write_bytes(bytes(data))
    code, out, _ = trefed(capsys, "tre", "verify", str(world / "tampered.tre"), "--trust", str(trust), "--now", now)
    assert code == 1 and out.startswith("invalid: ")

    (world / "junk.tre").write_bytes(b"\xff" * 10)
    code, out, _ = trefed(capsys, "tre", "verify", str(world / "junk.tre"), "--trust", str(trust), "--now", now)
    assert code == 1 and out.startswith("invalid: malformed")


def test_bad_input_exits_2_naming_file_and_field(world, capsys):
    keys, trust = world / "keys", world / "trust"
    key = str(keys / "access.key")
    out_file = str(world / "x.tre")

    def sign_err(path: Path, key: str = key) -> str:
        code, _, err = trefed(capsys, "tre", "sign", str(path), "--key", key, "--out", out_file)
        assert code == 2 and err.startswith("trefed tre: error: "), err
        assert err.count("\n") == 1, err
        return err

    assert "nope.yaml: no such file" in sign_err(world / "nope.yaml")
    bad = world / "bad.yaml"
    bad.write_text("header: {sequence: [\n")
    assert "bad.yaml: not valid YAML" in sign_err(bad)
    oor = world / "oor.yaml"
    oor.write_text((world / "access.yaml").read_text().replace("rate_bps: 1.0e+9", "rate_bps: -1"))
    err = sign_err(oor)
    assert "oor.yaml: model.rate_bps(=-1.0) must be > 0" in err
    assert "access.yaml: header.domain_id(='access') does not match" in sign_err(world / "access.yaml", str(keys / "transport.key"))
    assert "a private key file must be named NAME.key" in sign_err(world / "access.yaml", str(keys / "access.pub"))
    assert "missing.key: no such file" in sign_err(world / "access.yaml", str(keys / "missing.key"))
    assert not Path(out_file).exists()

    for argv, needle in [
        (("tre", "verify", str(world / "none.tre"), "--trust", str(trust)), "none.tre: no such file"),
        (("tre", "verify", str(world / "access.tre"), "--trust", str(world / "nodir")), "nodir: trust directory does not exist"),
        (("tre", "verify", str(world / "access.tre"), "--trust", str(world)), "no NAME.pub files"),
        (("tre", "verify", str(world / "access.tre"), "--trust", str(trust), "--now", "soon"), "--now"),
        (("tre", "show", str(world / "none.tre")), "none.tre: no such file"),
        (("tre", "show", str(world / "access.yaml")), "access.yaml: not a signed envelope"),
    ]:
        code, _, err = trefed(capsys, *argv)
        assert code == 2 and needle in err, (argv, err)


def test_console_entry_point_round_trip_in_a_subprocess(tmp_path):
    """The real entry point (``python -m agents.cli``), as a network engineer runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "protos")])}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agents.cli", *argv], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=120)

    assert run("keys", "new", "--domain", "access", "--out", "keys").returncode == 0
    example = run("tre", "example", "--domain", "access")
    assert example.returncode == 0
    (tmp_path / "access.yaml").write_text(example.stdout)
    assert run("tre", "sign", "access.yaml", "--key", "keys/access.key", "--out", "access.tre").returncode == 0
    verified = run("tre", "verify", "access.tre", "--trust", "keys")
    assert verified.returncode == 0 and verified.stdout.startswith("valid: "), verified.stderr
    bad = run("tre", "verify", "missing.tre", "--trust", "keys")
    assert bad.returncode == 2 and "missing.tre" in bad.stderr and "Traceback" not in bad.stderr
