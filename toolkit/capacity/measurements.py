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


def _f(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _points_from_steps(steps: list[dict]) -> tuple[CurvePoint, ...]:
    pts = []
    for s in steps:
        if s.get("final") in ("noisy", "disturbed"):
            continue  # a repeat of the same load replaced it
        lat = s.get("latency_s") or {}
        q = {k: _f(lat.get(n)) for k, n in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99"))}
        q = {k: v for k, v in q.items() if v is not None}
        rps = _f(s.get("achieved_rps"))
        if rps is None or 0.95 not in q:
            continue
        pts.append(CurvePoint(rps, q, _f(s.get("error_rate")) or 0.0, _f(lat.get("max")),
                              max(1, int(_f(s.get("requests")) or 1)),
                              _f(s.get("cpu_s_per_request")), s.get("cpu_source"),
                              _f((s.get("host") or {}).get("interference_cpu_cores"))))
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
            curves.append(WorkerCurve(w, _points_from_steps(sub.get("steps") or []), _sweep_result(sub)))
    else:
        server = (doc.get("target") or {}).get("server") or {}
        workers = server.get("workers")
        curves.append(WorkerCurve(int(workers) if workers else None, _points_from_steps(doc.get("steps") or []),
                                  _sweep_result(doc)))
    st = doc.get("service_time_s")
    service = None
    if isinstance(st, dict) and _f(st.get("mean")):
        service = ServiceTime(float(st["mean"]), float(st.get("cv2", 1.0)), str(st.get("source", "sweep")))
    scen = doc.get("scenario") or {}
    return NodeType(
        name=name, source=source, curves=tuple(curves), cost_per_hour=cost_per_hour, service_time=service,
        scenario=scen.get("name"), route=scen.get("route"), request=doc.get("request"),
    )


def node_types_from_csv(text: str, source: str, default_name: str = "node") -> list[NodeType]:
    """Rows ``workers,qps,p95_s,error_rate[,node]``; one node type per distinct ``node``."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise ConfigError(
            f"measurements {source}: missing column(s) {', '.join(missing)}; "
            f"expected header workers,qps,p95_s,error_rate[,node]"
        )
    groups: dict[str, dict[int, list[CurvePoint]]] = {}
    for lineno, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not any(row.values()):
            continue
        try:
            workers = int(float(row["workers"]))
            qps = float(row["qps"])
            p95 = float(row["p95_s"])
            err_txt = row["error_rate"]
            err = float(err_txt.rstrip("%")) / 100.0 if err_txt.endswith("%") else float(err_txt)
        except ValueError:
            raise ConfigError(
                f"measurements {source} line {lineno}: workers, qps, p95_s and error_rate must be numbers, "
                f"got {row}"
            ) from None
        if workers < 1 or qps < 0 or p95 <= 0 or not 0 <= err <= 1:
            raise ConfigError(
                f"measurements {source} line {lineno}: need workers >= 1, qps >= 0, p95_s > 0, "
                f"0 <= error_rate <= 1, got {row}"
            )
        node = row.get("node") or default_name
        groups.setdefault(node, {}).setdefault(workers, []).append(CurvePoint(qps, {0.95: p95}, err))
    if not groups:
        raise ConfigError(f"measurements {source}: no data rows")
    out = []
    for node, by_w in groups.items():
        curves = tuple(WorkerCurve(w, tuple(sorted(pts, key=lambda p: p.rps))) for w, pts in sorted(by_w.items()))
        out.append(NodeType(name=node, source=source, curves=curves))
    return out
