"""asrtk's latency figures against servers whose latency is known exactly."""

from __future__ import annotations

import json
import math
import random
import urllib.request
from pathlib import Path

import pytest

import latency_server as ls

pytestmark = pytest.mark.integration


def _scenario(tmp_path: Path, rate: float, duration: float, warmup: float, seed: int = 3) -> Path:
    p = tmp_path / "probe.yaml"
    p.write_text(f"""name: probe
protocol: {{kind: http, method: POST, path: /work, body: none}}
load: {{mode: open, arrival: poisson, rate: {rate}}}
duration_s: {duration}
warmup_s: {warmup}
seed: {seed}
slo: {{latency_s: 2.0}}
""")
    return p


def _nearest_rank(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def test_percentiles_match_a_known_service_time_distribution(tmp_path: Path) -> None:
    rng = random.Random(11)
    delays_ms = [min(5000.0, max(200.0, rng.lognormvariate(math.log(1000), 0.5))) for _ in range(500)]
    proc, url = ls.start("--delays-ms", ",".join(f"{d:.3f}" for d in delays_ms))
    try:
        out = tmp_path / "res"
        r = ls.run_bench(["-s", str(_scenario(tmp_path, 25, 8, 0)), "--target", url, "--out", str(out), "--no-fail-on-slo"])
        assert r.returncode == 0, r.stdout + r.stderr
        with urllib.request.urlopen(url + "/truth", timeout=5) as resp:
            truth = json.load(resp)  # service times the server really slept, seconds
    finally:
        ls.stop(proc)
    s = json.loads((ls.run_dir(out) / "summary.json").read_text())
    assert s["requests"]["total"] == len(truth) and s["requests"]["errors"] == 0
    for key, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        expected = _nearest_rank(truth, q)
        measured = s["latency_s"][key]
        assert abs(measured - expected) <= max(0.02 * expected, 0.001), (key, measured, expected)
    # nothing is faster than the server's own service time
    assert s["latency_s"]["min"] >= min(truth) * 0.999


def test_open_loop_sees_periodic_freezes(tmp_path: Path) -> None:
    """Freeze F = 1 s every P = 5 s, service s = 5 ms. Open loop: a fraction F/P = 0.2 of
    arrivals lands in a freeze and waits uniform(0, F) more, so P(L > x) = 0.2 (1 - (x - s)/F)
    and p95 = s + 0.75 F = 0.755 s. (A closed-loop client reports a few ms: see benchmarks/loadgen.py.)"""
    s_ms, freeze, period = 5.0, 1.0, 5.0
    proc, url = ls.start("--freeze-every", str(period), "--freeze-s", str(freeze), "--service-ms", str(s_ms))
    try:
        out = tmp_path / "res"
        r = ls.run_bench(["-s", str(_scenario(tmp_path, 40, 20, 2)), "--target", url, "--out", str(out), "--no-fail-on-slo"])
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        ls.stop(proc)
    s = json.loads((ls.run_dir(out) / "summary.json").read_text())
    analytic_p95 = s_ms / 1000 + (1 - 0.05 / (freeze / period)) * freeze
    assert analytic_p95 == pytest.approx(0.755)
    assert s["latency_s"]["p95"] == pytest.approx(analytic_p95, rel=0.15)
    assert s["latency_s"]["p50"] < 0.05  # most arrivals miss the freezes
    assert s["latency_s"]["max"] == pytest.approx(freeze + s_ms / 1000, rel=0.15)
