"""Result caches in front of the models, as the TTS and emotion services deploy them.

``--cache memory[:SIZE]`` is an in-process LRU bounded in bytes (L1); ``--cache
redis://HOST:PORT/DB`` is a shared Redis (L2); both (comma-separated) put L1 in front of
L2. Entries expire after ``--cache-ttl-s`` (24 h by default, the TTS service's TTL).

Keys are SHA-256 digests of the model identity and the request as the model sees it (TTS:
the lower-cased, whitespace-collapsed text and the emotion; ASR and emotion: the decoded
16 kHz samples and the parameters that change the answer). Values are bytes: WAV audio or
a JSON document, never pickled.

A Redis that is down or slow never fails a request: every call has a deadline
(``REDIS_TIMEOUT_S``), a failure counts as a miss, marks the cache degraded (a gauge and one
log line) and skips Redis for ``REDIS_RETRY_S`` before the next try; the first success
after that logs the recovery. ``/ready`` is not affected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from toolkit.errors import UsageError
from toolkit.units import parse_size

log = logging.getLogger("reference_server.cache")

DEFAULT_MEMORY_BYTES = 256 * 2**20
REDIS_TIMEOUT_S = 0.2  # per Redis call; past it the lookup is a miss
REDIS_RETRY_S = 1.0  # after a failure, Redis is skipped for this long
KEY_PREFIX = "asrtk:v1:"


class CacheSpecError(ValueError):
    pass


@dataclass(frozen=True)
class CacheSpec:
    memory_bytes: int | None  # None: no L1
    redis_url: str | None  # None: no L2

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(lv for lv, on in (("memory", self.memory_bytes is not None), ("redis", self.redis_url)) if on)


def parse_cache(value: str) -> CacheSpec:
    """``memory``, ``memory:256MiB``, ``redis://127.0.0.1:6379/0`` or both, comma-separated."""
    memory: int | None = None
    redis_url: str | None = None
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        if part == "memory" or part.startswith("memory:"):
            if memory is not None:
                raise CacheSpecError("--cache names memory twice")
            size = part.partition(":")[2]
            if not size:
                memory = DEFAULT_MEMORY_BYTES
            else:
                try:
                    memory = parse_size(size, "--cache memory:SIZE")
                except UsageError:
                    raise CacheSpecError(f"--cache memory:{size}: the size must look like 256MiB or 1GB") from None
        elif part.startswith(("redis://", "rediss://")):
            if redis_url is not None:
                raise CacheSpecError("--cache names Redis twice")
            u = urlsplit(part)
            if not u.hostname:
                raise CacheSpecError(f"--cache {part}: a Redis URL needs a host, e.g. redis://127.0.0.1:6379/0")
            db = u.path.strip("/") or "0"
            if not db.isdigit():
                raise CacheSpecError(f"--cache {part}: the database must be a number, e.g. /0")
            redis_url = part
        else:
            raise CacheSpecError(f"--cache {part!r}: use memory[:SIZE], redis://HOST:PORT/DB, or both separated by a comma")
    if memory is None and redis_url is None:
        raise CacheSpecError("--cache is empty; use memory[:SIZE], redis://HOST:PORT/DB, or both")
    return CacheSpec(memory, redis_url)


def make_key(kind: str, model_identity: str, *parts: bytes | str | memoryview) -> str:
    """Length-prefixed parts, so no two different part lists give the same digest."""
    h = hashlib.sha256()
    for p in (kind, model_identity, *parts):
        b = p.encode("utf-8", "surrogatepass") if isinstance(p, str) else memoryview(p).cast("B")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return KEY_PREFIX + kind + ":" + h.hexdigest()


def tts_text_key(text: str) -> str:
    """What the TTS model sees: lower-cased (its symbol table), runs of whitespace as one space."""
    return " ".join(text.lower().split())


class CacheMetrics(Protocol):
    def request(self, model: str, hit: bool) -> None: ...
    def lookup(self, model: str, level: str, result: str, seconds: float) -> None: ...
    def eviction(self, level: str) -> None: ...
    def error(self, level: str, op: str) -> None: ...
    def degraded(self, on: bool) -> None: ...
    def memory_bytes(self, n: int) -> None: ...


