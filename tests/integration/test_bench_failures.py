"""Failure behaviour: unreachable target, a target dying mid-run, Ctrl-C, secrets, exit codes,
and several load-generator processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import latency_server as ls

pytestmark = pytest.mark.integration


def _scenario(tmp_path: Path, rate: float = 20, duration: float = 6, warmup: float = 1,
              latency_s: float = 2.0) -> Path:
    p = tmp_path / "probe.yaml"
    p.write_text(f"""name: probe
protocol: {{kind: http, method: POST, path: /work, body: none}}
load: {{mode: open, rate: {rate}}}
duration_s: {duration}
warmup_s: {warmup}
seed: 1
slo: {{latency_s: {latency_s}}}
""")
    return p


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return resp.read().decode()


def _until(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _settled(url: str, timeout_s: float = 30) -> str:
    """The /metrics text once two reads 100 ms apart agree (in-flight requests done)."""
    deadline = time.monotonic() + timeout_s
    prev = _metrics(url)
    while True:
        time.sleep(0.1)
        cur = _metrics(url)
        if cur == prev:
            return cur
        assert time.monotonic() < deadline, "the server kept receiving requests after the bench exited"
        prev = cur


def _unchanged_for(url: str, text: str, window_s: float) -> str:
    """Watch /metrics for `window_s` (an observation window, not synchronisation); the last read."""
    end = time.monotonic() + window_s
    cur = text
    while time.monotonic() < end and cur == text:
        time.sleep(0.05)
        cur = _metrics(url)
    return cur


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_target_fails_with_one_line_before_any_load(tmp_path: Path) -> None:
    out = tmp_path / "res"
    url = f"http://127.0.0.1:{_free_port()}"
    r = ls.run_bench(["-s", str(_scenario(tmp_path)), "--target", url, "--out", str(out)], timeout_s=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: target {url} is unreachable") and "--target" in lines[-1]
    assert not out.exists() or not any(out.iterdir())


def test_target_dying_mid_run_counts_errors_and_still_writes_results(tmp_path: Path) -> None:
    proc, url = ls.start("--service-ms", "5")
    out = tmp_path / "res"
    bench = subprocess.Popen([sys.executable, "-m", "toolkit", "bench", "-s", str(_scenario(tmp_path)),
                              "--target", url, "--out", str(out), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert bench.stdout is not None
        for line in bench.stdout:  # kill the target once the measured window has started
            if "measure]" in line:
                break
        ls.stop(proc)
        stdout, stderr = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
        ls.stop(proc)
    s = json.loads((ls.run_dir(out) / "summary.json").read_text())
    assert s["complete"] is True
    assert s["requests"]["ok"] > 0
    assert s["requests"]["by_class"].get("connection", 0) > 0, s["requests"]
    assert s["requests"]["errors"] == sum(s["requests"]["by_class"].values())
    assert s["slo"]["passed"] is False
    # the errors failed the SLO: 3, or 4 (inconclusive) when the summary says the host was disturbed
    doubtful = s["host"]["disturbed"] or not s["loadgen"]["valid"]
    assert bench.returncode == (4 if doubtful else 3), stderr


def test_ctrl_c_stops_the_load_and_writes_partial_results(tmp_path: Path) -> None:
    proc, url = ls.start("--service-ms", "5")
    out = tmp_path / "res"
    bench = subprocess.Popen([sys.executable, "-m", "toolkit", "bench", "-s",
                              str(_scenario(tmp_path, duration=120)), "--target", url, "--out", str(out),
                              "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert bench.stdout is not None
        for line in bench.stdout:
            if "measure]" in line:
                break
        before = _metrics(url)
        _until(lambda: _metrics(url) != before, 30, "the load never reached the server")
        bench.send_signal(signal.SIGINT)
        stdout, stderr = bench.communicate(timeout=60)
        # requests the bench had in flight may still finish: wait until the count stops moving,
        # then watch it for a second -- an orphaned load-generator process would keep it moving
        settled = _settled(url)
        after = _unchanged_for(url, settled, 1.0)
    finally:
        if bench.poll() is None:
            bench.kill()
        ls.stop(proc)
    assert bench.returncode == 130, stderr
    assert settled == after != before  # load ran until Ctrl-C, then really stopped
    s = json.loads((ls.run_dir(out) / "summary.json").read_text())
    assert s["complete"] is False and s["incomplete_reason"] == "interrupted"
    assert 0 < s["duration_s"] < 120 and s["requests"]["ok"] > 0


def test_header_values_reach_the_target_but_never_the_results(tmp_path: Path) -> None:
    proc, url = ls.start("--service-ms", "2")
    out = tmp_path / "res"
    try:
        r = ls.run_bench(["-s", str(_scenario(tmp_path, duration=2)), "--target", url, "--out", str(out),
                          "--header", "Authorization: Bearer s3cr3t-t0ken", "--header", "X-Api-Key: k3y-v4lue"])
        with urllib.request.urlopen(url + "/authorized", timeout=5) as resp:
            seen = int(resp.read())
    finally:
        ls.stop(proc)
    assert r.returncode == 0, r.stderr
    assert seen > 0
    assert "s3cr3t" not in r.stdout + r.stderr
    for f in ls.run_dir(out).iterdir():
        text = f.read_text(errors="replace")
        assert "s3cr3t" not in text and "k3y-v4lue" not in text, f.name


def test_a_failed_slo_exits_3_unless_told_not_to(tmp_path: Path) -> None:
    proc, url = ls.start("--service-ms", "20")
    try:
        args = ["-s", str(_scenario(tmp_path, duration=2, latency_s=0.005)), "--target", url]
        r = ls.run_bench([*args, "--out", str(tmp_path / "res")])
        opted_out = ls.run_bench([*args, "--out", str(tmp_path / "res2"), "--no-fail-on-slo"])
    finally:
        ls.stop(proc)
    s = json.loads((ls.run_dir(tmp_path / "res") / "summary.json").read_text())
    doubtful = s["host"]["disturbed"] or not s["loadgen"]["valid"]
    assert r.returncode == (4 if doubtful else 3), r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("verdict: inconclusive: the SLO failed (latency_p95_s" if doubtful else "verdict: SLO failed: latency_p95_s"), last
    assert opted_out.returncode == 0, opted_out.stderr


def test_a_target_that_fails_every_request_exits_1_naming_the_error(tmp_path: Path) -> None:
    """Python's own http.server answers every POST with 501: the run failed, whatever else."""
    srv = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        assert srv.stdout is not None
        first = srv.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (http://127.0.0.1:N/) ..."
        port = int(first.split(" port ")[1].split()[0])
        r = ls.run_bench(["-s", str(_scenario(tmp_path, duration=2)), "--target", f"http://127.0.0.1:{port}",
                          "--out", str(tmp_path / "res")])
    finally:
        srv.terminate()
        srv.wait(timeout=10)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: no request succeeded against http://127.0.0.1:{port}: "), last
    assert "most often http_501" in last and "HTTP 501 Not Implemented" in last, last
    s = json.loads((ls.run_dir(tmp_path / "res") / "summary.json").read_text())  # results are still written
    assert s["requests"]["ok"] == 0 and s["requests"]["by_class"] == {"http_501": s["requests"]["total"]}
    listed = subprocess.run([sys.executable, "-m", "toolkit", "results", "list", "--out", str(tmp_path / "res"),
                             "--json"], capture_output=True, text=True, timeout=60)
    [run] = [r for r in json.loads(listed.stdout) if r["run_id"] == s["run_id"]]
    assert run["valid"] is False  # nothing was measured: not a valid run, in the list and the history


def test_two_processes_merge_exactly(tmp_path: Path) -> None:
    proc, url = ls.start("--service-ms", "5")
    out = tmp_path / "res"
    try:
        r = ls.run_bench(["-s", str(_scenario(tmp_path, rate=40, duration=5, warmup=1)), "--target", url,
                          "--out", str(out), "--processes", "2"])
        with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
            served = int(float(resp.read().decode().split("test_requests_total")[-1].split()[0]))
    finally:
        ls.stop(proc)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = ls.run_dir(out)
    s = json.loads((run / "summary.json").read_text())
    assert s["load"]["processes"] == 2 and s["loadgen"]["processes"] == 2
    assert s["requests"]["errors"] == 0 and s["requests"]["ok"] > 100
    rows = (run / "timeseries.csv").read_text().splitlines()[1:]
    sent = sum(int(c.split(",")[4]) + int(c.split(",")[5]) for c in rows)
    assert sent == served  # every request of both workers is in the merged intervals
    assert s["latency_s"]["p50"] >= 0.005
