"""``plan validate``'s judgement (pure): a run at the planned operating point against the plan.

:func:`judge_validation` takes the plan document and the run's ``summary.json`` and says
pass, fail or inconclusive (off the prediction, but not like for like with the sweep; or, for
a plan sized for a result cache, run at a hit ratio too far from the planned one).
The run itself is :func:`toolkit.runs.validate.run_validation`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from toolkit.capacity import capacityfile, planfile
from toolkit.capacity.planner import hit_rate_factor, interp_latency
from toolkit.capacity.sweep import interpolate_quantile, required_requests
from toolkit.thresholds import Thresholds


@dataclass(frozen=True)
class CacheCheck:
    """A plan sized for a result cache (``expected.cache``) against the hit ratio the run had.

    The node's work per request is ``(1 - h) + h x hit cost`` misses (the planner's model): the
    run checks the plan's claim only when that work at the measured hit ratio is within
    ``like_cpu_per_request`` (10%) of the work at the planned hit rate.
    """

    hit_rate_planned: float
    hit_cost_ratio: float
    hit_ratio_client: float | None  # X-Cache on the successful responses of the measured window
    hit_ratio_server: float | None  # the target's own cache counters over the window
    hit_ratio_expected: float | None  # the scenario's repeat model over this run, from an empty cache
    hit_ratio_measured: float | None  # the one judged: the server's, else the client's
    measured_by: str | None  # "server" | "client" | None (the target showed no cache)
    work_per_request_planned: float  # in misses
    work_per_request_measured: float | None
    miss_equivalent_rps: float  # the offered load as misses: where the measured curve is read
    capacity_rps_planned: float | None  # capacity at the SLO per node at the planned hit rate
    capacity_rps_zero_hit: float | None  # ... at 0% (what the sweep measured)
    capacity_rps_at_measured: float | None  # ... at the measured hit ratio
    comparable: bool = True
    reason: str | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Validation:
    per_node_rps: float
    offered_rps: float
    achieved_rps: float
    percentile: float
    predicted_s: float | None  # measured curve at the offered load
    predicted_planned_s: float | None  # measured curve at the planned load (the plan's figure)
    model_s: float | None
    measured_s: float | None
    slo_latency_s: float
    deviation: float | None  # measured / predicted - 1
    passed: bool
    reasons: tuple[str, ...]
    run_dir: Path
    # like for like? The target's CPU per request then (plan) and now, and other work on the host
    cpu_s_per_request_planned: float | None = None  # a cached plan's: at the run's measured hit ratio
    cpu_s_per_request_measured: float | None = None
    interference_cpu_cores: float | None = None
    interference_cpu_cores_planned: float | None = None  # the sweep's, at the planned load
    comparable: bool = True
    comparability: tuple[str, ...] = ()
    verdict: str = "pass"  # pass | fail | inconclusive (not like for like and off the prediction)
    attempts: int = 1
    cache: CacheCheck | None = None  # a plan sized for a cache hit rate

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["reasons"], d["comparability"], d["run_dir"] = list(self.reasons), list(self.comparability), str(self.run_dir)
        d["cache"] = self.cache.as_dict() if self.cache is not None else None
        return d


def judge_validation(doc: dict, summary: dict, tolerance: float, run_dir: Path,
                     thresholds: Thresholds | None = None) -> Validation:
    """Compare a run at the planned point with the plan's prediction.

    Like for like (``thresholds``, see :mod:`toolkit.thresholds`): the target's CPU per request
    within ``like_cpu_per_request`` of the sweep's, other work plus CPU steal on the load host
    within ``like_interference_share`` of its cores of what it was while the sweep measured
    this load, and both under the host's ``disturbed`` threshold.

    A plan with ``expected.cache`` was sized for a hit rate: the curve (misses) is read at the
    offered load times the work per request at the measured hit ratio, the CPU per request
    expected likewise; a run whose hit ratio leaves the work per request more than
    ``like_cpu_per_request`` off the planned one (or that shows no cache) is ``inconclusive``,
    whatever its latency: it checked another operating point.
    """
    th = thresholds or Thresholds()

    slo = doc.get("slo") or {}
    q = float(slo.get("percentile", planfile.DEFAULTS["slo"]["percentile"]))
    slo_s = float(slo.get("latency_s", planfile.DEFAULTS["slo"]["latency_s"]))
    exp = doc.get("expected") or {}
    per_node = float(exp["per_node_rps"])
    key = f"p{q * 100:g}".replace(".", "_")
    predicted = exp.get(f"{key}_s_measured")
    model = exp.get(f"{key}_s_model")
    lat = summary.get("latency_s") or {}
    qs = {k: lat.get(n) for k, n in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99"), (0.999, "p999"))}
    qs = {k: float(v) for k, v in qs.items() if v is not None}
    measured = interpolate_quantile(qs, q) if qs else None
    achieved = float((summary.get("throughput") or {}).get("rps") or 0.0)
    # the Poisson schedule realises more or fewer arrivals than planned: judge against what it sent
    offered = float((summary.get("load") or {}).get("offered_rps") or per_node)
    predicted_planned = predicted
    curve = [(float(c["rps"]), float(c["latency_s"])) for c in exp.get("curve") or []
             if c.get("rps") is not None and c.get("latency_s") is not None]
    cache = cache_check(doc, summary, offered, th)
    # the curve is misses: a cached plan's load on it is the offered load x the work per request
    load, planned_load = offered, per_node
    if cache is not None:
        load, planned_load = cache.miss_equivalent_rps, per_node * cache.work_per_request_planned
    if curve and predicted is not None and abs(load - planned_load) > 1e-9:
        predicted = curve_latency(curve, load)  # compare at the load the run really offered
    reasons = []
    ref = predicted if predicted is not None else model
    deviation = (measured / ref - 1.0) if (measured is not None and ref) else None
    if measured is None:
        reasons.append("no latency measured")
    elif measured > slo_s:
        reasons.append(f"measured p{q * 100:g} {measured:.3g}s breaches the SLO {slo_s:g}s at the planned load")
    comparability = list(_comparability(exp, summary, th, _cpu_scale(cache)))
    if cache is not None and not cache.comparable and cache.reason:
        comparability.insert(0, cache.reason)
    off = deviation is not None and deviation > tolerance
    if off and not comparability:
        reasons.append(f"measured p{q * 100:g} is {deviation:+.0%} off the prediction (tolerance ±{tolerance:.0%})")
    if achieved < 0.9 * offered:
        reasons.append(f"the node completed {achieved:.3g} rps of the {offered:.3g} rps offered")
    err = float((summary.get("requests") or {}).get("error_rate") or 0.0)
    max_err = float(slo.get("max_error_rate", planfile.DEFAULTS["slo"]["max_error_rate"]))
    if err > max_err:
        reasons.append(f"error rate {err:.2%} > {max_err:.2%}")
    host = summary.get("host") or {}
    verdict = "fail" if reasons else ("inconclusive" if off else "pass")
    if cache is not None and not cache.comparable:
        verdict = "inconclusive"  # neither a pass nor a failure of a claim made at another hit rate
    planned_cpu = _pos(exp.get("target_cpu_s_per_request"))
    return Validation(per_node, offered, achieved, q, predicted, predicted_planned, model, measured, slo_s,
                      deviation, verdict == "pass", tuple(reasons), run_dir,
                      cpu_s_per_request_planned=None if planned_cpu is None else planned_cpu * _cpu_scale(cache),
                      cpu_s_per_request_measured=_cpu_now(exp, summary),
                      interference_cpu_cores=_pos(host.get("interference_cpu_cores_mean")),
                      interference_cpu_cores_planned=_pos(exp.get("sweep_interference_cpu_cores")),
                      comparable=not comparability, comparability=tuple(comparability), verdict=verdict,
                      cache=cache)


def work_per_request(hit_ratio: float, hit_cost_ratio: float) -> float:
    """A request's work on a cached node, in misses: ``(1 - h) + h x hit cost``."""
    return 1.0 / hit_rate_factor(hit_ratio, hit_cost_ratio)


