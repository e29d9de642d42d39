"""``python -m mcs``: the ``mcs`` command."""

import sys

from mcs.commands.cli import main

sys.exit(main())
