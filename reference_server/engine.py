"""Models + one batcher per model: what the HTTP layer submits work to.

Loading (``load_engine``) is blocking I/O and compute: the app runs it in a thread
after the server already answers /health and /ready (503 until it finishes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference_server.batching import BatchObserver, Batcher
from reference_server.config import ServerConfig
from toolkit.errors import ModelError, UsageError

log = logging.getLogger("reference_server")

WARMUP_CLIP_S = 1.0


@dataclass
class Engine:
    """The three batchers plus what the API layer needs to know about the models."""

    batchers: dict[str, Batcher]
    preset: str
    provider: str
    device: str
    emotion_classes: tuple[str, ...]
    sample_rate: int = 16000
    max_segment_s: float = 30.0
    max_tts_chars: int = 500
    card: dict[str, Any] = field(default_factory=dict)

    def batcher(self, model: str) -> Batcher:
        return self.batchers[model]

    def stop(self) -> None:
        for b in self.batchers.values():
            b.stop()


def build_engine(
    runners: dict[str, Callable[[list[Any]], list[Any]]],
    cfg: ServerConfig,
    observer: BatchObserver | None,
    **info: Any,
) -> Engine:
    """Wrap per-model batch functions into started batchers (also used by unit tests with fakes)."""
    batchers = {
        name: Batcher(
            name, fn, max_batch=cfg.max_batch, max_wait_s=cfg.max_wait_ms / 1000.0,
            max_queue=cfg.max_queue, observer=observer,
        ).start()
        for name, fn in runners.items()
    }
    return Engine(batchers=batchers, **info)


def load_engine(cfg: ServerConfig, observer: BatchObserver | None) -> Engine:
    """Build/load the ONNX models for ``cfg.model``, warm them up, start the batchers."""
    from reference_server import models as M
    from reference_server.providers import choose
    from toolkit.paths import cache_dir

    choice = choose(cfg.device)
    log.info("execution provider: %s on %s, because: %s", choice.providers[0], choice.device, choice.reason)
    if cfg.model_is_path:
        base_preset, label = "tiny", "custom"
    elif cfg.model in M.PRESETS:
        base_preset, label = cfg.model, cfg.model
    else:
        raise UsageError(f"--model {cfg.model!r} is neither a preset ({', '.join(M.PRESETS)}) nor an .onnx file")
    bundle = M.ensure_models(base_preset, cache_dir())
    threads = cfg.threads

    def session(task: str) -> Any:
        return M.create_session(bundle.paths[task], choice.providers, intra_op_threads=threads, allow_spinning=False)

    try:
        if cfg.model_is_path:
            asr = M.load_custom_asr(Path(cfg.model), choice.providers, intra_op_threads=threads, allow_spinning=False)
        else:
            asr = M.AsrRunner(session("asr"), bundle.asr_vocab)
        emotion = M.EmotionRunner(session("emotion"))
        tts = M.TtsRunner(session("tts"), bundle.tts_symbols)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load models for {cfg.model!r}: {str(exc).splitlines()[0][:200]}") from exc

    sr = int(M.SAMPLE_RATE)
    clip = np.zeros(int(WARMUP_CLIP_S * sr), dtype=np.float32)
    clip += np.random.default_rng(0).standard_normal(clip.shape[0]).astype(np.float32) * 0.01
    n = cfg.max_batch
    asr.run([clip] * n)
    asr.run([clip])
    emotion.run([clip] * n)
    emotion.run([clip])
    tts.run([("warm up", M.EMOTION_CLASSES[0])])
    log.info("models %s loaded and warmed (batch 1 and %d), intra-op threads %s", label, n, threads or "ORT default")

    card = M.model_card(base_preset) if hasattr(M, "model_card") else {}
    return build_engine(
        {"asr": asr.run, "emotion": emotion.run, "tts": tts.run},
        cfg,
        observer,
        preset=label,
        provider=choice.providers[0],
        device=choice.device,
        emotion_classes=tuple(M.EMOTION_CLASSES),
        sample_rate=sr,
        max_segment_s=float(M.MAX_SEGMENT_S),
        max_tts_chars=int(M.MAX_TTS_CHARS),
        card=card if isinstance(card, dict) else {},
    )


def join_texts(texts: Sequence[str]) -> str:
    return " ".join(t.strip() for t in texts if t and t.strip())
