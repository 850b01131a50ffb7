"""The ``--workers N`` supervisor on real processes: restarts, its restart bound, and the drain
as a client that keeps connecting sees it (503 draining, then refused, never a reset)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reference_server.launcher import EmbeddedServer
from reference_server.run import MAX_RESTARTS, RESTART_WINDOW_S

pytestmark = pytest.mark.integration


def _metric(url: str, name: str, **labels: str) -> float | None:
    text = httpx.get(url + "/metrics", timeout=10, trust_env=False).text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def _wait_for(what: str, cond: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> float:
    """Poll ``cond`` until it holds; returns the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout_s, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(poll_s)
    return time.monotonic() - t0


def _worker_pids(srv: EmbeddedServer) -> set[int]:
    try:
        return {c.pid for c in psutil.Process(srv.pid).children()}
    except psutil.NoSuchProcess:
        return set()


@dataclass
class _Call:
    start: float
    end: float
    outcome: str  # "200", another status code, or the exception's class name


class _Load:
    """``n`` POST /recognize at ``rate`` per second, open loop, each on a fresh connection, in a thread."""

    def __init__(self, url: str, body: bytes, rate: float, n: int) -> None:
        self.url, self.body, self.rate, self.n = url, body, rate, n
        self.calls: list[_Call] = []
        self.outstanding = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> "_Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(60)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # new connections: the kernel spreads them over the workers
        with httpx.Client(timeout=30, limits=limits, trust_env=False) as client, ThreadPoolExecutor(8) as pool:
            t0 = time.monotonic()
            for i in range(self.n):
                time.sleep(max(0.0, t0 + i / self.rate - time.monotonic()))
                pool.submit(self._one, client)

    def _one(self, client: httpx.Client) -> None:
        with self._lock:
            self.outstanding += 1
        start = time.monotonic()
        try:
            outcome = str(client.post(self.url + "/recognize", files={"file": ("a.wav", self.body, "audio/wav")}).status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        with self._lock:
            self.outstanding -= 1
            self.calls.append(_Call(start, time.monotonic(), outcome))


def test_killed_worker_is_restarted_while_the_other_serves(
    start_server: Callable[..., EmbeddedServer], audio_clip: Callable[..., bytes]
) -> None:
    srv = start_server(workers=2, extra_args=["--threads", "1"])
    _wait_for("both workers ready", lambda: _metric(srv.url, "asrtk_ready") == 2, 60)
    victim, survivor = sorted(_worker_pids(srv))
    with _Load(srv.url, audio_clip(2.0), rate=20, n=200) as load:
        time.sleep(2.0)  # steady load on both workers
        _wait_for("a request in flight", lambda: load.outstanding >= 1, 6, poll_s=0.001)  # so that the kill may cut it
        before_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        after_kill = time.monotonic()

        def replaced() -> bool:
            pids = _worker_pids(srv)
            return len(pids) == 2 and victim not in pids

        _wait_for("a new worker process", replaced, 10)
        (new_pid,) = _worker_pids(srv) - {survivor}
        ready_again = after_kill + _wait_for("the new worker ready", lambda: _metric(srv.url, "asrtk_ready") == 2, 30)
    calls = load.calls

    assert len(calls) == 200
    errors = [c for c in calls if c.outcome != "200"]
    # only requests that were on the killed worker may fail: at most those outstanding when it died
    outstanding = [c for c in calls if c.start < after_kill and c.end > before_kill]
    assert len(errors) <= len(outstanding), (errors, len(outstanding))
    assert all(c.start < after_kill for c in errors), errors
    served_meanwhile = [c for c in calls if c.outcome == "200" and after_kill < c.start and c.end < ready_again]
    assert served_meanwhile, "the surviving worker answered nothing while the new one started"
    assert _metric(srv.url, "asrtk_worker_restarts_total") == 1
    # the dead worker's live gauges are gone from the sums, whichever worker answers the scrape
    for _ in range(4):
        assert _metric(srv.url, "asrtk_ready") == 2
        assert _metric(srv.url, "asrtk_inflight_requests", route="/recognize") == 0
    assert srv.stop() == 0
    log = srv.log_path.read_text()
    restarted = [line for line in log.splitlines() if "restarted it as pid" in line]
    assert len(restarted) == 1 and f"worker {victim} died (signal SIGKILL)" in restarted[0], restarted
    assert restarted[0].rstrip().endswith(f"pid {new_pid}")


def test_supervisor_gives_up_on_a_worker_that_keeps_dying(start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(workers=2)
    survivor = max(_worker_pids(srv))
    killed: list[int] = []
    deadline = time.monotonic() + 30
    while srv.running:
        assert time.monotonic() < deadline, f"supervisor still running after {len(killed)} kills"
        for pid in _worker_pids(srv) - {survivor} - set(killed):
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                continue
            killed.append(pid)
        time.sleep(0.02)
    assert srv.wait(5) == 1
    assert len(killed) == MAX_RESTARTS + 1, killed
    assert not psutil.pid_exists(survivor), "the supervisor left the other worker running"
    log = srv.log_path.read_text()
    assert log.count("restarted it as pid") == MAX_RESTARTS
    assert (f"worker {killed[-1]} died (signal SIGKILL): already {MAX_RESTARTS} restarts within "
            f"{RESTART_WINDOW_S:.0f} s, giving up: stopping the others") in log
    assert "supervisor exiting with code 1" in log


def test_worker_that_cannot_load_its_models_is_not_restarted(
    start_server: Callable[..., EmbeddedServer], tmp_path: os.PathLike[str]
) -> None:
    from toolkit.errors import TargetError

    broken = os.path.join(tmp_path, "broken.onnx")
    with open(broken, "wb") as f:
        f.write(b"not an onnx model")
    with pytest.raises(TargetError, match="exited with code 1 before it was ready") as info:
        start_server(workers=2, preset=broken)
    log = str(info.value)
    assert "could not load its models" in log and "not restarting it" in log
    assert "restarted it as pid" not in log


def _probe(host: str, port: int) -> str:
    """One fresh connection asking /ready: ``200 ready``, ``503 draining``, ``refused``, ``reset``, ..."""
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((host, port))
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    finally:
        s.close()
    if not data:
        return "closed without an answer"
    head, _, body = data.partition(b"\r\n\r\n")
    return f"{head.split(b' ', 2)[1].decode()} {json.loads(body)['status']}"


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drain_grace_then_refused_never_reset(start_server: Callable[..., EmbeddedServer], workers: int) -> None:
    grace = 1.5
    srv = start_server(workers=workers, extra_args=["--drain-grace-s", str(grace)])
    _wait_for("all workers ready", lambda: _metric(srv.url, "asrtk_ready") == workers, 60)
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    probes: list[tuple[float, str]] = []
    stop = threading.Event()

    def connect_in_a_loop() -> None:
        while not stop.is_set():
            start = time.monotonic()
            probes.append((start, _probe(host, int(port))))
            time.sleep(0.002)

    clients = [threading.Thread(target=connect_in_a_loop) for _ in range(3)]
    for t in clients:
        t.start()
    time.sleep(0.3)
    sigterm = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    code = srv.wait(30)
    exited = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for t in clients:
        t.join(20)

    assert code == 0
    after = [(t - sigterm, outcome) for t, outcome in probes if t >= sigterm]
    odd = [(round(t, 3), o) for t, o in after if o not in {"200 ready", "503 draining", "refused"}]
    assert not odd, f"(seconds after SIGTERM, outcome); the server exited {exited - sigterm:.3f} s after it: {odd}"
    # the signal reaches the workers within a moment; from then on /ready says draining for the grace period
    during = [o for t, o in after if 0.25 <= t < grace]
    assert len(during) > 20 and set(during) == {"503 draining"}, sorted(set(during))
    assert exited - sigterm >= grace
    assert all(o == "refused" for t, o in after if t > exited - sigterm), "connections accepted after the exit"
    assert "refused" in {o for _, o in after}


def test_single_worker_exposes_the_restart_counter(reference_server_url: str) -> None:
    assert _metric(reference_server_url, "asrtk_worker_restarts_total") == 0
