"""Every API of the reference server once, end to end on the real ONNX models in a real process.

Request shapes, segmenting, data-dir paths and every error path are checked in process
(tests/unit/test_server_routes.py, tests/unit/test_server_validation.py) with a fake engine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.integration

EMOTIONS = {"angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"}


@pytest.fixture(scope="module")
def client(reference_server_url: str) -> httpx.Client:
    with httpx.Client(base_url=reference_server_url, timeout=60.0, trust_env=False) as c:
        yield c


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["preset"] == "tiny"
    assert ready.json()["provider"] == "CPUExecutionProvider"


def test_recognize_stereo_44k(client: httpx.Client, audio_clip: Callable[..., bytes]) -> None:
    data = audio_clip(3.0, sr=44100, channels=2, fmt="WAV", subtype="PCM_16")
    r = client.post("/recognize", files={"file": ("call.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    assert isinstance(body["text"], str)
    assert body["language"] == "auto"
    assert body["duration_s"] == pytest.approx(3.0, abs=0.001)
    assert "random weights" in body["note"]


def test_gradio_predict_with_data_url(client: httpx.Client, audio_clip: Callable[..., bytes]) -> None:
    url = "data:audio/wav;base64," + base64.b64encode(audio_clip(2.0, sr=8000)).decode()
    r = client.post("/api/predict/", json={"data": [url, "", "auto", True]})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["data"][0], str)


def test_emotion_analyze_frames(client: httpx.Client, audio_clip: Callable[..., bytes]) -> None:
    r = client.post(
        "/api/v1/analyze",
        files={"audio": ("a.flac", audio_clip(3.0, sr=44100, channels=2, fmt="FLAC"), "audio/flac")},
        data={"granularity": "frame"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["scores"]) == EMOTIONS
    assert body["label"] in EMOTIONS
    assert body["confidence"] == pytest.approx(max(body["scores"].values()), abs=1e-5)
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert len(body["frames"]) >= 2
    assert all(set(f["scores"]) == EMOTIONS for f in body["frames"])
    assert body["frames"][-1]["end_s"] <= 3.0 + 1e-6


def test_synthesize_returns_pcm16_wav(client: httpx.Client) -> None:
    r = client.post("/api/synthesize", json={"text": "Hello, your order has shipped.", "emotion": "happy"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(r.content))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
    assert info.duration > 0.5


def test_streaming_asr(reference_server_url: str) -> None:
    import websockets

    pcm = (np.sin(np.arange(8000) * 2 * np.pi * 200 / 16000) * 8000).astype("<i2").tobytes()  # 0.5 s chunks

    async def session() -> list[dict]:
        got = []
        async with websockets.connect(reference_server_url.replace("http", "ws", 1) + "/ws/asr") as ws:
            for _ in range(4):
                await ws.send(pcm)
                got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "end"}))
            got.append(json.loads(await ws.recv()))
            await ws.wait_closed()
            assert ws.close_code == 1000
        return got

    msgs = asyncio.run(asyncio.wait_for(session(), 60))
    assert [m["type"] for m in msgs] == ["partial"] * 4 + ["final"]
    assert [m["seq"] for m in msgs[:4]] == [1, 2, 3, 4]
    assert [m["audio_s"] for m in msgs[:4]] == [0.5, 1.0, 1.5, 2.0]
    assert msgs[-1]["audio_s"] == 2.0
    assert isinstance(msgs[-1]["text"], str)


def test_metrics_expose_exactly_the_contract(client: httpx.Client, audio_clip: Callable[..., bytes]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from reference_server import metrics_spec

    client.post("/recognize", files={"file": ("a.wav", audio_clip(1.0), "audio/wav")})
    text = client.get("/metrics").text
    names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert names <= metrics_spec.exposed_series_names(), names - metrics_spec.exposed_series_names()
    for must in ("asrtk_requests_total", "asrtk_batch_size_bucket", "asrtk_ready", "asrtk_model_info",
                 "asrtk_queue_capacity", "asrtk_audio_seconds_total", "asrtk_queue_wait_seconds_count"):
        assert must in names
    assert 'asrtk_requests_total{route="/recognize",status="200"}' in text
    assert 'asrtk_model_info{model="asr",preset="tiny",provider="CPUExecutionProvider"} 1.0' in text
    assert "asrtk_ready 1.0" in text
    assert 'le="900.0"' in text
    rss = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
           if s.name == "asrtk_process_resident_memory_bytes"]
    assert len(rss) == 1 and 50 * 2**20 < rss[0] < 64 * 2**30  # a loaded ONNX model: tens of MiB at least
