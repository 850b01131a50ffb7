"""OpsSpec: the generators' input, from plan.yaml (asrtk.plan/v1) or flags, with documented defaults."""

from __future__ import annotations

import copy

import pytest

from reference_server.metrics_spec import LATENCY_BUCKETS_S
from toolkit.errors import ConfigError, UsageError
from toolkit.generators import spec as S

PLAN = {
    "schema": "asrtk.plan/v1",
    "target": {"qps": 300.0, "scenario": "callcenter", "route": "/recognize"},
    "slo": {"percentile": 0.95, "latency_s": 1.3, "max_error_rate": 0.01},
    "headroom": 0.8,
    "node_types": [
        {"name": "gpu-a", "capacity_rps": 55.0, "workers_per_node": 4},
        {"name": "gpu-b", "capacity_rps": 30.0, "workers_per_node": 2},
    ],
    "fleet": [
        {"name": "gpu-a-1", "node_type": "gpu-a", "address": "gpu-a-1:8000", "weight": 55, "backup": False},
        {"name": "gpu-b-1", "node_type": "gpu-b", "address": "gpu-b-1:8000", "weight": 30, "backup": False},
        {"name": "gpu-a-2", "node_type": "gpu-a", "address": "gpu-a-2:8000", "weight": 55, "backup": True},
    ],
    "latency_s": {"p50": 0.4, "p95": 1.1, "p99": 1.6, "max": 2.5},
    "request": {"max_body_bytes": 19200044, "streaming": True},
}


def test_from_plan_reads_every_field() -> None:
    s = S.from_plan(PLAN)
    assert s.target_qps == 300.0
    assert s.route == "/recognize"
    assert (s.slo_percentile, s.slo_latency_s, s.max_error_rate) == (0.95, 1.3, 0.01)
    assert [u.weight for u in s.upstreams] == [55, 30, 55]
    assert [u.backup for u in s.upstreams] == [False, False, True]
    assert s.upstreams[1].node_type == "gpu-b"
    assert (s.latency_p50_s, s.latency_p99_s, s.latency_max_s) == (0.4, 1.6, 2.5)
    assert s.max_body_bytes == 19200044
    assert s.streaming is True
    # planned capacity = measured capacity of the ACTIVE members only (backup excluded)
    assert s.planned_capacity_rps == 85.0
    assert "node_types" in s.source("planned_capacity_rps")


def test_slo_snaps_up_to_next_bucket_boundary() -> None:
    s = S.from_plan(PLAN)
    assert s.slo_threshold_s == 1.5 and s.slo_snapped
    assert S.snap_to_bucket(1.5) == 1.5
    assert S.snap_to_bucket(0.001) == LATENCY_BUCKETS_S[0]
    assert S.snap_to_bucket(2.01) == 2.5
    with pytest.raises(ConfigError, match="top latency bucket"):
        S.snap_to_bucket(LATENCY_BUCKETS_S[-1] + 1)


def test_minimal_plan_uses_documented_defaults() -> None:
    s = S.from_plan({"target": {"qps": 40}, "fleet": [{"address": "10.0.0.1:8000"}]})
    assert s.route == S.DEFAULT_ROUTE
    assert (s.slo_percentile, s.slo_latency_s, s.max_error_rate) == (0.95, 1.5, 0.01)
    assert s.upstreams[0].weight == 1 and not s.upstreams[0].backup
    assert s.latency_max_s is None and s.latency_p50_s is None
    assert s.max_body_bytes == S.DEFAULT_MAX_BODY_BYTES
    assert s.streaming is False
    assert s.planned_capacity_rps == pytest.approx(40 / 0.8)
    assert "headroom" in s.source("planned_capacity_rps")
    assert s.source("max_body_bytes").startswith("default")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p.pop("target"), "target.qps is missing"),
        (lambda p: p["target"].update(qps="fast"), "target.qps must be a number"),
        (lambda p: p["target"].update(qps=-3), "target qps must be a number > 0"),
        (lambda p: p.update(schema="asrtk.plan/v9"), "asrtk.plan/v1"),
        (lambda p: p.update(fleet=[]), "fleet is missing or empty"),
        (lambda p: p["fleet"][0].update(weight=0), r"fleet\[0\].weight must be an integer >= 1, got 0"),
        (lambda p: p["fleet"][1].update(address="no-port"), r"fleet\[1\].address 'no-port' is not HOST:PORT"),
        (lambda p: p["fleet"][1].update(backup="yes"), r"fleet\[1\].backup must be true or false"),
        (lambda p: [f.update(backup=True) for f in p["fleet"]], "every upstream is a backup"),
        (lambda p: p["fleet"][1].update(address="gpu-a-1:8000"), "listed twice"),
        (lambda p: p["slo"].update(percentile=95), r"percentile must be in \(0, 1\)"),
        (lambda p: p["slo"].update(latency_s=5000), "above the top latency bucket"),
        (lambda p: p["request"].update(max_body_bytes=-1), "max_body_bytes must be a positive integer"),
        (lambda p: p.update(slo=[1, 2]), "slo must be a mapping"),
    ],
)
def test_bad_plans_name_the_key_and_the_fix(mutate, message) -> None:  # noqa: ANN001
    plan = copy.deepcopy(PLAN)
    mutate(plan)
    with pytest.raises(ConfigError, match=message) as info:
        S.from_plan(plan, name="p.yaml")
    assert str(info.value).startswith("p.yaml: ")
    assert "\n" not in str(info.value)


