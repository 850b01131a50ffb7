"""Decoding, validation and resampling of uploaded audio (pure functions, no server)."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reference_server import audio as au


def _encode(x: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _tone(seconds: float, sr: int, hz: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", None), ("OGG", "VORBIS"), ("MP3", None)])
def test_decode_stereo_44k_to_16k_mono(fmt: str, subtype: str | None) -> None:
    left = _tone(2.0, 44100)
    x = np.stack([left, left], axis=1)
    out = au.decode(_encode(x, 44100, fmt, subtype), max_audio_s=60)
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.shape[0] == pytest.approx(32000, abs=800)  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(out[:16000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 Hz bins: the tone survives resampling


def test_downmix_averages_channels() -> None:
    x = np.stack([np.full(1600, 0.5, np.float32), np.full(1600, -0.1, np.float32)], axis=1)
    out = au.decode(_encode(x, 16000, subtype="FLOAT"), max_audio_s=60)
    assert np.allclose(out, 0.2, atol=1e-6)


def test_resample_is_band_limited() -> None:
    # 10 kHz is above the new 8 kHz Nyquist: it must vanish, not alias down to 6 kHz.
    x = _tone(1.0, 44100, hz=10000) + _tone(1.0, 44100, hz=1000)
    y = au.resample(x, 44100, 16000)
    spectrum = np.abs(np.fft.rfft(y))
    assert spectrum[1000] > 100 * spectrum[6000:].max()


def test_resample_long_input_in_chunks_keeps_length() -> None:
    x = np.zeros(44100 * 25 + 123, dtype=np.float32)
    assert au.resample(x, 44100, 16000).shape[0] == round(x.shape[0] * 16000 / 44100)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_audio"),
        (b"definitely not audio" * 20, "invalid_audio"),
        (_encode(np.zeros(0, np.float32), 16000), "empty_audio"),
        (_encode(np.array([0.0, np.nan] * 100, np.float32), 16000, subtype="FLOAT"), "invalid_audio"),
        (_encode(np.array([0.0, np.inf] * 100, np.float32), 16000, subtype="FLOAT"), "invalid_audio"),
        (_encode(_tone(1.0, 16000), 16000)[:30], "invalid_audio"),
        (_encode(_tone(1.0, 16000), 16000)[:5000], "invalid_audio"),
        (_encode(_tone(3.0, 8000), 8000), "audio_too_long"),
    ],
    ids=["empty", "garbage", "zero_frames", "nan", "inf", "cut_header", "cut_samples", "too_long"],
)
def test_decode_rejects(data: bytes, code: str) -> None:
    with pytest.raises(au.AudioError) as err:
        au.decode(data, max_audio_s=2.0)
    assert err.value.code == code
    assert "\n" not in str(err.value) and "BytesIO" not in str(err.value)


def test_pcm16_stream_chunks() -> None:
    pcm = np.array([0, 16384, -32768], dtype="<i2").tobytes()
    assert np.allclose(au.decode_pcm16(pcm, 10.0), [0.0, 0.5, -1.0])
    with pytest.raises(au.AudioError, match="odd number") as err:
        au.decode_pcm16(pcm[:-1], 10.0)
    assert err.value.code == "invalid_audio"


def test_data_url() -> None:
    assert au.decode_data_url("data:audio/wav;base64," + base64.b64encode(b"abc").decode()) == b"abc"
    for bad in ("data:audio/wav;base64,@@@", "data:audio/wav,abc", "not base64!"):
        with pytest.raises(au.AudioError) as err:
            au.decode_data_url(bad)
        assert err.value.code == "invalid_base64"


def test_data_dir_paths(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.wav").write_bytes(b"x")
    (tmp_path / "outside.wav").write_bytes(b"x")
    os.symlink(tmp_path / "outside.wav", root / "link.wav")
    os.symlink(root / "sub" / "a.wav", root / "inner-link.wav")
    assert au.resolve_data_path("sub/a.wav", str(root)) == (root / "sub" / "a.wav").resolve()
    assert au.resolve_data_path(str(root / "sub" / "a.wav"), str(root)).name == "a.wav"
    assert au.resolve_data_path("inner-link.wav", str(root)).name == "a.wav"
    for bad in ("../outside.wav", "link.wav", str(tmp_path / "outside.wav"), "sub/../../outside.wav"):
        with pytest.raises(au.AudioError) as err:
            au.resolve_data_path(bad, str(root))
        assert err.value.code == "path_not_allowed", bad
    with pytest.raises(au.AudioError) as err:
        au.resolve_data_path("sub/a.wav", None)
    assert err.value.code == "path_not_allowed"
    with pytest.raises(au.AudioError) as err:
        au.resolve_data_path("missing.wav", str(root))
    assert err.value.code == "file_not_found"


def test_split_segments() -> None:
    x = np.arange(16000 * 70, dtype=np.float32)
    segs = au.split_segments(x, 30.0)
    assert len(segs) == 3
    assert all(s.shape[0] <= 16000 * 30 for s in segs)
    assert np.array_equal(np.concatenate(segs), x)
    assert len(au.split_segments(x[: 16000 * 30], 30.0)) == 1


def test_encode_wav_pcm16_roundtrip() -> None:
    x = np.array([0.0, 0.5, -0.5, 2.0, np.nan], dtype=np.float32)
    data = au.encode_wav_pcm16(x, 16000)
    info = sf.info(io.BytesIO(data))
    assert (info.subtype, info.samplerate, info.frames) == ("PCM_16", 16000, 5)
    y, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert np.allclose(y, [0.0, 0.5, -0.5, 1.0, 0.0], atol=1e-4)


def _libsndfile(data: bytes, max_audio_s: float = 60.0) -> np.ndarray:
    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return au._finish(x, sr, max_audio_s)


def _with_chunk(wav: bytes, cid: bytes, payload: bytes, before_data: bool) -> bytes:
    """The WAV with one more chunk (odd-sized payloads get their pad byte) before or after 'data'."""
    chunk = cid + len(payload).to_bytes(4, "little") + payload + (b"\0" if len(payload) % 2 else b"")
    at = wav.index(b"data") if before_data else len(wav)
    out = wav[:at] + chunk + wav[at:]
    return out[:4] + (len(out) - 8).to_bytes(4, "little") + out[8:]


@pytest.mark.parametrize(("subtype", "channels", "sr"), [
    ("PCM_16", 1, 16000), ("PCM_16", 2, 16000), ("PCM_16", 3, 16000), ("FLOAT", 1, 16000),
    ("FLOAT", 2, 16000), ("PCM_16", 1, 8000), ("PCM_16", 2, 44100), ("FLOAT", 1, 48000)])
def test_numpy_wav_path_gives_libsndfiles_samples(subtype: str, channels: int, sr: int) -> None:
    rng = np.random.default_rng(channels)
    x = np.clip(rng.standard_normal((int(0.7 * sr) + 3, channels)) * 0.3, -1, 1).astype(np.float32)
    x[:5] = [[-1.0] * channels, [1.0] * channels, [0.0] * channels, [-0.99997] * channels, [0.5] * channels]
    wav = _encode(x, sr, subtype=subtype)
    wavex = _encode(x, sr, fmt="WAVEX", subtype=subtype)  # WAVE_FORMAT_EXTENSIBLE header
    assert int.from_bytes(wavex[20:22], "little") == 0xFFFE
    variants = [wav, wavex, _with_chunk(wav, b"LIST", b"INFOabc", True), _with_chunk(wav, b"id3 ", b"tag!", False)]
    for data in variants:
        assert au.simple_wav(data) is not None
        assert np.array_equal(au.decode(data, 60.0), _libsndfile(data))
    assert au.cheap_to_decode(wav) == (sr == 16000)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "PCM_32", "DOUBLE", "ULAW", "ALAW", "IMA_ADPCM"])
def test_other_wav_encodings_still_go_to_libsndfile(subtype: str) -> None:
    wav = _encode(_tone(0.5, 16000), 16000, subtype=subtype)
    assert au.simple_wav(wav) is None and not au.cheap_to_decode(wav)
    assert np.array_equal(au.decode(wav, 60.0), _libsndfile(wav))


def test_numpy_wav_path_refuses_as_libsndfile_did() -> None:
    wav = _encode(_tone(3.0, 16000), 16000)
    with pytest.raises(au.AudioError) as err:
        au.decode(wav, max_audio_s=2.0)
    assert err.value.code == "audio_too_long"
    seen = []
    au.decode(wav, 60.0, on_header=lambda *h: seen.append(h))
    assert seen == [(48000, 1, 16000)]  # frames, channels, rate before the samples are read
    odd_rate = bytearray(wav)
    odd_rate[24:28] = (1).to_bytes(4, "little")  # a 1 Hz header: refused before any sample is read
    with pytest.raises(au.AudioError, match="sample rate of 1 Hz"):
        au.decode(bytes(odd_rate), 60.0)
    assert au.simple_wav(wav[:-2]) is None  # a truncated data chunk falls back to the truncation check
    with pytest.raises(au.AudioError, match="truncated WAV"):
        au.decode(wav[:-2], 60.0)
    assert not au.cheap_to_decode(wav, max_bytes=len(wav) - 1)
