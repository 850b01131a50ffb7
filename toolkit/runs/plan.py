"""``asrtk plan`` as a library: gather capacity data (sweeps, CSV tables), plan, and write
``plan.yaml`` / ``plan.md`` / ``plan.html``. The planning itself is pure
(:func:`toolkit.capacity.planner.make_plan`); this module reads and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from toolkit.capacity import capacityfile, planfile, render
from toolkit.capacity.inventory import Host
from toolkit.capacity.measurements import NodeType, node_type_from_capacity, node_types_from_csv
from toolkit.capacity.planner import NodeAssessment, Plan, PlanRequest, make_plan, workers_label
from toolkit.errors import ConfigError, NoDataError
from toolkit.units import parse_node

HOW_TO_MEASURE = (
    "no capacity data: run `asrtk sweep --scenario NAME` first (or pass --capacity FILE, "
    "--node NAME=FILE[:cost] or --measurements FILE.csv)"
)


@dataclass(frozen=True)
class Inputs:
    nodes: list[NodeType]
    sources: list[str]
    used_latest: Path | None
    hosts: tuple[Host, ...] = ()  # --hosts: the inventory the fleet is matched to
    hosts_source: str = ""
    max_body_bytes: int | None = None  # --max-body: overrides the scenario's largest upload
    max_body_flag: str = ""


def _node_from_file(path: Path, name: str | None, cost: float | None) -> NodeType:
    doc = capacityfile.read_capacity(path)
    cap_path = path / "capacity.json" if path.is_dir() else path
    per_workers = None
    if doc.get("workers"):
        per_workers = {}
        for row in doc["workers"]:
            sub = cap_path.parent / row["capacity_file"]
            if sub.exists():
                per_workers[int(row["workers"])] = capacityfile.read_capacity(sub)
    default_name = (doc.get("scenario") or {}).get("name", "node")
    server = (doc.get("target") or {}).get("server") or {}
    if name is None:
        name = f"{server.get('preset', 'node')}" if server else cap_path.parent.name
        name = name or default_name
    return node_type_from_capacity(doc, name, str(cap_path), cost, per_workers or None)


def gather(
    capacity: list[Path],
    nodes: list[str],
    measurements: list[Path],
    results_dir: Path,
) -> Inputs:
    found: list[NodeType] = []
    sources: list[str] = []
    used_latest = None
    for spec in nodes:
        name, path, cost = parse_node(spec)
        found.append(_node_from_file(Path(path), name, cost))
        sources.append(path)
    for i, path in enumerate(capacity):
        node = _node_from_file(Path(path), None, None)
        if any(n.name == node.name for n in found):
            node = replace(node, name=f"{node.name}-{i + 1}")
        found.append(node)
        sources.append(str(path))
    for path in measurements:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"measurements file {path} cannot be read ({exc.strerror}); check the path") from None
        found.extend(node_types_from_csv(text, str(path), default_name=Path(path).stem))
        sources.append(str(path))
    if not found:
        latest = capacityfile.find_latest_sweep(results_dir)
        if latest is None:
            raise NoDataError(HOW_TO_MEASURE)
        found.append(_node_from_file(latest, None, None))
        sources.append(str(latest))
        used_latest = latest
    names = [n.name for n in found]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"node type name(s) {', '.join(sorted(dup))} given twice; name them with --node NAME=FILE")
    return Inputs(found, sources, used_latest)


def assumptions(plan: Plan, inputs: Inputs) -> list[str]:
    out = []
    for a in plan.assessments:
        nt = a.node_type
        what = f"scenario {nt.scenario}" if nt.scenario else "the workload of the measurements"
        out.append(f"{nt.name}: capacity measured with {what} ({nt.source}); basis: {a.capacity.note}")
        if nt.service_time is not None:
            out.append(f"{nt.name}: service time {nt.service_time.mean_s:.3g}s mean, cs^2 "
                       f"{nt.service_time.cv2:.2f} ({nt.service_time.source})")
    out.append(
        "latency model: Erlang C (M/M/c) with the Allen-Cunneen correction (ca^2 + cs^2)/2, Poisson arrivals "
        "(ca^2 = 1), c = measured peak throughput x mean service time; a model, not a measurement"
    )
    out.append(
        "nginx sends requests to `backup` servers only when every primary is unavailable: the redundancy check "
        "assumes a lost node is replaced by a backup; see degraded.one_primary_down for the survivors' load"
    )
    if inputs.hosts:
        out.append(f"fleet addresses from the inventory --hosts {inputs.hosts_source}")
    else:
        out.append("fleet addresses not assigned (no --hosts): asrtk generate needs --hosts FILE for nginx, "
                   "Prometheus and dashboards")
    if inputs.used_latest is not None:
        out.append(f"capacity data: latest sweep {inputs.used_latest} (no --capacity/--node/--measurements given)")
    return out


def provenance(plan: Plan, main: NodeAssessment, inputs: Inputs) -> dict[str, str]:
    """Where the plan's derived values come from, for the generated comments."""
    nt = main.node_type
    what = f"{nt.kind} {nt.source}"
    per_node = plan.expected.get("per_node_rps") or 0.0
    out = {
        "capacity": "; ".join(f"{a.node_type.name}: {a.node_type.kind} {a.node_type.source} ({a.capacity.kind})"
                              for a in plan.assessments if a.capacity.rps is not None),
        "latency_s": (f"{what}: {nt.name} ({workers_label(main.workers)}) measured at {per_node:.3g} rps per node"
                      + (" (p95 only)" if nt.kind == "CSV" else "")),
    }
    if inputs.max_body_bytes is not None:
        out["request.max_body_bytes"] = f"asrtk plan {inputs.max_body_flag}"
    elif (nt.request or {}).get("max_body_bytes") is not None:
        out["request.max_body_bytes"] = f"scenario {nt.scenario or '?'}: largest upload (sweep {nt.source})"
    if inputs.hosts:
        out["fleet"] = f"--hosts {inputs.hosts_source}"
    return out


