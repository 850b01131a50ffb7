"""Suite-wide setup: an isolated asrtk cache, so a run builds models and audio from scratch
exactly as a fresh machine would (set ASRTK_TEST_CACHE_DIR to reuse one between runs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_cache = os.environ.get("ASRTK_TEST_CACHE_DIR") or tempfile.mkdtemp(prefix="asrtk-test-cache-")
os.environ["ASRTK_CACHE_DIR"] = _cache
Path(_cache).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def asrtk_cache_dir() -> Path:
    return Path(_cache)
