"""Expected cache hit ratios (``toolkit.capacity.cache``) against simulated caches fed the same traffic."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

from toolkit.capacity.cache import (characteristic_time, expected_distinct, lru_hit_ratio, lru_hit_ratio_run,
                                    popularity, repeat_ratio)


def simulate(p: np.ndarray, entries: int | None, requests: int, before: int = 0, seed: int = 1) -> float:
    """Hit ratio of requests ``before+1 .. before+requests`` drawn independently from ``p``, through an
    LRU cache of ``entries`` items (None: a cache that keeps everything), empty at the start."""
    draws = np.random.default_rng(seed).choice(len(p), size=before + requests, p=p)
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for k, item in enumerate(draws.tolist()):
        if item in cache:
            cache.move_to_end(item)
            hits += k >= before
        else:
            cache[item] = None
            if entries is not None and len(cache) > entries:
                cache.popitem(last=False)
    return hits / requests


def test_popularity_is_zipf_or_uniform_and_sums_to_one() -> None:
    p = popularity(1000, "zipf", 1.1)
    assert p.sum() == pytest.approx(1.0) and np.all(np.diff(p) < 0)
    assert p[0] / p[9] == pytest.approx(10 ** 1.1)
    assert np.allclose(popularity(50, "zipf", 0.0), 1 / 50)
    assert np.allclose(popularity(50, "uniform"), 1 / 50)
    for bad in ((0, "zipf", 1.0), (10, "pareto", 1.0), (10, "zipf", -1.0)):
        with pytest.raises(ValueError):
            popularity(*bad)


@pytest.mark.parametrize(("s", "entries"), [(1.1, 50), (1.1, 500), (0.8, 1000)])
def test_che_matches_an_lru_simulated_over_200k_requests(s: float, entries: int) -> None:
    p = popularity(5000, "zipf", s)
    assert abs(lru_hit_ratio(p, entries) - simulate(p, entries, 200_000)) < 0.01


def test_the_characteristic_time_fills_the_cache_and_a_cache_of_the_catalog_always_hits() -> None:
    p = popularity(5000, "zipf", 1.1)
    t = characteristic_time(p, 500)
    assert float(np.sum(1 - np.exp(-p * t))) == pytest.approx(500, rel=1e-9)
    assert characteristic_time(p, 5000) == math.inf and lru_hit_ratio(p, 5000) == 1.0
    # a larger cache hits more
    assert lru_hit_ratio(p, 100) < lru_hit_ratio(p, 500) < lru_hit_ratio(p, 2000) < 1.0


def test_distinct_items_and_repeats_exactly_for_two_items() -> None:
    p = [0.5, 0.5]
    # two requests: both items with probability 1/2, so 1.5 distinct; the second repeats half the time
    assert expected_distinct(p, 2) == pytest.approx(1.5)
    assert repeat_ratio(p, 2) == pytest.approx(0.25)  # the first never repeats, the second with 1/2
    assert repeat_ratio(p, 1, before=1) == pytest.approx(0.5)
    assert repeat_ratio(p, 0) is None


@pytest.mark.parametrize(("s", "requests", "before"), [(1.1, 3000, 0), (1.1, 3000, 1000), (0.6, 20_000, 2000)])
def test_an_unbounded_cache_hits_every_repeat(s: float, requests: int, before: int) -> None:
    p = popularity(5000, "zipf", s)
    sim = np.mean([simulate(p, None, requests, before, seed=i) for i in range(8)])
    assert abs(repeat_ratio(p, requests, before) - sim) < 0.01


@pytest.mark.parametrize(("entries", "requests", "before"), [(500, 3000, 500), (100, 2000, 1000), (6000, 3000, 500)])
def test_an_lru_cache_in_a_short_run_from_empty(entries: int, requests: int, before: int) -> None:
    p = popularity(5000, "zipf", 1.1)
    sim = np.mean([simulate(p, entries, requests, before, seed=i) for i in range(12)])
    assert abs(lru_hit_ratio_run(p, entries, requests, before) - sim) < 0.01


def test_the_run_estimate_tends_to_its_limits() -> None:
    p = popularity(5000, "zipf", 1.1)
    # a long run forgets the cold start: Che's steady state
    assert lru_hit_ratio_run(p, 500, 1_000_000) == pytest.approx(lru_hit_ratio(p, 500), abs=0.002)
    # a cache larger than the catalog keeps everything: every repeat hits
    assert lru_hit_ratio_run(p, 10_000, 3000, 500) == pytest.approx(repeat_ratio(p, 3000, 500), abs=0.002)
    # an LRU never hits more than a cache that keeps everything
    assert lru_hit_ratio_run(p, 200, 3000) <= repeat_ratio(p, 3000)


def test_the_summary_expects_a_share_weighted_hit_ratio_over_the_entries_of_a_mix() -> None:
    from toolkit.results import expected_cache

    tts = {"scenario": "tts", "repeat": True, "distribution": "zipf", "s": 1.1, "catalog": 5000,
           "cache_entries": None, "share": 0.5}
    emotion = {"scenario": "emotion", "repeat": False, "distribution": "uniform", "s": None, "catalog": 16,
               "cache_entries": None, "share": 0.3}  # no repeat model: it cycles through its 16 clips
    assert expected_cache([emotion], 1000, 100) is None  # no repeat model at all: nothing to expect
    # a stream entry (the other 0.2 of the requests) carries no X-Cache: it has no model
    e = expected_cache([tts, emotion], 1000, 100)
    assert (e["requests"], e["requests_before"]) == (800, 80)
    h_tts = repeat_ratio(popularity(5000, "zipf", 1.1), 500, 50)
    h_emotion = repeat_ratio(popularity(16, "uniform"), 300, 30)
    assert [m["hit_ratio"] for m in e["models"]] == [pytest.approx(h_tts), pytest.approx(h_emotion)]
    assert e["hit_ratio"] == pytest.approx((0.5 * h_tts + 0.3 * h_emotion) / 0.8)
    assert e["steady_hit_ratio"] is None  # not every model is an LRU of known size
    lru = expected_cache([{**tts, "cache_entries": 200, "share": 1.0}], 1000, 100)
    assert lru["steady_hit_ratio"] == pytest.approx(lru_hit_ratio(popularity(5000, "zipf", 1.1), 200))
    assert lru["hit_ratio"] == pytest.approx(lru_hit_ratio_run(popularity(5000, "zipf", 1.1), 200, 1000, 100))
    assert expected_cache([tts], 0, 0)["hit_ratio"] is None
