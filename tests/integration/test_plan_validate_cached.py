"""`asrtk plan validate` of a plan sized with --hit-rate, against the real embedded server: it runs
with --cache, the Zipf scenario repeats requests, and the verdict compares the run's hit ratio
(client X-Cache and server counters) with the plan's before it judges the capacity claim.

The plan comes from a table (--measurements) whose latencies are ten times what the tiny
emotion model shows at this load, so at the planned hit rate the plan holds; at a hit rate the
traffic cannot give, the run is inconclusive whatever its latency. Two short runs (~20 s each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from toolkit.capacity.cache import run_hit_ratio
from toolkit.resources import data_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RATE, DURATION_S, WARMUP_S = 40.0, 12, 3  # plan validate's warm-up is 3 s
REPEAT = {"distribution": "zipf", "s": 0.8, "catalog": 1000}
TABLE = "workers,qps,p95_s,error_rate\n1,10,0.5,0\n1,40,0.8,0\n1,80,3.0,0\n"
VERDICT_EXIT = {"pass": 0, "fail": 3, "inconclusive": 4}


def asrtk(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


def plan(tmp_path: Path, name: str, hit_rate: float) -> Path:
    (tmp_path / "table.csv").write_text(TABLE)
    r = asrtk("plan", "--target-qps", f"{RATE:g}", "--slo", "p95=2s", "--measurements", str(tmp_path / "table.csv"),
              "--hit-rate", f"{hit_rate:.4f}", "--hit-cost", "0.3", "--redundancy", "0", "--out", str(tmp_path / name))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return tmp_path / name / "plan.yaml"


def validate(plan_file: Path, scenario: Path, out: Path, duration_s: int) -> tuple[subprocess.CompletedProcess[str], dict]:
    r = asrtk("plan", "validate", str(plan_file), "--scenario", str(scenario), "--duration", f"{duration_s}s",
              "--attempts", "1", "--json", "--out", str(out))
    assert r.returncode != 2 and r.stdout.strip(), r.stdout[-2000:] + r.stderr[-3000:]
    return r, json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(600)
def test_plan_validate_runs_at_the_planned_hit_rate_and_judges_it(asrtk_cache_dir: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((data_dir("scenarios") / "emotion.yaml").read_text())
    data.update(name="emotion-zipf", repeat=REPEAT)
    scenario = tmp_path / "emotion-zipf.yaml"
    scenario.write_text(yaml.safe_dump(data))
    # what this traffic gives a cache that starts empty: the hit rate the plan is sized for
    n = int(RATE * DURATION_S)
    planned = run_hit_ratio(REPEAT["catalog"], "zipf", REPEAT["s"], n, int(RATE * WARMUP_S))
    assert planned is not None and 0.3 < planned < 0.7

    r, v = validate(plan(tmp_path, "at-rate", planned), scenario, tmp_path / "res", DURATION_S)
    c = v["cache"]
    figures = f"{v}\n{r.stderr[-2000:]}"
    assert r.returncode == VERDICT_EXIT[v["verdict"]], figures
    assert c["hit_rate_planned"] == pytest.approx(planned, abs=1e-4)
    assert c["hit_ratio_expected"] == pytest.approx(planned, abs=0.03)  # the Poisson count moves it a little
    # the embedded server ran with a cache: both sides measured it, near what the traffic should give
    assert c["measured_by"] == "server" and c["hit_ratio_client"] is not None, figures
    assert abs(c["hit_ratio_server"] - planned) <= 0.08 and abs(c["hit_ratio_client"] - planned) <= 0.08, figures
    assert c["comparable"] and c["miss_equivalent_rps"] < v["offered_rps"], figures
    # latencies a tenth of the table's at this load: the plan holds
    assert v["verdict"] == "pass" and r.returncode == 0, figures
    run = Path(v["run_dir"])
    header, *rows = (run / "timeseries.csv").read_text().splitlines()
    assert "cache_hit_ratio" in header.split(",")
    col = header.split(",").index("cache_hit_ratio")
    per_second = [float(x.split(",")[col]) for x in rows if x.split(",")[col]]
    assert len(per_second) >= DURATION_S and all(0.0 <= x <= 1.0 for x in per_second)
    print(f"\n[validate cache] planned hit rate {planned:.3f}, measured client {c['hit_ratio_client']:.3f} / server "
          f"{c['hit_ratio_server']:.3f}; capacity {c['capacity_rps_planned']:.3g} rps at the planned rate "
          f"({c['capacity_rps_at_measured']:.3g} at the measured), planned {v['per_node_rps']:.3g} rps, held "
          f"{v['achieved_rps']:.3g} rps, p95 {v['measured_s']:.3g}s vs predicted {v['predicted_s']:.3g}s: {v['verdict']}")

    # the same traffic cannot check a plan sized for 90% hits: said before the run, inconclusive after it
    r, v = validate(plan(tmp_path, "at-90", 0.9), scenario, tmp_path / "res-90", 6)
    c = v["cache"]
    assert "too far from the plan's for the run to check it" in r.stderr and "repeat.catalog" in r.stderr, r.stderr
    assert r.returncode == 4 and v["verdict"] == "inconclusive" and not c["comparable"], f"{v}\n{r.stderr}"
    assert c["hit_ratio_server"] is not None and c["hit_ratio_server"] < 0.8, c
    assert c["reason"] == v["comparability"][0] and "the plan's 0.90" in c["reason"]
    print(f"[validate cache] planned 0.90, measured client {c['hit_ratio_client']:.3f} / server "
          f"{c['hit_ratio_server']:.3f}: {v['verdict']}")
