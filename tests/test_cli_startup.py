"""``trefed`` starts fast: building the parser (``--help``) imports none of the heavy libraries.

Each command imports what it needs when it runs (see ``agents/cli/main.py``). Checked on the
modules a fresh interpreter holds after the command, not on timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Imported by no ``--help``: the libraries that made every command take seconds to start.
HEAVY = ("ray", "numba", "matplotlib", "grpc", "pydantic", "scipy", "numpy", "rich", "cryptography", "yaml")

_DRIVER = """
import json, sys
from agents.cli.main import main
argv = json.loads(sys.argv[1])
try:
    code = main(argv)
except SystemExit as exc:  # --help exits through argparse
    code = exc.code
sys.stdout.flush()
print("\\n" + json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _modules(*argv: str) -> tuple[int, set[str]]:
    res = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(list(argv))], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.rstrip().rsplit("\n", 1)[-1])
    return report["code"], set(report["modules"])


def test_help_imports_nothing_heavy():
    code, modules = _modules("--help")
    assert code == 0
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize("command", ["keys", "tre", "bound", "simulate", "compare", "run", "serve"])
def test_command_help_imports_nothing_heavy(command):
    code, modules = _modules(command, "--help")
    assert code == 0
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_bound_imports_only_the_calculus():
    code, modules = _modules("bound", "--arrival", "poisson:rate=0.8,size=exp", "--hop", "rate=1", "--delay", "20")
    assert code == 0
    assert not modules & {"ray", "numba", "matplotlib", "grpc", "pydantic", "rich", "cryptography", "yaml"}


def test_parser_constants_are_the_cores():
    """The choices and defaults the parser spells out (so as not to import the core) are the core's."""
    from agents.cli.compare import EPSILONS
    from agents.cli.simulate import SCHEDULERS
    from federation.compare.run import DEFAULT_EPSILONS
    from federation.dataplane.path import SCHEDULERS as ENGINE

    assert SCHEDULERS == ENGINE
    assert EPSILONS == ",".join(f"{e:g}" for e in DEFAULT_EPSILONS)
