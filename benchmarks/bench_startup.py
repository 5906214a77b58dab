"""Start-up time of the ``trefed`` command line: what a user waits for before any work is done.

Run ``python benchmarks/bench_startup.py [--runs N]``. Prints a table and writes
``benchmarks/out/startup.json``.

What is measured (wall time of the whole process, median and min of ``--runs`` runs, in turn so
that a background load touches every command alike):

* ``python -c pass``: the interpreter alone (the floor, measured in the same run);
* ``import every dependency``: numpy, scipy (optimize, signal, linalg, stats), numba, matplotlib,
  pydantic, grpc, ray -- what every command paid before the imports were made lazy (the ceiling);
* ``trefed --help``, ``trefed bound --help`` and the README's first ``trefed bound`` and a short
  ``trefed simulate``: the commands themselves, work included.

For each command the JSON also lists the ten costliest imports (cumulative microseconds, from
``python -X importtime``), the evidence of where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
TREFED = Path(sys.executable).with_name("trefed")

DEPENDENCIES = ("import numpy, scipy.optimize, scipy.signal, scipy.linalg, scipy.stats, numba, matplotlib, "
                "pydantic, grpc, ray")

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import every dependency": [sys.executable, "-c", DEPENDENCIES],
    "trefed --help": [str(TREFED), "--help"],
    "trefed bound --help": [str(TREFED), "bound", "--help"],
    "trefed bound (README, M/M/1)": [str(TREFED), "bound", "--arrival", "poisson:rate=0.8,size=exp",
                                     "--hop", "rate=1", "--delay", "20"],
    "trefed simulate (1 000 packets)": [str(TREFED), "simulate", "--arrival", "poisson:rate=0.8",
                                        "--hop", "rate=1,service=exp", "--packets", "1000", "--json"],
}


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def _top_imports(argv: list[str], top: int = 10) -> list[dict[str, object]]:
    """The ``top`` imports with the largest cumulative time (``-X importtime``), outermost first."""
    if argv[0] == str(TREFED):
        code = ("import sys; from agents.cli.main import main\n"
                f"try: sys.exit(main({argv[1:]!r}))\nexcept SystemExit: pass")
        argv = [sys.executable, "-c", code]
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, cwd=ROOT)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, self_us, cum_us, name = (part.strip() for part in line.replace("import time:", "|").split("|"))
        rows.append({"module": name.strip(), "cumulative_us": int(cum_us), "self_us": int(self_us)})
    rows.sort(key=lambda r: -int(r["cumulative_us"]))  # type: ignore[call-overload]
    return rows[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args()
    if not TREFED.exists():
        print(f"error: no trefed console script next to {sys.executable}", file=sys.stderr)
        return 2
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(_wall(argv))
    results = {
        name: {"median_s": statistics.median(t), "min_s": min(t), "runs": len(t),
               "top_imports": _top_imports(COMMANDS[name]) if name.startswith("trefed") else []}
        for name, t in times.items()
    }
    report = {
        "benchmark": "startup",
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "results": results,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "startup.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"start-up, wall time of the whole process ({args.runs} runs; load average "
          f"{report['load_average'][0]:.2f})")
    print(f"{'command':34s} {'median':>9s} {'min':>9s}")
    for name, r in results.items():
        print(f"{name:34s} {r['median_s']:8.3f}s {r['min_s']:8.3f}s")
    print(f"wrote {OUT / 'startup.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
