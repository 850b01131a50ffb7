"""Distributed mode as an attacker would try it: a fake master, a fake worker (issue 15).

Both fakes are real Locust runners (ZeroMQ) in their own processes; the real side is the real
`asrtk worker` / `asrtk bench`. Everything runs on loopback and is bounded in time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import latency_server as ls

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-cluster-secret-0123456789abcdef"

FAKE_MASTER = r"""
import json, pickle, sys, time
import gevent
from locust.env import Environment
port, marker, target, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

class Evil:
    def __reduce__(self):
        import os
        return (os.system, (f"touch {marker}",))

env = Environment()
master = env.create_master_runner(master_bind_host="127.0.0.1", master_bind_port=port)
got = []
for t in ("asrtk_prepared", "asrtk_failed", "asrtk_proof", "asrtk_done"):
    master.register_message(t, lambda environment, msg, t=t, **kw: got.append(t))
deadline = time.monotonic() + 30
while not master.clients and time.monotonic() < deadline:
    gevent.sleep(0.05)
cid = next(iter(master.clients))
scenario = {"name": "x"}
# 1. the old wire format: a pickled object that runs a command when unpickled
master.send_message("asrtk_prepare", {"scenario": pickle.dumps(Evil()), "base_url": target, "headers": {},
                                      "timeout_s": 5, "drain_s": 1, "part": 0, "parts": 1}, client_id=cid)
# 2. the new format, unsigned and wrongly signed (no challenge was answered with the secret)
body = json.dumps({"scenario": scenario, "base_url": target})
master.send_message("asrtk_prepare", {"body": body}, client_id=cid)
master.send_message("asrtk_prepare", {"body": body, "mac": "0" * 64}, client_id=cid)
# 3. a challenge, then a run signed with a guessed secret
master.send_message("asrtk_hello", {"nonce": "a" * 64}, client_id=cid)
deadline = time.monotonic() + 20
while "asrtk_proof" not in got and time.monotonic() < deadline:  # the worker answers the challenge
    gevent.sleep(0.02)
import hashlib, hmac
mac = hmac.new(b"guess-guess-guess-guess", body.encode(), hashlib.sha256).hexdigest()
master.send_message("asrtk_prepare", {"body": body, "mac": mac}, client_id=cid)
master.send_message("asrtk_start", {"delay_s": 0}, client_id=cid)
gevent.sleep(3.0)  # an observation window: would the worker act on any of it?
open(out, "w").write(json.dumps(got))
master.quit()
"""

FAKE_WORKER = r"""
import json, sys, time
import gevent
from locust.env import Environment
port, out = int(sys.argv[1]), sys.argv[2]
env = Environment()
runner = env.create_worker_runner("127.0.0.1", port)
seen = []
def record(t):
    def handler(environment, msg, **kw):
        seen.append({"type": t, "data": repr(msg.data)})
        if t == "asrtk_hello" and len(seen) == 1:  # answer the challenge without the secret
            runner.send_message("asrtk_proof", {"nonce": "b" * 64, "mac": "0" * 64})
    return handler
for t in ("asrtk_hello", "asrtk_prepare", "asrtk_start", "asrtk_stop"):
    runner.register_message(t, record(t))
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    gevent.sleep(0.1)
    open(out, "w").write(json.dumps(seen))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _served(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return int(float(resp.read().decode().split("test_requests_total")[-1].split()[0]))


def test_a_fake_master_cannot_make_a_worker_execute_or_send_anything(tmp_path: Path) -> None:
    server, url = ls.start("--service-ms", "1")
    port, marker, out = _free_port(), tmp_path / "pwned", tmp_path / "master.json"
    master = subprocess.Popen([sys.executable, "-c", FAKE_MASTER, str(port), str(marker), url, str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = None
    try:
        # ZeroMQ connects whenever the other side binds: no ordering between the two processes
        worker = subprocess.Popen([sys.executable, "-m", "toolkit", "worker", "--master", "127.0.0.1",
                                   "--master-port", str(port)], cwd=ROOT, env={**os.environ, "ASRTK_CLUSTER_SECRET": SECRET},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        master_out, _ = master.communicate(timeout=60)
        worker_out, _ = worker.communicate(timeout=30)
    finally:
        for p in (master, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        requests = _served(url)
        ls.stop(server)
    assert out.exists(), master_out[-2000:]
    got = json.loads(out.read_text())
    assert not marker.exists(), "the worker executed the fake master's command"
    assert requests == 0, "the worker sent load for the fake master"
    assert "asrtk_prepared" not in got and "asrtk_done" not in got, got
    assert worker_out.count("ignored a run that was not signed with the cluster secret") >= 3, worker_out[-2000:]


def test_a_fake_worker_gets_no_header_value_and_no_run(tmp_path: Path) -> None:
    server, url = ls.start("--service-ms", "2")
    scen = tmp_path / "probe.yaml"
    scen.write_text("name: probe\nprotocol: {kind: http, method: POST, path: /work, body: none}\n"
                    "load: {mode: open, rate: 20}\nduration_s: 2\nwarmup_s: 0\nseed: 1\nslo: {latency_s: 2.0}\n")
    port, seen_file = _free_port(), tmp_path / "fake-worker.json"
    env = {**os.environ, "ASRTK_CLUSTER_SECRET": SECRET}
    bench = subprocess.Popen([sys.executable, "-m", "toolkit", "bench", "-s", str(scen), "--target", url,
                              "--expect-workers", "1", "--master-port", str(port), "--out", str(tmp_path / "res"),
                              "--header", "Authorization: Bearer topsecret-hdr", "--quiet", "--no-fail-on-slo"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fake = real = None
    try:
        # ZeroMQ connects whenever the master binds: the fake worker may start first
        fake = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, str(port), str(seen_file), "60"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while not (seen_file.exists() and "asrtk_hello" in seen_file.read_text()):
            assert time.monotonic() < deadline and bench.poll() is None, "the fake worker was never challenged"
            time.sleep(0.1)
        real = subprocess.Popen([sys.executable, "-m", "toolkit", "worker", "--master", "127.0.0.1",
                                 "--master-port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        bench_out, _ = bench.communicate(timeout=120)
        real.communicate(timeout=30)
    finally:
        for p in (bench, real, fake):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        ls.stop(server)
    assert bench.returncode == 0, bench_out[-3000:]
    seen = json.loads(seen_file.read_text())
    assert {m["type"] for m in seen if m["type"].startswith("asrtk_")} == {"asrtk_hello"}, seen
    assert "topsecret-hdr" not in seen_file.read_text()
    run = next((tmp_path / "res").glob("*-probe"))
    s = json.loads((run / "summary.json").read_text())
    assert s["requests"]["ok"] > 0 and s["load"]["processes"] == 2  # the local and the real remote worker


@pytest.mark.parametrize("args", [["--master-bind", "0.0.0.0", "--processes", "2"], ["--expect-workers", "1"]])
def test_letting_other_machines_join_needs_a_secret(args: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ASRTK_CLUSTER_SECRET"}
    r = subprocess.run([sys.executable, "-m", "toolkit", "bench", "-s", "emotion", "--target", "http://127.0.0.1:9",
                        *args, "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "set a shared secret with --secret or ASRTK_CLUSTER_SECRET" in r.stderr.strip().splitlines()[-1]
    w = subprocess.run([sys.executable, "-m", "toolkit", "worker", "--master", "10.0.0.2"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert w.returncode == 2 and "cluster secret" in w.stderr
