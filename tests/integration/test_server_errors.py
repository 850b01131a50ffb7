"""Every bad input gets a 4xx JSON error with a stable code, and the server keeps serving."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
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
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    data = root / "data"
    data.mkdir()
    (data / "ok.wav").write_bytes(GOOD_WAV)
    (root / "secret.wav").write_bytes(GOOD_WAV)
    os.symlink(root / "secret.wav", data / "escape.wav")
    return data


@pytest.fixture(scope="module")
def server(asrtk_cache_dir: Path, data_dir: Path) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(
        "tiny", extra_args=["--max-audio-s", "5", "--max-body-mb", "1", "--data-dir", str(data_dir)],
        ready_timeout_s=300, log_path=data_dir.parent / "server.log",
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: EmbeddedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0, trust_env=False) as c:
        yield c


def _wav(x: np.ndarray, subtype: str = "PCM_16", sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]


def assert_still_serving(client: httpx.Client) -> None:
    r = client.post("/recognize", files={"file": ("ok.wav", GOOD_WAV, "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "success"


NAN_WAV = _wav(np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32), subtype="FLOAT")
INF_WAV = _wav(np.array([0.1, np.inf, 0.2] * 1000, dtype=np.float32), subtype="FLOAT")

BAD_UPLOADS = [
    ("non_audio", b"this is not audio at all" * 10, 422, "invalid_audio"),
    ("truncated_header", GOOD_WAV[:20], 422, "invalid_audio"),
    ("truncated_samples", GOOD_WAV[: len(GOOD_WAV) // 2], 422, "invalid_audio"),
    ("empty_file", b"", 422, "empty_audio"),
    ("zero_length_audio", _wav(np.zeros(0, dtype=np.float32)), 422, "empty_audio"),
    ("nan_samples", NAN_WAV, 422, "invalid_audio"),
    ("inf_samples", INF_WAV, 422, "invalid_audio"),
    ("over_max_audio_s", make_audio(6.0, sr=8000), 413, "audio_too_long"),
]


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_recognize(client: httpx.Client, name: str, data: bytes, status: int, code: str) -> None:
    assert_error(client.post("/recognize", files={"file": ("x.wav", data, "audio/wav")}), status, code)
    assert_still_serving(client)


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD_UPLOADS[:4], ids=[b[0] for b in BAD_UPLOADS[:4]])
def test_bad_upload_analyze(client: httpx.Client, name: str, data: bytes, status: int, code: str) -> None:
    r = client.post("/api/v1/analyze", files={"audio": ("x.wav", data, "audio/wav")}, data={"granularity": "utterance"})
    assert_error(r, status, code)
    assert_still_serving(client)


def test_body_over_limit_by_content_length(client: httpx.Client) -> None:
    big = make_audio(4.0, sr=48000, channels=2, subtype="FLOAT")  # ~1.5 MB > --max-body-mb 1
    assert_error(client.post("/recognize", files={"file": ("big.wav", big, "audio/wav")}), 413, "body_too_large")
    assert_still_serving(client)


def test_body_over_limit_streamed_without_content_length(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # a well-formed multipart upload that never ends, chunked encoding
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        for _ in range(40):  # 2.5 MB in 64 KiB chunks
            yield b"\0" * 65536

    r = client.post("/recognize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large")
    assert_still_serving(client)


def test_json_body_over_limit_streamed(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"data": ["data:audio/wav;base64,'
        for _ in range(40):
            yield b"A" * 65536

    r = client.post("/api/predict/", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "body_too_large")
    assert_still_serving(client)


def test_missing_and_mistyped_fields(client: httpx.Client) -> None:
    assert_error(client.post("/recognize", files={"audio": ("x.wav", GOOD_WAV, "audio/wav")}), 400, "missing_field")
    assert_error(client.post("/recognize", files={"file": (None, "just text")}), 400, "invalid_field")
    assert_error(client.post("/recognize", json={"file": "x"}), 400, "invalid_field")
    assert_error(client.post("/api/v1/analyze", files={"file": ("x.wav", GOOD_WAV, "audio/wav")}), 400, "missing_field")
    r = client.post("/api/v1/analyze", files={"audio": ("x.wav", GOOD_WAV, "audio/wav")}, data={"granularity": "word"})
    assert_error(r, 400, "invalid_field")
    assert_error(client.post("/api/predict/", json={"audio": "x"}), 400, "missing_field")
    assert_error(client.post("/api/predict/", json={"data": "x"}), 400, "invalid_field")
    assert_error(client.post("/api/predict/", json={"data": [42, "", "auto", True]}), 400, "invalid_field")
    assert_error(client.post("/api/synthesize", json={"emotion": "happy"}), 400, "missing_field")
    assert_error(client.post("/api/synthesize", json={"text": 42}), 400, "invalid_field")
    assert_error(client.post("/api/synthesize", json=["hello"]), 400, "invalid_field")
    assert_still_serving(client)


def test_invalid_json(client: httpx.Client) -> None:
    for route in ("/api/predict/", "/api/synthesize"):
        assert_error(client.post(route, content=b"{not json", headers={"content-type": "application/json"}), 400, "invalid_json")
    assert_still_serving(client)


def test_invalid_base64(client: httpx.Client) -> None:
    r = client.post("/api/predict/", json={"data": ["data:audio/wav;base64,@@@not-base64@@@", "", "auto", True]})
    assert_error(r, 400, "invalid_base64")
    assert_still_serving(client)


def test_base64_of_non_audio(client: httpx.Client) -> None:
    url = "data:audio/wav;base64," + base64.b64encode(b"hello there, not a wav").decode()
    assert_error(client.post("/api/predict/", json={"data": [url, "", "auto", True]}), 422, "invalid_audio")
    assert_still_serving(client)


@pytest.mark.parametrize("path", ["../secret.wav", "escape.wav", "/etc/passwd", "sub/../../secret.wav"])
def test_path_outside_data_dir(client: httpx.Client, data_dir: Path, path: str) -> None:
    assert_error(client.post("/api/predict/", json={"data": [path, "", "auto", True]}), 403, "path_not_allowed")
    r = client.post("/api/predict/", json={"data": ["ok.wav", "", "auto", True]})
    assert r.status_code == 200, r.text


def test_path_refused_without_data_dir(reference_server_url: str) -> None:
    r = httpx.post(reference_server_url + "/api/predict/", json={"data": ["/etc/passwd", "", "auto", True]}, timeout=30)
    assert_error(r, 403, "path_not_allowed")


def test_missing_file_in_data_dir(client: httpx.Client) -> None:
    assert_error(client.post("/api/predict/", json={"data": ["nope.wav", "", "auto", True]}), 400, "file_not_found")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"text": "", "emotion": "neutral"}, "text_empty"),
        ({"text": "   ", "emotion": "neutral"}, "text_empty"),
        ({"text": "a" * 501, "emotion": "neutral"}, "text_too_long"),
        ({"text": "hello", "emotion": "furious"}, "unknown_emotion"),
        ({"text": "hello", "emotion": 3}, "unknown_emotion"),
    ],
)
def test_bad_tts(client: httpx.Client, payload: dict, code: str) -> None:
    assert_error(client.post("/api/synthesize", json=payload), 422, code)
    r = client.post("/api/synthesize", json={"text": "hello", "emotion": "neutral"})
    assert r.status_code == 200 and r.content[:4] == b"RIFF"


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/recognize"), 405, "method_not_allowed")


def test_websocket_bad_messages_keep_the_socket_working(server: EmbeddedServer) -> None:
    import websockets

    pcm = (np.sin(np.arange(4000) / 7.0) * 5000).astype("<i2").tobytes()

    async def session() -> list[dict]:
        got = []
        async with websockets.connect(server.url.replace("http", "ws", 1) + "/ws/asr") as ws:
            for bad in ("not json", json.dumps({"type": "pause"}), b"\x01\x02\x03"):
                await ws.send(bad)
                got.append(json.loads(await ws.recv()))
            await ws.send(pcm)
            got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "end"}))
            got.append(json.loads(await ws.recv()))
        return got

    msgs = asyncio.run(asyncio.wait_for(session(), 60))
    assert [m["type"] for m in msgs] == ["error", "error", "error", "partial", "final"]
    assert [m["error"]["code"] for m in msgs[:3]] == ["invalid_json", "invalid_field", "invalid_audio"]


def test_websocket_stream_over_max_audio_closes_1009(server: EmbeddedServer) -> None:
    import websockets

    pcm = np.zeros(16000 * 2, dtype="<i2").tobytes()  # 2 s chunks; the limit is 5 s

    async def session() -> tuple[list[dict], int | None]:
        got = []
        async with websockets.connect(server.url.replace("http", "ws", 1) + "/ws/asr") as ws:
            for _ in range(3):
                await ws.send(pcm)
                got.append(json.loads(await ws.recv()))
            await ws.wait_closed()
            return got, ws.close_code

    msgs, close_code = asyncio.run(asyncio.wait_for(session(), 60))
    assert [m["type"] for m in msgs] == ["partial", "partial", "error"]
    assert msgs[-1]["error"]["code"] == "audio_too_long"
    assert close_code == 1009


def test_rejections_are_counted(client: httpx.Client) -> None:
    client.post("/recognize", files={"file": ("x.wav", b"junk", "audio/wav")})
    text = client.get("/metrics").text
    assert 'asrtk_rejected_requests_total{reason="bad_input",route="/recognize"}' in text
    assert 'asrtk_rejected_requests_total{reason="too_large",route="/recognize"}' in text
