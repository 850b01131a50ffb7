"""ONNX Runtime sessions and the runners that batch, run and decode the three models.

A runner holds no mutable state between calls: the server calls ``run`` from one
inference thread per model, and ORT sessions may be shared across threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from reference_server.models.presets import HOP, N_EMOTIONS, SAMPLE_RATE, SUBSAMPLE, TTS_FRAMES_PER_TOKEN, TTS_HOP
from reference_server.models.text import BLANK, UNK, pieces_to_text, tts_symbols
from toolkit.errors import ModelError, UsageError

if TYPE_CHECKING:
    import onnxruntime as ort

EMOTION_CLASSES: tuple[str, ...] = (
    "angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown",
)
assert len(EMOTION_CLASSES) == N_EMOTIONS
MAX_SEGMENT_S = 30.0
MAX_TTS_CHARS = 500
PAD_MULTIPLE_S = 0.5  # padded batch length is rounded up to this, to bound the variety of shapes ORT sees
TTS_PAD_MULTIPLE = 16  # characters
FRAME_S = SUBSAMPLE * HOP / SAMPLE_RATE  # 40 ms per encoder frame
SAMPLES_PER_CHAR = TTS_FRAMES_PER_TOKEN * TTS_HOP  # 1200 samples = 75 ms of speech per character


@dataclass(frozen=True)
class AsrOutput:
    text: str
    tokens: list[int]
    frames: int


@dataclass(frozen=True)
class EmotionOutput:
    label: str
    confidence: float
    scores: dict[str, float]
    frames: list[dict] = field(default_factory=list)  # {"start_s", "end_s", "label", "scores"}


def create_session(
    path: Path, providers: list[str], intra_op_threads: int | None = None, allow_spinning: bool = True
) -> "ort.InferenceSession":
    """An ORT session with full graph optimisation, warning-level logging and ``intra_op_threads`` threads.

    ``allow_spinning=False`` stops ORT's intra-op threads from busy-waiting between runs: in a
    server they would otherwise starve the event loop on the same cores (tiny on 2 cores: about
    55 req/s with spinning, 100 without).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; build it with ensure_models() or fix the path")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 2
    opts.inter_op_num_threads = 1
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise UsageError(f"intra-op threads must be >= 1, got {intra_op_threads}")
        opts.intra_op_num_threads = intra_op_threads
    if not allow_spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... classes
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(f"ONNX Runtime cannot load {path}: {first}; check that it is a valid ONNX model") from exc


