"""Where the data the CLI ships with lives: scenarios, dashboards, alerts.

In a wheel they sit under ``toolkit/_data/`` (see ``pyproject.toml``); in a source
checkout or editable install they are the top-level folders of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO_LAYOUT = {"scenarios": "scenarios", "dashboards": "dashboards/grafana", "alerts": "alerts"}


def data_dir(kind: str) -> Path:
    """Directory of shipped data of ``kind`` ('scenarios', 'dashboards' or 'alerts')."""
    if kind not in _REPO_LAYOUT:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {sorted(_REPO_LAYOUT)}")
    packaged = _PACKAGE / "_data" / kind
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / _REPO_LAYOUT[kind]


def repo_root() -> Path | None:
    """The source checkout this package runs from, or None when installed from a wheel."""
    root = _PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() else None
