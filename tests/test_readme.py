"""The README's examples are true: every ``trefed`` command in its shell blocks runs and exits 0,
and its Python client prints the offers and the contract.

``trefed run`` and ``trefed serve`` start Ray; they are exercised by tests/test_federation_e2e.py
and tests/test_external_client.py (the quickstart run and the protos-only client). The rest run
here, in order, in a scratch directory, in-process. The Python client runs twice: against an
in-memory channel that answers with messages of the generated API (fast: every name it uses is
real), and against ``trefed serve configs/quickstart.yaml`` (its own local Ray).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serving import trefed_serve

from agents.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands() -> list[str]:
    """``trefed ...`` lines of the README's bash blocks (continuations joined, comments cut)."""
    return [command for command, _ in readme_commands_and_codes()]


def readme_commands_and_codes() -> list[tuple[str, int]]:
    """(command, the exit code the README promises: 0, or N when its comment says ``exit N``)."""
    text = README.read_text()
    out: list[tuple[str, int]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line, _, comment = line.partition(" #")
            line = line.strip()
            if line.startswith("trefed "):
                promised = re.search(r"\bexit (\d)\b", comment)
                out.append((line, int(promised.group(1)) if promised else 0))
    return out


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    lines = [ln for ln in first_block.group(1).splitlines() if ln and not ln.startswith("#")]
    assert lines[0].endswith("trefed run configs/quickstart.yaml")
    assert lines[1].endswith(".venv/bin/python -m pytest -q")
    ci = (README.parent / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in ci


def test_readme_trefed_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    # run, serve and sweep need Ray; commands on a run's output (runs/...) follow a run: tests/test_run_loop.py
    # runs those, in order, after the README's run; tests/test_sweep_cluster.py runs the sweep on a cluster
    commands = [(c, e) for c, e in readme_commands_and_codes()
                if c.split()[1] not in ("run", "serve", "sweep") and " runs/" not in c]
    assert {c.split()[1] for c, _ in commands} >= {"bound", "simulate", "compare", "keys", "tre", "audit"}
    for command, expected in commands:
        argv, _, redirect = command.partition(">")
        code = main(shlex.split(argv)[1:])
        out = capsys.readouterr().out
        if redirect.strip():
            (tmp_path / redirect.strip()).write_text(out)
        assert code == expected, f"README example exited {code}, the README says {expected}: {command}"


def readme_python() -> str:
    """The README's Python client (its one ``python`` block)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


class _Channel:
    """An in-memory channel: every call serialises its request with the generated code, checks it
    and answers with a message of the method's response type (as a broker would)."""

    def __init__(self, target: str) -> None:
        from trefed.v1 import services_pb2 as pb

        self.target = target
        self.calls: list[tuple[str, Any]] = []
        offer = pb.Offer(offer_id="of-1", model_id="resnet50-int8", compute_domain="edge",
                         path=["access", "transport", "edge"], price_per_hour=1.71,
                         bound=pb.EndToEndBound(delay_s=0.0299, epsilon_delay=5.9e-3, epsilon_total=0.01),
                         budgets=[pb.DomainBudget(domain_id=d, delay_s=0.01, epsilon=2e-3, rate_bps=9.1e7)
                                  for d in ("access", "transport", "edge")])
        self.answers: dict[str, Callable[[Any], Any]] = {
            "ResolveIntent": lambda req: pb.ResolveIntentResponse(offers=[offer]),
            "RequestService": lambda req: pb.ServiceContract(contract_id="ct-1", tenant_id=req.intent.tenant_id,
                                                             offer=offer, grants=[{}, {}, {}]),
            "ReleaseService": lambda req: pb.ReleaseServiceResponse(contract_id=req.contract_id, released=True),
        }

    def unary_unary(self, method: str, request_serializer: Callable, response_deserializer: Callable,
                    **kw: Any) -> Callable:
        from trefed.v1 import services_pb2 as pb

        name = method.rsplit("/", 1)[1]
        rpc = pb.DESCRIPTOR.services_by_name["Broker"].methods_by_name[name]
        request_type = getattr(pb, rpc.input_type.name)

        def call(request: Any, timeout: float | None = None, **kw: Any) -> Any:
            request = request_type.FromString(request_serializer(request))  # the bytes a server would get
            self.calls.append((name, request))
            return response_deserializer(self.answers[name](request).SerializeToString())

        return call


def test_readme_client_uses_the_generated_api(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import grpc

    channels: list[_Channel] = []
    monkeypatch.setattr(grpc, "insecure_channel", lambda target: channels.append(_Channel(target)) or channels[-1])
    exec(compile(readme_python(), "README.md", "exec"), {"__name__": "readme"})
    [ch] = channels
    assert ch.target == "127.0.0.1:50051"
    assert [n for n, _ in ch.calls] == ["ResolveIntent", "RequestService", "ReleaseService"]
    assert ch.calls[1][1].offer_id == "of-1" and ch.calls[2][1].contract_id == "ct-1"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "offer of-1: resnet50-int8 via access > transport > edge, P(D > 29.9 ms) <= 5.9e-03, 1.71/h"
    assert out[1] == "contract ct-1: 3 signed grants"
    assert out[2:5] == [f"  {d}: d_i = 10.00 ms, eps_i = 2.0e-03, 91.0 Mb/s" for d in ("access", "transport", "edge")]
    assert out[5:] == ["released"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_readme_client_against_trefed_serve(tmp_path: Path) -> None:
    """The snippet as a user runs it, against ``trefed serve configs/quickstart.yaml``."""
    import inspect

    from agents.runner import Federation

    if "on_phase" not in inspect.signature(Federation).parameters:
        pytest.skip("agents.runner.Federation does not accept on_phase= yet, which trefed serve passes "
                    "(its branch adds the hook)")
    with trefed_serve("configs/quickstart.yaml", tmp_path / "state", args=("--insecure",)) as served:
        code = readme_python().replace("127.0.0.1:50051", served.address)
        client = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
    assert client.returncode == 0, client.stderr
    out = client.stdout.splitlines()
    assert re.fullmatch(r"offer \S+: resnet50-int8 via access > transport > edge, P\(D > [\d.]+ ms\) <= "
                        r"[\d.e+-]+, [\d.]+/h", out[0]), out
    assert re.fullmatch(r"contract \S+: 3 signed grants", out[len(out) - 5]), out
    assert [line.split(":")[0].strip() for line in out[-4:-1]] == ["access", "transport", "edge"]
    assert out[-1] == "released"
    assert served.returncode == 0, "".join(served.lines)
