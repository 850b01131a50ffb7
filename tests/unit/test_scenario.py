"""Scenario model: built-ins, YAML validation messages, schedule helpers, CLI overrides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from toolkit.errors import ConfigError, UsageError
from toolkit.scenario import (
    AudioSpec,
    LoadSpec,
    ProtocolSpec,
    SloSpec,
    SpecError,
    Stage,
    builtin_names,
    load_scenario,
    total_duration_s,
    with_overrides,
)
from toolkit.engine.schedule import base_rate_at as mean_rate_at
from toolkit.engine.schedule import max_rate as peak_rate
from toolkit.engine.schedule import rate_at as offered_rate_at
from toolkit.engine.schedule import users_at

BUILTINS = {"callcenter", "meeting", "mobile", "funasr", "tts", "emotion", "mixed"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


MINIMAL = """\
name: mini
protocol: {kind: recognize}
load: {rate: 2}
duration_s: 10
slo: {latency_s: 1}
"""


# ----------------------------------------------------------------------------- built-ins


def test_builtin_names_are_the_seven_workloads() -> None:
    assert set(builtin_names()) == BUILTINS


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_loads_and_serialises(name: str) -> None:
    s = load_scenario(name)
    assert s.name == name
    assert s.description
    assert Path(s.source).is_file()
    json.dumps(s.to_dict())  # JSON-ready for summary.json


def test_builtins_use_the_reference_server_api_shapes() -> None:
    kinds = {n: load_scenario(n).protocol for n in BUILTINS - {"mixed"}}
    assert kinds["callcenter"].kind == "recognize" and kinds["callcenter"].path == "/recognize"
    assert kinds["callcenter"].field == "file" and kinds["callcenter"].body == "multipart"
    assert kinds["meeting"].kind == "stream" and kinds["meeting"].path == "/ws/asr"
    assert 100 <= kinds["meeting"].chunk_ms <= 600 and kinds["meeting"].realtime
    assert kinds["funasr"].path == "/api/predict/" and kinds["funasr"].hotwords
    assert kinds["emotion"].path == "/api/v1/analyze" and kinds["emotion"].field == "audio"
    assert kinds["tts"].path == "/api/synthesize" and kinds["tts"].body == "json"


def test_callcenter_defaults_fit_the_laptop_demo_budget() -> None:
    s = load_scenario("callcenter")
    assert s.load.mode == "open" and 0.5 <= s.load.stages[0].rate <= 1.0
    a = s.audio
    assert a.distribution == "lognormal" and 90 <= a.median_s <= 120 and a.min_s == 30 and a.max_s == 600
    assert 8 <= a.corpus_size <= 12
    assert 5 <= s.warmup_s <= 15 and 45 <= s.duration_s <= 60
    assert total_duration_s(s) <= 75  # leaves room for server start and corpus within 90 s
    assert s.slo.latency_s == 10.0 and s.slo.rtf_max == 0.1 and s.slo.percentile == 0.95


def test_meeting_tts_mobile_slos() -> None:
    meeting = load_scenario("meeting")
    assert meeting.slo.partial_latency_s is not None and meeting.slo.final_latency_s is not None
    assert load_scenario("tts").slo.latency_s == 1.2
    assert load_scenario("tts").text is not None and load_scenario("tts").text.min_chars == 20
    mobile = load_scenario("mobile")
    assert mobile.load.arrival == "bursty" and mobile.audio.min_s == 2 and mobile.audio.max_s == 15


def test_slo_thresholds_are_server_histogram_bucket_boundaries() -> None:
    from reference_server.metrics_spec import LATENCY_BUCKETS_S

    for name in BUILTINS:
        slo = load_scenario(name).slo
        for v in (slo.latency_s, slo.partial_latency_s, slo.final_latency_s):
            assert v is None or v in LATENCY_BUCKETS_S, (name, v)


def test_mixed_references_builtins_by_name_with_weights() -> None:
    s = load_scenario("mixed")
    assert s.is_mix
    names = {e.scenario.name for e in s.mix}
    assert names == BUILTINS - {"mixed"}
    assert all(e.weight > 0 for e in s.mix)
    assert s.leaves() == tuple(e.scenario for e in s.mix)


# ----------------------------------------------------------------------------- validation messages


def test_negative_stage_rate_names_file_key_and_value(tmp_path: Path) -> None:
    p = write(tmp_path, "bad.yaml", MINIMAL.replace("load: {rate: 2}", """load:
  mode: open
  stages:
    - {duration_s: 5, rate: 1}
    - {duration_s: 5, rate: 2}
    - {duration_s: 5, rate: -5}"""))
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(p))
    msg = str(exc.value)
    assert msg.startswith(f"scenario 'mini' ({p}): load.stages[2].rate must be >= 0")
    assert "-5" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("protocol: {kind: recognize}", "protocol: {kind: grpc}", "protocol.kind must be one of recognize"),
        ("protocol: {kind: recognize}", "protocol: {kind: recognize, chunk_ms: 50}", "protocol.chunk_ms must be"),
        ("protocol: {kind: recognize}", "protocol: {kind: recognize, colour: red}",
         "protocol.colour is not a known key; expected one of: kind"),
        ("protocol: {kind: recognize}", "protocol: {kind: http}", "protocol.path is required for kind 'http'"),
        ("protocol: {kind: recognize}", "protocol: {kind: http, path: /x, body: json}",
         "protocol.json_template is required"),
        ("load: {rate: 2}", "load: {users: 0}", "load.users must be an integer > 0, got 0"),
        ("load: {rate: 2}", "load: {rate: -5}", "load.rate must be > 0 (requests/s), got -5.0"),
        ("load: {rate: 2}", "load: {mode: closed, stages: [{duration_s: 5, users: 0}]}",
         "load.stages must have at least one stage with users > 0"),
        ("load: {rate: 2}", "load: {rate: 2, users: 3}", "load needs exactly one of rate, users or stages"),
        ("load: {rate: 2}", "load: {rate: 2, arrival: bursty, burst_factor: 10}",
         "load.burst_factor x burst_on_fraction must be <= 1"),
        ("load: {rate: 2}", "load: {mode: open, stages: [{duration_s: 5, users: 3}]}",
         "load.stages[0].rate is required in open-loop mode"),
        ("load: {rate: 2}", "load: {mode: open, stages: [{rate: 1}, {duration_s: 5, rate: 2}]}",
         "load.stages[0].duration_s is required (only the last stage may omit it)"),
        ("slo: {latency_s: 1}", "slo: {latency_s: 1, percentile: 95}", "slo.percentile must be a fraction"),
        ("slo: {latency_s: 1}", "slo: {rtf_max: 0.1}", "slo.latency_s is required"),
        ("slo: {latency_s: 1}", "", "slo is required"),
        ("duration_s: 10", "duration_s: ten", "duration_s must be seconds or a duration like"),
        ("duration_s: 10", "duration_s: 10\naudio: {min_s: 5, max_s: 2, median_s: 3}", "audio.max_s must be >= min_s"),
        ("duration_s: 10", "duration_s: 10\naudio: {silence_fraction: 1.5}", "audio.silence_fraction must be"),
        ("duration_s: 10", "duration_s: 10\naudio: {kind: dir}", "audio.dir is required when kind is 'dir'"),
        ("duration_s: 10", "duration_s: 10\ntext: {emotions: [furious]}", "text.emotions[0] must be one of"),
        ("duration_s: 10", "duration_s: 10\nsurprise: 1", "surprise is not a known key"),
        ("duration_s: 10", "duration_s: 10\nrepeat: {catalog: 0}",
         "repeat.catalog must be an integer between 1 and 1000000 (distinct items), got 0"),
        ("duration_s: 10", "duration_s: 10\nrepeat: {s: 1.1}", "repeat.catalog is required"),
        ("duration_s: 10", "duration_s: 10\nrepeat: {catalog: 9, distribution: pareto}",
         "repeat.distribution must be one of zipf, uniform, got 'pareto'"),
        ("duration_s: 10", "duration_s: 10\nrepeat: {catalog: 9, s: -1}", "repeat.s must be a number between 0 and 10"),
        ("duration_s: 10", "duration_s: 10\nrepeat: {catalog: 9, distribution: uniform, s: 1}",
         "repeat.s applies to distribution 'zipf' only"),
        ("duration_s: 10", "duration_s: 10\nrepeat: {catalog: 9, cache_entries: 0}", "repeat.cache_entries must be"),
        ("duration_s: 10", "duration_s: 10\nrepeat: {catalog: 9, ttl: 3}", "repeat.ttl is not a known key"),
        ("duration_s: 10", "duration_s: 10\nrepeat: 5000", "repeat must be a mapping like"),
        ("protocol: {kind: recognize}", "protocol: {kind: http, path: /x, body: none}\nrepeat: {catalog: 9}",
         "repeat needs a protocol that sends audio or text"),
    ],
)
def test_validation_errors_name_key_and_expectation(tmp_path: Path, old: str, new: str, expected: str) -> None:
    p = write(tmp_path, "s.yaml", MINIMAL.replace(old, new))
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(p))
    msg = str(exc.value)
    assert msg.startswith(f"scenario 'mini' ({p}): "), msg
    assert expected in msg, msg


def test_tts_without_text_section_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "t.yaml", MINIMAL.replace("kind: recognize", "kind: tts"))
    with pytest.raises(ConfigError, match=r"text is required for protocol kind 'tts'"):
        load_scenario(str(p))


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    p = write(tmp_path, "y.yaml", "name: x\nload: [1, 2\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_scenario(str(p))


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    p = write(tmp_path, "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"\(top level\) must be a mapping"):
        load_scenario(str(p))


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(ConfigError) as exc:
        load_scenario("callcentre")
    assert "unknown scenario 'callcentre'" in str(exc.value)
    for n in BUILTINS:
        assert n in str(exc.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(str(tmp_path / "nope.yaml"))


def test_durations_accept_units_and_defaults_fill_in(tmp_path: Path) -> None:
    p = write(tmp_path, "u.yaml", MINIMAL.replace("duration_s: 10", "duration_s: 2m\nwarmup_s: 500ms"))
    s = load_scenario(str(p))
    assert s.duration_s == 120.0 and s.warmup_s == 0.5
    assert s.audio == AudioSpec()  # every audio key has a default
    assert s.load.stages == (Stage(duration_s=120.5, rate=2.0),)
    assert s.slo.percentile == 0.95 and s.slo.max_error_rate == 0.01


def test_custom_http_template(tmp_path: Path) -> None:
    p = write(tmp_path, "h.yaml", MINIMAL.replace("protocol: {kind: recognize}", """protocol:
  kind: http
  method: put
  path: /v2/asr
  headers: {X-Tenant: demo}
  body: json
  json_template: {audio: "{audio_b64}", opts: {lang: en}}
  expect_status: 201"""))
    proto = load_scenario(str(p)).protocol
    assert proto.method == "PUT" and proto.path == "/v2/asr" and proto.headers == {"X-Tenant": "demo"}
    assert proto.uses_audio and not proto.uses_text and proto.expect_status == 201


def test_dir_audio_path_is_relative_to_the_scenario_file(tmp_path: Path) -> None:
    p = write(tmp_path, "d.yaml", MINIMAL + "audio: {kind: dir, dir: clips}\n")
    assert load_scenario(str(p)).audio.dir == tmp_path / "clips"


def test_mix_entries_resolve_relative_paths_and_refuse_nesting(tmp_path: Path) -> None:
    write(tmp_path, "leaf.yaml", MINIMAL)
    parent = write(tmp_path, "parent.yaml", """name: parent
