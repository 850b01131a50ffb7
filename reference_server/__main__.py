"""``python -m reference_server``: the same flags as ``asrtk serve``."""

from __future__ import annotations

import sys

from reference_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
