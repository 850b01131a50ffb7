"""``asrtk doctor``: what this machine can run (a report; always exits 0)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from toolkit.cli._common import console, handle_errors


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


@handle_errors
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report Python and package versions, ONNX Runtime providers that really load, NVIDIA GPUs seen
    through NVML (or the exact reason none are), and nginx / promtool / prometheus versions.

    It is a report, not a gate: it exits 0 whatever it finds.
    """
    from toolkit import doctor as lib

    report = lib.collect()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return

    console.print(f"[bold]asrtk doctor[/bold]  Python {report.python} on {report.platform}, "
                  f"{report.cpu_cores} cores, {(report.memory_bytes or 0) / 2**30:.1f} GiB")
    t = Table(title="Python packages", show_edge=False)
    t.add_column("package")
    t.add_column("version")
    for name, ver in report.packages.items():
        if ver is None and name == "onnxruntime":
            continue  # onnxruntime-gpu provides the module
        t.add_row(name, ver or "[red]missing[/red]")
    console.print(t)

    t = Table(title="ONNX Runtime execution providers", show_edge=False)
    t.add_column("provider")
    t.add_column("status")
    for name, reason in report.providers.items():
        t.add_row(name, "[green]loads[/green]" if not reason else f"[yellow]no[/yellow]: {reason}")
    console.print(t)

    if report.gpus:
        t = Table(title=f"NVIDIA GPUs (driver {report.driver})", show_edge=False)
        for col in ("index", "name", "memory", "util"):
            t.add_column(col)
        for g in report.gpus:
            mem = g.get("memory_total_bytes")
            util = g.get("utilization_ratio")
            t.add_row(str(g["index"]), g["name"], f"{mem / 2**30:.0f} GiB" if mem else "?",
                      f"{util:.0%}" if util is not None else "?")
        console.print(t)
    else:
        console.print(f"[bold]NVIDIA GPUs[/bold]: none ({report.gpu_reason})")

    t = Table(title="Tools", show_edge=False)
    t.add_column("tool")
    t.add_column("version")
    t.add_column("path")
    for name, info in report.tools.items():
        t.add_row(name, info["version"] or f"[yellow]{info['reason']}[/yellow]", info["path"] or "-")
    console.print(t)
    console.print(f"cache: {report.cache_dir}")
