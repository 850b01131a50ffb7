"""Audio corpus and TTS texts: deterministic, cached, speech-like, real files read as they are."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.corpus import build_corpus, build_texts, clip_durations, corpus_key, synth_speech
from toolkit.errors import ConfigError
from toolkit.scenario import AudioSpec, TextSpec

SMALL = AudioSpec(median_s=3.0, sigma=0.5, min_s=1.0, max_s=6.0, silence_fraction=0.25, corpus_size=4,
                  voice="synthetic")


def energy_vad(x: np.ndarray, sr: int, frame_s: float = 0.03, floor_db: float = 35.0) -> tuple[float, int]:
    """Share of active frames and count of pauses >= 150 ms, by a plain energy detector."""
    f = int(frame_s * sr)
    n = len(x) // f
    e = 10 * np.log10((x[: n * f].reshape(n, f) ** 2).mean(axis=1) + 1e-12)
    active = e > e.max() - floor_db
    edges = np.diff(np.concatenate(([1], active.astype(int), [1])))
    pauses = (np.flatnonzero(edges == 1) - np.flatnonzero(edges == -1)) * frame_s
    return float(active.mean()), int((pauses >= 0.15).sum())


def test_generated_corpus_is_deterministic_across_cache_dirs(tmp_path: Path) -> None:
    a = build_corpus(SMALL, seed=7, cache_dir=tmp_path / "a")
    b = build_corpus(SMALL, seed=7, cache_dir=tmp_path / "b")
    assert [c.read_bytes() for c in a] == [c.read_bytes() for c in b]
    other = build_corpus(SMALL, seed=8, cache_dir=tmp_path / "a")
    assert [c.read_bytes() for c in other] != [c.read_bytes() for c in a]


def test_corpus_is_cached_and_rebuilt_when_damaged(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    first = build_corpus(SMALL, seed=1, cache_dir=tmp_path, progress=lambda i, n: calls.append((i, n)))
    assert calls[-1] == (4, 4) and len(calls) == 4
    mtimes = [c.path.stat().st_mtime_ns for c in first]
    again = build_corpus(SMALL, seed=1, cache_dir=tmp_path)
    assert [c.path for c in again] == [c.path for c in first]
    assert [c.path.stat().st_mtime_ns for c in again] == mtimes  # nothing rewritten
    assert first[0].path.parent.name == corpus_key(SMALL, 1, "synthetic")
    first[1].path.write_bytes(b"truncated")
    rebuilt = build_corpus(SMALL, seed=1, cache_dir=tmp_path)
    assert rebuilt[1].nbytes == first[1].nbytes and sf.info(str(rebuilt[1].path)).frames > 0


def test_clip_durations_follow_the_spec(tmp_path: Path) -> None:
    clips = build_corpus(SMALL, seed=3, cache_dir=tmp_path)
    assert len(clips) == SMALL.corpus_size
    for c in clips:
        info = sf.info(str(c.path))
        assert SMALL.min_s <= c.duration_s <= SMALL.max_s
        assert info.frames / info.samplerate == pytest.approx(c.duration_s, abs=1e-3)
        assert (info.samplerate, info.channels, c.format) == (16000, 1, "wav")
        assert c.nbytes == c.path.stat().st_size
    lognormal = AudioSpec(median_s=100, sigma=0.6, min_s=30, max_s=600, corpus_size=2000)
    d = np.array(clip_durations(lognormal, seed=1))
    assert d.min() >= 30 and d.max() <= 600
    assert np.median(d) == pytest.approx(100, rel=0.1)
    uniform = clip_durations(AudioSpec(distribution="uniform", min_s=2, max_s=4, median_s=3, corpus_size=50), 1)
    assert min(uniform) >= 2 and max(uniform) <= 4 and len(set(uniform)) > 40
    assert clip_durations(AudioSpec(distribution="fixed", median_s=5, corpus_size=3), 1) == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_other_formats_rates_and_stereo(tmp_path: Path, fmt: str) -> None:
    spec = AudioSpec(median_s=2.0, sigma=0.0, min_s=1.0, max_s=3.0, corpus_size=1, format=fmt, sample_rate=44100,
                     channels=2, voice="synthetic")
    (clip,) = build_corpus(spec, seed=1, cache_dir=tmp_path)
    data, sr = sf.read(str(clip.path), always_2d=True)
    assert sr == 44100 and data.shape[1] == 2
    assert clip.path.suffix == f".{fmt}"
    pcm = clip.pcm16_16k()
    # MP3 encoders pad a few frames; the others are exact.
    assert len(pcm) / 2 == pytest.approx(clip.duration_s * 16000, rel=0.05)


def test_pcm16_16k_is_mono_16k_little_endian(tmp_path: Path) -> None:
    (clip,) = build_corpus(AudioSpec(median_s=1.5, sigma=0, min_s=1, max_s=2, corpus_size=1, voice="synthetic"),
                           seed=2, cache_dir=tmp_path)
    pcm = np.frombuffer(clip.pcm16_16k(), dtype="<i2")
    ref, _ = sf.read(str(clip.path), dtype="int16")
    assert np.array_equal(pcm, ref)


def test_synthetic_speech_has_voiced_segments_pauses_and_syllable_rhythm() -> None:
    sr = 16000
    x = synth_speech(30.0, 0.3, sr, np.random.default_rng(5))
    assert x.dtype == np.float32 and len(x) == 30 * sr and np.abs(x).max() <= 1.0
    active, pauses = energy_vad(x, sr)
    assert 0.55 <= active <= 0.85  # about 1 - silence_fraction
    assert pauses >= 5
    # Syllabic amplitude modulation: the envelope's spectrum peaks at 2-8 Hz, as in speech.
    env = np.abs(x).reshape(-1, 160).mean(axis=1)  # 100 Hz envelope
    spec = np.abs(np.fft.rfft(env - env.mean()))
    freqs = np.fft.rfftfreq(env.size, d=0.01)
    syllabic = spec[(freqs >= 3) & (freqs <= 7)].mean()
    faster = spec[(freqs >= 10) & (freqs <= 20)].mean()
    assert syllabic > 3.0 * faster  # white noise gated at random every 200 ms gives about 2.5
    # Voiced frames carry a pitch: autocorrelation peak between 70 and 320 Hz.
    seg = x[sr * 5: sr * 5 + 4096]
    if np.abs(seg).max() > 0.05:
        ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
        lag = np.argmax(ac[sr // 320: sr // 70]) + sr // 320
        assert 70 <= sr / lag <= 320


def test_silence_fraction_zero_is_all_voiced_and_silence_controls_pauses() -> None:
    sr = 16000
    dense, _ = energy_vad(synth_speech(20.0, 0.0, sr, np.random.default_rng(1)), sr)
    sparse, _ = energy_vad(synth_speech(20.0, 0.6, sr, np.random.default_rng(1)), sr)
    assert dense > sparse + 0.2


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_corpus_is_deterministic_and_speech_like(tmp_path: Path) -> None:
    spec = AudioSpec(median_s=4.0, sigma=0.3, min_s=2.0, max_s=8.0, silence_fraction=0.25, corpus_size=2,
                     voice="espeak")
    a = build_corpus(spec, seed=4, cache_dir=tmp_path / "a")
    b = build_corpus(spec, seed=4, cache_dir=tmp_path / "b")
    assert [c.read_bytes() for c in a] == [c.read_bytes() for c in b]
    assert "espeak" not in a[0].path.parent.name  # the key is a hash
    x, sr = sf.read(str(a[0].path))
    active, _ = energy_vad(x, sr)
    assert 0.4 <= active <= 0.95


def test_dir_corpus_reads_real_files(tmp_path: Path) -> None:
    d = tmp_path / "calls"
    (d / "sub").mkdir(parents=True)
    sf.write(str(d / "a.wav"), np.zeros(8000, dtype=np.float32), 8000)
    sf.write(str(d / "sub" / "b.flac"), np.zeros((44100 * 2, 2), dtype=np.float32), 44100)
    (d / "notes.txt").write_text("not audio")
    clips = build_corpus(AudioSpec(kind="dir", dir=d), seed=0)
    assert [c.path.name for c in clips] == ["a.wav", "b.flac"]
    assert [c.duration_s for c in clips] == [1.0, 2.0]
    assert [(c.sample_rate, c.channels, c.format) for c in clips] == [(8000, 1, "wav"), (44100, 2, "flac")]


def test_dir_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_corpus(AudioSpec(kind="dir", dir=tmp_path / "missing"), seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no audio files"):
        build_corpus(AudioSpec(kind="dir", dir=tmp_path / "empty"), seed=0)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"RIFF not really")
    with pytest.raises(ConfigError, match=r"audio file '.*x\.wav' cannot be read"):
        build_corpus(AudioSpec(kind="dir", dir=bad), seed=0)


def test_build_texts_lengths_emotions_and_determinism() -> None:
    spec = TextSpec(min_chars=20, max_chars=200, emotions=("neutral", "happy", "sad"))
    texts = build_texts(spec, seed=5, n=200)
    assert texts == build_texts(spec, seed=5, n=200)
    assert texts != build_texts(spec, seed=6, n=200)
    lengths = [len(t) for t, _ in texts]
    assert min(lengths) >= 20 and max(lengths) <= 200
    assert max(lengths) - min(lengths) > 100  # spread over the range, not one length
    assert {e for _, e in texts} == {"neutral", "happy", "sad"}
    assert all(t.endswith(".") and "  " not in t for t, _ in texts)
    tiny = build_texts(TextSpec(min_chars=3, max_chars=3), seed=1, n=20)
    assert all(len(t) == 3 for t, _ in tiny)
