"""Request bodies per protocol, built once per clip (or text) before the load starts.

The driver picks a prepared request per arrival; nothing is encoded on the hot path, except
for a scenario with a ``repeat`` model: its catalog items are built when first drawn and the
recent ones kept (:mod:`toolkit.engine.catalog`). Header values given by the user (tokens) live
only here and in the HTTP client: they never reach the results.
"""

from __future__ import annotations

import base64
import io
import json
import random
import secrets
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.engine.catalog import Catalog

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
    """Prepared requests of one (leaf) scenario. With a ``catalog`` (the scenario's repeat model)
    requests are catalog items drawn by popularity; else one of ``requests``, all alike."""

    scenario: str
    kind: str
    requests: list[PreparedRequest] = field(default_factory=list)
    catalog: Catalog[PreparedRequest] | None = None

    def pick(self, rng: random.Random) -> PreparedRequest:
        if self.catalog is not None:
            return self.catalog.payload(self.catalog.draw(rng))
        return rng.choice(self.requests)

    def popularity(self) -> dict[str, Any]:
        """How often this set's payloads repeat: its repeat model, else uniform over its distinct
        requests (what the driver does without one). For the expected cache hit ratio."""
        spec = self.catalog.spec if self.catalog is not None else None
        if spec is None:
            return {"scenario": self.scenario, "repeat": False, "distribution": "uniform", "s": None,
                    "catalog": max(1, len(self.requests)), "cache_entries": None}
        return {"scenario": self.scenario, "repeat": True, "distribution": spec.distribution, "s": spec.s,
                "catalog": spec.catalog, "cache_entries": spec.cache_entries}


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


@dataclass(frozen=True)
class Audio:
    """The audio of one request: the encoded file (uploads) or mono 16 kHz PCM16 (streams)."""

    data: bytes
    format: str
    filename: str
    duration_s: float


def build_request(protocol: Any, headers: Mapping[str, str], audio: Audio | None,
                  text: tuple[str, str] | None) -> PreparedRequest:
    """One prepared request of ``protocol`` carrying ``audio`` and/or ``text`` (what it uses of them).
    ``headers``: the protocol's headers merged with the user's."""
    kind = protocol.kind

    def made(body: bytes | None, content_type: str | None, audio_s: float | None, **kw: Any) -> PreparedRequest:
        h = dict(headers)
        if content_type and not any(k.lower() == "content-type" for k in h):
            h["Content-Type"] = content_type
        return PreparedRequest(method=protocol.method, path=protocol.path, headers=h, body=body, audio_s=audio_s,
                               name=protocol.path, expect_status=protocol.expect_status, **kw)

    def mime(a: Audio, default: str = "application/octet-stream") -> str:
        return _MIME.get(a.format, default)

    if kind == "stream":
        assert audio is not None
        chunk = max(2, int(16000 * protocol.chunk_ms / 1000) * 2)
        return made(None, None, len(audio.data) / 32000.0, pcm=audio.data, chunk_bytes=chunk,
                    realtime=protocol.realtime)
    if kind == "tts":
        t, emotion = text if text is not None else ("", "neutral")
        return made(json.dumps({"text": t, "emotion": emotion}).encode(), "application/json", None,
                    output_audio=True)
    if kind in ("recognize", "emotion"):
        assert audio is not None
        extra = {"language": protocol.language} if kind == "recognize" else {"granularity": protocol.granularity}
        body, ct = _multipart(protocol.field, audio.filename, audio.data, mime(audio),
                              {**extra, **dict(protocol.form)})
        return made(body, ct, audio.duration_s)
    if kind == "funasr":
        assert audio is not None
        url = f"data:{mime(audio, 'audio/wav')};base64," + base64.b64encode(audio.data).decode()
        payload = {"data": [url, protocol.hotwords, protocol.language, protocol.itn]}
        return made(json.dumps(payload).encode(), "application/json", audio.duration_s)
    # custom http template
    if protocol.body == "none":
        return made(None, None, None)
    if protocol.body == "json":
        t, emotion = text if text is not None else ("", "neutral")
        values = {"{text}": t, "{emotion}": emotion}
        if audio is not None:
            b64 = base64.b64encode(audio.data).decode()
            values["{audio_b64}"] = b64
            values["{audio_data_url}"] = f"data:{mime(audio, 'audio/wav')};base64,{b64}"
        body = json.dumps(_fill(dict(protocol.json_template or {}), values)).encode()
        return made(body, "application/json", audio.duration_s if audio is not None else None)
    assert audio is not None
    if protocol.body == "raw":
        return made(audio.data, mime(audio), audio.duration_s)
    body, ct = _multipart(protocol.field, audio.filename, audio.data, mime(audio), dict(protocol.form))
    return made(body, ct, audio.duration_s)


