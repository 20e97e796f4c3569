"""``python -m medfuse``: the same as the ``medfuse`` command."""

from __future__ import annotations

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
