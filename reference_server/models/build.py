"""Build the ASR, emotion and TTS ONNX graphs of a preset, deterministically, with seeded random weights."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from reference_server.models.graph import GraphBuilder
from reference_server.models.presets import (
    HOP,
    N_BINS,
    N_EMOTIONS,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    STFT_RIGHT_PAD,
    TTS_FRAMES_PER_TOKEN,
    TTS_HOP,
    TTS_UPSAMPLE,
    EncoderSpec,
    Preset,
    subsampled_mels,
    upsample_kernel,
    vocoder_channels,
)
from reference_server.models.text import asr_vocab, tts_symbols

CTC_BLANK_BIAS = 1.6  # random heads would otherwise emit a token almost every frame


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular HTK-mel filters from 0 Hz to Nyquist."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    bins = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sr / 2)), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (center - lower)
    falling = (upper - bins[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).T.astype(np.float32)


def dft_kernels() -> np.ndarray:
    """[2 * N_BINS, 1, N_FFT] Hann-windowed cos and sin kernels: the STFT as a strided Conv1d."""
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann
    k = np.arange(N_BINS)[:, None]
    cos = np.cos(2 * np.pi * k * n / N_FFT) * window
    sin = -np.sin(2 * np.pi * k * n / N_FFT) * window
    return np.concatenate([cos, sin])[:, None, :].astype(np.float32)


def _speech_front_end(g: GraphBuilder, audio: str, lengths: str, spec: EncoderSpec) -> tuple[str, str, str]:
    """Audio [B, N] -> (encoder input [B, T, d], valid frames [B], attention bias [B, 1, 1, T])."""
    i64 = np.int64
    keep = g.op("Cast", [g.length_mask(lengths, audio, 1)], "sample_mask", to=TensorProto.FLOAT)
    x = g.op("Mul", [audio, keep], "audio_masked")  # padding must not leak into the last frames
    x = g.op("Pad", [x, g.const([0, 0, 0, STFT_RIGHT_PAD], i64)], "audio_pad", mode="constant")
    x = g.op("Unsqueeze", [x, g.const([1], i64)], "audio_1ch")
    spec_ri = g.op("Conv", [x, g.const(dft_kernels(), name="dft_kernels")], "stft", strides=[HOP])
    power = g.op("Mul", [spec_ri, spec_ri], "stft_power_parts")  # [B, 2*bins, T0]: re^2 | im^2
    power = g.op("Transpose", [power], "stft_power_t", perm=[0, 2, 1])
    mel2 = np.concatenate([mel_filterbank(), mel_filterbank()])  # re^2 and im^2 both go through the mel matrix
    mel = g.op("MatMul", [power, g.const(mel2, name="mel_filterbank")], "mel")
    logmel = g.op("Log", [g.op("Add", [mel, g.const(1e-6)], "mel_floor")], "logmel")
    feats = g.op("Mul", [g.op("Add", [logmel, g.const(4.0)], "feat_shift"), g.const(0.2)], "features")

    c, d = spec.subsample_channels, spec.d_model
    x = g.op("Unsqueeze", [feats, g.const([1], i64)], "features_2d")  # [B, 1, T0, 80]
    x = g.op("Relu", [g.conv(x, 1, c, (3, 3), "subsample.conv1", stride=2, gain=math.sqrt(2))], "subsample.relu1")
    x = g.op("Relu", [g.conv(x, c, c, (3, 3), "subsample.conv2", stride=2, gain=math.sqrt(2))], "subsample.relu2")
    x = g.op("Transpose", [x], "subsample.t", perm=[0, 2, 1, 3])  # [B, T, C, F]
    x = g.op("Reshape", [x, g.const([0, 0, c * subsampled_mels()], i64)], "subsample.flatten")
    x = g.linear(x, c * subsampled_mels(), d, "subsample.out")
    x = g.op("Add", [x, g.sinusoids(x, d)], "add_positions")

    one, two, zero = g.const(1, i64), g.const(2, i64), g.const(0, i64)
    frames = g.op("Div", [lengths, g.const(HOP, i64)], "stft_lengths")
    t1 = g.op("Div", [g.op("Max", [g.op("Sub", [frames, one]), zero]), two], "subsample_len1")
    t2 = g.op("Div", [g.op("Max", [g.op("Sub", [t1, one]), zero]), two], "subsample_len2")
    bias = g.attention_bias(g.length_mask(t2, x, 1))
    return x, t2, bias


def _audio_inputs() -> list[onnx.ValueInfoProto]:
    return [
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"]),
        helper.make_tensor_value_info("audio_lengths", TensorProto.INT64, ["batch"]),
    ]


def build_asr(preset: Preset) -> onnx.ModelProto:
    spec, vocab = preset.asr, asr_vocab(preset.asr_vocab_size)
    g = GraphBuilder(f"asrtk-asr-{preset.name}", preset.seed("asr"))
    g.reserve("audio", "audio_lengths")
    x, out_len, bias = _speech_front_end(g, "audio", "audio_lengths", spec)
    for i in range(spec.layers):
        x = g.encoder_layer(x, spec.d_model, spec.heads, spec.ffn, bias, f"encoder.{i}")
    x = g.layer_norm(x, spec.d_model, "encoder.ln_out")
    logits = g.linear(x, spec.d_model, len(vocab), "ctc_head", bias=False)
    blank_bias = np.zeros(len(vocab), dtype=np.float32)
    blank_bias[0] = CTC_BLANK_BIAS
    logits = g.op("Add", [logits, g.param("ctc_head.bias", blank_bias)], "ctc_head.add")
    g.op("LogSoftmax", [logits], "log_probs", axis=-1)
    g.op("Identity", [out_len], "out_lengths")
    outputs = [
        helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", "frames", len(vocab)]),
        helper.make_tensor_value_info("out_lengths", TensorProto.INT64, ["batch"]),
    ]
    meta = {"asrtk.task": "asr", "asrtk.preset": preset.name, "asrtk.vocab": json.dumps(vocab, ensure_ascii=False)}
    return g.build(_audio_inputs(), outputs, meta)


def build_emotion(preset: Preset) -> onnx.ModelProto:
    spec = preset.emotion
    d = spec.d_model
    g = GraphBuilder(f"asrtk-emotion-{preset.name}", preset.seed("emotion"))
    g.reserve("audio", "audio_lengths")
    x, out_len, bias = _speech_front_end(g, "audio", "audio_lengths", spec)
    for i in range(spec.layers):
        x = g.encoder_layer(x, d, spec.heads, spec.ffn, bias, f"encoder.{i}")
    x = g.layer_norm(x, d, "encoder.ln_out")
    g.op("Identity", [g.linear(x, d, N_EMOTIONS, "frame_head")], "frame_logits")
    i64 = np.int64
    keep = g.op("Cast", [g.length_mask(out_len, x, 1)], "frame_mask", to=TensorProto.FLOAT)
    keep = g.op("Unsqueeze", [keep, g.const([2], i64)], "frame_mask_3d")
    total = g.op("ReduceSum", [g.op("Mul", [x, keep], "masked_frames"), g.const([1], i64)], "pool_sum", keepdims=0)
    count = g.op("Cast", [g.op("Max", [out_len, g.const(1, i64)], "pool_count_i")], "pool_count", to=TensorProto.FLOAT)
    pooled = g.op("Div", [total, g.op("Unsqueeze", [count, g.const([1], i64)], "pool_count_col")], "pooled")
    h = g.op("Tanh", [g.linear(pooled, d, d, "utterance_proj")], "utterance_tanh")
    g.op("Identity", [g.linear(h, d, N_EMOTIONS, "utterance_head")], "utterance_logits")
    g.op("Identity", [out_len], "out_lengths")
    outputs = [
        helper.make_tensor_value_info("frame_logits", TensorProto.FLOAT, ["batch", "frames", N_EMOTIONS]),
        helper.make_tensor_value_info("utterance_logits", TensorProto.FLOAT, ["batch", N_EMOTIONS]),
        helper.make_tensor_value_info("out_lengths", TensorProto.INT64, ["batch"]),
    ]
    return g.build(_audio_inputs(), outputs, {"asrtk.task": "emotion", "asrtk.preset": preset.name})


def _time_mask(g: GraphBuilder, lengths: str, like: str) -> str:
    """Float [B, 1, T] mask for a [B, C, T] tensor."""
    keep = g.op("Cast", [g.length_mask(lengths, like, 2)], "time_mask", to=TensorProto.FLOAT)
    return g.op("Unsqueeze", [keep, g.const([1], np.int64)], "time_mask_3d")


def build_tts(preset: Preset) -> onnx.ModelProto:
    s = preset.tts
    d, symbols, i64 = s.d_model, tts_symbols(), np.int64
    g = GraphBuilder(f"asrtk-tts-{preset.name}", preset.seed("tts"))
    g.reserve("tokens", "token_lengths", "emotion")
    x = g.op("Gather", [g.weight("text_embedding", (len(symbols), d), 1.0), "tokens"], "embed", axis=0)
    emo = g.op("Gather", [g.weight("emotion_embedding", (N_EMOTIONS, d), 1.0), "emotion"], "emotion_embed", axis=0)
    x = g.op("Add", [x, g.op("Unsqueeze", [emo, g.const([1], i64)], "emotion_embed_3d")], "add_emotion")
    x = g.op("Add", [x, g.sinusoids(x, d)], "text_positions")
    bias = g.attention_bias(g.length_mask("token_lengths", x, 1))
    for i in range(s.encoder_layers):
        x = g.encoder_layer(x, d, s.heads, s.ffn, bias, f"text_encoder.{i}")
    x = g.layer_norm(x, d, "text_encoder.ln_out")

    # Length regulator with a fixed duration: every token becomes TTS_FRAMES_PER_TOKEN frames.
    x = g.op("Unsqueeze", [x, g.const([2], i64)], "regulate.unsqueeze")
    x = g.op("Expand", [x, g.const([1, 1, TTS_FRAMES_PER_TOKEN, 1], i64)], "regulate.expand")
    x = g.op("Reshape", [x, g.const([0, -1, d], i64)], "regulate.merge")
    frame_len = g.op("Mul", ["token_lengths", g.const(TTS_FRAMES_PER_TOKEN, i64)], "frame_lengths")
    x = g.op("Add", [x, g.sinusoids(x, d)], "frame_positions")
    bias = g.attention_bias(g.length_mask(frame_len, x, 1))
    for i in range(s.decoder_layers):
        x = g.encoder_layer(x, d, s.heads, s.ffn, bias, f"decoder.{i}")
    x = g.layer_norm(x, d, "decoder.ln_out")
    mel = g.linear(x, d, N_MELS, "mel_out")
    x = g.op("Transpose", [mel], "mel_t", perm=[0, 2, 1])  # [B, 80, T]

    # HiFi-GAN-like vocoder; every layer output is masked so padding never reaches valid samples.
    ch = vocoder_channels(s)
    lens = frame_len
    mask = _time_mask(g, lens, x)
    x = g.op("Mul", [g.conv(x, N_MELS, ch[0], 7, "vocoder.pre", pads=[3, 3]), mask], "vocoder.pre.masked")
    for i, (u, c_in, c_out) in enumerate(zip(TTS_UPSAMPLE, ch, ch[1:])):
        k, pad = upsample_kernel(u)
        x = g.op("LeakyRelu", [x], f"vocoder.up{i}.act", alpha=0.1)
        w = g.weight(f"vocoder.up{i}.weight", (c_in, c_out, k), math.sqrt(2.0 / (c_in * k / u)))
        b = g.param(f"vocoder.up{i}.bias", np.zeros(c_out, dtype=np.float32))
        x = g.op("ConvTranspose", [x, w, b], f"vocoder.up{i}", strides=[u], pads=[pad, pad], kernel_shape=[k])
        lens = g.op("Mul", [lens, g.const(u, i64)], f"vocoder.up{i}.lengths")
        mask = _time_mask(g, lens, x)
        x = g.op("Mul", [x, mask], f"vocoder.up{i}.masked")
        h = g.op("LeakyRelu", [x], f"vocoder.res{i}.act", alpha=0.1)
        h = g.conv(h, c_out, c_out, 3, f"vocoder.res{i}.conv", pads=[1, 1], gain=0.5)
        x = g.op("Mul", [g.op("Add", [x, h], f"vocoder.res{i}.add"), mask], f"vocoder.res{i}.masked")
    x = g.op("LeakyRelu", [x], "vocoder.post.act", alpha=0.1)
    x = g.op("Tanh", [g.conv(x, ch[-1], 1, 7, "vocoder.post", pads=[3, 3], gain=0.3)], "vocoder.tanh")
    x = g.op("Mul", [x, mask], "vocoder.masked")
    g.op("Squeeze", [x, g.const([1], i64)], "waveform")
    g.op("Mul", ["token_lengths", g.const(TTS_FRAMES_PER_TOKEN * TTS_HOP, i64)], "wave_lengths")
    inputs = [
        helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "chars"]),
        helper.make_tensor_value_info("token_lengths", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("emotion", TensorProto.INT64, ["batch"]),
    ]
    outputs = [
        helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"]),
        helper.make_tensor_value_info("wave_lengths", TensorProto.INT64, ["batch"]),
    ]
    meta = {"asrtk.task": "tts", "asrtk.preset": preset.name, "asrtk.symbols": json.dumps(symbols)}
    return g.build(inputs, outputs, meta)


BUILDERS = {"asr": build_asr, "emotion": build_emotion, "tts": build_tts}
