"""``python -m agents.cli``: the ``trefed`` console script."""

import sys

from agents.cli.main import main

sys.exit(main())
