"""``asrtk generate``: nginx, Prometheus, alert-rule and Grafana artifacts from a plan."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli._common import handle_errors
from toolkit.errors import UsageError


class Kind(str, Enum):
    nginx = "nginx"
    prometheus = "prometheus"
    alerts = "alerts"
    dashboards = "dashboards"
    all = "all"
    defaults = "defaults"


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


@handle_errors
def generate(
    kind: Annotated[Kind, typer.Argument(help="What to write: nginx, prometheus, alerts, dashboards, all, "
                                              "or defaults (rewrite the checked-in alerts/ and dashboards/grafana/).")],
    plan: Annotated[Optional[Path], typer.Option("--plan", help="plan.yaml from `asrtk plan` (asrtk.plan/v1).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory (created).")] = Path("ops"),
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
    retry_non_idempotent: Annotated[bool, typer.Option(
        "--retry-non-idempotent", help="Let nginx retry a POST that already reached a server (may run twice).")] = False,
    loadgen: Annotated[Optional[list[str]], typer.Option(
        "--loadgen", help="HOST:PORT of a load generator exposing /metrics (repeat).")] = None,
    scrape_interval_s: Annotated[Optional[int], typer.Option("--scrape-interval-s", help="Default 15.")] = None,
    runbook_url: Annotated[Optional[str], typer.Option(
        "--runbook-url", help="Base URL; alerts get runbook_url = URL#alertname.")] = None,
    max_body: Annotated[Optional[str], typer.Option(
        "--max-body", help="Largest request body nginx accepts, e.g. 20MiB (default: the plan's "
             "request.max_body_bytes, else the reference server's 100 MiB).")] = None,
) -> None:
    """Write ops artifacts that match a capacity plan.

    Examples:

      asrtk generate all --plan results/plan/plan.yaml --out ops/

      asrtk generate nginx --upstream gpu-1:8000:55 --upstream gpu-2:8000:30 --backup gpu-3:8000 --target-qps 120

      asrtk generate defaults        # refresh the checked-in alerts/ and dashboards/grafana/
    """
    from toolkit import generators
    from toolkit.generators import spec as specmod

    if kind is Kind.defaults:
        _write_defaults(generators)
        return

    from toolkit.capacity.planfile import read_plan
    from toolkit.units import parse_ratio, parse_size, parse_slo

    body_bytes = parse_size(max_body, "--max-body") if max_body is not None else None
    if plan is not None:
        spec = specmod.from_plan(read_plan(plan), name=str(plan))
        if upstream or backup:
            ups = tuple(specmod.parse_upstream(u) for u in upstream or ()) + tuple(
                specmod.parse_upstream(b, backup=True) for b in backup or ())
            spec = spec.with_overrides(upstreams=ups)
        changes: dict[str, object] = {}
        if target_qps is not None:
            changes["target_qps"] = target_qps
        if slo:
            changes["slo_percentile"], changes["slo_latency_s"] = parse_slo(slo)
        if max_error_rate:
            changes["max_error_rate"] = parse_ratio(max_error_rate, "--max-error-rate")
        if body_bytes is not None:
            changes["max_body_bytes"] = body_bytes
        if capacity_rps is not None:
            changes["planned_capacity_rps"] = capacity_rps
        if changes:
            spec = spec.with_overrides(**changes)
    elif upstream:
        spec = specmod.from_flags(
            upstream, backup or (), target_qps=target_qps, slo=slo, max_error_rate=max_error_rate,
            capacity_rps=capacity_rps, max_body_bytes=body_bytes,
        )
    else:
        raise UsageError("give --plan plan.yaml (from asrtk plan) or --upstream HOST:PORT --target-qps N")

    extra: dict[str, object] = {}
    if route:
        extra["route"] = route
    if streaming:
        extra["streaming"] = True
    if listen:
        extra["listen"] = listen
    if server_name:
        extra["server_name"] = server_name
    if retry_non_idempotent:
        extra["retry_non_idempotent"] = True
    if loadgen:
        extra["loadgen_targets"] = tuple(loadgen)
    if scrape_interval_s is not None:
        if scrape_interval_s < 1:
            raise UsageError(f"--scrape-interval-s must be >= 1, got {scrape_interval_s}")
        extra["scrape_interval_s"] = scrape_interval_s
    if runbook_url:
        extra["runbook_url"] = runbook_url
    if extra:
        spec = spec.with_overrides(**extra)

    files = generators.generate(kind.value, spec)
    written = _write(out, files)
    for path in written:
        typer.echo(f"wrote {path}")
    if spec.slo_snapped:
        typer.echo(f"note: latency SLO {spec.slo_latency_s:g} s snapped up to the histogram bucket "
                   f"boundary {spec.slo_threshold_s:g} s", err=True)
    defaulted = sorted(k for k, v in spec.sources.items() if v.startswith("default") or "headroom" in v)
    if defaulted:
        typer.echo("note: defaults used for " + ", ".join(f"{k} ({spec.sources[k]})" for k in defaulted), err=True)


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
