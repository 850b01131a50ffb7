"""``--model PATH.onnx``: a user's own CTC ASR model, checked against asrtk's contract before use."""

from __future__ import annotations

import json
from pathlib import Path

from reference_server.models.runners import AsrRunner, create_session
from toolkit.errors import ModelError

# name -> (ORT type, rank)
CUSTOM_ASR_INPUTS = {"audio": ("tensor(float)", 2), "audio_lengths": ("tensor(int64)", 1)}
CUSTOM_ASR_OUTPUTS = {"log_probs": ("tensor(float)", 3), "out_lengths": ("tensor(int64)", 1)}
VOCAB_KEY = "asrtk.vocab"


def _check(kind: str, path: Path, actual: dict[str, tuple[str, int]], wanted: dict[str, tuple[str, int]],
           allow_extra: bool) -> None:
    for name, (typ, rank) in wanted.items():
        if name not in actual:
            have = ", ".join(sorted(actual)) or "none"
            raise ModelError(f"custom ASR model {path}: missing {kind} {name!r} (has: {have}); see docs/models.md for the contract")
        a_typ, a_rank = actual[name]
        if a_typ != typ:
            raise ModelError(f"custom ASR model {path}: {kind} {name!r} must be {typ}, got {a_typ}")
        if a_rank != rank:
            raise ModelError(f"custom ASR model {path}: {kind} {name!r} must have rank {rank}, got rank {a_rank}")
    extra = sorted(set(actual) - set(wanted))
    if extra and not allow_extra:
        raise ModelError(f"custom ASR model {path}: unexpected {kind}(s) {', '.join(extra)}; it must take only audio and audio_lengths")


def load_custom_asr(
    path: Path, providers: list[str], intra_op_threads: int | None = None, allow_spinning: bool = True
) -> AsrRunner:
    """Load and validate a user's CTC model: audio [B,N] f32 + audio_lengths [B] i64 -> log_probs [B,T,V] + out_lengths [B]."""
    path = Path(path)
    session = create_session(path, providers, intra_op_threads, allow_spinning)
    inputs = {i.name: (i.type, len(i.shape)) for i in session.get_inputs()}
    outputs = {o.name: (o.type, len(o.shape)) for o in session.get_outputs()}
    _check("input", path, inputs, CUSTOM_ASR_INPUTS, allow_extra=False)
    _check("output", path, outputs, CUSTOM_ASR_OUTPUTS, allow_extra=True)
    v_dim = next(o.shape[2] for o in session.get_outputs() if o.name == "log_probs")
    raw = session.get_modelmeta().custom_metadata_map.get(VOCAB_KEY)
    if raw is None:
        return AsrRunner(session, None)
    try:
        vocab = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(f"custom ASR model {path}: metadata {VOCAB_KEY!r} is not valid JSON ({exc.msg}); store a JSON list of strings") from exc
    if not isinstance(vocab, list) or not vocab or not all(isinstance(t, str) for t in vocab):
        raise ModelError(f"custom ASR model {path}: metadata {VOCAB_KEY!r} must be a non-empty JSON list of strings")
    if isinstance(v_dim, int) and v_dim != len(vocab):
        raise ModelError(f"custom ASR model {path}: log_probs has {v_dim} classes but {VOCAB_KEY!r} lists {len(vocab)} tokens")
    return AsrRunner(session, vocab)