def _pad_clips(clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for i, clip in enumerate(clips):
        a = np.asarray(clip, dtype=np.float32)
        if a.ndim != 1:
            raise UsageError(f"clip {i} must be 1-D mono samples, got shape {a.shape}")
        if a.shape[0] > MAX_SEGMENT_S * SAMPLE_RATE:
            raise UsageError(
                f"clip {i} is {a.shape[0] / SAMPLE_RATE:.1f} s, longer than MAX_SEGMENT_S={MAX_SEGMENT_S:g} s;"
                " split it into segments first"
            )
        arrays.append(a)
    step = int(PAD_MULTIPLE_S * SAMPLE_RATE)
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    width = max(step, math.ceil(int(lengths.max()) / step) * step)
    batch = np.zeros((len(arrays), width), dtype=np.float32)
    for row, a in zip(batch, arrays):
        row[: a.shape[0]] = a
    return batch, lengths


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class AsrRunner:
    """Batched CTC ASR: pad, one ORT call, greedy decode (argmax, collapse repeats, drop blank 0)."""

    def __init__(self, session: "ort.InferenceSession", vocab: list[str] | None) -> None:
        self.session = session
        self.vocab = vocab

    def run(self, clips: list[np.ndarray]) -> list[AsrOutput]:
        if not clips:
            return []
        audio, lengths = _pad_clips(clips)
        log_probs, out_lengths = self.session.run(
            ["log_probs", "out_lengths"], {"audio": audio, "audio_lengths": lengths}
        )
        return [self._decode(lp[: int(n)]) for lp, n in zip(log_probs, out_lengths)]

    def _decode(self, log_probs: np.ndarray) -> AsrOutput:
        best = log_probs.argmax(axis=-1) if log_probs.size else np.zeros(0, dtype=np.int64)
        keep = np.ones(best.shape, dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        tokens = [int(t) for t in best[keep & (best != 0)]]
        if self.vocab:
            pieces = [self.vocab[t] if t < len(self.vocab) else f"<{t}>" for t in tokens]
            text = pieces_to_text([p for p in pieces if p != BLANK])
        else:
            text = " ".join(f"<{t}>" for t in tokens)
        return AsrOutput(text=text, tokens=tokens, frames=int(log_probs.shape[0]))


class EmotionRunner:
    """Utterance emotion (softmax over the 9 classes) plus per-window scores (``frame_s`` windows of 40 ms frames)."""

    def __init__(self, session: "ort.InferenceSession", frame_s: float = 1.0) -> None:
        if frame_s < FRAME_S:
            raise UsageError(f"emotion frame_s must be >= {FRAME_S:g} s, got {frame_s}")
        self.session = session
        self.frames_per_window = max(1, round(frame_s / FRAME_S))

    def run(self, clips: list[np.ndarray]) -> list[EmotionOutput]:
        if not clips:
            return []
        audio, lengths = _pad_clips(clips)
        frame_logits, utt_logits, out_lengths = self.session.run(
            ["frame_logits", "utterance_logits", "out_lengths"], {"audio": audio, "audio_lengths": lengths}
        )
        return [self._one(f[: int(n)], u) for f, u, n in zip(frame_logits, utt_logits, out_lengths)]

    def _one(self, frame_logits: np.ndarray, utt_logits: np.ndarray) -> EmotionOutput:
        probs = _softmax(utt_logits.astype(np.float64))
        best = int(probs.argmax())
        frame_probs = _softmax(frame_logits.astype(np.float64)) if frame_logits.size else frame_logits
        windows = []
        w = self.frames_per_window
        for start in range(0, frame_probs.shape[0], w):
            p = frame_probs[start : start + w].mean(axis=0)
            windows.append({
                "start_s": round(start * FRAME_S, 3),
                "end_s": round(min(start + w, frame_probs.shape[0]) * FRAME_S, 3),
                "label": EMOTION_CLASSES[int(p.argmax())],
                "scores": {c: float(v) for c, v in zip(EMOTION_CLASSES, p)},
            })
        return EmotionOutput(
            label=EMOTION_CLASSES[best],
            confidence=float(probs[best]),
            scores={c: float(v) for c, v in zip(EMOTION_CLASSES, probs)},
            frames=windows,
        )


class TtsRunner:
    """Character-level TTS: (text, emotion) -> float32 waveform at 16 kHz, 75 ms per character."""

    def __init__(self, session: "ort.InferenceSession", symbols: list[str] | None = None) -> None:
        self.session = session
        self.symbols = symbols or tts_symbols()
        self._index = {s: i for i, s in enumerate(self.symbols) if len(s) == 1}
        self._unk = self.symbols.index(UNK)

    def encode_text(self, text: str) -> list[int]:
        """Lower-cases, maps each character to its symbol id; any other character becomes ``<unk>``."""
        return [self._index.get(ch, self._unk) for ch in text.lower()]

    def run(self, items: list[tuple[str, str]]) -> list[np.ndarray]:
        encoded: list[list[int]] = []
        emotions: list[int] = []
        for i, (text, emotion) in enumerate(items):
            if len(text) > MAX_TTS_CHARS:
                raise UsageError(f"text {i} has {len(text)} characters, more than MAX_TTS_CHARS={MAX_TTS_CHARS}; split it")
            if emotion not in EMOTION_CLASSES:
                raise UsageError(f"unknown emotion {emotion!r}; valid: {', '.join(EMOTION_CLASSES)}")
            encoded.append(self.encode_text(text))
            emotions.append(EMOTION_CLASSES.index(emotion))
        results: list[np.ndarray] = [np.zeros(0, dtype=np.float32) for _ in items]
        live = [i for i, ids in enumerate(encoded) if ids]
        if not live:
            return results
        width = math.ceil(max(len(encoded[i]) for i in live) / TTS_PAD_MULTIPLE) * TTS_PAD_MULTIPLE
        tokens = np.zeros((len(live), width), dtype=np.int64)
        for row, i in zip(tokens, live):
            row[: len(encoded[i])] = encoded[i]
        lengths = np.array([len(encoded[i]) for i in live], dtype=np.int64)
        emo = np.array([emotions[i] for i in live], dtype=np.int64)
        wave, wave_lengths = self.session.run(
            ["waveform", "wave_lengths"], {"tokens": tokens, "token_lengths": lengths, "emotion": emo}
        )
        for row, i, n in zip(wave, live, wave_lengths):
            results[i] = np.ascontiguousarray(row[: int(n)], dtype=np.float32)
        return results

