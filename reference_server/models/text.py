"""Fixed, deterministic token inventories: the ASR word-piece vocabulary and the TTS symbol table."""

from __future__ import annotations

import itertools

BLANK = "<blank>"
WORD_START = "\u2581"  # sentencepiece's "▁": the piece starts a new word
PAD = "<pad>"
UNK = "<unk>"

_ONSETS = ("", "b", "d", "k", "l", "m", "n", "p", "r", "s", "t", "v", "f", "g", "h", "j", "w", "z",
           "ch", "sh", "th", "st", "tr", "pl", "br", "gr", "kr", "sp")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "ee", "oo")
_CODAS = ("", "n", "r", "s", "t", "l", "m", "nd", "ng", "st")


def asr_vocab(size: int) -> list[str]:
    """``size`` tokens: ``<blank>`` at 0, then syllable pieces, simple ones first, each as word start and as continuation."""
    if size < 2:
        raise ValueError(f"vocabulary size must be >= 2, got {size}")
    pieces: list[str] = []
    for coda, onset, vowel in itertools.product(_CODAS, _ONSETS, _VOWELS):
        syllable = onset + vowel + coda
        pieces.extend((WORD_START + syllable, syllable))
    if size - 1 > len(pieces):
        raise ValueError(f"vocabulary size must be <= {len(pieces) + 1}, got {size}")
    return [BLANK, *pieces[: size - 1]]


def tts_symbols() -> list[str]:
    """Character table: ``<pad>`` 0, ``<unk>`` 1, space, a-z, 0-9, punctuation."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punctuation = list(".,!?;:'\"-()/&%$@#+=*")
    return [PAD, UNK, " ", *letters, *digits, *punctuation]


def pieces_to_text(pieces: list[str]) -> str:
    return "".join(pieces).replace(WORD_START, " ").strip()
