"""Fleet planning: from measured capacity curves to node counts, weights and N+k redundancy.

Pure: node types and a request in, a :class:`Plan` out. Capacity at the SLO is interpolated
between measured points only; when the SLO is never crossed in the measured range the highest
measured point is used as a lower bound and the plan says so.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

from toolkit.capacity.measurements import CurvePoint, NodeType, WorkerCurve
from toolkit.capacity.queueing import LatencyPrediction, predict_latency
from toolkit.capacity.sweep import interpolate_quantile
from toolkit.errors import ConfigError, ThresholdBreached

MODEL_NAME = "erlang-c + allen-cunneen"


@dataclass(frozen=True)
class PlanRequest:
    target_qps: float
    slo_percentile: float = 0.95
    slo_latency_s: float | None = None  # None: the SLO the measurements were swept with
    max_error_rate: float = 0.01
    headroom: float = 0.8
    redundancy: int = 1
    max_cost_per_hour: float | None = None
    ca2: float = 1.0  # arrival variability at each node (Poisson)
    # result cache: the share of requests answered from it, and what a hit costs the node
    hit_rate: float = 0.0
    hit_cost: "HitCost | None" = None

    def __post_init__(self) -> None:
        if not self.target_qps > 0:
            raise ConfigError(f"--target-qps must be > 0, got {self.target_qps:g}")
        if not 0 < self.headroom <= 1:
            raise ConfigError(f"--headroom must be in (0, 1], got {self.headroom:g}")
        if self.redundancy < 0:
            raise ConfigError(f"--redundancy must be >= 0, got {self.redundancy}")
        if self.slo_latency_s is not None and not self.slo_latency_s > 0:
            raise ConfigError(f"--slo latency must be > 0 s, got {self.slo_latency_s:g}")
        if self.max_cost_per_hour is not None and not self.max_cost_per_hour > 0:
            raise ConfigError(f"--max-cost-per-hour must be > 0, got {self.max_cost_per_hour:g}")
        if not 0 <= self.hit_rate < 1:
            raise ConfigError(f"--hit-rate must be in [0, 1), got {self.hit_rate:g}")
        if self.hit_rate > 0 and self.hit_cost is None:
            raise ConfigError("--hit-rate needs the cost of a hit: --hit-cost RATIO (a hit's CPU / a miss's) or "
                              "--hit-cost-from RUN_DIR (a bench run against the cached server)")


@dataclass(frozen=True)
class HitCost:
    """What a cache hit costs a node, relative to a miss (the capacity the sweep measured).

    Either a ratio given as a flag, or measured: a bench run against the cached server at hit
    ratio ``run_hit_ratio`` cost ``run_cpu_s_per_request``; with the sweep's miss cost ``c_m``
    at that node, ``ratio = (cpu - (1 - h) c_m) / (h c_m)`` (clamped to [0, 1]).
    """

    source: str
    ratio: float | None = None
    run_hit_ratio: float | None = None
    run_cpu_s_per_request: float | None = None

    def ratio_for(self, miss_cpu_s: float | None) -> tuple[float, str]:
        if self.ratio is not None:
            return self.ratio, self.source
        h, cpu = self.run_hit_ratio, self.run_cpu_s_per_request
        if h is None or cpu is None or not h > 0:
            raise ConfigError(f"{self.source}: the run has no cache hit ratio or no server CPU per request; "
                              "bench a cached server with a repeat scenario, or give --hit-cost RATIO")
        if not miss_cpu_s:
            raise ConfigError(f"{self.source}: the sweep recorded no CPU per request to compare with; "
                              "give --hit-cost RATIO")
        r = (cpu - (1 - h) * miss_cpu_s) / (h * miss_cpu_s)
        return min(max(r, 0.0), 1.0), (f"{self.source}: {cpu * 1000:.3g} ms CPU per request at hit ratio {h:.2f}, "
                                       f"a miss {miss_cpu_s * 1000:.3g} ms (the sweep)")


def hit_rate_factor(hit_rate: float, ratio: float) -> float:
    """Capacity at ``hit_rate`` over capacity at 0%: the node's work per request is (1-h) + h x ratio misses."""
    return 1.0 / ((1.0 - hit_rate) + hit_rate * ratio)


@dataclass(frozen=True)
class Capacity:
    rps: float | None
    ci_rps: tuple[float | None, float | None]
    kind: str  # "search" | "interpolated" | "at_least" | "unreachable"
    note: str
    measured_range_rps: tuple[float, float]


