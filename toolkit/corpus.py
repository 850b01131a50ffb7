"""Request audio and TTS texts for a scenario: a generated, cached, deterministic corpus or real files.

Generated clips sound like speech to a voice-activity detector: voiced phrases made of
syllables (a glottal source at a moving pitch, shaped by vowel formants, with syllabic
amplitude modulation and consonant noise bursts) separated by pauses. When ``espeak-ng``
is installed (and ``AudioSpec.voice`` allows it) phrases are real synthetic speech from
espeak-ng instead, assembled the same way. Either way the bytes depend only on the spec,
the seed and the generator version (plus the espeak-ng version), and are cached under
``cache_dir()/corpus/<hash>/``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.errors import ConfigError
from toolkit.scenario import AudioSpec, TextSpec

GENERATOR_VERSION = 1
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
_SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}
_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Clip:
    """One audio file the load generator sends. ``nbytes`` is the encoded file's size."""

    path: Path
    duration_s: float
    sample_rate: int
    channels: int
    format: str
    nbytes: int

    def read_bytes(self) -> bytes:
        """The encoded file, as uploaded."""
        return self.path.read_bytes()

    def pcm16_16k(self) -> bytes:
        """Mono 16 kHz little-endian PCM16, what a streaming client sends (not cached: keep the result)."""
        import soundfile as sf

        info = sf.info(str(self.path))
        if info.samplerate == 16000 and info.channels == 1:
            data16, _ = sf.read(str(self.path), dtype="int16")
            return data16.astype("<i2").tobytes()
        data, sr = sf.read(str(self.path), dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
        if sr != 16000:
            mono = _resample(mono, sr, 16000)
        return np.clip(np.round(mono * 32768.0), -32768, 32767).astype("<i2").tobytes()


# ----------------------------------------------------------------------------- public entry points


def build_corpus(audio: AudioSpec, seed: int, cache_dir: Path | None = None,
                 progress: Progress | None = None) -> list[Clip]:
    """The clips for ``audio``: real files from ``audio.dir``, or the generated corpus for ``seed``."""
    if audio.kind == "dir":
        return _scan_dir(Path(audio.dir) if audio.dir is not None else Path("."))
    engine = _engine(audio)
    key = corpus_key(audio, seed, engine)
    if cache_dir is None:
        from toolkit.paths import cache_dir as default_cache_dir

        cache_dir = default_cache_dir()
    root = Path(cache_dir) / "corpus" / key
    cached = _read_manifest(root)
    if cached is not None:
        if progress:
            progress(len(cached), len(cached))
        return cached
    if root.exists():  # damaged or half-deleted: rebuild from scratch
        shutil.rmtree(root, ignore_errors=True)
    return _generate(audio, seed, engine, root, progress)


def corpus_key(audio: AudioSpec, seed: int, engine: str) -> str:
    """Content hash of everything that decides the corpus bytes."""
    spec = {k: v for k, v in asdict(audio).items() if k not in ("dir", "kind")}
    blob = json.dumps({"spec": spec, "seed": seed, "engine": engine, "v": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def clip_durations(audio: AudioSpec, seed: int) -> list[float]:
    """Durations (s) of the generated clips: the spec's distribution truncated to [min_s, max_s]."""
    rng = np.random.default_rng([seed, 1])
    n = audio.corpus_size
    if audio.distribution == "fixed":
        d = np.full(n, audio.median_s)
    elif audio.distribution == "uniform":
        d = rng.uniform(audio.min_s, audio.max_s, n)
    else:
        d = np.empty(0)
        for _ in range(50):  # rejection sampling keeps the shape inside the bounds; clip what is left
            draw = audio.median_s * np.exp(audio.sigma * rng.standard_normal(4 * n))
            d = np.concatenate([d, draw[(draw >= audio.min_s) & (draw <= audio.max_s)]])
            if d.size >= n:
                break
        if d.size < n:
            d = np.concatenate([d, np.full(n - d.size, audio.median_s)])
        d = d[:n]
    return [round(float(x), 3) for x in np.clip(d, audio.min_s, audio.max_s)]


_WORDS = (
    "the a call account order number please thank you hello yes no today tomorrow meeting project team "
    "report price delivery service customer support payment card balance transfer update check status time "
    "morning afternoon evening weather city train ticket booking change cancel confirm address email phone "
    "message system network server latency model speech voice audio quality second minute hour week month "
    "plan budget review schedule deadline question answer problem solution issue ticket release version "
    "deploy cluster node worker queue batch request response good great fine really maybe sure right now"
).split()


def build_texts(text: TextSpec, seed: int, n: int) -> list[tuple[str, str]]:
    """``n`` deterministic (text, emotion) pairs, lengths uniform in [min_chars, max_chars] characters."""
    rng = np.random.default_rng([seed, 2])
    out: list[tuple[str, str]] = []
    for _ in range(n):
        target = int(rng.integers(text.min_chars, text.max_chars + 1))
        s = _WORDS[int(rng.integers(len(_WORDS)))]
        while True:  # whole words up to the target length, ending with a full stop
            w = _WORDS[int(rng.integers(len(_WORDS)))]
            if len(s) + 1 + len(w) + 1 > target:
                break
            s = f"{s} {w}"
        s = (s + ".")[: text.max_chars]
        if len(s) < text.min_chars:
            s = (s[:-1] + " " + "o" * text.min_chars)[: text.min_chars - 1] + "."
        emotion = text.emotions[int(rng.integers(len(text.emotions)))]
        out.append((s[0].upper() + s[1:], emotion))
    return out


# ----------------------------------------------------------------------------- catalog items (repeat models)
# A scenario with a ``repeat`` block names items of a catalog by popularity. Item ``i`` is built
# from ``i`` alone (and the seed), on demand, the same in every load-generator process: a TTS text
# that spells ``i`` in its first words, or a copy of clip ``i mod K`` of the corpus (K clips) that
# carries ``i div K`` in its first samples, so that distinct items are distinct bytes.

_CODE_WORDS = tuple(dict.fromkeys(_WORDS))  # distinct words: the digits that spell an item number
SIGNATURE_SAMPLES = 32  # 2 ms at 16 kHz; +-3 of 32768 (about -80 dBFS), inside the generated lead-in silence
_SIGNATURE_LEVEL = 3


def catalog_words(catalog: int) -> int:
    """How many words spell every item number of a catalog of ``catalog`` items."""
    n, cap = 1, len(_CODE_WORDS)
    while cap < catalog:
        n, cap = n + 1, cap * len(_CODE_WORDS)
    return n


def catalog_min_chars(catalog: int) -> int:
    """The shortest ``text.max_chars`` that keeps ``catalog`` items distinct texts (worst case)."""
    n = catalog_words(catalog)
    return n * max(len(w) for w in _CODE_WORDS) + n  # words, spaces and the full stop


def catalog_text(text: TextSpec, seed: int, item: int, catalog: int) -> tuple[str, str]:
    """(text, emotion) of TTS catalog item ``item``: words spelling ``item`` (distinct items, distinct
    texts), then seeded words up to a length uniform in [min_chars, max_chars], and an emotion.
    Needs ``text.max_chars >= catalog_min_chars(catalog)``."""
    rng = np.random.default_rng([seed, 8, item])
    digits, k = [], item
    for _ in range(catalog_words(catalog)):
        k, d = divmod(k, len(_CODE_WORDS))
        digits.append(_CODE_WORDS[d])
    s = " ".join(reversed(digits))
    target = int(rng.integers(text.min_chars, text.max_chars + 1))
    while True:
        w = _WORDS[int(rng.integers(len(_WORDS)))]
        if len(s) + 1 + len(w) + 1 > target:
            break
        s = f"{s} {w}"
    s += "."
    if len(s) < text.min_chars:  # the padding keeps the words that spell the item
        s = (s[:-1] + " " + "o" * text.min_chars)[: text.min_chars - 1] + "."
    emotion = text.emotions[int(rng.integers(len(text.emotions)))]
    return s[0].upper() + s[1:], emotion


def _signature(variant: int, channels: int) -> np.ndarray:
    """The first samples of a variant: +-3 per bit of ``variant`` (distinct variants, distinct samples)."""
    bits = np.array([(variant >> k) & 1 for k in range(SIGNATURE_SAMPLES)], dtype=np.int16)
    col = (bits * 2 - 1) * np.int16(_SIGNATURE_LEVEL)
    return np.repeat(col[:, None], channels, axis=1)


def _wav_pcm16_data(data: bytes) -> tuple[int, int, int] | None:
    """(offset, size, channels) of the sample data of a PCM16 WAV file; None for anything else."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, channels = 12, 0
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            tag = int.from_bytes(data[body:body + 2], "little")
            channels = int.from_bytes(data[body + 2:body + 4], "little")
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            if tag != 1 or bits != 16 or channels < 1:
                return None
        elif cid == b"data":
            return (body, min(size, len(data) - body), channels) if channels else None
        pos = body + size + (size & 1)
    return None


def variant_pcm(pcm: bytes, variant: int) -> bytes:
    """Mono PCM16 (a streaming session's audio) of variant ``variant`` (0: unchanged)."""
    if variant == 0:
        return pcm
    n = min(SIGNATURE_SAMPLES, len(pcm) // 2)
    head = _signature(variant, 1)[:n, 0].astype("<i2").tobytes()
    return head + pcm[len(head):]


@functools.lru_cache(maxsize=2)
def _decoded(path: Path) -> tuple[np.ndarray, int, str, str]:
    import soundfile as sf

    info = sf.info(str(path))
    data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    return data, rate, info.format, info.subtype


def variant_bytes(clip: Clip, variant: int) -> bytes:
    """The encoded file of variant ``variant`` of ``clip`` (0: the file as it is): the same audio with
    ``variant`` written into its first samples. PCM16 WAV is patched in place; other formats are
    decoded and encoded again in their own format (the load generator's CPU shows the cost)."""
    data = clip.read_bytes()
    if variant == 0:
        return data
    wav = _wav_pcm16_data(data)
    if wav is not None:
        off, size, channels = wav
        frames = min(SIGNATURE_SAMPLES, size // (2 * channels))
        head = _signature(variant, channels)[:frames].astype("<i2").tobytes()
        return data[:off] + head + data[off + len(head):]
    import soundfile as sf

    pcm, rate, fmt, subtype = _decoded(clip.path)
    pcm = pcm.copy()
    frames = min(SIGNATURE_SAMPLES, pcm.shape[0])
    pcm[:frames] = _signature(variant, pcm.shape[1])[:frames]
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


# ----------------------------------------------------------------------------- real files


def _scan_dir(d: Path) -> list[Clip]:
    import soundfile as sf

    if not d.is_dir():
        raise ConfigError(f"audio directory {str(d)!r} not found; give --audio-dir a directory of audio files")
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ConfigError(f"audio directory {str(d)!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    clips = []
    for p in files:
        try:
            info = sf.info(str(p))
        except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError for bad files
            raise ConfigError(f"audio file {str(p)!r} cannot be read ({exc}); remove it or convert it "
                              f"to wav/flac/ogg/mp3") from exc
        if info.frames <= 0 or info.samplerate <= 0:
            raise ConfigError(f"audio file {str(p)!r} is empty; remove it from the audio directory")
        fmt = p.suffix.lower().lstrip(".").replace("oga", "ogg").replace("opus", "ogg")
        clips.append(Clip(path=p, duration_s=info.frames / info.samplerate, sample_rate=info.samplerate,
                          channels=info.channels, format=fmt, nbytes=p.stat().st_size))
    return clips


# ----------------------------------------------------------------------------- cache


def _read_manifest(root: Path) -> list[Clip] | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        clips = [Clip(path=root / c["file"], duration_s=c["duration_s"], sample_rate=c["sample_rate"],
                      channels=c["channels"], format=c["format"], nbytes=c["nbytes"]) for c in manifest["clips"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(not c.path.is_file() or c.path.stat().st_size != c.nbytes for c in clips):
        return None
    return clips


def _generate(audio: AudioSpec, seed: int, engine: str, root: Path, progress: Progress | None) -> list[Clip]:
    import soundfile as sf

    durations = clip_durations(audio, seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        bank = _espeak_bank(seed, audio.sample_rate) if engine.startswith("espeak") else None
        entries = []
        for i, dur in enumerate(durations):
            rng = np.random.default_rng([seed, 3, i])
            if bank is not None:
                wave = _assemble_phrases(bank, dur, audio.silence_fraction, audio.sample_rate, rng)
            else:
                wave = synth_speech(dur, audio.silence_fraction, audio.sample_rate, rng)
            if audio.channels == 2:
                wave = np.stack([wave, np.roll(wave, 7) * 0.9], axis=1)
            name = f"clip_{i:04d}.{audio.format}"
            sf.write(str(tmp / name), wave, audio.sample_rate, format=_FORMATS[audio.format],
                     subtype=_SUBTYPES[audio.format])
            entries.append({"file": name, "duration_s": len(wave) / audio.sample_rate,
                            "sample_rate": audio.sample_rate, "channels": audio.channels,
                            "format": audio.format, "nbytes": (tmp / name).stat().st_size})
            if progress:
                progress(i + 1, len(durations))
        (tmp / "manifest.json").write_text(json.dumps(
            {"engine": engine, "seed": seed, "spec": {k: v for k, v in asdict(audio).items() if k != "dir"},
             "clips": entries}, indent=1))
        try:
            os.replace(tmp, root)
        except OSError:  # another process built it first: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    clips = _read_manifest(root)
    if clips is None:
        raise ConfigError(f"generated corpus in {str(root)!r} is unreadable; delete that directory and retry")
    return clips


# ----------------------------------------------------------------------------- synthetic speech

# Formants (F1, F2, F3 in Hz) of a few vowels of an adult voice.
_VOWELS = np.array([
    (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
    (570, 840, 2410), (660, 1720, 2410), (490, 1350, 1690), (640, 1190, 2390),
], dtype=np.float64)
_BANDWIDTHS = np.array((80.0, 100.0, 140.0))
_TABLE_LEN = 1024
_F0_NOMINAL = 140.0


def _wavetables(sr: int) -> np.ndarray:
    """One pitch period per vowel: harmonics with a -12 dB/octave glottal tilt shaped by the formants."""
    n_harm = max(4, int(0.42 * sr / (_F0_NOMINAL * 1.7)))
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    freqs = k * _F0_NOMINAL
    tilt = 1.0 / k**1.0
    # Resonance gain of each formant at each harmonic frequency.
    gain = np.zeros((len(_VOWELS), n_harm))
    for j in range(3):
        f = _VOWELS[:, j : j + 1]
        gain += (1.0 / (j + 1)) / np.sqrt(1.0 + ((freqs[None, :] - f) / _BANDWIDTHS[j]) ** 2)
    amps = gain * tilt[None, :]
    phase = np.arange(_TABLE_LEN) / _TABLE_LEN
    tables = amps @ np.sin(2 * np.pi * k[:, None] * phase[None, :])
    tables /= np.abs(tables).max(axis=1, keepdims=True)
    return tables.astype(np.float32)


def _runs(total: int, mean_on: float, mean_off: float, min_off: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean frame mask of alternating voiced/pause runs (exponential lengths, in frames)."""
    mask = np.zeros(total, dtype=bool)
    pos = int(rng.integers(5, 30))  # a short lead-in silence, as in any recording
    while pos < total:
        on = max(20, int(rng.exponential(mean_on)))
        mask[pos : pos + on] = True
        pos += on
        if mean_off > 0:
            pos += max(min_off, int(rng.exponential(mean_off)))
    return mask


def synth_speech(duration_s: float, silence_fraction: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like float32 mono waveform in [-1, 1]: phrases of syllables separated by pauses."""
    n = int(round(duration_s * sr))
    hop = 0.01  # parameters live on a 10 ms frame grid, then are interpolated to samples
    frames = int(np.ceil(duration_s / hop)) + 1
    mean_on = 150.0  # 1.5 s phrases
    mean_off = mean_on * silence_fraction / max(1.0 - silence_fraction, 1e-6) if silence_fraction > 0 else 0
    voiced = _runs(frames, mean_on, mean_off, 15, rng)

    # Syllables: 4-6 per second, each a vowel with a rise-fall envelope.
    syl_len = rng.integers(15, 26, size=frames // 15 + 2)
    syl_id = np.repeat(np.arange(syl_len.size), syl_len)[:frames]
    starts = np.concatenate(([0], np.cumsum(syl_len)[:-1]))
    pos_in = (np.arange(frames) - starts[syl_id]) / syl_len[syl_id]
    syl_env = np.sin(np.pi * pos_in) ** 0.6
    vowel = rng.integers(0, len(_VOWELS), size=syl_len.size)[syl_id]
    stress = rng.uniform(0.55, 1.0, size=syl_len.size)[syl_id]

    # Pitch: a speaker's base, phrase declination, slow wander.
    f0_base = rng.uniform(95.0, 220.0)
    wander = np.cumsum(rng.standard_normal(frames)) * 0.004
    wander -= np.convolve(wander, np.ones(101) / 101, mode="same")
    edges = np.flatnonzero(np.diff(np.concatenate(([0], voiced.astype(np.int8)))) == 1)
    phrase_pos = np.arange(frames) - edges[np.clip(np.searchsorted(edges, np.arange(frames), "right") - 1, 0, None)] \
        if edges.size else np.zeros(frames)
    f0 = f0_base * (1.0 + 0.12 * stress - 0.0008 * np.minimum(phrase_pos, 300) + wander)
    f0 = np.clip(f0, 70.0, 320.0)

    # Smooth voiced gate (10 ms attack/release) times syllable envelope.
    gate = np.convolve(voiced.astype(np.float64), np.ones(3) / 3, mode="same")
    env = gate * syl_env * stress

    t_frames = np.arange(frames) * hop
    t = np.arange(n) / sr
    f0_s = np.interp(t, t_frames, f0)
    env_s = np.interp(t, t_frames, env).astype(np.float32)
    phase = np.cumsum(f0_s / sr)
    idx = ((phase % 1.0) * _TABLE_LEN).astype(np.int32) % _TABLE_LEN
    vowel_s = vowel[np.minimum((t / hop).astype(np.int64), frames - 1)]
    tables = _wavetables(sr)
    y = tables[vowel_s, idx] * env_s

    # Consonant-like noise at syllable onsets (first ~40 ms), high-passed by a first difference.
    onset = ((pos_in * syl_len[syl_id]) < 4) & voiced
    cons = np.interp(t, t_frames, onset.astype(np.float64) * 0.25).astype(np.float32)
    noise = rng.standard_normal(n).astype(np.float32)
    y += np.diff(noise, prepend=0.0) * cons * 0.5
    y += noise * 10 ** (-58 / 20)  # room noise floor
    peak = float(np.abs(y).max()) or 1.0
    return (y * (0.7 / peak)).astype(np.float32)


# ----------------------------------------------------------------------------- espeak-ng


def _espeak_version() -> str | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().split("  ")[0] or None if out.returncode == 0 else None


def _engine(audio: AudioSpec) -> str:
    voice = audio.voice
    if voice == "synthetic" or os.environ.get("ASRTK_CORPUS_VOICE") == "synthetic":
        return "synthetic"
    version = _espeak_version()
    if version is None:
        if voice == "espeak":
            raise ConfigError("audio.voice is 'espeak' but espeak-ng is not installed; install espeak-ng "
                              "or set audio.voice to 'auto'")
        return "synthetic"
    return f"espeak:{version}"


def _espeak_bank(seed: int, sr: int, phrases: int = 24) -> list[np.ndarray]:
    """``phrases`` sentences spoken by espeak-ng at a few pitches and speeds, resampled to ``sr``."""
    import soundfile as sf

    rng = np.random.default_rng([seed, 4])
    exe = shutil.which("espeak-ng") or "espeak-ng"
    bank = []
    for i in range(phrases):
        words = [_WORDS[int(j)] for j in rng.integers(0, len(_WORDS), size=int(rng.integers(4, 14)))]
        args = [exe, "-v", "en-us", "-s", str(int(rng.integers(140, 190))), "-p", str(int(rng.integers(30, 75))),
                "--stdout", " ".join(words)]
        try:
            out = subprocess.run(args, capture_output=True, timeout=30, check=True).stdout
            data, rate = sf.read(io.BytesIO(out), dtype="float32")
        except Exception as exc:  # espeak or its WAV output failed: say so, the caller can pick synthetic
            raise ConfigError(f"espeak-ng failed on phrase {i} ({exc}); set ASRTK_CORPUS_VOICE=synthetic "
                              f"to use the built-in generator") from exc
        if data.ndim > 1:
            data = data.mean(axis=1)
        bank.append(_resample(data, rate, sr) if rate != sr else data)
    return bank


def _assemble_phrases(bank: list[np.ndarray], duration_s: float, silence_fraction: float, sr: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Phrases from the bank, trimmed of their own silence, separated by pauses sized for the silence share."""
    n = int(round(duration_s * sr))
    y = np.zeros(n, dtype=np.float32)
    pos = int(rng.integers(int(0.05 * sr), int(0.3 * sr)))
    trimmed = [_trim(p) for p in bank]
    while pos < n:
        p = trimmed[int(rng.integers(len(trimmed)))] * np.float32(rng.uniform(0.6, 1.0))
        end = min(n, pos + p.size)
        y[pos:end] = p[: end - pos]
        pos = end
        if silence_fraction > 0:
            mean_pause = p.size * silence_fraction / max(1.0 - silence_fraction, 1e-6)
            pos += max(int(0.15 * sr), int(rng.exponential(mean_pause)))
    y += rng.standard_normal(n).astype(np.float32) * np.float32(10 ** (-58 / 20))
    peak = float(np.abs(y).max()) or 1.0
    return (y * (0.7 / peak)).astype(np.float32)


def _trim(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > threshold)
    return x[loud[0] : loud[-1] + 1] if loud.size else x


def _resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Linear-interpolation resampling (good enough for load generation; not for listening tests)."""
    n_out = int(round(x.size * sr_to / sr_from))
    if n_out == 0:
        return np.zeros(0, dtype=np.float32)
    t_out = np.arange(n_out) * (sr_from / sr_to)
    return np.interp(t_out, np.arange(x.size), x).astype(np.float32)
