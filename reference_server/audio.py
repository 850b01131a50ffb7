"""Decode and validate uploaded audio; encode synthesised audio.

Everything returns or raises plain values: :class:`AudioError` carries the stable
machine-readable code the HTTP layer puts into ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
# declared rates outside this range are refused: a WAV declaring 1 Hz turned 2 KB into 1,100 s of work
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 32
MAX_PATH_CHARS = 1024


class AudioError(Exception):
    """A client-side problem with audio; ``code`` is stable, ``str()`` is one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE, chunk_s: int = 10) -> np.ndarray:
    """Fourier resampling in fixed 10 s chunks: band-limited, bounded memory, no extra dependency."""
    if sr_in == sr_out or x.size == 0:
        return x.astype(np.float32, copy=False)
    step_in, step_out = sr_in * chunk_s, sr_out * chunk_s
    out = []
    for start in range(0, x.shape[0], step_in):
        chunk = x[start:start + step_in].astype(np.float64)
        n_out = step_out if chunk.shape[0] == step_in else max(1, round(chunk.shape[0] * sr_out / sr_in))
        spec = np.fft.rfft(chunk)
        n_bins = n_out // 2 + 1
        spec = spec[:n_bins] if spec.shape[0] >= n_bins else np.pad(spec, (0, n_bins - spec.shape[0]))
        out.append((np.fft.irfft(spec, n=n_out) * (n_out / chunk.shape[0])).astype(np.float32))
    return np.concatenate(out)


def _finish(data: np.ndarray, sr: int, max_audio_s: float) -> np.ndarray:
    if data.ndim == 2:
        data = data.mean(axis=1)
    if data.size == 0:
        raise AudioError("empty_audio", "the audio has no samples; send at least a few milliseconds of sound")
    if not np.isfinite(data).all():
        raise AudioError("invalid_audio", "the audio contains NaN or Inf samples; send finite PCM or float samples")
    if data.shape[0] / sr > max_audio_s:
        raise AudioError(
            "audio_too_long", f"audio is {data.shape[0] / sr:.1f} s, over the server's limit --max-audio-s {max_audio_s:g}"
        )
    return resample(data.astype(np.float32, copy=False), sr)


def _riff_chunks(data: bytes | memoryview) -> Iterator[tuple[bytes, int, int]]:
    """``(chunk id, offset of its body, declared size)`` of each chunk of a RIFF/WAVE file, in
    order; nothing for other data. Sizes are as declared: the caller checks them against the data."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        yield bytes(data[pos:pos + 4]), pos + 8, size
        pos += 8 + size + (size & 1)


def _wav_truncation(data: bytes | memoryview) -> str:
    """libsndfile silently reads a cut-off WAV; compare the data chunk's declared size with what arrived."""
    for cid, body, size in _riff_chunks(data):
        if cid == b"data":
            have = len(data) - body
            if 0 < size < 0xFFFFFFFF and have < size:  # 0 / 0xFFFFFFFF: streamed WAV of unknown length
                return f"truncated WAV: the header declares {size} bytes of samples but {have} arrived"
            return ""
    return ""


# uncompressed WAV decoded with numpy alone (format tag, bits per sample) -> sample dtype; anything
# else (8/24-bit, A-law, ADPCM, ...) goes to libsndfile, which decodes these alike but at ~10x the cost
_WAV_NUMPY = {(1, 16): "<i2", (3, 32): "<f4"}
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_KSDATAFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # the SubFormat GUID after its 2-byte tag


def simple_wav(data: bytes | memoryview) -> tuple[int, int, str, int, int] | None:
    """``(sample_rate, channels, dtype, offset, frames)`` of a PCM16 or float32 WAV whose data chunk
    is sized and complete, else None. Pure header arithmetic: no sample is read."""
    fmt = None
    for cid, body, size in _riff_chunks(data):
        if cid == b"fmt ":
            if size < 16 or body + size > len(data):
                return None
            tag, channels, sr, _, block, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _WAVE_FORMAT_EXTENSIBLE:
                if size < 40 or data[body + 26:body + 40] != _KSDATAFORMAT_TAIL:
                    return None
                tag = int.from_bytes(data[body + 24:body + 26], "little")
            dtype = _WAV_NUMPY.get((tag, bits))
            if dtype is None or channels < 1 or block != channels * bits // 8:
                return None
            fmt = (sr, channels, dtype, block)
        elif cid == b"data":
            # size 0 / 0xFFFFFFFF: a streamed WAV of unknown length; a short chunk: truncated (both libsndfile's)
            if fmt is None or size in (0, 0xFFFFFFFF) or body + size > len(data):
                return None
            sr, channels, dtype, block = fmt
            return sr, channels, dtype, body, size // block
    return None


def cheap_to_decode(data: bytes | memoryview, max_bytes: int = 1 << 20) -> bool:
    """A 16 kHz PCM16/float32 WAV of at most ``max_bytes``: decoding is a copy (~0.1 ms per MiB),
    cheaper than handing it to a thread. Others need libsndfile or resampling."""
    info = simple_wav(data) if len(data) <= max_bytes else None
    return info is not None and info[0] == SAMPLE_RATE


