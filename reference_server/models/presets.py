"""Model presets and their analytic parameter and FLOP counts.

FLOPs count 2 per multiply-accumulate of MatMul, Conv and ConvTranspose (the ops
that dominate); element-wise ops, softmax and normalisation are left out.
``flops.graph_flops`` measures the same quantity on the built graph's real
shapes, and the unit tests require the two to agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms
N_BINS = N_FFT // 2 + 1
N_MELS = 80
STFT_RIGHT_PAD = N_FFT - HOP  # so that a clip of N samples gives N // HOP frames
SUBSAMPLE = 4
TTS_FRAMES_PER_TOKEN = 6
TTS_HOP = 200  # samples per acoustic frame: 12.5 ms at 16 kHz
TTS_UPSAMPLE = (5, 5, 4, 2)  # product == TTS_HOP
N_EMOTIONS = 9
CARD_CLIP_S = 10.0  # FLOPs per audio second are quoted for a clip this long (attention is quadratic)
CARD_TEXT_CHARS = 100  # FLOPs per character are quoted for a text this long


@dataclass(frozen=True)
class EncoderSpec:
    d_model: int
    layers: int
    heads: int
    ffn: int
    subsample_channels: int


@dataclass(frozen=True)
class TtsSpec:
    d_model: int
    heads: int
    ffn: int
    encoder_layers: int
    decoder_layers: int
    vocoder_channels: int  # halved after every upsampling stage


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    asr: EncoderSpec
    asr_vocab_size: int
    emotion: EncoderSpec
    tts: TtsSpec
    seeds: dict[str, int] = field(default_factory=dict)

    def seed(self, task: str) -> int:
        return self.seeds[task]


def _seeds(base: int) -> dict[str, int]:
    return {"asr": base + 1, "emotion": base + 2, "tts": base + 3}


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        description="fast on a few CPU cores: tests and the default demo",
        asr=EncoderSpec(d_model=144, layers=4, heads=4, ffn=576, subsample_channels=64),
        asr_vocab_size=512,
        emotion=EncoderSpec(d_model=96, layers=2, heads=4, ffn=384, subsample_channels=32),
        tts=TtsSpec(d_model=128, heads=2, ffn=512, encoder_layers=2, decoder_layers=2, vocoder_channels=128),
        seeds=_seeds(1000),
    ),
    "small": Preset(
        name="small",
        description="production-sized small models: tens of millions of parameters, GFLOPs per audio second",
        asr=EncoderSpec(d_model=512, layers=12, heads=8, ffn=2048, subsample_channels=256),
        asr_vocab_size=1024,
        emotion=EncoderSpec(d_model=256, layers=4, heads=4, ffn=1024, subsample_channels=128),
        tts=TtsSpec(d_model=384, heads=4, ffn=1536, encoder_layers=4, decoder_layers=4, vocoder_channels=256),
        seeds=_seeds(2000),
    ),
}


# -- shapes ---------------------------------------------------------------------------------
def stft_frames(samples: int) -> int:
    return (samples + STFT_RIGHT_PAD - N_FFT) // HOP + 1


def _conv_out(n: int) -> int:  # kernel 3, stride 2, no padding
    return (n - 3) // 2 + 1


def encoder_frames(samples: int) -> int:
    """Encoder frames for a (padded) input of ``samples`` samples: 40 ms each."""
    return _conv_out(_conv_out(stft_frames(samples)))


def valid_encoder_frames(length: int) -> int:
    """Encoder frames that belong to a clip of ``length`` samples (what ``out_lengths`` says)."""
    f = length // HOP
    t1 = max(f - 1, 0) // 2
    return max(t1 - 1, 0) // 2


def subsampled_mels() -> int:
    return _conv_out(_conv_out(N_MELS))


# -- analytic counts ------------------------------------------------------------------------
def _layer(d: int, ffn: int) -> tuple[int, int, int]:
    """(params, linear MACs per position, attention MACs per position pair) of one encoder layer."""
    params = 4 * (d * d + d) + 4 * d + (d * ffn + ffn) + (ffn * d + d)
    return params, 4 * d * d + 2 * d * ffn, 2 * d


def _encoder(spec: EncoderSpec, samples: int) -> tuple[int, int, int]:
    """(params, FLOPs, frames) of front end + subsampling + transformer stack (no heads)."""
    c, d = spec.subsample_channels, spec.d_model
    f2 = subsampled_mels()
    t0 = stft_frames(samples)
    t1, t2 = _conv_out(t0), encoder_frames(samples)
    f1 = _conv_out(N_MELS)
    params = (c * 9 + c) + (c * c * 9 + c) + (c * f2 * d + d)
    macs = t0 * 2 * N_BINS * N_FFT + t0 * 2 * N_BINS * N_MELS
    macs += t1 * f1 * c * 9 + t2 * f2 * c * c * 9 + t2 * c * f2 * d
    lp, lin, att = _layer(d, spec.ffn)
    params += spec.layers * lp + 2 * d  # + final LayerNorm
    macs += spec.layers * (t2 * lin + t2 * t2 * att)
    return params, 2 * macs, t2


def asr_counts(preset: Preset, seconds: float = CARD_CLIP_S) -> tuple[int, int]:
    """(params, FLOPs) of the ASR model on one clip of ``seconds``."""
    d, v = preset.asr.d_model, preset.asr_vocab_size
    params, flops, t = _encoder(preset.asr, round(seconds * SAMPLE_RATE))
    return params + d * v + v, flops + 2 * t * d * v


def emotion_counts(preset: Preset, seconds: float = CARD_CLIP_S) -> tuple[int, int]:
    d = preset.emotion.d_model
    params, flops, t = _encoder(preset.emotion, round(seconds * SAMPLE_RATE))
    heads = (d * N_EMOTIONS + N_EMOTIONS) + (d * d + d) + (d * N_EMOTIONS + N_EMOTIONS)
    return params + heads, flops + 2 * (t * d * N_EMOTIONS + d * d + d * N_EMOTIONS)


def vocoder_channels(spec: TtsSpec) -> list[int]:
    return [spec.vocoder_channels // (2**i) for i in range(len(TTS_UPSAMPLE) + 1)]


def upsample_kernel(u: int) -> tuple[int, int]:
    """(kernel, pad) of a ConvTranspose1d with stride u whose output is exactly u times longer."""
    return (2 * u, u // 2) if u % 2 == 0 else (2 * u - 1, (u - 1) // 2)


def tts_counts(preset: Preset, n_symbols: int, chars: int = CARD_TEXT_CHARS) -> tuple[int, int]:
    """(params, FLOPs) of the TTS model on one text of ``chars`` characters."""
    s = preset.tts
    d = s.d_model
    lp, lin, att = _layer(d, s.ffn)
    frames = chars * TTS_FRAMES_PER_TOKEN
    params = n_symbols * d + N_EMOTIONS * d + (s.encoder_layers + s.decoder_layers) * lp + 4 * d + (d * N_MELS + N_MELS)
    macs = s.encoder_layers * (chars * lin + chars * chars * att)
    macs += s.decoder_layers * (frames * lin + frames * frames * att) + frames * d * N_MELS
    ch = vocoder_channels(s)
    params += N_MELS * ch[0] * 7 + ch[0]
    macs += frames * N_MELS * ch[0] * 7
    t = frames
    for u, c_in, c_out in zip(TTS_UPSAMPLE, ch, ch[1:]):
        k, _ = upsample_kernel(u)
        params += c_in * c_out * k + c_out + c_out * c_out * 3 + c_out
        macs += t * c_in * c_out * k
        t *= u
        macs += t * c_out * c_out * 3
    params += ch[-1] * 7 + 1
    macs += t * ch[-1] * 7
    return params, 2 * macs


def model_card(preset_name: str) -> dict:
    """Parameters and FLOPs of a preset's three models, computed analytically (nothing is built)."""
    from reference_server.models.text import tts_symbols

    preset = get_preset(preset_name)
    asr_p, asr_f = asr_counts(preset)
    emo_p, emo_f = emotion_counts(preset)
    tts_p, tts_f = tts_counts(preset, len(tts_symbols()))
    return {
        "preset": preset.name,
        "description": preset.description,
        "asr": {"params": asr_p, "flops_per_audio_s": asr_f / CARD_CLIP_S, "vocab_size": preset.asr_vocab_size,
                "architecture": asdict(preset.asr)},
        "emotion": {"params": emo_p, "flops_per_audio_s": emo_f / CARD_CLIP_S, "architecture": asdict(preset.emotion)},
        "tts": {"params": tts_p, "flops_per_char": tts_f / CARD_TEXT_CHARS,
                "flops_per_audio_s": tts_f / (CARD_TEXT_CHARS * TTS_FRAMES_PER_TOKEN * TTS_HOP / SAMPLE_RATE),
                "architecture": asdict(preset.tts)},
        "flops_reference": f"per audio second at a {CARD_CLIP_S:g} s clip; per character at {CARD_TEXT_CHARS} characters",
        "sample_rate": SAMPLE_RATE,
        "note": "random weights: transcripts, emotion labels and speech are meaningless; compute, memory and batching are real",
    }


def get_preset(name: str) -> Preset:
    from toolkit.errors import UsageError

    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
