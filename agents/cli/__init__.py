"""The ``trefed`` command line (the console script's entry point is :func:`main`).

One module per sub-command; :mod:`.main` builds the parser and maps errors to exit codes.
Nothing in ``agents`` or ``federation`` imports this package.
"""

from agents.cli.main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
