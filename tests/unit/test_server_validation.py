"""Every bad input and every refusal gets its exact status and ``{"error": {"code", "message"}}``, in process.

The app runs behind Starlette's TestClient with a fake engine (tests/unit/fake_engine.py)
and a fresh metrics registry per test. Overload and deadlines are provoked by holding a
fake model's batch on an event, never by timing.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fake_engine import TIMEOUT_S, FakeModels, InProcessServer, encode_audio, encode_samples, pcm16, serve
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from reference_server.config import ServerConfig
from reference_server.models.runners import MAX_TTS_CHARS

GOOD_WAV = encode_audio(1.0)
HTTP_ROUTES = ("/recognize", "/api/predict/", "/api/v1/analyze", "/api/synthesize")
REJECTED = "asrtk_rejected_requests_total"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.wav").write_bytes(GOOD_WAV)
    (tmp_path / "secret.wav").write_bytes(GOOD_WAV)
    os.symlink(tmp_path / "secret.wav", data / "escape.wav")
    return data


@pytest.fixture
def cfg(data_dir: Path) -> ServerConfig:
    return ServerConfig(max_audio_s=5, max_body_mb=1, data_dir=str(data_dir), max_wait_ms=0)


@pytest.fixture
def server(cfg: ServerConfig) -> Iterator[InProcessServer]:
    with serve(cfg) as srv:
        yield srv


def upload(data: bytes, field: str = "file") -> dict[str, Any]:
    return {field: ("x.wav", data, "audio/wav")}


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message and "\n" not in message
    assert r.headers.get("retry-after") == ("1" if status == 503 else None)


def assert_still_serving(client: TestClient) -> None:
    r = client.post("/recognize", files=upload(GOOD_WAV))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "success"


def predict(path_or_url: str) -> dict[str, Any]:
    return {"data": [path_or_url, "", "auto", True]}


# -- uploads ----------------------------------------------------------------------------------

BAD_UPLOADS = [
    ("non_audio", b"this is not audio at all" * 10, 422, "invalid_audio"),
    ("truncated_header", GOOD_WAV[:20], 422, "invalid_audio"),
    ("truncated_samples", GOOD_WAV[: len(GOOD_WAV) // 2], 422, "invalid_audio"),
    ("empty_file", b"", 422, "empty_audio"),
    ("zero_length_audio", encode_samples(np.zeros(0, dtype=np.float32)), 422, "empty_audio"),
    ("nan_samples", encode_samples(np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32), subtype="FLOAT"),
     422, "invalid_audio"),
    ("inf_samples", encode_samples(np.array([0.1, np.inf, 0.2] * 1000, dtype=np.float32), subtype="FLOAT"),
     422, "invalid_audio"),
    ("over_max_audio_s", encode_audio(6.0, sr=8000), 413, "audio_too_long"),
]


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_recognize(server: InProcessServer, name: str, data: bytes, status: int, code: str) -> None:
    assert_error(server.client.post("/recognize", files=upload(data)), status, code)
    assert server.models.batches["asr"] == []  # refused before any inference
    assert_still_serving(server.client)


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_analyze(server: InProcessServer, name: str, data: bytes, status: int, code: str) -> None:
    r = server.client.post("/api/v1/analyze", files=upload(data, "audio"), data={"granularity": "utterance"})
    assert_error(r, status, code)
    assert server.models.batches["emotion"] == []
    assert_still_serving(server.client)


def test_body_over_limit_by_content_length(server: InProcessServer) -> None:
    big = encode_audio(4.0, sr=48000, channels=2, subtype="FLOAT")  # ~1.5 MB > max_body_mb 1
    r = server.client.post("/recognize", files={"file": ("big.wav", big, "audio/wav")})
    assert int(r.request.headers["content-length"]) > 1024 * 1024
    assert_error(r, 413, "body_too_large")
    assert_still_serving(server.client)


def test_body_over_limit_streamed_without_content_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # a well-formed multipart upload that never ends
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        for _ in range(40):  # 2.5 MB in 64 KiB chunks
            yield b"\0" * 65536

    r = client.post("/recognize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large")
    assert_still_serving(client)


def test_json_body_over_limit_streamed(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"data": ["data:audio/wav;base64,'
        for _ in range(40):
            yield b"A" * 65536

    r = client.post("/api/predict/", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large")
    assert_still_serving(client)


# -- fields and JSON --------------------------------------------------------------------------

FIELD_CASES = [
    ("recognize_without_file", "/recognize", {"files": upload(GOOD_WAV, "audio")}, 400, "missing_field"),
    ("recognize_file_as_text", "/recognize", {"files": {"file": (None, "just text")}}, 400, "invalid_field"),
    ("recognize_json_body", "/recognize", {"json": {"file": "x"}}, 400, "invalid_field"),
    ("recognize_multipart_without_boundary", "/recognize",
     {"content": b"--xyz\r\n", "headers": {"content-type": "multipart/form-data"}}, 400, "invalid_field"),
    ("analyze_without_audio", "/api/v1/analyze", {"files": upload(GOOD_WAV, "file")}, 400, "missing_field"),
    ("analyze_unknown_granularity", "/api/v1/analyze",
     {"files": upload(GOOD_WAV, "audio"), "data": {"granularity": "word"}}, 400, "invalid_field"),
    ("predict_without_data", "/api/predict/", {"json": {"audio": "x"}}, 400, "missing_field"),
    ("predict_data_not_a_list", "/api/predict/", {"json": {"data": "x"}}, 400, "invalid_field"),
    ("predict_data_empty", "/api/predict/", {"json": {"data": []}}, 400, "invalid_field"),
    ("predict_audio_not_a_string", "/api/predict/", {"json": {"data": [42, "", "auto", True]}}, 400, "invalid_field"),
    ("predict_audio_object_without_data", "/api/predict/", {"json": {"data": [{"size": 3}]}}, 400, "invalid_field"),
    ("synthesize_without_text", "/api/synthesize", {"json": {"emotion": "happy"}}, 400, "missing_field"),
    ("synthesize_text_not_a_string", "/api/synthesize", {"json": {"text": 42}}, 400, "invalid_field"),
    ("synthesize_body_not_an_object", "/api/synthesize", {"json": ["hello"]}, 400, "invalid_field"),
]


@pytest.mark.parametrize(("name", "route", "kwargs", "status", "code"), FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_missing_and_mistyped_fields(client: TestClient, name: str, route: str, kwargs: dict[str, Any],
                                     status: int, code: str) -> None:
    assert_error(client.post(route, **kwargs), status, code)


@pytest.mark.parametrize("route", ["/api/predict/", "/api/synthesize"])
def test_invalid_json(client: TestClient, route: str) -> None:
    r = client.post(route, content=b"{not json", headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_json")
    assert_still_serving(client)


@pytest.mark.parametrize("url", ["data:audio/wav;base64,@@@not-base64@@@", "data:audio/wav,AAAA"],
                         ids=["bad_payload", "no_base64_marker"])
def test_invalid_base64(client: TestClient, url: str) -> None:
    assert_error(client.post("/api/predict/", json=predict(url)), 400, "invalid_base64")
    assert_still_serving(client)


def test_base64_of_non_audio(client: TestClient) -> None:
    url = "data:audio/wav;base64," + base64.b64encode(b"hello there, not a wav").decode()
    assert_error(client.post("/api/predict/", json=predict(url)), 422, "invalid_audio")


# -- paths for the Gradio API -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["../secret.wav", "escape.wav", "/etc/passwd", "sub/../../secret.wav"],
                         ids=["dot_dot", "symlink_escape", "absolute_outside", "dot_dot_inside"])
def test_path_outside_data_dir(client: TestClient, path: str) -> None:
    assert_error(client.post("/api/predict/", json=predict(path)), 403, "path_not_allowed")
    r = client.post("/api/predict/", json=predict("ok.wav"))
    assert r.status_code == 200, r.text


def test_path_refused_without_data_dir(cfg: ServerConfig) -> None:
    with serve(cfg.replace(data_dir=None)) as srv:
        assert_error(srv.client.post("/api/predict/", json=predict("ok.wav")), 403, "path_not_allowed")


def test_missing_file_in_data_dir(client: TestClient) -> None:
    assert_error(client.post("/api/predict/", json=predict("nope.wav")), 400, "file_not_found")


@pytest.mark.parametrize(("name", "status", "code"), [
    ("a" * 300 + ".wav", 400, "file_not_found"),  # ENAMETOOLONG, e.g. bare base64 as data[0]
    ("a" * 5000, 403, "path_not_allowed"),  # over MAX_PATH_CHARS
    ("ok.wav\x00.txt", 403, "path_not_allowed"),
    ("d/" * 60 + "x.wav", 400, "file_not_found"),
])
def test_hostile_file_names_are_client_errors(cfg: ServerConfig, name: str, status: int, code: str) -> None:
    with serve(cfg, raise_server_exceptions=False) as srv:
        r = srv.client.post("/api/predict/", json=predict(name))
    assert_error(r, status, code)
    assert name[:40] not in r.text  # the value (maybe a whole upload) is never quoted back


def test_file_in_data_dir_over_body_limit(client: TestClient, data_dir: Path) -> None:
    (data_dir / "big.wav").write_bytes(b"\0" * (1024 * 1024 + 1))
    assert_error(client.post("/api/predict/", json=predict("big.wav")), 413, "body_too_large")


# -- TTS --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"text": "", "emotion": "neutral"}, "text_empty"),
        ({"text": "   ", "emotion": "neutral"}, "text_empty"),
        ({"text": "a" * (MAX_TTS_CHARS + 1), "emotion": "neutral"}, "text_too_long"),
        ({"text": "hello", "emotion": "furious"}, "unknown_emotion"),
        ({"text": "hello", "emotion": 3}, "unknown_emotion"),
    ],
    ids=["empty", "blank", "over_max_chars", "unknown_emotion", "emotion_not_a_string"],
)
def test_bad_tts(server: InProcessServer, payload: dict[str, Any], code: str) -> None:
    assert_error(server.client.post("/api/synthesize", json=payload), 422, code)
    assert server.models.batches["tts"] == []
    r = server.client.post("/api/synthesize", json={"text": "a" * MAX_TTS_CHARS, "emotion": "neutral"})
    assert r.status_code == 200 and r.content[:4] == b"RIFF"


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/recognize"), 405, "method_not_allowed")


# -- streaming --------------------------------------------------------------------------------


def test_websocket_bad_messages_keep_the_socket_working(server: InProcessServer) -> None:
    with server.client.websocket_connect("/ws/asr") as ws:
        ws.send_text("not json")
        ws.send_text(json.dumps({"type": "pause"}))
        ws.send_bytes(b"\x01\x02\x03")
        errors = [ws.receive_json() for _ in range(3)]
        ws.send_bytes(pcm16(4000))
        partial = ws.receive_json()
        ws.send_text(json.dumps({"type": "end"}))
        final = ws.receive_json()
        closed = ws.receive()
    assert [e["type"] for e in errors] == ["error"] * 3
    assert [e["error"]["code"] for e in errors] == ["invalid_json", "invalid_field", "invalid_audio"]
    assert (partial["type"], partial["seq"]) == ("partial", 1)
    assert (final["type"], final["seq"]) == ("final", 2)
    assert closed == {"type": "websocket.close", "code": 1000, "reason": ""}
    assert server.metrics.value(REJECTED, route="/ws/asr", reason="bad_input") == 3


def test_websocket_stream_over_max_audio_closes_1009(server: InProcessServer) -> None:
    chunk = np.zeros(16000 * 2, dtype="<i2").tobytes()  # 2 s chunks; the limit is 5 s
    with server.client.websocket_connect("/ws/asr") as ws:
        msgs = []
        for _ in range(3):
            ws.send_bytes(chunk)
            msgs.append(ws.receive_json())
        closed = ws.receive()
    assert [m["type"] for m in msgs] == ["partial", "partial", "error"]
    assert msgs[-1]["error"]["code"] == "audio_too_long"
    assert closed["type"] == "websocket.close" and closed["code"] == 1009
    assert server.metrics.value("asrtk_requests_total", route="/ws/asr", status="413") == 1
    assert server.metrics.value(REJECTED, route="/ws/asr", reason="too_large") == 1


# -- accounting -------------------------------------------------------------------------------


def test_rejections_are_counted(server: InProcessServer) -> None:
    server.client.post("/recognize", files=upload(b"junk"))
    server.client.post("/recognize", files=upload(encode_audio(6.0, sr=8000)))
    m = server.metrics
    assert m.value(REJECTED, route="/recognize", reason="bad_input") == 1
    assert m.value(REJECTED, route="/recognize", reason="too_large") == 1
    assert m.value("asrtk_requests_total", route="/recognize", status="422") == 1
    assert m.value("asrtk_requests_total", route="/recognize", status="413") == 1
    assert m.value("asrtk_inflight_requests", route="/recognize") == 0
    text = server.client.get("/metrics").text
    assert 'asrtk_rejected_requests_total{reason="bad_input",route="/recognize"} 1.0' in text


def test_a_failing_model_gives_500_internal_error(cfg: ServerConfig) -> None:
    models = FakeModels()
    models.fail("asr", RuntimeError("model exploded"))
    with serve(cfg, models, raise_server_exceptions=False) as srv:
        r = srv.client.post("/recognize", files=upload(GOOD_WAV))
        assert_error(r, 500, "internal_error")
        assert "model exploded" not in r.text  # the details go to the log, not to the client
        assert_still_serving(srv.client)
        assert srv.metrics.value("asrtk_requests_total", route="/recognize", status="500") == 1


# -- API key ----------------------------------------------------------------------------------

KEY = "s3cret-key-that-must-not-leak"
WRONG_KEYS = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}]


@pytest.fixture
def secured(cfg: ServerConfig) -> Iterator[InProcessServer]:
    with serve(cfg.replace(api_key=KEY)) as srv:
        yield srv


@pytest.mark.parametrize("headers", WRONG_KEYS, ids=["no_header", "wrong_key", "no_scheme", "basic_scheme"])
@pytest.mark.parametrize("route", HTTP_ROUTES)
def test_api_routes_refuse_a_missing_or_wrong_key(secured: InProcessServer, route: str,
                                                  headers: dict[str, str]) -> None:
    assert_error(secured.client.post(route, json={"text": "hi"}, headers=headers), 401, "unauthorized")
    assert secured.metrics.value(REJECTED, route=route, reason="unauthorized") == 1


def test_the_key_is_checked_before_the_body_size(secured: InProcessServer) -> None:
    big = encode_audio(4.0, sr=48000, channels=2, subtype="FLOAT")  # over max_body_mb as well
    assert_error(secured.client.post("/recognize", files=upload(big)), 401, "unauthorized")


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_the_right_key_is_accepted(secured: InProcessServer, scheme: str) -> None:
    auth = {"Authorization": f"{scheme} {KEY}"}
    r = secured.client.post("/recognize", files=upload(GOOD_WAV), headers=auth)
    assert r.status_code == 200, r.text
    r = secured.client.post("/api/synthesize", json={"text": "hi"}, headers=auth)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ["/health", "/ready", "/metrics"])
def test_health_ready_and_metrics_need_no_key(secured: InProcessServer, route: str) -> None:
    assert secured.client.get(route).status_code == 200


def test_websocket_needs_the_key(secured: InProcessServer) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with secured.client.websocket_connect("/ws/asr", headers={"Authorization": "Bearer wrong"}):
            pass
    assert refused.value.code == 1008
    assert secured.metrics.value(REJECTED, route="/ws/asr", reason="unauthorized") == 1
    with secured.client.websocket_connect("/ws/asr", headers={"Authorization": f"Bearer {KEY}"}) as ws:
        ws.send_text(json.dumps({"type": "end"}))
        assert ws.receive_json()["type"] == "final"


# -- overload, deadlines, lifecycle -----------------------------------------------------------


def test_full_queue_gives_503_with_retry_after(cfg: ServerConfig) -> None:
    models = FakeModels()
    with serve(cfg.replace(max_queue=1, max_batch=1), models) as srv, ThreadPoolExecutor(1) as pool:
        hold = models.hold("asr")
        first = pool.submit(srv.client.post, "/recognize", files=upload(GOOD_WAV))
        hold.wait_entered()  # the first request is admitted and running: the asr queue is full
        assert_error(srv.client.post("/recognize", files=upload(GOOD_WAV)), 503, "queue_full")
        r = srv.client.post("/api/synthesize", json={"text": "hi"})  # every model has its own queue
        assert r.status_code == 200, r.text
        hold.release()
        assert first.result(TIMEOUT_S).status_code == 200
        assert_still_serving(srv.client)
        assert srv.metrics.value(REJECTED, route="/recognize", reason="queue_full") == 1


def test_request_whose_segments_overflow_the_batcher_queue_gets_503(cfg: ServerConfig) -> None:
    models = FakeModels(max_segment_s=1.0)  # a 3 s upload is 3 queue items
    with serve(cfg.replace(max_queue=3, max_batch=1), models) as srv, ThreadPoolExecutor(2) as pool:
        hold = models.hold("asr")
        running = pool.submit(srv.client.post, "/recognize", files=upload(GOOD_WAV))
        hold.wait_entered()
        queued = pool.submit(srv.client.post, "/recognize", files=upload(GOOD_WAV))
        models.wait_depth("asr", 1)  # 1 item queued, 2 requests admitted: the Gate lets a third in
        assert_error(srv.client.post("/recognize", files=upload(encode_audio(3.0))), 503, "queue_full")
        hold.release()
        assert running.result(TIMEOUT_S).status_code == 200
        assert queued.result(TIMEOUT_S).status_code == 200
        assert srv.metrics.value(REJECTED, route="/recognize", reason="queue_full") == 1


def test_request_past_its_deadline_gets_504(cfg: ServerConfig) -> None:
    models = FakeModels()
    with serve(cfg.replace(request_timeout_s=0.05), models) as srv:
        hold = models.hold("asr")  # released only after the answer: the batch cannot finish in time
        assert_error(srv.client.post("/recognize", files=upload(GOOD_WAV)), 504, "deadline_exceeded")
        hold.release()
        assert srv.metrics.value(REJECTED, route="/recognize", reason="deadline") == 1


def test_requests_before_the_models_load_get_503_not_ready(cfg: ServerConfig) -> None:
    models = FakeModels()
    loading = models.hold_loading()
    with serve(cfg, models, wait_ready=False) as srv:
        loading.wait_entered()
        r = srv.client.get("/ready")
        assert (r.status_code, r.json(), r.headers["retry-after"]) == (503, {"status": "starting"}, "1")
        for route in HTTP_ROUTES:
            assert_error(srv.client.post(route, json={"text": "hi"}), 503, "not_ready")
        with pytest.raises(WebSocketDisconnect) as refused:
            with srv.client.websocket_connect("/ws/asr"):
                pass
        assert refused.value.code == 1013
        loading.release()
        assert srv.metrics.became_ready.wait(TIMEOUT_S)
        assert srv.client.get("/ready").json()["status"] == "ready"
        assert_still_serving(srv.client)


def test_draining_server_refuses_new_work_with_503(server: InProcessServer) -> None:
    server.state.start_drain()
    r = server.client.get("/ready")
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (503, {"status": "draining"}, "1")
    for route in HTTP_ROUTES:
        assert_error(server.client.post(route, json={"text": "hi"}), 503, "draining")
        assert server.metrics.value(REJECTED, route=route, reason="draining") == 1
    with pytest.raises(WebSocketDisconnect) as refused:
        with server.client.websocket_connect("/ws/asr"):
            pass
    assert refused.value.code == 1013
    assert server.metrics.value(REJECTED, route="/ws/asr", reason="draining") == 1
    assert server.metrics.value("asrtk_ready") == 0
