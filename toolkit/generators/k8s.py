"""Kubernetes manifests from the same :class:`~toolkit.generators.spec.OpsSpec` nginx and Prometheus read.

Pure: :func:`render` takes the spec and the cluster-side choices (:class:`K8sOptions`) and returns
``{path relative to --out: text}``. Layout::

    k8s/deployment.yaml        one pod per planned node, `asrtk serve --workers N` in each
    k8s/service.yaml           ClusterIP Service (its name is the Prometheus job the rules select)
    k8s/hpa.yaml               autoscaling/v2 on per-pod requests in flight (prometheus-adapter)
    k8s/pdb.yaml               PodDisruptionBudget: at most k of N+k pods down by choice
    k8s/servicemonitor.yaml    prometheus-operator scrape of every pod's /metrics
    k8s/prometheusrule.yaml    the rules of alerts/asrtk-rules.yml, as a PrometheusRule
    k8s/grafana-dashboards.yaml  the dashboards as ConfigMaps for the Grafana sidecar
    k8s/redis.yaml             only for a plan that counts on a cache and --redis-image
    prometheus-adapter/config.yaml  the adapter rule behind the HPA's metric (its config format)

``kubectl apply -f k8s/`` applies the directory as it is. Every derived figure has a comment
saying where it came from; what the plan cannot know (the image, the API-key Secret, the memory
of a pod, its GPUs) is a flag, and a missing one is refused in one line that names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from toolkit.errors import UsageError
from toolkit.generators import dashboards, nginx, rules
from toolkit.generators.spec import OpsSpec

CONTAINER_PORT = 8000  # `asrtk serve --port`
INFLIGHT_METRIC = "asrtk_inflight_requests"  # reference_server.metrics_spec: gauge, per route
API_KEY_ENV = "ASRTK_API_KEY"  # `asrtk serve --api-key` reads it
API_KEY_SECRET_KEY = "api-key"
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"  # the Grafana Helm chart's sidecar default label
MEMORY_MARGIN = 1.25  # a pod's memory over the measured peak: allocator growth and longer inputs than the sweep's
ADAPTER_WINDOW = "2m"  # the in-flight gauge is averaged over this window before the HPA sees it
SCALE_DOWN_WINDOW_S = 300  # the HPA's default stabilization, written out so it is visible
LABEL = "app.kubernetes.io/name"


@dataclass(frozen=True)
class K8sOptions:
    """What a plan cannot know about the cluster: flags of ``asrtk generate k8s``."""

    image: str | None = None
    api_key_secret: str | None = None
    memory_bytes: int | None = None
    memory_source: str = ""
    gpus_per_pod: int | None = None
    cpu_millicores: int | None = None  # --cpu: replaces the measured figure
    namespace: str | None = None
    peak_qps: float | None = None
    model: str | None = None  # --model for `asrtk serve`; None: the server's default preset
    startup_timeout_s: int = 300
    prestop_sleep_s: int = 10
    drain_timeout_s: int | None = None  # None: the longest request's budget (nginx.read_timeout)
    hpa_inflight: float | None = None  # --hpa-inflight: replaces the Little's-law target
    redis_url: str | None = None
    redis_image: str | None = None
    cache_memory: str = "256MiB"  # the in-process level in front of Redis (`--cache memory:SIZE`)
    monitor_labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def missing(self, spec: OpsSpec) -> list[str]:
        """The flags this spec still needs, each with why (empty: it can be rendered)."""
        out = []
        if not self.image:
            out.append("--image IMAGE (the container image that runs `asrtk serve`; docs/deploy.md builds one)")
        if not self.api_key_secret:
            out.append("--api-key-secret NAME (a Secret with key api-key: `asrtk serve` binds beyond loopback "
                       "only with a key)")
        if self.memory_bytes is None and spec.memory_max_bytes is None:
            out.append("--memory SIZE (the plan has no measured server memory), e.g. --memory 4GiB")
        if self.gpus_per_pod is None:
            out.append("--gpus-per-pod N (nvidia.com/gpu per pod; 0 for CPU inference)")
        if self.cpu_millicores is None and (spec.cpu_s_per_request is None or spec.per_node_rps is None):
            out.append("--cpu CORES (the plan has no measured CPU per request), e.g. --cpu 4")
        if spec.nodes is None or spec.workers_per_node is None or spec.per_node_rps is None:
            out.append("--plan plan.yaml from `asrtk plan` (recommended.nodes, workers_per_node, "
                       "expected.per_node_rps)")
        elif self.hpa_inflight is None and spec.inflight_per_node is None:
            out.append("--hpa-inflight N (the plan has no queueing model or p50 to derive requests in flight per pod)")
        if spec.hit_rate and not (self.redis_url or self.redis_image):
            out.append(f"--redis-url redis://HOST:6379/0 or --redis-image IMAGE (the plan counts on a "
                       f"{spec.hit_rate:.0%} cache hit rate)")
        return out


def render(spec: OpsSpec, opts: K8sOptions) -> dict[str, str]:
    missing = opts.missing(spec)
    if missing:
        raise UsageError("generate k8s needs " + "; ".join(missing))
    if opts.redis_url and opts.redis_image:
        raise UsageError("give --redis-url (an existing Redis) or --redis-image (deploy one), not both")
    k = _K8s(spec, opts)
    files = {
        "k8s/deployment.yaml": k.deployment(),
        "k8s/service.yaml": k.service(),
        "k8s/hpa.yaml": k.hpa(),
        "k8s/pdb.yaml": k.pdb(),
        "k8s/servicemonitor.yaml": k.servicemonitor(),
        "k8s/prometheusrule.yaml": k.prometheusrule(),
        "k8s/grafana-dashboards.yaml": k.dashboards(),
        "prometheus-adapter/config.yaml": k.adapter(),
    }
    if spec.hit_rate and opts.redis_image:
        files["k8s/redis.yaml"] = k.redis()
    return files


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002 - no &anchors: every object reads on its own
        return True


def _yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def _doc(header: list[str], obj: dict[str, Any]) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    return "\n".join(lines) + "\n" + _yaml(obj)


def _millicores(cores: float) -> int:
    return max(10, math.ceil(cores * 1000 / 10) * 10)  # 10m steps, at least 10m


def _mib(n: int) -> str:
    return f"{math.ceil(n / 2**20)}Mi"


class _K8s:
    def __init__(self, spec: OpsSpec, opts: K8sOptions) -> None:
        self.spec, self.opts = spec, opts
        self.name = spec.job  # the Service's name is the job label prometheus-operator gives the pods' series
        self.labels = {LABEL: self.name, "app.kubernetes.io/component": "inference",
                       "app.kubernetes.io/managed-by": "asrtk"}
        self.selector = {LABEL: self.name}
        assert spec.nodes is not None and spec.workers_per_node is not None and spec.per_node_rps is not None

    def meta(self, name: str | None = None, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
        m: dict[str, Any] = {"name": name or self.name}
        if self.opts.namespace:
            m["namespace"] = self.opts.namespace
        m["labels"] = {**self.labels, **(extra_labels or {})}
        return m

    def provenance(self) -> list[str]:
        return [f"Generated by `asrtk generate k8s` from {self.spec.origin}; regenerate instead of editing.", ""]

    # -- sizing --------------------------------------------------------------------------

    def memory(self) -> tuple[str, str]:
        if self.opts.memory_bytes is not None:
            return _mib(self.opts.memory_bytes), self.opts.memory_source or "--memory"
        peak = self.spec.memory_max_bytes
        assert peak is not None
        return _mib(int(peak * MEMORY_MARGIN)), (
            f"measured peak {peak / 2**20:.0f} MiB x {MEMORY_MARGIN:g} ({self.spec.source('memory_max_bytes')})")

    def drain_timeout(self) -> tuple[int, str]:
        if self.opts.drain_timeout_s is not None:
            return self.opts.drain_timeout_s, "--drain-timeout"
        rt, why = nginx.read_timeout(self.spec)
        return rt, f"the longest request's budget, as for nginx proxy_read_timeout: {why}"

    def cpu(self) -> tuple[int, str]:
        if self.opts.cpu_millicores is not None:
            return self.opts.cpu_millicores, "--cpu"
        s = self.spec
        assert s.cpu_s_per_request is not None and s.per_node_rps is not None
        return _millicores(s.cpu_s_per_request * s.per_node_rps), (
            f"{s.cpu_s_per_request * 1000:.3g} ms CPU per request x {s.per_node_rps:g} rps per pod at the target "
            f"({s.source('cpu_s_per_request')})")

    def inflight(self) -> tuple[float, str]:
        if self.opts.hpa_inflight is not None:
            return self.opts.hpa_inflight, "--hpa-inflight"
        assert self.spec.inflight_per_node is not None
        return self.spec.inflight_per_node, self.spec.source("inflight_per_node")

    def replicas(self) -> tuple[int, int, str, str]:
        s, o = self.spec, self.opts
        assert s.nodes is not None and s.per_node_rps is not None
        k = s.backup_nodes or 0
        low = (f"{s.nodes} = the plan's N+k ({s.nodes - k} carry {s.target_qps:g} rps at "
               f"{s.per_node_rps:g} rps each, + {k} for redundancy; {s.source('nodes')})")
        if o.peak_qps is None:
            return s.nodes, s.nodes, low, ("= minReplicas: no --peak-qps, so the autoscaler cannot grow the fleet "
                                           "past the plan; give --peak-qps Q")
        if o.peak_qps < s.target_qps:
            raise UsageError(f"--peak-qps {o.peak_qps:g} is below the plan's target {s.target_qps:g} rps; "
                             "give the peak the fleet must carry")
        high = max(s.nodes, math.ceil(o.peak_qps / s.per_node_rps - 1e-9) + k)
        return s.nodes, high, low, (f"ceil(--peak-qps {o.peak_qps:g} / {s.per_node_rps:g} rps per pod) + {k} "
                                    "for redundancy")

    # -- objects -------------------------------------------------------------------------

    def serve_args(self) -> tuple[list[str], list[str]]:
        s, o = self.spec, self.opts
        drain, _ = self.drain_timeout()
        args = ["serve", "--host", "0.0.0.0", "--port", str(CONTAINER_PORT), "--workers", str(s.workers_per_node),
                "--drain-timeout-s", str(drain)]
        notes = []
        if o.model:
            args += ["--model", o.model]
        if s.hit_rate:
            url = o.redis_url or f"redis://{self.name}-redis:6379/0"
            args += ["--cache", f"memory:{o.cache_memory},{url}"]
            notes.append(f"--cache: memory:{o.cache_memory} in front of {'--redis-url' if o.redis_url else 'k8s/redis.yaml'}"
                         f"; the plan counts on a {s.hit_rate:.0%} hit rate ({s.source('hit_rate')})")
        return args, notes

    def deployment(self) -> str:
        s, o = self.spec, self.opts
        low, high, low_why, _ = self.replicas()
        cpu, cpu_why = self.cpu()
        drain, drain_why = self.drain_timeout()
        grace = o.prestop_sleep_s + drain + 5
        args, arg_notes = self.serve_args()
        period = 5
        mem, mem_why = self.memory()
        limits: dict[str, Any] = {"memory": mem}
        if o.gpus_per_pod:
            limits["nvidia.com/gpu"] = o.gpus_per_pod
        probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2}
        container: dict[str, Any] = {
            "name": "asrtk",
            "image": o.image,
            "command": ["asrtk"],
            "args": args,
            "env": [{"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": o.api_key_secret,
                                                                         "key": API_KEY_SECRET_KEY}}}],
            "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": f"{cpu}m", "memory": mem}, "limits": limits},
            "startupProbe": {**probe, "failureThreshold": max(1, math.ceil(o.startup_timeout_s / period))},
            "readinessProbe": {**probe, "failureThreshold": 2},
            "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10,
                              "timeoutSeconds": 5, "failureThreshold": 3},
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(o.prestop_sleep_s)]}}},
        }
        obj = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": self.meta(),
            "spec": {
                "selector": {"matchLabels": self.selector},
                # a new pod is ready before an old one goes: the planned N+k never drops during a rollout
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": self.labels},
                    "spec": {"terminationGracePeriodSeconds": grace, "containers": [container]},
                },
            },
        }
        gpu_why = (f"{o.gpus_per_pod} x nvidia.com/gpu (--gpus-per-pod)" if o.gpus_per_pod
                   else "no GPU (--gpus-per-pod 0: CPU inference)")
        header = self.provenance() + [
            f"no replicas field: the HPA (hpa.yaml) keeps {low} to {high} pods (minReplicas {low}: {low_why}); a "
            "replicas field here would reset the autoscaled count on every kubectl apply",
            f"--workers {s.workers_per_node}: the plan's workers per node ({s.source('workers_per_node')})",
            f"cpu request {cpu}m: {cpu_why}; no CPU limit (throttling would show up as latency, not as a limit)",
            f"memory request = limit {mem}: {mem_why}",
            f"GPU: {gpu_why}",
            f"--drain-timeout-s {drain}: {drain_why}",
            f"preStop sleep {o.prestop_sleep_s} s (--prestop-sleep): endpoints stop routing to the pod before "
            "SIGTERM starts the drain",
            f"terminationGracePeriodSeconds {grace} = preStop {o.prestop_sleep_s} s + drain {drain} s + 5 s",
            f"startupProbe: /ready for up to {o.startup_timeout_s} s of model load (--startup-timeout); then "
            "readiness /ready, liveness /health",
            f"{API_KEY_ENV} from Secret {o.api_key_secret}, key {API_KEY_SECRET_KEY} (create it first: kubectl "
            f"create secret generic {o.api_key_secret} --from-literal={API_KEY_SECRET_KEY}=$(openssl rand -hex 32))",
        ] + arg_notes
        return _doc(header, obj)

    def service(self) -> str:
        obj = {
            "apiVersion": "v1", "kind": "Service", "metadata": self.meta(),
            "spec": {"type": "ClusterIP", "selector": self.selector,
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
        }
        return _doc(self.provenance() + [
            f"Service {self.name}: prometheus-operator labels the pods' series job=\"{self.name}\", the job the "
            "rules and dashboards select"], obj)

    def hpa(self) -> str:
        low, high, low_why, high_why = self.replicas()
        target, why = self.inflight()
        milli = max(1, round(target * 1000))
        obj = {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": self.meta(),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "minReplicas": low,
                "maxReplicas": high,
                "metrics": [{"type": "Pods", "pods": {
                    "metric": {"name": INFLIGHT_METRIC},
                    "target": {"type": "AverageValue", "averageValue": f"{milli}m"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S}},
            },
        }
        return _doc(self.provenance() + [
            f"minReplicas {low}: {low_why}",
            f"maxReplicas {high}: {high_why}",
            f"target {target:.3g} requests in flight per pod (averageValue {milli}m): {why}; above it the pods run "
            "past the planned operating point and the HPA adds pods",
            f"metric {INFLIGHT_METRIC}: served by prometheus-adapter with prometheus-adapter/config.yaml",
        ], obj)

    def pdb(self) -> str:
        k = self.spec.backup_nodes or 0
        if k == 0:
            budget = {"maxUnavailable": 0}
            why = "maxUnavailable 0: the plan has no redundancy (N+0), so no pod may be taken down by choice"
        else:
            budget = {"maxUnavailable": k}
            why = f"maxUnavailable {k}: the plan's N+{k} ({self.spec.source('backup_nodes')})"
        obj = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": self.meta(),
               "spec": {**budget, "selector": {"matchLabels": self.selector}}}
        return _doc(self.provenance() + [why + "; a drain of a node waits rather than go below N"], obj)

    def monitor_meta(self) -> dict[str, Any]:
        return self.meta(extra_labels=dict(self.opts.monitor_labels))

    def servicemonitor(self) -> str:
        obj = {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": self.monitor_meta(),
            "spec": {"selector": {"matchLabels": self.selector},
                     "endpoints": [{"port": "http", "path": "/metrics",
                                    "interval": f"{self.spec.scrape_interval_s}s"}]},
        }
        labels = ", ".join(f"{a}={b}" for a, b in self.opts.monitor_labels) or "none (--monitor-label K=V)"
        return _doc(self.provenance() + [
            "Every pod's /metrics (no key needed: /health, /ready and /metrics stay open).",
            f"Extra labels for the Prometheus serviceMonitorSelector: {labels}",
        ], obj)

    def prometheusrule(self) -> str:
        doc = yaml.safe_load(rules.render_rules(self.spec))
        obj = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": self.monitor_meta(),
               "spec": {"groups": doc["groups"]}}
        return _doc(self.provenance() + [
            f"The groups of alerts/{rules.RULES_FILE} for this plan (promtool tests: asrtk generate alerts).",
            f"GPU rules read DCGM metrics; the rules' tests label them job=\"{self.spec.gpu_job}\" (--gpu-job).",
        ], obj)

    def dashboards(self) -> str:
        docs = []
        for fname, text in dashboards.render_all(self.spec).items():
            base = fname.removesuffix(".json").replace("_", "-").lower()
            obj = {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": self.meta(f"{base}-dashboard", {GRAFANA_DASHBOARD_LABEL: "1"}),
                   "data": {fname: text}}
            docs.append(_yaml(obj))
        header = self.provenance() + [
            f"Grafana dashboards for the Grafana Helm chart's sidecar (label {GRAFANA_DASHBOARD_LABEL}=\"1\")."]
        return "\n".join(f"# {h}" if h else "#" for h in header) + "\n" + "---\n".join(docs)

    def adapter(self) -> str:
        q = "{" + f'__name__="{INFLIGHT_METRIC}",namespace!="",pod!=""' + "}"
        cfg = {"rules": [{
            "seriesQuery": q,
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": f"^{INFLIGHT_METRIC}$", "as": INFLIGHT_METRIC},
            "metricsQuery": f"sum(avg_over_time(<<.Series>>{{<<.LabelMatchers>>}}[{ADAPTER_WINDOW}])) by (<<.GroupBy>>)",
        }]}
        return _doc(self.provenance() + [
            "prometheus-adapter configuration (its config file format: docs/config.md of the adapter).",
            "With the prometheus-community Helm chart put the list under rules.custom; this rule serves the "
            f"HPA's Pods metric {INFLIGHT_METRIC}:",
            f"the gauge summed over routes per pod, averaged over {ADAPTER_WINDOW} so a burst does not flap the "
            "autoscaler.",
        ], cfg)

    def redis(self) -> str:
        name = f"{self.name}-redis"
        labels = {LABEL: name, "app.kubernetes.io/component": "cache", "app.kubernetes.io/managed-by": "asrtk"}
        meta: dict[str, Any] = {"name": name}
        if self.opts.namespace:
            meta["namespace"] = self.opts.namespace
        meta["labels"] = labels
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 1, "selector": {"matchLabels": {LABEL: name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                "name": "redis", "image": self.opts.redis_image,
                # a result cache: nothing to persist; evict the least recently used entry when full
                "args": ["--save", "", "--appendonly", "no", "--maxmemory-policy", "allkeys-lru"],
                "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5}}]}}}}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"selector": {LABEL: name}, "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}]}}
        header = self.provenance() + [
            f"Redis for the result cache (--redis-image {self.opts.redis_image}): the plan counts on a "
            f"{self.spec.hit_rate:.0%} hit rate ({self.spec.source('hit_rate')}).",
            "A Redis that is down costs hits, never requests: the servers degrade to misses (asrtk_cache_degraded)."]
        return _doc(header, dep) + "---\n" + _yaml(svc)

