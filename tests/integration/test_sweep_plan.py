"""End to end on loopback: sweep the embedded `tiny` server, plan from it, validate the plan.

Runs the real CLI in subprocesses (Locust monkey-patches its process with gevent), bounded by
timeouts; figures are printed (run with -s) for the report, not asserted as performance: the
sweep's wall time is printed, never asserted (a slow host would break such an assertion).
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


def _sweep_plan_validate(tmp_path: Path) -> tuple[float, dict, Path, dict]:
    results = tmp_path / "results"
    t0 = time.monotonic()
    # the long "fill" steps measure 40% and 70% of the best load: the plan below operates at 40%
    sweep = asrtk("sweep", "-s", "emotion", "--step-duration", "6s", "--max-step-duration", "12s",
                  "--max-steps", "10", "--tolerance", "0.15", "--fill", "0.4,0.7",
                  "--quiet", "--out", str(results), timeout_s=600)
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
    # the embedded server runs on this host: what a request cost it is recorded per step
    assert all(s["host"]["target_cpu_s_per_request"] for s in steps if s["requests"])
    assert cap["usl"] is not None or cap["usl_error"]
    assert "Throughput vs concurrency" in (sweep_dir / "report.html").read_text()
    assert "| step |" in (sweep_dir / "report.md").read_text()

    # plan one node at 40% of its measured capacity (the sweep's long "fill" step measured
    # there), then run that operating point and compare. Higher, this 2-core VM (the load
    # generator shares it with the server) turns small CPU-steal changes into large tail changes.
    target = round(0.4 * res["max_rps_at_slo"], 2)
    plan = asrtk("plan", "--target-qps", str(target), "--redundancy", "0", "--results", str(results),
                 "--out", str(tmp_path / "plan"), timeout_s=60)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert sweep_dir.name in plan.stdout  # says which sweep it used
    doc = yaml.safe_load((tmp_path / "plan" / "plan.yaml").read_text())
    assert doc["recommended"]["active_nodes"] == 1
    predicted = doc["expected"]["p95_s_measured"]
    assert predicted is not None and doc["expected"]["p95_s_model"] is not None
    assert doc["expected"]["target_cpu_s_per_request"] > 0

    val = asrtk("plan", "validate", str(tmp_path / "plan" / "plan.yaml"), "--json", "--attempts", "3",
                "--out", str(results), timeout_s=400)
    v = json.loads(val.stdout.strip().splitlines()[-1])
    # the exit code is the verdict: 0 only for pass (judged below), 3 for a miss, 4 inconclusive
    assert val.returncode == {"pass": 0, "fail": 3, "inconclusive": 4}[v["verdict"]], (val.returncode, v, val.stderr)
    assert v["cpu_s_per_request_measured"] and v["cpu_s_per_request_planned"]
    print(f"\nsweep wall time {wall_s:.0f}s, {len(steps)} steps "
          f"({sum(s['final'] == 'disturbed' for s in steps)} re-measured as disturbed), max_rps_at_slo "
          f"{res['max_rps_at_slo']:.3g} (CI {lo:.3g}-{hi:.3g}); planned {v['per_node_rps']:.3g} rps/node: p95 "
          f"predicted {v['predicted_s']:.3g}s (model {v['model_s']:.3g}s), measured {v['measured_s']:.3g}s "
          f"({v['deviation']:+.0%}), throughput {v['achieved_rps']:.3g} rps; CPU per request "
          f"{v['cpu_s_per_request_planned'] * 1000:.3g} ms swept, {v['cpu_s_per_request_measured'] * 1000:.3g} ms "
          f"validated; interference {v['interference_cpu_cores_planned'] or 0:.2f} cores swept, "
          f"{v['interference_cpu_cores']:.2f} validated; verdict {v['verdict']}")
    return wall_s, cap, sweep_dir, v


# two whole sweep -> plan -> validate runs at most (each bounded by its subprocess timeouts)
TEST_BUDGET_S = 1500


@pytest.mark.timeout(TEST_BUDGET_S + 60)
def test_sweep_converges_and_plan_validate_matches_prediction(tmp_path: Path) -> None:
    # A prediction can only be checked like for like. On a shared VM the hypervisor's CPU steal
    # comes and goes over minutes, and the VM's speed flips between two states (raw inference
    # throughput 200 or 280 clips/s, benchmarks/server_overhead.py), which CPU per request shows
    # only in part: plan validate once called a +39% miss like for like (CPU per request +7%,
    # other work 0.10 cores against the sweep's 0.07) in a run whose other tests saw 0.2 cores of
    # steal. So a miss is measured again, sweep and all, once, if there is time; a planner that
    # is wrong misses both times.
    t0 = time.monotonic()
    for attempt in (1, 2):
        t_attempt = time.monotonic()
        _wall, _cap, sweep_dir, v = _sweep_plan_validate(tmp_path / f"attempt-{attempt}")
        if abs(v["deviation"]) <= 0.20:
            break
        print(f"attempt {attempt} missed ({v['deviation']:+.0%}); like for like by plan validate's checks: "
              f"{v['comparable']} {v['comparability']}")
        took = time.monotonic() - t_attempt
        if attempt == 1 and time.monotonic() - t0 + 1.5 * took > TEST_BUDGET_S:
            if v["comparable"]:
                break  # no time to measure again: the miss stands
            pytest.skip(f"not like for like ({v['comparability']}) and no time left to measure again "
                        f"(the attempt took {took:.0f}s)")
    table = (sweep_dir / "report.md").read_text().split("## Steps", 1)[-1]
    if abs(v["deviation"]) > 0.20 and not v["comparable"]:
        # the machine, not asrtk, is what changed between sweep and validation, twice: the
        # comparison the test exists for cannot be made here now (it is made whenever it can)
        pytest.skip(f"not like for like twice (a shared VM's CPU steal or other work): {v['comparability']}")
    assert abs(v["deviation"]) <= 0.20, f"{v}\n{table}"
    assert v["verdict"] == "pass" and v["passed"]
