"""Overload, graceful drain on SIGTERM, API keys and multi-worker metrics, on real server processes."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
import soundfile as sf

from reference_server.launcher import EmbeddedServer

pytestmark = pytest.mark.integration


def _wav(seconds: float, seed: int = 0) -> bytes:
    x = (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _metric(text: str, name: str, labels: str = "") -> float:
    """Value of one series in exposition text; ``labels`` is the exact ``{...}`` body or ""."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(?:\{\})?") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_overload_gives_503_with_retry_after(start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(extra_args=["--max-queue", "2", "--max-batch", "1", "--threads", "1"])
    body = _wav(20.0)

    def post(_: int) -> httpx.Response:
        return httpx.post(srv.url + "/recognize", files={"file": ("a.wav", body, "audio/wav")}, timeout=120)

    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(post, range(24)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected, "24 concurrent requests against --max-queue 2 must overflow"
    assert codes.count(200) >= 1
    for r in rejected:
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full"
    # and it recovers
    assert post(0).status_code == 200
    text = httpx.get(srv.url + "/metrics").text
    assert _metric(text, "asrtk_rejected_requests_total", 'reason="queue_full",route="/recognize"') == len(rejected)


def test_memory_stays_bounded_under_overload(start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(extra_args=["--max-queue", "4", "--threads", "1"])
    body = _wav(150.0)  # 4.8 MB; decoded it is 9.6 MB of float32

    def post(_: int) -> int:
        return httpx.post(srv.url + "/recognize", files={"file": ("a.wav", body, "audio/wav")}, timeout=180).status_code

    # ONNX Runtime's arena grows to the largest batch shape once (~200 MB here) and keeps it:
    # reach that steady state first, then measure what overload adds on top.
    with ThreadPoolExecutor(4) as pool:
        assert 200 in list(pool.map(post, range(4)))
    baseline = _tree_rss(srv.pid)
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(srv.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(32) as pool:
            codes = [c for _ in range(2) for c in pool.map(post, range(32))]
    finally:
        stop.set()
        sampler.join()
    assert 503 in codes and 200 in codes
    # 64 uploads of 4.8 MB (300 MB) hit the server; at most --max-queue 4 are held at once.
    growth_mb = (peak - baseline) / 2**20
    assert growth_mb < 150, f"server RSS grew by {growth_mb:.0f} MB under overload"


def test_sigterm_drains_in_flight_requests(start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(extra_args=["--max-batch", "1", "--threads", "1", "--drain-timeout-s", "120"])
    body = _wav(300.0)  # 10 segments each
    n = 4
    results: list[httpx.Response | BaseException] = []

    def post() -> None:
        try:
            results.append(httpx.post(srv.url + "/recognize", files={"file": ("a.wav", body, "audio/wav")}, timeout=180))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while True:  # all n requests admitted and inference running
        text = httpx.get(srv.url + "/metrics").text
        if (_metric(text, "asrtk_inflight_requests", 'route="/recognize"') == n
                and _metric(text, "asrtk_batch_size_count", 'model="asr"') > 0):
            break
        assert time.monotonic() < deadline, "requests never got in flight"
        time.sleep(0.02)
    srv.send_signal(signal.SIGTERM)
    ready = httpx.get(srv.url + "/ready")
    late = httpx.post(srv.url + "/recognize", files={"file": ("a.wav", _wav(1.0), "audio/wav")})
    for t in threads:
        t.join(180)
    code = srv.wait(60)

    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert late.status_code == 503 and late.json()["error"]["code"] == "draining"
    assert len(results) == n
    for r in results:
        assert isinstance(r, httpx.Response) and r.status_code == 200, r
        assert len(r.json()["segments"]) == 10
    assert code == 0
    assert "drained: no request in flight" in srv.log_tail(50)


def test_api_key(start_server: Callable[..., EmbeddedServer]) -> None:
    key = "s3cret-key-that-must-not-leak"
    srv = start_server(extra_args=["--api-key", key])
    files = {"file": ("a.wav", _wav(1.0), "audio/wav")}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}, {"Authorization": f"Basic {key}"}):
        r = httpx.post(srv.url + "/recognize", files=files, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", headers
    r = httpx.post(srv.url + "/recognize", files=files, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    r = httpx.post(srv.url + "/api/synthesize", json={"text": "hi"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    for open_route in ("/health", "/ready", "/metrics"):
        assert httpx.get(srv.url + open_route).status_code == 200

    import websockets

    async def ws(headers: dict[str, str]) -> str:
        try:
            async with websockets.connect(srv.url.replace("http", "ws", 1) + "/ws/asr", additional_headers=headers) as c:
                await c.send('{"type": "end"}')
                return str((await c.recv()))
        except websockets.exceptions.InvalidStatus as exc:
            return f"refused {exc.response.status_code}"

    assert asyncio.run(ws({})) == "refused 403"
    assert '"final"' in asyncio.run(ws({"Authorization": f"Bearer {key}"}))
    assert srv.stop() == 0
    assert key not in srv.log_path.read_text()


def test_two_workers_aggregate_metrics(start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(workers=2, extra_args=["--max-queue", "16"])
    workers = psutil.Process(srv.pid).children()
    assert len(workers) == 2
    deadline = time.monotonic() + 60
    while _metric(httpx.get(srv.url + "/metrics").text, "asrtk_ready") != 2:  # both workers warmed up
        assert time.monotonic() < deadline, "second worker never became ready"
        time.sleep(0.1)
    body = _wav(1.0)
    n = 20
    for _ in range(n):  # a fresh connection each time: the kernel spreads them over both workers
        assert httpx.post(srv.url + "/recognize", files={"file": ("a.wav", body, "audio/wav")}).status_code == 200
    for _ in range(6):  # whichever worker answers the scrape, it reports the sum over both
        text = httpx.get(srv.url + "/metrics").text
        assert _metric(text, "asrtk_requests_total", 'route="/recognize",status="200"') == n
        assert _metric(text, "asrtk_ready") == 2
        assert _metric(text, "asrtk_queue_capacity", 'model="asr"') == 32
        assert _metric(text, "asrtk_model_info", 'model="asr",preset="tiny",provider="CPUExecutionProvider"') == 1
    assert srv.stop() == 0
    assert not any(w.is_running() for w in workers)


def test_request_past_deadline_gets_504(start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(extra_args=["--request-timeout-s", "0.5", "--max-batch", "1", "--threads", "1"])
    r = httpx.post(srv.url + "/recognize", files={"file": ("long.wav", _wav(900.0), "audio/wav")}, timeout=120)
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "deadline_exceeded"
    ok = httpx.post(srv.url + "/recognize", files={"file": ("a.wav", _wav(1.0), "audio/wav")}, timeout=60)
    assert ok.status_code == 200, ok.text
    text = httpx.get(srv.url + "/metrics").text
    assert _metric(text, "asrtk_rejected_requests_total", 'reason="deadline",route="/recognize"') == 1


def test_start_failure_raises_target_error_with_log_tail(start_server: Callable[..., EmbeddedServer]) -> None:
    from toolkit.errors import TargetError

    with pytest.raises(TargetError, match=r"exited with code 2(.|\n)*--model 'no-such-preset' is not a preset"):
        start_server(preset="no-such-preset")
