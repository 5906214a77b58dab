"""``trefed`` starts fast: building the parser (``--help``) imports none of the heavy libraries.

Each command imports what it needs when it runs (see ``agents/cli/main.py``), and the core
imports the heavy parts of its libraries only on the paths that need them: ``trefed bound`` no
``scipy.optimize`` (ported solvers, :mod:`federation.calculus.roots`), ``scipy.signal``,
``scipy.linalg`` or ``scipy.stats``; ``trefed simulate`` on FIFO hops no numba. Checked on the
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
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

#: The parts of scipy that took ``trefed bound`` from 0.2 s to 1.3 s (``python -X importtime``).
SCIPY_HEAVY = ("scipy.optimize", "scipy.signal", "scipy.linalg", "scipy.stats")

#: The README's ``trefed bound`` examples (continuous M/M/1; three hops with cross traffic; slotted on-off).
README_BOUNDS = [
    ("--arrival", "poisson:rate=0.8,size=exp", "--hop", "rate=1", "--delay", "20"),
    ("--arrival", "poisson:rate=0.4", "--hop", "rate=1", "--hop", "rate=1", "--hop", "rate=1",
     "--cross", "2=poisson:rate=0.3,size=exp", "--epsilon", "1e-3", "--json"),
    ("--time", "discrete", "--arrival", "mmoo:stay_on=0.9,stay_off=0.9,peak=0.35,n=4", "--hop", "rate=1",
     "--epsilon", "1e-4"),
]
MM1 = ("--arrival", "poisson:rate=0.8", "--hop", "rate=1,service=exp", "--packets", "1000", "--json")


def _all_modules(*argv: str) -> tuple[int, set[str]]:
    """Exit code of ``trefed ARGV`` in a fresh interpreter, and every module it then holds."""
    res = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(list(argv))], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.rstrip().rsplit("\n", 1)[-1])
    return report["code"], set(report["modules"])


def _modules(*argv: str) -> tuple[int, set[str]]:
    """Exit code of ``trefed ARGV`` in a fresh interpreter, and the top-level packages it then holds."""
    code, modules = _all_modules(*argv)
    return code, {m.split(".")[0] for m in modules}


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


@pytest.mark.parametrize("argv", README_BOUNDS, ids=["mm1", "tandem-cross", "slotted-mmoo"])
def test_bound_imports_no_heavy_scipy(argv):
    code, modules = _all_modules("bound", *argv)
    assert code == 0
    assert not modules & set(SCIPY_HEAVY), sorted(modules & set(SCIPY_HEAVY))


def test_bound_mm1_imports_no_scipy():
    """The README's first example needs numpy only (the solvers are ported, nothing else is used)."""
    code, modules = _all_modules("bound", *README_BOUNDS[0])
    assert code == 0
    assert not {m for m in modules if m.split(".")[0] == "scipy"}


def test_simulate_fifo_imports_no_numba_and_no_scipy_stats():
    code, modules = _modules("simulate", *MM1)
    assert code == 0
    assert "numba" not in modules
    code, modules = _all_modules("simulate", *MM1)
    assert not modules & set(SCIPY_HEAVY), sorted(modules & set(SCIPY_HEAVY))


@pytest.mark.parametrize("hop,scheduler", [
    ("rate=1", "wfq"),  # the fair-queueing server is a compiled loop
    ("rate=1,buffer=5", "fifo"),  # so is a finite buffer
])
def test_simulate_imports_numba_where_a_kernel_runs(hop, scheduler):
    """The other side of the check above: the hops that need a compiled kernel still get it."""
    code, modules = _modules("simulate", "--arrival", "poisson:rate=0.5", "--hop", hop, "--scheduler", scheduler,
                             "--packets", "500", "--json")
    assert code == 0
    assert "numba" in modules


def test_parser_constants_are_the_cores():
    """The choices and defaults the parser spells out (so as not to import the core) are the core's."""
    from agents.cli.compare import EPSILONS
    from agents.cli.simulate import SCHEDULERS
    from federation.compare.run import DEFAULT_EPSILONS
    from federation.dataplane.path import SCHEDULERS as ENGINE

    assert SCHEDULERS == ENGINE
    assert EPSILONS == ",".join(f"{e:g}" for e in DEFAULT_EPSILONS)
