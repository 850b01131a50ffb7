"""Fixtures of the fuzz tests: ``fuzz_server``, one real tiny-preset server per module (fuzz_support.py).

Hypothesis keeps caches (``constants``, ``unicode_data``) under ``./.hypothesis`` even with
``database=None``, from collection on; the fuzz tests point it at a temp directory (removed at
exit), so a run writes nothing into the checkout.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import FuzzServer, start_fuzz_server
from hypothesis.configuration import set_hypothesis_home_dir

_hypothesis_home = tempfile.mkdtemp(prefix="asrtk-hypothesis-")
set_hypothesis_home_dir(_hypothesis_home)
atexit.register(shutil.rmtree, _hypothesis_home, ignore_errors=True)


@pytest.fixture(scope="module")
def fuzz_server(asrtk_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    server = start_fuzz_server(tmp_path_factory.mktemp("fuzz-server"))
    try:
        yield server
    finally:
        server.srv.stop()
