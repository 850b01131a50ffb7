"""Request bodies per protocol, built once per clip (or text) before the load starts.

The driver picks a prepared request per arrival; nothing is encoded on the hot path.
Header values given by the user (tokens) live only here and in the HTTP client: they
never reach the results.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_MIME = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}


@dataclass(frozen=True)
class PreparedRequest:
    """One ready-to-send HTTP request (or streaming session when ``pcm`` is set)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None
    audio_s: float | None  # seconds of input audio (for RTF); None for TTS (taken from the response)
    name: str  # Locust's request name (the route)
    expect_status: int = 200
    pcm: bytes | None = None  # streaming: mono 16 kHz PCM16
    chunk_bytes: int = 0
    realtime: bool = True
    output_audio: bool = False  # TTS: RTF from the returned WAV's duration


@dataclass
class RequestSet:
    """Prepared requests of one (leaf) scenario."""

    scenario: str
    kind: str
    requests: list[PreparedRequest] = field(default_factory=list)


def _multipart(field_name: str, filename: str, content: bytes, mime: str,
               form: Mapping[str, str]) -> tuple[bytes, str]:
    boundary = "asrtk" + secrets.token_hex(12)
    parts: list[bytes] = []
    for k, v in form.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        )
    parts.append(
        (f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
         f"Content-Type: {mime}\r\n\r\n").encode()
    )
    parts.append(content)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _fill(template: Any, values: Mapping[str, str]) -> Any:
    if isinstance(template, str):
        if template in values:  # a whole-string placeholder keeps its value as is
            return values[template]
        out = template
        for k, v in values.items():
            if k in out:
                out = out.replace(k, v)
        return out
    if isinstance(template, Mapping):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return [_fill(v, values) for v in template]
    return template


def wav_duration_s(data: bytes) -> float | None:
    """Duration of a WAV body (TTS output); None when it is not a readable WAV."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate = w.getframerate()
            return w.getnframes() / rate if rate else None
    except (wave.Error, EOFError, ValueError):
        return None


def build_requests(protocol: Any, clips: Sequence[Any], texts: Sequence[tuple[str, str]],
                   extra_headers: Mapping[str, str], scenario: str) -> RequestSet:
    """Prepared requests for every clip (or text) of a leaf scenario."""
    kind = protocol.kind
    headers_base = {**dict(protocol.headers), **dict(extra_headers)}
    name = protocol.path
    out = RequestSet(scenario=scenario, kind=kind)

    def add(body: bytes | None, content_type: str | None, audio_s: float | None, **kw: Any) -> None:
        h = dict(headers_base)
        if content_type and not any(k.lower() == "content-type" for k in h):
            h["Content-Type"] = content_type
        out.requests.append(PreparedRequest(
            method=protocol.method, path=protocol.path, headers=h, body=body, audio_s=audio_s,
            name=name, expect_status=protocol.expect_status, **kw))

    if kind == "stream":
        for c in clips:
            pcm = c.pcm16_16k()
            chunk = max(2, int(16000 * protocol.chunk_ms / 1000) * 2)
            add(None, None, len(pcm) / 32000.0, pcm=pcm, chunk_bytes=chunk, realtime=protocol.realtime)
        return out
    if kind == "tts":
        for text, emotion in texts:
            add(json.dumps({"text": text, "emotion": emotion}).encode(), "application/json", None,
                output_audio=True)
        return out
    if kind in ("recognize", "emotion"):
        extra = {"language": protocol.language} if kind == "recognize" else {"granularity": protocol.granularity}
        form = {**extra, **dict(protocol.form)}
        for c in clips:
            body, ct = _multipart(protocol.field, f"{c.path.stem}.{c.format}", c.read_bytes(),
                                  _MIME.get(c.format, "application/octet-stream"), form)
            add(body, ct, c.duration_s)
        return out
    if kind == "funasr":
        for c in clips:
            url = f"data:{_MIME.get(c.format, 'audio/wav')};base64," + base64.b64encode(c.read_bytes()).decode()
            payload = {"data": [url, protocol.hotwords, protocol.language, protocol.itn]}
            add(json.dumps(payload).encode(), "application/json", c.duration_s)
        return out
    # custom http template
    if protocol.body == "none":
        n = max(1, len(texts) if protocol.uses_text else 1)
        for i in range(n):
            add(None, None, None)
        return out
    if protocol.body == "json":
        items: list[tuple[Any, tuple[str, str]]] = []
        if protocol.uses_audio:
            for i, c in enumerate(clips):
                items.append((c, texts[i % len(texts)] if texts else ("", "neutral")))
        else:
            items = [(None, t) for t in texts] or [(None, ("", "neutral"))]
        for c, (text, emotion) in items:
            values = {"{text}": text, "{emotion}": emotion}
            if c is not None:
                b64 = base64.b64encode(c.read_bytes()).decode()
                values["{audio_b64}"] = b64
                values["{audio_data_url}"] = f"data:{_MIME.get(c.format, 'audio/wav')};base64,{b64}"
            body = json.dumps(_fill(dict(protocol.json_template or {}), values)).encode()
            add(body, "application/json", c.duration_s if c is not None else None)
        return out
    if protocol.body == "raw":
        for c in clips:
            add(c.read_bytes(), _MIME.get(c.format, "application/octet-stream"), c.duration_s)
        return out
    for c in clips:  # multipart
        body, ct = _multipart(protocol.field, f"{c.path.stem}.{c.format}", c.read_bytes(),
                              _MIME.get(c.format, "application/octet-stream"), dict(protocol.form))
        add(body, ct, c.duration_s)
    return out


def prepare_request_sets(scenario: Any, headers: Mapping[str, str]) -> tuple[list[RequestSet], list[float]]:
    """Prepared requests per leaf scenario (one set for a plain scenario, one per mix entry)
    and the mix weights. Builds (or reuses from the cache) the scenario's audio corpus and texts."""
    from toolkit.corpus import build_corpus, build_texts
    from toolkit.errors import UsageError

    sets, weights = [], []
    entries = [(e.weight, e.scenario) for e in scenario.mix] if scenario.mix else [(1.0, scenario)]
    for weight, leaf in entries:
        clips = build_corpus(leaf.audio, leaf.seed) if leaf.protocol.uses_audio else []
        texts = build_texts(leaf.text, leaf.seed, 64) if leaf.protocol.uses_text and leaf.text else []
        rs = build_requests(leaf.protocol, clips, texts, dict(headers), leaf.name)
        if not rs.requests:
            raise UsageError(f"scenario {leaf.name!r}: nothing to send (no audio clips or texts)")
        sets.append(rs)
        weights.append(float(weight))
    return sets, weights
