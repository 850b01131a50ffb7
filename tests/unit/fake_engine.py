"""A fake engine for in-process server tests, and the app around it behind Starlette's TestClient.

``FakeModels`` stands in for the three ONNX runners: the real :class:`Engine` and batchers
(``build_engine``) run around cheap, deterministic batch functions, so the HTTP layer is
exercised exactly as in production minus the models. A test that needs a request to stay
in flight (queue full, deadlines) holds a model's next batch and releases it when done:
synchronisation by events, never by sleeping.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
from starlette.testclient import TestClient

from reference_server.app import ServerState, create_app
from reference_server.batching import BatchObserver
from reference_server.config import ServerConfig
from reference_server.engine import Engine, build_engine
from reference_server.metrics import ServerMetrics
from reference_server.models.runners import EMOTION_CLASSES, MAX_SEGMENT_S, MAX_TTS_CHARS, AsrOutput, EmotionOutput

SAMPLE_RATE = 16000
TIMEOUT_S = 10.0  # bounds a broken test only; no outcome depends on it
PRESET, PROVIDER, DEVICE = "fake", "FakeExecutionProvider", "cpu"
TOP_EMOTION = "happy"  # every fake utterance and frame scores highest on it
SAMPLES_PER_CHAR = 160  # the fake TTS speaks 10 ms per character


def fake_text(samples: int) -> str:
    """What the fake ASR hears in a clip of ``samples`` samples."""
    return f"heard {samples / SAMPLE_RATE:.2f} s"


def fake_scores() -> dict[str, float]:
    others = [c for c in EMOTION_CLASSES if c != TOP_EMOTION]
    return {c: 0.6 if c == TOP_EMOTION else 0.4 / len(others) for c in EMOTION_CLASSES}


class Hold:
    """Blocks one batch of one model: ``entered`` is set when that batch starts, it ends on ``release()``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait_entered(self) -> None:
        assert self.entered.wait(TIMEOUT_S), "the held batch never started"

    def block(self) -> None:
        self.entered.set()
        if not self._released.wait(TIMEOUT_S):
            raise TimeoutError("the test never released the held batch")


class _DepthWatch:
    """The app's BatchObserver, plus a way for the test to wait until a queue reaches a depth."""

    def __init__(self, inner: BatchObserver | None) -> None:
        self._inner = inner
        self._cond = threading.Condition()
        self._depth: dict[str, int] = {}

    def on_depth(self, model: str, depth: int) -> None:
        if self._inner:
            self._inner.on_depth(model, depth)
        with self._cond:
            self._depth[model] = depth
            self._cond.notify_all()

    def on_batch(self, model: str, size: int, queue_waits_s: Sequence[float], infer_s: float) -> None:
        if self._inner:
            self._inner.on_batch(model, size, queue_waits_s, infer_s)

    def wait_depth(self, model: str, depth: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self._depth.get(model) == depth, TIMEOUT_S), (
                f"{model} queue never reached depth {depth} (now {self._depth.get(model)})"
            )


