"""The suite's own layout: pytest imports test modules by basename (rootdir-relative, no
packages), so two test files with one name in different folders break collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_basenames_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], {n: c for n, c in names.items() if c > 1}
