"""``asrtk results list`` and ``asrtk results trend``: past runs from the run history and the
results directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from toolkit.cli._common import console, err_console, handle_errors

results_app = typer.Typer(help="Browse past runs: the run history and the results directory.", no_args_is_help=True)

HistoryOpt = Annotated[Optional[str], typer.Option(
    "--history", metavar="URL",
    help="Run history to read: postgresql://USER:PASS@HOST[:PORT]/DB or sqlite:///PATH. "
         "Default: $ASRTK_HISTORY_URL, else RESULTS/history.sqlite.")]
ScenarioOpt = Annotated[Optional[str], typer.Option("--scenario", help="Only runs of this scenario.")]
BranchOpt = Annotated[Optional[str], typer.Option("--branch", help="Only runs of this git branch.")]

VERDICT_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def register(app: typer.Typer) -> None:
    app.add_typer(results_app, name="results")


def _yes_no(v: Any, yes: str, no: str) -> str:
    if v is None:
        return "[dim]?[/dim]"
    return f"[green]{yes}[/green]" if v else f"[red]{no}[/red]"


@results_app.command("list")
@handle_errors
def list_cmd(
    out: Annotated[Path, typer.Option("--out", help="Results directory `asrtk bench --out` wrote to.")] = Path(
        "results"),
    history: HistoryOpt = None,
    scenario: ScenarioOpt = None,
    branch: BranchOpt = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="Only runs of this kind: bench, sweep or gate.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many runs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List past runs, newest first: scenario, branch, throughput, p95 latency, error rate, SLO,
    validity and whether the host was disturbed.

    Runs come from the run history (every bench, sweep and gate run is recorded there) and from
    the run directories under OUT that the history does not hold. `asrtk report OUT/RUN`
    re-renders a run's report.

    Examples:

      asrtk results list --out results

      asrtk results list --scenario callcenter --branch main --kind bench

      asrtk results list --history postgresql://ci:secret@db.internal/asrtk --json
    """
    from toolkit.history import KINDS
    from toolkit.history import merged_runs

    if kind is not None and kind not in KINDS:
        from toolkit.errors import UsageError

        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    runs = merged_runs(out, history, scenario=scenario, branch=branch, kind=kind, limit=limit)
    if as_json:
        typer.echo(json.dumps([{**r, "path": str(r["path"])} for r in runs], indent=2))
        return
    if not runs:
        filters = ", ".join(f"{k} {v!r}" for k, v in (("scenario", scenario), ("branch", branch), ("kind", kind)) if v)
        err_console.print(f"no runs under {str(out)!r}{' for ' + filters if filters else ''}; run `asrtk bench` "
                          f"(or pass --out DIR / --history URL)")
        return
    _print_table(runs, str(out))


def _kind(r: dict[str, Any]) -> str:
    """The kind, and a gate run's verdict beside it."""
    v = r["gate_verdict"]
    return f"gate [{VERDICT_STYLE[v]}]{v}[/{VERDICT_STYLE[v]}]" if v in VERDICT_STYLE else str(r["kind"])


def _print_table(runs: list[dict[str, Any]], out: str) -> None:
    from rich.table import Table

    from toolkit.report import fmt_num, fmt_pct, fmt_s

    t = Table(title=f"runs in {out}", show_edge=False)
    # Run ids normally end with the scenario name; a separate column only when one does not.
    show_scenario = any(not str(r["run_id"]).endswith(f"-{r['scenario']}") for r in runs)
    show_kind = any(r["kind"] != "bench" for r in runs)
    show_branch = any(r["git_branch"] for r in runs)
    show_disturbed = any(r["disturbed"] is not None for r in runs)  # summaries before host.disturbed: unknown
    t.add_column("run", no_wrap=True)
    if show_scenario:
        t.add_column("scenario", overflow="fold")
    if show_kind:
        t.add_column("kind")
    if show_branch:
        t.add_column("branch", no_wrap=True, max_width=24)
    t.add_column("complete")
    t.add_column("valid")
    if show_disturbed:
        t.add_column("disturbed")
    for col in ("rps", "p95", "errors"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("SLO")
    for r in runs:
        cells = [str(r["run_id"])]
        cells += [str(r["scenario"] or "?")] if show_scenario else []
        cells += [_kind(r)] if show_kind else []
        cells += [str(r["git_branch"] or "")] if show_branch else []
        cells += [_yes_no(r["complete"], "yes", "INCOMPLETE"), _yes_no(r["valid"], "yes", "INVALID")]
        if show_disturbed:
            cells.append("[dim]?[/dim]" if r["disturbed"] is None else
                         "[red]DISTURBED[/red]" if r["disturbed"] else "no")
        cells += [fmt_num(r["rps"]), fmt_s(r["p95"]), fmt_pct(r["error_rate"]),
                  _yes_no(r["slo_passed"], "pass", "FAIL")]
        t.add_row(*cells)
    console.print(t)


@results_app.command("trend")
@handle_errors
def trend_cmd(
    scenario: Annotated[str, typer.Option("--scenario", help="The scenario to chart.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="HTML file to write. Default: RESULTS/trend-SCENARIO.html.")] = None,
    history: HistoryOpt = None,
    branch: BranchOpt = None,
    kind: Annotated[str, typer.Option("--kind", help="Runs to chart: bench or sweep (sweeps chart "
                                                     "max_rps_at_slo and the best step's figures).")] = "bench",
    results_dir: Annotated[Path, typer.Option(
        "--results", help="Results directory holding the default history.sqlite.")] = Path("results"),
) -> None:
    """Chart a scenario's runs over time: p95 and p99 latency, throughput, error rate and CPU per
    request, one point per run (hover: run id, commit, branch). Runs on a disturbed host get
    their own marker; gate verdicts (pass, fail, inconclusive) are marked on the latency chart.
    The HTML file is self-contained (opens offline).

    Examples:

      asrtk results trend --scenario callcenter

      asrtk results trend --scenario callcenter --branch main --out trend.html

      asrtk results trend --scenario callcenter --history postgresql://ci:secret@db.internal/asrtk
    """
    from toolkit import atomic
    from toolkit.errors import NoDataError, UsageError
    from toolkit.history import open_history, trend_html

    if kind not in ("bench", "sweep"):
        raise UsageError(f"--kind must be bench or sweep, got {kind!r}")
    try:
        h = open_history(history, results_dir, create=False)
    except NoDataError as exc:
        raise NoDataError(f"{exc}; nothing to chart for scenario {scenario!r}") from exc
    with h:
        records = h.runs(scenario=scenario, branch=branch)
        where = h.where
    runs = [r for r in records if r.kind == kind]
    gates = [r for r in records if r.kind == "gate"]
    if not runs and not gates:
        on = f" on branch {branch!r}" if branch else ""
        raise NoDataError(f"the history at {where} has no {kind} run of scenario {scenario!r}{on}; "
                          f"record one with `asrtk {kind} --scenario {scenario}` or check --history / --branch")
    path = out or Path(results_dir) / f"trend-{scenario}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, trend_html(runs, gates, scenario=scenario, branch=branch))
    console.print(f"{len(runs)} {kind} run(s), {len(gates)} gate verdict(s) of {scenario!r}: {path}")
