"""The federation runner over an in-process runtime (the agents' own classes, real gRPC on 127.0.0.1,
no Ray): its progress hook reports each phase as it begins, in order.

The runner on a real Ray is exercised by test_federation_e2e.py.
"""

from __future__ import annotations

import re

import pytest
from inprocess import InProcessRuntime

from agents.runner import Federation


@pytest.fixture
def runtime():
    rt = InProcessRuntime()
    try:
        yield rt
    finally:
        rt.shutdown()


def test_progress_hook_reports_each_phase_as_it_begins(fast_config, runtime, tmp_path):
    cfg = fast_config()
    cfg = cfg.model_copy(update={"tenants": cfg.tenants[:2]})
    seen: list[tuple[str, int, int, int]] = []  # (sentence, Ray starts, actors, admissions ended) at the call

    def on_phase(sentence: str) -> None:
        broker = fed.broker_actor.handle.broker if fed.broker_actor is not None else None
        ended = broker.stats.admitted + broker.stats.rejected if broker is not None else -1
        seen.append((sentence, runtime.started, len(runtime._actors), ended))

    fed = Federation(cfg, runtime=runtime, state_dir=tmp_path, on_phase=on_phase)
    with fed:
        started = list(seen)
        outcomes = fed.run_tenants()
    assert [o.admitted for o in outcomes] == [True, True]

    sentences = [s for s, *_ in seen]
    port = r"127\.0\.0\.1:\d+"
    expected = [
        r"starting Ray: a local instance on 127\.0\.0\.1",
        r"starting 3 domain controllers \(access, transport, edge\)",
        rf"domain controller access started on {port}",
        rf"domain controller transport started on {port}",
        rf"domain controller edge started on {port}",
        r"starting the broker",
        rf"broker started on {port}",
        r"starting the auditor",
        rf"auditor started on {port}",
        r"tenant t1 requests classify within 17\.5 ms at epsilon 0\.01 \(entering at access\)",
        r"tenant t2 requests classify within 17\.5 ms at epsilon 0\.01 \(entering at access\)",
    ]
    assert len(sentences) == len(expected), sentences
    for sentence, pattern in zip(sentences, expected):
        assert re.fullmatch(pattern, sentence), (sentence, pattern)
    assert len(started) == 9  # start() reported its phases before it returned
    # each phase is reported as it begins: Ray not yet started, no controller spawned yet, the
    # broker not yet spawned, each tenant's request before it is answered
    assert seen[0][1] == 0 and seen[1][1] == 1
    assert seen[1][2] == 0 and seen[5][2] == 3
    assert fed.domain_addresses["edge"] in sentences[4] and fed.broker_address in sentences[6]
    assert fed.auditor_address in sentences[8] and seen[7][2] == 4  # the auditor spawned after the broker
    assert [ended for *_, ended in seen[9:]] == [0, 1]


def test_progress_is_silent_by_default_and_concurrent_requests_are_announced_first(fast_config, runtime, tmp_path):
    cfg = fast_config()
    cfg = cfg.model_copy(update={"tenants": cfg.tenants[:2]})
    with Federation(cfg, runtime=runtime, state_dir=tmp_path / "a") as fed:  # no hook: nothing to call
        assert [o.admitted for o in fed.run_tenants()] == [True, True]
    seen: list[str] = []
    with Federation(cfg, runtime=runtime, state_dir=tmp_path / "b", on_phase=seen.append) as fed:
        before = len(seen)
        fed.run_tenants(concurrent=True)
    assert [s.split(" requests")[0] for s in seen[before:]] == ["tenant t1", "tenant t2"]


def test_a_bad_key_file_fails_before_ray_starts(fast_config, runtime, tmp_path):
    """A corrupt NAME.key in keys_dir is refused (naming the file) before the runtime starts."""
    from federation.errors import InputError

    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "access.key").write_text("not a PEM key\n")
    cfg = fast_config().model_copy(update={"keys_dir": keys})
    with pytest.raises(InputError, match=r"access\.key"):
        Federation(cfg, runtime=runtime, state_dir=tmp_path / "st").start()
    assert runtime.started == 0


def test_the_auditor_key_is_written_beside_the_domains_keys_and_verifies(fast_config, tmp_path):
    """With keys_dir, the auditor signs with keys_dir/auditor.key and auditor.pub lies beside the
    domains' keys, so a trust directory read with ``TrustStore.from_dir`` knows the auditor."""
    from agents.runner import AUDITOR_ID, load_auditor_key
    from federation.tre.trust import TrustStore

    keys = tmp_path / "keys"
    cfg = fast_config().model_copy(update={"keys_dir": keys})
    key = load_auditor_key(cfg)
    assert key.domain_id == AUDITOR_ID == "auditor"
    assert (keys / "auditor.key").exists() and (keys / "auditor.pub").exists()
    assert load_auditor_key(cfg).key_id == key.key_id  # read back, not replaced
    trusted = TrustStore.from_dir(keys).key(key.key_id)
    assert trusted is not None and trusted.domain_id == "auditor" and trusted.raw == key.public_key_bytes()
    fresh = load_auditor_key(fast_config())  # no keys_dir: a fresh key each time
    assert fresh.key_id != load_auditor_key(fast_config()).key_id


def test_a_domain_named_like_the_auditor_is_refused_before_ray_starts(fast_config, runtime, tmp_path):
    import copy

    from conftest import FAST_CONFIG

    from federation.errors import ConfigError

    domains = copy.deepcopy(FAST_CONFIG["domains"])
    domains[2]["id"] = "auditor"
    models = copy.deepcopy(FAST_CONFIG["models"])
    for m in models:
        m["compute_domain"] = "auditor"
    cfg = fast_config(domains=domains, links=[["access", "transport"], ["transport", "auditor"]], models=models)
    with pytest.raises(ConfigError, match="a domain is named 'auditor'"):
        Federation(cfg, runtime=runtime, state_dir=tmp_path / "st").start()
    assert runtime.started == 0


def test_trefed_run_json_stays_pure_when_ray_prints_on_stdout(fast_config, runtime, monkeypatch, capsys, tmp_path):
    """Ray's driver prints the raylet's warnings (e.g. "N PYTHON worker processes have been started")
    on stdout from a background thread, whenever they come; ``trefed run --json`` must still print
    exactly one JSON document on stdout (the warning goes to stderr with the phases). Here the real
    agents run on the in-process runtime and a thread prints such a line while the tenants request."""
    import json
    import threading

    import yaml
    from conftest import FAST_CONFIG

    import agents.runner
    import agents.runtime
    from agents.cli import main as trefed

    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump({**FAST_CONFIG, "tenants": FAST_CONFIG["tenants"][:2]}))
    monkeypatch.setattr(agents.runtime, "Runtime", lambda address=None: runtime)
    real = agents.runner.Federation.run_tenants
    warning = "(raylet) WARNING: 8 PYTHON worker processes have been started on node: 0123"

    def run_tenants(self, *args, **kwargs):  # noqa: ANN001, ANN202
        t = threading.Thread(target=lambda: print(warning, flush=True))  # as Ray's error listener does
        t.start()
        t.join()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(agents.runner.Federation, "run_tenants", run_tenants)
    assert trefed(["run", str(path), "--admissions-only", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert [t["admitted"] for t in doc["tenants"]] == [True, True]
    assert warning in err
