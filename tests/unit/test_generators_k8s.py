"""`asrtk generate k8s`: manifests sized from the plan, refusals that name the missing flag, and
every core object valid for several Kubernetes minors (kubernetes-validate --strict, bundled schemas).

The prometheus-operator objects and the adapter config are checked against their real tools in
tests/integration/test_k8s_manifests.py."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from toolkit import generators
from toolkit.capacity.planfile import read_plan
from toolkit.errors import UsageError
from toolkit.generators import K8sOptions, k8s
from toolkit.generators.spec import from_plan

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / generators.K8S_EXAMPLE_PLAN
VERSIONS = ("1.29.0", "1.33.0", kubernetes_validate.utils.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
OPTS = K8sOptions(image="reg.example/asrtk:1", api_key_secret="asrtk-key", memory_bytes=4 * 2**30,
                  memory_source="--memory 4GiB", gpus_per_pod=1, cpu_millicores=2500, peak_qps=475.0)


def _plan() -> dict:
    return read_plan(PLAN)


def _objects(files: dict[str, str]) -> list[dict]:
    out = []
    for path, text in files.items():
        if path.startswith("k8s/"):
            out += [d for d in yaml.safe_load_all(text) if d]
    return out


def _by_kind(files: dict[str, str]) -> dict[str, dict]:
    return {o["kind"]: o for o in _objects(files) if o["kind"] != "ConfigMap" and o["metadata"]["name"] == "asrtk"}


def _render(plan: dict | None = None, **opts: object) -> dict[str, str]:
    return generators.generate("k8s", from_plan(plan or _plan(), name="plan.yaml"), replace(OPTS, **opts))


def test_sized_from_the_plan() -> None:
    plan = _plan()
    objs = _by_kind(_render(plan))
    dep, hpa, pdb = objs["Deployment"], objs["HorizontalPodAutoscaler"], objs["PodDisruptionBudget"]
    rec = plan["recommended"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[args.index("--workers") + 1] == str(rec["workers_per_node"])
    # no replicas field: the HPA owns the count (a replicas field would undo it on every apply)
    assert "replicas" not in dep["spec"]
    assert hpa["spec"]["minReplicas"] == rec["nodes"] == 5
    per_node = plan["expected"]["per_node_rps"]
    assert hpa["spec"]["maxReplicas"] == math.ceil(475 / per_node) + rec["backup_nodes"] == 20
    assert pdb["spec"]["maxUnavailable"] == rec["backup_nodes"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"] == {"cpu": "2500m", "memory": "4096Mi"}
    assert c["resources"]["limits"]["memory"] == "4096Mi" and "cpu" not in c["resources"]["limits"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= OPTS.startup_timeout_s
    drain = int(args[args.index("--drain-timeout-s") + 1])
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == sleep + drain + 5
    assert c["env"] == [{"name": "ASRTK_API_KEY", "valueFrom": {"secretKeyRef": {"name": "asrtk-key", "key": "api-key"}}}]
    assert objs["Service"]["metadata"]["name"] == "asrtk"  # the job label the rules select


def test_hpa_target_is_littles_law_from_the_queueing_model() -> None:
    plan = _plan()
    mi, lam = plan["expected"]["model_inputs"], plan["expected"]["per_node_rps"]
    s, c = mi["service_time_mean_s"], mi["servers"]
    wq = mi["p_wait"] * s / (c - lam * s) * (mi["arrival_ca2"] + mi["service_time_cv2"]) / 2
    hpa = _by_kind(_render(plan))["HorizontalPodAutoscaler"]
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == k8s.INFLIGHT_METRIC
    assert metric["target"]["averageValue"] == f"{round(lam * (s + wq) * 1000)}m"
    # without a model, the measured p50 stands in for the mean
    p = copy.deepcopy(plan)
    p["expected"]["model_inputs"] = None
    p["latency_s"]["p50"] = 0.4
    metric = _by_kind(_render(p))["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]
    assert metric["target"]["averageValue"] == f"{round(lam * 0.4 * 1000)}m"
    # neither: refused, naming the flag
    p["latency_s"]["p50"] = None
    with pytest.raises(UsageError, match="--hpa-inflight"):
        _render(p)
    assert "3500m" in _render(p, hpa_inflight=3.5)["k8s/hpa.yaml"]


def test_cpu_request_from_the_measured_cost_per_request() -> None:
    p = _plan()
    p["expected"]["target_cpu_s_per_request"] = 0.05
    p["expected"]["cpu_source"] = "sweep results/sweep-1 (server /metrics)"
    dep = _by_kind(_render(p, cpu_millicores=None))["Deployment"]
    req = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert req["cpu"] == f"{math.ceil(0.05 * p['expected']['per_node_rps'] * 100) * 10}m"  # 1250m
    assert "0.05 s (sweep results/sweep-1" in _render(p, cpu_millicores=None)["k8s/deployment.yaml"]


def test_memory_from_the_sweeps_peak() -> None:
    p = _plan()
    p["expected"]["server_memory_max_bytes"] = 3 * 2**30
    p["expected"]["memory_source"] = "results/sweep-1/capacity.json, step 4: peak server memory over the sweep's steps"
    files = _render(p, memory_bytes=None, memory_source="")
    res = _by_kind(files)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["memory"] == res["limits"]["memory"] == f"{math.ceil(3 * 1024 * k8s.MEMORY_MARGIN)}Mi"
    assert "measured peak 3072 MiB x 1.25" in files["k8s/deployment.yaml"]
    assert "step 4" in files["k8s/deployment.yaml"]
    with pytest.raises(UsageError, match="--memory SIZE"):
        _render(memory_bytes=None)  # the example plan comes from a CSV: no memory figure


def test_missing_flags_are_named_in_one_line() -> None:
    spec = from_plan(_plan(), name="plan.yaml")
    with pytest.raises(UsageError) as e:
        generators.generate("k8s", spec, K8sOptions())
    msg = str(e.value)
    assert "\n" not in msg
    for flag in ("--image", "--api-key-secret", "--memory", "--gpus-per-pod", "--cpu"):
        assert flag in msg
    with pytest.raises(UsageError, match="--peak-qps 50 is below"):
        _render(peak_qps=50.0)


def test_without_peak_the_fleet_stays_at_the_plan() -> None:
    files = _render(peak_qps=None)
    hpa = _by_kind(files)["HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 5
    assert "no --peak-qps" in files["k8s/hpa.yaml"]


def test_a_cached_plan_needs_redis() -> None:
    p = _plan()
    p["expected"]["cache"] = {"hit_rate": 0.9, "hit_cost_ratio": 0.3, "capacity_factor": 2.7}
    with pytest.raises(UsageError, match="--redis-url"):
        _render(p)
    files = _render(p, redis_image="redis:7.2")
    args = _by_kind(files)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--cache") + 1] == "memory:256MiB,redis://asrtk-redis:6379/0"
    kinds = [d["kind"] for d in yaml.safe_load_all(files["k8s/redis.yaml"])]
    assert kinds == ["Deployment", "Service"]
    files = _render(p, redis_url="redis://cache.prod:6379/2")
    assert "k8s/redis.yaml" not in files and "redis://cache.prod:6379/2" in files["k8s/deployment.yaml"]


def test_rules_and_dashboards_are_the_bare_metal_ones() -> None:
    spec = from_plan(_plan(), name="plan.yaml")
    files = generators.generate("k8s", spec, OPTS)
    rule = _by_kind(files)["PrometheusRule"]
    bare = yaml.safe_load(generators.generate("alerts", spec)["alerts/asrtk-rules.yml"])
    assert rule["spec"]["groups"] == bare["groups"]
    maps = [o for o in _objects(files) if o["kind"] == "ConfigMap"]
    assert {o["metadata"]["labels"]["grafana_dashboard"] for o in maps} == {"1"}
    names = {n for o in maps for n in o["data"]}
    assert names == {n.removeprefix("dashboards/") for n in generators.generate("dashboards", replace(spec, addresses="given"))}
    for o in maps:
        for text in o["data"].values():
            dash = json.loads(text)
            assert "replace-me" not in text  # pods are found by label: no placeholder address anywhere
            assert dash["uid"].startswith("asrtk-")


def test_core_objects_validate_strictly_on_several_kubernetes_versions() -> None:
    p = _plan()
    p["expected"]["cache"] = {"hit_rate": 0.9}
    files = _render(p, redis_image="redis:7.2", namespace="speech", monitor_labels=(("release", "kps"),))
    objs = _objects(files)
    assert {o["kind"] for o in objs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                         "ConfigMap", *CRD_KINDS}
    for version in VERSIONS:
        for o in objs:
            if o["kind"] in CRD_KINDS:
                with pytest.raises(SchemaNotFoundError):  # checked with their own models (integration test)
                    kubernetes_validate.validate(o, version, strict=True)
                continue
            kubernetes_validate.validate(o, version, strict=True)
            assert o["metadata"]["namespace"] == "speech"


def test_strict_validation_catches_a_wrong_field() -> None:
    # the check above can fail: an unknown field in a container is refused in strict mode
    dep = _by_kind(_render())["Deployment"]
    dep["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, VERSIONS[0], strict=True)


def test_all_includes_k8s_only_with_its_options() -> None:
    spec = from_plan(_plan(), name="plan.yaml", hosts=(), hosts_source="")
    spec = replace(spec, addresses="template")
    assert not any(k.startswith("k8s/") for k in generators.generate("all", spec))
    assert "k8s/deployment.yaml" in generators.generate("all", spec, OPTS)


def test_checked_in_example_is_current() -> None:
    expected = generators.k8s_example(read_plan(PLAN))
    for rel, text in expected.items():
        path = PLAN.parent / rel
        assert path.is_file(), f"{path} missing: run `{generators.DEFAULTS_COMMAND}`"
        assert path.read_text() == text, f"{path} drifted from the generator: run `{generators.DEFAULTS_COMMAND}`"
