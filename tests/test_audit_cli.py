"""``trefed audit``: exit 0 when nothing is violated, 1 for a violation found and attributed, 2 for bad input;
report.json, report.md, the signed report and the auditor's public key in --out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from trefed.v1 import telemetry_pb2

from agents.cli.main import main
from federation.audit.offline import dump_contracts, load_contracts
from federation.audit.parquet import write_batches
from federation.audit.report import report_from_document, verify_report
from federation.audit.scenario import audited_run, signed_contract
from federation.errors import InputError
from federation.tre.signing import SigningKey
from federation.tre.trust import TrustStore

ROOT = Path(__file__).resolve().parents[1]


def lay_out(tmp: Path, run, contracts=None) -> tuple[Path, Path, Path]:
    """Telemetry dir, contracts file, trust dir of ``run`` under ``tmp``."""
    write_batches(run.all_batches(), tmp / "tel")
    keys = tmp / "keys"
    keys.mkdir()
    for k in run.keys:
        (keys / f"{k.domain_id}.pub").write_bytes(k.public_pem())
    (tmp / "contracts.json").write_text(dump_contracts(contracts or [run.contract]))
    return tmp / "tel", tmp / "contracts.json", keys


def audit(tmp: Path, run, *extra: str, contracts=None) -> int:
    tel, contracts_file, keys = lay_out(tmp, run, contracts)
    return main(["audit", str(tel), "--contracts", str(contracts_file), "--trust", str(keys),
                 "--out", str(tmp / "out"), *extra])


def test_a_clean_run_exits_0_and_writes_a_verifiable_report(tmp_path, capsys):
    assert audit(tmp_path, audited_run(packets=5000, seed=2)) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["auditor.pub", "report.json", "report.md", "report.pb"]
    trust = TrustStore.from_dir(out)  # the auditor's public key, as written beside the report
    body = verify_report(telemetry_pb2.SignedAccountabilityReport.FromString((out / "report.pb").read_bytes()), trust)
    assert body.contract_id == "ct-1" and body.auditor_id == "auditor"
    doc = json.loads((out / "report.json").read_text())
    assert doc["violation"] is False and doc["rejected_batches"] == 0
    assert verify_report(report_from_document(doc["reports"][0]), trust).report_id == body.report_id
    assert "# Accountability report ct-1/1" in (out / "report.md").read_text()
    assert "ct-1: end to end" in capsys.readouterr().out


def test_an_impaired_domain_exits_1_and_is_named(tmp_path, capsys):
    assert audit(tmp_path, audited_run(packets=5000, seed=2, extra_delay=(1, 25.0))) == 1
    assert "violating: transport" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "report.json").read_text())["violation"] is True


def test_a_lying_domain_exits_1(tmp_path):
    assert audit(tmp_path, audited_run(packets=5000, seed=2, liar=(0, 1.0))) == 1
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    kinds = [(f["kind"], f["domain_id"]) for f in doc["reports"][0]["report"]["finding_details"]]
    assert kinds == [("inconsistent", "access")]


def test_missing_telemetry_exits_1(tmp_path, capsys):
    run = audited_run(packets=3000, seed=2)
    silent = type(run)(run.keys, run.trust, run.contract, run.telemetry,
                       {**run.batches, "transport": []})  # transport reports nothing
    assert audit(tmp_path, silent) == 1
    assert "missing-telemetry[transport]" in capsys.readouterr().out


def test_the_auditor_key_from_a_file_and_several_contracts(tmp_path):
    run = audited_run(packets=3000, seed=2)
    assert main(["keys", "new", "--domain", "audit-1", "--out", str(tmp_path / "aud")]) == 0
    second = signed_contract("ct-2", "tenant-a", run.keys, [(12.0, 0.02)] * 3)
    assert audit(tmp_path, run, "--key", str(tmp_path / "aud" / "audit-1.key"), contracts=[run.contract, second]) == 0
    out = tmp_path / "out"
    assert {"report-ct-1.pb", "report-ct-2.pb", "audit-1.pub"} <= {p.name for p in out.iterdir()}
    trust = TrustStore.from_dir(tmp_path / "aud")
    body = verify_report((out / "report-ct-2.pb").read_bytes(), trust)
    assert body.auditor_id == "audit-1" and body.contract_id == "ct-2"


def test_bad_input_exits_2(tmp_path, capsys):
    run = audited_run(packets=2000, seed=2)
    tel, contracts, keys = lay_out(tmp_path, run)
    base = ["audit", str(tel), "--contracts", str(contracts), "--trust", str(keys), "--out", str(tmp_path / "o")]
    assert main(["audit", str(tmp_path / "nope"), *base[2:]]) == 2
    assert "telemetry directory does not exist" in capsys.readouterr().err
    assert main([*base, "--confidence", "2"]) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert main([*base[:2], "--contracts", str(tmp_path / "bad.json"), *base[4:]]) == 2
    assert "not JSON" in capsys.readouterr().err
    (tmp_path / "wrong.json").write_text(json.dumps([{"contract_id": 3, "nope": 1}]))
    assert main([*base[:2], "--contracts", str(tmp_path / "wrong.json"), *base[4:]]) == 2
    assert "contracts[0]" in capsys.readouterr().err
    forged = signed_contract("ct-9", "tenant-a", [SigningKey.generate(k.domain_id) for k in run.keys], [(9.0, 0.01)] * 3)
    (tmp_path / "forged.json").write_text(dump_contracts([forged]))
    assert main([*base[:2], "--contracts", str(tmp_path / "forged.json"), *base[4:]]) == 2
    err = capsys.readouterr().err
    assert "contract 'ct-9' does not verify" in err and "unknown-key" in err
    (tel / "packets.parquet").write_bytes(b"garbage")
    assert main(base) == 2


def test_contracts_files_take_one_a_list_or_an_object(tmp_path):
    run = audited_run(packets=500, seed=2)
    from google.protobuf import json_format

    one = json_format.MessageToDict(run.contract)
    for doc in (one, [one], {"contracts": [one]}):
        (tmp_path / "c.json").write_text(json.dumps(doc))
        assert [c.contract_id for c in load_contracts(tmp_path / "c.json")] == ["ct-1"]
    (tmp_path / "c.json").write_text("[]")
    with pytest.raises(InputError, match="expected a ServiceContract"):
        load_contracts(tmp_path / "c.json")


def test_audit_help_starts_fast():
    code = ("import sys; from agents.cli.main import main\n"
            "try:\n    main(['audit', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout.strip().splitlines()[-1].replace("'", '"')))
    assert not loaded & {"numpy", "pyarrow", "scipy", "cryptography", "google", "grpc", "ray"}


def test_audit_demo_writes_what_audit_reads(tmp_path, capsys):
    """``trefed audit-demo``: clean -> exit 0; an impaired domain -> exit 1 naming it; a lying
    domain -> named by its neighbour; a bad flag -> exit 2 naming it."""

    def demo_then_audit(name: str, *flags: str) -> tuple[int, str]:
        out = tmp_path / name
        assert main(["audit-demo", str(out), *flags]) == 0
        capsys.readouterr()
        code = main(["audit", str(out / "telemetry"), "--contracts", str(out / "contracts.json"),
                     "--trust", str(out / "keys"), "--out", str(out / "audit")])
        return code, capsys.readouterr().out

    code, out = demo_then_audit("clean")
    assert code == 0 and "end to end COMPLIANT" in out
    code, out = demo_then_audit("slow", "--impair", "transport=30")
    assert code == 1 and "violating: transport;" in out
    code, out = demo_then_audit("liar", "--lie", "transport=5")
    assert code == 1 and "inconsistent[transport]" in out
    assert main(["audit-demo", str(tmp_path / "bad"), "--impair", "nowhere=3"]) == 2
    assert "--impair(='nowhere=3')" in capsys.readouterr().err
