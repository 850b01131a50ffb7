"""In-process throughput of a preset's models (what docs/models.md quotes).

    python -m reference_server.models.measure --preset tiny --threads 2

Prints, per model and batch size, the median wall time of one ``run`` call and the
throughput in audio seconds per second (real-time factor inverse, "RTFx").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _median_call_s(fn, repeats: int) -> float:
    fn()  # warm-up: first call pays for allocations and shape-specific kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(preset: str, threads: int, clip_s: float = 10.0, batches: tuple[int, ...] = (1, 8), repeats: int = 5,
            cache_dir: Path | None = None) -> list[dict]:
    from reference_server import models as M

    bundle = M.ensure_models(preset, cache_dir)
    cpu = ["CPUExecutionProvider"]
    asr = M.AsrRunner(M.create_session(bundle.paths["asr"], cpu, threads), bundle.asr_vocab)
    emo = M.EmotionRunner(M.create_session(bundle.paths["emotion"], cpu, threads))
    tts = M.TtsRunner(M.create_session(bundle.paths["tts"], cpu, threads), bundle.tts_symbols)
    rng = np.random.default_rng(0)
    clip = (rng.standard_normal(int(clip_s * M.SAMPLE_RATE)) * 0.1).astype(np.float32)
    chars = round(clip_s / 0.075)  # 75 ms of speech per character
    text = ("the quick brown fox jumps over the lazy dog " * 10)[:chars]
    rows = []
    for b in batches:
        for task, fn in (("asr", lambda: asr.run([clip] * b)), ("emotion", lambda: emo.run([clip] * b)),
                         ("tts", lambda: tts.run([(text, "neutral")] * b))):
            call_s = _median_call_s(fn, repeats)
            rows.append({"preset": preset, "task": task, "batch": b, "threads": threads, "clip_s": clip_s,
                         "call_s": call_s, "audio_s_per_s": b * clip_s / call_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--clip-s", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'preset':6} {'task':8} {'batch':>5} {'threads':>7} {'call_s':>8} {'audio_s/s':>10}")
    for r in measure(args.preset, args.threads, args.clip_s, repeats=args.repeats):
        print(f"{r['preset']:6} {r['task']:8} {r['batch']:5d} {r['threads']:7d} {r['call_s']:8.3f} {r['audio_s_per_s']:10.1f}")


if __name__ == "__main__":
    main()
