"""``python -m agents.cli``: the ``hlmat`` command without the console script (used by examples)."""
import sys

from agents.cli import main

sys.exit(main())
