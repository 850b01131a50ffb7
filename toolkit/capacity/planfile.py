"""``plan.yaml`` (schema ``asrtk.plan/v1``): the fleet plan the generators read.

:func:`plan_document` is pure (a :class:`Plan` in, a dict out); :func:`write_plan` and
:func:`read_plan` do the file I/O. Readers must tolerate absent keys (hand-written plans):
:data:`DEFAULTS` lists the documented defaults.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from toolkit.capacity.inventory import Host, assign
from toolkit.capacity.planner import FleetPlan, Plan
from toolkit.errors import ConfigError

SCHEMA = "asrtk.plan/v1"
# The one table of plan defaults: what a key a hand-written plan leaves out means, for every
# reader (plan validate, generate) and the default of the matching flag of `asrtk plan`.
DEFAULTS: dict[str, Any] = {
    "slo": {"percentile": 0.95, "latency_s": 1.5, "max_error_rate": 0.01},
    "headroom": 0.8,
    "redundancy": 1,
    "target": {"qps": None, "scenario": None, "route": "/recognize"},
    # the reference server's --max-body-mb default: nginx must not refuse what the server accepts
    "request": {"max_body_bytes": 100 * 2**20, "streaming": False},
}


def _r(v: float | None, nd: int = 4) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return float(round(v, nd))


def _fleet_summary(p: FleetPlan, plan: Plan) -> dict:
    # a mixed fleet is named after the type that carries most of the load; `composition` lists all
    main = max(p.composition, key=lambda c: c[1] * p.per_node_rps.get(c[0], 0.0))[0]
    by_name = {a.node_type.name: a for a in plan.assessments}
    out = {
        "node_type": main,
        "nodes": p.nodes,
        "active_nodes": p.active_nodes,
        "backup_nodes": p.backup_nodes,
        "workers_per_node": by_name[main].workers,
        "cost_per_hour": _r(p.cost_per_hour, 2),
    }
    if len(p.composition) > 1:
        out["composition"] = [{"node_type": n, "active": a, "backup": b, "workers_per_node": by_name[n].workers}
                              for n, a, b in p.composition]
    return out


def plan_document(
    plan: Plan,
    *,
    created: str,
    scenario: str | None,
    route: str | None,
    request: dict | None,
    assumptions: list[str],
    hosts: tuple[Host, ...] | None = None,
    hosts_source: str = "",
    sources: dict[str, str] | None = None,
) -> dict:
    """The plan as a document. Without ``hosts`` the fleet's slots have no address (generators
    refuse to invent one); with them the inventory is matched to the slots (:func:`inventory.assign`)."""
    req = plan.request
    rec = plan.recommended
    fleet = []
    for name, active, backup in rec.composition:
        for i in range(active + backup):
            fleet.append({
                "name": f"{name}-{len([f for f in fleet if f['node_type'] == name]) + 1}",
                "node_type": name,
                "address": None,
                "weight": plan.weights.get(name, 1),
                "backup": i >= active,
            })
    host_notes: list[str] = []
    if hosts:
        fleet, host_notes = assign(fleet, hosts, hosts_source)
    node_types = []
    for a in plan.assessments:
        cap = a.capacity
        node_types.append({
            "name": a.node_type.name,
            "source": a.node_type.source,
            "capacity_rps": _r(cap.rps),
            "capacity_ci_rps": [_r(cap.ci_rps[0]), _r(cap.ci_rps[1])],
            "capacity_basis": cap.kind,
            "workers_per_node": a.workers,
            "cost_per_hour": a.node_type.cost_per_hour,
            "measured_range_rps": [_r(cap.measured_range_rps[0]), _r(cap.measured_range_rps[1])],
            "by_workers": [
                {"workers": w, "capacity_rps": _r(c.rps), "p95_s": _r(pt.latency_s.get(0.95)) if pt else None,
                 "error_rate": _r(pt.error_rate, 6) if pt else None}
                for w, c, pt in a.by_workers
            ],
        })
    alternatives = [
        {"node_type": p.label, "nodes": p.nodes, "cost_per_hour": _r(p.cost_per_hour, 2),
         "meets_slo": bool(p.degraded["meets_slo"]), "within_budget": p.within_budget}
        for p in plan.alternatives
    ]
    expected = {k: (_r(v) if isinstance(v, float) else v) for k, v in plan.expected.items()
                if k not in ("model_inputs", "curve")}
    expected["curve"] = [{"rps": _r(c["rps"]), "latency_s": _r(c["latency_s"])}
                         for c in plan.expected.get("curve") or []]
    if plan.expected.get("model_inputs"):  # noqa: SIM102
        expected["model_inputs"] = {k: (_r(v) if isinstance(v, float) else v)
                                    for k, v in plan.expected["model_inputs"].items()}
    deg = rec.degraded
    return {
        "schema": SCHEMA,
        "created": created,
        "target": {"qps": float(req.target_qps), "scenario": scenario, "route": route or DEFAULTS["target"]["route"]},
        "slo": {"percentile": plan.slo_percentile, "latency_s": plan.slo_latency_s,
                "max_error_rate": req.max_error_rate},
        "headroom": req.headroom,
        "redundancy": req.redundancy,
        "recommended": _fleet_summary(rec, plan),
        "node_types": node_types,
        "fleet": fleet,
        "expected": expected,
        "latency_s": {k: _r(v) for k, v in plan.latency_s.items()},
        # only what was measured: absent keys mean DEFAULTS, and readers say so
        "request": dict(request or {}),
        "degraded": {
            "nodes_lost": deg["nodes_lost"],
            "capacity_rps": _r(deg["capacity_rps"]),
            "meets_slo": bool(deg["meets_slo"]),
            "one_primary_down": {k: (_r(v) if isinstance(v, float) else v)
                                 for k, v in deg["one_primary_down"].items()},
        },
        "alternatives": alternatives,
        "ranking": plan.ranking,
        "infeasible": [{"node_type": n, "reason": why} for n, why in plan.infeasible],
        "assumptions": assumptions,
        # where derived values come from (scenario, sweep, CSV, inventory or flag), quoted by the generators
        "sources": dict(sources or {}),
        "notes": list(plan.notes) + host_notes,
    }


def write_plan(path: Path, doc: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120))
    return path


def read_plan(path: Path) -> dict:
    """Load a plan, checking that it is a YAML mapping of schema ``asrtk.plan/v1``; every reader
    (``plan validate``, ``generate``) goes through here. Absent keys mean :data:`DEFAULTS`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"plan file {path} not found: write one with `asrtk plan --target-qps N --out DIR`")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"plan {path} is not valid YAML{where}; fix the file or re-run `asrtk plan`") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"plan {path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"plan {path}: expected a mapping (schema {SCHEMA}) at the top level")
    if doc.get("schema", SCHEMA) != SCHEMA:
        raise ConfigError(f"plan {path}: schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    return doc