class MemoryLevel:
    """LRU bounded by the bytes of its values (keys and bookkeeping are small next to WAV audio)."""

    def __init__(self, limit_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.bytes = 0
        self._d: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        item = self._d.get(key)
        if item is None:
            return None
        expires, value = item
        if self.clock() >= expires:
            self._pop(key)
            return None
        self._d.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> int:
        """Store; returns how many entries were evicted to make room (a value over the limit is not stored)."""
        if len(value) > self.limit:
            return 0
        if key in self._d:
            self._pop(key)
        self._d[key] = (self.clock() + self.ttl_s, value)
        self.bytes += len(value)
        evicted = 0
        while self.bytes > self.limit:
            self._pop(next(iter(self._d)))
            evicted += 1
        return evicted

    def _pop(self, key: str) -> None:
        _, value = self._d.pop(key)
        self.bytes -= len(value)

    def __len__(self) -> int:
        return len(self._d)


class ResultCache:
    """The levels of ``spec`` in order; ``get`` and ``put`` never raise and never wait long on Redis."""

    def __init__(self, spec: CacheSpec, ttl_s: float, metrics: CacheMetrics, redis_client: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.ttl_s = ttl_s
        self.metrics = metrics
        self.clock = clock
        self.memory = MemoryLevel(spec.memory_bytes, ttl_s, clock) if spec.memory_bytes is not None else None
        self._redis = redis_client
        if spec.redis_url and redis_client is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(spec.redis_url, socket_timeout=REDIS_TIMEOUT_S,
                                            socket_connect_timeout=REDIS_TIMEOUT_S, retry_on_timeout=False)
        self.is_degraded = False
        self._skip_redis_until = 0.0

    @property
    def levels(self) -> tuple[str, ...]:
        return self.spec.levels

    async def get(self, model: str, key: str) -> bytes | None:
        """The cached value (any level) or None; counts the request's outcome once (X-Cache)."""
        value = await self._lookup(model, key)
        self.metrics.request(model, value is not None)
        return value

    async def _lookup(self, model: str, key: str) -> bytes | None:
        if self.memory is not None:
            t0 = time.perf_counter()
            value = self.memory.get(key)
            self.metrics.lookup(model, "memory", "hit" if value is not None else "miss", time.perf_counter() - t0)
            if value is not None:
                return value
        if self._redis is None:
            return None
        if self.clock() < self._skip_redis_until:
            self.metrics.lookup(model, "redis", "error", 0.0)
            return None
        t0 = time.perf_counter()
        try:
            raw = await asyncio.wait_for(self._redis.get(key), timeout=REDIS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - any Redis failure is a miss, never a failed request
            self.metrics.lookup(model, "redis", "error", time.perf_counter() - t0)
            self._failed("get", exc)
            return None
        self._ok()
        self.metrics.lookup(model, "redis", "hit" if raw is not None else "miss", time.perf_counter() - t0)
        if raw is None:
            return None
        value = bytes(raw)
        if self.memory is not None:  # promote to L1: the next lookup of it stays in process
            self._store_memory(key, value)
        return value

    def _store_memory(self, key: str, value: bytes) -> None:
        assert self.memory is not None
        for _ in range(self.memory.put(key, value)):
            self.metrics.eviction("memory")
        self.metrics.memory_bytes(self.memory.bytes)

    async def put(self, key: str, value: bytes) -> None:
        if self.memory is not None:
            self._store_memory(key, value)
        if self._redis is None or self.clock() < self._skip_redis_until:
            return
        try:
            await asyncio.wait_for(self._redis.set(key, value, ex=max(1, int(self.ttl_s))), timeout=REDIS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            self._failed("set", exc)
            return
        self._ok()

    def _failed(self, op: str, exc: BaseException) -> None:
        self.metrics.error("redis", op)
        self._skip_redis_until = self.clock() + REDIS_RETRY_S
        if not self.is_degraded:
            self.is_degraded = True
            self.metrics.degraded(True)
            # the exception's type only: its message may hold the URL (with a password)
            log.warning("cache degraded: Redis %s failed (%s); lookups are misses, retrying every %.0f s",
                        op, type(exc).__name__, REDIS_RETRY_S)

    def _ok(self) -> None:
        if self.is_degraded:
            self.is_degraded = False
            self.metrics.degraded(False)
            log.info("cache recovered: Redis answers again")

    async def close(self) -> None:
        if self._redis is not None:
            try:
                await asyncio.wait_for(self._redis.aclose(), timeout=1.0)
            except Exception:  # noqa: BLE001 - shutting down
                pass
