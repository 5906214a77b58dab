"""Test helper: ``trefed serve`` in a subprocess (its own local Ray), for clients that talk to it.

``with trefed_serve(config, state_dir, args=(...)) as served:`` starts the console script (with the
further command-line ``args``, e.g. ``("--insecure",)``), waits for ``broker listening on
127.0.0.1:PORT`` and each domain's address and yields a :class:`Served` with them; on exit it
sends SIGTERM (what a supervisor sends; Ctrl-C takes the same path), waits, and keeps the exit
code and every line the server printed (stdout and stderr); a server that does not stop within
60 s gets SIGABRT first, so its lines end with every thread's stack (faulthandler).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Served", "trefed_serve"]

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Served:
    """A running ``trefed serve``: the broker's address, then (after the block) how it ended."""

    address: str = ""
    domains: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    returncode: int | None = None


def _pump(stream: Any, q: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        q.put(line)
    q.put(None)


@contextmanager
def trefed_serve(config: str | Path, state_dir: Path, *, startup_s: float = 180.0,
                 args: Sequence[str] = ()) -> Iterator[Served]:
    """Serve ``config`` on a free port of 127.0.0.1 (outside any ``RAY_ADDRESS`` cluster)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT (sent below if it does not stop) prints every thread's stack
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("trefed")), "serve", str(config), "--port", "0",
         "--state-dir", str(state_dir), *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(server.stdout, lines), daemon=True).start()
    served = Served()
    try:
        deadline = time.monotonic() + startup_s
        while not (served.address and "serving;" in served.lines[-1]) and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            served.lines.append(line)
            found = re.search(r"broker listening on (127\.0\.0\.1:\d+)", line)
            served.address = found.group(1) if found else served.address
            domain = re.search(r"domain (\S+) listening on (127\.0\.0\.1:\d+)", line)
            if domain:
                served.domains[domain.group(1)] = domain.group(2)
        assert served.address, "trefed serve printed no address:\n" + "".join(served.lines)
        yield served
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:  # show where it hangs, then kill it and its children
                served.lines.append("[serving.py: no exit 60 s after SIGTERM; SIGABRT for the stacks]\n")
                server.send_signal(signal.SIGABRT)
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        while True:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            served.lines.append(line)
        served.returncode = server.returncode
