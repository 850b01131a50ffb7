"""The result cache: parsing --cache, the byte-bounded LRU, Redis failures as misses, and the routes' X-Cache.

Redis here is a fake with an injected failure mode and the clock is virtual; the real Redis
is in tests/integration/test_server_cache.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_engine import InProcessServer, encode_audio, serve
from test_server_validation import GOOD_WAV, upload

from reference_server.cache import (
    DEFAULT_MEMORY_BYTES,
    REDIS_RETRY_S,
    CacheSpec,
    CacheSpecError,
    MemoryLevel,
    ResultCache,
    make_key,
    parse_cache,
    tts_text_key,
)
from reference_server.config import ServerConfig
from toolkit.errors import UsageError


@pytest.mark.parametrize(("value", "memory", "redis"), [
    ("memory", DEFAULT_MEMORY_BYTES, None),
    ("memory:64MiB", 64 * 2**20, None),
    ("memory:1GB", 10**9, None),
    ("redis://127.0.0.1:6379/0", None, "redis://127.0.0.1:6379/0"),
    ("memory:1MiB, redis://cache:6380/2", 2**20, "redis://cache:6380/2"),
])
def test_parse_cache(value: str, memory: int | None, redis: str | None) -> None:
    assert parse_cache(value) == CacheSpec(memory, redis)


@pytest.mark.parametrize(("value", "why"), [
    ("", "empty"), ("disk", "use memory"), ("memory:lots", "256MiB"), ("memory:0", "256MiB"),
    ("redis:///0", "needs a host"), ("redis://h:1/x", "must be a number"), ("memory,memory:1MiB", "twice"),
])
def test_bad_cache_values_are_one_line_usage_errors(value: str, why: str) -> None:
    with pytest.raises(CacheSpecError, match=why):
        parse_cache(value)
    with pytest.raises(UsageError, match=why):
        ServerConfig(cache=value)


def test_keys_separate_parts_and_normalise_tts_text() -> None:
    assert make_key("tts", "m", "ab", "c") != make_key("tts", "m", "a", "bc")
    assert make_key("tts", "m", "x") != make_key("tts", "other-model", "x")
    assert tts_text_key("  Hello\t WORLD ") == tts_text_key("hello world")
    assert tts_text_key("\u0130") == "\u0130".lower()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_memory_level_is_an_lru_bounded_in_bytes_with_a_ttl() -> None:
    clock = Clock()
    m = MemoryLevel(10, ttl_s=5, clock=clock)
    assert m.put("a", b"1234") == 0 and m.put("b", b"1234") == 0
    assert m.get("a") == b"1234"  # a is now the most recent
    assert m.put("c", b"1234") == 1  # evicts b, the least recent
    assert m.get("b") is None and m.get("a") and m.get("c") and m.bytes == 8
    assert m.put("huge", b"x" * 11) == 0 and m.get("huge") is None  # over the bound: not stored
    clock.t += 5
    assert m.get("a") is None and m.bytes == 4


class Recorder:
    def __init__(self) -> None:
        self.lookups: list[tuple[str, str, str]] = []
        self.evictions = 0
        self.errors: list[tuple[str, str]] = []
        self.degraded_states: list[bool] = []
        self.bytes = 0
        self.requests: list[tuple[str, bool]] = []

    def request(self, model: str, hit: bool) -> None:
        self.requests.append((model, hit))

    def lookup(self, model: str, level: str, result: str, seconds: float) -> None:
        self.lookups.append((model, level, result))

    def eviction(self, level: str) -> None:
        self.evictions += 1

    def error(self, level: str, op: str) -> None:
        self.errors.append((level, op))

    def degraded(self, on: bool) -> None:
        self.degraded_states.append(on)

    def memory_bytes(self, n: int) -> None:
        self.bytes = n


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.mode = "ok"  # ok | down | hang
        self.calls = 0

    async def _act(self) -> None:
        self.calls += 1
        if self.mode == "down":
            raise ConnectionError("connection refused")
        if self.mode == "hang":
            await asyncio.sleep(30)

    async def get(self, key: str) -> bytes | None:
        await self._act()
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ex: int) -> None:
        await self._act()
        self.data[key] = value

    async def aclose(self) -> None:
        pass


def _cache(redis: FakeRedis, clock: Clock, memory: int | None = 1000) -> tuple[ResultCache, Recorder]:
    rec = Recorder()
    return ResultCache(CacheSpec(memory, "redis://fake:1/0"), 60, rec, redis_client=redis, clock=clock), rec


def test_two_levels_redis_hit_is_promoted_to_memory() -> None:
    redis, clock = FakeRedis(), Clock()
    first, _ = _cache(redis, clock)
    asyncio.run(first.put("k", b"value"))
    second, rec = _cache(redis, clock)  # another worker: empty L1, shared L2
    assert asyncio.run(second.get("tts", "k")) == b"value"
    assert asyncio.run(second.get("tts", "k")) == b"value"
    assert rec.lookups == [("tts", "memory", "miss"), ("tts", "redis", "hit"), ("tts", "memory", "hit")]
    assert rec.requests == [("tts", True), ("tts", True)]  # one outcome per request, whatever the levels


@pytest.mark.parametrize("mode", ["down", "hang"])
def test_failing_redis_is_a_bounded_miss_then_skipped_then_retried(mode: str) -> None:
    redis, clock = FakeRedis(), Clock()
    cache, rec = _cache(redis, clock, memory=None)
    redis.data["k"] = b"v"
    redis.mode = mode

    async def scenario() -> list[bytes | None]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got = [await cache.get("tts", "k")]
        assert loop.time() - t0 < 1.0  # the deadline, not the hang
        got.append(await cache.get("tts", "k"))  # skipped: no call to Redis
        await cache.put("k2", b"x")  # skipped too
        return got

    assert asyncio.run(scenario()) == [None, None]
    assert redis.calls == 1 and cache.is_degraded and rec.degraded_states == [True]
    assert rec.lookups == [("tts", "redis", "error")] * 2 and rec.errors == [("redis", "get")]
    redis.mode = "ok"
    clock.t += REDIS_RETRY_S
    assert asyncio.run(cache.get("tts", "k")) == b"v"
    assert not cache.is_degraded and rec.degraded_states == [True, False]


def test_memory_evictions_are_counted() -> None:
    cache = ResultCache(CacheSpec(10, None), 60, rec := Recorder())
    for i in range(4):
        asyncio.run(cache.put(f"k{i}", b"12345"))
    assert rec.evictions == 2 and rec.bytes == 10


# -- the routes, in process -------------------------------------------------------------------


@pytest.fixture
def cached(tmp_path: Path) -> Iterator[InProcessServer]:
    with serve(ServerConfig(max_audio_s=5, max_body_mb=1, max_wait_ms=0, cache="memory:1MiB")) as srv:
        yield srv


LOOKUPS = "asrtk_cache_lookups_total"


def test_tts_repeat_is_a_hit_with_the_same_audio(cached: InProcessServer) -> None:
    c = cached.client
    first = c.post("/api/synthesize", json={"text": "Hello  world", "emotion": "happy"})
    again = c.post("/api/synthesize", json={"text": "hello world", "emotion": "happy"})
    other = c.post("/api/synthesize", json={"text": "hello world", "emotion": "sad"})
    assert [r.headers["x-cache"] for r in (first, again, other)] == ["miss", "hit", "miss"]
    assert again.content == first.content and again.headers["content-type"] == "audio/wav"
    m = cached.metrics
    assert m.value(LOOKUPS, model="tts", level="memory", result="hit") == 1
    assert m.value(LOOKUPS, model="tts", level="memory", result="miss") == 2
    assert m.value("asrtk_cache_memory_bytes") == len(first.content) + len(other.content)
    assert m.value("asrtk_cache_requests_total", model="tts", result="hit") == 1
    assert m.value("asrtk_cache_requests_total", model="tts", result="miss") == 2


@pytest.mark.parametrize(("route", "field", "extra"), [
    ("/recognize", "file", {}), ("/api/v1/analyze", "audio", {"granularity": "frame"}),
])
def test_audio_repeat_is_a_hit_with_the_same_answer(cached: InProcessServer, route: str, field: str,
                                                    extra: dict[str, str]) -> None:
    c = cached.client
    first = c.post(route, files=upload(GOOD_WAV, field), data=extra)
    again = c.post(route, files=upload(GOOD_WAV, field), data=extra)
    different = c.post(route, files=upload(encode_audio(1.5), field), data=extra)
    assert [r.status_code for r in (first, again, different)] == [200] * 3
    assert [r.headers["x-cache"] for r in (first, again, different)] == ["miss", "hit", "miss"]
    strip = lambda b: {k: v for k, v in b.items() if k != "processing_s"}  # noqa: E731
    assert strip(again.json()) == strip(first.json())


def test_no_cache_no_header(client_without_cache) -> None:  # noqa: ANN001
    r = client_without_cache.post("/api/synthesize", json={"text": "hi"})
    assert r.status_code == 200 and "x-cache" not in r.headers


@pytest.fixture
def client_without_cache() -> Iterator[object]:
    with serve(ServerConfig(max_wait_ms=0)) as srv:
        yield srv.client


def test_predict_shares_asr_entries_with_recognize(cached: InProcessServer) -> None:
    import base64

    url = "data:audio/wav;base64," + base64.b64encode(GOOD_WAV).decode()
    assert cached.client.post("/recognize", files=upload(GOOD_WAV)).headers["x-cache"] == "miss"
    r = cached.client.post("/api/predict/", json={"data": [url, "", "auto", True]})
    assert r.headers["x-cache"] == "hit" and json.loads(r.text)["data"][0] is not None
