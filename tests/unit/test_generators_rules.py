"""Rules, alerts and their promtool tests from one source (promtool itself runs in tests/integration)."""

from __future__ import annotations

import re

import pytest
import yaml

from reference_server.metrics_spec import exposed_series_names
from toolkit.generators import rules
from toolkit.generators import spec as S
from toolkit.gpu_exporter import METRIC_NAMES as DCGM_NAMES

LEVEL_METRIC_OPS = re.compile(r"^[a-z_]+:[A-Za-z_][A-Za-z0-9_]*:[a-z0-9_]+$")


def _spec(**kw) -> S.OpsSpec:  # noqa: ANN003
    return S.from_flags(["gpu-1:8000:2", "gpu-2:8000"], target_qps=120, **kw)


def test_recording_rules_are_named_level_metric_operations() -> None:
    names = rules.recorded_names(_spec())
    assert names
    for n in names:
        assert LEVEL_METRIC_OPS.match(n), n


def test_slo_uses_the_snapped_bucket_boundary_and_says_so() -> None:
    snapped = _spec(slo="p95=1.3s")
    text = rules.render_rules(snapped)
    assert 'le="1.5"' in text and 'le="1.3"' not in text
    assert "snapped UP to 1.5 s" in text and "LATENCY_BUCKETS_S" in text
    exact = rules.render_rules(_spec(slo="p99=2s"))
    assert 'le="2.0"' in exact and "snapped" not in exact
    tests = rules.render_tests(snapped)
    assert 'le="1.5"' in tests


def test_burn_rate_thresholds_follow_the_budget() -> None:
    doc = yaml.safe_load(rules.render_rules(_spec(slo="p95=1.5s", max_error_rate="1%")))
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    lat = alerts["AsrtkLatencyBudgetBurn"]["expr"]
    assert "ratio_rate1h" in lat and "ratio_rate5m" in lat and "> 0.72" in lat and "> 0.3" in lat
    err = alerts["AsrtkErrorBudgetBurn"]["expr"]
    assert "> 0.144" in err and "> 0.06" in err
    slow = alerts["AsrtkErrorBudgetBurnSlow"]["expr"]
    assert "ratio_rate1d" in slow and "ratio_rate3d" in slow and "> 0.03" in slow and "> 0.01" in slow
    # a loose SLO (p80) would need a burn above 100%: capped so the page can still fire
    loose = yaml.safe_load(rules.render_rules(_spec(slo="p80=1s")))
    page = next(r for g in loose["groups"] for r in g["rules"] if r.get("alert") == "AsrtkLatencyBudgetBurn")
    assert f"> {rules.BURN_THRESHOLD_CAP:g}" in page["expr"]


def test_required_alerts_exist_with_runbooks_and_severities() -> None:
    doc = yaml.safe_load(rules.render_rules(_spec()))
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) >= {
        "AsrtkLatencyBudgetBurn", "AsrtkLatencyBudgetBurnSlow", "AsrtkErrorBudgetBurn", "AsrtkErrorBudgetBurnSlow",
        "AsrtkQueueSaturated", "AsrtkInstanceDown", "AsrtkGpuMemoryHigh", "AsrtkTrafficAbovePlan",
    }
    for name, a in alerts.items():
        assert a["labels"]["severity"] in {"page", "ticket", "warning"}, name
        assert a["annotations"]["runbook"].startswith("1. "), name
        assert a["annotations"]["summary"] and a["annotations"]["description"], name
    assert "> 120" in alerts["AsrtkTrafficAbovePlan"]["expr"]
    assert "> 0.9" in alerts["AsrtkGpuMemoryHigh"]["expr"]


def test_runbook_url_is_applied_to_every_alert() -> None:
    s = _spec().with_overrides(runbook_url="https://runbooks.example/asrtk/")
    doc = yaml.safe_load(rules.render_rules(s))
    for g in doc["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                assert r["annotations"]["runbook_url"] == f"https://runbooks.example/asrtk#{r['alert'].lower()}"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    s = _spec()
    rs = rules.build(s)
    doc = yaml.safe_load(rules.render_tests(s))
    assert doc["rule_files"] == [rules.RULES_FILE]
    by_alert: dict[str, list[int]] = {}
    for t in doc["tests"]:
        for art in t.get("alert_rule_test", []):
            by_alert.setdefault(art["alertname"], []).append(len(art["exp_alerts"]))
    for a in rs.alerts:
        counts = by_alert[a.name]
        assert any(c > 0 for c in counts) and any(c == 0 for c in counts), a.name


def test_expected_annotations_are_the_rendered_templates() -> None:
    s = _spec()
    doc = yaml.safe_load(rules.render_tests(s))
    t = next(t for t in doc["tests"] if t["alert_rule_test"][0]["alertname"] == "AsrtkInstanceDown"
             and t["alert_rule_test"][0]["exp_alerts"])
    exp = t["alert_rule_test"][0]["exp_alerts"][0]
    assert exp["exp_labels"] == {"job": "asrtk", "instance": "gpu-1:8000", "severity": "page"}
    assert exp["exp_annotations"]["summary"] == "gpu-1:8000 of asrtk is down"
    assert "{{" not in str(exp["exp_annotations"])


def test_render_template() -> None:
    assert rules.render_template("{{ $labels.a }}-{{$labels.b}}-{{ $labels.c }}", {"a": "1", "b": "2"}) == "1-2-"


def test_rules_read_only_contract_metrics() -> None:
    allowed = exposed_series_names() | set(DCGM_NAMES) | {"up"}
    used = rules.rule_metric_names(_spec())
    assert used and used <= allowed, used - allowed
    assert {"asrtk_requests_total", "asrtk_request_duration_seconds_bucket", "up", "DCGM_FI_DEV_FB_USED"} <= used


@pytest.mark.parametrize(
    "expr, names",
    [
        ('sum by (job, route) (rate(asrtk_requests_total{job="a",status=~"5.."}[5m]))', {"asrtk_requests_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
        ("a / on(instance) group_left b or vector(1e6) * c", {"a", "b", "c"}),
        ('label_replace(vector(0.5), "instance", "h:1", "", "")', set()),
        ("job:foo:rate5m > 0.72 and ignoring(x) bar", {"job:foo:rate5m", "bar"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert rules.metric_names(expr) == names
