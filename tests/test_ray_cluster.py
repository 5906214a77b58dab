"""``trefed run --address`` joins an existing Ray cluster (a head started with ``ray start``).

The head runs on loopback (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, ``--node-ip-address=127.0.0.1``)
with Ray 2.60's token authentication (``RAY_AUTH_MODE=token`` on both sides), as README.md says.
The head lives in its own process group and is killed with it at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.runtime import is_loopback_address

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loopback_addresses_are_recognised() -> None:
    assert is_loopback_address(None) and is_loopback_address("127.0.0.1:6379")
    assert is_loopback_address("localhost:6379") and is_loopback_address("[::1]:6379")
    assert not is_loopback_address("10.0.0.5:6379") and not is_loopback_address("ray://10.0.0.5:10001")


def test_run_with_an_unreachable_address_fails_fast() -> None:
    env = dict(os.environ, RAY_AUTH_MODE="token")
    started = time.monotonic()
    r = subprocess.run([str(BIN / "trefed"), "run", str(ROOT / "configs" / "quickstart.yaml"),
                        "--address", f"127.0.0.1:{_free_port()}"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert "no Ray cluster answers there" in r.stderr
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_run_on_an_existing_cluster_via_address(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
               RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not come up"
                assert head.poll() is None, "ray start exited"
                time.sleep(0.5)
        r = subprocess.run(
            [str(BIN / "trefed"), "run", str(ROOT / "configs" / "quickstart.yaml"), "--address",
             f"127.0.0.1:{port}", "--admissions-only", "--json", "--state-dir", str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=240,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        doc = json.loads(r.stdout)
        outcomes = {t["tenant_id"]: t for t in doc["tenants"]}
        assert outcomes["factory-vision"]["admitted"]
        assert not outcomes["city-traffic"]["admitted"]
        assert "domain 'edge'" in outcomes["city-traffic"]["reason"]
        assert list(tmp_path.glob("*.sqlite*")) or list(tmp_path.iterdir())  # the domains' state went there
    finally:
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait(timeout=30)