class FakeModels:
    """The three batch functions plus the ``engine_loader`` for ``create_app``.

    ``batches[model]`` lists the size of every batch run. ``hold(model)`` blocks that model's
    next batch; ``fail(model, exc)`` makes it raise; ``hold_loading()`` blocks the loader.
    """

    def __init__(self, *, max_segment_s: float = MAX_SEGMENT_S, max_tts_chars: int = MAX_TTS_CHARS) -> None:
        self.max_segment_s = max_segment_s
        self.max_tts_chars = max_tts_chars
        self.batches: dict[str, list[int]] = {"asr": [], "emotion": [], "tts": []}
        self._lock = threading.Lock()
        self._holds: dict[str, list[Hold]] = {m: [] for m in self.batches}
        self._failures: dict[str, BaseException] = {}
        self._all_holds: list[Hold] = []
        self._loading: Hold | None = None
        self._watch: _DepthWatch | None = None

    def hold(self, model: str) -> Hold:
        h = Hold()
        with self._lock:
            self._holds[model].append(h)
            self._all_holds.append(h)
        return h

    def hold_loading(self) -> Hold:
        self._loading = Hold()
        self._all_holds.append(self._loading)
        return self._loading

    def fail(self, model: str, exc: BaseException) -> None:
        with self._lock:
            self._failures[model] = exc

    def release_all(self) -> None:
        for h in self._all_holds:
            h.release()

    def wait_depth(self, model: str, depth: int) -> None:
        assert self._watch is not None, "the engine is not loaded"
        self._watch.wait_depth(model, depth)

    def loader(self, cfg: ServerConfig, observer: BatchObserver | None) -> Engine:
        if self._loading is not None:
            self._loading.block()
        self._watch = _DepthWatch(observer)
        return build_engine(
            {"asr": self.asr, "emotion": self.emotion, "tts": self.tts}, cfg, self._watch,
            preset=PRESET, provider=PROVIDER, device=DEVICE, emotion_classes=EMOTION_CLASSES,
            sample_rate=SAMPLE_RATE, max_segment_s=self.max_segment_s, max_tts_chars=self.max_tts_chars,
        )

    def _enter(self, model: str, size: int) -> None:
        with self._lock:
            self.batches[model].append(size)
            hold = self._holds[model].pop(0) if self._holds[model] else None
            failure = self._failures.pop(model, None)
        if hold is not None:
            hold.block()
        if failure is not None:
            raise failure

    def asr(self, clips: list[np.ndarray]) -> list[AsrOutput]:
        self._enter("asr", len(clips))
        return [AsrOutput(text=fake_text(c.shape[0]), tokens=[], frames=c.shape[0] // 640) for c in clips]

    def emotion(self, clips: list[np.ndarray]) -> list[EmotionOutput]:
        self._enter("emotion", len(clips))
        outs = []
        for c in clips:
            seconds = c.shape[0] / SAMPLE_RATE
            frames = [{"start_s": float(s), "end_s": float(min(s + 1.0, seconds)), "scores": fake_scores()}
                      for s in np.arange(0.0, seconds, 1.0)]
            outs.append(EmotionOutput(label=TOP_EMOTION, confidence=0.6, scores=fake_scores(), frames=frames))
        return outs

    def tts(self, items: list[tuple[str, str]]) -> list[np.ndarray]:
        self._enter("tts", len(items))
        return [np.full(len(text) * SAMPLES_PER_CHAR, 0.1, dtype=np.float32) for text, _ in items]


class _ReadyGauge:
    """Passes through to the ``asrtk_ready`` gauge and sets ``event`` when the app marks itself ready."""

    def __init__(self, gauge: Any, event: threading.Event) -> None:
        self._gauge = gauge
        self._event = event

    def set(self, value: float) -> None:
        self._gauge.set(value)
        if value:
            self._event.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gauge, name)


class SignallingMetrics(ServerMetrics):
    """A fresh ServerMetrics (its own registry) that tells the test when the engine is in place."""

    def __init__(self) -> None:
        super().__init__()
        self.became_ready = threading.Event()
        self.ready = _ReadyGauge(self.ready, self.became_ready)  # type: ignore[assignment]

    def value(self, name: str, **labels: str) -> float:
        """One sample of the registry; 0.0 when the series does not exist yet."""
        return self.registry.get_sample_value(name, labels) or 0.0


@dataclass
class InProcessServer:
    client: TestClient
    models: FakeModels
    metrics: SignallingMetrics
    state: ServerState


@contextmanager
def serve(
    cfg: ServerConfig,
    models: FakeModels | None = None,
    *,
    wait_ready: bool = True,
    raise_server_exceptions: bool = True,
) -> Iterator[InProcessServer]:
    """``create_app(cfg)`` with the fake engine, started (lifespan) and, unless told otherwise, ready."""
    models = models or FakeModels()
    metrics = SignallingMetrics()
    app = create_app(cfg, metrics=metrics, engine_loader=models.loader)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        try:
            if wait_ready:
                assert metrics.became_ready.wait(TIMEOUT_S), "the fake engine never became ready"
            yield InProcessServer(client, models, metrics, app.state.server)
        finally:
            models.release_all()  # before shutdown, which joins the batcher threads


def encode_audio(
    seconds: float, sr: int = SAMPLE_RATE, channels: int = 1, fmt: str = "WAV", subtype: str | None = "PCM_16"
) -> bytes:
    """A 180 Hz tone, encoded by soundfile (``subtype=None``: the format's default)."""
    t = np.arange(int(seconds * sr)) / sr
    x = np.repeat((0.2 * np.sin(2 * np.pi * 180 * t))[:, None], channels, axis=1).astype(np.float32)
    return encode_samples(x, sr, fmt, subtype)


def encode_samples(x: np.ndarray, sr: int = SAMPLE_RATE, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def pcm16(samples: int) -> bytes:
    """Raw little-endian PCM16 16 kHz mono, the streaming protocol's chunks."""
    return (np.sin(np.arange(samples) / 7.0) * 5000).astype("<i2").tobytes()
