"""Hostile and careless input, in process: deep JSON, odd keys and tokens, work amplification,
memory admission, WebSocket bounds, the logging policy (issue 15).

Same harness as test_server_validation: the real app with a fake engine behind Starlette's
TestClient; nothing here waits on wall-clock time except the WebSocket timeouts, which are
set to fractions of a second and polled.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_engine import InProcessServer, encode_audio, pcm16, serve
from starlette.websockets import WebSocketDisconnect
from test_server_validation import GOOD_WAV, REJECTED, assert_error, predict, upload

from reference_server import audio as au
from reference_server.admission import MemoryBudget, decoded_cost
from reference_server.config import ServerConfig, is_loopback
from reference_server.logpolicy import LogPolicy, sanitized_traceback
from reference_server.models.runners import MAX_TTS_CHARS
from toolkit.errors import UsageError


@pytest.fixture
def cfg(tmp_path: Path) -> ServerConfig:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.wav").write_bytes(GOOD_WAV)
    return ServerConfig(max_audio_s=5, max_body_mb=1, data_dir=str(data), max_wait_ms=0)


@pytest.fixture
def server(cfg: ServerConfig) -> Iterator[InProcessServer]:
    with serve(cfg) as srv:
        yield srv


# -- JSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api/predict/", "/api/synthesize"])
@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json_is_400(client, route: str, depth: int) -> None:  # noqa: ANN001
    body = "[" * depth + "]" * depth
    r = client.post(route, content=body, headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_json")
    assert "nested deeper" in r.json()["error"]["message"]


def test_json_at_the_depth_limit_is_parsed(client) -> None:  # noqa: ANN001
    body = {"data": [[[[["x"]]]]]}  # depth 6: parsed, then refused for its content, not its depth
    assert client.post("/api/predict/", json=body).json()["error"]["code"] == "invalid_field"


def test_websocket_deep_json_gets_an_error_frame_and_the_socket_works(client) -> None:  # noqa: ANN001
    with client.websocket_connect("/ws/asr") as ws:
        ws.send_text("[" * 100_000)
        err = ws.receive_json()
        ws.send_text(json.dumps({"type": "end"}))
        final = ws.receive_json()
    assert (err["type"], err["error"]["code"]) == ("error", "invalid_json")
    assert final["type"] == "final"


# -- keys and tokens ----------------------------------------------------------------------------


KEY = "k3y-that-must-not-leak"


@pytest.mark.parametrize("token", ["Bearer caf\u00e9", "Bearer \u2603\u2603", "Bearer " + KEY + "\u00e9", "\u00e9"])
def test_non_ascii_tokens_are_just_wrong_keys(cfg: ServerConfig, token: str) -> None:
    with serve(cfg.replace(api_key=KEY), raise_server_exceptions=False) as srv:
        r = srv.client.post("/api/synthesize", json={"text": "hi"}, headers={"Authorization": token.encode("utf-8")})
    assert_error(r, 401, "unauthorized")


@pytest.mark.parametrize("key", ["caf\u00e9", "two words", "tab\there", "\u2603"])
def test_api_key_must_be_printable_ascii(key: str) -> None:
    with pytest.raises(UsageError, match="printable ASCII"):
        ServerConfig(api_key=key)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_binding_beyond_loopback_needs_a_key(host: str) -> None:
    with pytest.raises(UsageError, match="beyond loopback: set --api-key"):
        ServerConfig(host=host)
    assert ServerConfig(host=host, api_key=KEY).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert ServerConfig(host=host).api_key is None


# -- HTTP details -------------------------------------------------------------------------------


def test_405_is_json_with_an_allow_header(client) -> None:  # noqa: ANN001
    r = client.get("/recognize")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert client.post("/health").headers["allow"] == "GET"


def test_404_is_json(client) -> None:  # noqa: ANN001
    assert_error(client.get("/nope"), 404, "not_found")


def test_openapi_document_is_served(client) -> None:  # noqa: ANN001
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    r.json()


# -- work amplification ------------------------------------------------------------------------


def _wav_declaring(rate: int, samples: int = 1000, channels: int = 1) -> bytes:
    data = np.zeros(samples * channels, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


@pytest.mark.parametrize("rate", [1, 100, 3999, 400_000])
def test_implausible_sample_rates_are_refused(client, rate: int) -> None:  # noqa: ANN001
    r = client.post("/recognize", files=upload(_wav_declaring(rate)))
    assert_error(r, 422, "invalid_audio")
    assert f"{rate} Hz" in r.json()["error"]["message"]


def test_plausible_low_rate_is_accepted(client) -> None:  # noqa: ANN001
    assert client.post("/recognize", files=upload(encode_audio(0.5, sr=8000))).status_code == 200


def test_tts_cap_counts_what_the_model_receives(client) -> None:  # noqa: ANN001
    # U+0130 lower-cases to two characters: half the cap in it is the whole cap for the model
    text = "\u0130" * (MAX_TTS_CHARS // 2 + 1)
    assert len(text) < MAX_TTS_CHARS < len(text.lower())
    assert_error(client.post("/api/synthesize", json={"text": text}), 422, "text_too_long")
    assert client.post("/api/synthesize", json={"text": "\u0130" * (MAX_TTS_CHARS // 2)}).status_code == 200


# -- memory admission -------------------------------------------------------------------------


def test_budget_admits_a_request_alone_and_refuses_what_does_not_fit() -> None:
    budget = MemoryBudget(1000)
    a, b = budget.reservation(), budget.reservation()
    assert a.grow_to(5000)  # alone: always admitted, even over the limit
    assert not b.grow_to(1)
    a.release()
    assert b.grow_to(600) and not a.grow_to(500) and a.grow_to(400)
    assert budget.used == 1000
    a.release(), b.release()
    assert budget.used == 0


def test_decoded_cost_counts_channels_and_resampling() -> None:
    assert decoded_cost(16000, 1, 16000, 16000) == 4 * (16000 + 16000 + 16000)
    assert decoded_cost(8000, 2, 8000, 16000) == 4 * (16000 + 8000 + 16000)


def test_audio_header_cost_over_the_budget_is_refused_before_the_samples_are_read(cfg: ServerConfig) -> None:
    wav = encode_audio(2.0)  # 64 KB: the Gate's estimate is 4 x 64 KB; decoding holds 64 KB + 3 x 128 KB
    junk = b"\x01" * len(wav)
    with serve(cfg.replace(memory_budget_mb=1.0)) as srv:
        other = srv.state.budget.reservation()
        assert other.grow_to(700_000)  # another request holds most of the budget
        assert_error(srv.client.post("/recognize", files=upload(junk)), 422, "invalid_audio")  # the Gate let it in
        r = srv.client.post("/recognize", files=upload(wav))
        assert_error(r, 503, "queue_full")  # ... the decoder's check from the header did not
        assert "--memory-budget-mb" in r.json()["error"]["message"]
        assert srv.metrics.value(REJECTED, route="/recognize", reason="queue_full") == 1
        other.release()
        assert other.grow_to(500_000)  # with a little more room the same upload fits
        assert srv.client.post("/recognize", files=upload(wav)).status_code == 200
        other.release()
        assert srv.state.budget.used == 0


def test_declared_body_over_the_budget_is_refused_before_reading(cfg: ServerConfig) -> None:
    with serve(cfg.replace(memory_budget_mb=0.25)) as srv:
        other = srv.state.budget.reservation()
        assert other.grow_to(1)
        # junk would be 422 once read: 503 says the Gate refused it from its declared length
        assert_error(srv.client.post("/recognize", files=upload(b"\x01" * 100_000)), 503, "queue_full")
        other.release()
        assert_error(srv.client.post("/recognize", files=upload(b"\x01" * 100_000)), 422, "invalid_audio")  # alone
    assert srv.state.budget.used == 0


def test_predict_by_path_and_data_url_release_their_reservations(server: InProcessServer) -> None:
    assert server.client.post("/api/predict/", json=predict("ok.wav")).status_code == 200
    assert server.state.budget.used == 0


# -- WebSocket bounds ------------------------------------------------------------------------


def test_streams_over_the_cap_are_closed_1013(cfg: ServerConfig) -> None:
    with serve(cfg.replace(max_streams=1)) as srv:
        with srv.client.websocket_connect("/ws/asr") as first:
            with pytest.raises(WebSocketDisconnect) as refused:
                with srv.client.websocket_connect("/ws/asr"):
                    pass
            assert refused.value.code == 1013
            first.send_text(json.dumps({"type": "end"}))
            assert first.receive_json()["type"] == "final"
        assert srv.metrics.value(REJECTED, route="/ws/asr", reason="queue_full") == 1


def test_idle_stream_is_closed_1008(cfg: ServerConfig) -> None:
    with serve(cfg.replace(stream_idle_timeout_s=0.3)) as srv:
        with srv.client.websocket_connect("/ws/asr") as ws:
            ws.send_bytes(pcm16(1600))
            assert ws.receive_json()["type"] == "partial"
            t0 = time.monotonic()
            err = ws.receive_json()
            closed = ws.receive()
        assert time.monotonic() - t0 >= 0.25
        assert err["error"]["code"] == "stream_idle" and closed["code"] == 1008
        assert srv.state.streams == 0 and srv.state.budget.used == 0


def test_session_over_max_stream_s_is_closed_1008(cfg: ServerConfig) -> None:
    with serve(cfg.replace(max_stream_s=0.3)) as srv:
        with srv.client.websocket_connect("/ws/asr") as ws:
            err = ws.receive_json()
            closed = ws.receive()
        assert err["error"]["code"] == "stream_too_long" and closed["code"] == 1008


def test_drain_closes_idle_streams_1001(server: InProcessServer) -> None:
    with server.client.websocket_connect("/ws/asr") as ws:
        ws.send_bytes(pcm16(1600))
        assert ws.receive_json()["type"] == "partial"
        server.state.start_drain()
        err = ws.receive_json()
        closed = ws.receive()
    assert err["error"]["code"] == "draining" and closed["code"] == 1001


def test_stream_audio_counts_against_the_budget(cfg: ServerConfig) -> None:
    with serve(cfg.replace(memory_budget_mb=0.5)) as srv:
        other = srv.state.budget.reservation()
        assert other.grow_to(400_000)
        with srv.client.websocket_connect("/ws/asr") as ws:
            ws.send_bytes(pcm16(16000 * 2))  # 64 KB held + the 10 s partial window: over what is left
            err = ws.receive_json()
            closed = ws.receive()
        assert err["error"]["code"] == "queue_full" and closed["code"] == 1013
        other.release()
        assert srv.state.budget.used == 0


def test_stream_transcript_matches_an_upload_of_the_same_audio(server: InProcessServer) -> None:
    """Chunks are held as int16 now: the final must still see every sample, in order."""
    audio = pcm16(16000 * 3)
    with server.client.websocket_connect("/ws/asr") as ws:
        for i in range(0, len(audio), 8000):
            ws.send_bytes(audio[i:i + 8000])
            ws.receive_json()
        ws.send_text(json.dumps({"type": "end"}))
        final = ws.receive_json()
    assert final["audio_s"] == 3.0


# -- paths -------------------------------------------------------------------------------------


def test_resolve_data_path_raises_only_audio_errors(tmp_path: Path) -> None:
    for value in ("a" * 300, "x\x00y", "a/" * 2000, "/" + "b" * 255 + "/c", "\udcff.wav"):
        with pytest.raises(au.AudioError):
            au.resolve_data_path(value, str(tmp_path))


# -- logging policy ----------------------------------------------------------------------------


def _record(name: str, level: int, msg: str, args: tuple = (), exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def test_library_debug_records_are_dropped_and_arguments_withheld() -> None:
    policy = LogPolicy()
    assert not policy.filter(_record("websockets.server", logging.DEBUG, "< TEXT %r", ("secret",)))
    assert not policy.filter(_record("uvicorn.error", logging.INFO, "%s", ("Authorization: Bearer x",)))
    rec = _record("uvicorn.error", logging.WARNING, "bad header %s from %d", ("Bearer x", 3))
    assert policy.filter(rec) and "Bearer" not in rec.getMessage() and "withheld" in rec.getMessage()
    rec = _record("python_multipart.multipart", logging.WARNING, "Expected boundary character %r, got %r at index %d",
                  (48, 120, 4))  # numbers that are the body's bytes
    assert policy.filter(rec) and "120" not in rec.getMessage() and rec.getMessage().startswith("Expected boundary")


def test_tracebacks_keep_frames_but_not_messages() -> None:
    try:
        try:
            open("/nonexistent/" + "MARKER" * 3)
        except OSError as inner:
            raise ValueError("MARKER in a message") from inner
    except ValueError as exc:
        caught = exc
    text = sanitized_traceback(caught)
    assert "MARKER" not in text and "FileNotFoundError" in text and "ValueError" in text
    assert "test_tracebacks_keep_frames_but_not_messages" in text
    rec = _record("reference_server", logging.ERROR, "internal error", exc=caught)
    assert LogPolicy().filter(rec)
    assert "MARKER" not in logging.Formatter().format(rec)


def test_an_admitted_streams_final_waits_for_queue_room_instead_of_failing(cfg: ServerConfig) -> None:
    """19 minutes streamed must not be lost to a momentarily full queue: the final's segments enter in waves."""
    from concurrent.futures import ThreadPoolExecutor

    from fake_engine import TIMEOUT_S, FakeModels

    models = FakeModels(max_segment_s=1.0)  # the 3 s stream's final is 3 queue items
    with serve(cfg.replace(max_queue=2, max_batch=1), models) as srv, ThreadPoolExecutor(2) as pool:
        with srv.client.websocket_connect("/ws/asr") as ws:
            ws.send_bytes(pcm16(16000 * 3))
            assert ws.receive_json()["type"] == "partial"
            hold = models.hold("asr")
            running = pool.submit(srv.client.post, "/recognize", files=upload(GOOD_WAV))
            hold.wait_entered()
            queued = pool.submit(srv.client.post, "/recognize", files=upload(GOOD_WAV))
            models.wait_depth("asr", 1)
            ws.send_text(json.dumps({"type": "end"}))  # 3 items, room for 1: the first wave enters
            models.wait_depth("asr", 2)
            hold.release()
            final = ws.receive_json()
        assert (final["type"], final["audio_s"], len(final["segments"])) == ("final", 3.0, 3)
        assert running.result(TIMEOUT_S).status_code == 200 and queued.result(TIMEOUT_S).status_code == 200


def test_route_without_its_trailing_slash_is_a_json_404_naming_it(client) -> None:  # noqa: ANN001
    r = client.post("/api/predict", json={"data": ["x"]}, headers={"host": "evil.example"}, follow_redirects=False)
    assert_error(r, 404, "not_found")
    assert "/api/predict/" in r.json()["error"]["message"] and "location" not in r.headers
    assert "did you mean /recognize?" in client.post("/recognize/").json()["error"]["message"]


def test_one_chunk_over_max_audio_closes_1009(client) -> None:  # noqa: ANN001
    with client.websocket_connect("/ws/asr") as ws:
        ws.send_bytes(np.zeros(16000 * 6, dtype="<i2").tobytes())  # 6 s in one frame; the limit is 5 s
        err = ws.receive_json()
        closed = ws.receive()
    assert err["error"]["code"] == "audio_too_long" and closed["code"] == 1009
