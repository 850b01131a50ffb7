"""``asrtk plan``: size the fleet from measured capacity; ``asrtk plan validate``: check the plan."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from toolkit.cli._common import console, handle_errors, read_hosts
from toolkit.errors import UsageError

if TYPE_CHECKING:
    from toolkit.capacity.validation import Validation

plan_app = typer.Typer(
    name="plan",
    invoke_without_command=True,
    no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")


@plan_app.callback(invoke_without_command=True)
@handle_errors
def plan(
    ctx: typer.Context,
    target_qps: Annotated[Optional[float], typer.Option(help="Requests per second the fleet must carry.")] = None,
    slo: Annotated[Optional[str], typer.Option(help="Latency SLO, e.g. p95=1.5s. Default: the sweep's.")] = None,
    max_error_rate: Annotated[str, typer.Option(help="Error budget, e.g. 1%.")] = "1%",
    capacity: Annotated[Optional[list[Path]], typer.Option(help="capacity.json of a sweep (repeatable). Default: the latest sweep in --results.")] = None,
    node: Annotated[Optional[list[str]], typer.Option(help="Node type NAME=FILE[:cost per hour] (repeatable), e.g. gpu-a=results/sweep-x/capacity.json:3.2.")] = None,
    measurements: Annotated[Optional[list[Path]], typer.Option(help="CSV measured elsewhere (repeatable): workers,qps,p95_s,error_rate[,users|concurrency][,node]; rows of one worker count in order of offered load (by users/concurrency, else file order). A row past the knee (more users, no more throughput, or over the SLO) caps that worker count's capacity.")] = None,
    hosts: Annotated[Optional[str], typer.Option("--hosts", help="Inventory FILE, one host per line: HOST:PORT, optionally followed by weight=N, backup, type=NAME; or the same entries as a comma-separated LIST: the fleet's real addresses; too few hosts for the plan is an error. Without it plan.yaml has no addresses and `asrtk generate` asks for them.")] = None,
    max_body: Annotated[Optional[str], typer.Option("--max-body", help="Largest request body, e.g. 20MB (10 min of 16 kHz 16-bit WAV is 19.2 MB); overrides the scenario's largest upload. A CSV gives none.")] = None,
    hit_rate: Annotated[Optional[str], typer.Option("--hit-rate", help="Share of requests a result cache answers (e.g. 40% or 0.4; bench reports it as cache.client.hit_ratio). Capacity = measured capacity (all misses) / ((1-h) + h x hit cost); the notes say what the fleet carries at 0%.")] = None,
    hit_cost: Annotated[Optional[float], typer.Option("--hit-cost", help="What a cache hit costs a node relative to a miss (CPU), 0..1, e.g. 0.05.")] = None,
    hit_cost_from: Annotated[Optional[Path], typer.Option("--hit-cost-from", help="A bench run directory (or its summary.json) against the cached server: the hit cost is computed from its CPU per request at its hit ratio and the sweep's CPU per miss.")] = None,
    redundancy: Annotated[int, typer.Option(help="Spare nodes (N+k): they become nginx backups.")] = 1,
    headroom: Annotated[float, typer.Option(help="Load each node at most this fraction of its capacity at the SLO.")] = 0.8,
    max_cost_per_hour: Annotated[Optional[float], typer.Option(help="Budget: reject plans that cost more per hour.")] = None,
    results: Annotated[Path, typer.Option(help="Where to look for the latest sweep.")] = Path("results"),
    out: Annotated[Path, typer.Option(help="Directory for plan.yaml, plan.md and plan.html.")] = Path("."),
) -> None:
    """Turn measured capacity into node counts, workers per node, nginx weights and N+k redundancy.

    Capacity at the SLO is interpolated between measured points only (never extrapolated); a
    point past the knee (more users, no more throughput) caps it at the busiest point within the
    SLO. nodes = ceil(target / (headroom x capacity)) + redundancy. The notes name the
    measurements (CSV line, sweep step) that decided each capacity. A queueing model (Erlang C
    with an Allen-Cunneen correction) predicts p95 at the planned load, labelled as a model next
    to the measured figure. --hosts assigns the inventory's addresses to the fleet. Exit codes:
    0 planned, 2 no or bad capacity data, flags or inventory (too few hosts: says how many are
    missing), 3 no plan meets the SLO or the budget.

    Examples:

      asrtk plan --target-qps 300                                   # latest sweep in results/

      asrtk plan --target-qps 300 --slo p95=1.5s --node a100=results/sweep-a/capacity.json:3.2 \\
          --node l4=results/sweep-b/capacity.json:0.9 --redundancy 2 --out deploy/

      asrtk plan --target-qps 120 --slo p95=2s --measurements loadtest.csv --hosts hosts.txt

      asrtk plan --target-qps 40 --slo p95=1.5s --measurements article.csv --max-body 20MB \\
          --hosts 10.0.0.1:8000,10.0.0.2:8000,10.0.0.3:8000

      asrtk plan --target-qps 300 --hit-rate 40% --hit-cost-from results/20261203-101500-tts-zipf

      asrtk plan validate deploy/plan.yaml --target http://gpu-a-1:8000
    """
    if ctx.invoked_subcommand is not None:
        return
    from toolkit.runs.plan import gather, plan_and_write
    from toolkit.capacity.planner import PlanRequest
    from toolkit.units import parse_ratio, parse_size, parse_slo
    from dataclasses import replace

    if target_qps is None:
        raise UsageError("--target-qps is required, e.g. asrtk plan --target-qps 300")
    pct, lat = parse_slo(slo) if slo else (0.95, None)
    h = parse_ratio(hit_rate, "--hit-rate") if hit_rate is not None else 0.0
    req = PlanRequest(
        target_qps=target_qps, slo_percentile=pct, slo_latency_s=lat,
        max_error_rate=parse_ratio(max_error_rate, "--max-error-rate"), headroom=headroom,
        redundancy=redundancy, max_cost_per_hour=max_cost_per_hour,
        hit_rate=h, hit_cost=_hit_cost(hit_cost, hit_cost_from) if h > 0 else None,
    )
    inputs = gather(list(capacity or []), list(node or []), list(measurements or []), results)
    if hosts is not None:
        found, where = read_hosts(hosts)
        inputs = replace(inputs, hosts=found, hosts_source=where)
    if max_body is not None:
        inputs = replace(inputs, max_body_bytes=parse_size(max_body, "--max-body"), max_body_flag=f"--max-body {max_body}")
    if inputs.used_latest is not None:
        say(f"using the latest sweep: {inputs.used_latest}")
    result = plan_and_write(req, inputs, out)
    _print_plan(result.doc)
    say(f"wrote {result.yaml_path}, {result.md_path}, {result.html_path}")


def _hit_cost(ratio: float | None, run: Path | None) -> object:
    from toolkit.capacity.planner import HitCost
    from toolkit.runs.plan import hit_cost_from_run

    if ratio is not None and run is not None:
        raise UsageError("give the hit cost once: --hit-cost RATIO or --hit-cost-from RUN_DIR")
    if ratio is not None:
        if not 0 <= ratio <= 1:
            raise UsageError(f"--hit-cost must be between 0 and 1 (a hit's cost / a miss's), got {ratio:g}")
        return HitCost(source=f"--hit-cost {ratio:g}", ratio=ratio)
    if run is not None:
        return hit_cost_from_run(run)
    raise UsageError("--hit-rate needs the cost of a hit: --hit-cost RATIO (a hit's CPU / a miss's) or "
                     "--hit-cost-from RUN_DIR (a bench run against the cached server)")


def say(msg: str) -> None:
    console.print(msg, soft_wrap=True)


def _f(v: float | None, unit: str = "") -> str:
    return "–" if v is None else f"{v:.3g}{unit}"


def _print_plan(doc: dict) -> None:
    from rich.table import Table

    t = Table(title="node types", show_edge=False)
    for col in ("node type", "workers", "QPS at SLO", "basis", "cost/h"):
        t.add_column(col, justify="right")
    for nt in doc["node_types"]:
        t.add_row(nt["name"], _f(nt["workers_per_node"]), _f(nt["capacity_rps"]), nt["capacity_basis"],
                  _f(nt["cost_per_hour"]))
    console.print(t)
    rec = doc["recommended"]
    exp = doc["expected"]
    cost = f", {rec['cost_per_hour']:.4g}/h" if rec.get("cost_per_hour") is not None else ""
    say(f"[bold]recommended: {rec['nodes']} x {rec['node_type']}[/bold] ({rec['active_nodes']} active + "
                  f"{rec['backup_nodes']} backup, {_f(rec['workers_per_node'])} workers/node{cost}); "
                  f"ranked by {doc['ranking']}")
    say(f"per node {_f(exp['per_node_rps'])} rps ({_f((exp.get('utilization') or 0) * 100)}% of capacity): "
                  f"p95 measured {_f(exp.get('p95_s_measured'), 's')}, model {_f(exp.get('p95_s_model'), 's')} "
                  f"({exp['model']})")
    deg = doc["degraded"]
    say(f"with {deg['nodes_lost']} node(s) lost: {_f(deg['capacity_rps'])} rps at the SLO, "
                  f"meets SLO: {'yes' if deg['meets_slo'] else 'NO'}")
    for a in doc.get("alternatives") or []:
        say(f"alternative: {a['nodes']} x {a['node_type']}"
                      + (f", {a['cost_per_hour']:.4g}/h" if a.get("cost_per_hour") is not None else "")
                      + ("" if a.get("within_budget", True) else " (over budget)"))
    for n in doc.get("notes") or []:
        say(f"[yellow]note[/yellow]: {n}")
    for i in doc.get("infeasible") or []:
        say(f"[yellow]not feasible[/yellow]: {i['node_type']}: {i['reason']}")


@plan_app.command("validate")
@handle_errors
def validate(
    plan_file: Annotated[Path, typer.Argument(help="plan.yaml written by `asrtk plan`.")],
    target: Annotated[Optional[str], typer.Option(help="One node of the planned type. Default: the embedded reference server with the planned workers.")] = None,
    scenario: Annotated[Optional[str], typer.Option(help="Scenario to run (default: the plan's target.scenario). A plan made with --hit-rate needs one with a repeat: block.")] = None,
    duration: Annotated[Optional[str], typer.Option(help="Measured time (default: long enough for the percentile).")] = None,
    tolerance: Annotated[str, typer.Option(help="Allowed excess of measured over predicted latency, e.g. 20%.")] = "20%",
    attempts: Annotated[int, typer.Option(min=1, max=5, help="Measure again (up to this many runs in all) while the run is not like for like with the sweep (CPU per request, other work and CPU steal on this host).")] = 2,
    model: Annotated[str, typer.Option(help="Embedded server: model preset.")] = "tiny",
    cache: Annotated[Optional[str], typer.Option("--cache", help="Embedded server: its result cache, memory[:SIZE] or redis://HOST:PORT/DB (default for a plan sized with --hit-rate: memory:256MiB).")] = None,
    out: Annotated[Path, typer.Option(help="Results directory for the validation run.")] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as one JSON object.")] = False,
) -> None:
    """Run the planned per-node operating point against one node and compare measured p95 and
    throughput with the plan's prediction.

    The comparison is only fair like for like, so it is checked: the target's CPU time per
    request must be within 10% of what the sweep measured at that load, and the load host
    as busy with other work (other processes, CPU steal by the hypervisor) as it was then,
    within 0.03 cores, with both runs under the host's "disturbed" threshold (0.1 cores on a
    2-core host). A run that is not like for like is measured again (--attempts) and the
    closest run is judged.

    A plan sized for a cache hit rate (asrtk plan --hit-rate) needs repeated traffic: pass
    --scenario with a repeat: block (the plan's own scenario sends none: exit 2). The embedded
    server then runs with --cache (memory:256MiB), the curve is read at the offered load times
    the work per request, (1 - h) + h x hit cost, and the run's hit ratio (the server's cache
    counters, else the client's X-Cache) must leave that work within 10% of the planned one;
    otherwise the verdict is "inconclusive": the run checked another operating point.

    Exit 0 when the plan holds; 3 when the SLO fails there, the node does not carry the
    planned load, or the latency is more than --tolerance above the prediction (verdict
    "fail"); 4 when it is that far off but the run was not like for like, or the hit ratio
    was not the planned one (verdict "inconclusive": rerun on a quiet machine, sweep this
    machine, or fix the scenario's repeat block); 1 when the run itself failed.

    Examples:

      asrtk plan validate plan.yaml --target http://gpu-a-1:8000

      asrtk plan validate plan.yaml --scenario tts-zipf.yaml --cache memory:512MiB
    """
    from toolkit.runs.validate import run_validation
    from toolkit.units import parse_duration, parse_ratio
    from toolkit.errors import Inconclusive, ThresholdBreached

    v = run_validation(
        plan_file, target, preset=model, duration_s=parse_duration(duration, "--duration") if duration else None,
        tolerance=parse_ratio(tolerance, "--tolerance"), out_dir=out, scenario_name=scenario, attempts=attempts,
        cache=cache, on_message=(lambda m: typer.echo(m, err=True)) if as_json else say,
    )
    if as_json:
        import json

        typer.echo(json.dumps(v.as_dict()))
        if v.verdict == "inconclusive":
            raise typer.Exit(Inconclusive.exit_code)
        if not v.passed:
            raise typer.Exit(ThresholdBreached.exit_code)
        return
    pct = f"p{v.percentile * 100:g}"
    dev = f" ({v.deviation:+.0%})" if v.deviation is not None else ""
    say(f"throughput: planned {v.per_node_rps:.3g} rps, offered {v.offered_rps:.3g} rps (Poisson), "
                  f"completed {v.achieved_rps:.3g} rps")
    say(f"{pct}: predicted {_f(v.predicted_s, 's')} (measured curve at the offered load; "
        f"{_f(v.predicted_planned_s, 's')} at the planned load), model {_f(v.model_s, 's')}, "
                  f"measured {_f(v.measured_s, 's')}{dev}; SLO {v.slo_latency_s:g}s")
    if v.cpu_s_per_request_measured is not None:
        say(f"target CPU per request: {_f(v.cpu_s_per_request_planned and v.cpu_s_per_request_planned * 1000, ' ms')} "
            f"in the sweep, {v.cpu_s_per_request_measured * 1000:.3g} ms now")
    if v.interference_cpu_cores is not None:
        say(f"other work and CPU steal on this host: {_f(v.interference_cpu_cores_planned, ' cores')} in the sweep, "
            f"{v.interference_cpu_cores:.2f} cores now")
    if v.cache is not None:
        _print_cache(v)
    for c in v.comparability:
        say(f"[yellow]not like for like[/yellow]: {c}")
    say(f"run: {v.run_dir}" + (f" (attempt {v.attempts})" if v.attempts > 1 else ""))
    if v.cache is not None and not v.cache.comparable:
        raise Inconclusive(f"plan validation inconclusive: the plan is sized for a {v.cache.hit_rate_planned:.0%} "
                           f"hit rate, the run measured {_pc(v.cache.hit_ratio_measured)} (see above)")
    if v.verdict == "inconclusive":
        raise Inconclusive(f"plan validation inconclusive: {pct} is {v.deviation:+.0%} off the prediction, "
                                "but the run was not like for like (see above); rerun on a quiet machine")
    if not v.passed:
        raise ThresholdBreached("plan validation failed: " + "; ".join(v.reasons))
    say("[green]plan holds at the planned operating point[/green]")


def _pc(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _print_cache(v: "Validation") -> None:
    c = v.cache
    assert c is not None
    say(f"cache hit ratio: planned {_pc(c.hit_rate_planned)}, measured {_pc(c.hit_ratio_client)} (client X-Cache), "
        f"{_pc(c.hit_ratio_server)} (server counters); the scenario's expectation {_pc(c.hit_ratio_expected)}")
    say(f"per node at the planned {_pc(c.hit_rate_planned)}: capacity {_f(c.capacity_rps_planned, ' rps')} at the SLO "
        f"({_f(c.capacity_rps_zero_hit, ' rps')} at 0%, {_f(c.capacity_rps_at_measured, ' rps')} at the measured "
        f"{_pc(c.hit_ratio_measured)}); planned load {v.per_node_rps:.3g} rps, {c.miss_equivalent_rps:.3g} rps "
        f"as misses on the measured curve; held {v.achieved_rps:.3g} rps with p{v.percentile * 100:g} "
        f"{_f(v.measured_s, 's')} (SLO {v.slo_latency_s:g}s)")
