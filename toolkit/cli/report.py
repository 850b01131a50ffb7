"""``asrtk report DIR``: re-render a run's report.html and report.md from its files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli._common import console, handle_errors


def register(app: typer.Typer) -> None:
    app.command("report")(report)


@handle_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `asrtk bench` (holds summary.json).",
                                            show_default=False)],
) -> None:
    """Re-render report.html (self-contained, opens offline) and report.md for a finished run.

    Reads summary.json, timeseries.csv, telemetry.csv, server_metrics.csv and latency.hlog
    from the run directory; nothing is measured again.

    Example:

      asrtk report results/20261121-220000-callcenter
    """
    from toolkit.report import write_reports

    html_path, md_path = write_reports(run_dir)
    console.print(f"report: {html_path}")
    console.print(f"        {md_path}")
