"""The README's examples are true: every ``trefed`` command in its shell blocks runs and exits 0.

``trefed run`` and ``trefed serve`` start Ray; they are exercised by tests/test_federation_e2e.py
and tests/test_external_client.py (the quickstart run and the protos-only client). The rest run
here, in order, in a scratch directory, in-process.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from agents.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """``trefed ...`` lines of the README's bash blocks (continuations joined, comments cut)."""
    text = README.read_text()
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("trefed "):
                commands.append(line)
    return commands


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
    commands = [c for c in readme_commands() if c.split()[1] not in ("run", "serve")]
    assert {c.split()[1] for c in commands} >= {"bound", "simulate", "compare", "keys", "tre"}
    for command in commands:
        argv, _, redirect = command.partition(">")
        code = main(shlex.split(argv)[1:])
        out = capsys.readouterr().out
        if redirect.strip():
            (tmp_path / redirect.strip()).write_text(out)
        assert code == 0, f"README example failed (exit {code}): {command}"
