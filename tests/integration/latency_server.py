"""A test HTTP server with a known latency: deterministic delays or periodic freezes.

Runs as its own process (``python tests/integration/latency_server.py --port 0 ...``),
prints ``listening on http://127.0.0.1:PORT`` once bound. Threaded, HTTP/1.1 keep-alive.

* ``--delays-ms a,b,c``: request k sleeps ``delays[k % len]`` ms; ``GET /truth`` returns the
  service times it really slept (seconds, measured around the sleep), in arrival order.
* ``--freeze-every P --freeze-s F --service-ms s``: every P seconds (from server start) the
  server stalls for F seconds; a request arriving in a stall waits for its end, then every
  request takes ``s`` ms.
* ``--lognormal-ms M --sigma S --scale K --seed N``: each request sleeps ``K·M·exp(S·Z)`` ms,
  Z standard normal from a seeded generator: a known latency distribution (``--scale 1.1`` is
  the same service 10% slower), for the gate's power benchmark.
* ``GET /metrics``: a tiny Prometheus exposition (requests served).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _State:
    delays_s: list[float] = []
    freeze_every_s = 0.0
    freeze_s = 0.0
    service_s = 0.0
    lognormal_s = 0.0
    sigma = 0.0
    rng: "random.Random | None" = None
    t0 = 0.0
    served: list[float] = []
    lock = threading.Lock()
    count = 0
    authorized = 0


S = _State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def _reply(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _work(self) -> None:
        if self.headers.get("Authorization"):
            with S.lock:
                S.authorized += 1
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if S.freeze_every_s > 0:
            with S.lock:
                S.count += 1
            phase = (time.perf_counter() - S.t0) % S.freeze_every_s
            if phase < S.freeze_s:
                time.sleep(S.freeze_s - phase)
            if S.service_s:
                time.sleep(S.service_s)
        elif S.lognormal_s:
            with S.lock:
                S.count += 1
                z = S.rng.gauss(0.0, 1.0) if S.rng is not None else 0.0
            time.sleep(S.lognormal_s * math.exp(S.sigma * z))
        elif S.delays_s:
            with S.lock:
                k = S.count
                S.count += 1
            t = time.perf_counter()
            time.sleep(S.delays_s[k % len(S.delays_s)])
            took = time.perf_counter() - t
            with S.lock:
                S.served.append(took)
        else:
            with S.lock:
                S.count += 1
            if S.service_s:
                time.sleep(S.service_s)
        self._reply(200, b'{"text": "ok", "status": "success"}')

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/truth":
            with S.lock:
                body = json.dumps(S.served).encode()
            self._reply(200, body)
        elif self.path == "/authorized":
            self._reply(200, str(S.authorized).encode())
        elif self.path == "/metrics":
            body = f"# HELP test_requests_total Requests.\n# TYPE test_requests_total counter\ntest_requests_total {S.count}\n"
            self._reply(200, body.encode(), "text/plain; version=0.0.4")
        elif self.path in ("/ready", "/health"):
            self._reply(200, b'{"status": "ok"}')
        else:
            self._work()

    def do_POST(self) -> None:  # noqa: N802
        self._work()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delays-ms", default="")
    ap.add_argument("--freeze-every", type=float, default=0.0)
    ap.add_argument("--freeze-s", type=float, default=0.0)
    ap.add_argument("--service-ms", type=float, default=0.0)
    ap.add_argument("--lognormal-ms", type=float, default=0.0)
    ap.add_argument("--sigma", type=float, default=0.3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    S.lognormal_s, S.sigma, S.rng = a.lognormal_ms * a.scale / 1000.0, a.sigma, random.Random(a.seed)
    S.delays_s = [float(x) / 1000.0 for x in a.delays_ms.split(",") if x.strip()]
    S.freeze_every_s, S.freeze_s, S.service_s = a.freeze_every, a.freeze_s, a.service_ms / 1000.0
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.request_queue_size = 1024
    S.t0 = time.perf_counter()
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


# ------------------------------------------------------------------ helpers for the tests


def start(*args: str, timeout_s: float = 15.0) -> tuple["subprocess.Popen[str]", str]:
    """Start this server as a subprocess; returns (process, base URL)."""
    import subprocess

    proc = subprocess.Popen([sys.executable, __file__, "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            return proc, line.split()[-1]
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("latency server did not start")


def stop(proc: "subprocess.Popen[str]") -> None:
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_bench(args: list[str], timeout_s: float = 180.0, **kw: object) -> "subprocess.CompletedProcess[str]":
    """``asrtk bench ARGS --quiet`` in a subprocess (Locust's gevent patching stays out of pytest)."""
    import subprocess

    from pathlib import Path

    kw.setdefault("cwd", str(Path(__file__).resolve().parents[2]))
    return subprocess.run([sys.executable, "-m", "toolkit", "bench", *args, "--quiet"], capture_output=True,
                          text=True, timeout=timeout_s, **kw)  # type: ignore[call-overload]


def run_dir(out: "object") -> "object":
    from pathlib import Path

    dirs = [p for p in Path(str(out)).iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


if __name__ == "__main__":
    main()
