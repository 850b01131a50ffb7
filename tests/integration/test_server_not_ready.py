"""`asrtk serve --not-ready refuse`: what a proxy with passive health checks (nginx) can see.

nginx retries a refused connection on another server, but not a POST it has sent that got 503.
So in this mode the server listens only while ready: connections are refused while the models
load and from the moment SIGTERM arrives, idle keep-alive connections are closed, and in-flight
requests still finish (asrtk drill's restart drill measures the effect behind nginx).
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import soundfile as sf

from reference_server.launcher import EmbeddedServer
from toolkit.errors import UsageError

pytestmark = pytest.mark.integration


def _wav(seconds: float) -> bytes:
    x = (np.random.default_rng(0).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _inflight(url: str) -> float:
    m = re.search(r'^asrtk_inflight_requests\{route="/recognize"\} (\S+)$', httpx.get(url + "/metrics").text, re.M)
    return float(m.group(1)) if m else 0.0


def test_sigterm_refuses_new_connections_and_finishes_in_flight(start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(extra_args=["--max-batch", "1", "--threads", "1", "--not-ready", "refuse",
                                   "--drain-timeout-s", "120"])
    results: list[httpx.Response | BaseException] = []

    def post() -> None:
        try:
            results.append(httpx.post(srv.url + "/recognize", files={"file": ("a.wav", _wav(300.0), "audio/wav")},
                                      timeout=180))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    worker = threading.Thread(target=post)
    worker.start()
    deadline = time.monotonic() + 60
    while _inflight(srv.url) < 1:
        assert time.monotonic() < deadline, "the request never got in flight"
        time.sleep(0.02)
    idle = httpx.Client(timeout=5)
    assert idle.get(srv.url + "/health").status_code == 200  # a keep-alive connection, idle from now on
    srv.send_signal(signal.SIGTERM)
    time.sleep(0.6)  # past the accept linger
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/ready", timeout=5)  # refused, never 503 draining
    with pytest.raises(httpx.TransportError):
        idle.get(srv.url + "/health")  # its idle connection was closed: a new one is refused
    worker.join(180)
    code = srv.wait(60)
    assert len(results) == 1 and isinstance(results[0], httpx.Response) and results[0].status_code == 200, results
    assert code == 0
    log = srv.log_tail(50)
    assert "listener closed: new connections are refused; draining 1 in-flight request(s)" in log
    assert "drained: no request in flight" in log


def test_connections_are_refused_until_the_models_are_ready(asrtk_cache_dir: object) -> None:
    from toolkit.runs.fleet import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "reference_server", "--port", str(port), "--threads", "1",
                             "--not-ready", "refuse"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[int | str] = []
    try:
        deadline = time.monotonic() + 120
        while not seen or seen[-1] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, seen[-5:]
            try:
                seen.append(httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code)
            except httpx.ConnectError:
                seen.append("refused")
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert seen[0] == "refused" and 503 not in seen, seen  # never "503 starting": refused, then ready


def test_refuse_and_a_drain_grace_exclude_each_other() -> None:
    from reference_server.config import ServerConfig

    with pytest.raises(UsageError, match="--drain-grace-s keeps the listener open"):
        ServerConfig(not_ready="refuse", drain_grace_s=5)
    with pytest.raises(UsageError, match="--not-ready must be respond or refuse"):
        ServerConfig(not_ready="maybe")
    assert ServerConfig().not_ready == "respond"
