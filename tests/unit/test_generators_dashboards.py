"""Grafana dashboards: units everywhere, $__rate_interval, datasource variable, contract metric names."""

from __future__ import annotations

import json
import re

import pytest

from reference_server.metrics_spec import exposed_series_names
from toolkit.generators import dashboards, rules
from toolkit.generators import spec as S
from toolkit.gpu_exporter import METRIC_NAMES as DCGM_NAMES


@pytest.fixture
def spec() -> S.OpsSpec:
    return S.from_flags(["gpu-1:8000:3", "gpu-2:8000:1"], ["gpu-3:8000"], target_qps=120, slo="p95=1.3s")


def _all(spec: S.OpsSpec) -> dict[str, dict]:
    return {name: json.loads(text) for name, text in dashboards.render_all(spec).items()}


def _targets(d: dict) -> list[dict]:
    return [t for p in d["panels"] for t in p["targets"]]


def test_three_dashboards_with_stable_uids(spec: S.OpsSpec) -> None:
    ds = _all(spec)
    assert sorted(ds) == ["asrtk-capacity.json", "asrtk-gpu.json", "asrtk-service.json"]
    assert {d["uid"] for d in ds.values()} == {"asrtk-capacity", "asrtk-gpu", "asrtk-service"}


def test_every_panel_has_a_unit_and_uses_the_datasource_variable(spec: S.OpsSpec) -> None:
    for name, d in _all(spec).items():
        var = d["templating"]["list"][0]
        assert (var["name"], var["type"], var["query"]) == ("datasource", "datasource", "prometheus"), name
        for p in d["panels"]:
            assert p["fieldConfig"]["defaults"]["unit"], (name, p["title"])
            assert p["datasource"]["uid"] == "${datasource}"
            assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
        for v in d["templating"]["list"][1:]:
            assert v["datasource"]["uid"] == "${datasource}"


def test_rates_use_rate_interval_not_fixed_windows(spec: S.OpsSpec) -> None:
    for d in _all(spec).values():
        for t in _targets(d):
            windows = re.findall(r"\[([^\]]+)\]", t["expr"])
            assert all(w == "$__rate_interval" for w in windows), t["expr"]


def test_service_overview_covers_the_issue_list(spec: S.OpsSpec) -> None:
    titles = " | ".join(p["title"] for p in _all(spec)["asrtk-service.json"]["panels"]).lower()
    for word in ("requests per second", "error", "p50 / p95 / p99", "real-time factor", "queue depth", "batch size"):
        assert word in titles


def test_capacity_dashboard_carries_plan_figures(spec: S.OpsSpec) -> None:
    d = _all(spec)["asrtk-capacity.json"]
    exprs = [t["expr"] for t in _targets(d)]
    assert "vector(120)" in exprs  # target
    assert "vector(150)" in exprs  # capacity = 120 / 0.8
    share = next(e for e in exprs if "label_replace" in e)
    found = dict(re.findall(r'vector\(([0-9.]+)\), "instance", "([^"]+)"', share))
    planned = {inst: float(v) for v, inst in found.items()}
    assert planned == {"gpu-1:8000": 0.75, "gpu-2:8000": 0.25}  # backups carry no planned share


def test_gpu_dashboard_uses_dcgm_names_only(spec: S.OpsSpec) -> None:
    d = _all(spec)["asrtk-gpu.json"]
    used = {n for t in _targets(d) for n in rules.metric_names(t["expr"])}
    assert used and used <= set(DCGM_NAMES)
    assert [v["name"] for v in d["templating"]["list"]] == ["datasource", "Hostname", "gpu"]


def test_dashboards_read_only_contract_metrics(spec: S.OpsSpec) -> None:
    allowed = exposed_series_names() | set(DCGM_NAMES) | {"up"}
    for name, d in _all(spec).items():
        used = {n for t in _targets(d) for n in rules.metric_names(t["expr"])}
        used |= {n for v in d["templating"]["list"][1:]
                 for n in rules.metric_names(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["definition"]))}
        assert used <= allowed, (name, used - allowed)


def test_latency_panel_shows_the_snapped_slo_line(spec: S.OpsSpec) -> None:
    d = _all(spec)["asrtk-service.json"]
    assert "vector(1.5)" in [t["expr"] for t in _targets(d)]
