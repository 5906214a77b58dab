"""Entry point of the ``trefed`` console script: the pure commands plus ``serve`` and ``run``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from federation.cli import PURE_COMMANDS
from federation.cli import main as _main

__all__ = ["COMMANDS", "main"]

COMMANDS: tuple[str, ...] = (*PURE_COMMANDS, "agents.commands")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trefed``; see ``trefed --help``."""
    return _main(argv, COMMANDS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
