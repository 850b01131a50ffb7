"""Planning: capacity at the SLO, node counts, redundancy, weights, costs and the edge cases."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import yaml

from toolkit.capacity.measurements import CurvePoint, NodeType, ServiceTime, WorkerCurve, node_types_from_csv
from toolkit.capacity.planfile import SCHEMA, plan_document, read_plan, write_plan
from toolkit.capacity.planner import (
    PlanRequest,
    capacity_at_slo,
    interpolate_at,
    lower_envelope,
    make_plan,
    weights_for,
)
from toolkit.errors import ConfigError, ThresholdBreached

CSV = """workers,qps,p95_s,error_rate,node
1,10,0.5,0,gpu-a
1,20,0.9,0,gpu-a
1,30,1.8,0,gpu-a
2,20,0.4,0,gpu-a
2,40,0.8,0,gpu-a
2,60,2.0,2%,gpu-a
2,10,0.3,0,gpu-b
2,25,0.9,0,gpu-b
2,35,1.9,0,gpu-b
"""


def nodes(costs: dict[str, float] | None = None) -> list[NodeType]:
    found = node_types_from_csv(CSV, "t.csv")
    return [replace(n, cost_per_hour=(costs or {}).get(n.name)) for n in found]


def curve(*rows: tuple[float, float, float]) -> WorkerCurve:
    return WorkerCurve(1, tuple(CurvePoint(r, {0.95: p}, e) for r, p, e in rows))


def test_capacity_interpolates_between_measured_points() -> None:
    cap = capacity_at_slo(curve((20, 0.4, 0), (40, 0.8, 0), (60, 2.0, 0.0)), 0.95, 1.5, 0.01)
    assert cap.kind == "interpolated"
    # linear in log(latency) between the last pass and the first fail
    assert cap.rps == pytest.approx(40 + math.log(1.5 / 0.8) / math.log(2.0 / 0.8) * 20)
    assert cap.ci_rps == (40, 60)


def test_capacity_is_a_lower_bound_when_the_slo_never_fails() -> None:
    cap = capacity_at_slo(curve((10, 0.2, 0), (20, 0.3, 0)), 0.95, 1.5, 0.01)
    assert cap.kind == "at_least" and cap.rps == 20
    assert "not extrapolated" in cap.note


def test_best_worker_count_is_chosen_per_node_type() -> None:
    plan = make_plan(nodes(), PlanRequest(300, slo_latency_s=1.5))
    a = next(x for x in plan.assessments if x.node_type.name == "gpu-a")
    assert a.workers == 2
    # latency would allow 40 + 0.7/1.2 * 20 = 51.7 rps, the error budget (2% at 60 rps) binds first
    assert a.capacity.rps == pytest.approx(40 + 0.01 / 0.02 * 20)
    assert {w for w, _, _ in a.by_workers} == {1, 2}


def test_node_count_formula_and_redundancy() -> None:
    only_a = [n for n in nodes() if n.name == "gpu-a"]
    plan = make_plan(only_a, PlanRequest(300, slo_latency_s=1.5, headroom=0.8, redundancy=2))
    cap = plan.assessments[0].capacity.rps
    rec = plan.recommended
    import math

    assert rec.active_nodes == math.ceil(300 / (0.8 * cap))
    assert rec.backup_nodes == 2 and rec.nodes == rec.active_nodes + 2
    assert rec.degraded["meets_slo"] is True
    assert plan.expected["per_node_rps"] == pytest.approx(300 / rec.active_nodes)
    assert plan.expected["model"] == "erlang-c + allen-cunneen"
    assert plan.expected["p95_s_model"] is not None and plan.expected["p95_s_measured"] is not None


def test_target_below_one_node() -> None:
    only_a = [n for n in nodes() if n.name == "gpu-a"]
    plan = make_plan(only_a, PlanRequest(5, slo_latency_s=1.5, redundancy=1))
    assert plan.recommended.active_nodes == 1 and plan.recommended.nodes == 2
    assert any("below one node's capacity" in n for n in plan.notes)
    # 5 rps per node lies below the lightest measured point (20 rps): said, not invented
    assert any("below the lightest measured point" in n for n in plan.notes)


def test_target_beyond_measured_range_is_flagged() -> None:
    measured = NodeType("small", "x", (curve((5, 0.1, 0), (10, 0.2, 0)),))
    plan = make_plan([measured], PlanRequest(1000, slo_latency_s=2.0))
    assert plan.assessments[0].capacity.kind == "at_least"
    assert any("not extrapolated" in n for n in plan.notes)
    assert plan.recommended.active_nodes == 1000 // 8 + (1000 % 8 > 0)


def test_slo_unreachable_at_any_load() -> None:
    with pytest.raises(ThresholdBreached, match="no node type meets the SLO"):
        make_plan(nodes(), PlanRequest(100, slo_latency_s=0.1))


def test_all_node_types_too_expensive() -> None:
    with pytest.raises(ThresholdBreached, match="exceeds the budget"):
        make_plan(nodes({"gpu-a": 3.2, "gpu-b": 2.0}), PlanRequest(300, slo_latency_s=1.5, max_cost_per_hour=10))


def test_cheapest_plan_is_recommended_and_alternatives_listed() -> None:
    plan = make_plan(nodes({"gpu-a": 3.2, "gpu-b": 1.0}), PlanRequest(300, slo_latency_s=1.5))
    assert plan.ranking == "cheapest cost per hour"
    costs = [plan.recommended.cost_per_hour] + [p.cost_per_hour for p in plan.alternatives]
    assert plan.recommended.cost_per_hour == min(costs)
    assert plan.alternatives


def test_without_costs_fewest_nodes_wins() -> None:
    plan = make_plan(nodes(), PlanRequest(300, slo_latency_s=1.5))
    assert plan.ranking.startswith("fewest nodes")
    assert plan.recommended.composition[0][0] == "gpu-a"


def test_heterogeneous_fleet_gets_capacity_weights_and_backups() -> None:
    big = NodeType("gpu-a", "a", (curve((50, 0.2, 0), (100, 0.5, 0)),), cost_per_hour=4.0)
    small = NodeType("gpu-b", "b", (curve((10, 0.2, 0), (30, 0.5, 0)),), cost_per_hour=1.5)
    plan = make_plan([big, small], PlanRequest(250, slo_latency_s=1.0))
    rec = plan.recommended
    # pure gpu-a: 4+1 nodes = 20/h; pure gpu-b: 11+1 = 18/h; 3 gpu-a + 1 gpu-b + 1 gpu-a backup = 17.5/h
    assert rec.composition == (("gpu-a", 3, 1), ("gpu-b", 1, 0))
    assert rec.cost_per_hour == pytest.approx(17.5)
    assert sorted(p.cost_per_hour for p in plan.alternatives) == [18.0, 20.0]
    caps = {a.node_type.name: a.capacity.rps for a in plan.assessments}
    assert plan.weights["gpu-a"] / plan.weights["gpu-b"] == pytest.approx(caps["gpu-a"] / caps["gpu-b"], rel=0.05)
    doc = plan_document(plan, created="2026-01-01T00:00:00Z", scenario="x", route="/recognize", request=None,
                        assumptions=[])
    backups = [f for f in doc["fleet"] if f["backup"]]
    assert len(backups) == 1
    assert doc["recommended"]["node_type"] in caps  # a real node type name, the mix is spelled out
    assert {c["node_type"] for c in doc["recommended"]["composition"]} == {"gpu-a", "gpu-b"}
    assert len(doc["fleet"]) == doc["recommended"]["nodes"]
    assert {f["weight"] for f in doc["fleet"] if f["node_type"] == "gpu-a"} == {plan.weights["gpu-a"]}


def test_weights_are_integers_proportional_to_capacity() -> None:
    assert weights_for({"a": 55.0, "b": 27.5}) == {"a": 55, "b": 28}
    small = weights_for({"a": 0.5, "b": 1.5})
    assert small == {"a": 10, "b": 30}


def test_model_uses_service_time_when_known() -> None:
    n = NodeType("a", "x", (curve((2, 0.3, 0), (6, 0.5, 0), (9, 3.0, 0)),), service_time=ServiceTime(0.25, 0.3, "t"))
    plan = make_plan([n], PlanRequest(10, slo_latency_s=1.0, redundancy=0))
    mi = plan.expected["model_inputs"]
    assert mi["servers"] == round(9 * 0.25) and mi["service_time_cv2"] == 0.3
    assert plan.expected["p95_s_model"] > 0.25


def test_measured_latency_is_interpolated_at_the_planned_load() -> None:
    c = curve((10, 0.2, 0), (20, 0.6, 0))
    v, note = interpolate_at(c, 15, 0.95)
    assert v == pytest.approx(math.sqrt(0.2 * 0.6)) and note is None  # geometric mean halfway


def test_a_point_slower_than_a_busier_one_does_not_make_the_prediction() -> None:
    # a fill step measured during a neighbour's CPU burst: 0.58 s at 41 rps, 0.07 s at 71 rps
    c = curve((10, 0.05, 0), (20, 0.055, 0), (41, 0.58, 0), (71, 0.07, 0), (102, 0.6, 0), (120, 1.5, 0.0))
    v, _ = interpolate_at(c, 41, 0.95)
    assert v == pytest.approx(0.07)
    assert lower_envelope([(41, 0.58), (10, 0.05), (71, 0.07)]) == [(10, 0.05), (41, 0.07), (71, 0.07)]
    # the envelope never raises a point: a slow light-load point does not lift the flat part
    assert lower_envelope([(2, 0.2), (10, 0.05), (20, 0.06)]) == [(2, 0.05), (10, 0.05), (20, 0.06)]
    plan = make_plan([NodeType("a", "x", (c,))], PlanRequest(41, slo_latency_s=0.8, redundancy=0))
    assert plan.expected["p95_s_measured"] == pytest.approx(0.07)
    assert {"rps": 41, "latency_s": 0.07} in plan.expected["curve"]
    assert any("41 rps (0.58s) is above that of a busier point" in n for n in plan.notes)
    # an ordinary curve is untouched and not remarked on
    quiet = make_plan([NodeType("a", "x", (curve((10, 0.05, 0), (40, 0.06, 0), (80, 2.0, 0)),))],
                      PlanRequest(20, slo_latency_s=0.8, redundancy=0))
    assert not any("busier point" in n for n in quiet.notes)


def test_p99_slo_needs_more_than_p95_measurements() -> None:
    with pytest.raises(ConfigError, match="p95 only"):
        make_plan(nodes(), PlanRequest(100, slo_percentile=0.99, slo_latency_s=1.0))


def test_no_slo_and_no_sweep_is_a_usage_problem() -> None:
    with pytest.raises(ConfigError, match="--slo"):
        make_plan(nodes(), PlanRequest(100))


def test_request_validates_itself() -> None:
    with pytest.raises(ConfigError, match="headroom"):
        PlanRequest(100, headroom=1.5)
    with pytest.raises(ConfigError, match="target-qps"):
        PlanRequest(0)


def test_csv_errors_name_the_line() -> None:
    with pytest.raises(ConfigError, match="missing column"):
        node_types_from_csv("workers,qps\n1,2\n", "m.csv")
    with pytest.raises(ConfigError, match="line 2"):
        node_types_from_csv("workers,qps,p95_s,error_rate\n1,abc,0.5,0\n", "m.csv")
    head = "workers,users,qps,p95_s,error_rate\n"
    with pytest.raises(ConfigError, match=r"m.csv line 3: workers, qps, p95_s, error_rate and users must be numbers"):
        node_types_from_csv(head + "1,8,10,0.5,0\n1,,12,0.6,0\n", "m.csv")
    with pytest.raises(ConfigError, match=r"m.csv line 2: need .*users > 0"):
        node_types_from_csv(head + "1,0,10,0.5,0\n", "m.csv")
    with pytest.raises(ConfigError, match=r"m.csv line 4: node m, 1 workers, users 8 is already on line 2"):
        node_types_from_csv(head + "1,8,10,0.5,0\n2,8,19,0.5,0\n1,8,11,0.6,0\n", "m.csv", default_name="m")
    with pytest.raises(ConfigError, match="m.csv line 1: give the offered load once"):
        node_types_from_csv("workers,users,concurrency,qps,p95_s,error_rate\n1,8,8,10,0.5,0\n", "m.csv")
    with pytest.raises(ConfigError, match=r"measurements \(m.csv\) give p95 only"):
        make_plan(node_types_from_csv(head + "1,8,10,0.5,0\n", "m.csv"),
                  PlanRequest(10, slo_percentile=0.99, slo_latency_s=1.0))


# A closed-loop table of the kind deployment articles publish: several worker counts; for the
# largest, a second row at higher concurrency with lower throughput, higher p95 and a few % errors.
PUBLISHED = """workers,users,qps,p95_s,error_rate
1,8,11,0.62,0
2,16,21,0.71,0
4,32,39,0.95,0
4,64,33,2.8,3%
"""


def test_a_row_past_the_knee_caps_capacity_instead_of_erasing_the_passing_row() -> None:
    plan = make_plan(node_types_from_csv(PUBLISHED, "article.csv", "article"), PlanRequest(100, slo_latency_s=1.5, headroom=0.8,
                                                                                    redundancy=1))
    a = plan.assessments[0]
    assert a.workers == 4 and a.capacity.kind == "knee" and a.capacity.rps == 39
    assert plan.recommended.active_nodes == math.ceil(100 / (0.8 * 39)) == 4
    assert plan.recommended.nodes == 5 and plan.recommended.degraded["meets_slo"]
    assert {w: c.rps for w, c, _ in a.by_workers} == {1: 11, 2: 21, 4: 39}
    decided = next(n for n in plan.notes if n.startswith("article (4 workers)"))
    assert "article.csv line 4: 4 workers, 32 users, 39 rps" in decided
    assert "article.csv line 5: 4 workers, 64 users, 33 rps) is past the knee" in decided
    # the overload row bounds capacity but is not read as a disturbed light point on the latency curve
    assert not any("busier point" in n for n in plan.notes)
    assert [c["rps"] for c in plan.expected["curve"]] == [39]


def test_without_a_users_column_rows_count_in_file_order() -> None:
    no_users = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != 1)
                         for line in PUBLISHED.splitlines()) + "\n"
    a = make_plan(node_types_from_csv(no_users, "a.csv"), PlanRequest(100, slo_latency_s=1.5)).assessments[0]
    assert a.workers == 4 and a.capacity.kind == "knee" and a.capacity.rps == 39


def test_more_users_and_no_more_throughput_is_past_the_knee_even_within_the_slo() -> None:
    rows = "workers,concurrency,qps,p95_s,error_rate\n2,4,20,0.3,0\n2,8,30,0.5,0\n2,16,29,0.9,0\n2,32,45,1.2,0\n"
    cap = capacity_at_slo(node_types_from_csv(rows, "c.csv")[0].curves[0], 0.95, 1.5, 0.01)
    assert cap.kind == "knee" and cap.rps == 30
    assert "c.csv line 4: 2 workers, concurrency 16, 29 rps) is past the knee (no more throughput)" in cap.note


def test_a_table_where_every_row_passes_plans_on_its_busiest_row() -> None:
    rows = "workers,users,qps,p95_s,error_rate\n1,8,11,0.6,0\n2,16,21,0.7,0\n4,32,39,0.9,0\n4,64,52,1.2,0.5%\n"
    plan = make_plan(node_types_from_csv(rows, "ok.csv"), PlanRequest(200, slo_latency_s=1.5, redundancy=2))
    a = plan.assessments[0]
    assert a.workers == 4 and a.capacity.kind == "at_least" and a.capacity.rps == 52
    assert plan.recommended.active_nodes == math.ceil(200 / (0.8 * 52)) and plan.recommended.backup_nodes == 2
    assert any("ok.csv line 5: 4 workers, 64 users, 52 rps" in n and "not extrapolated" in n for n in plan.notes)


def test_a_table_where_no_row_passes_names_every_worker_count_and_row() -> None:
    rows = "workers,users,qps,p95_s,error_rate\n1,8,11,1.6,0\n2,16,21,1.7,0\n4,32,39,1.9,2%\n"
    with pytest.raises(ThresholdBreached) as exc:
        make_plan(node_types_from_csv(rows, "bad.csv"), PlanRequest(100, slo_latency_s=1.5))
    msg = str(exc.value)
    for w, line in ((1, 2), (2, 3), (4, 4)):
        assert f"{w} worker{'s' if w > 1 else ''}: p95 " in msg and f"bad.csv line {line}: " in msg
    assert "error rate 2.00% > 1.00%" in msg


def test_a_users_mode_sweep_plateau_bounds_capacity_at_another_slo() -> None:
    from toolkit.capacity.measurements import node_type_from_capacity

    def step(i: int, users: int, rps: float, p95: float) -> dict:
        return {"index": i, "load": users, "achieved_rps": rps, "requests": 400, "error_rate": 0.0,
                "final": "pass", "latency_s": {"p50": p95 / 2, "p90": p95 * 0.9, "p95": p95, "p99": p95 * 1.2}}

    doc = {"mode": "users", "slo": {"percentile": 0.95, "latency_s": 5.0, "max_error_rate": 0.01},
           "steps": [step(0, 1, 5, 0.2), step(1, 2, 9, 0.25), step(2, 4, 8.5, 0.6), step(3, 3, 9.5, 0.35)],
           "result": {"status": "converged", "max_rps_at_slo": 9.5, "ci_rps": [9, 10]}}
    nt = node_type_from_capacity(doc, "tiny", "capacity.json")
    cap = capacity_at_slo(nt.curves[0], 0.95, 1.0, 0.01)
    assert cap.kind == "knee" and cap.rps == 9.5 and "step 2: 4 users, 8.5 rps) is past the knee" in cap.note


def test_plan_yaml_has_the_contract_shape_and_round_trips(tmp_path) -> None:
    plan = make_plan(nodes({"gpu-a": 3.2, "gpu-b": 2.0}), PlanRequest(300, slo_latency_s=1.5))
    doc = plan_document(plan, created="2026-11-21T22:40:00Z", scenario="callcenter", route="/recognize",
                        request={"max_body_bytes": 19200044, "streaming": False}, assumptions=["a"])
    for key in ("schema", "created", "target", "slo", "headroom", "redundancy", "recommended", "node_types",
                "fleet", "expected", "latency_s", "request", "degraded", "alternatives", "assumptions"):
        assert key in doc
    assert doc["schema"] == SCHEMA
    assert set(doc["recommended"]) >= {"node_type", "nodes", "active_nodes", "backup_nodes", "workers_per_node",
                                       "cost_per_hour"}
    for f in doc["fleet"]:  # no inventory given: no address invented
        assert isinstance(f["weight"], int) and f["address"] is None
    path = write_plan(tmp_path / "plan.yaml", doc)
    assert yaml.safe_load(path.read_text()) == doc
    assert read_plan(path)["target"]["qps"] == 300.0


def test_read_plan_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_plan(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: asrtk.plan/v9\n")
    with pytest.raises(ConfigError, match="expected 'asrtk.plan/v1'"):
        read_plan(bad)


def test_noisy_dips_are_smoothed_not_trusted() -> None:
    from toolkit.capacity.planner import monotone

    assert monotone([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert monotone([1.0, 3.0, 2.0], [1, 1, 3]) == [1.0, 2.25, 2.25]  # the longer step counts more
    # a lucky fast point above a failing one must not move the capacity past the failure
    cap = capacity_at_slo(curve((10, 0.2, 0), (20, 1.6, 0), (22, 0.3, 0), (30, 2.5, 0)), 0.95, 1.0, 0.01)
    assert cap.rps is not None and cap.rps < 20


def test_validation_compares_at_the_offered_load(tmp_path) -> None:
    from toolkit.capacity.validation import judge_validation

    doc = {"slo": {"percentile": 0.95, "latency_s": 1.0, "max_error_rate": 0.01},
           "expected": {"per_node_rps": 20.0, "p95_s_measured": 0.4, "p95_s_model": 0.5,
                        "curve": [{"rps": 10.0, "latency_s": 0.2}, {"rps": 30.0, "latency_s": 0.8}]}}

    def summary(offered: float, done: float, p95: float, err: float = 0.0) -> dict:
        return {"load": {"offered_rps": offered}, "throughput": {"rps": done},
                "latency_s": {"p50": p95 / 3, "p95": p95, "p99": p95 * 1.2}, "requests": {"error_rate": err}}

    v = judge_validation(doc, summary(18.0, 18.0, 0.33), 0.2, tmp_path)
    expected_at_18 = math.exp(math.log(0.2) + 0.4 * math.log(4.0))
    assert v.predicted_s == pytest.approx(expected_at_18) and v.predicted_planned_s == 0.4
    assert v.passed and v.deviation == pytest.approx(0.33 / expected_at_18 - 1)
    slow = judge_validation(doc, summary(20.0, 20.0, 0.6), 0.2, tmp_path)
    assert not slow.passed and any("off the prediction" in r for r in slow.reasons)
    behind = judge_validation(doc, summary(20.0, 15.0, 0.4), 0.2, tmp_path)
    assert not behind.passed and any("completed" in r for r in behind.reasons)
    breach = judge_validation(doc, summary(20.0, 20.0, 1.5), 5.0, tmp_path)
    assert not breach.passed and any("breaches the SLO" in r for r in breach.reasons)


def test_validation_off_the_prediction_is_inconclusive_when_not_like_for_like(tmp_path) -> None:
    from toolkit.capacity.validation import judge_validation

    doc = {"slo": {"percentile": 0.95, "latency_s": 1.0, "max_error_rate": 0.01},
           "expected": {"per_node_rps": 20.0, "p95_s_measured": 0.4, "target_cpu_s_per_request": 0.010,
                        "curve": [{"rps": 10.0, "latency_s": 0.2}, {"rps": 30.0, "latency_s": 0.8}]}}

    def summary(p95: float, cpu: float | None, interference: float = 0.02) -> dict:
        return {"load": {"offered_rps": 20.0}, "throughput": {"rps": 20.0},
                "latency_s": {"p50": p95 / 3, "p95": p95, "p99": p95 * 1.2}, "requests": {"error_rate": 0.0},
                "host": {"target_cpu_s_per_request": cpu, "interference_cpu_cores_mean": interference,
                         "interference_threshold_cores": 0.1, "disturbed": interference > 0.1}}

    same = judge_validation(doc, summary(0.6, 0.0105), 0.2, tmp_path)  # +5% CPU: the same machine
    assert same.comparable and same.verdict == "fail" and not same.passed
    slower_machine = judge_validation(doc, summary(0.6, 0.014), 0.2, tmp_path)  # +40% CPU per request
    assert not slower_machine.comparable and slower_machine.verdict == "inconclusive" and not slower_machine.passed
    assert any("+40%" in c and "not the machine" in c for c in slower_machine.comparability)
    assert slower_machine.cpu_s_per_request_planned == 0.010 and slower_machine.cpu_s_per_request_measured == 0.014
    busy = judge_validation(doc, summary(0.6, 0.010, interference=0.6), 0.2, tmp_path)
    assert busy.verdict == "inconclusive" and any("busy with other work" in c for c in busy.comparability)
    # within tolerance it holds even when not like for like (the warning stays)
    ok = judge_validation(doc, summary(0.41, 0.014), 0.2, tmp_path)
    assert ok.passed and ok.verdict == "pass" and not ok.comparable
    # an SLO breach is a failure whatever the conditions
    breach = judge_validation(doc, summary(1.5, 0.014), 5.0, tmp_path)
    assert breach.verdict == "fail"
    # a remote target (no CPU figure) is judged on latency alone
    remote = judge_validation(doc, summary(0.41, None), 0.2, tmp_path)
    assert remote.comparable and remote.passed
    assert remote.as_dict()["run_dir"] == str(tmp_path)


def test_like_for_like_means_as_much_interference_as_when_swept(tmp_path) -> None:
    from toolkit.capacity.validation import judge_validation

    def doc(then: float | None, predicted: float = 0.063) -> dict:
        return {"slo": {"percentile": 0.95, "latency_s": 1.0},
                "expected": {"per_node_rps": 50.0, "p95_s_measured": predicted, "sweep_interference_cpu_cores": then}}

    def summary(p95: float, now: float) -> dict:
        return {"load": {"offered_rps": 50.0}, "throughput": {"rps": 50.0}, "requests": {"error_rate": 0.0},
                "latency_s": {"p50": p95 / 3, "p95": p95, "p99": p95 * 1.2},
                "host": {"interference_cpu_cores_mean": now, "interference_threshold_cores": 0.1,
                         "disturbed": now > 0.1}}

    # figures from the 2-core test VM
    hit = judge_validation(doc(0.06), summary(0.066, 0.08), 0.2, tmp_path)  # some steal, as much as then
    assert hit.comparable and hit.passed and hit.interference_cpu_cores_planned == 0.06
    # equally disturbed is not like for like: 0.24 and 0.23 cores gave +34% on the test VM
    equal = judge_validation(doc(0.24, predicted=0.05), summary(0.067, 0.23), 0.2, tmp_path)
    assert not equal.comparable and equal.verdict == "inconclusive"
    assert any("hypervisor's" in c for c in equal.comparability)
    steal = judge_validation(doc(0.12), summary(0.25, 0.46), 0.2, tmp_path)
    assert steal.verdict == "inconclusive" and not steal.comparable
    assert any("0.46 CPU cores" in c and "0.12 while the sweep measured" in c for c in steal.comparability)
    # a quiet validation of a disturbed sweep point is not like for like either: the prediction is inflated
    quiet = judge_validation(doc(0.46, predicted=0.25), summary(0.063, 0.01), 0.2, tmp_path)
    assert not quiet.comparable and quiet.deviation < -0.2
    # equally busy, but so busy that the tail belongs to the hypervisor
    stolen = judge_validation(doc(0.78, predicted=0.44), summary(0.85, 0.8), 0.2, tmp_path)
    assert not stolen.comparable and any("hypervisor's" in c for c in stolen.comparability)
    # a plan that does not record it falls back to the absolute threshold
    old = judge_validation(doc(None), summary(0.066, 0.15), 0.2, tmp_path)
    assert not old.comparable and any("busy with other work" in c for c in old.comparability)


def test_the_plan_records_the_sweeps_interference_at_the_planned_load() -> None:
    pts = tuple(CurvePoint(r, {0.95: p95}, 0.0, interference_cores=i)
                for r, p95, i in ((10, 0.05, 0.02), (50, 0.063, 0.12), (100, 0.3, 0.04), (150, 2.0, 0.03)))
    plan = make_plan([NodeType("a", "x", (WorkerCurve(1, pts),))], PlanRequest(30, slo_latency_s=0.8, redundancy=0))
    assert plan.expected["sweep_interference_cpu_cores"] == pytest.approx(0.07)  # halfway 0.02 -> 0.12
    bare = make_plan([NodeType("a", "x", (curve((10, 0.05, 0), (150, 2.0, 0)),))],
                     PlanRequest(30, slo_latency_s=0.8, redundancy=0))
    assert bare.expected["sweep_interference_cpu_cores"] is None


def test_validation_compares_cpu_per_request_measured_the_way_the_plan_was(tmp_path) -> None:
    from toolkit.capacity.capacityfile import cpu_per_request
    from toolkit.capacity.validation import judge_validation

    summary = {"load": {"offered_rps": 20.0}, "throughput": {"rps": 20.0}, "requests": {"error_rate": 0.0},
               "latency_s": {"p50": 0.1, "p95": 0.3, "p99": 0.4},
               "server": {"cpu_s_per_request": 0.020}, "host": {"target_cpu_s_per_request": 0.010}}
    assert cpu_per_request(summary) == (0.020, "metrics")  # the server's own counter wins
    assert cpu_per_request({"host": {"target_cpu_s_per_request": 0.01}}) == (0.01, "local")
    assert cpu_per_request({}) == (None, None)
    base = {"slo": {"percentile": 0.95, "latency_s": 1.0}, "expected": {"per_node_rps": 20.0, "p95_s_measured": 0.3}}
    by_metrics = {**base, "expected": {**base["expected"], "target_cpu_s_per_request": 0.020, "cpu_source": "metrics"}}
    by_local = {**base, "expected": {**base["expected"], "target_cpu_s_per_request": 0.020, "cpu_source": "local"}}
    assert judge_validation(by_metrics, summary, 0.2, tmp_path).comparable
    v = judge_validation(by_local, summary, 0.2, tmp_path)
    assert v.cpu_s_per_request_measured == 0.010 and not v.comparable  # -50% measured the same way


# -- result caches: --hit-rate -----------------------------------------------------------------


def test_hit_rate_scales_capacity_by_the_work_a_request_leaves_and_says_what_zero_hits_carry() -> None:
    from toolkit.capacity.planner import HitCost, hit_rate_factor

    only_a = [n for n in nodes() if n.name == "gpu-a"]
    cold = make_plan(only_a, PlanRequest(300, slo_latency_s=1.5, redundancy=1))
    warm = make_plan(only_a, PlanRequest(300, slo_latency_s=1.5, redundancy=1, hit_rate=0.5,
                                         hit_cost=HitCost(source="--hit-cost 0.1", ratio=0.1)))
    f = hit_rate_factor(0.5, 0.1)
    assert f == pytest.approx(1 / 0.55)
    cap0, cap = cold.assessments[0].capacity.rps, warm.assessments[0].capacity.rps
    assert cap == pytest.approx(cap0 * f)
    assert warm.recommended.active_nodes == math.ceil(300 / (0.8 * cap)) < cold.recommended.active_nodes
    c = warm.expected["cache"]
    assert c["hit_rate"] == 0.5 and c["hit_cost_ratio"] == 0.1 and c["hit_cost_source"] == "--hit-cost 0.1"
    assert c["capacity_rps_at_zero_hit_rate"] == pytest.approx(warm.recommended.active_nodes * cap0)
    assert c["meets_target_at_zero_hit_rate"] is False
    note = next(n for n in warm.notes if "if it drops to 0%" in n)
    covered = (warm.recommended.nodes * cap0) >= 300
    assert ("does not cover" in note) is (not covered), note
    assert "for a 50% cache hit rate" in warm.assessments[0].capacity.note
    # the latency curve is misses: the planned load reads it at the miss-equivalent rate
    assert warm.expected["p95_s_measured"] <= cold.expected["p95_s_measured"] + 1e-9
    assert cold.expected["cache"] is None


def test_hit_cost_measured_from_a_cached_run_against_the_sweeps_miss_cost() -> None:
    from toolkit.capacity.planner import HitCost

    # misses cost 10 ms CPU; a run at 60% hits cost 4.6 ms a request: 0.4 x 10 + 0.6 x h = 4.6 -> h = 1 ms
    ratio, why = HitCost(source="--hit-cost-from r", run_hit_ratio=0.6, run_cpu_s_per_request=0.0046).ratio_for(0.010)
    assert ratio == pytest.approx(0.1) and "at hit ratio 0.60" in why
    with pytest.raises(ConfigError, match="no CPU per request"):
        HitCost(source="x", run_hit_ratio=0.6, run_cpu_s_per_request=0.004).ratio_for(None)
    with pytest.raises(ConfigError, match="no cache hit ratio"):
        HitCost(source="x", run_hit_ratio=None, run_cpu_s_per_request=0.004).ratio_for(0.01)


def test_hit_rate_without_a_hit_cost_is_refused() -> None:
    with pytest.raises(ConfigError, match="--hit-cost"):
        PlanRequest(300, hit_rate=0.3)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        PlanRequest(300, hit_rate=1.0)
