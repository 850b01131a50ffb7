"""The logging policy: no request body, audio, header value or key reaches a log, at any level.

Two real servers at ``--log-level debug`` with ``--api-key`` (one with ``--data-dir``, one
without) get requests that carry a random marker in every place a client controls: JSON
bodies (bare base64, paths, data URLs, a 300+ character path with a NUL byte, nesting
100,000 deep), the TTS text and emotion, multipart bytes, file names and fields, header
values, the bearer token, the query string and path, malformed and oversized request
heads, and WebSocket handshakes and frames. Then the server's log must contain neither the
marker (nor its base64 form) nor the key, and must not be empty.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fuzz_support import DATA_FILE, FuzzServer, raw_request, start_fuzz_server, wav_bytes
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

MARKER = secrets.token_hex(12)  # 24 hex characters that nothing else in a log contains
MARKER_B64 = base64.b64encode(MARKER.encode()).decode()  # 32 characters, no padding: how a payload starting with it encodes
TIMEOUT_S = 20.0


def _requests(srv: FuzzServer) -> list[tuple[str, Callable[[httpx.Client], object]]]:
    m, mb = MARKER, MARKER.encode()
    auth = srv.auth
    long_path = f"calls/{m}/" + "a" * 300 + "\x00.wav"
    nested = "[" * 100_000 + json.dumps(m)
    nested_ok: object = m
    for _ in range(35):  # deeper than the server accepts, in valid JSON
        nested_ok = [nested_ok]

    def predict(value: object) -> Callable[[httpx.Client], object]:
        return lambda c: c.post("/api/predict/", json={"data": [value, m, m, m]}, headers=auth)

    def post(path: str, **kw: object) -> Callable[[httpx.Client], object]:
        return lambda c: c.post(path, **{"headers": auth, **kw})

    wav = wav_bytes(0.2)
    return [
        ("predict: bare base64", predict(MARKER_B64)),
        ("predict: path", predict(f"calls/{m}.wav")),
        ("predict: absolute path", predict(f"/{m}/x.wav")),
        ("predict: path with ..", predict(f"../{m}")),
        ("predict: file object", predict({"path": f"{m}.wav", "name": m})),
        ("predict: data URL of junk", predict("data:audio/wav;base64," + base64.b64encode(mb + b"junk" * 10).decode())),
        ("predict: data URL, bad base64", predict(f"data:audio/wav;base64,{m}!!")),
        ("predict: data URL, odd media type", predict(f"data:audio/{m};base64,AAAA")),
        ("predict: long path with NUL", predict(long_path)),
        ("predict: real file, marker elsewhere", predict(DATA_FILE)),
        ("predict: nested 100000", post("/api/predict/", content=nested.encode(), headers={**auth, "Content-Type": "application/json"})),
        ("predict: nested 35", post("/api/predict/", json={"data": nested_ok})),
        ("predict: not JSON", post("/api/predict/", content=b"{" + mb + b"\xff")),
        ("predict: invalid UTF-8 with marker", post("/api/predict/", content=b'{"data": ["' + mb + b'\xff"]}')),
        ("synthesize: text", post("/api/synthesize", json={"text": f"say {m}", "emotion": "happy"})),
        ("synthesize: long text", post("/api/synthesize", json={"text": m * 30})),
        ("synthesize: emotion", post("/api/synthesize", json={"text": "hi", "emotion": m})),
        ("synthesize: text of wrong type", post("/api/synthesize", json={"text": {m: m}})),
        ("recognize: upload bytes and name", post("/recognize", files={"file": (f"{m}.wav", b"RIFF" + mb * 8, "audio/wav")},
                                                  data={"language": m})),
        ("recognize: real audio, marker in name", post("/recognize", files={"file": (f"{m}.wav", wav, f"audio/{m}")}, data={"lang": m})),
        ("recognize: text part", post("/recognize", data={"file": m})),
        ("recognize: malformed multipart", post("/recognize", content=b"--x\r\n" + mb,
                                               headers={**auth, "Content-Type": f"multipart/form-data; boundary={m}"})),
        ("analyze: granularity", post("/api/v1/analyze", files={"audio": ("a.wav", wav, "audio/wav")}, data={"granularity": m})),
        ("analyze: marker as audio", post("/api/v1/analyze", files={"audio": (m, mb * 100, "audio/wav")})),
        ("analyze: not multipart", post("/api/v1/analyze", content=mb, headers={**auth, "Content-Type": f"text/{m}"})),
        ("wrong bearer token", lambda c: c.post("/recognize", headers={"Authorization": f"Bearer {m}"})),
        ("wrong scheme", lambda c: c.get("/metrics", headers={"Authorization": f"Basic {MARKER_B64}"})),
        ("custom headers", lambda c: c.get("/health", headers={"X-Marker": m, "User-Agent": m, "Cookie": f"s={m}", "Referer": m})),
        ("query string", lambda c: c.get(f"/ready?token={m}", headers={"X-Api-Key": m})),
        ("unknown path", lambda c: c.get(f"/{m}", headers=auth)),
        ("wrong method", lambda c: c.put(f"/recognize?{m}=1", headers=auth, content=mb)),
        ("too large", post("/api/synthesize", content=mb * 100_000)),
        ("malformed request line", lambda c: raw_request(srv.url, b"GET /" + mb + b"\x00 HTTP/1.1\r\nHost: x\r\n\r\n", TIMEOUT_S)),
        ("malformed header", lambda c: raw_request(srv.url, b"GET /health HTTP/1.1\r\nHost: x\r\nX-" + mb + b"\x00: " + mb + b"\r\n\r\n", TIMEOUT_S)),
        ("non-ASCII bearer", lambda c: raw_request(
            srv.url, b"GET /recognize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9" + mb + b"\xff\r\nConnection: close\r\n\r\n", TIMEOUT_S)),
        ("oversized head", lambda c: raw_request(
            srv.url, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + mb * 2000 + b"\r\nConnection: close\r\n\r\n", TIMEOUT_S)),
    ]


def _websocket(srv: FuzzServer) -> list[str]:
    """A stream carrying the marker, and handshakes that carry it in the URL or as the key; returns what happened."""
    m, mb = MARKER, MARKER.encode()
    seen: list[str] = []
    kw = {"proxy": None, "compression": None, "open_timeout": TIMEOUT_S, "close_timeout": 5.0, "max_size": 2**22}
    with connect(srv.ws_url + f"?session={m}", additional_headers={**srv.auth, "X-Marker": m}, **kw) as ws:
        pcm = (np.sin(np.arange(1600) / 5) * 3000).astype("<i2").tobytes()
        for frame in (mb + pcm, mb, mb + b"x", f'{{"type": "{m}"}}', m, "[" * 100_000 + m, '{"type": "end"}'):
            ws.send(frame)
            try:
                seen.append(json.loads(ws.recv(timeout=TIMEOUT_S))["type"])
            except ConnectionClosed as exc:
                seen.append(f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}")
                break
    for headers in ({"Authorization": f"Bearer {m}"}, {"Authorization": f"Bearer {MARKER_B64}", "Sec-WebSocket-Protocol": m}):
        try:
            with connect(srv.ws_url, additional_headers=headers, **kw):
                seen.append("accepted without the key")
        except InvalidStatus as exc:
            seen.append(f"refused {exc.response.status_code}")
    return seen


@pytest.mark.parametrize("with_data_dir", [True, False], ids=["data-dir", "no-data-dir"])
def test_no_marker_or_key_in_the_debug_log(asrtk_cache_dir: Path, tmp_path: Path, with_data_dir: bool) -> None:
    srv = start_fuzz_server(tmp_path, ["--log-level", "debug"], data_dir=with_data_dir)
    answered: dict[str, str] = {}
    try:
        # a connection per request: a request the server breaks off must not take the next one with it
        with httpx.Client(base_url=srv.url, timeout=TIMEOUT_S, trust_env=False,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for name, send in _requests(srv):
                try:
                    r = send(client)
                except (httpx.TransportError, ConnectionError) as exc:  # the fuzz tests judge those; here only the log counts
                    answered[name] = f"no response ({type(exc).__name__})"
                    continue
                answered[name] = str(r.status_code if isinstance(r, httpx.Response) else r.status)  # type: ignore[attr-defined]
        try:
            answered["websocket"] = " ".join(_websocket(srv))
        except (OSError, ConnectionClosed, InvalidStatus) as exc:
            answered["websocket"] = f"failed ({type(exc).__name__})"
    finally:
        srv.srv.stop()  # SIGTERM: the drain and shutdown lines are written before the file is read
    print(f"\nlog policy, {'with' if with_data_dir else 'without'} --data-dir, statuses: {answered}")
    log = srv.srv.log_path.read_text(errors="replace")
    # the file is the server's log from start to shutdown, so what was logged while the requests ran is in it
    assert "ready: preset tiny" in log and "SIGTERM received" in log, f"not the whole log of the server:\n{log}"
    # the one request that must succeed with --data-dir: the path handling really ran
    assert answered["predict: real file, marker elsewhere"] == ("200" if with_data_dir else "403"), answered
    leaks = [(what, line) for line in log.splitlines()
             for what, secret in (("marker", MARKER), ("base64 of the marker", MARKER_B64), ("API key", srv.key))
             if secret in line]
    assert not leaks, "the log holds request data or the key:\n" + "\n".join(f"{w}: {line[:400]}" for w, line in leaks) + \
        f"\n(statuses: {answered})"