def test_parse_upstream() -> None:
    u = S.parse_upstream("gpu-1:8000:55")
    assert (u.address, u.weight, u.backup, u.host) == ("gpu-1:8000", 55, False, "gpu-1")
    v6 = S.parse_upstream("[::1]:9000", backup=True)
    assert (v6.address, v6.weight, v6.backup, v6.host) == ("[::1]:9000", 1, True, "[::1]")
    for bad in ("gpu-1", "gpu-1:0", "gpu-1:8000:0", "gpu 1:8000"):
        with pytest.raises(UsageError, match="--upstream"):
            S.parse_upstream(bad)


def test_from_flags() -> None:
    s = S.from_flags(["a:1:3", "b:2"], ["c:3"], target_qps=60, slo="p99=2s", max_error_rate="0.5%")
    assert [(u.address, u.weight, u.backup) for u in s.upstreams] == [("a:1", 3, False), ("b:2", 1, False), ("c:3", 1, True)]
    assert s.slo_percentile == pytest.approx(0.99) and s.slo_latency_s == 2.0
    assert s.max_error_rate == pytest.approx(0.005)
    assert s.planned_capacity_rps == pytest.approx(75.0)
    assert S.from_flags(["a:1"], target_qps=60, capacity_rps=90).planned_capacity_rps == 90
    with pytest.raises(UsageError, match="--target-qps is required"):
        S.from_flags(["a:1"])
    with pytest.raises(ConfigError, match="no upstream servers"):
        S.from_flags([], target_qps=1)


def test_with_overrides_revalidates_and_records_source() -> None:
    s = S.default_spec().with_overrides(target_qps=50.0)
    assert s.target_qps == 50.0 and s.source("target_qps") == "command line"
    with pytest.raises(ConfigError, match="target qps"):
        S.default_spec().with_overrides(target_qps=0.0)


def _unassigned() -> dict:
    plan = copy.deepcopy(PLAN)
    for f in plan["fleet"]:
        f["address"] = None
    return plan


def test_a_plan_without_addresses_gives_placeholders_the_address_bound_generators_refuse() -> None:
    from toolkit import generators

    s = S.from_plan(_unassigned(), name="p.yaml")
    assert s.addresses == "missing"
    assert [u.address for u in s.upstreams] == [
        "gpu-a-1.replace-me.invalid:8000", "gpu-b-1.replace-me.invalid:8000", "gpu-a-2.replace-me.invalid:8000"]
    for kind in ("nginx", "prometheus", "dashboards", "all"):
        with pytest.raises(UsageError, match=f"^{kind} needs the servers' addresses and p.yaml has none.*--hosts"):
            generators.generate(kind, s)
    assert set(generators.generate("alerts", s)) == {"alerts/asrtk-rules.yml", "alerts/asrtk-rules.test.yml"}
    t = s.with_overrides(addresses="template")
    assert "TEMPLATE" in generators.generate("nginx", t)["nginx/asrtk.conf"]
    plan = _unassigned()
    plan["fleet"][0]["address"] = "10.0.0.1:8000"  # some given, some not: no guessing
    with pytest.raises(ConfigError, match=r"fleet\[1\].address is missing"):
        S.from_plan(plan, name="p.yaml")


def test_inventory_replaces_the_plans_addresses_slot_by_slot() -> None:
    from toolkit.capacity.inventory import parse_hosts

    hosts = parse_hosts("10.0.0.1:8000 type=gpu-a\n10.0.0.2:8000 type=gpu-b\n10.0.0.3:8000 type=gpu-a\n", "inv")
    s = S.from_plan(_unassigned(), name="p.yaml", hosts=hosts, hosts_source="inv")
    assert s.addresses == "given"
    assert [(u.address, u.node_type, u.weight, u.backup) for u in s.upstreams] == [
        ("10.0.0.1:8000", "gpu-a", 55, False), ("10.0.0.3:8000", "gpu-a", 55, True), ("10.0.0.2:8000", "gpu-b", 30, False)]
    assert s.planned_capacity_rps == 85.0  # still the active members' measured capacity
    # a hand-written plan without a fleet takes the inventory as it is
    bare = S.from_plan({"target": {"qps": 10}}, hosts=parse_hosts("h:1\ng:2 backup\n", "inv"), hosts_source="inv")
    assert [(u.address, u.backup) for u in bare.upstreams] == [("h:1", False), ("g:2", True)]


def test_plan_sources_are_quoted_for_derived_values() -> None:
    plan = copy.deepcopy(PLAN)
    plan["sources"] = {"latency_s": "CSV m.csv: gpu-a (4 workers) measured at 30 rps per node (p95 only)",
                       "request.max_body_bytes": "scenario callcenter: largest upload (sweep s/capacity.json)",
                       "capacity": "gpu-a: CSV m.csv (knee)"}
    s = S.from_plan(plan, name="p.yaml")
    assert s.source("latency_max_s") == ("p.yaml latency_s.max = 2.5 s (CSV m.csv: gpu-a (4 workers) measured at "
                                         "30 rps per node (p95 only))")
    assert s.source("max_body_bytes") == ("p.yaml request.max_body_bytes = 19200044 (scenario callcenter: largest "
                                          "upload (sweep s/capacity.json))")
    assert s.source("planned_capacity_rps").endswith("; measured by gpu-a: CSV m.csv (knee)")
