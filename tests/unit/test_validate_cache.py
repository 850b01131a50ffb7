"""`plan validate` for a plan sized for a result cache (`expected.cache`): the judge compares the
run's hit ratio with the plan's and reads the curve at the miss-equivalent load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from toolkit.capacity.cache import catalog_for_hit_ratio, run_hit_ratio
from toolkit.capacity.validation import judge_validation, work_per_request

CURVE = [{"rps": 10.0, "latency_s": 0.2}, {"rps": 30.0, "latency_s": 0.8}]  # misses: the sweep's


def plan(hit_rate: float = 0.5, cost: float = 0.1, cpu: float | None = None) -> dict:
    """A node of 25 rps of misses at the SLO, planned at 20 rps at ``hit_rate``."""
    factor = 1 / ((1 - hit_rate) + hit_rate * cost)
    return {"slo": {"percentile": 0.95, "latency_s": 1.0, "max_error_rate": 0.01},
            "recommended": {"node_type": "gpu-a"},
            "node_types": [{"name": "gpu-a", "capacity_rps": 25.0 * factor}],
            "expected": {"per_node_rps": 20.0, "p95_s_measured": 0.4, "curve": CURVE,
                         "target_cpu_s_per_request": cpu,
                         "cache": {"hit_rate": hit_rate, "hit_cost_ratio": cost, "capacity_factor": factor}}}


def run(p95: float, server: float | None, client: float | None, offered: float = 20.0, done: float | None = None,
        cpu: float | None = None, expected: float | None = None) -> dict:
    s = {"load": {"offered_rps": offered}, "throughput": {"rps": offered if done is None else done},
         "latency_s": {"p50": p95 / 3, "p95": p95, "p99": p95 * 1.2}, "requests": {"error_rate": 0.0},
         "host": {"target_cpu_s_per_request": cpu}}
    if server is not None or client is not None:
        s["cache"] = {"client": {"hit_ratio": client}, "server": None if server is None else {"hit_ratio": server},
                      "expected": None if expected is None else {"hit_ratio": expected}}
    return s


def curve_at(rps: float) -> float:  # the log-linear interpolation between the two points
    return math.exp(math.log(0.2) + (rps - 10) / 20 * math.log(4.0))


def test_at_the_planned_hit_rate_the_curve_is_read_at_the_miss_equivalent_load(tmp_path: Path) -> None:
    v = judge_validation(plan(), run(0.2, server=0.5, client=0.49, expected=0.5), 0.2, tmp_path)
    c = v.cache
    assert c is not None and c.comparable and c.reason is None and v.comparable
    assert (c.hit_rate_planned, c.hit_ratio_server, c.hit_ratio_client, c.hit_ratio_expected) == (0.5, 0.5, 0.49, 0.5)
    assert c.measured_by == "server"  # the node's own counters decide
    # 20 rps, half of them hits at a tenth of a miss: 11 rps of misses on the measured curve
    assert c.work_per_request_planned == pytest.approx(0.55) and c.miss_equivalent_rps == pytest.approx(11.0)
    assert v.predicted_s == 0.4  # the plan's own figure: it was read there
    more = judge_validation(plan(), run(0.2, server=0.5, client=0.5, offered=22.0), 0.2, tmp_path)
    assert more.predicted_s == pytest.approx(curve_at(22 * 0.55)) and more.predicted_planned_s == 0.4
    assert c.capacity_rps_zero_hit == pytest.approx(25.0) and c.capacity_rps_planned == pytest.approx(25 / 0.55)
    assert c.capacity_rps_at_measured == pytest.approx(25 / 0.55)
    assert v.verdict == "pass" and v.passed
    d = v.as_dict()
    assert d["cache"]["hit_ratio_client"] == 0.49 and d["cache"]["miss_equivalent_rps"] == pytest.approx(11.0)


def test_close_to_the_plan_the_measured_hit_ratio_sets_the_load(tmp_path: Path) -> None:
    # 0.46 hits: work 0.586 per request, +6.5% on the planned 0.55: like for like, read at 11.7 rps
    v = judge_validation(plan(), run(0.2, server=0.46, client=0.47, offered=20.0), 0.2, tmp_path)
    assert v.cache is not None and v.cache.comparable
    assert v.cache.miss_equivalent_rps == pytest.approx(20 * work_per_request(0.46, 0.1))
    assert v.predicted_s == pytest.approx(curve_at(20 * work_per_request(0.46, 0.1)))
    assert v.cache.capacity_rps_at_measured == pytest.approx(25 / work_per_request(0.46, 0.1))
    # off the prediction at that load is a failure of the plan
    slow = judge_validation(plan(), run(0.6, server=0.46, client=0.47), 0.2, tmp_path)
    assert slow.verdict == "fail" and any("off the prediction" in r for r in slow.reasons)


@pytest.mark.parametrize("p95", [0.1, 1.5])  # would pass / would breach the SLO
def test_a_run_at_another_hit_rate_is_inconclusive_whatever_its_latency(tmp_path: Path, p95: float) -> None:
    v = judge_validation(plan(), run(p95, server=0.2, client=0.21, expected=0.22), 5.0, tmp_path)
    c = v.cache
    assert c is not None and not c.comparable and not v.comparable
    assert v.verdict == "inconclusive" and not v.passed
    assert c.work_per_request_measured == pytest.approx(0.82)
    assert c.reason is not None and c.reason == v.comparability[0]
    assert "0.20 (server counters; client X-Cache 0.21; the scenario's expectation 0.22)" in c.reason
    assert "the plan's 0.50" in c.reason and "1.49x the planned work" in c.reason and "--hit-rate 0.20" in c.reason
    # the latency is still read where the plan put it: at the planned hit rate
    assert c.miss_equivalent_rps == pytest.approx(11.0)


def test_a_target_without_a_cache_cannot_check_a_cached_plan(tmp_path: Path) -> None:
    v = judge_validation(plan(), run(0.1, server=None, client=None), 0.2, tmp_path)
    assert v.cache is not None and v.cache.hit_ratio_measured is None and v.cache.measured_by is None
    assert v.verdict == "inconclusive" and "showed no result cache" in v.comparability[0]


def test_the_client_ratio_is_judged_when_the_server_exports_no_counters(tmp_path: Path) -> None:
    v = judge_validation(plan(), run(0.2, server=None, client=0.51), 0.2, tmp_path)
    assert v.cache is not None and v.cache.measured_by == "client" and v.cache.hit_ratio_measured == 0.51
    assert v.verdict == "pass"
    far = judge_validation(plan(), run(0.2, server=None, client=0.9), 0.2, tmp_path)
    assert far.verdict == "inconclusive" and "0.90 (client counters" in far.comparability[0]


def test_tolerance_is_on_the_work_per_request_so_high_hit_rates_are_tighter(tmp_path: Path) -> None:
    # at 40% hits 5 points more is -8% work: the same operating point ...
    assert judge_validation(plan(0.4), run(0.2, 0.45, 0.45), 0.2, tmp_path).cache.comparable  # type: ignore[union-attr]
    # ... at 90% hits (work 0.145) 5 points more is -33% work: another one
    high = judge_validation(plan(0.9, cost=0.05), run(0.2, 0.95, 0.95), 0.2, tmp_path)
    assert high.cache is not None and not high.cache.comparable and high.verdict == "inconclusive"


def test_cpu_per_request_is_expected_at_the_measured_hit_ratio(tmp_path: Path) -> None:
    # the sweep: 10 ms per miss; the plan at 50% hits (a hit costs nothing) expects 5 ms per request
    doc = plan(0.5, cost=0.0, cpu=0.005)
    same = judge_validation(doc, run(0.6, server=0.54, client=0.54, cpu=0.0046), 0.2, tmp_path)
    assert same.cpu_s_per_request_planned == pytest.approx(0.0046) and same.comparable
    assert same.verdict == "fail"  # like for like and off the prediction
    # a machine 12% slower per miss at 54% hits: +3% on the plan's 5 ms, +12% at this hit ratio
    slower = judge_validation(doc, run(0.6, server=0.54, client=0.54, cpu=0.0046 * 1.12), 0.2, tmp_path)
    assert slower.verdict == "inconclusive" and slower.cache is not None and slower.cache.comparable
    assert any("at this hit ratio (+12%)" in c for c in slower.comparability)


def test_a_plan_without_a_cache_is_judged_as_before(tmp_path: Path) -> None:
    doc = plan()
    del doc["expected"]["cache"]
    v = judge_validation(doc, run(0.45, server=0.9, client=0.9), 0.2, tmp_path)
    assert v.cache is None and v.predicted_s == 0.4 and v.verdict == "pass"
    assert v.as_dict()["cache"] is None


def test_catalog_for_a_hit_ratio_inverts_the_expectation() -> None:
    n = catalog_for_hit_ratio(0.4, "uniform", None, 360, 90)
    assert n is not None and run_hit_ratio(n, "uniform", None, 360, 90) == pytest.approx(0.4, abs=0.002)
    n = catalog_for_hit_ratio(0.8, "zipf", 1.1, 3000, 300)
    assert n is not None and run_hit_ratio(n, "zipf", 1.1, 3000, 300) == pytest.approx(0.8, abs=0.002)
    lru = catalog_for_hit_ratio(0.3, "zipf", 0.8, 5000, 0, entries=100)
    assert lru is not None and run_hit_ratio(lru, "zipf", 0.8, 5000, 0, entries=100) == pytest.approx(0.3, abs=0.01)
    # 10 requests repeat 9 times at most; s=1.1 over 3000 requests never falls to 40% hits
    assert catalog_for_hit_ratio(0.95, "uniform", None, 10, 0) is None
    assert catalog_for_hit_ratio(0.4, "zipf", 1.1, 3000, 300) is None


def test_the_expectation_line_names_the_catalog_that_gives_the_planned_hit_rate() -> None:
    from dataclasses import replace

    from toolkit.runs.validate import _expectation_line
    from toolkit.scenario import RepeatSpec, load_scenario

    tts = load_scenario("tts")
    zipf = replace(tts, repeat=RepeatSpec(catalog=300, distribution="zipf", s=1.1))
    n, before = 30 * 12, 30 * 3
    h = run_hit_ratio(300, "zipf", 1.1, n, before)
    assert h is not None
    ok = _expectation_line(zipf, h, 0.1, 30.0, 12.0, 3.0, 0.1, embedded=True)
    assert f"expected to give {h:.2f} over this run (360 requests after 90" in ok and "too far" not in ok
    far = _expectation_line(zipf, 0.6, 0.1, 30.0, 12.0, 3.0, 0.1, embedded=False)
    fit = catalog_for_hit_ratio(0.6, "zipf", 1.1, n, before)
    assert fit is not None and fit > 300
    assert "too far from the plan's" in far and "unless the target's cache is already warm" in far
    assert f"repeat.catalog {fit} would give 0.60" in far
    # s=1.1 over 360 requests repeats more than 30% whatever the catalog
    assert "no catalog size gives it" in _expectation_line(zipf, 0.3, 0.1, 30.0, 12.0, 3.0, 0.1, embedded=True)
