"""Reference-server fixtures for integration tests (reusable by every integration test).

``reference_server`` / ``reference_server_url``: one tiny-preset server for the whole
session, sharing the suite's ASRTK_CACHE_DIR (models are built once). Tests that need
special flags start their own ``EmbeddedServer`` (see ``start_server``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from reference_server.launcher import EmbeddedServer

# The first start of a fresh cache builds the models.
FIRST_START_TIMEOUT_S = 300.0


@pytest.fixture(scope="session")
def reference_server(asrtk_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    log = tmp_path_factory.mktemp("reference-server") / "server.log"
    srv = EmbeddedServer("tiny", ready_timeout_s=FIRST_START_TIMEOUT_S, log_path=log)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def reference_server_url(reference_server: EmbeddedServer) -> str:
    """``http://127.0.0.1:PORT`` of a ready tiny-preset reference server (session-scoped)."""
    return reference_server.url


@pytest.fixture
def start_server(asrtk_cache_dir: Path, tmp_path: Path) -> Iterator[Callable[..., EmbeddedServer]]:
    """Factory: ``start_server(extra_args=[...], workers=2)`` -> a started server, stopped after the test."""
    started: list[EmbeddedServer] = []

    def start(**kw: object) -> EmbeddedServer:
        kw.setdefault("ready_timeout_s", FIRST_START_TIMEOUT_S)
        kw.setdefault("log_path", tmp_path / f"server-{len(started)}.log")
        srv = EmbeddedServer(**kw)  # type: ignore[arg-type]
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


def make_audio(
    seconds: float, sr: int = 16000, channels: int = 1, fmt: str = "WAV", subtype: str | None = None, seed: int = 0
) -> bytes:
    """A speech-like test clip (harmonics + noise, deterministic) encoded with soundfile."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    mono = 0.2 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 360 * t) + 0.02 * rng.standard_normal(t.shape[0])
    x = np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="session")
def audio_clip() -> Callable[..., bytes]:
    """``audio_clip(seconds, sr=16000, channels=1, fmt="WAV", subtype=None)`` -> encoded bytes."""
    return make_audio