mix:
  - {scenario: leaf.yaml, weight: 3}
  - {scenario: tts, weight: 1}
load: {rate: 1}
duration_s: 5
slo: {latency_s: 2}
""")
    s = load_scenario(str(parent))
    assert [(e.scenario.name, e.weight) for e in s.mix] == [("mini", 3), ("tts", 1)]
    grand = write(tmp_path, "grand.yaml", """name: grand
mix: [{scenario: parent.yaml}]
load: {rate: 1}
duration_s: 5
slo: {latency_s: 2}
""")
    with pytest.raises(ConfigError, match=r"mix\[0\]\.scenario must not itself be a mix"):
        load_scenario(str(grand))


def test_mix_with_protocol_or_bad_weight_is_refused(tmp_path: Path) -> None:
    base = "name: m\nmix: [{scenario: tts, weight: W}]\nload: {rate: 1}\nduration_s: 5\nslo: {latency_s: 2}\n"
    p = write(tmp_path, "m.yaml", base.replace("W", "0"))
    with pytest.raises(ConfigError, match=r"mix\[0\]\.weight must be a number > 0"):
        load_scenario(str(p))
    p = write(tmp_path, "m2.yaml", base.replace("W", "1") + "protocol: {kind: recognize}\n")
    with pytest.raises(ConfigError, match="protocol must not be given in a mix"):
        load_scenario(str(p))
    p = write(tmp_path, "m3.yaml", base.replace("tts", "nonexistent").replace("W", "1"))
    with pytest.raises(ConfigError, match=r"mix\[0\]\.scenario must be a built-in name"):
        load_scenario(str(p))


def test_dataclasses_validate_when_built_in_python() -> None:
    with pytest.raises(SpecError, match=r"^rate must be >= 0"):
        Stage(duration_s=1, rate=-1)
    with pytest.raises(SpecError, match=r"^latency_s must be a number > 0"):
        SloSpec(latency_s=0)
    assert ProtocolSpec(kind="emotion").field == "audio"


# ----------------------------------------------------------------------------- schedule (toolkit.engine.schedule)


def test_stages_steps_ramps_and_last_stage_holds() -> None:
    load = LoadSpec(mode="open", stages=(Stage(10, rate=1.0), Stage(10, rate=3.0, ramp=True), Stage(5, rate=5.0)))
    assert offered_rate_at(load, 0) == 1.0
    assert offered_rate_at(load, 9.99) == 1.0
    assert offered_rate_at(load, 10) == pytest.approx(1.0)
    assert offered_rate_at(load, 15) == pytest.approx(2.0)
    assert offered_rate_at(load, 20) == 5.0
    assert offered_rate_at(load, 1000) == 5.0  # the last stage holds until the run ends
    assert offered_rate_at(load, -1) == 1.0
    assert users_at(load, 5) == 0


def test_first_stage_ramp_starts_from_zero() -> None:
    load = LoadSpec(mode="open", stages=(Stage(10, rate=4.0, ramp=True),))
    assert offered_rate_at(load, 0) == 0.0
    assert offered_rate_at(load, 5) == pytest.approx(2.0)
    assert offered_rate_at(load, 10) == 4.0


def test_bursty_modulation_keeps_the_mean_rate() -> None:
    load = LoadSpec(mode="open", stages=(Stage(100, rate=2.0),), arrival="bursty", burst_factor=4.0,
                    burst_period_s=10.0, burst_on_fraction=0.2)
    assert offered_rate_at(load, 1) == pytest.approx(8.0)
    assert offered_rate_at(load, 5) == pytest.approx(0.5)
    n = 10_000
    mean = sum(offered_rate_at(load, (i + 0.5) * 10.0 / n) for i in range(n)) / n
    assert mean == pytest.approx(2.0, rel=1e-3)
    assert mean_rate_at(load, 1) == 2.0
    assert peak_rate(load) == 8.0


def test_closed_loop_users_with_ramp() -> None:
    load = LoadSpec(mode="closed", stages=(Stage(10, users=10, ramp=True), Stage(10, users=4)))
    assert users_at(load, 0) == 0
    assert users_at(load, 5) == 5
    assert users_at(load, 9.99) == 10  # ramps round to the nearest user
    assert users_at(load, 9.4) == 9
    assert users_at(load, 15) == 4
    assert offered_rate_at(load, 5) == 0.0


# ----------------------------------------------------------------------------- overrides


def test_rate_override_forces_one_open_stage_for_the_whole_run() -> None:
    s = with_overrides(load_scenario("meeting"), rate=3.0, duration_s=5, warmup_s=1)
    assert s.load.mode == "open"
    assert s.load.stages == (Stage(duration_s=6.0, rate=3.0),)
    assert (s.duration_s, s.warmup_s, total_duration_s(s)) == (5.0, 1.0, 6.0)


def test_users_override_forces_closed_loop() -> None:
    s = with_overrides(load_scenario("callcenter"), users=3)
    assert s.load.mode == "closed" and s.load.stages[0].users == 3
    assert users_at(s.load, total_duration_s(s) - 0.1) == 3


def test_duration_override_stretches_a_single_stage() -> None:
    s = with_overrides(load_scenario("mobile"), duration_s=5, warmup_s=1, seed=99)
    assert s.load.stages[0].duration_s == 6.0 and s.seed == 99
    assert s.load.arrival == "bursty"  # arrival shape kept


def test_conflicting_or_invalid_overrides_are_usage_errors() -> None:
    s = load_scenario("callcenter")
    with pytest.raises(UsageError, match="mutually exclusive"):
        with_overrides(s, rate=1, users=2)
    with pytest.raises(UsageError, match=r"--rate must be > 0"):
        with_overrides(s, rate=-1)
    with pytest.raises(UsageError, match=r"--duration must be > 0"):
        with_overrides(s, duration_s=0)
    with pytest.raises(UsageError, match="mix of several APIs"):
        with_overrides(load_scenario("mixed"), target_path="/x")


def test_target_path_and_audio_dir_overrides(tmp_path: Path) -> None:
    s = with_overrides(load_scenario("callcenter"), target_path="/v1/recognize")
    assert s.protocol.path == "/v1/recognize"
    m = with_overrides(load_scenario("mixed"), audio_dir=tmp_path)
    assert all(e.scenario.audio.kind == "dir" and e.scenario.audio.dir == tmp_path for e in m.mix)


def test_total_duration_is_warmup_plus_measure() -> None:
    s = load_scenario("callcenter")
    assert total_duration_s(s) == s.warmup_s + s.duration_s
    assert math.isfinite(total_duration_s(s))


# ----------------------------------------------------------------------------- documentation drift

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


def test_docs_show_every_builtin_verbatim() -> None:
    from toolkit.resources import data_dir

    doc = DOCS.read_text()
    for name in BUILTINS:
        text = (data_dir("scenarios") / f"{name}.yaml").read_text().strip()
        assert text in doc, f"docs/scenarios.md is out of date for {name}.yaml: paste the file again"


def test_docs_describe_every_key() -> None:
    from dataclasses import fields

    from toolkit.scenario import MixEntry, RepeatSpec, Scenario, TextSpec

    doc = DOCS.read_text()
    for cls in (Scenario, ProtocolSpec, AudioSpec, TextSpec, RepeatSpec, LoadSpec, Stage, SloSpec, MixEntry):
        for f in fields(cls):
            if f.name != "source":  # set by the loader, not a YAML key
                assert f"`{f.name}`" in doc, f"docs/scenarios.md does not describe {cls.__name__}.{f.name}"


# -- repeated traffic ------------------------------------------------------------------------------

def test_a_repeat_block_is_read_with_defaults(tmp_path: Path) -> None:
    from toolkit.scenario import RepeatSpec

    s = load_scenario(str(write(tmp_path, "r.yaml", MINIMAL + "repeat: {distribution: zipf, s: 1.1, catalog: 5000}\n")))
    assert s.repeat == RepeatSpec(catalog=5000, distribution="zipf", s=1.1, cache_entries=None)
    assert load_scenario(str(write(tmp_path, "d.yaml", MINIMAL + "repeat: {catalog: 10}\n"))).repeat.s == 1.0
    assert load_scenario(str(write(tmp_path, "n.yaml", MINIMAL))).repeat is None
    assert RepeatSpec(catalog=3, distribution="uniform").s is None


def test_a_mix_entry_takes_its_own_repeat_else_its_files_else_the_mixs(tmp_path: Path) -> None:
    write(tmp_path, "own.yaml", MINIMAL.replace("name: mini", "name: own") + "repeat: {catalog: 7}\n")
    write(tmp_path, "plain.yaml", MINIMAL.replace("name: mini", "name: plain"))
    p = write(tmp_path, "mix.yaml", """name: m
