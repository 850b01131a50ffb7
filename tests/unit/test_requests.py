"""Request bodies per protocol (pure: fake clips, no network)."""

from __future__ import annotations

import base64
import io
import json
import wave
from dataclasses import dataclass
from pathlib import Path

from toolkit.engine.requests import build_requests, wav_duration_s
from toolkit.scenario import ProtocolSpec


@dataclass
class FakeClip:
    path: Path
    duration_s: float
    format: str = "wav"

    def read_bytes(self) -> bytes:
        return b"RIFF-audio-bytes"

    def pcm16_16k(self) -> bytes:
        return b"\x01\x00" * int(16000 * self.duration_s)


CLIPS = [FakeClip(Path("c0.wav"), 2.0), FakeClip(Path("c1.wav"), 3.5)]


def test_recognize_is_multipart_with_the_file_field_and_audio_seconds() -> None:
    rs = build_requests(ProtocolSpec(kind="recognize"), CLIPS, [], {"Authorization": "Bearer t"}, "cc")
    assert len(rs.requests) == 2
    r = rs.requests[0]
    assert (r.method, r.path, r.audio_s) == ("POST", "/recognize", 2.0)
    ctype = r.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    assert r.body.count(b"--" + boundary) == 3  # language field, file, closing
    assert b'name="file"; filename="c0.wav"' in r.body and b"RIFF-audio-bytes" in r.body
    assert r.headers["Authorization"] == "Bearer t"


def test_emotion_sends_field_audio_and_granularity() -> None:
    r = build_requests(ProtocolSpec(kind="emotion", granularity="frame"), CLIPS, [], {}, "e").requests[1]
    assert b'name="audio"; filename="c1.wav"' in r.body and b'name="granularity"\r\n\r\nframe' in r.body


def test_funasr_is_gradio_json_with_a_data_url() -> None:
    r = build_requests(ProtocolSpec(kind="funasr", hotwords="asrtk", language="zh"), CLIPS, [], {}, "f").requests[0]
    data = json.loads(r.body)["data"]
    assert data[0] == "data:audio/wav;base64," + base64.b64encode(b"RIFF-audio-bytes").decode()
    assert data[1:] == ["asrtk", "zh", True]


def test_tts_takes_rtf_from_the_returned_audio() -> None:
    r = build_requests(ProtocolSpec(kind="tts"), [], [("hello there", "happy")], {}, "t").requests[0]
    assert json.loads(r.body) == {"text": "hello there", "emotion": "happy"}
    assert r.audio_s is None and r.output_audio


def test_custom_template_fills_placeholders() -> None:
    spec = ProtocolSpec(kind="http", path="/v1/asr", body="json",
                        json_template={"audio": {"b64": "{audio_b64}"}, "prompt": "say {text}", "n": 1})
    r = build_requests(spec, CLIPS[:1], [("hi", "neutral")], {}, "h").requests[0]
    assert json.loads(r.body) == {"audio": {"b64": base64.b64encode(b"RIFF-audio-bytes").decode()},
                                  "prompt": "say hi", "n": 1}


def test_stream_chunks_follow_chunk_ms() -> None:
    r = build_requests(ProtocolSpec(kind="stream", chunk_ms=250), CLIPS[:1], [], {}, "m").requests[0]
    assert r.chunk_bytes == 8000 and len(r.pcm or b"") == 64000 and r.audio_s == 2.0


def test_wav_duration() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(b"\x00\x00" * 11025)
    assert wav_duration_s(buf.getvalue()) == 0.5
    assert wav_duration_s(b"not a wav") is None
