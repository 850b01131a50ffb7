"""``plan validate``'s judgement (pure): a run at the planned operating point against the plan.

:func:`judge_validation` takes the plan document and the run's ``summary.json`` and says
pass, fail or inconclusive (off the prediction, but not like for like with the sweep).
The run itself is :func:`toolkit.runs.validate.run_validation`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from toolkit.capacity import capacityfile, planfile
from toolkit.capacity.planner import interp_latency
from toolkit.capacity.sweep import interpolate_quantile, required_requests
from toolkit.thresholds import Thresholds


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
    cpu_s_per_request_planned: float | None = None
    cpu_s_per_request_measured: float | None = None
    interference_cpu_cores: float | None = None
    interference_cpu_cores_planned: float | None = None  # the sweep's, at the planned load
    comparable: bool = True
    comparability: tuple[str, ...] = ()
    verdict: str = "pass"  # pass | fail | inconclusive (not like for like and off the prediction)
    attempts: int = 1

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["reasons"], d["comparability"], d["run_dir"] = list(self.reasons), list(self.comparability), str(self.run_dir)
        return d


def judge_validation(doc: dict, summary: dict, tolerance: float, run_dir: Path,
                     thresholds: Thresholds | None = None) -> Validation:
    """Compare a run at the planned point with the plan's prediction.

    Like for like (``thresholds``, see :mod:`toolkit.thresholds`): the target's CPU per request
    within ``like_cpu_per_request`` of the sweep's, other work plus CPU steal on the load host
    within ``like_interference_share`` of its cores of what it was while the sweep measured
    this load, and both under the host's ``disturbed`` threshold.
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
    if curve and predicted is not None and abs(offered - per_node) > 1e-9:
        predicted = curve_latency(curve, offered)  # compare at the load the run really offered
    reasons = []
    ref = predicted if predicted is not None else model
    deviation = (measured / ref - 1.0) if (measured is not None and ref) else None
    if measured is None:
        reasons.append("no latency measured")
    elif measured > slo_s:
        reasons.append(f"measured p{q * 100:g} {measured:.3g}s breaches the SLO {slo_s:g}s at the planned load")
    comparability = list(_comparability(exp, summary, th))
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
    return Validation(per_node, offered, achieved, q, predicted, predicted_planned, model, measured, slo_s,
                      deviation, verdict == "pass", tuple(reasons), run_dir,
                      cpu_s_per_request_planned=_pos(exp.get("target_cpu_s_per_request")),
                      cpu_s_per_request_measured=_cpu_now(exp, summary),
                      interference_cpu_cores=_pos(host.get("interference_cpu_cores_mean")),
                      interference_cpu_cores_planned=_pos(exp.get("sweep_interference_cpu_cores")),
                      comparable=not comparability, comparability=tuple(comparability), verdict=verdict)


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


def _comparability(expected: dict, summary: dict, thresholds: Thresholds) -> Iterable[str]:
    """Why this run is not like for like with the sweep the plan came from (empty: it is)."""
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
    if then and now and abs(now / then - 1.0) > thresholds.like_cpu_per_request:
        yield (f"a request cost the target {now * 1000:.3g} ms of CPU now against {then * 1000:.3g} ms in the sweep "
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