@dataclass
class PlanOutput:
    plan: Plan
    doc: dict
    yaml_path: Path
    md_path: Path
    html_path: Path


def hit_cost_from_run(run: Path) -> "HitCost":
    """The measured side of a hit's cost: a bench run's server CPU per request at its hit ratio."""
    import json

    from toolkit.capacity.planner import HitCost

    path = Path(run) / "summary.json" if Path(run).is_dir() else Path(run)
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--hit-cost-from {run}: cannot read a bench summary ({type(exc).__name__})") from None
    cache = s.get("cache") or {}
    ratio = (cache.get("server") or {}).get("hit_ratio")
    if ratio is None:
        ratio = (cache.get("client") or {}).get("hit_ratio")
    cpu = (s.get("server") or {}).get("cpu_s_per_request")
    return HitCost(source=f"--hit-cost-from {path}", run_hit_ratio=ratio, run_cpu_s_per_request=cpu)


def plan_and_write(req: PlanRequest, inputs: Inputs, out_dir: Path) -> PlanOutput:
    plan = make_plan(inputs.nodes, req)
    main = next(a for a in plan.assessments if a.node_type.name == plan.recommended.composition[0][0])
    created = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    request = dict(main.node_type.request or {})
    if inputs.max_body_bytes is not None:
        request["max_body_bytes"] = inputs.max_body_bytes
    doc = planfile.plan_document(
        plan, created=created, scenario=main.node_type.scenario, route=main.node_type.route,
        request=request, assumptions=assumptions(plan, inputs), hosts=inputs.hosts or None,
        hosts_source=inputs.hosts_source, sources=provenance(plan, main, inputs),
    )
    out_dir = Path(out_dir)
    y = planfile.write_plan(out_dir / "plan.yaml", doc)
    md = out_dir / "plan.md"
    md.write_text(render.plan_markdown(doc))
    h = out_dir / "plan.html"
    h.write_text(render.plan_html(doc))
    return PlanOutput(plan, doc, y, md, h)
