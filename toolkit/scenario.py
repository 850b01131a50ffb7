"""The scenario model: what traffic ``asrtk bench`` sends, how much of it, and what counts as good.

A scenario is a YAML file (built-in ones live in ``scenarios/``, see ``docs/scenarios.md``)
turned into frozen dataclasses that validate themselves. Errors name the file, the key
and what is expected::

    scenario 'callcenter' (scenarios/callcenter.yaml): load.stages[2].rate must be >= 0, got -5

Timeline convention: ``t_s`` is seconds since the start of the run, warm-up included.
Load stages are laid out from ``t_s = 0``; the last stage holds its rate (or users)
until the run ends, earlier stages beyond the end of the run are never reached.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any, Mapping

from toolkit.errors import ConfigError, UsageError
from toolkit.units import parse_duration

PROTOCOL_KINDS = ("recognize", "funasr", "emotion", "tts", "stream", "http")
DEFAULT_PATHS = {
    "recognize": "/recognize",
    "funasr": "/api/predict/",
    "emotion": "/api/v1/analyze",
    "tts": "/api/synthesize",
    "stream": "/ws/asr",
}
# What each API shape sends by default: (method, body kind, multipart file field).
_PROTOCOL_DEFAULTS = {
    "recognize": ("POST", "multipart", "file"),
    "funasr": ("POST", "json", "file"),
    "emotion": ("POST", "multipart", "audio"),
    "tts": ("POST", "json", "file"),
    "stream": ("GET", "raw", "file"),
    "http": ("POST", "multipart", "file"),
}
BODY_KINDS = ("multipart", "json", "raw", "none")
AUDIO_KINDS = ("generated", "dir")
DISTRIBUTIONS = ("lognormal", "uniform", "fixed")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
VOICES = ("auto", "synthetic", "espeak")
LOAD_MODES = ("open", "closed")
ARRIVALS = ("poisson", "uniform", "bursty")
GRANULARITIES = ("utterance", "frame")
REPEAT_DISTRIBUTIONS = ("zipf", "uniform")
MAX_CATALOG = 1_000_000
TEMPLATE_PLACEHOLDERS = ("{audio_b64}", "{audio_data_url}", "{text}", "{emotion}")
# The nine Emotion2Vec+ classes; TTS emotions index into the same list.
EMOTIONS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class SpecError(ConfigError):
    """A value in a spec is invalid. ``key`` is the dotted path, ``detail`` what is expected."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{key} {detail}")

    def under(self, prefix: str) -> "SpecError":
        sep = "" if not prefix or self.key.startswith("[") else "."
        return SpecError(f"{prefix}{sep}{self.key}" if prefix else self.key, self.detail)


def _check(ok: bool, key: str, detail: str) -> None:
    if not ok:
        raise SpecError(key, detail)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class AudioSpec:
    """Where request audio comes from: a generated speech-like corpus, or a directory of real files.

    ``silence_fraction`` is the share of each generated clip spent in pauses between voiced
    segments. For ``kind="dir"`` only ``dir`` matters: durations are read from the files.
    ``voice``: "auto" uses espeak-ng phrases when espeak-ng is installed, else the built-in
    speech-like generator; "synthetic" always the generator; "espeak" requires espeak-ng.
    """

    kind: str = "generated"
    distribution: str = "lognormal"
    median_s: float = 5.0
    sigma: float = 0.5
    min_s: float = 1.0
    max_s: float = 30.0
    silence_fraction: float = 0.2
    sample_rate: int = 16000
    channels: int = 1
    format: str = "wav"
    corpus_size: int = 16
    dir: Path | None = None
    voice: str = "auto"

    def __post_init__(self) -> None:
        _check(self.kind in AUDIO_KINDS, "kind", f"must be one of {', '.join(AUDIO_KINDS)}, got {self.kind!r}")
        _check(self.distribution in DISTRIBUTIONS, "distribution",
               f"must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}")
        for key in ("median_s", "min_s", "max_s"):
            v = getattr(self, key)
            _check(_finite(v) and v > 0, key, f"must be a number > 0 (seconds), got {v!r}")
        _check(self.min_s <= self.max_s, "max_s", f"must be >= min_s ({self.min_s}), got {self.max_s}")
        _check(self.min_s <= self.median_s <= self.max_s, "median_s",
               f"must lie between min_s ({self.min_s}) and max_s ({self.max_s}), got {self.median_s}")
        _check(self.max_s <= 3600, "max_s", f"must be <= 3600 s, got {self.max_s}")
        _check(_finite(self.sigma) and self.sigma >= 0, "sigma", f"must be a number >= 0, got {self.sigma!r}")
        _check(_finite(self.silence_fraction) and 0 <= self.silence_fraction <= 0.9, "silence_fraction",
               f"must be between 0 and 0.9, got {self.silence_fraction!r}")
        _check(isinstance(self.sample_rate, int) and 8000 <= self.sample_rate <= 192000, "sample_rate",
               f"must be an integer between 8000 and 192000 (Hz), got {self.sample_rate!r}")
        _check(self.channels in (1, 2), "channels", f"must be 1 or 2, got {self.channels!r}")
        _check(self.format in AUDIO_FORMATS, "format",
               f"must be one of {', '.join(AUDIO_FORMATS)}, got {self.format!r}")
        _check(isinstance(self.corpus_size, int) and not isinstance(self.corpus_size, bool)
               and 1 <= self.corpus_size <= 10000, "corpus_size",
               f"must be an integer between 1 and 10000, got {self.corpus_size!r}")
        _check(self.voice in VOICES, "voice", f"must be one of {', '.join(VOICES)}, got {self.voice!r}")
        if self.kind == "dir":
            _check(self.dir is not None, "dir", "is required when kind is 'dir' (a directory of audio files)")


