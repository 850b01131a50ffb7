"""Ops artifacts from one :class:`~toolkit.generators.spec.OpsSpec`: nginx, Prometheus, rules, dashboards.

Everything here is pure: :func:`generate` returns ``{relative path: text}`` and the CLI
writes the files. Layout under ``--out DIR``::

    nginx/asrtk.conf               include inside http {} (Debian: /etc/nginx/conf.d/)
    nginx/nginx-standalone.conf    minimal nginx.conf around it, for a trial run
    prometheus/prometheus.yml      rule_files -> ../alerts/asrtk-rules.yml
    alerts/asrtk-rules.yml         recording rules + alerts
    alerts/asrtk-rules.test.yml    promtool unit tests for them
    dashboards/asrtk-*.json        Grafana dashboards
    k8s/*.yaml                     Kubernetes manifests (``generate k8s``; in ``all`` when --image is given)
    prometheus-adapter/config.yaml the adapter rule behind the HPA's metric

The checked-in defaults (``alerts/``, ``dashboards/grafana/``) are :func:`default_artifacts`;
``asrtk generate defaults`` rewrites them and a test fails on any drift.
"""

from __future__ import annotations

from dataclasses import replace

from toolkit.errors import UsageError

from toolkit.generators import dashboards, k8s, nginx, prometheus, rules
from toolkit.generators.k8s import K8sOptions
from toolkit.generators.spec import OpsSpec, default_spec

KINDS = ("nginx", "prometheus", "alerts", "dashboards")
# what writes the servers' addresses into a deployable file (the alerts only label test series)
NEEDS_ADDRESSES = ("nginx", "prometheus", "dashboards")
DEFAULTS_COMMAND = "asrtk generate defaults"


def generate(kind: str, spec: OpsSpec, k8s_options: K8sOptions | None = None) -> dict[str, str]:
    """``{path relative to --out: text}`` for ``kind`` (one of KINDS, 'k8s' or 'all').

    A spec without real addresses (``spec.addresses == "missing"``) is refused for the kinds that
    write them: never a silent placeholder. ``k8s`` needs no addresses (pods are found by their
    labels); ``all`` includes it when ``k8s_options`` are given."""
    if kind == "k8s":
        return k8s.render(replace(spec, platform="k8s"), k8s_options or K8sOptions())
    if spec.addresses == "missing" and kind in (*NEEDS_ADDRESSES, "all"):
        raise UsageError(
            f"{kind} needs the servers' addresses and {spec.origin} has none (planned without --hosts): "
            "pass --hosts FILE (one HOST:PORT per line) or --hosts h1:8000,h2:8000, or --template for marked placeholders"
        )
    if kind == "all":
        out: dict[str, str] = {}
        for k in KINDS:
            out.update(generate(k, spec))
        if k8s_options is not None:
            out.update(generate("k8s", spec, k8s_options))
        return out
    if kind == "nginx":
        return {
            "nginx/asrtk.conf": nginx.render(spec),
            "nginx/nginx-standalone.conf": nginx.standalone_wrapper("asrtk.conf"),
        }
    if kind == "prometheus":
        return {"prometheus/prometheus.yml": prometheus.render(spec)}
    if kind == "alerts":
        return {
            f"alerts/{rules.RULES_FILE}": rules.render_rules(spec),
            f"alerts/{rules.TESTS_FILE}": rules.render_tests(spec),
        }
    if kind == "dashboards":
        return {f"dashboards/{name}": text for name, text in dashboards.render_all(spec).items()}
    raise ValueError(f"unknown artifact kind {kind!r}; expected one of {KINDS + ('all',)}")


# The checked-in Kubernetes example (docs/examples/k8s/): the published table's plan, sized for the
# Fun-ASR article's peak (its fleet grows from 5 to 20 nodes); `asrtk generate defaults` rewrites it
K8S_EXAMPLE_PLAN = "docs/examples/k8s/plan.yaml"
K8S_EXAMPLE_OPTIONS = K8sOptions(
    image="registry.example.com/asrtk:0.1.0", api_key_secret="asrtk-api-key", memory_bytes=6 * 2**30,
    memory_source="--memory 6GiB", gpus_per_pod=1, cpu_millicores=4000, peak_qps=475.0,
    monitor_labels=(("release", "kube-prometheus-stack"),))
K8S_EXAMPLE_COMMAND = ("asrtk generate k8s --plan docs/examples/k8s/plan.yaml --image registry.example.com/asrtk:0.1.0 "
                       "--api-key-secret asrtk-api-key --memory 6GiB --gpus-per-pod 1 --cpu 4 --peak-qps 475 "
                       "--monitor-label release=kube-prometheus-stack --out docs/examples/k8s")


def k8s_example(plan: dict) -> dict[str, str]:
    """The files of docs/examples/k8s/ from its plan (parsed), as K8S_EXAMPLE_COMMAND writes them."""
    from toolkit.generators.spec import from_plan

    return generate("k8s", from_plan(plan, name=K8S_EXAMPLE_PLAN), K8S_EXAMPLE_OPTIONS)


def default_artifacts() -> dict[str, dict[str, str]]:
    """The checked-in defaults: ``{data kind ('alerts' | 'dashboards'): {filename: text}}``."""
    spec = default_spec()
    return {
        "alerts": {
            rules.RULES_FILE: rules.render_rules(spec).replace("`asrtk generate alerts`", f"`{DEFAULTS_COMMAND}`"),
            rules.TESTS_FILE: rules.render_tests(spec).replace("`asrtk generate alerts`", f"`{DEFAULTS_COMMAND}`"),
        },
        "dashboards": dashboards.render_all(spec),
    }


__all__ = ["K8S_EXAMPLE_COMMAND", "K8S_EXAMPLE_PLAN", "KINDS", "K8sOptions", "k8s_example", "OpsSpec", "default_artifacts", "default_spec", "generate"]
