"""``asrtk drill``: inject failures under load and judge what the fleet promised."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli._common import console, handle_errors
from toolkit.errors import UsageError


def drill(
    drills: Annotated[str, typer.Option("--drills", help="Comma-separated drills to run, in order: kill, restart, hang, overload, failover.")] = "kill,restart,hang,overload,failover",
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="Built-in scenario name or a YAML path (the load during every drill).")] = "mobile",
    target: Annotated[Optional[str], typer.Option(help="Base URL of your deployment (its load balancer). Default: start the embedded fleet (the real nginx in front of reference servers) on loopback.")] = None,
    inject: Annotated[Optional[list[str]], typer.Option(help="With --target: NAME='COMMAND' that injects a failure in your deployment (repeatable). Names: kill, restart (the whole rolling restart), hang and resume, failover (and optional failback).")] = None,
    nginx_conf: Annotated[Optional[Path], typer.Option(help="With --target: your load balancer's nginx config, read for the bounds (max_fails, fail_timeout, proxy_read_timeout, retries); without it those bounds are reported as unknown.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Base load, mean requests/s (default: the scenario's arrivals scaled so their peak keeps the fleet minus one primary at 60% of its measured capacity).")] = None,
    capacity_rps: Annotated[Optional[float], typer.Option(help="The fleet's capacity, req/s (default: measured through nginx). Needed for the overload drill against --target.")] = None,
    replicas: Annotated[int, typer.Option(help="Embedded fleet: reference servers.")] = 3,
    backups: Annotated[int, typer.Option(help="Embedded fleet: how many of them are nginx backups.")] = 1,
    model: Annotated[str, typer.Option(help="Embedded fleet: model preset of the servers.")] = "tiny",
    server_args: Annotated[Optional[str], typer.Option(help="Embedded fleet: extra flags for every server, one string, e.g. '--not-ready respond' (they override the drill's).")] = None,
    max_fails: Annotated[Optional[int], typer.Option(help="Embedded fleet: nginx max_fails (default: the generator's 3; 0 turns the passive health check off).")] = None,
    fail_timeout: Annotated[Optional[str], typer.Option(help="Embedded fleet: nginx fail_timeout, e.g. 10s (default: the generator's 10 s).")] = None,
    retry_non_idempotent: Annotated[Optional[bool], typer.Option("--retry-non-idempotent/--no-retry-non-idempotent", help="Embedded fleet: whether nginx re-sends a POST that already reached a server (default: the generator's).")] = None,
    settle: Annotated[str, typer.Option(help="Load before each injection.")] = "4s",
    down: Annotated[str, typer.Option(help="kill and failover: how long the victims stay down before they are restarted.")] = "5s",
    hang_for: Annotated[Optional[str], typer.Option(help="hang: how long the replica stays frozen (default: proxy_read_timeout + 3 s).")] = None,
    overload_for: Annotated[str, typer.Option(help="overload: how long 2x the capacity is offered.")] = "20s",
    overload_factor: Annotated[float, typer.Option(help="overload: offered load as a multiple of the capacity.")] = 2.0,
    observe: Annotated[Optional[str], typer.Option(help="With --target: load after each hook (default: fail_timeout + 5 s, or 15 s).")] = None,
    header: Annotated[Optional[list[str]], typer.Option(help="Extra request header 'Name: value' (repeatable); values never reach the results.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of arrivals and request choice.")] = None,
    out: Annotated[Path, typer.Option(help="Results directory; the drill gets <out>/<run-id>/.")] = Path("results"),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the verdicts here: {\"drills\": [{name, passed, errors, error_bound, recovery_s, recovery_bound_s, detail}]}.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the drills' verdict lines, not every injection.")] = False,
) -> None:
    """Kill, restart, freeze and overload a fleet under load, and judge what it promised.

    Each drill injects its failure mid-run while the scenario's open-loop load continues, and
    judges its promises from the client side and from the fleet (nginx's log of every upstream
    it tried, the replicas' memory): kill (SIGKILL a primary), restart (rolling SIGTERM restart),
    hang (SIGSTOP a primary, then SIGCONT), overload (2x capacity), failover (every primary
    down, the backup serves). Every bound is derived from the config that ran and says so.

    Exit codes: 0 every promise held; 1 the drill could not run (a fleet process did not
    start, a hook failed); 2 bad usage; 3 a promise broke (one line each on stderr);
    4 inconclusive (promises broke only in drills whose load generator was invalid or whose
    host was disturbed by other work); 130 interrupted (what was judged is written, marked
    incomplete).

    Examples:

      asrtk drill                                     # embedded fleet: nginx + 3 reference servers

      asrtk drill --drills kill,restart --json drill.json

      asrtk drill --target http://asr-lb:8080 --nginx-conf /etc/nginx/conf.d/asrtk.conf \\
          --inject kill='kubectl delete pod -l app=asr --wait=false' \\
          --inject restart='kubectl rollout restart deploy/asr && kubectl rollout status deploy/asr'
    """
    import math
    import shlex

    from toolkit.cli.bench import parse_headers
    from toolkit.scenario import load_scenario, with_overrides
    from toolkit.units import parse_duration

    def secs(value: str | None, flag: str) -> float | None:
        return None if value is None else parse_duration(value, flag)

    if replicas < 2:
        raise UsageError(f"--replicas must be >= 2, got {replicas}")
    if rate is not None and not rate > 0:
        raise UsageError(f"--rate must be > 0 requests/s, got {rate}")
    if capacity_rps is not None and not capacity_rps > 0:
        raise UsageError(f"--capacity-rps must be > 0, got {capacity_rps}")
    if max_fails is not None and max_fails < 0:
        raise UsageError(f"--max-fails must be >= 0, got {max_fails}")
    ft = secs(fail_timeout, "--fail-timeout")
    sc = load_scenario(scenario)
    if seed is not None:
        sc = with_overrides(sc, seed=seed)

    from toolkit.runs.drill import DrillConfig, run_drill

    cfg = DrillConfig(
        scenario=sc, drills=[d.strip() for d in drills.split(",") if d.strip()], target=target,
        hooks=parse_injects(inject or []), nginx_conf=nginx_conf, rate=rate, capacity_rps=capacity_rps,
        replicas=replicas, backups=backups, model=model, server_args=shlex.split(server_args) if server_args else [],
        max_fails=max_fails, fail_timeout_s=None if ft is None else max(1, math.ceil(ft)),
        retry_non_idempotent=retry_non_idempotent, settle_s=float(secs(settle, "--settle") or 0),
        down_s=float(secs(down, "--down") or 0), hang_s=secs(hang_for, "--hang-for"),
        overload_s=float(secs(overload_for, "--overload-for") or 0), overload_factor=overload_factor,
        observe_s=secs(observe, "--observe"), out_dir=out, headers=parse_headers(header or []), quiet=quiet, seed=seed,
    )
    outcome = run_drill(cfg)
    render(outcome.summary, outcome.run_dir)
    if json_out is not None:
        from toolkit.drills.outputs import json_document
        from toolkit.results import write_json_atomic

        write_json_atomic(json_out, json_document(outcome.summary))
    finish(outcome.summary, outcome.interrupted)


def parse_injects(values: list[str]) -> dict[str, str]:
    """``['kill=kubectl delete pod ...']`` -> {name: command}; UsageError names the bad one."""
    out: dict[str, str] = {}
    for raw in values:
        name, sep, cmd = raw.partition("=")
        if not sep or not name.strip() or not cmd.strip():
            raise UsageError(f"--inject {raw!r} must look like NAME='COMMAND', e.g. --inject kill='kubectl delete pod "
                             "-l app=asr --wait=false'")
        out[name.strip()] = cmd.strip()
    return out


def render(summary: dict, run_dir: Path) -> None:
    from rich.table import Table

    t = Table(title=f"asrtk drill: {summary['scenario']} ({'complete' if summary['complete'] else 'INCOMPLETE'})")
    for col, just in (("drill", "left"), ("verdict", "left"), ("errors / bound", "right"),
                      ("recovery / bound", "right"), ("wall", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for d in summary["drills"]:
        verdict = {True: "[green]held[/green]", False: "[red]BROKEN[/red]",
                   None: "[yellow]partly unknown[/yellow]"}[d["passed"]]
        if (d.get("loadgen") or {}).get("valid") is False:
            verdict += " [yellow](load generator invalid)[/yellow]"
        if (d.get("host") or {}).get("disturbed"):
            verdict += " [yellow](DISTURBED host)[/yellow]"
        bound = "unknown" if d["error_bound"] is None else str(d["error_bound"])
        rec = "-" if d["recovery_s"] is None else f"{d['recovery_s']:.2f} s"
        rb = "unknown" if d["recovery_bound_s"] is None else f"{d['recovery_bound_s']:.2f} s"
        t.add_row(d["name"], verdict, f"{d['errors']} / {bound}", f"{rec} / {rb}", f"{d['wall_s']:.0f} s")
    if summary["drills"]:
        console.print(t)
    else:
        console.print("no drill was judged", highlight=False)
    for d in summary["drills"]:
        console.print(f"{d['name']}: {d['detail']}", highlight=False)
    console.print(f"results: {run_dir}\nreport:  {run_dir / 'report.html'}", highlight=False)


def finish(summary: dict, interrupted: bool) -> None:
    import sys

    for line in summary.get("broken", []):
        print(f"broken: {line}", file=sys.stderr)
    if interrupted:
        print("interrupted: the drills judged so far are written, marked incomplete", file=sys.stderr)
        raise typer.Exit(130)
    if summary.get("exit_code") == 4:
        print("inconclusive: every broken promise is of a drill whose load generator fell behind its schedule "
              "or saturated, or whose host was busy with other work (see the warnings); rerun with a lower --rate "
              "or on a quiet machine", file=sys.stderr)
    if summary.get("exit_code"):
        raise typer.Exit(int(summary["exit_code"]))


def register(app: typer.Typer) -> None:
    app.command("drill")(handle_errors(drill))
