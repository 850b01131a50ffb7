"""Measured capacity curves, from sweeps (capacity.json) or from a CSV table made elsewhere.

Pure: documents and text in, value objects out.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from toolkit.errors import ConfigError

CSV_COLUMNS = ("workers", "qps", "p95_s", "error_rate")
LOAD_COLUMNS = ("users", "concurrency")  # optional: the offered closed-loop load of a row
CSV_HEADER = "workers,qps,p95_s,error_rate[,users|concurrency][,node]"


@dataclass(frozen=True)
class CurvePoint:
    """One measured operating point: achieved throughput and the latency there."""

    rps: float
    latency_s: dict[float, float]  # quantile -> seconds (at least 0.95)
    error_rate: float
    max_s: float | None = None
    requests: int = 1  # how many requests the percentiles come from (weights the smoothing)
    cpu_s_per_request: float | None = None  # what a request cost the target in CPU there
    cpu_source: str | None = None  # "metrics" (its CPU counter) or "local" (its processes on the load host)
    interference_cores: float | None = None  # other work and CPU steal on the load host meanwhile
    load: float | None = None  # the offered load (users, or offered rps; a CSV without users: row order)
    ref: str | None = None  # where the point comes from, for messages: "m.csv line 5: 4 workers, 64 users"
    memory_max_bytes: float | None = None  # the server's peak resident memory during the step (its /metrics)


@dataclass(frozen=True)
class SweepResult:
    """The peak search's own answer, valid for the SLO it ran with."""

    percentile: float
    latency_s: float
    max_error_rate: float
    max_rps: float | None
    ci_rps: tuple[float | None, float | None]
    status: str


@dataclass(frozen=True)
class WorkerCurve:
    workers: int | None
    points: tuple[CurvePoint, ...]
    sweep: SweepResult | None = None
    # closed loop (users): more users with no more throughput is past the knee
    closed_loop: bool = False


@dataclass(frozen=True)
class ServiceTime:
    mean_s: float
    cv2: float
    source: str


@dataclass(frozen=True)
class NodeType:
    name: str
    source: str
    curves: tuple[WorkerCurve, ...]
    cost_per_hour: float | None = None
    service_time: ServiceTime | None = None
    scenario: str | None = None
    route: str | None = None
    request: dict | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    kind: str = "sweep"  # where the curves come from: "sweep" (capacity.json) or "CSV"