mix:
  - {scenario: ./own.yaml}
  - {scenario: ./plain.yaml}
  - {scenario: ./plain.yaml, repeat: {catalog: 9, distribution: uniform}}
  - {scenario: ./own.yaml, repeat: null}
repeat: {catalog: 5000, s: 0.9}
load: {rate: 2}
duration_s: 10
slo: {latency_s: 1}
""")
    s = load_scenario(str(p))
    got = [(e.scenario.repeat.catalog if e.scenario.repeat else None) for e in s.mix]
    assert got == [7, 5000, 9, None]
    assert s.repeat is not None and s.repeat.catalog == 5000
    bad = write(tmp_path, "bad.yaml", p.read_text().replace("catalog: 9,", "catalog: -9,"))
    with pytest.raises(ConfigError, match=r"mix\[2\]\.repeat\.catalog must be an integer"):
        load_scenario(str(bad))


def test_a_repeat_model_survives_the_wire(tmp_path: Path) -> None:
    from toolkit.scenario import scenario_from_dict

    s = load_scenario(str(write(tmp_path, "r.yaml", MINIMAL + "repeat: {catalog: 50, cache_entries: 8}\n")))
    assert scenario_from_dict(json.loads(json.dumps(s.to_dict()))) == s
    d = s.to_dict()
    d["repeat"]["catalog"] = 0
    with pytest.raises(ConfigError, match="repeat.catalog"):
        scenario_from_dict(d)


# -- the wire form a distributed worker receives (JSON data, never code) -----------------------

@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_scenario_survives_the_wire(name: str) -> None:
    import json

    from toolkit.scenario import scenario_from_dict

    s = load_scenario(name)
    assert scenario_from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(evil=1), "evil"),
    (lambda d: d["load"].update(stages="x"), "load.stages"),
    (lambda d: d["load"]["stages"][0].update(rate=-1), "rate"),
    (lambda d: d.update(protocol=b"\x80\x04cos\nsystem\n"), "protocol"),
    (lambda d: d["slo"].update(latency_s="fast"), "slo"),
    (lambda d: d.update(mix=[{"weight": 1, "scenario": {**d, "mix": [{"weight": 1, "scenario": {}}]}}]), "mix"),
])
def test_a_malformed_wire_scenario_is_refused_naming_the_key(mutate, message: str) -> None:
    import copy

    from toolkit.scenario import scenario_from_dict

    d = copy.deepcopy(load_scenario("emotion").to_dict())
    mutate(d)
    with pytest.raises(ConfigError, match=message):
        scenario_from_dict(d)
