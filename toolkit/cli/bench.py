"""``asrtk bench``: load-test a speech service with one scenario and write results/<run-id>/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli._common import console, handle_errors
from toolkit.errors import UsageError


def parse_headers(values: list[str]) -> dict[str, str]:
    """``['Authorization: Bearer x']`` -> dict; UsageError names the bad one (not its value)."""
    out: dict[str, str] = {}
    for i, raw in enumerate(values):
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header #{i + 1} must look like 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def bench(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="Built-in scenario name (callcenter, meeting, mobile, funasr, tts, emotion, mixed) or a YAML path.")] = "callcenter",
    target: Annotated[Optional[str], typer.Option(help="Base URL of the service under test (a path, if any, replaces the scenario's). Default: start the embedded reference server.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Open loop: Poisson arrivals at this many requests/s for the whole run.")] = None,
    users: Annotated[Optional[int], typer.Option(help="Closed loop: this many concurrent users (streams).")] = None,
    duration: Annotated[Optional[str], typer.Option(help="Measured time after the warm-up: 120, 120s, 2m, 500ms.")] = None,
    warmup: Annotated[Optional[str], typer.Option(help="Warm-up, excluded from every figure: 10, 10s, 0.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of arrivals, request choice and the generated corpus.")] = None,
    out: Annotated[Path, typer.Option(help="Results directory; each run gets <out>/<run-id>/.")] = Path("results"),
    audio_dir: Annotated[Optional[Path], typer.Option(help="Send these real audio files instead of the generated corpus.")] = None,
    processes: Annotated[int, typer.Option(help="Load-generator processes (Locust workers under a master); one per free core.")] = 1,
    expect_workers: Annotated[int, typer.Option(help="Also wait for this many `asrtk worker --master HOST` processes from other machines.")] = 0,
    master_bind: Annotated[str, typer.Option(help="Interface the master listens on for workers (0.0.0.0 for remote workers).")] = "127.0.0.1",
    master_port: Annotated[int, typer.Option(help="Master port for workers (0 = free port; remote workers need a fixed one, e.g. 5557).")] = 0,
    secret: Annotated[Optional[str], typer.Option(help="Shared secret of the master and its remote workers (at least 16 characters; prefer $ASRTK_CLUSTER_SECRET, which ps does not show). Required with --expect-workers or a --master-bind beyond loopback.")] = None,
    scrape: Annotated[Optional[list[str]], typer.Option(metavar="URL[,URL...]", help="Prometheus /metrics URL(s) to scrape at 1 Hz: repeat the flag or separate URLs with commas. Default: for a local nginx target, each loopback server it proxies to (http://HOST:PORT/metrics); else the target's own /metrics when it has one.")] = None,
    target_pids: Annotated[Optional[list[str]], typer.Option("--target-pids", metavar="PID[,PID...]", help="Also count these local processes (and their children) as the target's CPU, not as other work on this host: PID[,PID...], repeatable. Added to what bench finds itself: the process listening on a loopback target's port and, when that is nginx, the loopback servers its config proxies to.")] = None,
    header: Annotated[Optional[list[str]], typer.Option(help="Extra request header 'Name: value' (repeatable); values never reach the results.")] = None,
    model: Annotated[str, typer.Option(help="Embedded server: model preset.")] = "tiny",
    server_workers: Annotated[int, typer.Option(help="Embedded server: worker processes.")] = 1,
    label: Annotated[Optional[str], typer.Option(help="Free-form label stored in summary.json.")] = None,
    history: Annotated[Optional[str], typer.Option(help="Run history to record the run in: postgresql://... (default $ASRTK_HISTORY_URL, else OUT/history.sqlite).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Plain progress lines (CI logs) instead of the live view.")] = False,
    fail_on_slo: Annotated[bool, typer.Option("--fail-on-slo/--no-fail-on-slo", help="Exit 3 when the SLO failed (the default); --no-fail-on-slo exits 0 anyway.")] = True,
) -> None:
    """Load-test a speech service and write results/<run-id>/ (summary.json, report.html, ...).

    Latency is measured from each request's intended start (open loop) with exact HDR
    histograms; the warm-up is excluded.

    Exit codes: 0 the run completed and met its SLO; 1 the run failed (target unreachable, or
    no request succeeded: one line names the most common error); 2 bad usage or scenario;
    3 the SLO failed; 4 inconclusive: the SLO failed while the host was disturbed or the load
    generator was the bottleneck; 130 interrupted (partial results written, marked incomplete).

    Examples:

      asrtk bench --scenario callcenter                      # embedded reference server

      asrtk bench -s mobile --target http://10.0.0.5:8000 --rate 20 --duration 120

      asrtk bench -s meeting --users 16 --processes 2 --header 'Authorization: Bearer $TOKEN'

      asrtk bench -s emotion --target http://127.0.0.1:8080 --rate 20   # a local nginx: its servers count too
    """
    from toolkit.scenario import load_scenario, with_overrides
    from toolkit.units import parse_duration

    if processes < 1:
        raise UsageError(f"--processes must be >= 1, got {processes}")
    if server_workers < 1:
        raise UsageError(f"--server-workers must be >= 1, got {server_workers}")
    headers = parse_headers(header or [])
    from toolkit.history import check_url
    from toolkit.units import parse_pid_list, parse_url_list

    scrape_urls = parse_url_list(scrape or [], "--scrape")
    pids = parse_pid_list(target_pids or [], "--target-pids")

    check_url(history)
    sc = load_scenario(scenario)
    sc = with_overrides(
        sc, rate=rate, users=users, seed=seed, audio_dir=audio_dir,
        duration_s=parse_duration(duration, "--duration") if duration is not None else None,
        warmup_s=parse_duration(warmup, "--warmup", allow_zero=True) if warmup is not None else None,
    )

    from toolkit.runs.bench import BenchConfig, run_bench

    cfg = BenchConfig(
        scenario=sc, target=target, server_args=["--model", model, "--workers", str(server_workers)],
        out_dir=out, processes=processes, scrape=scrape_urls, target_pids=pids, headers=headers,
        live=not quiet, quiet=quiet, label=label, expect_workers=expect_workers,
        master_bind=master_bind, master_port=master_port, history=history, secret=secret,
    )
    outcome = run_bench(cfg)
    render_summary(outcome.summary, outcome.run_dir)
    finish(outcome.summary, outcome.run_dir, fail_on_slo)


def finish(summary: dict, run_dir: Path, fail_on_slo: bool = True) -> None:
    """Exit with the run's verdict (toolkit.results.bench_verdict), its reason on stderr."""
    import sys

    from toolkit.results import bench_verdict

    code, line = bench_verdict(summary, fail_on_slo)
    if line is not None:
        print(f"{'error' if code == 1 else 'verdict'}: {line}; see {run_dir / 'report.html'}", file=sys.stderr)
    if code:
        raise typer.Exit(code)


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.3f} s"


