"""Repeated traffic: catalog draws by popularity, payloads built from the item number on demand, bounded."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.capacity.cache import popularity
from toolkit.corpus import (SIGNATURE_SAMPLES, build_corpus, catalog_min_chars, catalog_text, variant_bytes,
                            variant_pcm)
from toolkit.engine.catalog import Catalog
from toolkit.engine.requests import prepare_request_sets
from toolkit.errors import ConfigError
from toolkit.scenario import AudioSpec, RepeatSpec, TextSpec, parse_scenario

SMALL = AudioSpec(median_s=2.0, sigma=0.3, min_s=1.0, max_s=3.0, corpus_size=3, voice="synthetic")


def _scenario(kind: str = "tts", repeat: str = "{distribution: zipf, s: 1.1, catalog: 5000}", extra: str = ""):
    import yaml

    text = "text: {min_chars: 20, max_chars: 80, emotions: [neutral, happy, sad]}\n" if kind == "tts" else ""
    audio = "audio: {median_s: 2, sigma: 0.3, min_s: 1, max_s: 3, corpus_size: 3, voice: synthetic}\n"
    return parse_scenario(yaml.safe_load(f"""name: rep
protocol: {{kind: {kind}}}
{text}{audio if kind != 'tts' else ''}repeat: {repeat}
load: {{rate: 2}}
duration_s: 10
seed: 4
slo: {{latency_s: 1}}
{extra}"""))


def test_draws_follow_the_popularity_and_repeat_for_the_same_seed() -> None:
    cat = Catalog(RepeatSpec(catalog=200, s=1.1), build=lambda i: i)
    rng = random.Random("asrtk-pick/4/0")  # the driver's pick stream: seed 4, process 0
    seq = [cat.draw(rng) for _ in range(100_000)]
    again = random.Random("asrtk-pick/4/0")
    assert [cat.draw(again) for _ in range(1000)] == seq[:1000]  # same seed, same items
    other = random.Random("asrtk-pick/4/1")  # another process of a distributed run: its own stream
    assert [cat.draw(other) for _ in range(1000)] != seq[:1000]
    counts = Counter(seq)
    p = popularity(200, "zipf", 1.1)
    for item in (0, 1, 9, 99):
        assert counts[item] / len(seq) == pytest.approx(p[item], abs=0.004)
    uniform = Catalog(RepeatSpec(catalog=7, distribution="uniform"), build=lambda i: i)
    rng = random.Random(1)
    assert set(uniform.draw(rng) for _ in range(2000)) == set(range(7))


def test_one_draw_takes_one_random_number() -> None:
    cat = Catalog(RepeatSpec(catalog=50, s=1.0), build=lambda i: i)
    a, b = random.Random(9), random.Random(9)
    cat.draw(a)
    b.random()
    assert a.random() == b.random()


def test_payloads_are_built_once_while_kept_and_memory_is_bounded() -> None:
    built: list[int] = []

    def build(i: int) -> bytes:
        built.append(i)
        return bytes(1000)

    cat = Catalog(RepeatSpec(catalog=10_000, s=1.0), build, size=len, max_items=8, max_bytes=5000)
    for i in (1, 2, 1, 1, 2):
        cat.payload(i)
    assert built == [1, 2]  # kept: reused
    for i in range(100, 120):
        cat.payload(i)
    assert cat.kept == 5 and cat.kept_bytes == 5000  # the byte bound binds before the count
    cat.payload(1)
    assert built[-1] == 1  # evicted long ago: built again, the same bytes


def test_tts_items_are_distinct_texts_built_from_the_item_number_alone() -> None:
    spec = TextSpec(min_chars=20, max_chars=80, emotions=("neutral", "happy"))
    texts = [catalog_text(spec, 4, i, 5000) for i in range(5000)]
    assert len(set(t for t, _e in texts)) == 5000
    assert all(20 <= len(t) <= 80 and t.endswith(".") for t, _e in texts)
    assert {e for _t, e in texts} == {"neutral", "happy"}
    assert catalog_text(spec, 4, 4321, 5000) == texts[4321]  # any process, any order
    assert catalog_text(spec, 5, 4321, 5000) != texts[4321]


def test_a_text_too_short_for_the_catalog_is_refused_naming_the_keys() -> None:
    need = catalog_min_chars(5000)
    sc = replace(_scenario(), text=TextSpec(min_chars=5, max_chars=need - 1))
    with pytest.raises(ConfigError, match=rf"text.max_chars {need - 1} is too short for 5000 distinct texts "
                                          rf"\(repeat.catalog\); give at least {need}"):
        prepare_request_sets(sc, {})


def test_a_tts_catalog_sends_the_same_bytes_for_an_item_in_every_process() -> None:
    a, _ = prepare_request_sets(_scenario(), {"Authorization": "Bearer t"})
    b, _ = prepare_request_sets(_scenario(), {"Authorization": "Bearer t"})
    cat_a, cat_b = a[0].catalog, b[0].catalog
    assert cat_a is not None and cat_b is not None and not a[0].requests
    for item in (0, 17, 4999):
        ra, rb = cat_a.payload(item), cat_b.payload(item)
        assert ra.body == rb.body and ra.headers["Authorization"] == "Bearer t" and ra.output_audio
    body = json.loads(cat_a.payload(17).body)
    assert set(body) == {"text", "emotion"}
    assert a[0].popularity() == {"scenario": "rep", "repeat": True, "distribution": "zipf", "s": 1.1,
                                 "catalog": 5000, "cache_entries": None}


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_audio_variants_keep_the_sound_and_differ_in_their_first_samples(tmp_path: Path, fmt: str) -> None:
    clips = build_corpus(replace(SMALL, format=fmt), seed=4, cache_dir=tmp_path)
    base = clips[1]
    assert variant_bytes(base, 0) == base.read_bytes()
    variants = [variant_bytes(base, v) for v in range(1, 40)]
    assert len({hashlib.sha256(v).digest() for v in variants + [base.read_bytes()]}) == 40
    ref, sr = sf.read(str(base.path), dtype="int16")
    got, sr2 = sf.read(io.BytesIO(variants[4]), dtype="int16")  # variant 5 = 0b101
    assert sr2 == sr and len(got) == len(ref)
    assert np.array_equal(got[SIGNATURE_SAMPLES:], ref[SIGNATURE_SAMPLES:])
    assert list(got[:4]) == [3, -3, 3, -3] and np.abs(got[:SIGNATURE_SAMPLES]).max() == 3


def test_stream_variants_patch_the_pcm() -> None:
    pcm = bytes(range(256)) * 10
    assert variant_pcm(pcm, 0) is pcm
    v = variant_pcm(pcm, 2)
    assert len(v) == len(pcm) and v[SIGNATURE_SAMPLES * 2:] == pcm[SIGNATURE_SAMPLES * 2:]
    assert np.frombuffer(v[:8], "<i2").tolist() == [-3, 3, -3, -3]


def test_an_upload_catalog_maps_items_to_corpus_clips_and_their_variants() -> None:
    sets, _ = prepare_request_sets(_scenario("recognize", "{catalog: 30, cache_entries: 10}"), {})
    rs = sets[0]
    cat = rs.catalog
    assert cat is not None
    bodies = {cat.payload(i).body.split(b"\r\n\r\n", 2)[-1] for i in range(30)}  # the file part onwards
    assert len(bodies) == 30
    r3 = cat.payload(3)  # item 3 = clip 0, variant 1: the same audio seconds as item 0
    assert r3.audio_s == cat.payload(0).audio_s and b'filename="clip_0000_1.wav"' in r3.body
    assert rs.popularity()["cache_entries"] == 10


def test_without_a_repeat_model_requests_cycle_through_the_corpus_as_before() -> None:
    sc = _scenario("recognize", "null")
    sets, _ = prepare_request_sets(sc, {})
    assert sets[0].catalog is None and len(sets[0].requests) == 3
    assert sets[0].popularity() == {"scenario": "rep", "repeat": False, "distribution": "uniform", "s": None,
                                    "catalog": 3, "cache_entries": None}
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert sets[0].pick(rng_a) is rng_b.choice(sets[0].requests)  # the same draws as before repeat existed


def test_stream_and_template_catalogs_carry_the_item() -> None:
    sets, _ = prepare_request_sets(_scenario("stream", "{catalog: 9}"), {})
    cat = sets[0].catalog
    items = [cat.payload(i) for i in range(9)]
    assert len({r.pcm for r in items}) == 9 and all(r.chunk_bytes == 6400 for r in items)
    assert items[4].audio_s == items[1].audio_s  # clip 1, variant 1

    import yaml

    sc = parse_scenario(yaml.safe_load("""name: tpl
protocol: {kind: http, path: /v1/x, body: json, json_template: {audio: "{audio_b64}", prompt: "{text}"}}
audio: {median_s: 2, sigma: 0.3, min_s: 1, max_s: 3, corpus_size: 3, voice: synthetic}
text: {min_chars: 20, max_chars: 60}
repeat: {catalog: 40, distribution: uniform}
load: {rate: 1}
duration_s: 5
slo: {latency_s: 1}
"""))
    cat = prepare_request_sets(sc, {})[0][0].catalog
    bodies = [json.loads(cat.payload(i).body) for i in range(40)]
    assert len({b["prompt"] for b in bodies}) == 40 and len({b["audio"] for b in bodies}) == 40
