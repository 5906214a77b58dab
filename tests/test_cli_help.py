"""Every ``--help`` text reads as prose: no reStructuredText markup from the docstrings it is built from."""

from __future__ import annotations

import argparse
import re

import pytest

from agents.cli.main import build_parser
from agents.cli.text import plain

MARKUP = re.compile(r"``|:[a-z]+(:[a-z]+)?:`|^\s*\.\. [a-z]+::|::\s*$", flags=re.M)


def _parsers(parser: argparse.ArgumentParser, name: str = "trefed") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                out += _parsers(p, f"{name} {sub}")
    return out


PARSERS = _parsers(build_parser())


def test_every_command_is_covered():
    names = {n for n, _ in PARSERS}
    assert {"trefed bound", "trefed simulate", "trefed compare", "trefed tre verify", "trefed keys new",
            "trefed run", "trefed serve"} <= names


@pytest.mark.parametrize("name,parser", PARSERS, ids=[n for n, _ in PARSERS])
def test_help_has_no_rst_markup(name, parser):
    text = parser.format_help()
    bad = [m.group(0) for m in MARKUP.finditer(text)]
    assert not bad, f"{name} --help shows markup {bad}:\n{text}"


def test_plain_strips_roles_literals_and_block_markers():
    rst = ("Compare with :mod:`federation.compare.run` and :class:`~federation.errors.InputError`;\n"
           "see :func:`the runner <agents.runner.Federation>`. Run ``trefed bound``::\n\n    trefed bound --help\n"
           "\n::\n\n    literal\n.. note:: dropped\n")
    assert plain(rst) == ("Compare with federation.compare.run and InputError;\n"
                          "see the runner. Run trefed bound:\n\n    trefed bound --help\n\n\n    literal\n")