@dataclass(frozen=True)
class TextSpec:
    """Texts sent to TTS: lengths in characters and the emotions to cycle through."""

    min_chars: int = 20
    max_chars: int = 200
    emotions: tuple[str, ...] = ("neutral",)

    def __post_init__(self) -> None:
        for key in ("min_chars", "max_chars"):
            v = getattr(self, key)
            _check(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5000, key,
                   f"must be an integer between 1 and 5000, got {v!r}")
        _check(self.min_chars <= self.max_chars, "max_chars",
               f"must be >= min_chars ({self.min_chars}), got {self.max_chars}")
        _check(len(self.emotions) > 0, "emotions", "must name at least one emotion")
        for i, e in enumerate(self.emotions):
            _check(e in EMOTIONS, f"emotions[{i}]", f"must be one of {', '.join(EMOTIONS)}, got {e!r}")


@dataclass(frozen=True)
class RepeatSpec:
    """Repeated traffic: requests name items of a catalog of ``catalog`` distinct payloads (TTS
    texts, audio clips) by popularity, so that a result cache in the target sees realistic repeats.

    ``zipf``: item ``i`` (0 the most popular) is requested with probability ~ ``1 / (i + 1)^s``;
    ``uniform``: every item alike. ``cache_entries``: the size of the target's LRU cache in items,
    when known, for the expected hit ratio (without it: a cache that keeps everything for the run).
    """

    catalog: int
    distribution: str = "zipf"
    s: float | None = None  # zipf only; default 1.0
    cache_entries: int | None = None

    def __post_init__(self) -> None:
        _check(isinstance(self.catalog, int) and not isinstance(self.catalog, bool)
               and 1 <= self.catalog <= MAX_CATALOG, "catalog",
               f"must be an integer between 1 and {MAX_CATALOG} (distinct items), got {self.catalog!r}")
        _check(self.distribution in REPEAT_DISTRIBUTIONS, "distribution",
               f"must be one of {', '.join(REPEAT_DISTRIBUTIONS)}, got {self.distribution!r}")
        if self.distribution == "zipf":
            if self.s is None:
                object.__setattr__(self, "s", 1.0)
            _check(_finite(self.s) and 0 <= self.s <= 10, "s",
                   f"must be a number between 0 and 10 (the Zipf exponent, e.g. 1.1), got {self.s!r}")
            object.__setattr__(self, "s", float(self.s))  # type: ignore[arg-type]
        else:
            _check(self.s is None, "s", f"applies to distribution 'zipf' only, not {self.distribution!r}")
        if self.cache_entries is not None:
            _check(isinstance(self.cache_entries, int) and not isinstance(self.cache_entries, bool)
                   and self.cache_entries >= 1, "cache_entries",
                   f"must be an integer >= 1 (items the target's LRU cache holds) or null, got {self.cache_entries!r}")


@dataclass(frozen=True)
class Stage:
    """One load stage. ``rate`` (req/s) for open loop, ``users`` for closed loop.

    ``ramp=True`` moves linearly from the previous stage's level (0 for the first stage)
    to this one over ``duration_s``; otherwise the level steps at the stage start.
    """

    duration_s: float
    rate: float | None = None
    users: int | None = None
    ramp: bool = False

    def __post_init__(self) -> None:
        _check(_finite(self.duration_s) and self.duration_s > 0, "duration_s",
               f"must be a number > 0 (seconds), got {self.duration_s!r}")
        if self.rate is not None:
            _check(_finite(self.rate) and self.rate >= 0, "rate", f"must be >= 0 (requests/s), got {self.rate!r}")
        if self.users is not None:
            _check(isinstance(self.users, int) and not isinstance(self.users, bool) and self.users >= 0,
                   "users", f"must be an integer >= 0, got {self.users!r}")


