"""``asrtk results list``: the runs in a results directory, newest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit.cli._common import console, err_console, handle_errors

results_app = typer.Typer(help="Browse past runs in a results directory.", no_args_is_help=True)


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List past runs, newest first: scenario, throughput, p95 latency, error rate, SLO and validity.

    Each run lives in OUT/RUN; `asrtk report OUT/RUN` re-renders its report.

    Example:

      asrtk results list --out results
    """
    from rich.table import Table

    from toolkit.report import fmt_num, fmt_pct, fmt_s
    from toolkit.results import list_runs

    runs = list_runs(out)
    if as_json:
        typer.echo(json.dumps([{**r, "path": str(r["path"])} for r in runs], indent=2))
        return
    if not runs:
        err_console.print(f"no runs under {str(out)!r}; run `asrtk bench` (or pass --out DIR)")
        return
    t = Table(title=f"runs in {out}", show_edge=False)
    # Run ids normally end with the scenario name; a separate column only when one does not.
    show_scenario = any(not str(r["run_id"]).endswith(f"-{r['scenario']}") for r in runs)
    t.add_column("run", no_wrap=True)
    if show_scenario:
        t.add_column("scenario", overflow="fold")
    t.add_column("complete")
    t.add_column("valid")
    for col in ("rps", "p95", "errors"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("SLO")
    for r in runs:
        cells = [str(r["run_id"])] + ([str(r["scenario"] or "?")] if show_scenario else [])
        t.add_row(*cells, _yes_no(r["complete"], "yes", "INCOMPLETE"), _yes_no(r["valid"], "yes", "INVALID"),
                  fmt_num(r["rps"]), fmt_s(r["p95"]), fmt_pct(r["error_rate"]),
                  _yes_no(r["slo_passed"], "pass", "FAIL"))
    console.print(t)
