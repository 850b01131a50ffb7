"""End to end on loopback: sweep the embedded `tiny` server, plan from it, validate the plan.

Runs the real CLI in subprocesses (Locust monkey-patches its process with gevent), bounded by
timeouts; figures are printed (run with -s) for the report, not asserted as performance.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def asrtk(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


def test_sweep_converges_and_plan_validate_matches_prediction(tmp_path: Path) -> None:
    results = tmp_path / "results"
    t0 = time.monotonic()
    sweep = asrtk("sweep", "-s", "emotion", "--step-duration", "6s", "--max-step-duration", "12s",
                  "--max-steps", "10", "--tolerance", "0.15",
                  "--quiet", "--out", str(results), timeout_s=300)  # "converges within 5 minutes"
    wall_s = time.monotonic() - t0
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    [sweep_dir] = list(results.glob("sweep-*"))
    cap = json.loads((sweep_dir / "capacity.json").read_text())
    assert cap["schema"] == "asrtk.capacity/v1"
    res = cap["result"]
    assert res["max_rps_at_slo"] is not None and res["max_rps_at_slo"] > 0
    assert res["status"] in ("converged", "max_steps")
    lo, hi = res["ci_rps"]
    assert lo <= res["max_rps_at_slo"] <= hi
    steps = cap["steps"]
    assert len(steps) >= 3 and all((sweep_dir / s["run_dir"] / "summary.json").exists() for s in steps)
    assert any(s["final"] == "fail" for s in steps) and any(s["final"] == "pass" for s in steps)
    assert all(s["server"] is not None for s in steps)  # queue and batch figures scraped from /metrics
    assert cap["usl"] is not None or cap["usl_error"]
    assert "Throughput vs concurrency" in (sweep_dir / "report.html").read_text()
    assert "| step |" in (sweep_dir / "report.md").read_text()

    # plan one node at half its measured capacity (the sweep's long "fill" step measured there),
    # then run that operating point and compare
    target = round(0.5 * res["max_rps_at_slo"], 2)
    plan = asrtk("plan", "--target-qps", str(target), "--redundancy", "0", "--results", str(results),
                 "--out", str(tmp_path / "plan"), timeout_s=60)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert sweep_dir.name in plan.stdout  # says which sweep it used
    doc = yaml.safe_load((tmp_path / "plan" / "plan.yaml").read_text())
    assert doc["recommended"]["active_nodes"] == 1
    predicted = doc["expected"]["p95_s_measured"]
    assert predicted is not None and doc["expected"]["p95_s_model"] is not None

    val = asrtk("plan", "validate", str(tmp_path / "plan" / "plan.yaml"), "--json", "--out", str(results),
                timeout_s=240)
    assert val.returncode in (0, 3), val.stdout + val.stderr
    v = json.loads(val.stdout.strip().splitlines()[-1])
    print(f"\nsweep wall time {wall_s:.0f}s, {len(steps)} steps, max_rps_at_slo {res['max_rps_at_slo']:.3g} "
          f"(CI {lo:.3g}-{hi:.3g}); planned {v['per_node_rps']:.3g} rps/node: p95 predicted "
          f"{v['predicted_s']:.3g}s (model {v['model_s']:.3g}s), measured {v['measured_s']:.3g}s "
          f"({v['deviation']:+.0%}), throughput {v['achieved_rps']:.3g} rps")
    table = (sweep_dir / "report.md").read_text().split("## Steps", 1)[-1]
    assert abs(v["deviation"]) <= 0.20, f"{v}\n{table}"
