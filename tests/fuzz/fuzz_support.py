"""What the fuzz tests share: a real reference server and the documented error shape.

:func:`start_fuzz_server` starts a tiny-preset server with ``--api-key`` set to a random key,
``--data-dir`` holding one short WAV (``calls/a.wav``, the path openapi.json's examples
name) and small limits, so a fuzzed request costs milliseconds. Every test in tests/fuzz
stops what it starts; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from reference_server.app import ERRORS
from reference_server.launcher import EmbeddedServer

FIRST_START_TIMEOUT_S = 300.0  # the first start of a fresh ASRTK_CACHE_DIR builds the models
MAX_BODY_MB = 2
MAX_AUDIO_S = 30
MAX_HEADER_KB = 32
SERVER_ARGS = [
    "--max-body-mb", str(MAX_BODY_MB), "--max-audio-s", str(MAX_AUDIO_S), "--max-header-kb", str(MAX_HEADER_KB),
    "--max-wait-ms", "0", "--threads", "1", "--request-timeout-s", "20",
]
DATA_FILE = "calls/a.wav"


@dataclass(frozen=True)
class FuzzServer:
    srv: EmbeddedServer
    key: str
    data_dir: Path

    @property
    def url(self) -> str:
        return self.srv.url

    @property
    def ws_url(self) -> str:
        return "ws" + self.srv.url.removeprefix("http") + "/ws/asr"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def wav_bytes(seconds: float, sr: int = 16000, channels: int = 1, subtype: str = "PCM_16", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = 0.2 * np.sin(2 * np.pi * 180 * np.arange(n) / sr) + 0.02 * rng.standard_normal(n)
    buf = io.BytesIO()
    sf.write(buf, np.repeat(x[:, None], channels, axis=1).astype(np.float32), sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def start_fuzz_server(tmp: Path, extra_args: Sequence[str] = (), *, data_dir: bool = True, **kw: Any) -> FuzzServer:
    key = secrets.token_urlsafe(24)
    data = tmp / "data"
    (data / "calls").mkdir(parents=True, exist_ok=True)
    (data / DATA_FILE).write_bytes(wav_bytes(0.5))
    args = [*SERVER_ARGS, "--api-key", key, *(["--data-dir", str(data)] if data_dir else []), *extra_args]
    kw.setdefault("log_path", tmp / "server.log")
    srv = EmbeddedServer("tiny", extra_args=args, ready_timeout_s=FIRST_START_TIMEOUT_S, **kw)
    srv.start()
    return FuzzServer(srv, key, data)


def error_shape_problem(status: int, body: bytes, content_type: str) -> str:
    """Why ``body`` is not the documented refusal ``{"error": {"code", "message"}}`` for ``status``; "" if it is."""
    if not content_type.startswith("application/json"):
        return f"content-type {content_type!r}, not application/json"
    try:
        doc = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    if not (isinstance(doc, dict) and set(doc) == {"error"} and isinstance(doc["error"], dict)
            and set(doc["error"]) == {"code", "message"}
            and all(isinstance(v, str) for v in doc["error"].values())):
        return 'the body is not {"error": {"code": str, "message": str}}'
    code = doc["error"]["code"]
    if code not in ERRORS:
        return f"code {code!r} is not in app.ERRORS"
    if ERRORS[code][0] != status:
        return f"code {code!r} belongs with HTTP {ERRORS[code][0]}, sent with {status}"
    return ""


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def raw_request(url: str, request: bytes, timeout_s: float = 20.0, then_eof: bool = False) -> RawResponse:
    """Send ``request`` as it is (any bytes: no client library normalises it) and read one response;
    ``then_eof`` shuts the sending side down after it (the server sees that nothing more comes).

    Raises ``ConnectionError`` when the server closes the connection without a response.
    """
    import http.client
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything (431, 413)
        if then_eof:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            body = resp.read()
        except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError) as exc:
            raise ConnectionError(f"no HTTP response ({type(exc).__name__}: {exc})") from exc
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)


def show_bytes(data: bytes, limit: int = 300) -> str:
    """``data`` as a Python literal to paste into a reproduction, shortened when long."""
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r} + ... ({len(data)} bytes in all)"


def reproduction(url: str, request: bytes) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (f"python - <<'X'\nimport socket; s = socket.create_connection(({parts.hostname!r}, {parts.port}))\n"
            f"s.sendall({show_bytes(request)}); print(s.recv(65536))\nX")