@dataclass(frozen=True)
class NodeAssessment:
    """One node type at its best worker count."""

    node_type: NodeType
    workers: int | None
    capacity: Capacity
    curve: WorkerCurve
    by_workers: tuple[tuple[int | None, Capacity, CurvePoint | None], ...]


@dataclass(frozen=True)
class FleetPlan:
    composition: tuple[tuple[str, int, int], ...]  # (node type, active, backup)
    per_node_rps: dict[str, float]
    utilization: dict[str, float]
    capacity_rps: float  # all active nodes at the SLO
    cost_per_hour: float | None
    within_budget: bool
    degraded: dict
    notes: tuple[str, ...] = ()

    @property
    def nodes(self) -> int:
        return sum(a + b for _, a, b in self.composition)

    @property
    def active_nodes(self) -> int:
        return sum(a for _, a, _ in self.composition)

    @property
    def backup_nodes(self) -> int:
        return sum(b for _, _, b in self.composition)

    @property
    def label(self) -> str:
        if len(self.composition) == 1:
            return self.composition[0][0]
        return " + ".join(f"{a + b}x {n}" for n, a, b in self.composition)


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    slo_percentile: float
    slo_latency_s: float
    assessments: tuple[NodeAssessment, ...]
    recommended: FleetPlan
    alternatives: tuple[FleetPlan, ...]
    infeasible: tuple[tuple[str, str], ...]
    expected: dict
    latency_s: dict
    weights: dict[str, int]
    ranking: str
    notes: tuple[str, ...] = field(default_factory=tuple)


# -- capacity at the SLO ---------------------------------------------------------------------------

def _latency(p: CurvePoint, q: float) -> float:
    if q in p.latency_s:
        return p.latency_s[q]
    if len(p.latency_s) == 1:
        where = f" ({p.ref.split(' line ')[0]})" if p.ref else ""
        raise ConfigError(
            f"the measurements{where} give p95 only; plan with --slo p95=SECONDS (asked for p{q * 100:g})"
        )
    return interpolate_quantile(p.latency_s, q)


def interp_latency(x0: float, y0: float, x1: float, y1: float, x: float) -> float:
    """Latency between two measured points, linear in log(latency): queueing delay grows convexly
    with load, so a straight line between sparse points (often 2x apart) overstates the middle."""
    if x1 == x0:
        return y0
    f = (x - x0) / (x1 - x0)
    if y0 > 0 and y1 > 0:
        return math.exp(math.log(y0) + f * (math.log(y1) - math.log(y0)))
    return y0 + f * (y1 - y0)


def load_at_latency(x0: float, y0: float, x1: float, y1: float, y: float) -> float:
    """Inverse of :func:`interp_latency`: the throughput where the latency reaches ``y``."""
    if y1 == y0:
        return x0
    if y0 > 0 and y1 > 0 and y > 0:
        f = (math.log(y) - math.log(y0)) / (math.log(y1) - math.log(y0))
    else:
        f = (y - y0) / (y1 - y0)
    return x0 + f * (x1 - x0)


