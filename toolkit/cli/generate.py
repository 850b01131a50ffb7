"""``asrtk generate``: nginx, Prometheus, alert-rule and Grafana artifacts from a plan."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli._common import handle_errors, read_hosts
from toolkit.errors import UsageError


class Kind(str, Enum):
    nginx = "nginx"
    prometheus = "prometheus"
    alerts = "alerts"
    dashboards = "dashboards"
    k8s = "k8s"
    all = "all"
    defaults = "defaults"


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


@handle_errors
def generate(
    kind: Annotated[Kind, typer.Argument(help="What to write: nginx, prometheus, alerts, dashboards, k8s, all "
                                              "(k8s included when --image is given), or defaults (rewrite the "
                                              "checked-in alerts/, dashboards/grafana/ and docs/examples/k8s/).")],
    plan: Annotated[Optional[Path], typer.Option("--plan", help="plan.yaml from `asrtk plan` (asrtk.plan/v1).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory (created).")] = Path("ops"),
    hosts: Annotated[Optional[str], typer.Option(
        "--hosts", help="Inventory FILE, one host per line: HOST:PORT, optionally followed by weight=N, backup, "
             "type=NAME; or the same entries as a comma-separated LIST: the servers' real addresses, matched to the plan's fleet (too few: an error saying how many "
             "are missing). Needed for nginx, prometheus, dashboards and all unless the plan has addresses.")] = None,
    template: Annotated[bool, typer.Option(
        "--template", help="For a plan without addresses: write placeholders (*.replace-me.invalid), marked as such "
             "in every file, instead of refusing. nginx -t fails on them until they are replaced.")] = False,
    upstream: Annotated[Optional[list[str]], typer.Option(
        "--upstream", help="HOST:PORT[:WEIGHT] of an active server (repeat); replaces the plan's fleet "
             "(the planned capacity stays the plan's unless --capacity-rps).")] = None,
    backup: Annotated[Optional[list[str]], typer.Option(
        "--backup", help="HOST:PORT[:WEIGHT] of a spare server nginx uses only when all active ones are down.")] = None,
    target_qps: Annotated[Optional[float], typer.Option("--target-qps", help="QPS the fleet is sized for.")] = None,
    slo: Annotated[Optional[str], typer.Option("--slo", help="Latency SLO, e.g. p95=1.5s or p99=800ms.")] = None,
    max_error_rate: Annotated[Optional[str], typer.Option("--max-error-rate", help="Availability SLO, e.g. 1%.")] = None,
    capacity_rps: Annotated[Optional[float], typer.Option(
        "--capacity-rps", help="Measured capacity of the active fleet (default: target / 0.8 headroom).")] = None,
    route: Annotated[Optional[str], typer.Option("--route", help="Route the SLO applies to (default /recognize).")] = None,
    streaming: Annotated[bool, typer.Option("--streaming", help="Add the WebSocket location (/ws/).")] = False,
    listen: Annotated[Optional[str], typer.Option("--listen", help="nginx listen address/port (default 8080).")] = None,
    server_name: Annotated[Optional[str], typer.Option("--server-name", help="nginx server_name (default _).")] = None,
    retry_non_idempotent: Annotated[Optional[bool], typer.Option(
        "--retry-non-idempotent/--no-retry-non-idempotent",
        help="Let nginx re-send a POST that already reached a server to another one (the default: the speech "
             "APIs have no side effects, so a request cut off by a dying or frozen server runs twice instead of "
             "failing); --no-retry-non-idempotent for a backend with side effects.")] = None,
    loadgen: Annotated[Optional[list[str]], typer.Option(
        "--loadgen", help="HOST:PORT of a load generator exposing /metrics (repeat).")] = None,
    scrape_interval_s: Annotated[Optional[int], typer.Option("--scrape-interval-s", help="Default 15.")] = None,
    runbook_url: Annotated[Optional[str], typer.Option(
        "--runbook-url", help="Base URL; alerts get runbook_url = URL#alertname.")] = None,
    max_body: Annotated[Optional[str], typer.Option(
        "--max-body", help="Largest request body nginx accepts, e.g. 20MiB (default: the plan's "
             "request.max_body_bytes, else the reference server's 100 MiB).")] = None,
    read_timeout: Annotated[Optional[str], typer.Option(
        "--read-timeout", help="nginx proxy_read_timeout, e.g. 90s (default: from the plan's measured latency "
             "tail: 2 x max, else 4 x p99, else 6 x p95, at least 5 s).")] = None,
    rate_limit: Annotated[Optional[str], typer.Option(
        "--rate-limit", help="nginx limit_req rate, e.g. 300r/s or 20r/m (default: the planned capacity of the "
             "active fleet).")] = None,
    gpu_job: Annotated[Optional[str], typer.Option(
        "--gpu-job", help="Prometheus job of the DCGM GPU metrics (default asrtk-gpu; on Kubernetes the job of "
             "your dcgm-exporter).")] = None,
    image: Annotated[Optional[str], typer.Option(
        "--image", rich_help_panel="Kubernetes (k8s)",
        help="Container image that runs `asrtk serve` (docs/deploy.md builds one). Required for k8s.")] = None,
    api_key_secret: Annotated[Optional[str], typer.Option(
        "--api-key-secret", rich_help_panel="Kubernetes (k8s)",
        help="Secret holding the API key under key api-key (pods bind beyond loopback, which needs a key). "
             "Required for k8s.")] = None,
    memory: Annotated[Optional[str], typer.Option(
        "--memory", rich_help_panel="Kubernetes (k8s)",
        help="Memory request = limit of a pod, e.g. 4GiB (default: the sweep's measured peak server memory x "
             "1.25; required when the plan has none, e.g. one made from a CSV).")] = None,
    gpus_per_pod: Annotated[Optional[int], typer.Option(
        "--gpus-per-pod", rich_help_panel="Kubernetes (k8s)",
        help="nvidia.com/gpu per pod; 0 for CPU inference. Required for k8s.")] = None,
    cpu: Annotated[Optional[str], typer.Option(
        "--cpu", rich_help_panel="Kubernetes (k8s)",
        help="CPU request of a pod, e.g. 4 or 500m (default: measured CPU per request x planned rps per pod; "
             "required when the plan has no CPU figure).")] = None,
    namespace: Annotated[Optional[str], typer.Option(
        "--namespace", rich_help_panel="Kubernetes (k8s)",
        help="metadata.namespace of every object (default: none, kubectl's current namespace).")] = None,
    peak_qps: Annotated[Optional[float], typer.Option(
        "--peak-qps", rich_help_panel="Kubernetes (k8s)",
        help="Peak QPS the autoscaler must reach: maxReplicas = ceil(peak / planned rps per pod) + k "
             "(default: maxReplicas = minReplicas = the plan's N+k).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", rich_help_panel="Kubernetes (k8s)",
        help="`asrtk serve --model` in the pods (default: the server's default preset).")] = None,
    startup_timeout: Annotated[str, typer.Option(
        "--startup-timeout", rich_help_panel="Kubernetes (k8s)",
        help="Longest model load the startupProbe waits for.")] = "300s",
    prestop_sleep: Annotated[str, typer.Option(
        "--prestop-sleep", rich_help_panel="Kubernetes (k8s)",
        help="preStop sleep: time for endpoints to stop routing to a terminating pod before the drain.")] = "10s",
    drain_timeout: Annotated[Optional[str], typer.Option(
        "--drain-timeout", rich_help_panel="Kubernetes (k8s)",
        help="`asrtk serve --drain-timeout-s` (default: the longest request's budget, as for proxy_read_timeout).")] = None,
    hpa_inflight: Annotated[Optional[float], typer.Option(
        "--hpa-inflight", rich_help_panel="Kubernetes (k8s)",
        help="HPA target: requests in flight per pod (default: Little's law at the planned rps per pod).")] = None,
    redis_url: Annotated[Optional[str], typer.Option(
        "--redis-url", rich_help_panel="Kubernetes (k8s)",
        help="An existing Redis for a plan with a cache hit rate, e.g. redis://redis:6379/0.")] = None,
    redis_image: Annotated[Optional[str], typer.Option(
        "--redis-image", rich_help_panel="Kubernetes (k8s)",
        help="Deploy Redis for a plan with a cache hit rate with this image (k8s/redis.yaml).")] = None,
    monitor_label: Annotated[Optional[list[str]], typer.Option(
        "--monitor-label", rich_help_panel="Kubernetes (k8s)",
        help="KEY=VALUE label on ServiceMonitor and PrometheusRule, for the Prometheus selectors (repeat), "
             "e.g. release=kube-prometheus-stack.")] = None,
) -> None:
    """Write ops artifacts that match a capacity plan.

    The files apply as they are: every server address comes from the plan or --hosts (a plan
    made without --hosts has none, and nginx, prometheus, dashboards and all refuse until you
    give them, or write marked placeholders with --template). Every derived limit (body size,
    proxy_read_timeout, limit_req rate) carries a comment saying where it came from, and a flag
    overrides each. Exit codes: 0 written, 2 bad flag, plan or inventory (one line).

    Examples:

      asrtk generate all --plan results/plan/plan.yaml --hosts hosts.txt --out ops/

      asrtk generate nginx --hosts gpu-1:8000,gpu-2:8000,gpu-3:8000 --target-qps 120

      asrtk generate nginx --upstream gpu-1:8000:55 --upstream gpu-2:8000:30 --backup gpu-3:8000 --target-qps 120

      asrtk generate all --plan plan.yaml --template --out draft/   # placeholders, marked

      asrtk generate k8s --plan plan.yaml --image registry.example/asrtk:1.0 --api-key-secret asrtk-key \
          --memory 4GiB --gpus-per-pod 1 --peak-qps 1200 --out deploy/

      asrtk generate defaults        # refresh the checked-in alerts/ and dashboards/grafana/
    """
    from toolkit import generators
    from toolkit.generators import spec as specmod

    if kind is Kind.defaults:
        _write_defaults(generators)
        return

    import math

    from toolkit.capacity.planfile import read_plan
    from toolkit.units import parse_duration, parse_rate, parse_ratio, parse_size, parse_slo

    if hosts is not None and (upstream or backup):
        raise UsageError("give the servers once: --hosts FILE|LIST, or --upstream/--backup, not both")
    found, where = read_hosts(hosts) if hosts is not None else ((), "")
    flags: dict[str, tuple[object, str]] = {}
    if max_body is not None:
        flags["max_body_bytes"] = (parse_size(max_body, "--max-body"), f"--max-body {max_body}")
    if read_timeout is not None:
        flags["read_timeout_s"] = (max(1, math.ceil(parse_duration(read_timeout, "--read-timeout"))),
                                   f"--read-timeout {read_timeout}")
    if rate_limit is not None:
        flags["rate_limit"] = (parse_rate(rate_limit, "--rate-limit"), f"--rate-limit {rate_limit}")
    if plan is not None:
        spec = specmod.from_plan(read_plan(plan), name=str(plan), hosts=found, hosts_source=where)
        if upstream or backup:
            ups = tuple(specmod.parse_upstream(u) for u in upstream or ()) + tuple(
                specmod.parse_upstream(b, backup=True) for b in backup or ())
            spec = spec.with_overrides(upstreams=ups, addresses="given")
        if target_qps is not None:
            flags["target_qps"] = (target_qps, f"--target-qps {target_qps:g}")
        if slo:
            pct, lat = parse_slo(slo)
            flags["slo_percentile"], flags["slo_latency_s"] = (pct, f"--slo {slo}"), (lat, f"--slo {slo}")
        if max_error_rate:
            flags["max_error_rate"] = (parse_ratio(max_error_rate, "--max-error-rate"), f"--max-error-rate {max_error_rate}")
        if capacity_rps is not None:
            flags["planned_capacity_rps"] = (capacity_rps, f"--capacity-rps {capacity_rps:g}")
    elif upstream or found:
        spec = specmod.from_flags(
            upstream or (), backup or (), target_qps=target_qps, slo=slo, max_error_rate=max_error_rate,
            capacity_rps=capacity_rps, hosts=found,
        )
    else:
        raise UsageError("give --plan plan.yaml (from asrtk plan) or --hosts FILE|LIST --target-qps N")
    if flags:
        spec = spec.with_flags(flags)
    if template:
        if spec.addresses != "missing":
            raise UsageError("--template is for a plan without addresses; the servers are known here: drop --template")
        spec = spec.with_overrides(addresses="template")

    extra: dict[str, object] = {}
    if route:
        extra["route"] = route
    if streaming:
        extra["streaming"] = True
    if listen:
        extra["listen"] = listen
    if server_name:
        extra["server_name"] = server_name
    if retry_non_idempotent is not None:
        extra["retry_non_idempotent"] = retry_non_idempotent
    if loadgen:
        extra["loadgen_targets"] = tuple(loadgen)
    if scrape_interval_s is not None:
        if scrape_interval_s < 1:
            raise UsageError(f"--scrape-interval-s must be >= 1, got {scrape_interval_s}")
        extra["scrape_interval_s"] = scrape_interval_s
    if runbook_url:
        extra["runbook_url"] = runbook_url
    if gpu_job:
        extra["gpu_job"] = gpu_job
    if extra:
        spec = spec.with_overrides(**extra)

    k8s_flags = (image, api_key_secret, memory, gpus_per_pod, cpu, namespace, peak_qps, model, drain_timeout,
                 hpa_inflight, redis_url, redis_image, monitor_label)
    k8s_options = None
    if kind is Kind.k8s or (kind is Kind.all and image):
        k8s_options = _k8s_options(
            image=image, api_key_secret=api_key_secret, memory=memory, gpus_per_pod=gpus_per_pod, cpu=cpu,
            namespace=namespace, peak_qps=peak_qps, model=model, startup_timeout=startup_timeout,
            prestop_sleep=prestop_sleep, drain_timeout=drain_timeout, hpa_inflight=hpa_inflight,
            redis_url=redis_url, redis_image=redis_image, monitor_label=monitor_label or [])
    elif any(v for v in k8s_flags):
        raise UsageError(f"Kubernetes flags (--image, --memory, ...) are for `generate k8s` or `generate all "
                         f"--image IMAGE`, not for {kind.value}")

    files = generators.generate(kind.value, spec, k8s_options)
    written = _write(out, files)
    for path in written:
        typer.echo(f"wrote {path}")
    for note in spec.notes:
        typer.echo(f"note: {note}", err=True)
    if kind is Kind.all and k8s_options is None:
        typer.echo("note: k8s/ not written: add --image IMAGE (and the flags `asrtk generate k8s` asks for) "
                   "to include the Kubernetes manifests", err=True)
    if spec.addresses == "template":
        typer.echo(f"note: --template: the server addresses are placeholders (*.{specmod.PLACEHOLDER_DOMAIN}); "
                   "replace them or regenerate with --hosts FILE", err=True)
    if spec.slo_snapped:
        typer.echo(f"note: latency SLO {spec.slo_latency_s:g} s snapped up to the histogram bucket "
                   f"boundary {spec.slo_threshold_s:g} s", err=True)
    defaulted = sorted(k for k, v in spec.sources.items() if v.startswith("default") or "headroom" in v)
    if kind is Kind.k8s:  # the manifests read none of the nginx limits
        defaulted = [k for k in defaulted if k not in ("max_body_bytes", "planned_capacity_rps")]
    if defaulted:
        typer.echo("note: defaults used for " + ", ".join(f"{k} ({spec.sources[k]})" for k in defaulted), err=True)


def _k8s_options(*, image, api_key_secret, memory, gpus_per_pod, cpu, namespace, peak_qps, model,  # noqa: ANN001
                 startup_timeout, prestop_sleep, drain_timeout, hpa_inflight, redis_url, redis_image, monitor_label):
    import math
    import re

    from toolkit.generators import K8sOptions
    from toolkit.units import parse_cpu, parse_duration, parse_size

    if gpus_per_pod is not None and gpus_per_pod < 0:
        raise UsageError(f"--gpus-per-pod must be >= 0, got {gpus_per_pod}")
    if peak_qps is not None and not (math.isfinite(peak_qps) and peak_qps > 0):
        raise UsageError(f"--peak-qps must be > 0, got {peak_qps}")
    if hpa_inflight is not None and not (math.isfinite(hpa_inflight) and hpa_inflight > 0):
        raise UsageError(f"--hpa-inflight must be > 0, got {hpa_inflight}")
    name_re = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS subdomain, as Kubernetes names are
    for flag, value in (("--api-key-secret", api_key_secret), ("--namespace", namespace)):
        if value is not None and not name_re.match(value):
            raise UsageError(f"{flag} must be a Kubernetes name (lower-case letters, digits, '-', '.'), got {value!r}")
    labels = []
    for item in monitor_label:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"--monitor-label must be KEY=VALUE, got {item!r}")
        labels.append((k, v))
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://")):
        raise UsageError(f"--redis-url must be redis://HOST:PORT/DB, got {redis_url!r}")
    mem = parse_size(memory, "--memory") if memory is not None else None
    return K8sOptions(
        image=image, api_key_secret=api_key_secret, memory_bytes=mem, memory_source=f"--memory {memory}",
        gpus_per_pod=gpus_per_pod, cpu_millicores=parse_cpu(cpu, "--cpu") if cpu is not None else None,
        namespace=namespace, peak_qps=peak_qps, model=model,
        startup_timeout_s=max(1, math.ceil(parse_duration(startup_timeout, "--startup-timeout"))),
        prestop_sleep_s=math.ceil(parse_duration(prestop_sleep, "--prestop-sleep", allow_zero=True)),
        drain_timeout_s=(max(1, math.ceil(parse_duration(drain_timeout, "--drain-timeout")))
                         if drain_timeout is not None else None),
        hpa_inflight=hpa_inflight, redis_url=redis_url, redis_image=redis_image, monitor_labels=tuple(labels))


def _write(out: Path, files: dict[str, str]) -> list[Path]:
    written = []
    try:
        for rel, text in files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    except OSError as exc:
        raise UsageError(f"cannot write under {out} ({exc.strerror}); choose another --out") from exc
    return written


def _write_defaults(generators) -> None:  # noqa: ANN001 - module
    from toolkit.resources import data_dir, repo_root

    if repo_root() is None:
        raise UsageError("asrtk generate defaults rewrites the checked-in artifacts: run it in a source checkout")
    for data_kind, files in generators.default_artifacts().items():
        target = data_dir(data_kind)
        for path in _write(target, files):
            typer.echo(f"wrote {path}")
    from toolkit.capacity.planfile import read_plan

    root = repo_root()
    plan = root / generators.K8S_EXAMPLE_PLAN
    for path in _write(plan.parent, generators.k8s_example(read_plan(plan))):
        typer.echo(f"wrote {path}")
