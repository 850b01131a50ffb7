"""Body limits over a real socket: uvicorn parses the HTTP framing, the server answers 413 mid-upload.

Every other bad input and refusal (codes, statuses, error shape, auth, overload, deadlines)
is checked in process by tests/unit/test_server_validation.py with a fake engine.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from reference_server.launcher import EmbeddedServer

pytestmark = pytest.mark.integration


def make_audio(seconds: float, sr: int = 16000, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    x = np.repeat((0.2 * np.sin(2 * np.pi * 180 * t))[:, None], channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="WAV", subtype=subtype)
    return buf.getvalue()


GOOD_WAV = make_audio(1.0)


@pytest.fixture(scope="module")
def server(asrtk_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    log = tmp_path_factory.mktemp("errors") / "server.log"
    srv = EmbeddedServer("tiny", extra_args=["--max-body-mb", "1"], ready_timeout_s=300, log_path=log)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: EmbeddedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0, trust_env=False) as c:
        yield c


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body


def assert_still_serving(client: httpx.Client) -> None:
    r = client.post("/recognize", files={"file": ("ok.wav", GOOD_WAV, "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "success"


def test_body_over_limit_by_content_length(client: httpx.Client) -> None:
    big = make_audio(4.0, sr=48000, channels=2, subtype="FLOAT")  # ~1.5 MB > --max-body-mb 1, refused unread
    assert_error(client.post("/recognize", files={"file": ("big.wav", big, "audio/wav")}), 413, "body_too_large")
    assert_still_serving(client)


def test_body_over_limit_streamed_without_content_length(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # a well-formed multipart upload that never ends, chunked encoding
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        for _ in range(40):  # 2.5 MB in 64 KiB chunks
            yield b"\0" * 65536

    r = client.post("/recognize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert_error(r, 413, "body_too_large")
    assert_still_serving(client)