def cache_check(doc: dict, summary: dict, offered_rps: float, thresholds: Thresholds | None = None) -> CacheCheck | None:
    """The run's hit ratio against the plan's (None: the plan has no ``expected.cache``)."""
    th = thresholds or Thresholds()
    exp = doc.get("expected") or {}
    plan_cache = exp.get("cache") or {}
    h_plan, cost = _pos(plan_cache.get("hit_rate")), _pos(plan_cache.get("hit_cost_ratio"))
    if not h_plan or cost is None:
        return None
    run_cache = summary.get("cache") or {}
    client = _ratio((run_cache.get("client") or {}).get("hit_ratio"))
    server = _ratio((run_cache.get("server") or {}).get("hit_ratio"))
    expected = _ratio((run_cache.get("expected") or {}).get("hit_ratio"))
    measured, by = (server, "server") if server is not None else ((client, "client") if client is not None else (None, None))
    w_plan = work_per_request(h_plan, cost)
    w_now = work_per_request(measured, cost) if measured is not None else None
    factor = _pos(plan_cache.get("capacity_factor")) or hit_rate_factor(h_plan, cost)
    cap = _planned_capacity(doc)
    zero = cap / factor if cap is not None else None
    at_measured = zero * hit_rate_factor(measured, cost) if (zero is not None and measured is not None) else None
    reason = None
    if measured is None or w_now is None:
        reason = (f"the plan is sized for a {h_plan:.0%} cache hit rate, but the target showed no result cache "
                  "(no X-Cache header, no asrtk_cache counters): start it with --cache")
    elif abs(w_now / w_plan - 1.0) > th.like_cpu_per_request:
        reason = (f"the run's cache hit ratio was {measured:.2f} ({by} counters"
                  + (f"; client X-Cache {client:.2f}" if by == "server" and client is not None else "")
                  + (f"; the scenario's expectation {expected:.2f}" if expected is not None else "")
                  + f"), the plan's {h_plan:.2f}: a request cost the node {w_now / w_plan:.2f}x the planned work "
                  f"(like for like within ±{th.like_cpu_per_request:.0%}); make the scenario's repeat block give "
                  f"{h_plan:.2f} (repeat.catalog, repeat.s) or plan with --hit-rate {measured:.2f}")
    # the curve is read at the measured work when the run is at the planned point, else at the planned one
    used = w_now if reason is None and w_now is not None else w_plan
    return CacheCheck(hit_rate_planned=h_plan, hit_cost_ratio=cost, hit_ratio_client=client, hit_ratio_server=server,
                      hit_ratio_expected=expected, hit_ratio_measured=measured, measured_by=by,
                      work_per_request_planned=w_plan, work_per_request_measured=w_now,
                      miss_equivalent_rps=offered_rps * used, capacity_rps_planned=cap, capacity_rps_zero_hit=zero,
                      capacity_rps_at_measured=at_measured, comparable=reason is None, reason=reason)


