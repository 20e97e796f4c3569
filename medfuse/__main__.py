"""``python -m medfuse``: the same as the ``medfuse`` command."""

from __future__ import annotations

import sys

from .cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
