"""Where asrtk keeps what it builds: models, generated audio corpora."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ASRTK_CACHE_DIR``, else ``$XDG_CACHE_HOME/asrtk``, else ``~/.cache/asrtk`` (created)."""
    env = os.environ.get("ASRTK_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "asrtk"
    path.mkdir(parents=True, exist_ok=True)
    return path