def clip_audio(clip: Any, stream: bool) -> Audio:
    """A corpus clip as a request's audio (streams: its PCM16 at 16 kHz)."""
    data = clip.pcm16_16k() if stream else clip.read_bytes()
    return Audio(data, clip.format, f"{clip.path.stem}.{clip.format}", clip.duration_s)


def build_requests(protocol: Any, clips: Sequence[Any], texts: Sequence[tuple[str, str]],
                   extra_headers: Mapping[str, str], scenario: str) -> RequestSet:
    """Prepared requests for every clip (or text) of a leaf scenario."""
    headers = {**dict(protocol.headers), **dict(extra_headers)}
    out = RequestSet(scenario=scenario, kind=protocol.kind)
    stream = protocol.kind == "stream"
    if protocol.kind == "tts":
        pairs: list[tuple[Any, tuple[str, str] | None]] = [(None, t) for t in texts]
    elif protocol.kind == "http" and protocol.body == "none":
        pairs = [(None, None)] * max(1, len(texts) if protocol.uses_text else 1)
    elif protocol.kind == "http" and protocol.body == "json":
        if protocol.uses_audio:
            pairs = [(c, texts[i % len(texts)] if texts else None) for i, c in enumerate(clips)]
        else:
            pairs = [(None, t) for t in texts] or [(None, None)]
    else:
        pairs = [(c, None) for c in clips]
    for c, t in pairs:
        out.requests.append(build_request(protocol, headers, clip_audio(c, stream) if c is not None else None, t))
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
        if leaf.repeat is not None:
            rs = RequestSet(scenario=leaf.name, kind=leaf.protocol.kind,
                            catalog=repeat_catalog(leaf, clips, dict(headers)))
        else:
            texts = build_texts(leaf.text, leaf.seed, 64) if leaf.protocol.uses_text and leaf.text else []
            rs = build_requests(leaf.protocol, clips, texts, dict(headers), leaf.name)
            if not rs.requests:
                raise UsageError(f"scenario {leaf.name!r}: nothing to send (no audio clips or texts)")
        sets.append(rs)
        weights.append(float(weight))
    return sets, weights


def repeat_catalog(leaf: Any, clips: Sequence[Any], headers: Mapping[str, str]) -> Catalog[PreparedRequest]:
    """The catalog of a leaf scenario's repeat model: item ``i`` carries the text spelling ``i``
    (TTS, templates with ``{text}``) and variant ``i div K`` of clip ``i mod K`` of the corpus."""
    from toolkit.corpus import catalog_min_chars, catalog_text, variant_bytes, variant_pcm
    from toolkit.errors import ConfigError

    protocol, spec = leaf.protocol, leaf.repeat
    uses_text = protocol.uses_text and leaf.text is not None
    if uses_text and leaf.text.max_chars < catalog_min_chars(spec.catalog):
        raise ConfigError(f"scenario {leaf.name!r} ({leaf.source}): text.max_chars {leaf.text.max_chars} is too "
                          f"short for {spec.catalog} distinct texts (repeat.catalog); give at least "
                          f"{catalog_min_chars(spec.catalog)}")
    if protocol.uses_audio and not clips:
        raise UsageError(f"scenario {leaf.name!r}: nothing to send (no audio clips)")
    merged = {**dict(protocol.headers), **dict(headers)}
    stream = protocol.kind == "stream"
    pcm: dict[int, bytes] = {}  # streams: a base clip's PCM, decoded once

    def build(item: int) -> PreparedRequest:
        audio = None
        if protocol.uses_audio:
            k, variant = item % len(clips), item // len(clips)
            clip = clips[k]
            if stream:
                if k not in pcm:
                    pcm[k] = clip.pcm16_16k()
                data = variant_pcm(pcm[k], variant)
            else:
                data = variant_bytes(clip, variant)
            name = clip.path.stem if variant == 0 else f"{clip.path.stem}_{variant}"
            audio = Audio(data, clip.format, f"{name}.{clip.format}", clip.duration_s)
        text = catalog_text(leaf.text, leaf.seed, item, spec.catalog) if uses_text else None
        return build_request(protocol, merged, audio, text)

    def size(req: PreparedRequest) -> int:
        return len(req.body or b"") + len(req.pcm or b"")

    return Catalog(spec, build, size)
