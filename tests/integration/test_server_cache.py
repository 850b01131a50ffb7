"""The result cache against a real Redis (Debian's redis-server, started and stopped by PID here).

* a repeated TTS text is a hit, and a second server sharing the Redis hits it from there;
* killing Redis under load costs 0 failed requests: lookups become misses, the server says
  the cache is degraded (gauge and one log line) and /ready stays 200;
* restarting Redis on the same port restores hits.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference_server.launcher import EmbeddedServer

pytestmark = pytest.mark.integration

REDIS = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """One redis-server on 127.0.0.1:PORT, no persistence, stopped by its PID."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Redis":
        assert REDIS
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    if REDIS is None:
        pytest.fail("redis-server is not installed; ./scripts/test.sh installs it (apt-get install redis-server)")
    r = Redis(_free_port(), tmp_path).start()
    yield r
    r.stop()


def _server(redis: Redis, tmp_path: Path, name: str) -> EmbeddedServer:
    return EmbeddedServer("tiny", extra_args=["--cache", f"memory:8MiB,redis://127.0.0.1:{redis.port}/0",
                                              "--max-wait-ms", "0"],
                          ready_timeout_s=300, log_path=tmp_path / f"{name}.log")


def _metric(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", trust_env=False).text
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _tts(c: httpx.Client, text: str) -> httpx.Response:
    return c.post("/api/synthesize", json={"text": text, "emotion": "neutral"})


def test_repeats_hit_and_a_second_server_hits_the_shared_redis(redis: Redis, tmp_path: Path) -> None:
    with _server(redis, tmp_path, "a") as a, _server(redis, tmp_path, "b") as b:
        with httpx.Client(base_url=a.url, timeout=30, trust_env=False) as ca, \
                httpx.Client(base_url=b.url, timeout=30, trust_env=False) as cb:
            first, again = _tts(ca, "a repeated sentence"), _tts(ca, "a repeated sentence")
            shared = _tts(cb, "A repeated   sentence")  # b's memory is empty: Redis has it
            assert [r.headers["x-cache"] for r in (first, again, shared)] == ["miss", "hit", "hit"]
            assert first.content == again.content == shared.content
        assert _metric(a.url, "asrtk_cache_lookups_total", model="tts", level="memory", result="hit") == 1
        assert _metric(b.url, "asrtk_cache_lookups_total", model="tts", level="redis", result="hit") == 1
        assert _metric(b.url, "asrtk_cache_degraded") == 0


def test_redis_killed_under_load_costs_no_request_and_its_return_restores_hits(redis: Redis, tmp_path: Path) -> None:
    with _server(redis, tmp_path, "srv") as srv, httpx.Client(base_url=srv.url, timeout=30, trust_env=False) as c:
        texts = [f"sentence number {i}" for i in range(20)]
        statuses: list[int] = []
        for t in texts:  # warm Redis (and the server's memory level)
            statuses.append(_tts(c, t).status_code)
        redis.stop(signal.SIGKILL)
        t_kill = time.monotonic()
        caches = []
        for i in range(60):  # new texts: misses that must still be served, bounded in count
            r = _tts(c, f"after the kill {i}")
            statuses.append(r.status_code)
            caches.append(r.headers.get("x-cache"))
        took = time.monotonic() - t_kill
        assert statuses == [200] * len(statuses)  # 0 failed requests
        assert set(caches) == {"miss"}
        assert took < 60  # each lookup is bounded by the Redis deadline, not a TCP timeout
        assert httpx.get(srv.url + "/ready", trust_env=False).status_code == 200
        assert _metric(srv.url, "asrtk_cache_degraded") == 1
        assert _metric(srv.url, "asrtk_cache_lookups_total", model="tts", level="redis", result="error") >= 1
        assert "cache degraded: Redis" in srv.log_tail(200)
        assert _tts(c, texts[0]).headers["x-cache"] == "hit"  # the memory level still answers

        redis.start()  # same port, empty: hits come back once entries are stored again
        got, text, i = None, "", 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # new texts: a memory hit would not ask Redis
            text, i = f"stored after the restart {i}", i + 1
            assert _tts(c, text).status_code == 200
            got = _metric(srv.url, "asrtk_cache_degraded")
            if got == 0:
                break
            time.sleep(0.3)
        assert got == 0, "the cache never recovered after Redis came back"
        assert "cache recovered" in srv.log_tail(200)
    with _server(redis, tmp_path, "fresh") as fresh, httpx.Client(base_url=fresh.url, timeout=30, trust_env=False) as c2:
        r = _tts(c2, text)  # a fresh server has an empty memory level: only Redis can make this a hit
        assert r.headers["x-cache"] == "hit"
        assert _metric(fresh.url, "asrtk_cache_lookups_total", model="tts", level="redis", result="hit") == 1
