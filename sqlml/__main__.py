"""``python -m sqlml``: the ``sqlml`` command."""

import sys

from sqlml.cli import main

sys.exit(main())
