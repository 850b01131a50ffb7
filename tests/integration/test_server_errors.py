"""Over a real socket: 413 mid-upload, and what the HTTP layer refuses before the app (JSON 400, 431).

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


def _raw(server: EmbeddedServer, *pieces: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, its pieces 0.2 s apart (each arrives on its own); the
    whole answer (these answers close the connection)."""
    import socket
    import time

    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        try:
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(0.2)
                s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _json_error(status_headers_body: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    import json

    got, headers, body = status_headers_body
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
    b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_unparsable_requests_get_json_400(server: EmbeddedServer, client: httpx.Client, request_bytes: bytes) -> None:
    _json_error(_raw(server, request_bytes), 400, "invalid_request")
    assert_still_serving(client)


@pytest.mark.parametrize("split", [False, True])
def test_request_head_over_the_limit_gets_431_before_it_is_buffered(server: EmbeddedServer, client: httpx.Client,
                                                                    split: bool) -> None:
    # the default --max-header-kb is 32: one 40 KiB header, or many small ones
    headers = b"X-Big: " + b"a" * 40960 + b"\r\n" if not split else b"".join(b"X-%d: %s\r\n" % (i, b"b" * 100) for i in range(400))
    _json_error(_raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"), 431, "headers_too_large")
    assert client.get("/health", headers={"X-Fine": "a" * 8000}).status_code == 200
    assert_still_serving(client)


def test_an_oversized_head_malformed_early_gets_400_as_it_arrives(server: EmbeddedServer, client: httpx.Client) -> None:
    # the parser meets the bad Content-Length in the first piece, before the head has passed
    # --max-header-kb: 400, as for a short request malformed the same way (CI's fuzz run found it)
    start = b"GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"a" * 100
    _json_error(_raw(server, start, b"a" * 40960 + b"\r\n\r\n"), 400, "invalid_request")
    assert_still_serving(client)
