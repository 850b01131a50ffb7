"""Ops artifacts from one :class:`~toolkit.generators.spec.OpsSpec`: nginx, Prometheus, rules, dashboards.

Everything here is pure: :func:`generate` returns ``{relative path: text}`` and the CLI
writes the files. Layout under ``--out DIR``::

    nginx/asrtk.conf               include inside http {} (Debian: /etc/nginx/conf.d/)
    nginx/nginx-standalone.conf    minimal nginx.conf around it, for a trial run
    prometheus/prometheus.yml      rule_files -> ../alerts/asrtk-rules.yml
    alerts/asrtk-rules.yml         recording rules + alerts
    alerts/asrtk-rules.test.yml    promtool unit tests for them
    dashboards/asrtk-*.json        Grafana dashboards

The checked-in defaults (``alerts/``, ``dashboards/grafana/``) are :func:`default_artifacts`;
``asrtk generate defaults`` rewrites them and a test fails on any drift.
"""

from __future__ import annotations

from toolkit.errors import UsageError
from toolkit.generators import dashboards, nginx, prometheus, rules
from toolkit.generators.spec import OpsSpec, default_spec

KINDS = ("nginx", "prometheus", "alerts", "dashboards")
# what writes the servers' addresses into a deployable file (the alerts only label test series)
NEEDS_ADDRESSES = ("nginx", "prometheus", "dashboards")
DEFAULTS_COMMAND = "asrtk generate defaults"


def generate(kind: str, spec: OpsSpec) -> dict[str, str]:
    """``{path relative to --out: text}`` for ``kind`` (one of KINDS or 'all').

    A spec without real addresses (``spec.addresses == "missing"``) is refused for the kinds that
    write them: never a silent placeholder."""
    if spec.addresses == "missing" and kind in (*NEEDS_ADDRESSES, "all"):
        raise UsageError(
            f"{kind} needs the servers' addresses and {spec.origin} has none (planned without --hosts): "
            "pass --hosts FILE (one HOST:PORT per line) or --hosts h1:8000,h2:8000, or --template for marked placeholders"
        )
    if kind == "all":
        out: dict[str, str] = {}
        for k in KINDS:
            out.update(generate(k, spec))
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


__all__ = ["KINDS", "OpsSpec", "default_artifacts", "default_spec", "generate"]
