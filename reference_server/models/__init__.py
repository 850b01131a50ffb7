"""The reference server's models: locally built ONNX graphs with seeded random weights, and their runners.

``ensure_models(preset)`` builds (once, deterministically) an ASR, an emotion and a
TTS model into the cache; the runners batch, run and decode them. Transcripts,
labels and speech are meaningless (random weights); compute, memory and batching
behaviour are real. See docs/models.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reference_server.models.custom import load_custom_asr
from reference_server.models.presets import PRESETS, SAMPLE_RATE, Preset, get_preset, model_card
from reference_server.models.runners import (
    EMOTION_CLASSES,
    MAX_SEGMENT_S,
    MAX_TTS_CHARS,
    AsrOutput,
    AsrRunner,
    EmotionOutput,
    EmotionRunner,
    TtsRunner,
    create_session,
)

TASKS = ("asr", "emotion", "tts")
BUILDER_VERSION = "1"  # bump whenever a graph or weight draw changes: a new cache directory follows
BUNDLE_FILE = "bundle.json"

__all__ = [
    "PRESETS", "TASKS", "EMOTION_CLASSES", "SAMPLE_RATE", "MAX_SEGMENT_S", "MAX_TTS_CHARS", "BUILDER_VERSION",
    "Preset", "ModelBundle", "ensure_models", "build_bundle", "model_card", "create_session",
    "AsrRunner", "AsrOutput", "EmotionRunner", "EmotionOutput", "TtsRunner", "load_custom_asr",
]


@dataclass(frozen=True)
class ModelBundle:
    preset: str
    dir: Path
    paths: dict[str, Path]
    asr_vocab: list[str]
    tts_symbols: list[str]
    card: dict


def build_bundle(preset_name: str, out_dir: Path) -> None:
    """Write asr.onnx, emotion.onnx, tts.onnx and bundle.json for ``preset_name`` into ``out_dir``."""
    import onnx

    from reference_server.models.build import BUILDERS
    from reference_server.models.text import asr_vocab, tts_symbols

    preset = get_preset(preset_name)
    for task in TASKS:
        model = BUILDERS[task](preset)
        onnx.save_model(model, str(out_dir / f"{task}.onnx"))
        del model
    manifest = {
        "builder_version": BUILDER_VERSION,
        "preset": preset.name,
        "files": {task: f"{task}.onnx" for task in TASKS},
        "asr_vocab": asr_vocab(preset.asr_vocab_size),
        "tts_symbols": tts_symbols(),
        "card": model_card(preset.name),
    }
    (out_dir / BUNDLE_FILE).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _load_bundle(directory: Path) -> ModelBundle:
    manifest = json.loads((directory / BUNDLE_FILE).read_text(encoding="utf-8"))
    return ModelBundle(
        preset=manifest["preset"],
        dir=directory,
        paths={task: directory / name for task, name in manifest["files"].items()},
        asr_vocab=manifest["asr_vocab"],
        tts_symbols=manifest["tts_symbols"],
        card=manifest["card"],
    )


def ensure_models(preset: str, cache_dir: Path | None = None) -> ModelBundle:
    """The preset's models under ``<cache>/models/<preset>-<BUILDER_VERSION>/``, built first if missing.

    The build goes to a temporary sibling directory renamed into place, so a
    concurrent builder or an interrupted build never leaves a half-written bundle.
    """
    from toolkit.errors import ModelError

    name = get_preset(preset).name
    if cache_dir is None:
        from toolkit.paths import cache_dir as default_cache_dir

        cache_dir = default_cache_dir()
    models_dir = Path(cache_dir) / "models"
    final = models_dir / f"{name}-{BUILDER_VERSION}"
    if (final / BUNDLE_FILE).is_file():
        return _load_bundle(final)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=models_dir))
    except OSError as exc:
        raise ModelError(f"cannot create model cache {models_dir}: {exc.strerror}; set ASRTK_CACHE_DIR to a writable directory") from exc
    try:
        build_bundle(name, tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / BUNDLE_FILE).is_file():  # not a lost race: a real failure
                raise ModelError(f"{final} exists but holds no complete model bundle; delete it and retry") from None
    except OSError as exc:
        raise ModelError(f"cannot write models to {models_dir}: {exc.strerror}; check free space and permissions") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _load_bundle(final)
