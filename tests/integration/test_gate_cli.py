"""`asrtk gate` end to end: real latency servers, real Locust, the real CLI in subprocesses.

The old build serves lognormal service times (median 20 ms, sigma 0.3); the new build the same,
30% slower. An interleaved A/B gate must call that a regression (exit 3) and write JUnit, JSON
and Markdown that say so; judging the same runs again without load with a 50% tolerance passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import latency_server as ls

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _asrtk(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


def test_ab_gate_catches_a_slower_build_and_writes_what_ci_reads(tmp_path: Path) -> None:
    import junitparser

    scenario = tmp_path / "probe.yaml"
    scenario.write_text("""name: probe
protocol: {kind: http, method: POST, path: /work, body: none}
load: {mode: open, rate: 80}
duration_s: 6
warmup_s: 1
seed: 3
slo: {latency_s: 1.0, percentile: 0.95}
""")
    old, old_url = ls.start("--lognormal-ms", "20", "--sigma", "0.3", "--seed", "1")
    new, new_url = ls.start("--lognormal-ms", "20", "--sigma", "0.3", "--scale", "1.3", "--seed", "2")
    out = tmp_path / "results"
    try:
        r = _asrtk("gate", "-s", str(scenario), "--target", new_url, "--baseline-target", old_url,
                   "--duration", "6s", "--warmup", "1s", "--max-runs", "1", "--threshold", "error_rate<=1%",
                   "--out", str(out), "--junit", str(tmp_path / "gate.xml"), "--json", str(tmp_path / "gate.json"),
                   "--summary-md", str(tmp_path / "summary.md"))
    finally:
        ls.stop(old)
        ls.stop(new)
    v = json.loads((tmp_path / "gate.json").read_text())
    if v["verdict"] == "inconclusive" and v["reasons"]:
        pytest.skip(f"this host could not judge: {'; '.join(v['reasons'])}")  # measured, named reason
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert v["schema"] == "asrtk.gate/v1" and v["verdict"] == "fail" and v["mode"] == "ab"
    [cmp] = [c for c in v["checks"] if c["kind"] == "compare"]
    assert cmp["name"] == "p95 change" and cmp["verdict"] == "fail" and cmp["ci"][0] > 0.05
    assert 0.15 < cmp["change"] < 0.45, cmp  # the injected +30%
    suite = junitparser.JUnitXml.fromfile(str(tmp_path / "gate.xml"))
    cases = {c.name: c for s in suite for c in s}
    assert cases["p95 change"].result and cases["error_rate<=1%"].is_passed
    assert "FAIL" in (tmp_path / "summary.md").read_text()
    assert "verdict: FAIL (exit 3)" in r.stdout

    # the same two runs, judged again without load: a 30% slowdown is within a 50% tolerance
    [new_run] = v["runs"]
    [old_run] = v["baselines"]
    again = _asrtk("gate", "--current", new_run["path"], "--baseline", old_run["path"], "--max-regression", "50%",
                   "--out", str(out), timeout_s=60)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "verdict: PASS (exit 0)" in again.stdout