@dataclass(frozen=True)
class LoadSpec:
    """How load is offered: open loop (arrivals at a rate) or closed loop (users with think time).

    ``bursty`` arrivals: within every ``burst_period_s``, the first ``burst_on_fraction`` of it
    runs at ``burst_factor`` x the stage rate and the rest slower, so the mean stays the stage rate.
    """

    mode: str
    stages: tuple[Stage, ...]
    arrival: str = "poisson"
    burst_factor: float = 1.0
    burst_period_s: float = 10.0
    burst_on_fraction: float = 0.2
    think_time_s: float = 0.0
    max_inflight: int = 256

    def __post_init__(self) -> None:
        _check(self.mode in LOAD_MODES, "mode", f"must be 'open' or 'closed', got {self.mode!r}")
        _check(self.arrival in ARRIVALS, "arrival", f"must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        _check(len(self.stages) > 0, "stages", "must hold at least one stage")
        level = "rate" if self.mode == "open" else "users"
        for i, st in enumerate(self.stages):
            _check(getattr(st, level) is not None, f"stages[{i}].{level}", f"is required in {self.mode}-loop mode")
        _check(max(self._levels()) > 0, "stages", f"must have at least one stage with {level} > 0")
        _check(_finite(self.burst_factor) and self.burst_factor >= 1, "burst_factor",
               f"must be a number >= 1, got {self.burst_factor!r}")
        _check(_finite(self.burst_period_s) and self.burst_period_s > 0, "burst_period_s",
               f"must be a number > 0 (seconds), got {self.burst_period_s!r}")
        _check(_finite(self.burst_on_fraction) and 0 < self.burst_on_fraction < 1, "burst_on_fraction",
               f"must be between 0 and 1 (exclusive), got {self.burst_on_fraction!r}")
        if self.arrival == "bursty":
            _check(self.burst_factor * self.burst_on_fraction <= 1, "burst_factor",
                   f"x burst_on_fraction must be <= 1 so the mean rate is kept, got "
                   f"{self.burst_factor} x {self.burst_on_fraction}")
        _check(_finite(self.think_time_s) and self.think_time_s >= 0, "think_time_s",
               f"must be a number >= 0 (seconds), got {self.think_time_s!r}")
        _check(isinstance(self.max_inflight, int) and not isinstance(self.max_inflight, bool)
               and self.max_inflight >= 1, "max_inflight", f"must be an integer >= 1, got {self.max_inflight!r}")

    def _levels(self) -> list[float]:
        attr = "rate" if self.mode == "open" else "users"
        return [float(getattr(s, attr) or 0) for s in self.stages]


@dataclass(frozen=True)
class ProtocolSpec:
    """How one request (or streaming session) is sent.

    Built-in kinds follow the reference server's API shapes; ``http`` is a custom request
    template (method, path, headers, body kind) for other deployments.
    """

    kind: str
    method: str = ""
    path: str = ""
    headers: Mapping[str, str] = dc_field(default_factory=dict)
    body: str = ""
    field: str = ""
    form: Mapping[str, str] = dc_field(default_factory=dict)
    json_template: Mapping[str, Any] | None = None
    hotwords: str = ""
    language: str = "auto"
    itn: bool = True
    granularity: str = "utterance"
    chunk_ms: int = 200
    realtime: bool = True
    expect_status: int = 200

    def __post_init__(self) -> None:
        _check(self.kind in PROTOCOL_KINDS, "kind", f"must be one of {', '.join(PROTOCOL_KINDS)}, got {self.kind!r}")
        method, body, fld = _PROTOCOL_DEFAULTS[self.kind]
        if not self.method:
            object.__setattr__(self, "method", method)
        object.__setattr__(self, "method", str(self.method).upper())
        if not self.body:
            object.__setattr__(self, "body", body)
        if not self.field:
            object.__setattr__(self, "field", fld)
        if not self.path:
            _check(self.kind != "http", "path", "is required for kind 'http' (e.g. /v1/transcribe)")
            object.__setattr__(self, "path", DEFAULT_PATHS[self.kind])
        object.__setattr__(self, "headers", dict(self.headers))
        object.__setattr__(self, "form", dict(self.form))
        _check(self.method in HTTP_METHODS, "method", f"must be one of {', '.join(HTTP_METHODS)}, got {self.method!r}")
        _check(isinstance(self.path, str) and self.path.startswith("/"), "path",
               f"must start with '/', got {self.path!r}")
        _check(self.body in BODY_KINDS, "body", f"must be one of {', '.join(BODY_KINDS)}, got {self.body!r}")
        for k, v in self.headers.items():
            _check(isinstance(k, str) and isinstance(v, str) and k.strip() != "", f"headers.{k}",
                   f"must map a header name to a string value, got {v!r}")
        for k, v in self.form.items():
            _check(isinstance(v, str), f"form.{k}", f"must be a string, got {v!r}")
        _check(isinstance(self.field, str) and self.field != "", "field", "must be a non-empty string")
        if self.json_template is not None:
            _check(isinstance(self.json_template, Mapping), "json_template",
                   f"must be a mapping (JSON object), got {type(self.json_template).__name__}")
        if self.kind == "http" and self.body == "json":
            _check(self.json_template is not None, "json_template",
                   "is required for kind 'http' with body 'json' (placeholders: "
                   + ", ".join(TEMPLATE_PLACEHOLDERS) + ")")
        _check(self.granularity in GRANULARITIES, "granularity",
               f"must be 'utterance' or 'frame', got {self.granularity!r}")
        _check(isinstance(self.chunk_ms, int) and not isinstance(self.chunk_ms, bool)
               and 100 <= self.chunk_ms <= 600, "chunk_ms", f"must be an integer between 100 and 600 (ms), "
               f"got {self.chunk_ms!r}")
        _check(isinstance(self.itn, bool), "itn", f"must be true or false, got {self.itn!r}")
        _check(isinstance(self.realtime, bool), "realtime", f"must be true or false, got {self.realtime!r}")
        _check(isinstance(self.expect_status, int) and 100 <= self.expect_status <= 599, "expect_status",
               f"must be an HTTP status code (100-599), got {self.expect_status!r}")

    @property
    def uses_audio(self) -> bool:
        """False for TTS (text in); a custom http template uses audio unless its body is 'none'."""
        if self.kind == "tts":
            return False
        if self.kind == "http" and self.body == "json" and self.json_template is not None:
            return _template_mentions(self.json_template, ("{audio_b64}", "{audio_data_url}"))
        return not (self.kind == "http" and self.body == "none")

    @property
    def uses_text(self) -> bool:
        if self.kind == "tts":
            return True
        return (self.kind == "http" and self.json_template is not None
                and _template_mentions(self.json_template, ("{text}", "{emotion}")))


def _template_mentions(obj: Any, needles: tuple[str, ...]) -> bool:
    if isinstance(obj, str):
        return any(n in obj for n in needles)
    if isinstance(obj, Mapping):
        return any(_template_mentions(v, needles) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_template_mentions(v, needles) for v in obj)
    return False


@dataclass(frozen=True, kw_only=True)
class SloSpec:
    """The service level objective a run is judged against.

    ``latency_s`` bounds the ``percentile`` latency of requests (for ``stream`` sessions:
    of the final result after the end of audio). ``rtf_max`` bounds the same percentile of
    the real-time factor (latency / audio seconds).
    """

    percentile: float = 0.95
    latency_s: float
    rtf_max: float | None = None
    max_error_rate: float = 0.01
    partial_latency_s: float | None = None
    final_latency_s: float | None = None

    def __post_init__(self) -> None:
        _check(_finite(self.percentile) and 0.5 <= self.percentile < 1, "percentile",
               f"must be a fraction between 0.5 and 1 (e.g. 0.95), got {self.percentile!r}")
        _check(_finite(self.latency_s) and self.latency_s > 0, "latency_s",
               f"must be a number > 0 (seconds), got {self.latency_s!r}")
        for key in ("rtf_max", "partial_latency_s", "final_latency_s"):
            v = getattr(self, key)
            if v is not None:
                _check(_finite(v) and v > 0, key, f"must be a number > 0 or null, got {v!r}")
        _check(_finite(self.max_error_rate) and 0 <= self.max_error_rate <= 1, "max_error_rate",
               f"must be a fraction between 0 and 1, got {self.max_error_rate!r}")


@dataclass(frozen=True)
class MixEntry:
    weight: float
    scenario: "Scenario"

    def __post_init__(self) -> None:
        _check(_finite(self.weight) and self.weight > 0, "weight", f"must be a number > 0, got {self.weight!r}")


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A complete workload. For a mix (``mix`` non-empty) ``protocol``/``audio``/``text`` of the
    parent are those of its first entry and are not used: each entry brings its own; the
    parent's load, duration, warm-up, seed and SLO apply to the whole run.

    ``repeat`` (a popularity model over a catalog of payloads) belongs to the scenario that sends
    the requests; a mix's own ``repeat`` is only the default its entries were given at load time.
    """

    name: str
    description: str = ""
    protocol: ProtocolSpec
    audio: AudioSpec
    text: TextSpec | None = None
    load: LoadSpec
    duration_s: float
    warmup_s: float = 0.0
    seed: int = 0
    slo: SloSpec
    repeat: RepeatSpec | None = None
    mix: tuple[MixEntry, ...] = ()
    source: str = "<python>"

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name) is not None,
               "name", f"must be letters, digits, '-', '_' or '.', got {self.name!r}")
        _check(_finite(self.duration_s) and self.duration_s > 0, "duration_s",
               f"must be a number > 0 (seconds), got {self.duration_s!r}")
        _check(_finite(self.warmup_s) and self.warmup_s >= 0, "warmup_s",
               f"must be a number >= 0 (seconds), got {self.warmup_s!r}")
        _check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0, "seed",
               f"must be an integer >= 0, got {self.seed!r}")
        if self.protocol.uses_text:
            _check(self.text is not None, "text", f"is required for protocol kind {self.protocol.kind!r}")
        if self.repeat is not None and not self.mix:
            _check(self.protocol.uses_audio or self.protocol.uses_text, "repeat",
                   f"needs a protocol that sends audio or text; {self.protocol.kind!r} with body "
                   f"{self.protocol.body!r} sends neither")
        for i, entry in enumerate(self.mix):
            _check(not entry.scenario.mix, f"mix[{i}].scenario",
                   f"must not itself be a mix, got {entry.scenario.name!r}")

    @property
    def is_mix(self) -> bool:
        return bool(self.mix)

    def leaves(self) -> tuple[Scenario, ...]:
        """The scenarios that actually send requests: the mix entries, or this scenario."""
        return tuple(e.scenario for e in self.mix) if self.mix else (self,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings, tuples as lists)."""
        return _jsonable(asdict(self))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def scenario_from_dict(d: Any, source: str = "<wire>") -> Scenario:
    """The inverse of :meth:`Scenario.to_dict`, validated like a YAML file: what a distributed
    load-generator worker receives from its master (plain JSON data, never code).

    Every section goes through the same checks as a scenario file (unknown keys, types, ranges);
    a malformed document raises :class:`ConfigError` naming the key.
    """
    try:
        return _from_wire(d, source, depth=0)
    except SpecError as exc:
        raise ConfigError(f"scenario ({source}): {exc.key} {exc.detail}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"scenario ({source}): malformed: {type(exc).__name__}") from None


def _from_wire(d: Any, source: str, depth: int) -> Scenario:
    _check(isinstance(d, dict), "(top level)", f"must be a mapping, got {type(d).__name__}")
    _known(d, tuple(f.name for f in fields(Scenario)), "")
    for key in ("protocol", "audio", "load", "slo"):
        _check(isinstance(d.get(key), dict), key, "must be a mapping")
    protocol = _section(ProtocolSpec, d["protocol"], "protocol", tuple_keys=())
    audio = _section(AudioSpec, d["audio"], "audio", tuple_keys=(), paths=("dir",))
    text = _section(TextSpec, d["text"], "text", tuple_keys=("emotions",)) if d.get("text") is not None else None
    repeat = _repeat(d.get("repeat"), "repeat")
    load_d = dict(d["load"])
    _known(load_d, tuple(f.name for f in fields(LoadSpec)), "load")
    raw_stages = load_d.pop("stages", None)
    _check(isinstance(raw_stages, list) and 0 < len(raw_stages) <= 10_000, "load.stages",
           "must be a non-empty list of stages")
    stages = []
    for i, st in enumerate(raw_stages):
        _check(isinstance(st, dict), f"load.stages[{i}]", "must be a mapping")
        _known(st, tuple(f.name for f in fields(Stage)), f"load.stages[{i}]")
        stages.append(_construct(Stage, f"load.stages[{i}]", **st))
    load = _construct(LoadSpec, "load", stages=tuple(stages), **load_d)
    slo = _section(SloSpec, d["slo"], "slo", tuple_keys=())
    mix: list[MixEntry] = []
    raw_mix = d.get("mix") or []
    _check(isinstance(raw_mix, list) and len(raw_mix) <= 64, "mix", "must be a list of at most 64 entries")
    for i, e in enumerate(raw_mix):
        _check(isinstance(e, dict) and set(e) <= {"weight", "scenario"}, f"mix[{i}]", "must be {weight, scenario}")
        _check(depth == 0, f"mix[{i}].scenario", "must not itself be a mix")
        mix.append(_construct(MixEntry, f"mix[{i}]", weight=e.get("weight"),
                              scenario=_from_wire(e.get("scenario"), source, depth + 1)))
    rest = {k: d[k] for k in ("name", "description", "duration_s", "warmup_s", "seed") if k in d}
    return _construct(Scenario, "", protocol=protocol, audio=audio, text=text, repeat=repeat, load=load, slo=slo,
                      mix=tuple(mix), source=str(d.get("source", source)), **rest)


# ----------------------------------------------------------------------------- run length


def total_duration_s(s: Scenario) -> float:
    """Warm-up plus measured window, seconds. (Rates and user counts over time: toolkit.engine.schedule.)"""
    return s.warmup_s + s.duration_s


# ----------------------------------------------------------------------------- overrides


def with_overrides(
    s: Scenario,
    *,
    rate: float | None = None,
    users: int | None = None,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    seed: int | None = None,
    target_path: str | None = None,
    audio_dir: Path | None = None,
) -> Scenario:
    """Apply CLI flags. ``rate`` forces open loop with one stage at that rate for the whole run;
    ``users`` forces closed loop likewise. Duration/warm-up changes stretch a single-stage load
    to the new run length (multi-stage loads keep their stages; the last one holds)."""
    if rate is not None and users is not None:
        raise UsageError("--rate (open loop) and --users (closed loop) are mutually exclusive; pass one")
    try:
        new_duration = s.duration_s if duration_s is None else float(duration_s)
        new_warmup = s.warmup_s if warmup_s is None else float(warmup_s)
        _check(_finite(new_duration) and new_duration > 0, "--duration", f"must be > 0 seconds, got {duration_s!r}")
        _check(_finite(new_warmup) and new_warmup >= 0, "--warmup", f"must be >= 0 seconds, got {warmup_s!r}")
        total = new_duration + new_warmup
        load = s.load
        if rate is not None:
            _check(_finite(rate) and rate > 0, "--rate", f"must be > 0 requests/s, got {rate!r}")
            load = replace(load, mode="open", stages=(Stage(duration_s=total, rate=float(rate)),))
        elif users is not None:
            _check(isinstance(users, int) and users >= 1, "--users", f"must be an integer >= 1, got {users!r}")
            load = replace(load, mode="closed", stages=(Stage(duration_s=total, users=users),),
                           arrival="poisson")
        elif len(load.stages) == 1 and not load.stages[0].ramp:
            load = replace(load, stages=(replace(load.stages[0], duration_s=total),))
        protocol = s.protocol
        if target_path is not None:
            if s.mix:
                raise UsageError(f"scenario {s.name!r} is a mix of several APIs: the target URL must not "
                                 f"carry a path (got {target_path!r}); give the base URL")
            _check(target_path.startswith("/"), "--target path", f"must start with '/', got {target_path!r}")
            protocol = replace(protocol, path=target_path)
        mix = s.mix
        audio = s.audio
        if audio_dir is not None:
            dir_audio = replace(audio, kind="dir", dir=Path(audio_dir))
            audio = dir_audio
            mix = tuple(replace(e, scenario=replace(e.scenario, audio=replace(e.scenario.audio, kind="dir",
                                                                              dir=Path(audio_dir))))
                        for e in mix)
        return replace(s, load=load, duration_s=new_duration, warmup_s=new_warmup,
                       seed=s.seed if seed is None else seed, protocol=protocol, audio=audio, mix=mix)
    except SpecError as exc:
        raise UsageError(f"scenario {s.name!r}: {exc}") from None


# ----------------------------------------------------------------------------- loading YAML

def builtin_names() -> list[str]:
    """Names of the scenarios shipped in ``scenarios/``."""
    from toolkit.resources import data_dir

    d = data_dir("scenarios")
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_path(name_or_path: str) -> Path:
    """A path to an existing file, or the built-in scenario of that name."""
    from toolkit.resources import data_dir

    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path or p.is_file():
        if not p.is_file():
            raise ConfigError(f"scenario file {str(p)!r} not found; give a path to a YAML file or one of the "
                              f"built-ins: {', '.join(builtin_names())}")
        return p
    builtin = data_dir("scenarios") / f"{name_or_path}.yaml"
    if not builtin.is_file():
        import difflib

        names = builtin_names()
        close = difflib.get_close_matches(name_or_path, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown scenario {name_or_path!r}; {hint}built-ins are: {', '.join(names)} "
                          f"(or give a path to a YAML file)")
    return builtin


def load_scenario(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a scenario YAML file by path, and validate it."""
    return _load(resolve_path(name_or_path), stack=())


def parse_scenario(data: Any, source: str = "<string>", base_dir: Path | None = None) -> Scenario:
    """Build a scenario from already-parsed YAML/JSON data (mix entries resolve relative to ``base_dir``)."""
    return _from_data(data, source, base_dir or Path.cwd(), stack=())


def _load(path: Path, stack: tuple[str, ...]) -> Scenario:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"scenario file {str(path)!r} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"scenario file {str(path)!r}: invalid YAML{where}: {problem}") from exc
    return _from_data(data, str(path), path.parent, stack)


def _from_data(data: Any, source: str, base_dir: Path, stack: tuple[str, ...]) -> Scenario:
    fallback = Path(source).stem if source.endswith((".yaml", ".yml")) else source
    name = data.get("name", fallback) if isinstance(data, dict) else fallback
    try:
        if not isinstance(data, dict):
            raise SpecError("(top level)", f"must be a mapping of keys, got {type(data).__name__}")
        return _scenario(data, str(name), source, base_dir, stack)
    except SpecError as exc:
        raise ConfigError(f"scenario {str(name)!r} ({source}): {exc.key} {exc.detail}") from None


_TOP_KEYS = ("name", "description", "protocol", "audio", "text", "repeat", "load", "duration_s", "warmup_s", "seed",
             "slo", "mix")


def _scenario(d: dict[str, Any], name: str, source: str, base_dir: Path, stack: tuple[str, ...]) -> Scenario:
    _known(d, _TOP_KEYS, "")
    duration_s = _duration(d, "duration_s", None, "")
    warmup_s = _duration(d, "warmup_s", 0.0, "")
    repeat = _repeat(d.get("repeat"), "repeat")
    mix: tuple[MixEntry, ...] = ()
    if "mix" in d:
        mix = _mix(d["mix"], source, base_dir, stack + (str(Path(source).resolve()),), repeat)
    protocol_data = d.get("protocol")
    if mix:
        first = mix[0].scenario
        protocol, audio, text = first.protocol, first.audio, first.text
        for key in ("protocol", "audio", "text"):
            _check(key not in d, key, "must not be given in a mix: each mix entry brings its own")
    else:
        _check(protocol_data is not None, "protocol", "is required (a mapping with at least 'kind')")
        protocol = _section(ProtocolSpec, protocol_data, "protocol", tuple_keys=())
        audio = _section(AudioSpec, d.get("audio") or {}, "audio", tuple_keys=(), paths=("dir",),
                         base_dir=base_dir, durations=("median_s", "min_s", "max_s"))
        text = None
        if d.get("text") is not None:
            text = _section(TextSpec, d["text"], "text", tuple_keys=("emotions",))
    _check("load" in d, "load", "is required (open loop: rate or stages; closed loop: users or stages)")
    load = _load_spec(d["load"], duration_s + warmup_s)
    _check("slo" in d, "slo", "is required (at least latency_s)")
    slo = _section(SloSpec, d["slo"], "slo", tuple_keys=(),
                   durations=("latency_s", "partial_latency_s", "final_latency_s"))
    return _construct(Scenario, "", name=name, description=str(d.get("description", "") or "").strip(),
                      protocol=protocol, audio=audio, text=text, repeat=repeat, load=load, duration_s=duration_s,
                      warmup_s=warmup_s, seed=d.get("seed", 0), slo=slo, mix=mix, source=source)


def _repeat(raw: Any, prefix: str) -> RepeatSpec | None:
    if raw is None:
        return None
    _check(isinstance(raw, dict), prefix,
           f"must be a mapping like {{distribution: zipf, s: 1.1, catalog: 5000}}, got {raw!r}")
    return _section(RepeatSpec, raw, prefix, tuple_keys=())  # type: ignore[no-any-return]


def _mix(raw: Any, source: str, base_dir: Path, stack: tuple[str, ...],
         default_repeat: RepeatSpec | None = None) -> tuple[MixEntry, ...]:
    """The entries of a mix. An entry's ``repeat`` comes from the entry itself, else from its
    scenario file, else from the mix's own ``repeat`` (the default of every entry that sends audio
    or text)."""
    _check(isinstance(raw, list) and len(raw) > 0, "mix",
           "must be a non-empty list of {scenario: NAME|PATH, weight: W}")
    entries = []
    for i, item in enumerate(raw):
        key = f"mix[{i}]"
        _check(isinstance(item, dict), key, f"must be a mapping {{scenario, weight}}, got {item!r}")
        _known(item, ("scenario", "weight", "repeat"), key)
        ref = item.get("scenario")
        _check(isinstance(ref, str) and ref != "", f"{key}.scenario", "is required: a built-in name or a YAML path")
        weight = item.get("weight", 1.0)
        path = Path(ref).expanduser()
        if not path.is_absolute() and (path.suffix in (".yaml", ".yml") or "/" in ref):
            path = base_dir / path
            if not path.is_file():
                raise SpecError(f"{key}.scenario", f"file {str(path)!r} not found")
        else:
            try:
                path = resolve_path(ref)
            except ConfigError as exc:
                raise SpecError(f"{key}.scenario", f"must be a built-in name or a YAML path: {exc}") from None
        if str(path.resolve()) in stack:
            raise SpecError(f"{key}.scenario", f"refers back to a scenario that includes it ({ref!r})")
        sub = _load(path, stack)  # its own errors already name its own file
        _check(not sub.mix, f"{key}.scenario", f"must not itself be a mix, got {sub.name!r}")
        if "repeat" in item:
            repeat = _repeat(item["repeat"], f"{key}.repeat")
        elif sub.repeat is None and (sub.protocol.uses_audio or sub.protocol.uses_text):
            repeat = default_repeat  # the mix's default goes to every entry that sends a payload
        else:
            repeat = sub.repeat
        if repeat != sub.repeat:
            try:
                sub = replace(sub, repeat=repeat)
            except SpecError as exc:
                raise exc.under(key) from None
        entries.append(_construct(MixEntry, key, weight=weight, scenario=sub))
    return tuple(entries)


def _load_spec(raw: Any, total_s: float) -> LoadSpec:
    _check(isinstance(raw, dict), "load", f"must be a mapping, got {raw!r}")
    allowed = ("mode", "rate", "users", "stages", "arrival", "burst_factor", "burst_period_s", "burst_on_fraction",
               "think_time_s", "max_inflight")
    _known(raw, allowed, "load")
    d = dict(raw)
    given = [k for k in ("rate", "users", "stages") if k in d]
    _check(len(given) == 1, "load", f"needs exactly one of rate, users or stages, got {given or 'none'}")
    if "rate" in d:
        mode = d.get("mode", "open")
        _check(mode == "open", "load.mode", f"must be 'open' with load.rate, got {mode!r}")
        rate = _num(d, "rate", "load")
        _check(rate > 0, "load.rate", f"must be > 0 (requests/s), got {rate!r}")
        stages: tuple[Stage, ...] = (_construct(Stage, "load", duration_s=total_s, rate=rate),)
    elif "users" in d:
        mode = d.get("mode", "closed")
        _check(mode == "closed", "load.mode", f"must be 'closed' with load.users, got {mode!r}")
        users = d["users"]
        _check(isinstance(users, int) and not isinstance(users, bool) and users > 0, "load.users",
               f"must be an integer > 0, got {users!r}")
        stages = (_construct(Stage, "load", duration_s=total_s, users=users),)
    else:
        _check("mode" in d, "load.mode", "is required with load.stages ('open' or 'closed')")
        mode = d["mode"]
        stages = _stages(d["stages"], total_s)
    for k in ("rate", "users", "stages", "mode"):
        d.pop(k, None)
    for k in ("burst_period_s", "think_time_s"):
        if k in d:
            d[k] = _duration(d, k, None, "load")
    return _construct(LoadSpec, "load", mode=mode, stages=stages, **d)


def _stages(raw: Any, total_s: float) -> tuple[Stage, ...]:
    _check(isinstance(raw, list) and len(raw) > 0, "load.stages",
           "must be a non-empty list of {duration_s, rate|users, ramp}")
    out = []
    elapsed = 0.0
    for i, item in enumerate(raw):
        key = f"load.stages[{i}]"
        _check(isinstance(item, dict), key, f"must be a mapping {{duration_s, rate|users, ramp}}, got {item!r}")
        _known(item, ("duration_s", "rate", "users", "ramp"), key)
        last = i == len(raw) - 1
        if "duration_s" in item:
            dur = _duration(item, "duration_s", None, key)
        else:
            # Only the last stage may omit its length: it runs to the end of the run.
            _check(last, f"{key}.duration_s", "is required (only the last stage may omit it)")
            dur = max(total_s - elapsed, 1.0)
        rate = _num(item, "rate", key) if "rate" in item else None
        ramp = item.get("ramp", False)
        _check(isinstance(ramp, bool), f"{key}.ramp", f"must be true or false, got {ramp!r}")
        out.append(_construct(Stage, key, duration_s=dur, rate=rate, users=item.get("users"), ramp=ramp))
        elapsed += dur
    return tuple(out)


def _section(cls: type, raw: Any, prefix: str, *, tuple_keys: tuple[str, ...], paths: tuple[str, ...] = (),
             base_dir: Path | None = None, durations: tuple[str, ...] = ()) -> Any:
    _check(isinstance(raw, dict), prefix, f"must be a mapping, got {raw!r}")
    allowed = tuple(f.name for f in fields(cls))
    _known(raw, allowed, prefix)
    kwargs = dict(raw)
    for k in tuple_keys:
        if k in kwargs:
            v = kwargs[k]
            _check(isinstance(v, list), f"{prefix}.{k}", f"must be a list, got {v!r}")
            kwargs[k] = tuple(v)
    for k in paths:
        if kwargs.get(k) is not None:
            p = Path(str(kwargs[k])).expanduser()
            kwargs[k] = p if p.is_absolute() or base_dir is None else base_dir / p
    for k in durations:
        if kwargs.get(k) is not None:
            kwargs[k] = _duration(kwargs, k, None, prefix)
    for k in ("headers", "form"):
        if k in kwargs:
            v = kwargs[k]
            _check(isinstance(v, dict), f"{prefix}.{k}", f"must be a mapping of strings, got {v!r}")
            kwargs[k] = {str(a): b for a, b in v.items()}
    return _construct(cls, prefix, **kwargs)


def _construct(cls: type, prefix: str, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except SpecError as exc:
        raise exc.under(prefix) from None
    except TypeError as exc:  # a required key is missing
        missing = re.findall(r"'(\w+)'", str(exc))
        key = f"{prefix}.{missing[0]}" if prefix and missing else (missing[0] if missing else prefix)
        raise SpecError(key, "is required") from None


def _known(d: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for k in d:
        if k not in allowed:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise SpecError(where, f"is not a known key; expected one of: {', '.join(allowed)}")


def _num(d: Mapping[str, Any], key: str, prefix: str) -> float:
    v = d.get(key)
    where = f"{prefix}.{key}" if prefix else key
    _check(_finite(v), where, f"must be a number, got {v!r}")
    return float(v)


def _duration(d: Mapping[str, Any], key: str, default: float | None, prefix: str) -> float:
    """Seconds as a number, or a string like '500ms', '90s', '2m', '1h'."""
    where = f"{prefix}.{key}" if prefix else key
    if key not in d or d[key] is None:
        _check(default is not None, where, "is required (seconds, e.g. 60 or '2m')")
        return float(default)  # type: ignore[arg-type]
    v = d[key]
    if isinstance(v, str):
        try:
            return parse_duration(v, where, allow_zero=True)  # the one duration parser (toolkit.units)
        except UsageError:
            raise SpecError(where, f"must be seconds or a duration like '500ms', '90s', '2m', got {v!r}") from None
    _check(_finite(v), where, f"must be a number of seconds, got {v!r}")
    return float(v)
