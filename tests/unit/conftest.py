"""Fixtures shared by the in-process server tests (test_server_routes, test_server_validation).

Each of those modules defines its own ``server`` fixture (a :class:`fake_engine.InProcessServer`
with the configuration it tests); ``client`` is that server's Starlette ``TestClient``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_process_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process app registers its metrics in this process, not a multiprocess directory."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


@pytest.fixture
def client(server):  # noqa: ANN001, ANN201 - the module's InProcessServer
    return server.client
