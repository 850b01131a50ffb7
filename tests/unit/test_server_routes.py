"""Each API's request shapes and response fields, in process with a fake engine.

What the app itself computes (segmenting, joining, frame offsets, data-dir paths, stream
sequence numbers, metrics) is checked exactly here; tests/integration/test_server_api.py
runs each API once end to end on the real ONNX models.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from fake_engine import (
    PRESET,
    PROVIDER,
    SAMPLE_RATE,
    SAMPLES_PER_CHAR,
    TOP_EMOTION,
    InProcessServer,
    encode_audio,
    fake_scores,
    fake_text,
    pcm16,
    serve,
)
from starlette.testclient import TestClient

from reference_server import metrics_spec
from reference_server.config import ServerConfig
from reference_server.models.runners import EMOTION_CLASSES

LONG_S = 70.0  # three segments of 23.333 s at the engine's 30 s maximum
LONG_BOUNDS = [(0.0, 23.333), (23.333, 46.667), (46.667, 70.0)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "calls").mkdir(parents=True)
    (data / "calls" / "a.wav").write_bytes(encode_audio(1.0))
    return data


@pytest.fixture
def server(data_dir: Path) -> Iterator[InProcessServer]:
    with serve(ServerConfig(data_dir=str(data_dir), max_wait_ms=0)) as srv:
        yield srv


def test_health_and_ready_name_the_engine(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "preset": PRESET, "provider": PROVIDER, "device": "cpu"}


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "mime"),
    [
        ("call.wav", "WAV", "PCM_16", "audio/wav"),
        ("call.flac", "FLAC", None, "audio/flac"),
        ("call.ogg", "OGG", "VORBIS", "audio/ogg"),
        ("call.mp3", "MP3", None, "audio/mpeg"),
    ],
)
def test_recognize_stereo_44k(client: TestClient, name: str, fmt: str, subtype: str | None, mime: str) -> None:
    data = encode_audio(3.0, sr=44100, channels=2, fmt=fmt, subtype=subtype)
    r = client.post("/recognize", files={"file": (name, data, mime)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    assert body["language"] == "auto"
    assert body["duration_s"] == pytest.approx(3.0, abs=0.06)  # mp3 frames pad a little
    assert body["segments"] == [{"start_s": 0.0, "end_s": body["duration_s"], "text": body["text"]}]
    assert body["text"].startswith("heard 3.0")
    assert "random weights" in body["note"]


@pytest.mark.parametrize("field", ["language", "lang"])
def test_recognize_echoes_the_language(client: TestClient, field: str) -> None:
    r = client.post("/recognize", files={"file": ("a.wav", encode_audio(1.0), "audio/wav")}, data={field: "zh"})
    assert r.status_code == 200, r.text
    assert r.json()["language"] == "zh"


def test_recognize_long_audio_is_split_into_segments(server: InProcessServer) -> None:
    r = server.client.post("/recognize", files={"file": ("long.wav", encode_audio(LONG_S), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(s["start_s"], s["end_s"]) for s in body["segments"]] == LONG_BOUNDS
    assert [s["text"] for s in body["segments"]] == [fake_text(373333), fake_text(373333), fake_text(373334)]
    assert body["text"] == " ".join(s["text"] for s in body["segments"])
    assert body["duration_s"] == LONG_S
    assert sum(server.models.batches["asr"]) == 3


def test_gradio_predict_with_data_url(client: TestClient) -> None:
    url = "data:audio/wav;base64," + base64.b64encode(encode_audio(2.0, sr=8000)).decode()
    r = client.post("/api/predict/", json={"data": [url, "", "auto", True]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["data"] == [fake_text(2 * SAMPLE_RATE)]
    assert body["is_generating"] is False
    assert body["duration"] == body["average_duration"] >= 0


def test_gradio_predict_with_file_object(client: TestClient) -> None:
    url = "data:audio/wav;base64," + base64.b64encode(encode_audio(1.0)).decode()
    r = client.post("/api/predict/", json={"data": [{"name": "a.wav", "data": url}, "hot words", "zh", False]})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [fake_text(SAMPLE_RATE)]


@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
def test_gradio_predict_with_a_path_inside_data_dir(client: TestClient, data_dir: Path, relative: bool) -> None:
    path = "calls/a.wav" if relative else str(data_dir / "calls" / "a.wav")
    r = client.post("/api/predict/", json={"data": [path, "", "auto", True]})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [fake_text(SAMPLE_RATE)]
    r = client.post("/api/predict/", json={"data": [{"path": path}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_emotion_analyze(client: TestClient, granularity: str) -> None:
    data = encode_audio(3.0, sr=44100, channels=2, fmt="FLAC", subtype=None)
    r = client.post("/api/v1/analyze", files={"audio": ("a.flac", data, "audio/flac")},
                    data={"granularity": granularity})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scores"] == pytest.approx(fake_scores())
    assert list(body["scores"]) == list(EMOTION_CLASSES)
    assert (body["label"], body["confidence"], body["granularity"]) == (TOP_EMOTION, pytest.approx(0.6), granularity)
    assert body["duration_s"] == 3.0
    if granularity == "frame":
        assert [(f["start_s"], f["end_s"], f["label"]) for f in body["frames"]] == [
            (0.0, 1.0, TOP_EMOTION), (1.0, 2.0, TOP_EMOTION), (2.0, 3.0, TOP_EMOTION)]
    else:
        assert "frames" not in body


def test_emotion_frames_of_long_audio_continue_across_segments(client: TestClient) -> None:
    r = client.post("/api/v1/analyze", files={"audio": ("long.wav", encode_audio(LONG_S), "audio/wav")},
                    data={"granularity": "frame"})
    assert r.status_code == 200, r.text
    frames = r.json()["frames"]
    assert len(frames) == 3 * 24  # 24 one-second windows per 23.333 s segment
    starts = [f["start_s"] for f in frames]
    assert starts == sorted(starts)
    assert [frames[i]["start_s"] for i in (0, 24, 48)] == [b[0] for b in LONG_BOUNDS]
    assert frames[-1]["end_s"] == LONG_S


@pytest.mark.parametrize("payload", [{"text": "Hello, your order has shipped.", "emotion": "happy"},
                                     {"text": "Hello, your order has shipped."}], ids=["happy", "default_emotion"])
def test_synthesize_returns_pcm16_wav(client: TestClient, payload: dict[str, str]) -> None:
    r = client.post("/api/synthesize", json=payload)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(r.content))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
    assert info.frames == len(payload["text"]) * SAMPLES_PER_CHAR


def test_streaming_asr(client: TestClient) -> None:
    with client.websocket_connect("/ws/asr") as ws:
        msgs = []
        for _ in range(4):
            ws.send_bytes(pcm16(8000))  # 0.5 s chunks
            msgs.append(ws.receive_json())
        ws.send_text(json.dumps({"type": "end"}))
        msgs.append(ws.receive_json())
        closed = ws.receive()
    assert [m["type"] for m in msgs] == ["partial"] * 4 + ["final"]
    assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
    assert [m["audio_s"] for m in msgs] == [0.5, 1.0, 1.5, 2.0, 2.0]
    assert [m["text"] for m in msgs[:4]] == [fake_text(8000 * n) for n in (1, 2, 3, 4)]
    assert msgs[-1]["text"] == fake_text(32000)
    assert msgs[-1]["segments"] == [{"start_s": 0.0, "end_s": 2.0, "text": fake_text(32000)}]
    assert closed["code"] == 1000


def test_streaming_asr_end_without_audio(client: TestClient) -> None:
    with client.websocket_connect("/ws/asr") as ws:
        ws.send_text(json.dumps({"type": "end"}))
        final = ws.receive_json()
    got = (final["type"], final["text"], final["seq"], final["audio_s"], final["segments"])
    assert got == ("final", "", 1, 0.0, [])


def test_metrics_count_each_request_exactly(server: InProcessServer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    r = server.client.post("/recognize", files={"file": ("a.wav", encode_audio(1.0), "audio/wav")})
    assert r.status_code == 200, r.text
    m = server.metrics
    assert m.value("asrtk_requests_total", route="/recognize", status="200") == 1
    assert m.value("asrtk_audio_seconds_total", route="/recognize") == 1.0
    assert m.value("asrtk_batch_size_count", model="asr") == 1
    assert m.value("asrtk_inflight_requests", route="/recognize") == 0
    assert m.value("asrtk_queue_capacity", model="asr") == server.state.cfg.max_queue
    assert m.value("asrtk_model_info", model="asr", preset=PRESET, provider=PROVIDER) == 1
    assert m.value("asrtk_ready") == 1
    text = server.client.get("/metrics").text
    names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert names <= metrics_spec.exposed_series_names(), names - metrics_spec.exposed_series_names()