def monotone(values: list[float], weights: list[float] | None = None) -> list[float]:
    """Non-decreasing weighted least-squares fit (pool adjacent violators): latency and errors only
    grow with load, so a dip between two measured points is noise, not a sweet spot."""
    ws = weights or [1.0] * len(values)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, ws):
        blocks.append([v, float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2, n2), (m1, w1, n1) = blocks[-2], blocks[-1]
            blocks[-2:] = [[(m2 * w2 + m1 * w1) / (w1 + w2), w1 + w2, n1 + n2]]
    out: list[float] = []
    for m, _, n in blocks:
        out += [m] * int(n)
    return out


def smoothed(points: tuple[CurvePoint, ...] | list[CurvePoint], q: float) -> list[CurvePoint]:
    """Points sorted by throughput with the q-latency and error rate made non-decreasing."""
    pts = sorted(points, key=lambda p: p.rps)
    w = [float(p.requests) for p in pts]
    lat = monotone([_latency(p, q) for p in pts], w)
    err = monotone([p.error_rate for p in pts], w)
    return [replace(p, latency_s={**p.latency_s, q: lq}, error_rate=e) for p, lq, e in zip(pts, lat, err)]


def _failure(p: CurvePoint, q: float, slo_s: float, max_err: float) -> str | None:
    """Why a point misses the SLO (latency and/or errors), or None when it meets it."""
    why = []
    if _latency(p, q) > slo_s:
        why.append(f"p{q * 100:g} {_latency(p, q):.3g}s > {slo_s:g}s")
    if p.error_rate > max_err:
        why.append(f"error rate {p.error_rate:.2%} > {max_err:.2%}")
    return ", ".join(why) or None


def describe(p: CurvePoint) -> str:
    """A point as messages name it: where it comes from and its throughput."""
    return f"{p.ref}, {p.rps:.3g} rps" if p.ref else f"{p.rps:.3g} rps"


def by_load(curve: WorkerCurve) -> list[CurvePoint]:
    """The points in order of offered load (throughput order when a point does not say its load)."""
    if curve.points and all(p.load is not None for p in curve.points):
        return sorted(curve.points, key=lambda p: (p.load, p.rps))
    return sorted(curve.points, key=lambda p: p.rps)


def knee_index(pts: list[CurvePoint], closed_loop: bool, q: float, slo_s: float, max_err: float) -> int | None:
    """The first point (in offered-load order) past the knee: it misses the SLO, or (closed loop)
    more users brought no more throughput than an earlier point. None: no such point."""
    best = -math.inf
    for i, p in enumerate(pts):
        if _failure(p, q, slo_s, max_err) or (closed_loop and p.rps <= best):
            return i
        best = max(best, p.rps)
    return None


def past_knee(curve: WorkerCurve, q: float, slo_s: float, max_err: float) -> list[CurvePoint]:
    """Points beyond the knee that carry no more than the busiest point before it: overload
    (throughput collapsed), not a lighter load. They bound capacity but are not on the curve."""
    pts = by_load(curve)
    k = knee_index(pts, curve.closed_loop, q, slo_s, max_err)
    if not k:
        return []
    top = max(p.rps for p in pts[:k])
    return [p for p in pts[k:] if p.rps <= top]


def capacity_at_slo(curve: WorkerCurve, q: float, slo_s: float, max_err: float) -> Capacity:
    raw = by_load(curve)
    if not raw:
        return Capacity(None, (None, None), "unreachable", "no measured points", (0.0, 0.0))
    rng = (min(p.rps for p in raw), max(p.rps for p in raw))
    sw = curve.sweep
    if (
        sw is not None and sw.max_rps is not None and abs(sw.percentile - q) < 1e-9
        and abs(sw.latency_s - slo_s) < 1e-9 and abs(sw.max_error_rate - max_err) < 1e-12
    ):
        kind = "search" if sw.ci_rps[1] is not None else "at_least"
        note = "peak search of the sweep" if kind == "search" else (
            f"the SLO was never crossed up to {rng[1]:.3g} rps: capacity is at least that (not extrapolated)")
        return Capacity(sw.max_rps, sw.ci_rps, kind, note, rng)

    pct = f"p{q * 100:g}"
    k = knee_index(raw, curve.closed_loop, q, slo_s, max_err)
    if k is None:
        top = max(raw, key=lambda p: p.rps)
        return Capacity(
            top.rps, (top.rps, None), "at_least",
            f"{pct} stayed within {slo_s:g}s up to the highest measured point ({describe(top)}): "
            "capacity is at least that (not extrapolated; measure higher loads to find the edge)",
            rng,
        )
    if k == 0:
        p = raw[0]
        return Capacity(
            None, (None, None), "unreachable",
            f"{_failure(p, q, slo_s, max_err)} already at the lightest measured load ({describe(p)}): "
            "the SLO is not met at any measured load",
            rng,
        )
    head, b = raw[:k], raw[k]
    best = max(head, key=lambda p: p.rps)
    if b.rps <= best.rps:
        # more load and no more throughput: past the knee. It bounds capacity at the busiest
        # passing point; interpolating towards it would walk down the overload side.
        why = _failure(b, q, slo_s, max_err)
        why = f"{why}, " if why else ""
        return Capacity(
            best.rps, (best.rps, None), "knee",
            f"busiest point within the SLO ({describe(best)}); the next load ({describe(b)}) is past the knee "
            f"({why}no more throughput): capacity capped there, not interpolated",
            rng,
        )
    # a measured failure is a hard limit: points beyond it are luck, not capacity
    pts = smoothed(head + [b], q)
    first_fail = next(i for i, p in enumerate(pts) if _failure(p, q, slo_s, max_err))
    if first_fail == 0:  # the smoothing pooled the lightest point with a failure above it
        p = pts[0]
        return Capacity(
            None, (None, None), "unreachable",
            f"{_failure(p, q, slo_s, max_err)} (smoothed with the busier points) already at the lightest "
            f"measured load ({describe(p)}): the SLO is not met at any measured load",
            rng,
        )
    a, b = pts[first_fail - 1], pts[first_fail]
    cands = [b.rps]
    la, lb = _latency(a, q), _latency(b, q)
    if lb > slo_s and lb > la:
        cands.append(load_at_latency(a.rps, la, b.rps, lb, slo_s))
    if b.error_rate > max_err and b.error_rate > a.error_rate:
        cands.append(a.rps + (max_err - a.error_rate) / (b.error_rate - a.error_rate) * (b.rps - a.rps))
    rps = max(a.rps, min(cands))
    return Capacity(rps, (a.rps, b.rps), "interpolated",
                    f"interpolated between {describe(a)} (within the SLO) and {describe(b)} "
                    f"({_failure(b, q, slo_s, max_err)})", rng)


def cpu_at(curve: WorkerCurve, rps: float) -> tuple[float | None, str | None]:
    """The target's measured CPU-seconds per request at a throughput (linear between points, clamped),
    from the points measured the most common way (``metrics`` or ``local``)."""
    sources = [p.cpu_source for p in curve.points if p.cpu_s_per_request is not None]
    if not sources:
        return None, None
    src = max(set(sources), key=sources.count)
    pts = sorted((p.rps, p.cpu_s_per_request) for p in curve.points
                 if p.cpu_s_per_request is not None and p.cpu_source == src)
    return _interp_clamped(pts, rps), src


def memory_peak(curve: WorkerCurve) -> tuple[float | None, str | None]:
    """The server's highest resident memory over every measured point, overload included (a pod
    must hold its peak, not its mean, or it is OOM-killed when busiest), and which point it was."""
    pts = [p for p in curve.points if p.memory_max_bytes is not None]
    if not pts:
        return None, None
    top = max(pts, key=lambda p: p.memory_max_bytes or 0.0)
    return top.memory_max_bytes, top.ref


def interference_at(curve: WorkerCurve, rps: float) -> float | None:
    """Other work and CPU steal on the load host (cores) while the sweep measured this throughput
    (linear between points, clamped); None when the points do not say."""
    pts = sorted((p.rps, p.interference_cores) for p in curve.points if p.interference_cores is not None)
    return _interp_clamped(pts, rps) if pts else None  # type: ignore[arg-type]


def _interp_clamped(pts: list[tuple[float, float]], rps: float) -> float:
    """Linear between (throughput, value) points sorted by throughput, clamped at the ends."""
    if rps <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= rps <= x1:
            return y0 + (y1 - y0) * ((rps - x0) / (x1 - x0) if x1 > x0 else 0.0)
    return pts[-1][1]


# a measured point this far above the latency of a busier one is named in the plan's notes
ENVELOPE_NOTE_RATIO = 1.25


def lower_envelope(vals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(throughput, latency) sorted by throughput, each latency capped by every busier point's.

    Under the same conditions latency only grows with load, and what disturbs a measurement (a
    neighbour's CPU burst, hypervisor steal, a stall) only ever adds latency: a point slower than a
    busier one was disturbed, and the busier point bounds it. Unlike the isotonic fit this never
    raises a point, so one disturbed step cannot lift the flat part of the curve around it."""
    out = sorted(vals)
    for i in range(len(out) - 2, -1, -1):
        if out[i][1] > out[i + 1][1]:
            out[i] = (out[i][0], out[i + 1][1])
    return out


def envelope_notes(vals: list[tuple[float, float]], q: float) -> list[str]:
    """Say which measured points the lower envelope replaced, and by what."""
    raw, env = sorted(vals), lower_envelope(vals)
    notes = []
    for (x, y), (_, e) in zip(raw, env):
        if y > ENVELOPE_NOTE_RATIO * e:
            notes.append(f"measured p{q * 100:g} at {x:.3g} rps ({y:.3g}s) is above that of a busier point "
                         f"({e:.3g}s): disturbed or too few requests, the plan's curve takes {e:.3g}s there")
    return notes


def curve_values(curve: WorkerCurve, q: float) -> list[tuple[float, float]]:
    """The measured q-latency against throughput, as raw (throughput, seconds) pairs."""
    return [(p.rps, _latency(p, q)) for p in sorted(curve.points, key=lambda p: p.rps)]


def interpolate_at(curve: WorkerCurve, rps: float, q: float) -> tuple[float | None, str | None]:
    """Measured latency quantile at a throughput, on the lower envelope of the measured points
    (:func:`lower_envelope`), log-linear between them; note when outside the range."""
    try:
        vals = lower_envelope(curve_values(curve, q))
    except ConfigError:
        return None, None
    if not vals:
        return None, None
    if rps <= vals[0][0]:
        note = None
        if rps < vals[0][0] * 0.999:
            note = (f"planned {rps:.3g} rps per node lies below the lightest measured point ({vals[0][0]:.3g} rps): "
                    f"measured p{q * 100:g} taken from that point (an upper bound)")
        return vals[0][1], note
    if rps >= vals[-1][0]:
        return vals[-1][1], (None if rps <= vals[-1][0] * 1.001 else
                             f"planned {rps:.3g} rps per node lies above the measured range: not extrapolated")
    for (x0, y0), (x1, y1) in itertools.pairwise(vals):
        if x0 <= rps <= x1:
            return interp_latency(x0, y0, x1, y1, rps), None
    return vals[-1][1], None


def assess(node: NodeType, q: float, slo_s: float, max_err: float) -> NodeAssessment:
    rows = []
    for c in node.curves:
        cap = capacity_at_slo(c, q, slo_s, max_err)
        at = None
        if cap.rps is not None:  # the busiest measured point that met the SLO
            ok = [p for p in c.points if p.rps <= cap.rps + 1e-9 and _failure(p, q, slo_s, max_err) is None]
            at = max(ok, key=lambda p: p.rps, default=None)
        beyond = past_knee(c, q, slo_s, max_err)
        if beyond:  # overload rows bound the capacity; they are not part of the latency curve
            c = replace(c, points=tuple(p for p in c.points if p not in beyond))
        rows.append((c, cap, at))
    feasible = [r for r in rows if r[1].rps is not None]
    if feasible:
        c, cap, _ = max(feasible, key=lambda r: r[1].rps)
    else:
        c, cap, _ = rows[0]
        if len(rows) > 1:  # name every worker count, not only the first
            cap = replace(cap, note="; ".join(f"{workers_label(r[0].workers)}: {r[1].note}" for r in rows))
    return NodeAssessment(node, c.workers, cap, c, tuple((r[0].workers, r[1], r[2]) for r in rows))


def workers_label(w: int | None) -> str:
    return "workers not given" if w is None else f"{w} worker" + ("" if w == 1 else "s")


# -- fleets -----------------------------------------------------------------------------------------

def _cost(node: NodeType, n: int) -> float | None:
    return None if node.cost_per_hour is None else node.cost_per_hour * n


def homogeneous(a: NodeAssessment, req: PlanRequest) -> FleetPlan:
    cap = a.capacity.rps
    assert cap is not None
    active = max(1, math.ceil(req.target_qps / (req.headroom * cap) - 1e-9))
    total = active + req.redundancy
    per_node = req.target_qps / active
    notes = []
    if req.target_qps < req.headroom * cap and active == 1:
        notes.append(
            f"{a.node_type.name}: target {req.target_qps:g} rps is below one node's capacity "
            f"({cap:.3g} rps at the SLO): 1 active node at {per_node / cap:.0%} of capacity"
        )
    degraded_cap = (total - req.redundancy) * cap
    one_down = req.target_qps / (active - 1) if active > 1 else math.inf
    cost = _cost(a.node_type, total)
    return FleetPlan(
        composition=((a.node_type.name, active, req.redundancy),),
        per_node_rps={a.node_type.name: per_node},
        utilization={a.node_type.name: per_node / cap},
        capacity_rps=active * cap,
        cost_per_hour=cost,
        within_budget=req.max_cost_per_hour is None or cost is None or cost <= req.max_cost_per_hour + 1e-9,
        degraded={
            "nodes_lost": req.redundancy,
            "capacity_rps": degraded_cap,
            "meets_slo": degraded_cap >= req.target_qps - 1e-9,
            "one_primary_down": {
                "capacity_rps": (active - 1) * cap,
                "per_node_rps": None if math.isinf(one_down) else one_down,
                "meets_slo": one_down <= cap + 1e-9,
            },
        },
        notes=tuple(notes),
    )


def mixed(assessments: list[NodeAssessment], req: PlanRequest, max_nodes: int = 64) -> FleetPlan | None:
    """Cheapest mix of two or more node types (primaries), plus ``redundancy`` backups of the largest type."""
    if len(assessments) < 2 or any(a.node_type.cost_per_hour is None for a in assessments):
        return None
    caps = [a.capacity.rps or 0.0 for a in assessments]
    bounds = [min(max_nodes, math.ceil(req.target_qps / (req.headroom * c))) for c in caps]
    best: tuple[float, tuple[int, ...]] | None = None
    for counts in itertools.product(*(range(b + 1) for b in bounds)):
        if sum(1 for n in counts if n) < 2:
            continue
        if req.headroom * sum(n * c for n, c in zip(counts, caps)) < req.target_qps - 1e-9:
            continue
        cost = sum(n * (a.node_type.cost_per_hour or 0.0) for n, a in zip(counts, assessments))
        if best is None or cost < best[0]:
            best = (cost, counts)
    if best is None:
        return None
    counts = best[1]
    big = max((i for i, n in enumerate(counts) if n), key=lambda i: caps[i])
    comp = tuple(
        (a.node_type.name, n, req.redundancy if i == big else 0)
        for i, (a, n) in enumerate(zip(assessments, counts)) if n or i == big
    )
    total_cap = sum(n * c for n, c in zip(counts, caps))
    share = {a.node_type.name: req.target_qps * c / total_cap for a, n, c in zip(assessments, counts, caps) if n}
    # worst case: the largest primaries fail; backups (all of the largest type) take over
    lost = sorted((c for n, c in zip(counts, caps) for _ in range(n)), reverse=True)[: req.redundancy]
    degraded_cap = total_cap - sum(lost) + req.redundancy * caps[big]
    cost = best[0] + req.redundancy * (assessments[big].node_type.cost_per_hour or 0.0)
    survivors_cap = total_cap - max(caps[i] for i, n in enumerate(counts) if n)
    return FleetPlan(
        composition=comp,
        per_node_rps=share,
        utilization={a.node_type.name: req.target_qps / total_cap for a, n in zip(assessments, counts) if n},
        capacity_rps=total_cap,
        cost_per_hour=cost,
        within_budget=req.max_cost_per_hour is None or cost <= req.max_cost_per_hour + 1e-9,
        degraded={
            "nodes_lost": req.redundancy,
            "capacity_rps": degraded_cap,
            "meets_slo": degraded_cap >= req.target_qps - 1e-9,
            "one_primary_down": {
                "capacity_rps": survivors_cap,
                "per_node_rps": None,
                "meets_slo": survivors_cap >= req.target_qps - 1e-9,
            },
        },
        notes=("heterogeneous fleet: nginx weights proportional to measured capacity",),
    )


def weights_for(capacities: dict[str, float]) -> dict[str, int]:
    """Integer nginx weights proportional to capacity (the capacity in rps when all are >= 10)."""
    lo = min(capacities.values())
    scale = 1.0 if lo >= 10 else 10.0 / lo
    return {k: max(1, int(round(v * scale))) for k, v in capacities.items()}


def _model(a: NodeAssessment, per_node_rps: float, req: PlanRequest, q: float) -> LatencyPrediction | None:
    st = a.node_type.service_time
    x_max = max((p.rps for p in a.curve.points), default=0.0)
    if st is None or x_max <= 0 or st.mean_s <= 0:
        return None
    c = max(1, int(round(x_max * st.mean_s)))
    mu = x_max / c
    return predict_latency(c, per_node_rps, mu, st.mean_s, st.cv2, req.ca2)


def service_time_estimate(a: NodeAssessment) -> NodeType:
    """A CSV gives no service-time variance: assume exponential (cs^2 = 1) from the lightest p95."""
    if a.node_type.service_time is not None or not a.curve.points:
        return a.node_type
    from toolkit.capacity.measurements import ServiceTime

    light = min(a.curve.points, key=lambda p: p.rps)
    mean = light.latency_s[0.95] / -math.log(0.05)
    st = ServiceTime(mean, 1.0, "assumed exponential: mean = p95 / 3.0 at the lightest measured load")
    return replace(a.node_type, service_time=st)


def make_plan(nodes: list[NodeType], req: PlanRequest) -> Plan:
    if not nodes:
        raise ConfigError("no capacity data: run `asrtk sweep --scenario NAME` or pass --measurements FILE.csv")
    slos = {(c.sweep.percentile, c.sweep.latency_s, c.sweep.max_error_rate)
            for n in nodes for c in n.curves if c.sweep is not None}
    q = req.slo_percentile
    slo_s = req.slo_latency_s
    notes: list[str] = []
    if slo_s is None:
        if len(slos) == 1:
            q, slo_s, _ = next(iter(slos))
            notes.append(f"SLO p{q * 100:g} <= {slo_s:g}s taken from the sweep")
        else:
            raise ConfigError("give the SLO to plan for: --slo p95=1.5s (the measurements do not name one)")
    assessments = [assess(n, q, slo_s, req.max_error_rate) for n in nodes]
    assessments = [replace(a, node_type=service_time_estimate(a)) for a in assessments]
    zero_hit: dict[str, float] = {}  # capacity per node at 0% hit rate (what was measured)
    cache_info: dict | None = None
    if req.hit_rate > 0:
        assert req.hit_cost is not None
        scaled = []
        for a in assessments:
            if a.capacity.rps is None:
                scaled.append(a)
                continue
            cpu, _ = cpu_at(a.curve, a.capacity.rps)
            ratio, why = req.hit_cost.ratio_for(cpu)
            f = hit_rate_factor(req.hit_rate, ratio)
            zero_hit[a.node_type.name] = a.capacity.rps
            lo, hi = a.capacity.ci_rps
            cap = replace(a.capacity, rps=a.capacity.rps * f, ci_rps=(None if lo is None else lo * f, None if hi is None else hi * f),
                          note=f"{a.capacity.note}; x {f:.3g} for a {req.hit_rate:.0%} cache hit rate (a hit costs "
                               f"{ratio:.3g} of a miss: {why})")
            scaled.append(replace(a, capacity=cap))
            cache_info = cache_info or {"hit_rate": req.hit_rate, "hit_cost_ratio": ratio, "hit_cost_source": why,
                                        "capacity_factor": f}
        assessments = scaled
    infeasible = [(a.node_type.name, a.capacity.note) for a in assessments if a.capacity.rps is None]
    feasible = [a for a in assessments if a.capacity.rps is not None]
    if not feasible:
        raise ThresholdBreached(
            "no node type meets the SLO at any measured load: "
            + "; ".join(f"{n}: {why}" for n, why in infeasible)
        )
    for a in feasible:  # which measurements decided each node type's capacity
        notes.append(f"{a.node_type.name} ({workers_label(a.workers)}): capacity {a.capacity.rps:.3g} rps "
                     f"({a.capacity.kind}): {a.capacity.note}")
    plans = [homogeneous(a, req) for a in feasible]
    mix = mixed(feasible, req)
    if mix is not None and all(mix.cost_per_hour is not None and p.cost_per_hour is not None
                               and mix.cost_per_hour < p.cost_per_hour - 1e-9 for p in plans):
        plans.append(mix)
    within = [p for p in plans if p.within_budget]
    if not within:
        raise ThresholdBreached(
            f"every plan exceeds the budget of {req.max_cost_per_hour:g}/h: "
            + ", ".join(f"{p.label} {p.nodes} nodes {p.cost_per_hour:g}/h" for p in plans)
            + "; raise --max-cost-per-hour or lower --target-qps"
        )
    if all(p.cost_per_hour is not None for p in within):
        ranking = "cheapest cost per hour"
        within.sort(key=lambda p: (p.cost_per_hour, p.nodes))
    else:
        ranking = "fewest nodes (no cost given for every node type)"
        within.sort(key=lambda p: (p.nodes, -p.capacity_rps))
    rec = within[0]
    alternatives = tuple(p for p in plans if p is not rec)

    by_name = {a.node_type.name: a for a in feasible}
    rec_types = [by_name[n] for n, _, _ in rec.composition]
    if cache_info is not None:
        zero_cap = sum(active * zero_hit.get(n, 0.0) for n, active, _ in rec.composition)
        spare_zero = sum((active + backup) * zero_hit.get(n, 0.0) for n, active, backup in rec.composition)
        cache_info.update(capacity_rps_at_zero_hit_rate=zero_cap, all_nodes_capacity_rps_at_zero_hit_rate=spare_zero,
                          meets_target_at_zero_hit_rate=zero_cap >= req.target_qps - 1e-9)
        notes.append(
            f"sized for a {req.hit_rate:.0%} cache hit rate: if it drops to 0%, the {rec.active_nodes} active node(s) "
            f"carry {zero_cap:.3g} rps at the SLO ({zero_cap / req.target_qps:.0%} of the target)"
            + (f", all {rec.nodes} with the backups {spare_zero:.3g} rps" if rec.backup_nodes else "")
            + ("" if spare_zero >= req.target_qps - 1e-9 else ": the N+k margin does not cover a cold or failed cache"))
    weights = weights_for({a.node_type.name: a.capacity.rps or 0.0 for a in rec_types})
    main = max(rec_types, key=lambda a: rec.per_node_rps.get(a.node_type.name, 0.0))
    per_node = rec.per_node_rps.get(main.node_type.name, 0.0)
    if cache_info is not None:  # the curve is misses: hits load the node as fewer misses
        per_node_curve = per_node / cache_info["capacity_factor"]
    else:
        per_node_curve = per_node
    latency: dict[str, float | None] = {}
    for key, qq in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        v, note = interpolate_at(main.curve, per_node_curve, qq)
        latency[key] = v
        if note and key == "p95":
            notes.append(note)
    at_max = [p.max_s for p in sorted(main.curve.points, key=lambda p: p.rps) if p.rps >= per_node_curve and p.max_s]
    latency["max"] = at_max[0] if at_max else max((p.max_s for p in main.curve.points if p.max_s), default=None)
    model = _model(main, per_node_curve, req, q)
    measured_q, _ = interpolate_at(main.curve, per_node_curve, q)
    raw_curve = curve_values(main.curve, q)
    notes.extend(envelope_notes(raw_curve, q))
    curve_pts = [{"rps": x, "latency_s": y} for x, y in lower_envelope(raw_curve)]
    cpu_per_request, cpu_source = cpu_at(main.curve, per_node_curve)
    mem_peak, mem_ref = memory_peak(main.curve)
    if cache_info is not None and cpu_per_request is not None:  # (1-h) misses + h hits per request
        cpu_per_request /= cache_info["capacity_factor"]
    expected = {
        "per_node_rps": per_node,
        "utilization": rec.utilization.get(main.node_type.name),
        f"p{q * 100:g}_s_measured".replace(".", "_"): measured_q,
        f"p{q * 100:g}_s_model".replace(".", "_"): model.quantile_s(q) if model else None,
        "p95_s_measured": latency.get("p95"),
        "p95_s_model": model.p95_s if model else None,
        "model": MODEL_NAME,
        "curve": curve_pts,  # lower envelope of the measured SLO-percentile latency vs throughput
        # what one request cost the swept machine there: plan validate checks it runs like for like
        "target_cpu_s_per_request": cpu_per_request,
        "cpu_source": cpu_source,
        # ... and how busy the load host was with other work and CPU steal there (cores)
        "sweep_interference_cpu_cores": interference_at(main.curve, per_node),
        # the server's peak resident memory over the sweep's steps (its /metrics): a pod's memory
        "server_memory_max_bytes": mem_peak,
        "memory_source": (f"{main.node_type.source}, {mem_ref}: peak server memory over the sweep's steps"
                          if mem_peak is not None else None),
        "cache": cache_info,
        "model_inputs": None if model is None else {
            "servers": max(1, int(round(max(p.rps for p in main.curve.points) * main.node_type.service_time.mean_s))),
            "service_time_mean_s": main.node_type.service_time.mean_s,
            "service_time_cv2": main.node_type.service_time.cv2,
            "arrival_ca2": req.ca2,
            "p_wait": model.p_wait,
            "service_time_source": main.node_type.service_time.source,
        },
    }
    notes.extend(rec.notes)
    return Plan(
        request=req, slo_percentile=q, slo_latency_s=slo_s, assessments=tuple(assessments), recommended=rec,
        alternatives=alternatives, infeasible=tuple(infeasible), expected=expected, latency_s=latency,
        weights=weights, ranking=ranking, notes=tuple(dict.fromkeys(notes)),
    )
