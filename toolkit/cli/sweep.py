"""``asrtk sweep``: find the highest load that meets the SLO, write results/sweep-<id>/capacity.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli._common import console, handle_errors
from toolkit.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("sweep")(handle_errors(sweep))


def sweep(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="Built-in scenario name or a YAML path.")],
    target: Annotated[Optional[str], typer.Option(help="Base URL of the service under test. Default: the embedded reference server.")] = None,
    mode: Annotated[str, typer.Option(help="rate: open-loop arrivals (rps); users: closed-loop concurrency.")] = "rate",
    slo: Annotated[Optional[str], typer.Option(help="Latency SLO as percentile=latency, e.g. p95=2s. Default: the scenario's.")] = None,
    max_error_rate: Annotated[Optional[str], typer.Option(help="Error budget per step, e.g. 1% or 0.01. Default: the scenario's.")] = None,
    step_duration: Annotated[str, typer.Option(help="Shortest measured time per step; steps run longer when the percentile needs more requests.")] = "20s",
    max_step_duration: Annotated[Optional[str], typer.Option(help="Longest measured time per step (default 3x --step-duration).")] = None,
    warmup: Annotated[str, typer.Option(help="Warm-up per step, excluded from the figures.")] = "2s",
    start: Annotated[Optional[float], typer.Option(help="First load: rps (rate mode, default 2) or users (users mode, default 1).")] = None,
    max_load: Annotated[Optional[float], typer.Option(help="Never offer more than this load (rps or users).")] = None,
    growth: Annotated[float, typer.Option(help="Load multiplier while bracketing the knee.")] = 2.0,
    tolerance: Annotated[float, typer.Option(help="Stop bisecting when the knee is bracketed within this fraction.")] = 0.1,
    max_steps: Annotated[int, typer.Option(help="Most steps per sweep (per worker count), not counting re-measured disturbed steps.")] = 16,
    fill: Annotated[str, typer.Option(help="After the search, measure these fractions of the best load with long steps: the curve where plans operate.")] = "0.5,0.7",
    workers: Annotated[Optional[str], typer.Option(help="Embedded server only: sweep each worker count, e.g. 1,2,4, and pick the best per node.")] = None,
    model: Annotated[str, typer.Option(help="Embedded server: model preset.")] = "tiny",
    processes: Annotated[int, typer.Option(help="Load-generator processes per step.")] = 1,
    out: Annotated[Path, typer.Option(help="Results directory; the sweep goes to <out>/sweep-<id>/.")] = Path("results"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Plain progress lines instead of a progress bar.")] = False,
    history: Annotated[Optional[str], typer.Option(help="Run history to record the sweep in: postgresql://... (default $ASRTK_HISTORY_URL, else OUT/history.sqlite).")] = None,
    fail_on_slo: Annotated[bool, typer.Option("--fail-on-slo/--no-fail-on-slo", help="Exit 3 when the SLO failed at every load tried (the default).")] = True,
) -> None:
    """Find the highest throughput that meets the SLO: raise the load until the SLO fails (or
    throughput stops growing), then bisect the edge. Steps last long enough for the judged
    percentile (20 requests beyond it); a step whose verdict is within noise is repeated, and
    so is a step measured while other work or CPU steal disturbed this host.

    Writes results/sweep-<id>/capacity.json (schema asrtk.capacity/v1), report.html and
    report.md with per-step figures, max_rps_at_slo with its confidence interval and a
    Universal Scalability Law fit.

    Exit codes: 0 done; 1 the run failed (target unreachable, server failed to start, or no
    request succeeded at any step: one line names the most common error); 2 bad usage; 3 the
    SLO failed at every load tried (--no-fail-on-slo: 0).

    Examples:

      asrtk sweep --scenario mobile --step-duration 10s

      asrtk sweep -s callcenter --target http://10.0.0.5:8000 --slo p95=2s --max-error-rate 1%

      asrtk sweep -s emotion --workers 1,2,4          # embedded server, one sweep per worker count
    """
    from toolkit.capacity.sweep import SweepPolicy
    from toolkit.units import parse_duration, parse_fractions, parse_int_list, parse_ratio, parse_slo
    from toolkit.errors import ThresholdBreached
    from toolkit.scenario import load_scenario

    if mode not in ("rate", "users"):
        raise UsageError(f"--mode must be 'rate' or 'users', got {mode!r}")
    worker_counts = parse_int_list(workers, "--workers") if workers else None
    if worker_counts and target:
        raise UsageError("--workers restarts the embedded server with each count; it cannot be used with --target")
    if processes < 1:
        raise UsageError(f"--processes must be >= 1, got {processes}")
    sc = load_scenario(scenario)
    pct, lat = parse_slo(slo) if slo else (sc.slo.percentile, sc.slo.latency_s)
    err = parse_ratio(max_error_rate, "--max-error-rate") if max_error_rate else sc.slo.max_error_rate
    step_s = parse_duration(step_duration, "--step-duration")
    try:
        policy = SweepPolicy(
            mode=mode, slo_latency_s=lat, slo_percentile=pct, max_error_rate=err,  # type: ignore[arg-type]
            start=start if start is not None else (2.0 if mode == "rate" else 1.0),
            growth=growth, tolerance=tolerance, step_duration_s=step_s,
            max_step_duration_s=parse_duration(max_step_duration, "--max-step-duration") if max_step_duration
            else None,
            max_steps=max_steps, max_load=max_load, fill=parse_fractions(fill, "--fill"),
        )
    except ValueError as exc:
        raise UsageError(f"sweep: {exc}") from None
    if sc.slo.percentile != pct or sc.slo.latency_s != lat or sc.slo.max_error_rate != err:
        from dataclasses import replace

        sc = replace(sc, slo=replace(sc.slo, percentile=pct, latency_s=lat, max_error_rate=err))

    from toolkit.history import check_url
    from toolkit.runs.sweep import SweepConfig, run_sweep

    check_url(history)

    cfg = SweepConfig(scenario=sc, policy=policy, target=target, workers=worker_counts, preset=model,
                      out_dir=out, warmup_s=parse_duration(warmup, "--warmup", allow_zero=True),
                      processes=processes, history=history)
    report = _run_with_progress(cfg, run_sweep, quiet)
    _print_summary(report.capacity, report)
    steps = report.capacity["steps"]
    if steps and all(not st["requests"] for st in steps):
        from toolkit.errors import AsrtkError
        from toolkit.results import failure_line, read_summary

        first = read_summary(report.sweep_dir / steps[0]["run_dir"])
        raise AsrtkError(f"{failure_line(first) or 'no request succeeded at any step'} (at every step)")
    if fail_on_slo and report.capacity["result"]["max_rps_at_slo"] is None:
        raise ThresholdBreached(f"the SLO failed at every load tried: {report.capacity['result']['note']}")


def _run_with_progress(cfg, run_sweep, quiet: bool):  # type: ignore[no-untyped-def]
    # gevent monkey-patching before any thread starts (the progress bar has one); the flags were
    # checked before, so that a usage error never patches the process
    import locust  # noqa: F401
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    unit = "rps" if cfg.policy.mode == "rate" else "users"
    total = (cfg.policy.max_steps + len(cfg.policy.fill)) * (len(cfg.workers) if cfg.workers else 1)

    def line(e) -> str:  # type: ignore[no-untyped-def]
        w = f"[workers {e.workers}] " if cfg.workers else ""
        best = f"best ≈ {e.best_rps:.3g} rps" if e.best_rps is not None else "best: none yet"
        if e.kind == "start":
            return f"{w}step {e.plan.index} {e.plan.phase} {e.plan.load:.4g} {unit} for {e.plan.duration_s:.0f}s; {best}"
        if e.kind == "done":
            return f"{w}step {e.plan.index} {e.judgement.verdict}: {e.judgement.reason}; {best}"
        return f"{w}{e.message}"

    if quiet:
        def on_event(e) -> None:  # type: ignore[no-untyped-def]
            if e.kind != "finished":
                print(line(e), flush=True)

        return run_sweep(cfg, on_event)

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} steps"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("sweep", total=total)

        def on_event(e) -> None:  # type: ignore[no-untyped-def]
            if e.kind == "done":
                progress.advance(task)
                progress.console.print(escape(line(e)), soft_wrap=True)
            if e.kind != "finished":
                progress.update(task, description=escape(line(e)))

        return run_sweep(cfg, on_event)


def _print_summary(doc: dict, report) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    res = doc["result"]
    ci = res["ci_rps"]
    if doc.get("workers"):
        t = Table(title="workers per node", show_edge=False)
        for col in ("workers", "QPS at SLO", "p95", "error rate"):
            t.add_column(col, justify="right")
        for w in doc["workers"]:
            t.add_row(str(w["workers"]), _f(w["max_rps_at_slo"]), _f(w["p95_s"], "s"),
                      "–" if w["error_rate"] is None else f"{w['error_rate']:.2%}")
        console.print(t)
        say(f"best worker count per node: [bold]{doc['best_workers']}[/bold]")
    hi = _f(ci[1]) if ci[1] is not None else "not bracketed"
    say(f"max throughput at the SLO: [bold]{_f(res['max_rps_at_slo'])} rps[/bold] "
                  f"(95% CI {_f(ci[0])} – {hi}); {res['note']}")
    usl = doc.get("usl")
    if usl:
        say(f"USL: sigma {usl['sigma']:.4g}, kappa {usl['kappa']:.4g}, lambda {usl['lambda']:.4g}, "
                      f"R² {usl['r_squared']:.3f}, peak concurrency {_f(usl['peak_concurrency'])}")
        for w in usl.get("warnings") or []:
            say(f"[yellow]warning[/yellow]: USL {w}")
    say(f"wrote {report.capacity_path}, {report.report_html}, {report.report_md}")


def say(msg: str) -> None:
    console.print(msg, soft_wrap=True)


def _f(v: float | None, unit: str = "") -> str:
    return "–" if v is None else f"{v:.3g}{unit}"
