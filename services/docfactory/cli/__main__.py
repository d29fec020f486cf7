"""``python -m docfactory.cli``."""

import contextlib
import sys

from docfactory.cli import main

with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
