"""The reference server's locally built models: determinism, contracts, padding invariance, counts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from reference_server import models as M
from reference_server.models.flops import graph_flops, initializer_params
from reference_server.models.presets import asr_counts, emotion_counts, tts_counts, valid_encoder_frames
from reference_server.models.runners import SAMPLES_PER_CHAR
from reference_server.models.text import BLANK, UNK, tts_symbols
from toolkit.errors import ModelError, UsageError

CPU = ["CPUExecutionProvider"]
SR = M.SAMPLE_RATE


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> M.ModelBundle:
    return M.ensure_models("tiny", tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def asr_session(bundle: M.ModelBundle):
    return M.create_session(bundle.paths["asr"], CPU, intra_op_threads=1)


@pytest.fixture(scope="module")
def emotion_session(bundle: M.ModelBundle):
    return M.create_session(bundle.paths["emotion"], CPU, intra_op_threads=1)


@pytest.fixture(scope="module")
def tts_runner(bundle: M.ModelBundle) -> M.TtsRunner:
    return M.TtsRunner(M.create_session(bundle.paths["tts"], CPU, intra_op_threads=1), bundle.tts_symbols)


def _clips(*seconds: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(round(s * SR)) * 0.1).astype(np.float32) for s in seconds]


# -- building and caching ----------------------------------------------------------------------
def test_build_is_byte_identical_across_builds(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    M.build_bundle("tiny", tmp_path / "a")
    M.build_bundle("tiny", tmp_path / "b")
    for name in ("asr.onnx", "emotion.onnx", "tts.onnx", "bundle.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_ensure_models_uses_asrtk_cache_dir_and_reuses_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASRTK_CACHE_DIR", str(tmp_path))
    first = M.ensure_models("tiny")
    assert first.dir == tmp_path / "models" / f"tiny-{M.BUILDER_VERSION}"
    assert set(first.paths) == set(M.TASKS) and all(p.is_file() for p in first.paths.values())
    stamp = first.paths["asr"].stat().st_mtime_ns
    second = M.ensure_models("tiny")
    assert second.paths["asr"].stat().st_mtime_ns == stamp
    assert second.asr_vocab == first.asr_vocab and second.card == M.model_card("tiny")
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.dir.name]


def test_concurrent_builds_leave_one_complete_bundle(tmp_path: Path) -> None:
    results: list[M.ModelBundle] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(M.ensure_models("tiny", tmp_path))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 2
    assert results[0].dir == results[1].dir
    assert [p.name for p in (tmp_path / "models").iterdir()] == [results[0].dir.name]  # no temp dirs left
    onnx.checker.check_model(str(results[0].paths["asr"]))


def test_unknown_preset_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown model preset 'huge'.*tiny, small"):
        M.ensure_models("huge", tmp_path)
    with pytest.raises(UsageError, match="tiny, small"):
        M.model_card("huge")


def test_models_have_an_ir_version_ort_reads(bundle: M.ModelBundle) -> None:
    for task, path in bundle.paths.items():
        model = onnx.load(str(path))
        assert model.ir_version == 10, task
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
        onnx.checker.check_model(model)
        assert M.create_session(path, CPU, intra_op_threads=1).get_providers() == CPU


def test_create_session_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        M.create_session(tmp_path / "nope.onnx", CPU)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        M.create_session(junk, CPU)


# -- ASR ---------------------------------------------------------------------------------------
def test_asr_vocab_is_fixed_with_blank_first(bundle: M.ModelBundle) -> None:
    assert len(bundle.asr_vocab) == M.PRESETS["tiny"].asr_vocab_size
    assert bundle.asr_vocab[0] == BLANK and len(set(bundle.asr_vocab)) == len(bundle.asr_vocab)
    meta = onnx.load(str(bundle.paths["asr"])).metadata_props
    assert json.loads({p.key: p.value for p in meta}["asrtk.vocab"]) == bundle.asr_vocab


def test_asr_logits_ignore_padding_even_when_it_is_not_silence(asr_session) -> None:
    # 331 STFT frames + 100 samples: odd frame counts at both stride-2 convs, so the last STFT frame
    # (which overlaps the padding) reaches a valid output frame; only the in-graph sample mask protects it.
    n = 331 * 160 + 100
    clip = _clips(n / SR)[0]
    alone, alone_len = asr_session.run(None, {"audio": clip[None], "audio_lengths": np.array([n])})
    noise = np.random.default_rng(7).uniform(-1, 1, 5 * SR).astype(np.float32)
    padded = np.concatenate([clip, noise])[None]
    batch, batch_len = asr_session.run(None, {"audio": padded, "audio_lengths": np.array([n])})
    assert alone_len[0] == batch_len[0] == valid_encoder_frames(n)
    k = int(alone_len[0])
    assert batch.shape[1] > k
    np.testing.assert_allclose(batch[0, :k], alone[0, :k], atol=1e-4)


def test_asr_batch_gives_the_same_transcripts_as_one_by_one(asr_session, bundle: M.ModelBundle) -> None:
    runner = M.AsrRunner(asr_session, bundle.asr_vocab)
    clips = _clips(0.3, 2.71, 9.0, seed=3)
    batch = runner.run(clips)
    alone = [runner.run([c])[0] for c in clips]
    assert [o.tokens for o in batch] == [o.tokens for o in alone]
    assert [o.text for o in batch] == [o.text for o in alone]
    assert [o.frames for o in batch] == [valid_encoder_frames(c.shape[0]) for c in clips]
    assert batch[2].tokens and batch[2].text  # a 9 s clip decodes to something (meaningless)
    assert 0 not in batch[2].tokens
    assert runner.run([]) == []


def test_asr_rejects_clips_longer_than_a_segment(asr_session, bundle: M.ModelBundle) -> None:
    runner = M.AsrRunner(asr_session, bundle.asr_vocab)
    with pytest.raises(UsageError, match="longer than MAX_SEGMENT_S"):
        runner.run([np.zeros(int(M.MAX_SEGMENT_S * SR) + 1, dtype=np.float32)])
    with pytest.raises(UsageError, match="1-D"):
        runner.run([np.zeros((2, 100), dtype=np.float32)])


# -- emotion -----------------------------------------------------------------------------------
def test_emotion_scores_are_a_distribution_over_the_nine_classes(emotion_session) -> None:
    assert M.EMOTION_CLASSES == (
        "angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"
    )
    runner = M.EmotionRunner(emotion_session)
    clips = _clips(1.2, 4.5, seed=5)
    batch = runner.run(clips)
    alone = [runner.run([c])[0] for c in clips]
    for out, single in zip(batch, alone):
        assert list(out.scores) == list(M.EMOTION_CLASSES)
        assert sum(out.scores.values()) == pytest.approx(1.0, abs=1e-6)
        assert out.label == max(out.scores, key=out.scores.get)
        assert out.confidence == out.scores[out.label]
        for c in M.EMOTION_CLASSES:
            assert out.scores[c] == pytest.approx(single.scores[c], abs=1e-5)
        for frame in out.frames:
            assert sum(frame["scores"].values()) == pytest.approx(1.0, abs=1e-6)
            assert frame["start_s"] < frame["end_s"]
    assert len(batch[1].frames) == 5  # 4.5 s in 1 s windows
    assert batch[1].frames[-1]["end_s"] == pytest.approx(valid_encoder_frames(clips[1].shape[0]) * 0.04)


# -- TTS ---------------------------------------------------------------------------------------
def test_tts_output_length_grows_linearly_with_text(tts_runner: M.TtsRunner) -> None:
    texts = ["hi", "hello there", "a considerably longer sentence, with punctuation!"]
    waves = tts_runner.run([(t, "neutral") for t in texts])
    assert [w.shape[0] for w in waves] == [len(t) * SAMPLES_PER_CHAR for t in texts]
    assert all(w.dtype == np.float32 and np.all(np.abs(w) <= 1.0) and np.any(w != 0) for w in waves)


def test_tts_batch_matches_one_by_one_and_emotion_changes_the_output(tts_runner: M.TtsRunner) -> None:
    items = [("short", "happy"), ("a somewhat longer text to pad the first one", "sad"), ("", "neutral")]
    batch = tts_runner.run(items)
    alone = [tts_runner.run([item])[0] for item in items]
    for b, a in zip(batch, alone):
        np.testing.assert_allclose(b, a, atol=1e-4)
    assert batch[2].shape == (0,)
    other = tts_runner.run([("short", "angry")])[0]
    assert not np.allclose(other, batch[0])


def test_tts_text_encoding_and_limits(tts_runner: M.TtsRunner) -> None:
    symbols = tts_symbols()
    assert tts_runner.encode_text("Ab 1?") == [symbols.index(c) for c in "ab 1?"]
    assert tts_runner.encode_text("é中") == [symbols.index(UNK)] * 2
    with pytest.raises(UsageError, match="MAX_TTS_CHARS"):
        tts_runner.run([("x" * (M.MAX_TTS_CHARS + 1), "neutral")])
    with pytest.raises(UsageError, match="unknown emotion 'bored'"):
        tts_runner.run([("hi", "bored")])


# -- analytic counts, cross-checked on the graphs -------------------------------------------------
def test_analytic_params_and_flops_match_the_built_graphs(bundle: M.ModelBundle) -> None:
    preset = M.PRESETS["tiny"]
    n = 7 * SR + 1234
    audio = {"audio": np.zeros((1, n), np.float32), "audio_lengths": np.array([n])}
    assert graph_flops(bundle.paths["asr"], audio) == asr_counts(preset, n / SR)[1]
    assert graph_flops(bundle.paths["emotion"], audio) == emotion_counts(preset, n / SR)[1]
    text = {"tokens": np.ones((1, 37), np.int64), "token_lengths": np.array([37]), "emotion": np.array([2])}
    assert graph_flops(bundle.paths["tts"], text) == tts_counts(preset, len(tts_symbols()), 37)[1]
    assert initializer_params(bundle.paths["asr"]) == bundle.card["asr"]["params"]
    assert initializer_params(bundle.paths["emotion"]) == bundle.card["emotion"]["params"]
    assert initializer_params(bundle.paths["tts"]) == bundle.card["tts"]["params"]


def test_small_card_is_production_sized_without_building() -> None:
    card = M.model_card("small")
    assert 30e6 < card["asr"]["params"] < 60e6
    assert 1e9 < card["asr"]["flops_per_audio_s"] < 1e10
    tiny = M.model_card("tiny")
    assert tiny["asr"]["flops_per_audio_s"] < card["asr"]["flops_per_audio_s"] / 10
    assert "random weights" in card["note"] and card["sample_rate"] == SR


# -- custom models -----------------------------------------------------------------------------
def _custom_model(path: Path, audio_name: str = "audio", audio_rank: int = 2, vocab: list[str] | None = None,
                  n_classes: int = 5) -> Path:
    """A minimal CTC model: 10 ms frames -> linear -> log-softmax; out_lengths = lengths // 160."""
    shape = ["batch", "samples"] if audio_rank == 2 else ["batch", "channels", "samples"]
    inputs = [helper.make_tensor_value_info(audio_name, TensorProto.FLOAT, shape),
              helper.make_tensor_value_info("audio_lengths", TensorProto.INT64, ["batch"])]
    outputs = [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", "frames", n_classes]),
               helper.make_tensor_value_info("out_lengths", TensorProto.INT64, ["batch"])]
    w = np.random.default_rng(0).standard_normal((160, n_classes)).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(np.array([0, -1, 160], np.int64), "shape"),
             onnx.numpy_helper.from_array(np.array(160, np.int64), "hop")]
    nodes = [helper.make_node("Reshape", [audio_name, "shape"], ["frames"]),
             helper.make_node("MatMul", ["frames", "w"], ["logits"]),
             helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
             helper.make_node("Div", ["audio_lengths", "hop"], ["out_lengths"])]
    model = helper.make_model(helper.make_graph(nodes, "custom", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    if vocab is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "asrtk.vocab", json.dumps(vocab)
    onnx.save(model, str(path))
    return path


def test_custom_model_following_the_contract_runs(tmp_path: Path) -> None:
    vocab = [BLANK, "a", "b", "c", "d"]
    runner = M.load_custom_asr(_custom_model(tmp_path / "m.onnx", vocab=vocab), CPU)
    out = runner.run(_clips(1.0))[0]
    assert out.frames == SR // 160 and out.tokens and set(out.text) <= set("abcd")
    bare = M.load_custom_asr(_custom_model(tmp_path / "bare.onnx"), CPU).run(_clips(1.0))[0]
    assert bare.text.split() == [f"<{t}>" for t in bare.tokens]


def test_builtin_asr_model_follows_the_custom_contract(bundle: M.ModelBundle) -> None:
    runner = M.load_custom_asr(bundle.paths["asr"], CPU)
    assert runner.vocab == bundle.asr_vocab


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"audio_name": "wave"}, "missing input 'audio' \\(has: audio_lengths, wave\\)"),
        ({"audio_rank": 3}, "input 'audio' must have rank 2, got rank 3"),
        ({"vocab": ["<blank>", "a"]}, "log_probs has 5 classes but 'asrtk.vocab' lists 2 tokens"),
    ],
)
def test_custom_model_contract_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = _custom_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelError, match=message):
        M.load_custom_asr(path, CPU)
