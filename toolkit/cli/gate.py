"""``asrtk gate``: one CI verdict per run: absolute thresholds and a noise-aware comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli._common import console, handle_errors
from toolkit.errors import UsageError

POLICIES = ("inconclusive", "fail", "pass")


def gate(
    scenario: Annotated[Optional[str], typer.Option("--scenario", "-s", help="Measure this scenario now (built-in name or YAML path).")] = None,
    target: Annotated[Optional[str], typer.Option(help="The build under test. Default: the embedded reference server.")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="Compare with: RUN_DIR, a RUN_ID under --out, or history:BRANCH (the newest trusted run of the scenario on that branch). Repeatable.")] = None,
    baseline_target: Annotated[Optional[str], typer.Option(help="A/B: the old build's URL; old and new are run alternately on this machine.")] = None,
    current: Annotated[Optional[list[Path]], typer.Option(help="Judge this existing run directory instead of measuring (repeatable).")] = None,
    threshold: Annotated[Optional[list[str]], typer.Option(help="Absolute bound, e.g. 'p95<=1.2s', 'error_rate<=1%', 'rps>=40', 'cpu_per_request<=15ms' (repeatable).")] = None,
    max_regression: Annotated[str, typer.Option(help="Largest tolerated slowdown of a compared figure, e.g. 5%.")] = "5%",
    compare: Annotated[Optional[str], typer.Option(help="Figures to compare with the baseline, e.g. p95,p99,cpu_per_request. Default: the scenario's SLO percentile.")] = None,
    max_runs: Annotated[int, typer.Option(help="While inconclusive, measure again: at most this many runs (A/B: pairs).")] = 2,
    confidence: Annotated[str, typer.Option(help="Confidence of the intervals, e.g. 95%.")] = "95%",
    inconclusive: Annotated[str, typer.Option("--inconclusive", help="Policy for an inconclusive verdict: inconclusive (exit 4), fail (exit 3) or pass (exit 0).")] = "inconclusive",
    duration: Annotated[str, typer.Option(help="Measured time per run.")] = "20s",
    warmup: Annotated[str, typer.Option(help="Warm-up per run, excluded from the figures.")] = "2s",
    rate: Annotated[Optional[float], typer.Option(help="Open loop: arrivals per second (overrides the scenario's).")] = None,
    users: Annotated[Optional[int], typer.Option(help="Closed loop: concurrent users (overrides the scenario's).")] = None,
    header: Annotated[Optional[list[str]], typer.Option(help="Extra request header 'Name: value' (repeatable); values never reach the results.")] = None,
    junit: Annotated[Optional[Path], typer.Option(help="Write a JUnit XML report here (one testcase per check).")] = None,
    summary_md: Annotated[Optional[Path], typer.Option(help="Append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the verdict as JSON (schema asrtk.gate/v1) here.")] = None,
    history: Annotated[Optional[str], typer.Option(help="Run history: postgresql://... (default $ASRTK_HISTORY_URL, else OUT/history.sqlite).")] = None,
    out: Annotated[Path, typer.Option(help="Results directory for the runs (and the default history).")] = Path("results"),
    label: Annotated[Optional[str], typer.Option(help="Free-form label stored with the runs.")] = None,
    model: Annotated[str, typer.Option(help="Embedded server: model preset.")] = "tiny",
) -> None:
    """Judge a build in CI: pass, fail or inconclusive, from thresholds and a baseline.

    A comparison is noise-aware: each compared figure (default: the scenario's SLO
    percentile; --compare adds p99, cpu_per_request, ...) gets a confidence interval of its
    change from the runs' own data (order statistics of the exact HDR histograms for
    percentiles, 10-second blocks for CPU per request). The gate fails when the whole interval lies beyond
    --max-regression, passes when it lies within, and otherwise measures again (--max-runs),
    then says inconclusive. Runs on a disturbed host or with an invalid load generator are
    not compared; sides measured differently (scenario, load, seed, host size) are not either.

    Exit codes: 0 pass; 3 fail; 4 inconclusive (--inconclusive fail|pass maps it); 1 the run
    failed; 2 bad usage.

    Examples:

      asrtk gate -s emotion --target http://127.0.0.1:8000 --baseline history:main --junit gate.xml

      asrtk gate --current results/RUN_NEW --baseline results/RUN_OLD --threshold 'p95<=1.2s'

      asrtk gate -s emotion --target http://new:8000 --baseline-target http://old:8000 --summary-md "$GITHUB_STEP_SUMMARY"
    """
    from toolkit.cli.bench import parse_headers
    from toolkit.gate.expr import FIGURES, parse_threshold
    from toolkit.gate.judge import COMPARABLE
    from toolkit.units import parse_duration, parse_ratio

    if inconclusive not in POLICIES:
        raise UsageError(f"--inconclusive must be one of {', '.join(POLICIES)}, got {inconclusive!r}")
    conf = parse_ratio(confidence, "--confidence")
    if not 0.5 <= conf < 1:
        raise UsageError(f"--confidence must be between 50% and 100%, got {confidence!r}")
    figs = None
    if compare:
        figs = []
        for name in (n.strip().lower() for n in compare.split(",") if n.strip()):
            if name not in COMPARABLE:
                raise UsageError(f"--compare: {name!r} cannot be compared; choose from {', '.join(COMPARABLE)} "
                                 "(others can be bounded with --threshold)")
            figs.append(FIGURES[name])
    from toolkit.history import check_url
    from toolkit.runs.gate import GateConfig, run_gate

    check_url(history)

    cfg = GateConfig(
        current=list(current or []), baseline=list(baseline or []), scenario=scenario, target=target,
        baseline_target=baseline_target, thresholds=[parse_threshold(t) for t in threshold or []], compare=figs,
        max_regression=parse_ratio(max_regression, "--max-regression"), confidence=conf, max_runs=max_runs,
        policy=inconclusive, duration_s=parse_duration(duration, "--duration"),
        warmup_s=parse_duration(warmup, "--warmup", allow_zero=True), rate=rate, users=users, out_dir=out,
        history=history, label=label, headers=parse_headers(header or []), model=model,
    )
    if scenario is not None:
        import locust  # noqa: F401  - gevent monkey-patching before anything else runs load

    result = run_gate(cfg)
    render(result)
    _write_outputs(result, junit, summary_md, json_path)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _write_outputs(result, junit, summary_md, json_path) -> None:  # type: ignore[no-untyped-def]
    if not (junit or summary_md or json_path):
        return
    from toolkit.gate.outputs import write_outputs

    write_outputs(result, junit, summary_md, json_path)


def render(result) -> None:  # type: ignore[no-untyped-def]
    from rich.markup import escape
    from rich.table import Table

    from toolkit.gate.expr import format_value

    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
    t = Table(title=f"asrtk gate: {result.scenario or ''} ({result.mode})", show_edge=False)
    for col in ("check", "baseline", "current", "change (CI)", "allowed", "verdict"):
        t.add_column(col, justify="right" if col in ("baseline", "current") else "left")
    for c in result.checks:
        chg = "-" if c.change is None else f"{c.change * 100:+.1f}%"
        if c.ci is not None:
            chg += f" ({c.ci[0] * 100:+.1f}%…{c.ci[1] * 100:+.1f}%)"
        t.add_row(escape(c.name), format_value(c.baseline, c.unit), format_value(c.measured, c.unit), chg,
                  escape(c.allowed), f"[{colour[c.verdict]}]{c.verdict}[/{colour[c.verdict]}]")
    console.print(t)
    for r in result.reasons:
        console.print(f"[yellow]inconclusive:[/yellow] {escape(r)}")
    runs = ", ".join(r.run_id for r in result.runs)
    base = ", ".join(r.run_id for r in result.baselines)
    console.print(f"runs: {runs}" + (f"; baseline: {base}" if base else ""))
    v = result.verdict
    console.print(f"verdict: [{colour[v]}]{v.upper()}[/{colour[v]}] (exit {result.exit_code})")


def register(app: typer.Typer) -> None:
    app.command("gate")(handle_errors(gate))
