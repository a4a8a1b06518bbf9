"""Entry point of ``python -m harness``; the commands live in ``harness.cli``."""

import sys

from harness.cli import main

sys.exit(main())