def _check_header(sr: int, channels: int, frames: int, max_audio_s: float) -> None:
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError("invalid_audio", f"the audio declares a sample rate of {sr} Hz; accepted: "
                                          f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError("invalid_audio", f"the audio declares {channels} channels; accepted: 1-{MAX_CHANNELS}")
    if frames > 0 and frames / sr > max_audio_s:
        raise AudioError("audio_too_long", f"audio is {frames / sr:.1f} s, over the server's limit --max-audio-s {max_audio_s:g}")


def decode(data: bytes | memoryview, max_audio_s: float, on_header: Callable[[int, int, int], None] | None = None) -> np.ndarray:
    """Any container soundfile reads (wav, flac, ogg, mp3), any rate, mono or stereo -> 16 kHz mono float32.

    ``on_header(frames, channels, sample_rate)`` runs once the header is read and before the
    samples are: the admission check of what decoding will hold (it may raise to refuse).
    PCM16 and float32 WAV are read with numpy (the same samples libsndfile gives, tested).
    """
    import soundfile as sf

    if not data:
        raise AudioError("empty_audio", "the uploaded file is empty; send a wav, flac, ogg or mp3 file")
    simple = simple_wav(data)
    if simple is not None:
        sr, channels, dtype, offset, frames = simple
        _check_header(sr, channels, frames, max_audio_s)
        if on_header is not None:
            on_header(frames, channels, sr)
        n = min(frames, int(max_audio_s * sr) + 1)
        x = np.frombuffer(data, dtype=dtype, count=n * channels, offset=offset)
        x = x.astype(np.float32)  # a copy: the samples outlive the request body
        if dtype == "<i2":
            x *= np.float32(1 / 32768)  # in place: one float32 array at a time (the memory budget)
        return _finish(x if channels == 1 else x.reshape(n, channels), sr, max_audio_s)
    truncated = _wav_truncation(data)
    if truncated:
        raise AudioError("invalid_audio", f"{truncated}; upload the complete file")
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError("invalid_audio", f"cannot decode the audio ({_why(exc)}); send wav, flac, ogg or mp3") from exc
    with f:
        sr, channels = int(f.samplerate), int(f.channels)
        _check_header(sr, channels, int(f.frames), max_audio_s)
        if on_header is not None:
            on_header(int(f.frames), channels, sr)
        try:
            # never more than the duration limit allows, whatever the header said about the length
            samples = f.read(frames=int(max_audio_s * sr) + 1, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError("invalid_audio", f"cannot decode the audio ({_why(exc)}); send wav, flac, ogg or mp3") from exc
    return _finish(samples, sr, max_audio_s)


def _why(exc: BaseException) -> str:
    return re.sub(r"^Error opening <[^>]*>: ", "", (str(exc).splitlines() or [type(exc).__name__])[0])[:120]


def decode_pcm16(data: bytes, max_audio_s: float) -> np.ndarray:
    """Raw little-endian 16-bit 16 kHz mono PCM (the streaming protocol)."""
    if len(data) % 2:
        raise AudioError("invalid_audio", "PCM16 chunk has an odd number of bytes; send whole 16-bit samples")
    x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return _finish(x, SAMPLE_RATE, max_audio_s)


def decode_data_url(value: str) -> bytes:
    """``data:audio/wav;base64,...`` (or bare base64) -> bytes."""
    payload = value
    if value.startswith("data:"):
        head, sep, payload = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise AudioError("invalid_base64", "data URL must look like data:audio/wav;base64,<payload>")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AudioError("invalid_base64", f"audio is not valid base64 ({exc})") from exc


def resolve_data_path(value: str, data_dir: str | None) -> Path:
    """A client-named file, allowed only inside ``data_dir`` (symlinks resolved before the check).

    Never raises anything but :class:`AudioError`, and never quotes the value back (it may be
    a whole base64 upload sent without its ``data:`` prefix).
    """
    hint = "send the audio as data:audio/wav;base64,<payload> or name a file inside --data-dir"
    if data_dir is None:
        raise AudioError("path_not_allowed", f"file paths are refused: the server was started without --data-dir; {hint}")
    if "\x00" in value:
        raise AudioError("path_not_allowed", f"the path contains a NUL byte; {hint}")
    if len(value) > MAX_PATH_CHARS:
        raise AudioError("path_not_allowed", f"the path is {len(value)} characters, over {MAX_PATH_CHARS}; {hint}")
    root = Path(data_dir).resolve()
    candidate = Path(value)
    if ".." in candidate.parts:
        raise AudioError("path_not_allowed", "the path contains '..'; name a file inside --data-dir")
    try:
        full = (candidate if candidate.is_absolute() else root / candidate).resolve()
        inside = full.is_relative_to(root)
        is_file = inside and full.is_file()
    except (OSError, ValueError, RuntimeError):  # ENAMETOOLONG, ELOOP, EACCES, ...
        raise AudioError("file_not_found", f"no readable file by that name inside --data-dir; {hint}") from None
    if not inside:
        raise AudioError("path_not_allowed", "the path is outside --data-dir; name a file inside it")
    if not is_file:
        raise AudioError("file_not_found", f"no such file inside --data-dir; {hint}")
    return full


def split_segments(x: np.ndarray, max_segment_s: float, sr: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Cut into near-equal segments no longer than ``max_segment_s`` (no tiny tail segment)."""
    seg = int(max_segment_s * sr)
    if x.shape[0] <= seg:
        return [x]
    n = math.ceil(x.shape[0] / seg)
    bounds = np.linspace(0, x.shape[0], n + 1).astype(int)
    return [x[bounds[i]:bounds[i + 1]] for i in range(n)]


def encode_wav_pcm16(x: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.nan_to_num(x), -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def wav_seconds(wav: bytes) -> float:
    """Duration of a PCM16 mono WAV that :func:`encode_wav_pcm16` wrote (44-byte header)."""
    rate = int.from_bytes(wav[24:28], "little") or SAMPLE_RATE
    return max(len(wav) - 44, 0) / 2 / rate


def read_file(path: Path, limit_bytes: int) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > limit_bytes:
            raise AudioError("body_too_large", f"file is {size} bytes, over --max-body-mb")
        return path.read_bytes()
    except OSError:
        raise AudioError("file_not_found", "the file inside --data-dir cannot be read") from None
