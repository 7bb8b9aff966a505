"""``python -m tidkit``: the same as the ``tidkit`` command."""

import sys

from tidkit.cli import main

sys.exit(main())