def _f(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _points_from_steps(steps: list[dict], mode: str | None) -> tuple[CurvePoint, ...]:
    pts = []
    unit = "users" if mode == "users" else "rps offered"
    for s in steps:
        if s.get("final") in ("noisy", "disturbed"):
            continue  # a repeat of the same load replaced it
        lat = s.get("latency_s") or {}
        q = {k: _f(lat.get(n)) for k, n in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99"))}
        q = {k: v for k, v in q.items() if v is not None}
        rps = _f(s.get("achieved_rps"))
        if rps is None or 0.95 not in q:
            continue
        load = _f(s.get("load"))
        pts.append(CurvePoint(rps, q, _f(s.get("error_rate")) or 0.0, _f(lat.get("max")),
                              max(1, int(_f(s.get("requests")) or 1)),
                              _f(s.get("cpu_s_per_request")), s.get("cpu_source"),
                              _f((s.get("host") or {}).get("interference_cpu_cores")), load,
                              f"step {s.get('index', len(pts))}" + (f": {load:g} {unit}" if load is not None else ""),
                              _f((s.get("server") or {}).get("memory_max_bytes"))))
    return tuple(sorted(pts, key=lambda p: p.rps))


def _sweep_result(doc: dict) -> SweepResult:
    slo = doc.get("slo") or {}
    res = doc.get("result") or {}
    ci = res.get("ci_rps") or [None, None]
    return SweepResult(
        percentile=float(slo.get("percentile", 0.95)),
        latency_s=float(slo.get("latency_s", math.inf)),
        max_error_rate=float(slo.get("max_error_rate", 0.01)),
        max_rps=_f(res.get("max_rps_at_slo")),
        ci_rps=(_f(ci[0]), _f(ci[1]) if len(ci) > 1 else None),
        status=str(res.get("status", "")),
    )


def node_type_from_capacity(
    doc: dict,
    name: str,
    source: str,
    cost_per_hour: float | None = None,
    per_workers: dict[int, dict] | None = None,
) -> NodeType:
    """A node type from a capacity document; ``per_workers`` holds the per-worker-count sweeps."""
    curves: list[WorkerCurve] = []
    if per_workers:
        for w, sub in sorted(per_workers.items()):
            mode = sub.get("mode", doc.get("mode"))
            curves.append(WorkerCurve(w, _points_from_steps(sub.get("steps") or [], mode), _sweep_result(sub),
                                      closed_loop=mode == "users"))
    else:
        server = (doc.get("target") or {}).get("server") or {}
        workers = server.get("workers")
        mode = doc.get("mode")
        curves.append(WorkerCurve(int(workers) if workers else None,
                                  _points_from_steps(doc.get("steps") or [], mode), _sweep_result(doc),
                                  closed_loop=mode == "users"))
    st = doc.get("service_time_s")
    service = None
    if isinstance(st, dict) and _f(st.get("mean")):
        service = ServiceTime(float(st["mean"]), float(st.get("cv2", 1.0)), str(st.get("source", "sweep")))
    scen = doc.get("scenario") or {}
    return NodeType(
        name=name, source=source, curves=tuple(curves), cost_per_hour=cost_per_hour, service_time=service,
        scenario=scen.get("name"), route=scen.get("route"), request=doc.get("request"),
    )


def _ratio(text: str) -> float:
    return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)


def node_types_from_csv(text: str, source: str, default_name: str = "node") -> list[NodeType]:
    """Rows ``workers,qps,p95_s,error_rate[,users|concurrency][,node]``; one node type per distinct
    ``node``, one curve per worker count.

    A row's offered load is its ``users`` (or ``concurrency``) value; without that column, the rows
    of one worker count are taken in file order, lightest load first. Every point keeps its line
    number, so the planner can say which rows decided (or broke) the capacity.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise ConfigError(
            f"measurements {source}: missing column(s) {', '.join(missing)}; expected header {CSV_HEADER}"
        )
    load_cols = [c for c in LOAD_COLUMNS if c in header]
    if len(load_cols) > 1:
        raise ConfigError(f"measurements {source} line 1: give the offered load once, as users or as concurrency, "
                          "not both")
    load_col = load_cols[0] if load_cols else None
    groups: dict[str, dict[int, list[CurvePoint]]] = {}
    seen: dict[tuple[str, int, float], int] = {}
    for lineno, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not any(row.values()):
            continue
        where = f"measurements {source} line {lineno}"
        try:
            workers = int(float(row["workers"]))
            qps = float(row["qps"])
            p95 = float(row["p95_s"])
            err = _ratio(row["error_rate"])
            load = float(row[load_col]) if load_col else None
        except ValueError:
            cols = "workers, qps, p95_s, error_rate" + (f" and {load_col}" if load_col else "")
            raise ConfigError(f"{where}: {cols} must be numbers, got {row}") from None
        if workers < 1 or qps < 0 or p95 <= 0 or not 0 <= err <= 1 or (load is not None and not load > 0):
            need = "workers >= 1, qps >= 0, p95_s > 0, 0 <= error_rate <= 1" + (f", {load_col} > 0" if load_col else "")
            raise ConfigError(f"{where}: need {need}, got {row}")
        if not all(math.isfinite(v) for v in (qps, p95, err, load or 1.0)):
            raise ConfigError(f"{where}: values must be finite numbers, got {row}")
        node = row.get("node") or default_name
        pts = groups.setdefault(node, {}).setdefault(workers, [])
        ref = f"{source} line {lineno}: {workers} worker" + ("" if workers == 1 else "s")
        if load is None:
            load = float(len(pts) + 1)  # file order is the order of offered load
        else:
            key = (node, workers, load)
            if key in seen:
                raise ConfigError(f"{where}: node {node}, {workers} workers, {load_col} {load:g} is already on "
                                  f"line {seen[key]}; give each load once per worker count")
            seen[key] = lineno
            ref += f", {load:g} users" if load_col == "users" else f", concurrency {load:g}"
        pts.append(CurvePoint(qps, {0.95: p95}, err, load=load, ref=ref))
    if not groups:
        raise ConfigError(f"measurements {source}: no data rows")
    out = []
    for node, by_w in groups.items():
        curves = tuple(WorkerCurve(w, tuple(sorted(pts, key=lambda p: p.load or 0.0)), closed_loop=load_col is not None)
                       for w, pts in sorted(by_w.items()))
        out.append(NodeType(name=node, source=source, curves=curves, kind="CSV"))
    return out
