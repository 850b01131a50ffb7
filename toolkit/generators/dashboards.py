"""Grafana dashboards (JSON model, schemaVersion 39) from the same :class:`OpsSpec` as the rules.

Three dashboards: service overview, capacity (actual vs planned), GPU (DCGM metric names, so
they work with NVIDIA's dcgm-exporter as well as ``asrtk gpu-exporter``). Every panel has a
unit, queries use ``$__rate_interval`` and a ``datasource`` template variable. Panels are
declared as data (:class:`Panel`); the renderer lays them out two per row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from toolkit.generators.rules import CACHE_HIT_RATE_MIN
from toolkit.generators.spec import OpsSpec

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""
    max: float | None = None


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # Grafana's label_values(metric, label)
    include_all: bool = True


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: tuple[Panel, ...]
    filename: str


def _ok_or_zero(numerator: str, denominator: str) -> str:
    # "numerator or denominator * 0" shows 0 (not "no data") while nothing failed.
    return f"(\n  {numerator}\n  or\n  {denominator} * 0\n)\n/\n{denominator}"


def service_overview(spec: OpsSpec) -> Dashboard:
    sel = 'job=~"$job",instance=~"$instance"'
    rsel = f'{sel},route=~"$route"'
    req = f"sum by (route) (rate(asrtk_requests_total{{{rsel}}}[{RI}]))"
    err = f'sum by (route) (rate(asrtk_requests_total{{{rsel},status=~"5.."}}[{RI}]))'
    q = lambda p: Target(  # noqa: E731
        f"histogram_quantile({p}, sum by (le, route) (rate(asrtk_request_duration_seconds_bucket{{{rsel}}}[{RI}])))",
        f"p{p * 100:g} {{{{route}}}}",
    )
    panels = (
        Panel("Requests per second", "reqps", (Target(req, "{{route}}"),),
              "Finished requests by route (all status codes)."),
        Panel("Error ratio (5xx)", "percentunit", (Target(_ok_or_zero(err, req), "{{route}}"),),
              f"Share of requests answered 5xx. Availability SLO: <= {spec.max_error_rate:.4g}.", max=1),
        Panel("Latency p50 / p95 / p99", "s",
              (q(0.5), q(0.95), q(0.99), Target(f"vector({spec.slo_threshold_s:g})", f"SLO {spec.percentile_label}")),
              "From the server's histogram (arrival to response). The SLO line is a bucket boundary."),
        Panel("Real-time factor", "suffix: xRT",
              (Target(f"sum by (route) (rate(asrtk_request_duration_seconds_sum{{{rsel}}}[{RI}]))\n/\n"
                      f"sum by (route) (rate(asrtk_audio_seconds_total{{{rsel}}}[{RI}]))", "{{route}}"),),
              "Processing seconds per second of audio (lower is faster; below 1 is faster than real time)."),
        Panel("Batching queue depth", "short",
              (Target(f"sum by (model) (asrtk_queue_depth{{{sel}}})", "{{model}} waiting"),
               Target(f"sum by (model) (asrtk_queue_capacity{{{sel}}})", "{{model}} capacity")),
              "Items waiting for a batch; at capacity the server answers 503 queue_full."),
        Panel("Mean batch size", "short",
              (Target(f"sum by (model) (rate(asrtk_batch_size_sum{{{sel}}}[{RI}]))\n/\n"
                      f"sum by (model) (rate(asrtk_batch_size_count{{{sel}}}[{RI}]))", "{{model}}"),),
              "Items per executed batch; near --max-batch means the batcher is saturated."),
        Panel("Queue wait and inference time (p95)", "s",
              (Target(f"histogram_quantile(0.95, sum by (le, model) (rate(asrtk_queue_wait_seconds_bucket{{{sel}}}[{RI}])))",
                      "queue wait {{model}}"),
               Target(f"histogram_quantile(0.95, sum by (le, model) "
                      f"(rate(asrtk_inference_duration_seconds_bucket{{{sel}}}[{RI}])))", "inference {{model}}")),
              "Queue wait growing with flat inference time = saturation; inference growing = slower compute."),
        Panel("In-flight requests", "short",
              (Target(f"sum by (route) (asrtk_inflight_requests{{{rsel}}})", "{{route}}"),),
              "Requests being handled now, all workers summed."),
        Panel("Rejected requests by reason", "reqps",
              (Target(f"sum by (reason) (rate(asrtk_rejected_requests_total{{{rsel}}}[{RI}]))", "{{reason}}"),),
              "Refused before or instead of inference (queue_full, deadline, too_large, bad_input, ...)."),
        Panel("Audio processed", "s",
              (Target(f"sum by (route) (rate(asrtk_audio_seconds_total{{{rsel}}}[{RI}]))", "{{route}}"),),
              "Seconds of audio per second (input for ASR and emotion, output for TTS)."),
        Panel("Result-cache hit rate", "percentunit",
              (Target(f'sum by (model) (rate(asrtk_cache_requests_total{{{sel},result="hit"}}[{RI}]))\n/\n'
                      f"sum by (model) (rate(asrtk_cache_requests_total{{{sel}}}[{RI}]))", "{{model}}"),
               Target(f"vector({CACHE_HIT_RATE_MIN:g})", "alert threshold")),
              f"Share of requests answered from the result cache (--cache; X-Cache: hit). Below "
              f"{CACHE_HIT_RATE_MIN:.0%} for 15 minutes: AsrtkCacheHitRateLow. No data: the servers run no cache.", max=1),
        Panel("Result-cache evictions and errors", "ops",
              (Target(f"sum by (level) (rate(asrtk_cache_evictions_total{{{sel}}}[{RI}]))", "evicted ({{level}})"),
               Target(f"sum by (op) (rate(asrtk_cache_errors_total{{{sel}}}[{RI}]))", "Redis {{op}} failed")),
              "Evictions rising with a falling hit rate: the memory level is too small (--cache memory:SIZE)."),
        Panel("Result cache degraded (Redis failing)", "short",
              (Target(f"max by (instance) (asrtk_cache_degraded{{{sel}}})", "{{instance}}"),
               Target(f"sum (asrtk_cache_memory_bytes{{{sel}}}) / 1048576", "memory level MiB (all instances)")),
              "1 while an instance runs without Redis: lookups are misses, the models carry the full load."),
    )
    return Dashboard(
        uid="asrtk-service", title="asrtk / Service overview", filename="asrtk-service.json",
        description="Traffic, errors, latency, real-time factor, queue and batching of the asrtk inference servers.",
        variables=(
            Variable("job", "Job", "label_values(asrtk_requests_total, job)", include_all=False),
            Variable("instance", "Instance", 'label_values(asrtk_requests_total{job=~"$job"}, instance)'),
            Variable("route", "Route", 'label_values(asrtk_requests_total{job=~"$job"}, route)'),
        ),
        panels=panels,
    )


def capacity(spec: OpsSpec) -> Dashboard:
    sel = 'job=~"$job"'
    plan_sel = f'{sel},route="{spec.route}"'
    actual = f"sum(rate(asrtk_requests_total{{{plan_sel}}}[{RI}]))"
    total_by_instance = f"sum by (instance) (rate(asrtk_requests_total{{{sel}}}[{RI}]))"
    total = f"sum(rate(asrtk_requests_total{{{sel}}}[{RI}]))"
    weights = sum(u.weight for u in spec.active)
    if spec.platform == "k8s":  # pods behind a Service share equally, however many the autoscaler runs
        planned_share = f"{total_by_instance} * 0 + 1 / scalar(count({total_by_instance}))"
        share_note = "Actual share next to the planned one: pods behind a Service get equal shares."
    else:
        planned_share = "\nor\n".join(
            f'label_replace(vector({u.weight / weights:.4g}), "instance", "{u.address}", "", "")' for u in spec.active
        )
        share_note = "Actual share next to the planned share (nginx weight / sum of active weights)."
    panels = (
        Panel(f"{spec.route}: actual vs planned", "reqps",
              (Target(actual, "actual"),
               Target(f"vector({spec.target_qps:g})", "target (plan)"),
               Target(f"vector({spec.planned_capacity_rps:g})", "planned capacity")),
              f"Target {spec.target_qps:g} r/s ({spec.source('target_qps')}); capacity {spec.planned_capacity_rps:g} r/s "
              f"({spec.source('planned_capacity_rps')})."),
        Panel("Headroom left", "percentunit",
              (Target(f"1 - {actual} / {spec.planned_capacity_rps:g}", "headroom"),),
              "Share of the planned capacity still unused; below 0 the fleet runs beyond what was measured.", max=1),
        Panel("Share of traffic per instance", "percentunit",
              (Target(f"{total_by_instance}\n/ scalar({total})", "{{instance}}"),
               Target(planned_share, "{{instance}} planned")),
              share_note, max=1),
        Panel("Requests per second per instance", "reqps", (Target(total_by_instance, "{{instance}}"),),
              "All routes. Backup instances should carry nothing while active ones are up."),
        Panel("CPU per request per instance", "s",
              (Target(f"sum by (instance) (rate(asrtk_process_cpu_seconds_total{{{sel}}}[{RI}]))\n/\n"
                      f"{total_by_instance}", "{{instance}}"),),
              "CPU seconds the worker processes spent per request. Rising at the same traffic: a slower build "
              "or a busier machine; plan.yaml's expected.target_cpu_s_per_request is what the sweep measured."),
        Panel("Queue utilization per instance", "percentunit",
              (Target(f"max by (instance) (asrtk_queue_depth{{{sel}}} / asrtk_queue_capacity{{{sel}}})",
                      "{{instance}}"),),
              "Fullest batching queue of each instance.", max=1),
        Panel(f"{spec.route} {spec.percentile_label} vs SLO", "s",
              (Target(f"histogram_quantile({spec.slo_percentile:g}, sum by (le) "
                      f"(rate(asrtk_request_duration_seconds_bucket{{{plan_sel}}}[{RI}])))", spec.percentile_label),
               Target(f"vector({spec.slo_threshold_s:g})", "SLO")),
              "Measured tail against the SLO threshold the fleet was planned for."),
    )
    return Dashboard(
        uid="asrtk-capacity", title="asrtk / Capacity", filename="asrtk-capacity.json",
        description=f"Actual traffic against the plan ({spec.origin}): headroom and load balance."
        + (" TEMPLATE (--template): the planned shares name placeholder instances; regenerate with --hosts FILE."
           if spec.addresses == "template" else ""),
        variables=(Variable("job", "Job", "label_values(asrtk_requests_total, job)", include_all=False),),
        panels=panels,
    )


def gpu(spec: OpsSpec) -> Dashboard:
    sel = 'Hostname=~"$Hostname",gpu=~"$gpu"'
    leg = "{{Hostname}} gpu{{gpu}}"
    panels = (
        Panel("GPU utilization", "percent", (Target(f"DCGM_FI_DEV_GPU_UTIL{{{sel}}}", leg),),
              "Share of time a kernel ran (DCGM_FI_DEV_GPU_UTIL).", max=100),
        Panel("GPU memory used", "percentunit",
              (Target(f"DCGM_FI_DEV_FB_USED{{{sel}}}\n/\n(DCGM_FI_DEV_FB_USED{{{sel}}} + DCGM_FI_DEV_FB_FREE{{{sel}}})",
                      leg),),
              "Frame buffer used / total; the AsrtkGpuMemoryHigh alert fires above 90%.", max=1),
        Panel("GPU memory used (bytes)", "bytes",
              (Target(f"DCGM_FI_DEV_FB_USED{{{sel}}} * 1048576", leg),), "DCGM reports MiB."),
        Panel("Power draw", "watt", (Target(f"DCGM_FI_DEV_POWER_USAGE{{{sel}}}", leg),)),
        Panel("SM clock", "hertz", (Target(f"DCGM_FI_DEV_SM_CLOCK{{{sel}}} * 1e6", leg),), "DCGM reports MHz."),
        Panel("Temperature", "celsius", (Target(f"DCGM_FI_DEV_GPU_TEMP{{{sel}}}", leg),)),
    )
    return Dashboard(
        uid="asrtk-gpu", title="asrtk / GPU", filename="asrtk-gpu.json",
        description="NVIDIA GPUs through DCGM metric names (dcgm-exporter or asrtk gpu-exporter).",
        variables=(
            Variable("Hostname", "Host", "label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)"),
            Variable("gpu", "GPU", 'label_values(DCGM_FI_DEV_GPU_UTIL{Hostname=~"$Hostname"}, gpu)'),
        ),
        panels=panels,
    )


def all_dashboards(spec: OpsSpec) -> tuple[Dashboard, ...]:
    return (service_overview(spec), capacity(spec), gpu(spec))


def to_json(d: Dashboard) -> dict[str, Any]:
    templating: list[dict[str, Any]] = [{
        "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": [],
    }]
    for v in d.variables:
        templating.append({
            "name": v.name, "label": v.label, "type": "query", "datasource": DS,
            "query": {"query": v.query, "refId": f"{v.name}-query"}, "definition": v.query,
            "refresh": 2, "sort": 1, "multi": v.include_all, "includeAll": v.include_all,
            **({"allValue": ".*"} if v.include_all else {}),
            "current": {}, "hide": 0, "options": [], "regex": "",
        })
    panels = []
    for i, p in enumerate(d.panels):
        defaults: dict[str, Any] = {"unit": p.unit, "min": 0}
        if p.max is not None:
            defaults["max"] = p.max
        panels.append({
            "id": i + 1, "type": "timeseries", "title": p.title, "description": p.description,
            "datasource": DS,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [
                {"refId": chr(ord("A") + j), "datasource": DS, "expr": t.expr, "legendFormat": t.legend,
                 "range": True}
                for j, t in enumerate(p.targets)
            ],
        })
    return {
        "uid": d.uid, "title": d.title, "description": d.description,
        "tags": ["asrtk", "generated"], "timezone": "browser", "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": templating}, "annotations": {"list": []}, "links": [],
        "panels": panels,
    }


def render(d: Dashboard) -> str:
    return json.dumps(to_json(d), indent=2, ensure_ascii=False) + "\n"


def render_all(spec: OpsSpec) -> dict[str, str]:
    """``{filename: JSON text}`` for every dashboard."""
    return {d.filename: render(d) for d in all_dashboards(spec)}