def _planned_capacity(doc: dict) -> float | None:
    """Capacity at the SLO of one node of the recommended type (at the plan's hit rate)."""
    name = (doc.get("recommended") or {}).get("node_type")
    for nt in doc.get("node_types") or []:
        if nt.get("name") == name:
            return _pos(nt.get("capacity_rps"))
    return None


def _cpu_scale(cache: CacheCheck | None) -> float:
    """The plan's CPU per request is at the planned hit ratio; the run's at the measured one."""
    if cache is None or cache.work_per_request_measured is None:
        return 1.0
    return cache.work_per_request_measured / cache.work_per_request_planned


def _ratio(v: object) -> float | None:
    x = _pos(v)
    return x if x is not None and x <= 1.0 else None


def _pos(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def _cpu_now(expected: dict, summary: dict) -> float | None:
    """The validation run's CPU per request, measured the way the plan's figure was."""
    want = expected.get("cpu_source")
    if want == "metrics":
        return _pos((summary.get("server") or {}).get("cpu_s_per_request"))
    if want == "local":
        return _pos((summary.get("host") or {}).get("target_cpu_s_per_request"))
    return capacityfile.cpu_per_request(summary)[0]


def interference_tolerance_cores(summary: dict, thresholds: Thresholds) -> float:
    """How far interference may differ (cores) on the host that ran ``summary``."""
    return thresholds.like_interference_cores(int((summary.get("host") or {}).get("cores") or 0))


def _comparability(expected: dict, summary: dict, thresholds: Thresholds, cpu_scale: float = 1.0) -> Iterable[str]:
    """Why this run is not like for like with the sweep the plan came from (empty: it is).
    ``cpu_scale``: the plan's CPU per request times this is what the run should cost (a cache's
    measured hit ratio)."""
    host = summary.get("host") or {}
    then, now = _pos(expected.get("sweep_interference_cpu_cores")), _pos(host.get("interference_cpu_cores_mean"))
    threshold = _pos(host.get("interference_threshold_cores")) or thresholds.disturbed_cores(int(host.get("cores") or 0))
    tol = interference_tolerance_cores(summary, thresholds)
    if then is not None and now is not None:
        if abs(now - then) > tol:
            yield (f"other processes and CPU steal took {now:.2f} CPU cores of this host during the run against "
                   f"{then:.2f} while the sweep measured this load (like for like within "
                   f"±{tol:.2g})")
        elif max(now, then) > threshold:
            yield (f"other processes and CPU steal took {now:.2f} CPU cores of this host during the run and {then:.2f}"
                   f" in the sweep: above {threshold:.2g} cores (disturbed) the latency tail is the "
                   "hypervisor's, not the target's")
    elif host.get("disturbed"):  # a plan from before the sweep recorded it: the absolute threshold
        yield (f"this host was busy with other work during the run: {host.get('interference_cpu_cores_mean') or 0:.2f}"
               f" CPU cores of other processes and CPU steal (threshold {host.get('interference_threshold_cores')})")
    then, now = _pos(expected.get("target_cpu_s_per_request")), _cpu_now(expected, summary)
    if then:
        then *= cpu_scale
    if then and now and abs(now / then - 1.0) > thresholds.like_cpu_per_request:
        at = " at this hit ratio" if cpu_scale != 1.0 else ""
        yield (f"a request cost the target {now * 1000:.3g} ms of CPU now against {then * 1000:.3g} ms in the sweep{at} "
               f"({now / then - 1.0:+.0%}): not the machine, build or conditions the sweep measured")


def curve_latency(curve: list[tuple[float, float]], rps: float) -> float:
    """Latency on the plan's smoothed measured curve at ``rps`` (clamped to the measured range)."""

    pts = sorted(curve)
    if rps <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= rps <= x1:
            return interp_latency(x0, y0, x1, y1, rps)
    return pts[-1][1]


def validation_duration_s(per_node_rps: float, percentile: float, floor_s: float = 30.0, cap_s: float = 180.0) -> float:
    return float(min(cap_s, max(floor_s, math.ceil(required_requests(percentile) / max(per_node_rps, 1e-9)))))




def unlikeness(v: Validation, thresholds: Thresholds | None = None, cores: int = 0) -> float:
    """How far a validation run's conditions were from the sweep's, in units of each tolerance
    (0: like for like). ``cores``: the load host's."""
    th = thresholds or Thresholds()
    now, then = v.interference_cpu_cores or 0.0, v.interference_cpu_cores_planned
    gap = abs(now - then) if then is not None else now
    cost = 0.0
    if v.cpu_s_per_request_measured and v.cpu_s_per_request_planned:
        cost = abs(v.cpu_s_per_request_measured / v.cpu_s_per_request_planned - 1.0)
    return gap / th.like_interference_cores(cores) + cost / th.like_cpu_per_request