def render_summary(s: dict, run_dir: Path) -> None:
    from rich.table import Table

    from toolkit.report import cache_line, local_target_line, scraped_line, tail_note

    t = Table(title=f"asrtk bench: {s['scenario']['name']} ({'complete' if s['complete'] else 'INCOMPLETE'})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    req, lat, load = s["requests"], s["latency_s"], s["load"]
    t.add_row("offered / achieved", f"{load['offered_rps'] or 0:.2f} / {load['achieved_rps'] or 0:.2f} req/s")
    t.add_row("requests ok / errors", f"{req['ok']} / {req['errors']} ({req['error_rate'] * 100:.2f}%)")
    if req["by_class"]:
        t.add_row("errors by class", ", ".join(f"{k} {v}" for k, v in req["by_class"].items()))
    t.add_row("latency p50 / p95 / p99", f"{_fmt_s(lat['p50'])} / {_fmt_s(lat['p95'])} / {_fmt_s(lat['p99'])}")
    t.add_row("latency max", _fmt_s(lat["max"]))
    if s.get("rtf"):
        t.add_row("RTF p50 / p95", f"{s['rtf']['p50']:.4f} / {s['rtf']['p95']:.4f}")
    if s.get("stream"):
        st = s["stream"]
        t.add_row("partial latency p95", _fmt_s(st["partial_latency_s"]["p95"]))
        t.add_row("final latency p95", _fmt_s(st["final_latency_s"]["p95"]))
    lg = s["loadgen"]
    t.add_row("schedule lag p99", _fmt_s(lg["schedule_lag_p99_s"]))
    t.add_row("load generator", "valid" if lg["valid"] else "[red]INVALID[/red]")
    host = s.get("host") or {}
    if host.get("target_cpu_s_per_request") is not None:
        t.add_row("target CPU per request", f"{host['target_cpu_s_per_request'] * 1000:.3g} ms "
                  f"({host['target_cpu_cores_mean']:.2f} cores)")
    if host.get("interference_cpu_cores_mean") is not None:
        t.add_row("other work on this host", f"{host['interference_cpu_cores_mean']:.2f} cores "
                  f"(processes {host['other_cpu_cores_mean'] or 0:.2f}, steal {host['steal_cpu_cores_mean'] or 0:.2f})"
                  + (" [yellow]disturbed[/yellow]" if host.get("disturbed") else ""))
    cache = cache_line(s)
    if cache is not None:
        t.add_row("cache hit ratio", cache)
    server = s.get("server") or {}
    figures = ([f"{server['requests_rps']:.2f} req/s"] if server.get("requests_rps") is not None else []) + (
        [f"{server['cpu_cores_mean']:.2f} cores"] if server.get("cpu_cores_mean") is not None else [])
    if figures:
        t.add_row("server's own /metrics", ", ".join(figures) + f" ({len(server['scraped'])} URL(s))")
    slo = s["slo"]
    for c in slo["checks"]:
        m = c["measured"]
        t.add_row(f"SLO {c['name']} <= {c['threshold']:g}",
                  ("[green]pass[/green] " if c["passed"] else "[red]FAIL[/red] ") + ("-" if m is None else f"{m:.4g}"))
    console.print(t)
    local = (s.get("target") or {}).get("local") or {}
    line = local_target_line(local)
    if line:
        console.print(f"target on this host: {line}", markup=False, highlight=False)
    for n in local.get("notes") or []:
        console.print(f"note: {n}", markup=False, highlight=False)
    line = scraped_line(s)
    if line:
        console.print(f"server metrics: {line}", markup=False, highlight=False)
    for w in lg["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    note = tail_note(lat.get("count"))
    if note:
        console.print(f"note: {note}")
    report = run_dir / "report.html"
    console.print(f"results: {run_dir}" + (f"\nreport:  {report}" if report.exists() else ""))


def register(app: typer.Typer) -> None:
    app.command("bench")(handle_errors(bench))
