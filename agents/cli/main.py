"""The ``trefed`` command line: one parser, one sub-command module each.

Each module of this package (``keys``, ``tre``, ``bound``, ``simulate``, ``compare``, and ``run``
for ``serve`` and ``run``, the commands that need Ray and gRPC) exposes
``register(subparsers) -> None``; it adds its sub-parser and sets ``func=callable(args) -> int``
as the parser default. ``main`` runs it and turns every :class:`~federation.errors.InputError`
(and :class:`~federation.errors.NoFiniteBound`: a model with no finite answer, e.g. an unstable
one) into exit code 2 with a one-line ``error:`` message (never a traceback).

Start-up. Building the parser imports every command module, so those modules import only the
standard library and :mod:`federation.errors` at module level; numpy, scipy, numba, pydantic,
cryptography, protobuf, rich, matplotlib, gRPC and Ray are imported inside the command that uses
them (``tests/test_cli_startup.py`` checks ``trefed --help``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from federation.errors import InputError, NoFiniteBound, TrefedError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Sub-command modules, in ``--help`` order.
COMMANDS: tuple[str, ...] = (
    "agents.cli.keys",
    "agents.cli.tre",
    "agents.cli.bound",
    "agents.cli.simulate",
    "agents.cli.compare",
    "agents.cli.run",
    "agents.cli.sweep",
    "agents.cli.audit",
    "agents.cli.trace",
)


def build_parser(modules: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The ``trefed`` parser with the sub-commands of ``modules``."""
    parser = argparse.ArgumentParser(
        prog="trefed",
        description="trefed: federation emulator for AI-as-a-Service with tail-risk guarantees.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None, modules: Sequence[str] = COMMANDS) -> int:
    """Run ``trefed`` with ``argv``; returns the exit code (0 ok, 1 a negative answer, 2 bad input)."""
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, NoFiniteBound) as exc:
        print(f"trefed {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except TrefedError as exc:
        print(f"trefed {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `trefed tre show X.tre | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
